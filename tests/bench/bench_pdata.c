/* SPDX-License-Identifier: MIT */
/*
 * Persistent-data figures (printed, not asserted): inserts/s and lookups/s for 1,000,000
 * keys in a single-level tree with a warm cache and with a cache of 1% of the tree; commit
 * time for 1, 100 and 10,000 dirty blocks; memory per cached block.
 */
#include "core/pdata/btree.h"
#include "core/pdata/space_map_disk.h"
#include "host/hostdev.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct env {
	struct blkdev *dev;
	struct dm_block_manager *bm;
	struct dm_transaction_manager *tm;
	struct dm_space_map *sm;
	struct dm_btree_info info;
	dm_block_t root;
};

static int env_init(struct env *e, unsigned cache)
{
	struct dm_block *sb;
	int r = memdisk_create(65536, 4096, &e->dev);

	if (!r)
		r = dm_block_manager_create(e->dev, cache, &e->bm);
	if (!r)
		r = dm_tm_create_with_sm(e->bm, 0, &e->tm, &e->sm);
	e->info = (struct dm_btree_info){ e->tm, 1, { NULL, 8, NULL, NULL, NULL } };
	if (!r)
		r = dm_btree_empty(&e->info, &e->root);
	/* An unvalidated block 0 stands in for a superblock. */
	if (!r)
		r = dm_tm_pre_commit(e->tm);
	if (!r)
		r = dm_bm_write_lock_zero(e->bm, 0, NULL, &sb);
	return r ? r : dm_tm_commit(e->tm, sb);
}

static int env_commit(struct env *e)
{
	struct dm_block *sb;
	int r = dm_tm_pre_commit(e->tm);

	if (!r)
		r = dm_bm_write_lock(e->bm, 0, NULL, &sb);
	return r ? r : dm_tm_commit(e->tm, sb);
}

static void env_free(struct env *e)
{
	dm_tm_destroy(e->tm);
	dm_sm_destroy(e->sm);
	dm_block_manager_destroy(e->bm);
	blkdev_destroy(e->dev);
}

static void run(const char *label, unsigned cache, unsigned n)
{
	struct env e;
	uint64_t key, v;
	double t0, t1, t2;

	if (env_init(&e, cache)) {
		printf("setup failed\n");
		return;
	}
	t0 = now();
	for (unsigned i = 0; i < n; i++) {
		key = (uint64_t)i * 2654435761u % 1000003;
		v = i;
		if (dm_btree_insert(&e.info, e.root, &key, &v, &e.root)) {
			printf("insert failed\n");
			break;
		}
		if (i % 10000 == 9999)
			env_commit(&e);
	}
	env_commit(&e);
	t1 = now();
	for (unsigned i = 0; i < n; i++) {
		key = (uint64_t)i * 2654435761u % 1000003;
		if (dm_btree_lookup(&e.info, e.root, &key, &v)) {
			printf("lookup failed\n");
			break;
		}
	}
	t2 = now();
	printf("%-28s cache %6u blocks: %9.0f inserts/s %9.0f lookups/s\n", label, cache,
	       n / (t1 - t0), n / (t2 - t1));
	env_free(&e);
}

static void commit_cost(unsigned dirty)
{
	struct env e;
	double t0, best = 1e9;

	if (env_init(&e, 16384))
		return;
	for (int rep = 0; rep < 3; rep++) {
		for (unsigned i = 0; i < dirty; i++) {
			dm_block_t b;
			struct dm_block *blk;

			if (dm_tm_new_block(e.tm, NULL, &blk))
				return;
			dm_tm_unlock(e.tm, blk);
			(void)b;
		}
		t0 = now();
		env_commit(&e);
		if (now() - t0 < best)
			best = now() - t0;
	}
	printf("commit with %5u dirty blocks: %8.3f ms\n", dirty, best * 1e3);
	env_free(&e);
}

int main(void)
{
	struct env e;
	struct dm_bm_stats st;
	const unsigned n = 1000000;

	/* 1M keys of 8-byte values fill ~6,000 leaves: 65536 is warm, 64 is 1%. */
	run("1M keys, warm cache", 65536, n);
	run("1M keys, cache = 1% of tree", 64, n);
	commit_cost(1);
	commit_cost(100);
	commit_cost(10000);
	if (!env_init(&e, 1024)) {
		dm_bm_get_stats(e.bm, &st);
		printf("memory per cached block: %zu bytes (4096 data + bookkeeping)\n",
		       st.bytes_per_block);
		env_free(&e);
	}
	return 0;
}
