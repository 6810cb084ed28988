/* SPDX-License-Identifier: MIT */
/*
 * On-disk compatibility: metadata written by core/pdata (a thin-pool layout built by the
 * test fixture: superblock, two-level mapping tree with a snapshot sharing a subtree,
 * details tree, both space maps) must pass thin_check from thin-provisioning-tools, the
 * reference checker, which verifies node format, B-tree rules and every metadata block's
 * reference count. thin_dump must list the mappings we wrote.
 */
#include "tests/support/pdata_workload.h"

#include <unistd.h>

static int add_details(struct pool *p, uint64_t dev, uint64_t mapped)
{
	uint8_t v[24] = { 0 };
	dm_block_t root;
	int r;

	put_le64(v, mapped);
	r = dm_btree_insert(&p->details_info, p->details_root, &dev, v, &root);
	if (!r)
		p->details_root = root;
	return r;
}

static int count_dev(void *ctx, const uint64_t *keys, void *v)
{
	uint64_t *counts = ctx;

	counts[keys[0]]++;
	return 0;
}

TEST(thin_check_accepts_our_metadata)
{
	char path[512], cmd[1200];
	struct blkdev *fd;
	struct pool p;
	uint64_t rng = test_seed(), counts[WL_DEVS] = { 0 };
	int rc;

	snprintf(path, sizeof(path), "%s/meta.bin", test_tmpdir());
	if (!ok_eq(filedisk_open(path, 4096, true, 2048, &fd), 0) ||
	    !ok_eq(pool_format(&p, fd, 64, 100000), 0))
		return;
	/* Many transactions: snapshots, deletes, splits and merges, overflow counts. */
	for (int t = 0; t < 30; t++) {
		ok_eq(wl_transaction(&p, &rng, 200), 0);
		ok_eq(pool_commit(&p), 0);
	}
	/* And one big device, so its tree has internal nodes (and a snapshot shares it). */
	{
		struct dm_btree_info tl = wl_tl_info(&p);
		uint64_t dev = 1, snap = 2, keys[2] = { 1, 0 };
		dm_block_t root;
		uint8_t v[8];

		dm_btree_remove(&tl, p.map_root, &snap, &root);
		p.map_root = root;
		for (uint64_t k = 0; k < 3000; k++) {
			keys[1] = k * 5 + 100000;
			ok_eq(pool_new_mapping(&p, 3, v), 0);
			ok_eq(dm_btree_insert(&p.map_info, p.map_root, keys, v, &root), 0);
			p.map_root = root;
		}
		ok_eq(pool_commit(&p), 0);
		ok_eq(dm_btree_lookup(&tl, p.map_root, &dev, v), 0);
		ok_eq(dm_tm_inc(p.tm, get_le64(v)), 0);
		ok_eq(dm_btree_insert(&tl, p.map_root, &snap, v, &root), 0);
		p.map_root = root;
		/* Break the sharing on part of the tree: overwrite and remove in the origin. */
		for (uint64_t k = 0; k < 3000; k += 7) {
			keys[1] = k * 5 + 100000;
			if (k % 2) {
				ok_eq(dm_btree_remove(&p.map_info, p.map_root, keys, &root), 0);
			} else {
				ok_eq(pool_new_mapping(&p, 4, v), 0);
				ok_eq(dm_btree_insert(&p.map_info, p.map_root, keys, v, &root), 0);
			}
			p.map_root = root;
		}
	}
	ok_eq(pool_commit(&p), 0);
	ok_eq(pool_check(&p), 0);
	/* thin_check wants a details entry for every device in the mapping tree. */
	ok_eq(dm_btree_walk(&p.map_info, p.map_root, count_dev, counts), 0);
	{
		struct dm_btree_info tl = wl_tl_info(&p);

		for (uint64_t d = 0; d < WL_DEVS; d++) {
			uint8_t v[8];

			if (!dm_btree_lookup(&tl, p.map_root, &d, v))
				ok_eq(add_details(&p, d, counts[d]), 0);
		}
	}
	ok_eq(pool_commit(&p), 0);
	ok_eq(pool_check(&p), 0);
	pool_close(&p);
	blkdev_destroy(fd);
	printf("  mappings per device: %llu %llu %llu\n", (unsigned long long)counts[0],
	       (unsigned long long)counts[1], (unsigned long long)counts[2]);

	snprintf(cmd, sizeof(cmd), "PATH=$PATH:/usr/sbin:/sbin thin_check %s", path);
	rc = system(cmd);
	if (!ok_eq(rc, 0))
		printf("  thin_check failed: %s\n", cmd);
	snprintf(
	    cmd, sizeof(cmd),
	    "PATH=$PATH:/usr/sbin:/sbin thin_dump %s | grep -c 'single_mapping\\|range_mapping' "
	    ">/dev/null",
	    path);
	ok_eq(system(cmd), 0);
}
