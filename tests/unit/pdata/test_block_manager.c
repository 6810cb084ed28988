/* SPDX-License-Identifier: MIT */
/* Block manager, crc32c and space-map basics: checksums, locking rules, eviction, extend. */
#include "tests/support/pdata_pool.h"

TEST(crc32c_vectors)
{
	ok_eq(crc32c("123456789", 9), 0xE3069283u);
	/* The kernel form: seed ~0, no final inversion. */
	ok_eq(crc32c_raw(~0u, "123456789", 9), ~0xE3069283u);
}

TEST(locking_rules_catch_misuse)
{
	struct blkdev *dev;
	struct dm_block_manager *bm;
	struct dm_block *a, *b;

	if (!ok_eq(memdisk_create(64, 4096, &dev), 0) ||
	    !ok_eq(dm_block_manager_create(dev, 16, &bm), 0))
		return;
	ok_eq(dm_bm_write_lock_zero(bm, 5, NULL, &a), 0);
	ok_eq(dm_bm_read_lock(bm, 5, NULL, &b), -EBUSY);
	ok_eq(dm_bm_write_lock(bm, 5, NULL, &b), -EBUSY);
	ok_eq(dm_bm_flush(bm), -EBUSY); /* a write-locked block is not final */
	dm_bm_unlock(a);
	ok_eq(dm_bm_read_lock(bm, 5, NULL, &a), 0);
	ok_eq(dm_bm_read_lock(bm, 5, NULL, &b), 0);
	ok_eq(dm_bm_write_lock(bm, 5, NULL, &b), -EBUSY);
	ok_eq(dm_bm_locks_held(bm), 2);
	dm_bm_unlock(a);
	dm_bm_unlock(a);
	dm_bm_unlock(a); /* one unlock too many */
	ok_eq(dm_bm_misuse_count(bm), 5);
	ok_eq(dm_bm_read_lock(bm, 64, NULL, &a), -EINVAL);
	dm_block_manager_destroy(bm);
	blkdev_destroy(dev);
}

TEST(small_cache_evicts_and_writes_back)
{
	struct blkdev *dev;
	struct dm_block_manager *bm;
	struct dm_block *b;
	struct dm_bm_stats st;

	if (!ok_eq(memdisk_create(256, 4096, &dev), 0) ||
	    !ok_eq(dm_block_manager_create(dev, 16, &bm), 0))
		return;
	for (dm_block_t i = 1; i < 200; i++) {
		ok_eq(dm_bm_write_lock_zero(bm, i, &btree_node_validator, &b), 0);
		put_le32((uint8_t *)dm_block_data(b) + 4, LEAF_NODE);
		put_le32((uint8_t *)dm_block_data(b) + 20, 252);
		put_le32((uint8_t *)dm_block_data(b) + 24, 8);
		put_le64((uint8_t *)dm_block_data(b) + 100, i);
		dm_bm_unlock(b);
	}
	dm_bm_get_stats(bm, &st);
	ok(st.cached <= 16);
	ok(st.evictions >= 180);
	for (dm_block_t i = 1; i < 200; i++) {
		if (!ok_eq(dm_bm_read_lock(bm, i, &btree_node_validator, &b), 0))
			break;
		ok_eq(get_le64((uint8_t *)dm_block_data(b) + 100), i);
		dm_bm_unlock(b);
	}
	/* A node read as a bitmap fails its check (different salt). */
	ok_eq(dm_bm_drop_clean(bm), 0);
	ok_eq(dm_bm_read_lock(bm, 3, &dm_sm_bitmap_validator, &b), -EILSEQ);
	ok_eq(dm_bm_locks_held(bm), 0);
	dm_block_manager_destroy(bm);
	blkdev_destroy(dev);
}

TEST(space_maps_count_allocate_and_extend)
{
	struct blkdev *dev;
	struct pool p;
	dm_block_t b, nfree, nr;
	uint32_t c;

	if (!ok_eq(memdisk_create(40000, 4096, &dev), 0) ||
	    !ok_eq(pool_format(&p, dev, 64, 100), 0))
		return;
	/* Overflow counts: above 2 the tree holds them, back at 2 the entry goes. */
	ok_eq(dm_sm_new_block(p.dsm, &b), 0);
	for (int i = 0; i < 1000; i++)
		ok_eq(dm_sm_inc_block(p.dsm, b), 0);
	ok_eq(dm_sm_get_count(p.dsm, b, &c), 0);
	ok_eq(c, 1001);
	ok_eq(dm_sm_set_count(p.dsm, b, 2), 0);
	ok_eq(dm_sm_get_count(p.dsm, b, &c), 0);
	ok_eq(c, 2);
	ok_eq(dm_sm_dec_blocks(p.dsm, b, b + 1), 0);
	ok_eq(dm_sm_dec_block(p.dsm, b), 0);
	ok_eq(dm_sm_dec_block(p.dsm, b), -EINVAL); /* already free */
	/* Fill the data space, see -ENOSPC, grow across a bitmap boundary, continue. */
	for (int i = 0; i < 100; i++)
		if (dm_sm_new_block(p.dsm, &b))
			break;
	ok_eq(dm_sm_new_block(p.dsm, &b), -ENOSPC);
	ok_eq(dm_sm_extend(p.dsm, 20000), 0);
	ok_eq(dm_sm_get_nr_blocks(p.dsm, &nr), 0);
	ok_eq(nr, 20100);
	ok_eq(dm_sm_new_block(p.dsm, &b), 0);
	ok(b >= 100);
	ok_eq(pool_commit(&p), 0);
	ok_eq(dm_sm_get_nr_free(p.dsm, &nfree), 0);
	ok_eq(nfree, 20100 - 101);
	/* Drop the references no tree holds; then the checker must agree with the maps. */
	for (dm_block_t i = 0; i < nr; i++)
		if (!dm_sm_get_count(p.dsm, i, &c) && c)
			ok_eq(dm_sm_dec_block(p.dsm, i), 0);
	ok_eq(pool_commit(&p), 0);
	ok_eq(pool_check(&p), 0);
	ok_eq(dm_sm_get_nr_free(p.dsm, &nfree), 0);
	ok_eq(nfree, 20100);
	pool_close(&p);
	blkdev_destroy(dev);

	/* Metadata space map: formatted small, then extended over a bitmap boundary. */
	if (!ok_eq(memdisk_create(40000, 4096, &dev), 0))
		return;
	{
		struct blkdev *small;

		/* Format on a view of 1000 blocks, then reopen the whole device and grow. */
		ok_eq(memdisk_create(1000, 4096, &small), 0);
		ok_eq(pool_format(&p, small, 64, 100), 0);
		pool_close(&p);
		{
			uint8_t *buf = malloc(4096);

			for (dm_block_t i = 0; i < 1000; i++) {
				blkdev_read(small, i, 1, buf);
				blkdev_write(dev, i, 1, buf);
			}
			free(buf);
		}
		blkdev_destroy(small);
	}
	ok_eq(pool_open(&p, dev, 64), 0);
	ok_eq(dm_sm_extend(p.msm, 39000), 0);
	ok_eq(dm_sm_get_nr_blocks(p.msm, &nr), 0);
	ok_eq(nr, 40000);
	ok_eq(pool_commit(&p), 0);
	ok_eq(pool_check(&p), 0);
	/* The new area is usable: allocate past the old end. */
	for (int i = 0; i < 1200; i++)
		ok_eq(dm_tm_inc(p.tm, 0), 0), ok_eq(dm_tm_dec(p.tm, 0), 0);
	for (int i = 0; i < 1100; i++)
		if (!ok_eq(dm_sm_new_block(p.msm, &b), 0))
			break;
	ok(b >= 1000);
	ok_eq(dm_sm_get_count(p.msm, b, &c), 0);
	ok_eq(c, 1);
	pool_close(&p);
	blkdev_destroy(dev);
}
