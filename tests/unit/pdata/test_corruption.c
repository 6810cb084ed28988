/* SPDX-License-Identifier: MIT */
/*
 * Corruption tests: one flipped bit in a block of each kind (superblock, internal node,
 * leaf, metadata index, space-map bitmap) and a block copied to the wrong place. The open
 * or the first read of that block must fail with -EILSEQ / -ENOTBLK; nothing crashes and
 * no lookup returns a value that differs from what was written.
 */
#include "tests/support/pdata_workload.h"

#define META_BLKS 2048
#define NKEYS	  3000

struct image {
	struct blkdev *mem;
	dm_block_t sb, internal, leaf, index, bitmap, dbitmap;
	uint64_t hash;
};

/* A pool with a two-level bottom tree; remember one block of each kind. */
static bool build(struct image *im)
{
	struct pool p;
	struct dm_btree_info tl;
	uint64_t dev = 7;
	dm_block_t sub, root;
	uint8_t v[8];
	struct dm_block *b;

	memset(im, 0, sizeof(*im));
	if (!ok_eq(memdisk_create(META_BLKS, 4096, &im->mem), 0) ||
	    !ok_eq(pool_format(&p, im->mem, 64, 8192), 0))
		return false;
	tl = wl_tl_info(&p);
	ok_eq(dm_btree_empty(&p.map_info, &sub), 0);
	put_le64(v, sub);
	ok_eq(dm_btree_insert(&tl, p.map_root, &dev, v, &root), 0);
	p.map_root = root;
	for (uint64_t k = 0; k < NKEYS; k++) {
		uint64_t keys[2] = { dev, k * 3 };

		ok_eq(pool_new_mapping(&p, 1, v), 0);
		ok_eq(dm_btree_insert(&p.map_info, p.map_root, keys, v, &root), 0);
		p.map_root = root;
	}
	ok_eq(pool_commit(&p), 0);
	ok_eq(pool_check(&p), 0);
	ok_eq(wl_hash(&p, &im->hash), 0);
	/* Find the blocks: bottom root (internal), one of its leaves, sm blocks. */
	ok_eq(dm_btree_lookup(&tl, p.map_root, &dev, v), 0);
	im->internal = get_le64(v);
	ok_eq(dm_bm_read_lock(p.bm, im->internal, &btree_node_validator, &b), 0);
	ok_eq(node_flags((struct btree_node *)dm_block_data(b)), INTERNAL_NODE);
	im->leaf = value64(dm_block_data(b), 1);
	dm_bm_unlock(b);
	ok_eq(dm_bm_read_lock(p.bm, 0, &sb_validator, &b), 0);
	{
		struct disk_sm_root *mr = (void *)((uint8_t *)dm_block_data(b) + SB_OFF_META_SM);
		struct disk_sm_root *dr = (void *)((uint8_t *)dm_block_data(b) + SB_OFF_DATA_SM);
		struct dm_btree_info idx = { p.tm, 1, { NULL, 16, NULL, NULL, NULL } };
		struct disk_index_entry ie;
		uint64_t zero = 0;

		im->index = get_le64(&mr->bitmap_root);
		ok_eq(dm_btree_lookup(&idx, get_le64(&dr->bitmap_root), &zero, &ie), 0);
		im->dbitmap = get_le64(&ie.blocknr);
	}
	dm_bm_unlock(b);
	ok_eq(dm_bm_read_lock(p.bm, im->index, &dm_sm_index_validator, &b), 0);
	im->bitmap = get_le64(&((struct disk_metadata_index *)dm_block_data(b))->index[0].blocknr);
	dm_bm_unlock(b);
	pool_close(&p);
	return !test_failed();
}

static void flip(struct blkdev *dev, dm_block_t b, unsigned bit)
{
	uint8_t *buf = malloc(4096);

	blkdev_read(dev, b, 1, buf);
	buf[bit / 8 % 4096] ^= (uint8_t)(1u << (bit % 8));
	blkdev_write(dev, b, 1, buf);
	free(buf);
}

/* Open, walk everything, count every metadata and data block. The first error, or 0. */
static int exercise(struct image *im, uint64_t *hash)
{
	struct pool p;
	dm_block_t nr;
	uint32_t c;
	int r = pool_open(&p, im->mem, 64);

	if (r)
		return r;
	r = wl_hash(&p, hash);
	if (!r)
		r = dm_sm_get_nr_blocks(p.msm, &nr);
	for (dm_block_t b = 0; b < nr && !r; b++)
		r = dm_sm_get_count(p.msm, b, &c);
	if (!r)
		r = dm_sm_get_nr_blocks(p.dsm, &nr);
	for (dm_block_t b = 0; b < nr && !r; b++)
		r = dm_sm_get_count(p.dsm, b, &c);
	pool_close(&p);
	return r;
}

TEST(flipped_bit_in_each_kind_of_block)
{
	uint64_t seed = test_seed();
	static const char *names[] = { "superblock", "internal", "leaf",
				       "index",	     "bitmap",	 "data bitmap" };

	for (int kind = 0; kind < 6 && !test_failed(); kind++) {
		for (int trial = 0; trial < 40 && !test_failed(); trial++) {
			struct image im;
			dm_block_t blocks[6];
			uint64_t h = 0;
			unsigned bit =
			    (unsigned)((seed + (uint64_t)trial * 2654435761u + kind) % (4096 * 8));
			int r;

			if (!build(&im))
				return;
			blocks[0] = im.sb;
			blocks[1] = im.internal;
			blocks[2] = im.leaf;
			blocks[3] = im.index;
			blocks[4] = im.bitmap;
			blocks[5] = im.dbitmap;
			/* Keep the first trial on the header, where the interesting fields are. */
			if (trial < 8)
				bit = trial * 37 % 256;
			flip(im.mem, blocks[kind], bit);
			r = exercise(&im, &h);
			if (!ok(r == -EILSEQ || r == -ENOTBLK))
				printf("  %s block %llu bit %u: got %d\n", names[kind],
				       (unsigned long long)blocks[kind], bit, r);
			blkdev_destroy(im.mem);
		}
	}
}

TEST(block_in_the_wrong_place)
{
	struct image im;
	uint8_t *buf = malloc(4096);
	uint64_t h;

	if (!build(&im))
		return;
	/* A valid leaf copied over another leaf's place: right checksum, wrong location. */
	blkdev_read(im.mem, im.leaf, 1, buf);
	blkdev_write(im.mem, im.internal, 1, buf);
	ok_eq(exercise(&im, &h), -ENOTBLK);
	blkdev_destroy(im.mem);
	free(buf);
}

TEST(uncorrupted_image_reads_back)
{
	struct image im;
	uint64_t h = 0;

	/* The control: without damage the same exercise succeeds with the same contents. */
	if (!build(&im))
		return;
	ok_eq(exercise(&im, &h), 0);
	ok_eq(h, im.hash);
	blkdev_destroy(im.mem);
}
