/* SPDX-License-Identifier: MIT */
/*
 * Crash tests on thin operations: a workload of transactions that create thin devices and
 * snapshots, insert and remove mappings, remove ranges, delete devices, reserve and
 * release the held root, and commit, runs on a crash-simulating device that loses power
 * at its n'th write or flush, for every n the workload reaches; the unflushed writes are
 * then kept, dropped or torn at a sector boundary (seeded, several passes). After every
 * cut the pool must open, show exactly the last committed state (or the one whose commit
 * was cut after its superblock was written), check clean with the core checker, pass
 * thin_check 0.9.0 (first pass), and still take a new transaction.
 */
#include "tests/support/thin_test.h"

#define TXNS	  30
#define META_BLKS 384
#define DATA_BLKS 20000

struct rec {
	uint64_t hash[TXNS + 1];
	uint64_t events;
};

static int txn(struct thin_md *md, uint64_t *rng, unsigned t)
{
	unsigned ops = 6 + (unsigned)(test_rand(rng) % 6);
	int r = 0;

	/*
	 * Reserving commits first, so it opens a transaction: the extra commit then writes
	 * the same state as the last one and the oracle stays one state per transaction.
	 */
	if (test_rand(rng) % 3 == 0) {
		uint64_t held;

		thin_md_get_metadata_snap(md, &held);
		r = held ? thin_md_release_metadata_snap(md) : thin_md_reserve_metadata_snap(md);
	}

	for (unsigned i = 0; i < ops && !r; i++) {
		uint64_t id = test_rand(rng) % 6, o = test_rand(rng) % 6;
		unsigned x = (unsigned)(test_rand(rng) % 20);
		struct thin_dev *td;

		if (x < 3) {
			r = thin_md_create_thin(md, id);
		} else if (x < 6) {
			r = thin_md_create_snap(md, id, o);
		} else if (x < 7) {
			r = thin_md_delete_thin(md, id);
		} else if (!(r = thin_md_open_thin(md, id, &td))) {
			uint64_t base = test_rand(rng) % 3000;

			for (unsigned k = 0; k < 40 && !r; k++) {
				uint64_t b;

				if (x < 15) {
					r = thin_md_alloc_data_block(md, &b);
					if (!r)
						r = thin_insert_block(td, base + k * 5, b);
				} else {
					r = thin_remove_block(td, base + k);
				}
				if (r == -ENODATA)
					r = 0;
			}
			if (!r && x == 19)
				r = thin_remove_range(td, base, base + 200);
			thin_md_close_thin(td);
		}
		/* Expected refusals are part of the workload, not failures. */
		if (r == -EEXIST || r == -ENODATA || r == -EBUSY)
			r = 0;
	}
	if (!r)
		r = thin_md_set_transaction_id(md, t, t + 1);
	if (!r)
		r = thin_md_commit(md);
	return r;
}

/* Run the workload; the number of commits that succeeded. */
static unsigned workload(struct thin_md *md, uint64_t seed, struct rec *rec)
{
	uint64_t rng = seed;
	unsigned t;

	for (t = 0; t < TXNS; t++) {
		if (txn(md, &rng, t))
			break;
		if (rec && md_hash(md, &rec->hash[t + 1]))
			break;
	}
	return t;
}

TEST(power_cut_at_every_write_and_flush)
{
	uint64_t seed = test_seed();
	unsigned cuts = 0, newer = 0, tpt_checked = 0;
	struct blkdev *mem, *cd;
	struct thin_md *md;
	struct rec rec;
	char img[512];

	snprintf(img, sizeof(img), "%s/cut.bin", test_tmpdir());
	if (!ok_eq(memdisk_create(META_BLKS, 4096, &mem), 0) ||
	    !ok_eq(crashdev_create(mem, &cd), 0) || !ok_eq(md_open(cd, true, DATA_BLKS, &md), 0) ||
	    !ok_eq(md_hash(md, &rec.hash[0]), 0))
		return;
	{
		uint64_t e0 = crashdev_events(cd);

		if (!ok_eq(workload(md, seed, &rec), TXNS))
			return;
		rec.events = crashdev_events(cd) - e0;
	}
	ok_eq(thin_md_close(md), 0);
	ok_eq(check_dev(cd), 0);
	blkdev_destroy(cd);
	blkdev_destroy(mem);
	printf("  workload: %d transactions, %llu writes+flushes\n", TXNS,
	       (unsigned long long)rec.events);

	for (unsigned pass = 0; pass < 3 && !test_failed(); pass++) {
		for (uint64_t n = 1; n <= rec.events && !test_failed(); n++) {
			uint64_t h, fate = seed ^ (n * 0x9e3779b97f4a7c15ull) ^ pass;
			unsigned done;

			memdisk_create(META_BLKS, 4096, &mem);
			crashdev_create(mem, &cd);
			if (!ok_eq(md_open(cd, true, DATA_BLKS, &md), 0))
				break;
			crashdev_cut_at(cd, n);
			done = workload(md, seed, NULL);
			if (!ok(crashdev_tripped(cd)) || !ok(done < TXNS)) {
				printf("  cut %llu never reached\n", (unsigned long long)n);
				break;
			}
			/* The pool is dropped as a crashed machine drops it. */
			thin_md_close(md);
			crashdev_power_cut(cd, fate);
			crashdev_revive(cd);
			if (!ok_eq(md_open(cd, false, 0, &md), 0) || !ok_eq(md_hash(md, &h), 0)) {
				printf("  cut %llu pass %u: reopen failed\n", (unsigned long long)n,
				       pass);
				break;
			}
			if (h != rec.hash[done]) {
				if (!ok(h == rec.hash[done + 1])) {
					printf("  cut %llu pass %u: state is neither commit %u nor "
					       "%u\n",
					       (unsigned long long)n, pass, done, done + 1);
					break;
				}
				newer++;
			}
			if (!ok_eq(check_dev(cd), 0)) {
				printf("  cut %llu pass %u\n", (unsigned long long)n, pass);
				break;
			}
			if (pass == 0) {
				if (!ok_eq(dev_to_file(cd, img), 0) ||
				    !ok_eq(tpt_check(img, NULL), 0))
					break;
				tpt_checked++;
			}
			/* Still usable. */
			{
				uint64_t rng = n, tid;

				thin_md_get_transaction_id(md, &tid);
				ok_eq(txn(md, &rng, (unsigned)tid), 0);
				ok_eq(check_dev(cd), 0);
			}
			ok_eq(thin_md_close(md), 0);
			blkdev_destroy(cd);
			blkdev_destroy(mem);
			cuts++;
		}
	}
	printf("  %u cut points, %u showed the interrupted commit, %u checked by thin_check\n",
	       cuts, newer, tpt_checked);
	ok(cuts >= 600);
}
