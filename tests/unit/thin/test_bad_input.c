/* SPDX-License-Identifier: MIT */
/*
 * Bad input: a metadata device that is not dm-thin, has a bad superblock checksum, unknown
 * incompat (or compat_ro) feature flags, an out-of-range data block size (asked for or
 * stored), or a data device smaller than its mappings need gets a clear error and is not
 * written (a fault-injecting wrapper counts the writes). Corrupt trees give errors, never
 * crashes, and the checker names every kind of damage, including what thin_check 0.9.0
 * lets through (leaked data blocks, wrong mapped_blocks).
 */
#include "tests/support/thin_test.h"

#include "core/base/endian.h"
#include "core/pdata/block_manager.h"
#include "core/pdata/btree_internal.h"
#include "core/pdata/space_map_common.h"
#include "core/thin/thin_check.h"
#include "core/thin/thin_format.h"

#include <stddef.h>

#define META_BLOCKS 512

/* A small committed pool: devices 1 (300 mappings) and 2 (its snapshot, 1 remap). */
static bool make_pool(struct blkdev **mem)
{
	struct thin_md *md;
	struct thin_dev *td;
	uint64_t b;

	if (!ok_eq(memdisk_create(META_BLOCKS, 4096, mem), 0) ||
	    !ok_eq(md_open(*mem, true, 1000, &md), 0))
		return false;
	ok_eq(thin_md_create_thin(md, 1), 0);
	ok_eq(thin_md_open_thin(md, 1, &td), 0);
	for (unsigned k = 0; k < 300; k++) {
		ok_eq(thin_md_alloc_data_block(md, &b), 0);
		ok_eq(thin_insert_block(td, k, b), 0);
	}
	thin_md_close_thin(td);
	ok_eq(thin_md_create_snap(md, 2, 1), 0);
	ok_eq(thin_md_open_thin(md, 2, &td), 0);
	ok_eq(thin_md_alloc_data_block(md, &b), 0);
	ok_eq(thin_insert_block(td, 7, b), 0);
	thin_md_close_thin(td);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_close(md), 0);
	return !test_failed();
}

/* Change block @b with @fn, then restamp its checksum with @xor (unless @xor is 0). */
static void patch(struct blkdev *dev, uint64_t b, void (*fn)(uint8_t *d, void *arg), void *arg,
		  uint32_t xor)
{
	uint8_t *d = malloc(4096);

	ok_eq(blkdev_read(dev, b, 1, d), 0);
	fn(d, arg);
	if (xor)
		put_le32(d, dm_bm_checksum(d + 4, 4092, xor));
	ok_eq(blkdev_write(dev, b, 1, d), 0);
	free(d);
}

struct put32 {
	size_t off;
	uint32_t v;
};

static void set32(uint8_t *d, void *arg)
{
	struct put32 *p = arg;

	put_le32(d + p->off, p->v);
}

static void flip(uint8_t *d, void *arg)
{
	d[*(size_t *)arg] ^= 0x10;
}

static void random_fill(uint8_t *d, void *arg)
{
	uint64_t s = 12345;

	for (int i = 0; i < 4096; i++)
		d[i] = (uint8_t)test_rand(&s);
}

/* Open through a write-counting wrapper: returns the error, *writes the writes seen. */
static int open_counting(struct blkdev *mem, struct thin_md_open_opts *o, uint64_t *writes,
			 char *why, size_t len)
{
	struct blkdev *fd;
	struct thin_md *md;
	int r;

	why[0] = 0;
	o->why = why;
	o->why_len = len;
	if (faultdev_create(mem, &fd))
		return -ENOMEM;
	r = thin_md_open(fd, o, &md);
	if (!r)
		thin_md_close(md);
	*writes = faultdev_count(fd, BLKDEV_WRITE);
	blkdev_destroy(fd);
	if (getenv("THIN_DEBUG"))
		printf("  open: %d %s\n", r, why);
	return r;
}

static unsigned count_lines;

static void count_line(void *ctx, const char *line)
{
	const char *want = ctx;

	if (!want || strstr(line, want))
		count_lines++;
	if (getenv("THIN_DEBUG"))
		printf("  check: %s\n", line);
}

/* The checker finds a problem whose text contains @want. */
static bool checker_says(struct blkdev *dev, const char *want)
{
	count_lines = 0;
	if (thin_check(dev, count_line, (void *)want, NULL) != -EILSEQ)
		return false;
	return count_lines > 0;
}

TEST(not_dm_thin)
{
	struct blkdev *mem;
	struct thin_md_open_opts o = { .data_block_sectors = 128, .format = true };
	uint64_t w;
	char why[200];

	if (!make_pool(&mem))
		return;
	patch(mem, 0, random_fill, NULL, 0);
	/* Even with format asked: only an all-zero block 0 is formatted. */
	ok_eq(open_counting(mem, &o, &w, why, sizeof(why)), -EILSEQ);
	ok(strstr(why, "not dm-thin") != NULL);
	ok_eq(w, 0);
	ok(checker_says(mem, "bad magic") || checker_says(mem, "checksum"));
	blkdev_destroy(mem);
}

TEST(bad_superblock_checksum)
{
	struct blkdev *mem;
	struct thin_md_open_opts o = { 0 };
	size_t off = 48; /* trans_id */
	uint64_t w;
	char why[200];

	if (!make_pool(&mem))
		return;
	patch(mem, 0, flip, &off, 0);
	ok_eq(open_counting(mem, &o, &w, why, sizeof(why)), -EILSEQ);
	ok(strstr(why, "checksum") != NULL);
	ok_eq(w, 0);
	ok(checker_says(mem, "checksum"));
	blkdev_destroy(mem);
}

TEST(unknown_feature_flags)
{
	struct blkdev *mem;
	struct thin_md_open_opts o = { 0 };
	struct put32 incompat = { offsetof(struct thin_disk_superblock, incompat_flags), 4 };
	struct put32 compat_ro = { offsetof(struct thin_disk_superblock, compat_ro_flags), 1 };
	struct put32 none = { offsetof(struct thin_disk_superblock, incompat_flags), 0 };
	uint64_t w;
	char why[200];

	if (!make_pool(&mem))
		return;
	patch(mem, 0, set32, &incompat, THIN_SUPERBLOCK_CSUM_XOR);
	ok_eq(open_counting(mem, &o, &w, why, sizeof(why)), -EOPNOTSUPP);
	ok(strstr(why, "incompatible") != NULL);
	ok_eq(w, 0);
	o.read_only = true;
	ok_eq(open_counting(mem, &o, &w, why, sizeof(why)), -EOPNOTSUPP);
	ok(checker_says(mem, "incompatible features"));
	/* compat_ro: read-write refused, read-only allowed. */
	patch(mem, 0, set32, &none, THIN_SUPERBLOCK_CSUM_XOR);
	patch(mem, 0, set32, &compat_ro, THIN_SUPERBLOCK_CSUM_XOR);
	o.read_only = false;
	ok_eq(open_counting(mem, &o, &w, why, sizeof(why)), -EOPNOTSUPP);
	ok(strstr(why, "read-only") != NULL);
	ok_eq(w, 0);
	o.read_only = true;
	ok_eq(open_counting(mem, &o, &w, why, sizeof(why)), 0);
	ok_eq(w, 0);
	blkdev_destroy(mem);
}

TEST(data_block_size_out_of_range)
{
	struct blkdev *mem;
	struct thin_md_open_opts o = { .data_block_sectors = 96 };
	struct put32 stored = { offsetof(struct thin_disk_superblock, data_block_size), 64 };
	uint64_t w;
	char why[200];

	if (!make_pool(&mem))
		return;
	ok_eq(open_counting(mem, &o, &w, why, sizeof(why)), -EINVAL);
	ok(strstr(why, "data block size") != NULL);
	o.data_block_sectors = 256; /* valid, but not the stored one */
	ok_eq(open_counting(mem, &o, &w, why, sizeof(why)), -EINVAL);
	ok(strstr(why, "changing the data block size") != NULL);
	ok_eq(w, 0);
	patch(mem, 0, set32, &stored, THIN_SUPERBLOCK_CSUM_XOR);
	o.data_block_sectors = 0;
	ok_eq(open_counting(mem, &o, &w, why, sizeof(why)), -EILSEQ);
	ok(strstr(why, "out of range") != NULL);
	ok_eq(w, 0);
	ok(checker_says(mem, "data block size"));
	blkdev_destroy(mem);
}

TEST(data_device_smaller_than_mappings)
{
	struct blkdev *mem;
	struct thin_md_open_opts o = { .data_dev_blocks = 200 };
	uint64_t w;
	char why[200];

	if (!make_pool(&mem))
		return;
	ok_eq(open_counting(mem, &o, &w, why, sizeof(why)), -ENOSPC);
	ok(strstr(why, "too small") != NULL);
	ok_eq(w, 0);
	/* Exactly what the mappings need is fine (the map shrinks, a commit writes it). */
	o.data_dev_blocks = 301;
	ok_eq(open_counting(mem, &o, &w, why, sizeof(why)), 0);
	ok_eq(check_dev(mem), 0);
	blkdev_destroy(mem);
}

TEST(not_formatted)
{
	struct blkdev *mem;
	struct thin_md_open_opts o = { .data_block_sectors = 128 };
	uint64_t w;
	char why[200];

	if (!ok_eq(memdisk_create(META_BLOCKS, 4096, &mem), 0))
		return;
	ok_eq(open_counting(mem, &o, &w, why, sizeof(why)), -ENODATA);
	ok_eq(w, 0);
	o.read_only = true;
	o.format = true;
	ok_eq(open_counting(mem, &o, &w, why, sizeof(why)), -EINVAL);
	ok_eq(w, 0);
	blkdev_destroy(mem);
}

/* Find the block of the first mapping-tree leaf of device 1 via the engine. */
static uint64_t find_mapping_leaf(struct blkdev *mem)
{
	uint8_t *d = malloc(4096);
	uint64_t found = 0;

	/* A bottom-level leaf of device 1 holds keys 0.. and values (data << 24). */
	for (uint64_t b = 1; b < META_BLOCKS && !found; b++) {
		if (blkdev_read(mem, b, 1, d))
			break;
		if (get_le32(d + 4) == 2 && get_le32(d + 16) >= 80 && get_le32(d + 24) == 8 &&
		    get_le64(d + 32) == 0 && get_le64(d + 40) == 1)
			found = b;
	}
	free(d);
	return found;
}

TEST(corrupt_trees_give_errors_and_checker_names_them)
{
	struct blkdev *mem;
	struct thin_md *md;
	struct thin_dev *td;
	struct thin_lookup_result lr;
	uint64_t leaf;
	size_t off = 100;

	if (!make_pool(&mem))
		return;
	leaf = find_mapping_leaf(mem);
	if (!ok(leaf))
		return;
	patch(mem, leaf, flip, &off, 0);
	ok(checker_says(mem, "bad checksum in btree node"));
	if (ok_eq(md_open(mem, false, 0, &md), 0)) {
		ok_eq(thin_md_open_thin(md, 1, &td), 0);
		ok_eq(thin_find_block(td, 5, true, &lr), -EILSEQ);
		thin_md_close_thin(td);
		ok_eq(thin_md_close(md), 0);
	}
	/* Same block, valid checksum but keys out of order. */
	{
		struct put32 k = { 32 + 8, 7 }; /* key[1] = 7 > key[2] = 2 */

		patch(mem, leaf, flip, &off, 0); /* undo */
		patch(mem, leaf, set32, &k, 121107u);
		ok(checker_says(mem, "out of order"));
	}
	blkdev_destroy(mem);
}

TEST(checker_sees_what_thin_check_skips)
{
	struct blkdev *mem;
	struct thin_md *md;
	char img[512];

	snprintf(img, sizeof(img), "%s/leak.bin", test_tmpdir());
	if (!make_pool(&mem))
		return;
	/* A data block with a reference but no mapping: leaked. */
	if (!ok_eq(md_open(mem, false, 0, &md), 0))
		return;
	ok_eq(thin_md_inc_data_range(md, 900, 901), 0);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_close(md), 0);
	ok(checker_says(mem, "data reference counts differ for block 900"));
	/* thin_check 0.9.0 does not count data blocks: it passes this image. */
	ok_eq(dev_to_file(mem, img), 0);
	ok_eq(tpt_check(img, NULL), 0);
	blkdev_destroy(mem);

	/* mapped_blocks that disagrees with the mappings. */
	if (!make_pool(&mem))
		return;
	{
		uint8_t *d = malloc(4096);
		uint64_t det = 0;

		/* The details leaf: value size 24, max 126. */
		for (uint64_t b = 1; b < META_BLOCKS && !det; b++)
			if (!blkdev_read(mem, b, 1, d) && get_le32(d + 4) == 2 &&
			    get_le32(d + 24) == 24 && get_le32(d + 16) == 2)
				det = b;
		free(d);
		if (ok(det)) {
			struct put32 mb = { 32 + 8 * 126, 299 }; /* device 1: 300 -> 299 */

			patch(mem, det, set32, &mb, 121107u);
			ok(checker_says(mem, "mapped_blocks is 299, but it has 300 mappings"));
		}
	}
	blkdev_destroy(mem);
}

struct data_sm_loc {
	uint64_t index_leaf; /* the data space map's index tree (one leaf here) */
	size_t ie_off;	     /* index entry 0 in it */
	uint64_t bitmap;     /* bitmap 0 */
};

/* Where make_pool's data space map lives, from the superblock. */
static bool find_data_sm(struct blkdev *mem, struct data_sm_loc *l)
{
	uint8_t *d = malloc(4096);
	const struct thin_disk_superblock *sb = (const void *)d;
	bool found = false;

	if (!blkdev_read(mem, 0, 1, d)) {
		l->index_leaf = get_le64(sb->data_space_map_root + 16);
		if (!blkdev_read(mem, l->index_leaf, 1, d) && get_le32(d + 4) == 2 &&
		    get_le32(d + 24) == 16 && get_le64(d + 32) == 0) {
			l->ie_off = 32 + 8 * (size_t)get_le32(d + 20);
			l->bitmap = get_le64(d + l->ie_off);
			found = true;
		}
	}
	free(d);
	return found;
}

static void clear_entry(uint8_t *d, void *arg)
{
	uint64_t e = *(uint64_t *)arg;

	d[16 + e / 4] &= (uint8_t) ~(3u << (2 * (e % 4)));
}

struct checked {
	int r;
	struct thin_check_stats st;
};

static struct checked check_quiet(struct blkdev *mem)
{
	struct checked c;

	count_lines = 0;
	c.r = thin_check(mem, count_line, NULL, &c.st);
	return c;
}

/*
 * Space-map counters that disagree with the bitmaps (index entry nr_free and
 * none_free_before, root nr_allocated) are warnings: the check passes, and after a
 * read-write open and a commit they are right again. A bitmap entry that says free where
 * a mapping references the block is damage: an error.
 */
TEST(space_map_counters_warn_damage_errs)
{
	struct blkdev *mem;
	struct data_sm_loc l;
	struct thin_md *md;
	struct checked c;

	if (!make_pool(&mem) || !ok(find_data_sm(mem, &l)))
		return;
	{
		struct put32 nf = { l.ie_off + 8, 0 };	 /* nr_free: read back below */
		struct put32 nfb = { l.ie_off + 12, 0 }; /* none_free_before */
		struct put32 alloc = {
			offsetof(struct thin_disk_superblock, data_space_map_root) + 8, 0
		};
		uint8_t *d = malloc(4096);

		ok_eq(blkdev_read(mem, l.index_leaf, 1, d), 0);
		nf.v = get_le32(d + l.ie_off + 8) - 1;
		nfb.v = get_le32(d + l.ie_off + 12) + 50;
		ok_eq(blkdev_read(mem, 0, 1, d), 0);
		alloc.v = (uint32_t)get_le64(d + alloc.off) + 2;
		free(d);
		patch(mem, l.index_leaf, set32, &nf, BTREE_CSUM_XOR);
		patch(mem, l.index_leaf, set32, &nfb, BTREE_CSUM_XOR);
		patch(mem, 0, set32, &alloc, THIN_SUPERBLOCK_CSUM_XOR);
	}
	c = check_quiet(mem);
	ok_eq(c.r, 0);
	ok_eq(c.st.problems, 0);
	ok_eq(c.st.warnings, 3);
	ok_eq(count_lines, 3);
	/* Read-only opens leave them; a read-write open and a commit correct them. */
	if (ok_eq(md_open(mem, false, 0, &md), 0)) {
		uint64_t nr_free;

		ok_eq(thin_md_get_free_data_blocks(md, &nr_free), 0);
		ok_eq(nr_free, 1000 - 301);
		ok_eq(thin_md_commit(md), 0);
		ok_eq(thin_md_close(md), 0);
	}
	c = check_quiet(mem);
	ok_eq(c.r, 0);
	ok_eq(c.st.problems, 0);
	ok_eq(c.st.warnings, 0);

	/* Damage: block 5 (mapped by both devices) marked free in the bitmap. */
	{
		uint64_t e = 5;

		patch(mem, l.bitmap, clear_entry, &e, BITMAP_CSUM_XOR);
	}
	ok(checker_says(mem, "data reference counts differ for block 5"));
	c = check_quiet(mem);
	ok_eq(c.r, -EILSEQ);
	ok(c.st.problems >= 1);
	blkdev_destroy(mem);
}

/*
 * An abort that itself fails (the metadata disk stopped answering) leaves nothing to read
 * from: every call must then say -EIO, never touch what the failed abort tore down.
 */
TEST(failed_abort_leaves_every_call_failing_cleanly)
{
	struct blkdev *mem, *fd;
	struct thin_md *md;
	struct thin_md_view v;
	uint64_t u;
	uint32_t c;

	if (!ok_eq(memdisk_create(1024, 4096, &mem), 0) || !ok_eq(faultdev_create(mem, &fd), 0))
		return;
	/* A tiny cache, and more metadata than fits in it, so the abort has to read. */
	struct thin_md_open_opts o = { .data_block_sectors = 128,
				       .format = true,
				       .data_dev_blocks = 1000,
				       .cache_blocks = 8 };

	if (!ok_eq(thin_md_open(fd, &o, &md), 0))
		return;
	for (thin_id_t id = 1; id <= 400; id++)
		ok_eq(thin_md_create_thin(md, id), 0);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_delete_thin(md, 2), 0);
	/* Read every device's own tree, so the superblock and space-map blocks leave the cache. */
	for (thin_id_t id = 3; id <= 400; id++) {
		struct thin_dev *td;
		struct thin_lookup_result lr;

		if (ok_eq(thin_md_open_thin(md, id, &td), 0)) {
			ok_eq(thin_find_block(td, 0, true, &lr), -ENODATA);
			thin_md_close_thin(td);
		}
	}
	/* Every read from now on fails, so the abort cannot reload the committed state. */
	faultdev_fail_nth(fd, BLKDEV_READ, 1, true);
	ok(thin_md_abort(md) != 0);
	ok_eq(thin_md_device_exists(md, 1), -EIO);
	ok_eq(thin_md_get_free_data_blocks(md, &u), -EIO);
	ok_eq(thin_md_get_data_dev_size(md, &u), -EIO);
	ok_eq(thin_md_get_free_metadata_blocks(md, &u), -EIO);
	ok_eq(thin_md_get_metadata_dev_size(md, &u), -EIO);
	ok_eq(thin_md_data_block_refcount(md, 0, &c), -EIO);
	ok_eq(thin_md_data_block_is_shared(md, 0), -EIO);
	ok_eq(thin_md_view_current(md, &v), -EIO);
	ok_eq(thin_md_view_held(md, 0, &v), -EIO);
	ok_eq(thin_md_create_thin(md, 3), -EIO);
	ok_eq(thin_md_commit(md), -EIO);
	/* The disk answers again: an abort brings back the committed state. */
	faultdev_fail_nth(fd, BLKDEV_READ, 0, false);
	if (ok_eq(thin_md_abort(md), 0)) {
		ok_eq(thin_md_device_exists(md, 1), 1);
		ok_eq(thin_md_device_exists(md, 2), 1);
	}
	ok_eq(thin_md_close(md), 0);
	blkdev_destroy(fd);
	blkdev_destroy(mem);
}
