/* SPDX-License-Identifier: MIT */
/*
 * Crash tests: the workload runs on a crash-simulating device that loses power at write N,
 * for every N the workload reaches; the unflushed writes are then kept, dropped or torn at
 * a sector boundary (seeded). Reopening must succeed and show exactly the last committed
 * transaction (or the one being committed, if its superblock was already written when the
 * final flush failed), and pool_check() must find every block counted exactly right.
 */
#include "tests/support/pdata_workload.h"

#define TXNS	  40
#define OPS	  30
#define META_BLKS 512

struct run {
	uint64_t hash[TXNS + 1]; /* after format (0) and after each commit */
	uint64_t writes;	 /* device writes of the whole workload */
	uint64_t events;	 /* writes + flushes: the cut points */
};

/*
 * Run the workload on @dev (already formatted in @p). Returns the number of commits that
 * succeeded; *failed tells whether it stopped on an error.
 */
static int workload(struct pool *p, uint64_t seed, struct run *rec, bool *failed)
{
	uint64_t rng = seed;
	int t;

	*failed = false;
	for (t = 0; t < TXNS; t++) {
		int r = wl_transaction(p, &rng, OPS);

		if (!r)
			r = pool_commit(p);
		if (r) {
			*failed = true;
			break;
		}
		if (rec && wl_hash(p, &rec->hash[t + 1]))
			*failed = true;
	}
	return t;
}

static bool format_on(struct blkdev *dev, struct pool *p, unsigned cache)
{
	return ok_eq(pool_format(p, dev, cache, 4096), 0);
}

TEST(power_cut_at_every_write_and_flush)
{
	uint64_t seed = test_seed();
	unsigned cut_points = 0, newer = 0, torn_runs = 0;
	struct blkdev *mem, *cd;
	struct pool p;
	struct run rec;
	bool failed;

	/* The reference run: hashes after each commit and the total number of writes. */
	if (!ok_eq(memdisk_create(META_BLKS, 4096, &mem), 0) ||
	    !ok_eq(crashdev_create(mem, &cd), 0))
		return;
	if (!format_on(cd, &p, 16) || !ok_eq(wl_hash(&p, &rec.hash[0]), 0))
		return;
	{
		uint64_t w0 = crashdev_writes(cd), e0 = crashdev_events(cd);

		ok_eq(workload(&p, seed, &rec, &failed), TXNS);
		ok(!failed);
		rec.writes = crashdev_writes(cd) - w0;
		rec.events = crashdev_events(cd) - e0;
	}
	pool_close(&p);
	blkdev_destroy(cd);
	blkdev_destroy(mem);
	printf("  workload: %d transactions, %llu writes, %llu writes+flushes\n", TXNS,
	       (unsigned long long)rec.writes, (unsigned long long)rec.events);

	/* Four passes over every cut point, each with different fates for pending writes. */
	for (unsigned pass = 0; pass < 4 && !test_failed(); pass++) {
		for (uint64_t n = 1; n <= rec.events && !test_failed(); n++) {
			uint64_t h, fate_seed = seed ^ (n * 0x9e3779b97f4a7c15ull) ^ pass;
			int done;

			memdisk_create(META_BLKS, 4096, &mem);
			crashdev_create(mem, &cd);
			if (!format_on(cd, &p, 16))
				break;
			crashdev_cut_at(cd, n);
			done = workload(&p, seed, NULL, &failed);
			if (!ok(failed) || !ok(crashdev_tripped(cd))) {
				printf("  cut %llu never reached\n", (unsigned long long)n);
				break;
			}
			pool_close(&p);
			if (crashdev_power_cut(cd, fate_seed))
				torn_runs++;
			crashdev_revive(cd);

			if (!ok_eq(pool_open(&p, cd, 16), 0)) {
				printf("  cut %llu pass %u: reopen failed\n", (unsigned long long)n,
				       pass);
				break;
			}
			if (!ok_eq(wl_hash(&p, &h), 0))
				break;
			if (h != rec.hash[done]) {
				/* Allowed only if the interrupted commit had written its superblock. */
				if (!ok(done < TXNS && h == rec.hash[done + 1])) {
					printf("  cut %llu pass %u: state is neither commit %d nor "
					       "%d\n",
					       (unsigned long long)n, pass, done, done + 1);
					break;
				}
				newer++;
			}
			if (!ok_eq(pool_check(&p), 0)) {
				printf("  cut %llu pass %u\n", (unsigned long long)n, pass);
				break;
			}
			/* Still usable: another transaction commits and checks clean. */
			{
				uint64_t rng = n;

				ok_eq(wl_transaction(&p, &rng, 10), 0);
				ok_eq(pool_commit(&p), 0);
				ok_eq(pool_check(&p), 0);
			}
			pool_close(&p);
			blkdev_destroy(cd);
			blkdev_destroy(mem);
			cut_points++;
		}
	}
	printf("  %u cut points, %u showed the interrupted commit, %u had pending writes\n",
	       cut_points, newer, torn_runs);
	ok(cut_points >= 1000);
}
