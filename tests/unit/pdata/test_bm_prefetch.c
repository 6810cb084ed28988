/* SPDX-License-Identifier: MIT */
/*
 * dm_bm_prefetch() (the pool's open reads its space-map bitmaps with it: docs/firmware.md
 * "Boot breakdown"): the blocks are read with requests in flight together (on a device that
 * completes them out of order), land in the cache with the device's contents, are checked
 * as the type the first lock asks for, and the call stays within its limits (duplicates,
 * blocks past the end, a quarter of the cache). And a pool reopened over such a device still
 * reads its space maps right.
 */
#include "tests/support/pdata_pool.h"
#include "tests/support/pool_test.h"

#define NR 128

/* Write block i of @bm as a leaf node tagged i (the node validator stamps it). */
static bool write_nodes(struct dm_block_manager *bm, dm_block_t first, dm_block_t end)
{
	struct dm_block *b;

	for (dm_block_t i = first; i < end; i++) {
		if (!ok_eq(dm_bm_write_lock_zero(bm, i, &btree_node_validator, &b), 0))
			return false;
		put_le32((uint8_t *)dm_block_data(b) + 4, LEAF_NODE);
		put_le32((uint8_t *)dm_block_data(b) + 20, 252);
		put_le32((uint8_t *)dm_block_data(b) + 24, 8);
		put_le64((uint8_t *)dm_block_data(b) + 100, i);
		dm_bm_unlock(b);
	}
	return ok_eq(dm_bm_flush(bm), 0);
}

TEST(reads_in_flight_together_then_hits)
{
	struct blkdev *mem;
	struct oodev oo;
	struct dm_block_manager *bm;
	struct dm_bm_stats st0, st;
	struct dm_block *b;
	dm_block_t locs[DM_BM_PREFETCH_MAX + 8];
	unsigned n = 0;

	if (!ok_eq(memdisk_create(NR, 4096, &mem), 0))
		return;
	oodev_init(&oo, mem, test_seed());
	if (!ok_eq(dm_block_manager_create(&oo.dev, 1024, &bm), 0))
		return;
	if (!write_nodes(bm, 1, 100) || !ok_eq(dm_bm_drop_clean(bm), 0))
		return;
	/* 40 distinct blocks, 3 duplicates, one past the end, one already cached. */
	ok_eq(dm_bm_read_lock(bm, 7, &btree_node_validator, &b), 0);
	dm_bm_unlock(b);
	for (dm_block_t i = 0; i < 40; i++)
		locs[n++] = 3 + 2 * i;
	locs[n++] = 5;
	locs[n++] = 9;
	locs[n++] = 5;
	locs[n++] = NR + 3;
	oo.max_depth = 0;
	dm_bm_get_stats(bm, &st0);
	ok_eq(dm_bm_prefetch(bm, locs, n), 0);
	dm_bm_get_stats(bm, &st);
	ok_eq(st.reads - st0.reads, 39); /* 40 distinct, block 7 already cached */
	ok(oo.max_depth >= 39);		 /* all in flight at once, not one at a time */
	for (dm_block_t i = 0; i < 40; i++) {
		if (!ok_eq(dm_bm_read_lock(bm, 3 + 2 * i, &btree_node_validator, &b), 0))
			break;
		ok_eq(get_le64((uint8_t *)dm_block_data(b) + 100), 3 + 2 * i);
		dm_bm_unlock(b);
	}
	dm_bm_get_stats(bm, &st);
	ok_eq(st.reads - st0.reads, 39); /* every lock was a hit */
	/* Checked as the lock's type: a node asked for as a bitmap fails (another salt). */
	locs[0] = 60;
	locs[1] = 62;
	ok_eq(dm_bm_prefetch(bm, locs, 2), 0);
	ok_eq(dm_bm_read_lock(bm, 60, &dm_sm_bitmap_validator, &b), -EILSEQ);
	ok_eq(dm_bm_read_lock(bm, 62, &btree_node_validator, &b), 0);
	dm_bm_unlock(b);
	ok_eq(dm_bm_locks_held(bm), 0);
	ok_eq(dm_bm_misuse_count(bm), 0);
	dm_block_manager_destroy(bm);
	blkdev_destroy(mem);
}

/* A 16-block cache takes at most 4 blocks from one call, and keeps working. */
TEST(quarter_of_the_cache)
{
	struct blkdev *mem;
	struct dm_block_manager *bm;
	struct dm_bm_stats st0, st;
	struct dm_block *b;
	dm_block_t locs[20];

	if (!ok_eq(memdisk_create(NR, 4096, &mem), 0) ||
	    !ok_eq(dm_block_manager_create(mem, 16, &bm), 0))
		return;
	if (!write_nodes(bm, 1, 60) || !ok_eq(dm_bm_drop_clean(bm), 0))
		return;
	for (unsigned i = 0; i < 20; i++)
		locs[i] = 30 + i;
	dm_bm_get_stats(bm, &st0);
	ok_eq(dm_bm_prefetch(bm, locs, 20), 0);
	dm_bm_get_stats(bm, &st);
	ok_eq(st.reads - st0.reads, 4);
	ok(st.cached <= 16);
	for (unsigned i = 0; i < 20; i++) {
		if (!ok_eq(dm_bm_read_lock(bm, 30 + i, &btree_node_validator, &b), 0))
			break;
		ok_eq(get_le64((uint8_t *)dm_block_data(b) + 100), 30 + i);
		dm_bm_unlock(b);
	}
	dm_block_manager_destroy(bm);
	blkdev_destroy(mem);
}

/* A data space map over several bitmaps, recounted through the prefetch on an out-of-order
 * device: the counts come out as they were. */
TEST(recount_over_out_of_order_device)
{
	struct blkdev *mem;
	struct oodev oo;
	struct pool p;
	dm_block_t nr_data = 5 * ENTRIES_PER_BLOCK + 7, nfree, b;
	bool changed = true;

	if (!ok_eq(memdisk_create(2048, 4096, &mem), 0))
		return;
	oodev_init(&oo, mem, test_seed());
	if (!ok_eq(pool_format(&p, &oo.dev, 64, nr_data), 0))
		return;
	for (int i = 0; i < 3 * (int)ENTRIES_PER_BLOCK / 2; i++)
		if (!ok_eq(dm_sm_new_block(p.dsm, &b), 0))
			break;
	ok_eq(pool_commit(&p), 0);
	pool_close(&p);
	ok_eq(pool_open(&p, &oo.dev, 64), 0);
	ok_eq(dm_bm_drop_clean(p.bm), 0);
	oo.max_depth = 0;
	ok_eq(dm_sm_disk_recount(p.dsm, &changed), 0);
	ok(!changed);
	ok(oo.max_depth >= 6); /* the six bitmaps read together */
	ok_eq(dm_sm_get_nr_free(p.dsm, &nfree), 0);
	ok_eq(nfree, nr_data - 3 * ENTRIES_PER_BLOCK / 2);
	pool_close(&p);
	blkdev_destroy(mem);
}
