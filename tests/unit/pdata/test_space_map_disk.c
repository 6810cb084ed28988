/* SPDX-License-Identifier: MIT */
/*
 * The data space map's free count stays exact whatever changes a count within one
 * transaction (new_block, inc, dec, set_count), before and after the commit: it is the
 * number of blocks free in the committed state and free now (allocatable at once).
 */
#include "tests/support/pdata_pool.h"

#define NR_DATA 64

static dm_block_t nr_free(struct pool *p)
{
	dm_block_t n = ~0ull;

	ok_eq(dm_sm_get_nr_free(p->dsm, &n), 0);
	return n;
}

static bool setup(struct pool *p, struct blkdev **mem)
{
	return ok_eq(memdisk_create(256, 4096, mem), 0) &&
	       ok_eq(pool_format(p, *mem, 16, NR_DATA), 0);
}

/* Allocate, drop to 0, allocate again, many times over in one transaction. */
TEST(alloc_dec_alloc_in_one_transaction)
{
	struct blkdev *mem;
	struct pool p;
	dm_block_t b, first;

	if (!setup(&p, &mem))
		return;
	ok_eq(nr_free(&p), NR_DATA);
	ok_eq(dm_sm_new_block(p.dsm, &first), 0);
	ok_eq(nr_free(&p), NR_DATA - 1);
	/* Each round takes a block and gives it back: the count never moves. */
	for (int i = 0; i < 3 * NR_DATA; i++) {
		ok_eq(dm_sm_new_block(p.dsm, &b), 0);
		ok_eq(dm_sm_dec_block(p.dsm, b), 0);
	}
	ok_eq(nr_free(&p), NR_DATA - 1);
	/* inc from 0 and set_count up and down count too. */
	ok_eq(dm_sm_new_block(p.dsm, &b), 0);
	ok_eq(dm_sm_dec_block(p.dsm, b), 0);
	ok_eq(nr_free(&p), NR_DATA - 1);
	ok_eq(dm_sm_inc_block(p.dsm, b), 0);
	ok_eq(nr_free(&p), NR_DATA - 2);
	ok_eq(dm_sm_set_count(p.dsm, b, 0), 0);
	ok_eq(nr_free(&p), NR_DATA - 1);
	ok_eq(dm_sm_set_count(p.dsm, b, 5), 0);
	ok_eq(dm_sm_set_count(p.dsm, b, 2), 0);
	ok_eq(nr_free(&p), NR_DATA - 2);
	/* Fill it up: exactly NR_DATA - 2 more, then -ENOSPC with a count of 0. */
	for (int i = 0; i < NR_DATA - 2; i++)
		if (!ok_eq(dm_sm_new_block(p.dsm, &b), 0))
			break;
	ok_eq(nr_free(&p), 0);
	ok_eq(dm_sm_new_block(p.dsm, &b), -ENOSPC);
	ok_eq(pool_commit(&p), 0);
	ok_eq(nr_free(&p), 0);
	pool_close(&p);
	blkdev_destroy(mem);
}

/* Blocks the committed state uses: freed, they stay counted as used until the commit. */
TEST(committed_blocks_free_after_commit)
{
	struct blkdev *mem;
	struct pool p;
	dm_block_t b[4], c;

	if (!setup(&p, &mem))
		return;
	for (int i = 0; i < 4; i++)
		ok_eq(dm_sm_new_block(p.dsm, &b[i]), 0);
	ok_eq(pool_commit(&p), 0);
	ok_eq(nr_free(&p), NR_DATA - 4);
	ok_eq(dm_sm_dec_block(p.dsm, b[0]), 0);
	ok_eq(dm_sm_set_count(p.dsm, b[1], 0), 0);
	ok_eq(nr_free(&p), NR_DATA - 4); /* not allocatable before the commit */
	/* Used again in the same transaction: still not counted twice. */
	ok_eq(dm_sm_inc_block(p.dsm, b[0]), 0);
	ok_eq(dm_sm_dec_block(p.dsm, b[0]), 0);
	ok_eq(dm_sm_set_count(p.dsm, b[1], 1), 0);
	ok_eq(dm_sm_set_count(p.dsm, b[1], 0), 0);
	ok_eq(nr_free(&p), NR_DATA - 4);
	for (int i = 0; i < NR_DATA - 4; i++) {
		if (!ok_eq(dm_sm_new_block(p.dsm, &c), 0))
			break;
		ok(c != b[0] && c != b[1]);
		ok_eq(dm_sm_dec_block(p.dsm, c), 0);
		ok_eq(dm_sm_inc_block(p.dsm, c), 0);
	}
	ok_eq(nr_free(&p), 0);
	ok_eq(dm_sm_new_block(p.dsm, &c), -ENOSPC);
	ok_eq(pool_commit(&p), 0);
	ok_eq(nr_free(&p), 2);
	/* And after a reopen, from the on-disk root. */
	pool_close(&p);
	ok_eq(pool_open(&p, mem, 16), 0);
	ok_eq(nr_free(&p), 2);
	pool_close(&p);
	blkdev_destroy(mem);
}
