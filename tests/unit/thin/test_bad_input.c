/* SPDX-License-Identifier: MIT */
/*
 * Bad input: a metadata device that is not dm-thin, has a bad superblock checksum, unknown
 * incompat (or compat_ro) feature flags, an out-of-range data block size (asked for or
 * stored), or a data device smaller than its mappings need gets a clear error and is not
 * written (a fault-injecting wrapper counts the writes). Corrupt trees give errors, never
 * crashes, and the checker names every kind of damage, including what thin_check 0.9.0
 * lets through (leaked data blocks, wrong mapped_blocks).
 */
#include "tests/unit/thin/thin_test.h"

#include "core/base/endian.h"
#include "core/pdata/block_manager.h"
#include "core/thin/thin_format.h"

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
