/* SPDX-License-Identifier: MIT */
/*
 * Thin-metadata API semantics: each call's results and error codes as dm-thin-metadata.h
 * defines them, the device details and time kept as the kernel keeps them, sharing and
 * reference counts, held roots, needs_check, resizing, and a seeded model test of random
 * operations (with commits and aborts) against an in-memory model, every commit checked by
 * the core checker (reference counts of every metadata and data block).
 */
#include "tests/support/thin_test.h"
#include "core/base/util.h"

#include <unistd.h>

#define META_BLOCKS 1024
#define DATA_BLOCKS 16384

static bool setup(struct blkdev **dev, struct thin_md **md)
{
	return ok_eq(memdisk_create(META_BLOCKS, 4096, dev), 0) &&
	       ok_eq(md_open(*dev, true, DATA_BLOCKS, md), 0);
}

static void teardown(struct blkdev *dev, struct thin_md *md)
{
	ok_eq(thin_md_close(md), 0);
	blkdev_destroy(dev);
}

/* Map @n blocks from @vbegin to newly allocated data blocks; returns the first one. */
static uint64_t map_new(struct thin_dev *td, struct thin_md *md, uint64_t vbegin, unsigned n)
{
	uint64_t first = 0;

	for (unsigned i = 0; i < n; i++) {
		uint64_t b;

		if (!ok_eq(thin_md_alloc_data_block(md, &b), 0) ||
		    !ok_eq(thin_insert_block(td, vbegin + i, b), 0))
			break;
		if (!i)
			first = b;
	}
	return first;
}

TEST(format_reopen_and_sizes)
{
	struct blkdev *dev;
	struct thin_md *md;
	uint64_t x;
	char why[200];
	struct thin_md_open_opts o = { .data_block_sectors = 256,
				       .why = why,
				       .why_len = sizeof(why) };

	if (!ok_eq(memdisk_create(META_BLOCKS, 4096, &dev), 0))
		return;
	/* Not formatted, no format asked: -ENODATA. */
	ok_eq(thin_md_open(dev, &o, &md), -ENODATA);
	o.format = true;
	o.data_dev_blocks = 1000;
	if (!ok_eq(thin_md_open(dev, &o, &md), 0))
		return;
	ok_eq(thin_md_data_block_sectors(md), 256);
	ok_eq(thin_md_get_data_dev_size(md, &x), 0);
	ok_eq(x, 1000);
	ok_eq(thin_md_get_free_data_blocks(md, &x), 0);
	ok_eq(x, 1000);
	ok_eq(thin_md_get_metadata_dev_size(md, &x), 0);
	ok_eq(x, META_BLOCKS);
	ok_eq(thin_md_get_free_metadata_blocks(md, &x), 0);
	ok(x > META_BLOCKS - META_BLOCKS / 10 - 20 && x < META_BLOCKS - META_BLOCKS / 10);
	ok_eq(thin_md_get_transaction_id(md, &x), 0);
	ok_eq(x, 0);
	ok_eq(thin_md_get_metadata_snap(md, &x), 0);
	ok_eq(x, 0);
	ok(!thin_md_needs_check(md));
	ok_eq(thin_md_close(md), 0);
	ok_eq(check_dev(dev), 0);
	/* Reopen: the stored block size must match; 0 takes it. */
	o.data_block_sectors = 128;
	ok_eq(thin_md_open(dev, &o, &md), -EINVAL);
	ok(strstr(why, "data block size") != NULL);
	o.data_block_sectors = 0;
	o.data_dev_blocks = 0;
	if (ok_eq(thin_md_open(dev, &o, &md), 0)) {
		ok_eq(thin_md_data_block_sectors(md), 256);
		ok_eq(thin_md_get_data_dev_size(md, &x), 0);
		ok_eq(x, 1000);
		ok_eq(thin_md_close(md), 0);
	}
	/* Out-of-range block sizes are refused before anything is read. */
	o.data_block_sectors = 64;
	ok_eq(thin_md_open(dev, &o, &md), -EINVAL);
	o.data_block_sectors = 200;
	ok_eq(thin_md_open(dev, &o, &md), -EINVAL);
	o.data_block_sectors = THIN_DATA_BLOCK_SECTORS_MAX * 2;
	ok_eq(thin_md_open(dev, &o, &md), -EINVAL);
	blkdev_destroy(dev);
}

TEST(device_errors)
{
	struct blkdev *dev;
	struct thin_md *md;
	struct thin_dev *td, *td2;

	if (!setup(&dev, &md))
		return;
	ok_eq(thin_md_create_thin(md, 1), 0);
	ok_eq(thin_md_create_thin(md, 1), -EEXIST);
	ok_eq(thin_md_create_thin(md, THIN_MAX_DEV_ID + 1ull), -EINVAL);
	ok_eq(thin_md_create_thin(md, THIN_MAX_DEV_ID), 0);
	ok_eq(thin_md_create_snap(md, 2, 7), -ENODATA);
	ok_eq(thin_md_create_snap(md, 1, 1), -EEXIST);
	ok_eq(thin_md_create_snap(md, THIN_MAX_DEV_ID + 1ull, 1), -EINVAL);
	ok_eq(thin_md_delete_thin(md, 9), -ENODATA);
	ok_eq(thin_md_open_thin(md, 9, &td), -ENODATA);
	ok_eq(thin_md_device_exists(md, 1), 1);
	ok_eq(thin_md_device_exists(md, 9), 0);
	if (ok_eq(thin_md_open_thin(md, 1, &td), 0)) {
		ok_eq(thin_dev_id(td), 1);
		ok_eq(thin_md_open_thin(md, 1, &td2), -EBUSY);
		ok_eq(thin_md_delete_thin(md, 1), -EBUSY);
		ok_eq(thin_md_close(md), -EBUSY);
		thin_md_close_thin(td);
	}
	ok_eq(thin_md_delete_thin(md, 1), 0);
	ok_eq(thin_md_device_exists(md, 1), 0);
	ok_eq(thin_md_delete_thin(md, 1), -ENODATA);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(check_dev(dev), 0);
	teardown(dev, md);
}

TEST(transaction_id)
{
	struct blkdev *dev;
	struct thin_md *md;
	uint64_t x;

	if (!setup(&dev, &md))
		return;
	ok_eq(thin_md_set_transaction_id(md, 1, 2), -EINVAL);
	ok_eq(thin_md_set_transaction_id(md, 0, 5), 0);
	ok_eq(thin_md_get_transaction_id(md, &x), 0);
	ok_eq(x, 5);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_set_transaction_id(md, 5, 6), 0);
	ok_eq(thin_md_abort(md), 0);
	ok_eq(thin_md_get_transaction_id(md, &x), 0);
	ok_eq(x, 5);
	/* A device records the transaction id current at its creation. */
	ok_eq(thin_md_create_thin(md, 3), 0);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_close(md), 0);
	if (ok_eq(md_open(dev, false, 0, &md), 0)) {
		struct thin_md_view v;
		struct thin_dev_details d;

		ok_eq(thin_md_get_transaction_id(md, &x), 0);
		ok_eq(x, 5);
		ok_eq(thin_md_view_current(md, &v), 0);
		ok_eq(thin_view_get_details(&v, 3, &d), 0);
		ok_eq(d.transaction_id, 5);
		teardown(dev, md);
	}
}

TEST(mappings_and_counts)
{
	struct blkdev *dev;
	struct thin_md *md;
	struct thin_dev *td;
	struct thin_lookup_result lr;
	uint64_t x, free0, free1, vb, ve, pb, first;
	uint32_t c;
	bool shared;

	if (!setup(&dev, &md))
		return;
	ok_eq(thin_md_create_thin(md, 0), 0);
	if (!ok_eq(thin_md_open_thin(md, 0, &td), 0))
		return;
	ok_eq(thin_get_highest_mapped_block(td, &x), -ENODATA);
	ok_eq(thin_find_block(td, 5, true, &lr), -ENODATA);
	ok_eq(thin_remove_block(td, 5), -ENODATA);
	ok_eq(thin_md_get_free_data_blocks(md, &free0), 0);
	first = map_new(td, md, 100, 20);
	ok_eq(thin_md_get_free_data_blocks(md, &free1), 0);
	ok_eq(free0 - free1, 20);
	ok_eq(thin_get_mapped_count(td, &x), 0);
	ok_eq(x, 20);
	ok_eq(thin_get_highest_mapped_block(td, &x), 0);
	ok_eq(x, 119);
	ok_eq(thin_find_block(td, 105, true, &lr), 0);
	ok_eq(lr.block, first + 5);
	ok(!lr.shared);
	ok(thin_changed_this_transaction(td));
	/* A mapped range: consecutive virtual and data blocks. */
	ok_eq(thin_find_mapped_range(td, 0, 1000, &vb, &ve, &pb, &shared), 0);
	ok_eq(vb, 100);
	ok_eq(ve, 120);
	ok_eq(pb, first);
	ok_eq(thin_find_mapped_range(td, 103, 110, &vb, &ve, &pb, &shared), 0);
	ok_eq(vb, 103);
	ok_eq(ve, 110);
	ok_eq(thin_find_mapped_range(td, 0, 100, &vb, &ve, &pb, &shared), -ENODATA);
	/* Overwriting a mapping drops the old data block. */
	ok_eq(thin_md_alloc_data_block(md, &x), 0);
	ok_eq(thin_insert_block(td, 100, x), 0);
	ok_eq(thin_md_data_block_refcount(md, first, &c), 0);
	ok_eq(c, 0);
	ok_eq(thin_get_mapped_count(td, &x), 0);
	ok_eq(x, 20);
	/* Data blocks beyond the device are refused. */
	ok_eq(thin_insert_block(td, 1, DATA_BLOCKS), -EINVAL);
	ok_eq(thin_remove_block(td, 119), 0);
	ok_eq(thin_get_highest_mapped_block(td, &x), 0);
	ok_eq(x, 118);
	ok_eq(thin_remove_range(td, 105, 110), 0);
	ok_eq(thin_get_mapped_count(td, &x), 0);
	ok_eq(x, 14);
	ok_eq(thin_find_block(td, 107, true, &lr), -ENODATA);
	ok_eq(thin_find_block(td, 110, true, &lr), 0);
	ok_eq(thin_remove_range(td, 0, 50), 0);
	ok_eq(thin_md_commit(md), 0);
	ok(!thin_changed_this_transaction(td));
	ok_eq(check_dev(dev), 0);
	ok_eq(thin_md_get_free_data_blocks(md, &x), 0);
	ok_eq(free0 - x, 14);
	/* Everything out, and the blocks come back after the commit. */
	ok_eq(thin_remove_range(td, 0, UINT64_MAX), 0);
	ok_eq(thin_get_mapped_count(td, &x), 0);
	ok_eq(x, 0);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_get_free_data_blocks(md, &x), 0);
	ok_eq(x, free0);
	ok_eq(check_dev(dev), 0);
	thin_md_close_thin(td);
	teardown(dev, md);
}

TEST(snapshot_sharing_times_and_delete)
{
	struct blkdev *dev;
	struct thin_md *md;
	struct thin_dev *o, *s;
	struct thin_lookup_result lr;
	struct thin_md_view v;
	struct thin_dev_details d;
	uint64_t first, x, free_before, nb;
	uint32_t c;

	if (!setup(&dev, &md))
		return;
	ok_eq(thin_md_set_transaction_id(md, 0, 10), 0);
	ok_eq(thin_md_create_thin(md, 1), 0);
	if (!ok_eq(thin_md_open_thin(md, 1, &o), 0))
		return;
	first = map_new(o, md, 0, 600); /* enough for a two-level device tree */
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_set_transaction_id(md, 10, 11), 0);
	ok_eq(thin_md_create_snap(md, 2, 1), 0);
	/* Details as the kernel keeps them: time bumped, both devices' snapshotted_time. */
	ok_eq(thin_md_view_current(md, &v), 0);
	ok_eq(v.sb.time, 1);
	ok_eq(thin_view_get_details(&v, 2, &d), 0);
	ok_eq(d.mapped_blocks, 600);
	ok_eq(d.transaction_id, 11);
	ok_eq(d.creation_time, 1);
	ok_eq(d.snapshotted_time, 1);
	ok_eq(thin_view_get_details(&v, 1, &d), 0);
	ok_eq(d.creation_time, 0);
	ok_eq(d.snapshotted_time, 1);
	ok_eq(d.transaction_id, 10);
	/* Before any write the leaves are shared: data counts still 1 (one leaf each). */
	ok_eq(thin_md_data_block_refcount(md, first, &c), 0);
	ok_eq(c, 1);
	if (!ok_eq(thin_md_open_thin(md, 2, &s), 0))
		return;
	ok_eq(thin_find_block(s, 0, true, &lr), 0);
	ok_eq(lr.block, first);
	ok(lr.shared);
	ok_eq(thin_find_block(o, 0, true, &lr), 0);
	ok(lr.shared);
	/* Writing through the snapshot copies the leaf: every data block in it gains a ref. */
	ok_eq(thin_md_alloc_data_block(md, &nb), 0);
	ok_eq(thin_insert_block(s, 0, nb), 0);
	ok_eq(thin_find_block(s, 0, true, &lr), 0);
	ok_eq(lr.block, nb);
	ok(!lr.shared);
	ok_eq(thin_find_block(o, 0, true, &lr), 0);
	ok_eq(lr.block, first);
	ok_eq(thin_md_data_block_refcount(md, first + 1, &c), 0);
	ok_eq(c, 2);
	ok_eq(thin_md_data_block_is_shared(md, first + 1), 1);
	ok_eq(thin_md_data_block_refcount(md, first, &c), 0);
	ok_eq(c, 1);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(check_dev(dev), 0);
	/* Deleting the origin frees exactly what only it referenced: block `first`. */
	thin_md_close_thin(o);
	ok_eq(thin_md_get_free_data_blocks(md, &free_before), 0);
	ok_eq(thin_md_delete_thin(md, 1), 0);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_get_free_data_blocks(md, &x), 0);
	ok_eq(x - free_before, 1);
	ok_eq(thin_md_data_block_refcount(md, first, &c), 0);
	ok_eq(c, 0);
	ok_eq(thin_md_data_block_refcount(md, first + 599, &c), 0);
	ok_eq(c, 1);
	ok_eq(thin_get_mapped_count(s, &x), 0);
	ok_eq(x, 600);
	ok_eq(check_dev(dev), 0);
	/* And the snapshot: everything goes. */
	thin_md_close_thin(s);
	ok_eq(thin_md_delete_thin(md, 2), 0);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_get_free_data_blocks(md, &x), 0);
	ok_eq(x, DATA_BLOCKS);
	ok_eq(check_dev(dev), 0);
	teardown(dev, md);
}

TEST(abort_and_deleted_handles)
{
	struct blkdev *dev;
	struct thin_md *md;
	struct thin_dev *a, *b;
	struct thin_lookup_result lr;
	uint64_t x;

	if (!setup(&dev, &md))
		return;
	ok_eq(thin_md_create_thin(md, 1), 0);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_create_thin(md, 2), 0);
	if (!ok_eq(thin_md_open_thin(md, 1, &a), 0) || !ok_eq(thin_md_open_thin(md, 2, &b), 0))
		return;
	map_new(a, md, 0, 3);
	map_new(b, md, 0, 3);
	ok_eq(thin_md_abort(md), 0);
	/* Device 1 exists, its changes are gone; device 2 was never committed. */
	ok(thin_aborted_with_changes(a));
	ok_eq(thin_find_block(a, 0, true, &lr), -ENODATA);
	ok_eq(thin_get_mapped_count(a, &x), 0);
	ok_eq(x, 0);
	ok_eq(thin_find_block(b, 0, true, &lr), -ENODEV);
	ok_eq(thin_insert_block(b, 0, 1), -ENODEV);
	ok_eq(thin_remove_block(b, 0), -ENODEV);
	ok_eq(thin_get_mapped_count(b, &x), -ENODEV);
	ok_eq(thin_md_device_exists(md, 2), 0);
	thin_md_close_thin(b);
	ok_eq(thin_md_get_free_data_blocks(md, &x), 0);
	ok_eq(x, DATA_BLOCKS);
	thin_md_close_thin(a);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(check_dev(dev), 0);
	teardown(dev, md);
}

TEST(nonblocking_lookup)
{
	struct blkdev *dev;
	struct thin_md *md;
	struct thin_dev *td;
	struct thin_lookup_result lr;
	uint64_t first;

	if (!setup(&dev, &md))
		return;
	ok_eq(thin_md_create_thin(md, 4), 0);
	ok_eq(thin_md_open_thin(md, 4, &td), 0);
	first = map_new(td, md, 0, 10);
	thin_md_close_thin(td);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_close(md), 0);
	/* A fresh open has not read the mapping tree yet: the lookup would wait. */
	if (!ok_eq(md_open(dev, false, 0, &md), 0))
		return;
	ok_eq(thin_md_open_thin(md, 4, &td), 0);
	ok_eq(thin_find_block(td, 3, false, &lr), -EWOULDBLOCK);
	ok_eq(thin_find_block(td, 3, true, &lr), 0);
	ok_eq(lr.block, first + 3);
	ok_eq(thin_find_block(td, 5, false, &lr), 0);
	ok_eq(lr.block, first + 5);
	ok_eq(thin_find_block(td, 50, false, &lr), -ENODATA);
	thin_md_close_thin(td);
	teardown(dev, md);
}

TEST(held_root)
{
	struct blkdev *dev;
	struct thin_md *md;
	struct thin_dev *td;
	struct thin_md_view hv;
	uint64_t held, first, db;
	uint32_t t;

	if (!setup(&dev, &md))
		return;
	ok_eq(thin_md_release_metadata_snap(md), -EINVAL);
	ok_eq(thin_md_create_thin(md, 1), 0);
	ok_eq(thin_md_open_thin(md, 1, &td), 0);
	first = map_new(td, md, 0, 300);
	ok_eq(thin_md_set_transaction_id(md, 0, 1), 0);
	ok_eq(thin_md_reserve_metadata_snap(md), 0);
	ok_eq(thin_md_reserve_metadata_snap(md), -EBUSY);
	ok_eq(thin_md_get_metadata_snap(md, &held), 0);
	ok(held != 0);
	/*
	 * Change the live pool; the held view keeps the old state. The snapshot comes first so
	 * that it is what copies the top-level leaf shared with the held copy.
	 */
	ok_eq(thin_md_create_snap(md, 2, 1), 0);
	ok_eq(thin_remove_range(td, 0, 100), 0);
	ok_eq(thin_md_set_transaction_id(md, 1, 2), 0);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(check_dev(dev), 0);
	ok_eq(thin_md_view_held(md, 0, &hv), 0);
	ok_eq(thin_md_view_held(md, held + 1, &hv), -EINVAL);
	ok_eq(thin_md_view_held(md, held, &hv), 0);
	ok_eq(hv.sb.trans_id, 1);
	ok_eq(hv.sb.nr_data_blocks, 0);
	ok_eq(thin_view_lookup(&hv, 1, 50, &db, &t), 0);
	ok_eq(db, first + 50);
	ok_eq(thin_view_lookup(&hv, 2, 150, &db, &t), -ENODATA);
	/* Releasing frees what only the held copy kept; device 2 still has all 300 blocks. */
	ok_eq(thin_md_release_metadata_snap(md), 0);
	ok_eq(thin_md_release_metadata_snap(md), -EINVAL);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(check_dev(dev), 0);
	{
		uint64_t f;

		ok_eq(thin_md_get_free_data_blocks(md, &f), 0);
		ok_eq(f, DATA_BLOCKS - 300);
		/* Deleting device 2 leaves device 1's 200: exactly the blocks only 2 had go. */
		ok_eq(thin_md_delete_thin(md, 2), 0);
		ok_eq(thin_md_commit(md), 0);
		ok_eq(thin_md_get_free_data_blocks(md, &f), 0);
		ok_eq(f, DATA_BLOCKS - 200);
		ok_eq(check_dev(dev), 0);
	}
	thin_md_close_thin(td);
	teardown(dev, md);
}

/* The held copy's and the committed (live) trees' roots. */
static void held_and_live(struct thin_md *md, struct thin_md_view *hv, struct thin_md_view *lv)
{
	ok_eq(thin_md_view_held(md, 0, hv), 0);
	ok_eq(thin_md_view_committed(md, lv), 0);
}

/* The core checker and thin_check 0.9.0 both pass @dev. */
static void both_checkers_pass(struct blkdev *dev)
{
	char img[512];

	snprintf(img, sizeof(img), "%s/held.bin", test_tmpdir());
	ok_eq(check_dev(dev), 0);
	ok_eq(dev_to_file(dev, img), 0);
	ok_eq(tpt_check(img, NULL), 0);
}

/*
 * A held copy that shares a whole tree, or some nodes, with the live trees checks clean. The
 * checker walks a shared node once; it must still list the node's devices for the held
 * copy's cross-check of details against mappings, or a pool whose transaction after the
 * reserve left one tree untouched is reported as "mappings present for device N, but it
 * isn't in the details tree" (or the converse), as test_thin_crash's "still usable"
 * transaction after a power cut did with SEED=1796423706392390129.
 */
TEST(check_held_root_sharing_live_trees)
{
	struct blkdev *dev;
	struct thin_md *md;
	struct thin_dev *td;
	struct thin_md_view hv, lv;
	uint64_t tid = 0;

	if (!setup(&dev, &md))
		return;
	ok_eq(thin_md_create_thin(md, 1), 0);
	ok_eq(thin_md_create_thin(md, 2), 0);
	ok_eq(thin_md_open_thin(md, 1, &td), 0);
	map_new(td, md, 0, 10);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_reserve_metadata_snap(md), 0);

	/* Creating and deleting a device changes the mapping tree only. */
	ok_eq(thin_md_create_thin(md, 3), 0);
	ok_eq(thin_md_delete_thin(md, 3), 0);
	ok_eq(thin_md_set_transaction_id(md, tid, tid + 1), 0);
	tid++;
	ok_eq(thin_md_commit(md), 0);
	held_and_live(md, &hv, &lv);
	ok(hv.mapping_root != lv.mapping_root);
	ok_eq(hv.details_root, lv.details_root);
	both_checkers_pass(dev);

	/* New details for a device change the details tree only. */
	ok_eq(thin_md_release_metadata_snap(md), 0);
	ok_eq(thin_md_reserve_metadata_snap(md), 0);
	ok_eq(thin_set_details(td, tid, 0, 0), 0);
	ok_eq(thin_md_commit(md), 0);
	held_and_live(md, &hv, &lv);
	ok_eq(hv.mapping_root, lv.mapping_root);
	ok(hv.details_root != lv.details_root);
	both_checkers_pass(dev);
	thin_md_close_thin(td);

	/*
	 * 300 devices: both top-level trees have several leaves, and a new device copies only
	 * the last leaf of each; the held copy shares the others.
	 */
	ok_eq(thin_md_release_metadata_snap(md), 0);
	for (thin_id_t id = 10; id < 310 && !test_failed(); id++)
		ok_eq(thin_md_create_thin(md, id), 0);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_reserve_metadata_snap(md), 0);
	ok_eq(thin_md_create_thin(md, 1000), 0);
	ok_eq(thin_md_commit(md), 0);
	held_and_live(md, &hv, &lv);
	ok(hv.mapping_root != lv.mapping_root);
	ok(hv.details_root != lv.details_root);
	both_checkers_pass(dev);
	teardown(dev, md);
}

TEST(needs_check_and_read_only)
{
	struct blkdev *dev;
	struct thin_md *md;
	uint64_t x;

	if (!setup(&dev, &md))
		return;
	ok_eq(thin_md_create_thin(md, 1), 0);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_create_thin(md, 2), 0);
	/* The failure path: abort, then flag. */
	ok_eq(thin_md_abort(md), 0);
	ok_eq(thin_md_set_needs_check(md), 0);
	ok(thin_md_needs_check(md));
	ok(thin_md_is_read_only(md));
	ok_eq(thin_md_create_thin(md, 3), -EROFS);
	ok_eq(thin_md_commit(md), -EROFS);
	ok_eq(thin_md_set_read_write(md), -EROFS);
	ok_eq(thin_md_close(md), 0);
	/* It is on disk, survives a reopen, and the pool opens read-only. */
	if (!ok_eq(md_open(dev, false, 0, &md), 0))
		return;
	ok(thin_md_needs_check(md));
	ok(thin_md_is_read_only(md));
	ok_eq(thin_md_set_transaction_id(md, 0, 1), -EROFS);
	ok_eq(thin_md_resize_data_dev(md, DATA_BLOCKS * 2), -EROFS);
	ok_eq(thin_md_device_exists(md, 1), 1);
	ok_eq(thin_md_device_exists(md, 2), 0);
	ok_eq(check_dev(dev), 0);
	ok_eq(thin_md_clear_needs_check(md), 0);
	ok(!thin_md_is_read_only(md));
	ok_eq(thin_md_create_thin(md, 3), 0);
	ok_eq(thin_md_commit(md), 0);
	/* Plain read-only mode. */
	thin_md_set_read_only(md);
	ok_eq(thin_md_create_thin(md, 4), -EROFS);
	ok_eq(thin_md_set_read_write(md), 0);
	ok_eq(thin_md_create_thin(md, 4), 0);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_get_transaction_id(md, &x), 0);
	teardown(dev, md);
}

/*
 * A commit that fails at its n'th metadata write (every n in turn), then
 * thin_md_set_needs_check() without an abort first: only the flag reaches the disk, on
 * the last committed state (the failed transaction's blocks, its half-built superblock
 * among them, are dropped). The device checks clean and reopens read-only with that state.
 */
TEST(needs_check_after_failed_commit_keeps_committed_state)
{
	bool done = false;

	for (uint64_t n = 1; n < 200 && !done; n++) {
		struct blkdev *mem, *fd;
		struct thin_md *md;
		struct thin_dev *td;
		uint64_t h0 = 0, h1 = 1;
		int r;

		if (!ok_eq(memdisk_create(META_BLOCKS, 4096, &mem), 0) ||
		    !ok_eq(faultdev_create(mem, &fd), 0) ||
		    !ok_eq(md_open(fd, true, DATA_BLOCKS, &md), 0))
			return;
		ok_eq(thin_md_create_thin(md, 1), 0);
		ok_eq(thin_md_open_thin(md, 1, &td), 0);
		map_new(td, md, 0, 100);
		ok_eq(thin_md_commit(md), 0);
		ok_eq(md_hash(md, &h0), 0);
		/* A transaction that dirties many blocks. */
		ok_eq(thin_md_create_snap(md, 2, 1), 0);
		map_new(td, md, 50, 400);
		faultdev_fail_nth(fd, BLKDEV_WRITE, n, false);
		r = thin_md_commit(md);
		done = !faultdev_fired(fd);
		faultdev_fail_nth(fd, BLKDEV_WRITE, 0, false);
		thin_md_close_thin(td);
		if (!done) {
			ok_eq(r, -EIO);
			ok_eq(thin_md_set_needs_check(md), 0);
			ok(thin_md_needs_check(md));
			ok(thin_md_is_read_only(md));
		}
		thin_md_close(md);
		blkdev_destroy(fd);
		if (done) {
			blkdev_destroy(mem);
			break;
		}
		if (!ok_eq(check_dev(mem), 0))
			printf("  commit failed at write %llu\n", (unsigned long long)n);
		if (ok_eq(md_open(mem, false, 0, &md), 0)) {
			ok(thin_md_needs_check(md));
			ok(thin_md_is_read_only(md));
			ok_eq(thin_md_device_exists(md, 2), 0);
			ok_eq(thin_md_clear_needs_check(md), 0);
			ok_eq(md_hash(md, &h1), 0);
			if (!ok_eq(h1, h0))
				printf("  commit failed at write %llu\n", (unsigned long long)n);
			thin_md_close(md);
		}
		blkdev_destroy(mem);
	}
	ok(done);
}

TEST(resize_data_device)
{
	struct blkdev *dev;
	struct thin_md *md;
	struct thin_dev *td;
	uint64_t x, b;

	if (!ok_eq(memdisk_create(META_BLOCKS, 4096, &dev), 0) ||
	    !ok_eq(md_open(dev, true, 100, &md), 0))
		return;
	ok_eq(thin_md_create_thin(md, 1), 0);
	ok_eq(thin_md_open_thin(md, 1, &td), 0);
	for (int i = 0; i < 100; i++) {
		ok_eq(thin_md_alloc_data_block(md, &b), 0);
		ok_eq(thin_insert_block(td, (uint64_t)i, b), 0);
	}
	ok_eq(thin_md_alloc_data_block(md, &b), -ENOSPC);
	ok_eq(thin_md_resize_data_dev(md, 40000), 0);
	ok_eq(thin_md_get_free_data_blocks(md, &x), 0);
	ok_eq(x, 39900);
	ok_eq(thin_md_alloc_data_block(md, &b), 0);
	ok_eq(thin_insert_block(td, 20000, b), 0);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(check_dev(dev), 0);
	/* Shrinking below an allocated block: refused, nothing changed. */
	ok_eq(thin_md_resize_data_dev(md, 100), -ENOSPC);
	ok_eq(thin_md_get_data_dev_size(md, &x), 0);
	ok_eq(x, 40000);
	/* Free the high block, then shrink: the map is rebuilt smaller. */
	ok_eq(thin_remove_block(td, 20000), 0);
	ok_eq(thin_md_resize_data_dev(md, 101), 0);
	ok_eq(thin_md_get_data_dev_size(md, &x), 0);
	ok_eq(x, 101);
	ok_eq(thin_md_get_free_data_blocks(md, &x), 0);
	ok_eq(x, 1);
	ok_eq(thin_get_mapped_count(td, &x), 0);
	ok_eq(x, 100);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(check_dev(dev), 0);
	ok_eq(thin_md_resize_data_dev(md, 1ull << 41), -EINVAL);
	thin_md_close_thin(td);
	teardown(dev, md);
}

TEST(grow_metadata_device)
{
	char path[512];
	struct blkdev *dev;
	struct thin_md *md;
	uint64_t x;

	snprintf(path, sizeof(path), "%s/grow.bin", test_tmpdir());
	if (!ok_eq(filedisk_open(path, 4096, true, 256, &dev), 0) ||
	    !ok_eq(md_open(dev, true, 1000, &md), 0))
		return;
	ok_eq(thin_md_create_thin(md, 1), 0);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_resize_metadata_dev(md, 1000), -EINVAL); /* the device is not bigger */
	ok_eq(thin_md_close(md), 0);
	blkdev_destroy(dev);
	/* The device grows (as an LV would), then the space map. */
	if (!ok_eq(truncate(path, 40000 * 4096ll), 0) ||
	    !ok_eq(filedisk_open(path, 4096, false, 0, &dev), 0) ||
	    !ok_eq(md_open(dev, false, 0, &md), 0))
		return;
	ok_eq(thin_md_get_metadata_dev_size(md, &x), 0);
	ok_eq(x, 256);
	ok_eq(thin_md_resize_metadata_dev(md, 100), -EINVAL);
	ok_eq(thin_md_resize_metadata_dev(md, 40000), 0);
	ok_eq(thin_md_get_metadata_dev_size(md, &x), 0);
	ok_eq(x, 40000);
	ok_eq(thin_md_create_thin(md, 2), 0);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(check_dev(dev), 0);
	ok_eq(tpt_check(path, NULL), 0);
	teardown(dev, md);
}

/*----------------------------------------------------------------*/
/* Model test */

#define M_DEVS	 8
#define M_VSPACE 700
#define NONE	 UINT64_MAX

struct model {
	bool exists[M_DEVS];
	uint64_t map[M_DEVS][M_VSPACE];
};

static int model_compare(struct thin_md *md, const struct model *m)
{
	for (unsigned d = 0; d < M_DEVS; d++) {
		struct thin_dev *td;
		uint64_t count = 0, x;

		if (thin_md_device_exists(md, d) != m->exists[d]) {
			printf("  device %u existence differs\n", d);
			return -1;
		}
		if (!m->exists[d])
			continue;
		if (thin_md_open_thin(md, d, &td))
			return -1;
		for (unsigned v = 0; v < M_VSPACE; v++) {
			struct thin_lookup_result lr;
			int r = thin_find_block(td, v, true, &lr);

			if (m->map[d][v] == NONE ? r != -ENODATA
						 : (r || lr.block != m->map[d][v])) {
				printf("  dev %u block %u: r %d block %llu, model %llu\n", d, v, r,
				       (unsigned long long)lr.block,
				       (unsigned long long)m->map[d][v]);
				thin_md_close_thin(td);
				return -1;
			}
			count += m->map[d][v] != NONE;
		}
		thin_get_mapped_count(td, &x);
		thin_md_close_thin(td);
		if (x != count) {
			printf("  dev %u mapped_blocks %llu, model %llu\n", d,
			       (unsigned long long)x, (unsigned long long)count);
			return -1;
		}
	}
	return 0;
}

TEST(model_random_operations)
{
	struct blkdev *dev;
	struct thin_md *md;
	struct model *m = calloc(2, sizeof(*m)), *committed = m + 1;
	uint64_t rng = test_seed();
	unsigned commits = 0, aborts = 0;

	if (!ok(m) || !setup(&dev, &md))
		return;
	for (unsigned step = 0; step < 30000 && !test_failed(); step++) {
		unsigned op = (unsigned)(test_rand(&rng) % 100);
		unsigned d = (unsigned)(test_rand(&rng) % M_DEVS);
		unsigned v = (unsigned)(test_rand(&rng) % M_VSPACE);
		struct thin_dev *td;
		int r;

		if (op < 3) {
			r = thin_md_create_thin(md, d);
			if (!ok_eq(r, m->exists[d] ? -EEXIST : 0))
				break;
			if (!r) {
				m->exists[d] = true;
				for (unsigned i = 0; i < M_VSPACE; i++)
					m->map[d][i] = NONE;
			}
		} else if (op < 6) {
			unsigned o = (unsigned)(test_rand(&rng) % M_DEVS);

			r = thin_md_create_snap(md, d, o);
			if (!ok_eq(r, m->exists[d] ? -EEXIST : !m->exists[o] ? -ENODATA : 0))
				break;
			if (!r) {
				m->exists[d] = true;
				memcpy(m->map[d], m->map[o], sizeof(m->map[d]));
			}
		} else if (op < 8) {
			r = thin_md_delete_thin(md, d);
			if (!ok_eq(r, m->exists[d] ? 0 : -ENODATA))
				break;
			m->exists[d] = false;
		} else if (op < 10) {
			ok_eq(thin_md_commit(md), 0);
			*committed = *m;
			commits++;
			if (commits % 10 == 0 &&
			    (!ok_eq(check_dev(dev), 0) || !ok_eq(model_compare(md, m), 0)))
				break;
		} else if (op < 11) {
			ok_eq(thin_md_abort(md), 0);
			*m = *committed;
			aborts++;
		} else if (m->exists[d] && ok_eq(thin_md_open_thin(md, d, &td), 0)) {
			if (op < 70) {
				uint64_t b;

				r = thin_md_alloc_data_block(md, &b);
				if (!r)
					r = thin_insert_block(td, v, b);
				if (ok_eq(r, 0))
					m->map[d][v] = b;
			} else if (op < 95) {
				r = thin_remove_block(td, v);
				ok_eq(r, m->map[d][v] == NONE ? -ENODATA : 0);
				m->map[d][v] = NONE;
			} else {
				unsigned len = (unsigned)(test_rand(&rng) % 64),
					 e = MIN(M_VSPACE, v + len);

				ok_eq(thin_remove_range(td, v, e), 0);
				for (unsigned i = v; i < e; i++)
					m->map[d][i] = NONE;
			}
			thin_md_close_thin(td);
		}
	}
	ok_eq(thin_md_commit(md), 0);
	ok_eq(check_dev(dev), 0);
	ok_eq(model_compare(md, m), 0);
	printf("  %u commits, %u aborts\n", commits, aborts);
	/* The final image, as thin-provisioning-tools see it. */
	{
		char img[512];

		snprintf(img, sizeof(img), "%s/model.bin", test_tmpdir());
		ok_eq(dev_to_file(dev, img), 0);
		ok_eq(tpt_check(img, NULL), 0);
		ok_eq(tpt_dump_matches(img, NULL), 0);
	}
	teardown(dev, md);
	free(m);
}

struct progress_log {
	uint64_t calls, last_done, last_total, between;
	bool backwards;
};

static void log_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct progress_log *p = ctx;

	if (done < p->last_done)
		p->backwards = true;
	if (done > 0 && done < total)
		p->between++;
	p->calls++;
	p->last_done = done;
	p->last_total = total;
}

static void ignore_line(void *ctx, const char *line)
{
}

/* `pool check` draws a bar from this: it must move between 0 and 100%, forwards, and end full. */
TEST(check_reports_progress_as_it_reads)
{
	struct progress_log p = { 0 };
	struct blkdev *dev;
	struct thin_md *md;

	if (!ok_eq(memdisk_create(4096, 4096, &dev), 0) ||
	    !ok_eq(md_open(dev, true, 100000, &md), 0))
		return;
	/* One bottom-level leaf per device: over a thousand metadata blocks to read. */
	for (thin_id_t id = 0; id < 1200; id++) {
		struct thin_dev *td;
		uint64_t b;

		ok_eq(thin_md_create_thin(md, id), 0);
		if (!ok_eq(thin_md_open_thin(md, id, &td), 0))
			break;
		ok_eq(thin_md_alloc_data_block(md, &b), 0);
		ok_eq(thin_insert_block(td, 7, b), 0);
		thin_md_close_thin(td);
	}
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_check_progress(dev, ignore_line, log_progress, &p, NULL), 0);
	ok(p.between >= 3);
	ok(!p.backwards);
	ok(p.last_total > 1000 && p.last_done == p.last_total);
	ok_eq(thin_md_close(md), 0);
	blkdev_destroy(dev);
}

struct lines {
	unsigned n;
	char first[320];
};

static void keep_line(void *ctx, const char *line)
{
	struct lines *l = ctx;

	if (!l->n++)
		snprintf(l->first, sizeof(l->first), "%s", line);
}

/*
 * The checker keeps a byte per block and the counts of 255 and more aside (its memory at
 * 1 TiB): a data block shared by 301 devices checks clean, one extra reference is reported
 * with both exact counts.
 */
TEST(check_counts_past_a_byte)
{
	struct lines l = { 0 };
	struct thin_check_stats st;
	struct blkdev *dev;
	struct thin_md *md;
	struct thin_dev *td;
	uint64_t b, nb;
	uint32_t rc = 0;

	if (!ok_eq(memdisk_create(4096, 4096, &dev), 0) ||
	    !ok_eq(md_open(dev, true, 100000, &md), 0))
		return;
	ok_eq(thin_md_create_thin(md, 0), 0);
	if (!ok_eq(thin_md_open_thin(md, 0, &td), 0))
		return;
	ok_eq(thin_md_alloc_data_block(md, &b), 0);
	ok_eq(thin_insert_block(td, 0, b), 0);
	thin_md_close_thin(td);
	/* Each snapshot writes another block of the shared leaf: its copy references b too. */
	for (thin_id_t id = 1; id <= 300; id++) {
		ok_eq(thin_md_create_snap(md, id, 0), 0);
		if (!ok_eq(thin_md_open_thin(md, id, &td), 0))
			break;
		ok_eq(thin_md_alloc_data_block(md, &nb), 0);
		ok_eq(thin_insert_block(td, 1, nb), 0);
		thin_md_close_thin(td);
	}
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_data_block_refcount(md, b, &rc), 0);
	ok_eq(rc, 301);
	ok_eq(thin_check(dev, keep_line, &l, &st), 0);
	ok_eq(l.n, 0);
	ok_eq(st.data_used, 301);
	/* A reference nobody holds: reported with the exact counts on both sides. */
	ok_eq(thin_md_inc_data_range(md, b, b + 1), 0);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_check(dev, keep_line, &l, &st), -EILSEQ);
	ok(strstr(l.first, "expected 301, but got 302 (leaked)") != NULL);
	if (l.n)
		fprintf(stderr, "  %s\n", l.first);
	ok_eq(thin_md_close(md), 0);
	blkdev_destroy(dev);
}
