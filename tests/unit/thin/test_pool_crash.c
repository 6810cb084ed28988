/* SPDX-License-Identifier: MIT */
/*
 * Power cuts under the thin pool: crashdev on both the metadata and the data disk, a
 * workload of sector-granular writes, flushes and snapshots, and a cut at many different
 * moments (on either disk; unflushed writes then kept, dropped or torn). After each cut the
 * pool must open, the metadata must check clean (core checker; thin_check too in one test),
 * and every sector must hold what the last completed FLUSH (or committing snapshot) made
 * durable, or one of the writes issued after it.
 */
#include "tests/support/pool_test.h"

#define VOL_SECT 2048u /* 1 MiB: 16 data blocks */
#define MAX_REC	 64

struct crash_model {
	uint32_t durable[VOL_SECT]; /* tag of each sector at the last completed flush */
	uint32_t cur[VOL_SECT];
	struct {
		uint32_t start, count, tag;
	} rec[MAX_REC]; /* writes since that flush (acknowledged or not) */
	unsigned nrec;
	bool overflow;
};

static void sector_data(uint8_t *buf, uint32_t sector, uint32_t tag)
{
	if (!tag)
		memset(buf, 0, 512);
	else
		pattern(buf, 512, ((uint64_t)tag << 32) | sector);
}

static void flushed(struct crash_model *m)
{
	memcpy(m->durable, m->cur, sizeof(m->cur));
	m->nrec = 0;
	m->overflow = false;
}

/* One workload on @pool until an operation fails or @ops ran. Returns ops done. */
static unsigned workload(struct thin_pool *pool, struct crash_model *m, uint64_t *seed,
			 unsigned ops, uint32_t *tag)
{
	struct thin_volume *vol;
	struct blkdev *d;
	uint8_t *buf = malloc(32 * 512);
	unsigned i, snaps = 0;
	int r = thin_volume_open(pool, 1, VOL_SECT * 512ull, false, &vol);

	if (r) {
		free(buf);
		return 0;
	}
	d = thin_volume_blkdev(vol);
	for (i = 0; i < ops; i++) {
		unsigned kind = (unsigned)(test_rand(seed) % 16);

		if (kind < 12) {
			uint32_t cnt = 1 + (uint32_t)(test_rand(seed) % 32);
			uint32_t start = (uint32_t)(test_rand(seed) % (VOL_SECT - cnt + 1));

			++*tag;
			for (uint32_t s = 0; s < cnt; s++)
				sector_data(buf + s * 512, start + s, *tag);
			if (m->nrec < MAX_REC) {
				m->rec[m->nrec].start = start;
				m->rec[m->nrec].count = cnt;
				m->rec[m->nrec].tag = *tag;
				m->nrec++;
			} else {
				m->overflow = true;
			}
			r = blkdev_write(d, start, cnt, buf);
			if (r)
				break;
			for (uint32_t s = 0; s < cnt; s++)
				m->cur[start + s] = *tag;
		} else if (kind < 15) {
			r = blkdev_flush(d);
			if (r)
				break;
			flushed(m);
		} else if (snaps < 6) {
			/* A snapshot commits (data flushed first): durable like a flush. */
			r = thin_pool_create_snap(pool, 100 + snaps, 1);
			if (r)
				break;
			snaps++;
			flushed(m);
		}
	}
	thin_volume_close(vol);
	free(buf);
	return i;
}

static bool sector_ok(const struct crash_model *m, uint32_t s, const uint8_t *got)
{
	uint8_t want[512];

	sector_data(want, s, m->durable[s]);
	if (!memcmp(want, got, 512))
		return true;
	if (m->overflow)
		return true; /* too many writes to track: only the flushed ones are checked */
	for (unsigned i = 0; i < m->nrec; i++) {
		if (s < m->rec[i].start || s >= m->rec[i].start + m->rec[i].count)
			continue;
		sector_data(want, s, m->rec[i].tag);
		if (!memcmp(want, got, 512))
			return true;
	}
	return false;
}

/* Reopen after the cut and verify everything. Returns true when all is well. */
static bool verify_after_cut(struct blkdev *meta, struct blkdev *data, struct crash_model *m,
			     const char *what)
{
	struct thin_pool *pool;
	struct thin_volume *vol;
	uint8_t *buf = malloc(VOL_SECT * 512);
	char why[200] = "";
	unsigned bad = 0;
	int r;

	if (!ok_eq(check_dev(meta), 0)) {
		printf("  after %s\n", what);
		free(buf);
		return false;
	}
	r = thin_pool_open(meta, data, NULL, why, sizeof(why), &pool);
	if (!ok_eq(r, 0)) {
		printf("  open after %s: %s\n", what, why);
		free(buf);
		return false;
	}
	r = thin_volume_open(pool, 1, VOL_SECT * 512ull, true, &vol);
	if (r == -ENODATA) {
		/* Cut before the device's creation was committed: nothing was acknowledged. */
		for (uint32_t s = 0; s < VOL_SECT; s++)
			ok(!m->durable[s]);
	} else if (ok_eq(r, 0)) {
		ok_eq(blkdev_read(thin_volume_blkdev(vol), 0, VOL_SECT, buf), 0);
		for (uint32_t s = 0; s < VOL_SECT; s++) {
			if (!sector_ok(m, s, buf + s * 512)) {
				if (bad++ < 5)
					fail("%s: sector %u lost (durable tag %u)", what, s,
					     m->durable[s]);
			}
		}
		thin_volume_close(vol);
	}
	ok_eq(thin_pool_close(pool), 0);
	free(buf);
	return !bad && !test_failed();
}

/* One run: format, arm a cut on @cut_dev at event @n, run, cut both, verify. */
static void crash_run(struct blkdev *lmeta, struct blkdev *ldata, int cut_meta, uint64_t n,
		      uint64_t seed, bool *tripped)
{
	struct blkdev *cmeta, *cdata;
	struct thin_pool *pool;
	struct crash_model *m = calloc(1, sizeof(*m));
	uint64_t s = seed;
	uint32_t tag = 0;
	struct thin_pool_opts o;
	char what[96];

	ok_eq(crashdev_create(lmeta, &cmeta), 0);
	ok_eq(crashdev_create(ldata, &cdata), 0);
	/* The workload runs the small pool full: writes needing space fail at once (the
	 * default would queue each for 60 s). */
	thin_pool_default_opts(&o);
	o.error_if_no_space = true;
	ok_eq(thin_pool_format(cmeta, cdata, &o, true), 0);
	ok_eq(thin_pool_open(cmeta, cdata, &o, NULL, 0, &pool), 0);
	ok_eq(thin_pool_create_thin(pool, 1), 0);
	crashdev_cut_at(cut_meta ? cmeta : cdata, n);
	workload(pool, m, &s, 400, &tag);
	*tripped = crashdev_tripped(cut_meta ? cmeta : cdata);
	/* Whatever state the pool is in, its memory goes away with the power. */
	thin_pool_close(pool);
	crashdev_power_cut(cmeta, seed ^ 1);
	crashdev_power_cut(cdata, seed ^ 2);
	blkdev_destroy(cmeta);
	blkdev_destroy(cdata);
	snprintf(what, sizeof(what), "cut on %s at event %llu (seed %llu)",
		 cut_meta ? "meta" : "data", (unsigned long long)n, (unsigned long long)seed);
	verify_after_cut(lmeta, ldata, m, what);
	free(m);
}

TEST(power_cut_at_many_points)
{
	struct blkdev *lmeta, *ldata;
	uint64_t seed = test_seed(), runs = 0, trips = 0;

	ok_eq(memdisk_create(512, 4096, &lmeta), 0);
	ok_eq(memdisk_create(64 * 128, 512, &ldata), 0);
	for (int cut_meta = 0; cut_meta < 2; cut_meta++) {
		/* Event counts of the whole workload are a few hundred on either disk: cut at
		 * points spread over them, each with its own seed. */
		for (uint64_t n = 1; n < 700 && !test_failed(); n += 1 + (n / 8)) {
			bool tripped;

			crash_run(lmeta, ldata, cut_meta, n, seed + n * 7 + (uint64_t)cut_meta,
				  &tripped);
			runs++;
			trips += tripped;
		}
	}
	printf("  %llu runs, %llu cut during the workload\n", (unsigned long long)runs,
	       (unsigned long long)trips);
	ok(trips > runs / 2);
	blkdev_destroy(ldata);
	blkdev_destroy(lmeta);
}

/* The same on a file-backed metadata disk, checked by thin-provisioning-tools too. */
TEST(power_cut_then_real_thin_check)
{
	struct blkdev *lmeta, *ldata;
	char path[512];
	uint64_t seed = test_seed();
	bool tripped;

	if (system("PATH=$PATH:/usr/sbin:/sbin command -v thin_check >/dev/null 2>&1")) {
		printf("  thin_check not installed: skipped\n");
		return;
	}
	snprintf(path, sizeof(path), "%s/pool-meta.img", test_tmpdir());
	ok_eq(filedisk_open(path, 4096, true, 512, &lmeta), 0);
	ok_eq(memdisk_create(64 * 128, 512, &ldata), 0);
	for (uint64_t n = 40; n < 400 && !test_failed(); n += 90) {
		crash_run(lmeta, ldata, (int)(n / 90) % 2, n, seed + n, &tripped);
		ok_eq(tpt_check(path, NULL), 0);
	}
	blkdev_destroy(ldata);
	blkdev_destroy(lmeta);
}
