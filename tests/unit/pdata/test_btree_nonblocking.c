/* SPDX-License-Identifier: MIT */
/*
 * dm_btree_lookup_nonblocking(): answers from cached nodes exactly as dm_btree_lookup()
 * does, and says -EWOULDBLOCK, without reading the device or touching the caller's buffer,
 * as soon as a node on the path is not cached.
 */
#include "tests/support/pdata_pool.h"

#define DEV_BLOCKS 1024
#define CACHE	   16
/* Device 1 maps the even blocks below 2 * NKEYS: several leaves under an internal root. */
#define NKEYS 1000

static uint64_t device_reads(struct pool *p)
{
	struct dm_bm_stats st;

	dm_bm_get_stats(p->bm, &st);
	return st.reads;
}

/* A committed pool with devices 1 (NKEYS mappings) and 2 (3 mappings), reopened cold. */
static bool cold_pool(struct blkdev **dev, struct pool *p)
{
	if (!ok_eq(memdisk_create(DEV_BLOCKS, 4096, dev), 0))
		return false;
	if (!ok_eq(pool_format(p, *dev, CACHE, 2 * NKEYS), 0))
		return false;
	for (uint64_t i = 0; i < NKEYS + 3 && !test_failed(); i++) {
		uint64_t keys[2] = { i < NKEYS ? 1 : 2, i < NKEYS ? 2 * i : i - NKEYS };
		uint8_t v[8];

		ok_eq(pool_new_mapping(p, 1, v), 0);
		ok_eq(dm_btree_insert(&p->map_info, p->map_root, keys, v, &p->map_root), 0);
	}
	if (!ok_eq(pool_commit(p), 0))
		return false;
	pool_close(p);
	/* A fresh block manager: only what opening the space maps read is cached. */
	return ok_eq(pool_open(p, *dev, CACHE), 0);
}

TEST(found_from_cache_would_block_otherwise)
{
	struct blkdev *dev;
	struct pool p;
	uint64_t k500[2] = { 1, 500 }, k501[2] = { 1, 501 }, last[2] = { 1, 2 * NKEYS - 2 },
		 nodev[2] = { 7, 0 }, dev2[2] = { 2, 1 }, reads;
	uint8_t v[8], want[8];

	if (!cold_pool(&dev, &p))
		return;

	/* Nothing of the mapping tree is cached yet: the first node would need a read. */
	reads = device_reads(&p);
	memset(v, 0xaa, sizeof(v));
	ok_eq(dm_btree_lookup_nonblocking(&p.map_info, p.map_root, k500, v), -EWOULDBLOCK);
	ok_eq(device_reads(&p), reads);
	ok_eq(get_le64(v), 0xaaaaaaaaaaaaaaaaull); /* the buffer is left alone */
	ok_eq(dm_bm_locks_held(p.bm), 0);

	/* The blocking lookup reads the path; now the same lookup answers from the cache. */
	ok_eq(dm_btree_lookup(&p.map_info, p.map_root, k500, want), 0);
	reads = device_reads(&p);
	ok_eq(dm_btree_lookup_nonblocking(&p.map_info, p.map_root, k500, v), 0);
	ok(!memcmp(v, want, sizeof(v)));
	/* Absent keys on cached paths: -ENODATA, as dm_btree_lookup says. */
	ok_eq(dm_btree_lookup_nonblocking(&p.map_info, p.map_root, k501, v), -ENODATA);
	ok_eq(dm_btree_lookup(&p.map_info, p.map_root, k501, v), -ENODATA);
	ok_eq(dm_btree_lookup_nonblocking(&p.map_info, p.map_root, nodev, v), -ENODATA);
	ok_eq(device_reads(&p), reads);

	/* Top level and device 1's root are cached, the leaf holding the last key is not. */
	ok_eq(dm_btree_lookup_nonblocking(&p.map_info, p.map_root, last, v), -EWOULDBLOCK);
	/* Device 2's tree is a single leaf, not read yet either. */
	ok_eq(dm_btree_lookup_nonblocking(&p.map_info, p.map_root, dev2, v), -EWOULDBLOCK);
	ok_eq(device_reads(&p), reads);
	ok_eq(dm_bm_locks_held(p.bm), 0);

	/* Once read, both answer without waiting, with the blocking lookup's values. */
	ok_eq(dm_btree_lookup(&p.map_info, p.map_root, last, want), 0);
	ok_eq(dm_btree_lookup_nonblocking(&p.map_info, p.map_root, last, v), 0);
	ok(!memcmp(v, want, sizeof(v)));
	ok_eq(dm_btree_lookup(&p.map_info, p.map_root, dev2, want), 0);
	ok_eq(dm_btree_lookup_nonblocking(&p.map_info, p.map_root, dev2, v), 0);
	ok(!memcmp(v, want, sizeof(v)));
	ok_eq(dm_bm_misuse_count(p.bm), 0);
	pool_close(&p);
	blkdev_destroy(dev);
}

TEST(evicted_node_would_block_again)
{
	struct blkdev *dev;
	struct pool p;
	uint64_t k[2] = { 1, 1000 }, reads;
	uint8_t v[8], want[8];
	struct dm_block *b;

	if (!cold_pool(&dev, &p))
		return;
	ok_eq(dm_btree_lookup(&p.map_info, p.map_root, k, want), 0);
	ok_eq(dm_btree_lookup_nonblocking(&p.map_info, p.map_root, k, v), 0);
	ok(!memcmp(v, want, sizeof(v)));
	/* Read more unrelated blocks than the cache holds: the path is evicted. */
	for (dm_block_t i = DEV_BLOCKS - 2 * CACHE; i < DEV_BLOCKS; i++) {
		if (!ok_eq(dm_bm_read_lock(p.bm, i, NULL, &b), 0))
			break;
		dm_bm_unlock(b);
	}
	reads = device_reads(&p);
	ok_eq(dm_btree_lookup_nonblocking(&p.map_info, p.map_root, k, v), -EWOULDBLOCK);
	ok_eq(device_reads(&p), reads);
	pool_close(&p);
	blkdev_destroy(dev);
}

TEST(single_level_tree_copies_whole_value)
{
	struct blkdev *dev;
	struct pool p;
	uint64_t key = 5, other = 6;
	uint8_t v[24], want[24];

	if (!ok_eq(memdisk_create(DEV_BLOCKS, 4096, &dev), 0) ||
	    !ok_eq(pool_format(&p, dev, CACHE, 16), 0))
		return;
	for (unsigned i = 0; i < sizeof(want); i++)
		want[i] = (uint8_t)(i + 1);
	ok_eq(dm_btree_insert(&p.details_info, p.details_root, &key, want, &p.details_root), 0);
	ok_eq(pool_commit(&p), 0);
	pool_close(&p);
	if (!ok_eq(pool_open(&p, dev, CACHE), 0))
		return;
	ok_eq(dm_btree_lookup_nonblocking(&p.details_info, p.details_root, &key, v), -EWOULDBLOCK);
	ok_eq(dm_btree_lookup(&p.details_info, p.details_root, &key, v), 0);
	memset(v, 0, sizeof(v));
	ok_eq(dm_btree_lookup_nonblocking(&p.details_info, p.details_root, &key, v), 0);
	ok(!memcmp(v, want, sizeof(v)));
	ok_eq(dm_btree_lookup_nonblocking(&p.details_info, p.details_root, &other, v), -ENODATA);
	pool_close(&p);
	blkdev_destroy(dev);
}
