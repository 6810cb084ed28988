/* SPDX-License-Identifier: MIT */
/*
 * Fault tests: -EIO at every write and flush of a commit, and at reads during updates.
 * After the failure the caller aborts; the previous transaction must be intact on disk
 * (a fresh open of the lower device shows it, checked clean), and the pool must go on
 * working. Only a failure of the final flush, after the superblock reached the device,
 * may show the new transaction instead.
 */
#include "tests/support/pdata_workload.h"

#define META_BLKS 512

struct setup {
	struct blkdev *mem, *fd;
	struct pool p;
	uint64_t rng;
	uint64_t hash_prev, hash_next;
};

static bool setup(struct setup *s, uint64_t seed)
{
	memset(s, 0, sizeof(*s));
	s->rng = seed;
	if (!ok_eq(memdisk_create(META_BLKS, 4096, &s->mem), 0) ||
	    !ok_eq(faultdev_create(s->mem, &s->fd), 0) ||
	    !ok_eq(pool_format(&s->p, s->fd, 16, 4096), 0))
		return false;
	for (int t = 0; t < 5; t++)
		if (!ok_eq(wl_transaction(&s->p, &s->rng, 30), 0) || !ok_eq(pool_commit(&s->p), 0))
			return false;
	return ok_eq(wl_hash(&s->p, &s->hash_prev), 0);
}

static void teardown(struct setup *s)
{
	if (s->p.bm)
		pool_close(&s->p);
	blkdev_destroy(s->fd);
	blkdev_destroy(s->mem);
}

/* The state on the lower device, opened fresh: must be @a or @b, and check clean. */
static bool disk_state_ok(struct setup *s, uint64_t a, uint64_t b, bool *was_b)
{
	struct pool q;
	uint64_t h;
	bool good;

	if (!ok_eq(pool_open(&q, s->mem, 32), 0))
		return false;
	good = ok_eq(wl_hash(&q, &h), 0) && ok(h == a || h == b) && ok_eq(pool_check(&q), 0);
	*was_b = h == b && h != a;
	pool_close(&q);
	return good;
}

TEST(eio_at_every_commit_write_and_flush)
{
	uint64_t seed = test_seed();
	unsigned cases = 0, newer = 0;

	for (int op = BLKDEV_WRITE; op <= BLKDEV_FLUSH && !test_failed(); op++) {
		for (uint64_t n = 1; !test_failed(); n++) {
			struct setup s;
			uint64_t before;
			bool was_new;
			int r;

			if (!setup(&s, seed))
				return;
			ok_eq(wl_transaction(&s.p, &s.rng, 60), 0);
			ok_eq(wl_hash(&s.p, &s.hash_next), 0);
			before = faultdev_count(s.fd, (enum blkdev_op)op);
			faultdev_fail_nth(s.fd, (enum blkdev_op)op, n, false);
			r = pool_commit(&s.p);
			if (!faultdev_fired(s.fd)) {
				/* Past the last write/flush of the commit: done with this op. */
				ok_eq(r, 0);
				ok(n > 1);
				(void)before;
				teardown(&s);
				break;
			}
			ok_eq(r, -EIO);
			/* Clean failure: abort and carry on from what the disk has. */
			ok_eq(pool_abort(&s.p), 0);
			if (!disk_state_ok(&s, s.hash_prev, s.hash_next, &was_new)) {
				printf("  op %d n %llu\n", op, (unsigned long long)n);
				teardown(&s);
				break;
			}
			/* Only the final flush, after the superblock write, may leave the new state. */
			if (was_new) {
				newer++;
				ok_eq(op, BLKDEV_FLUSH);
			}
			{
				uint64_t h;

				ok_eq(wl_hash(&s.p, &h), 0);
				ok(h == (was_new ? s.hash_next : s.hash_prev));
			}
			ok_eq(wl_transaction(&s.p, &s.rng, 20), 0);
			ok_eq(pool_commit(&s.p), 0);
			ok_eq(pool_check(&s.p), 0);
			teardown(&s);
			cases++;
		}
	}
	printf("  %u failing commits, %u left the new transaction (final flush)\n", cases, newer);
	ok(cases >= 8);
}

/* Read errors while updating with a cold cache: the update fails, abort restores. */
TEST(eio_on_reads_during_updates)
{
	uint64_t seed = test_seed();
	unsigned cases = 0;

	for (uint64_t n = 1; n < 400 && !test_failed(); n++) {
		struct setup s;
		bool was_new;
		int r;

		if (!setup(&s, seed))
			return;
		ok_eq(dm_bm_drop_clean(s.p.bm), 0);
		faultdev_fail_nth(s.fd, BLKDEV_READ, n, true);
		r = wl_transaction(&s.p, &s.rng, 60);
		if (!r)
			r = pool_commit(&s.p);
		if (!faultdev_fired(s.fd)) {
			ok_eq(r, 0);
			teardown(&s);
			break;
		}
		ok_eq(r, -EIO);
		faultdev_fail_nth(s.fd, BLKDEV_READ, 0, false);
		ok_eq(pool_abort(&s.p), 0);
		disk_state_ok(&s, s.hash_prev, s.hash_prev, &was_new);
		ok_eq(pool_check(&s.p), 0);
		teardown(&s);
		cases++;
	}
	printf("  %u failing reads\n", cases);
	ok(cases >= 3);
}
