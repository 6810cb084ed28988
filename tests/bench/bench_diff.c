/* SPDX-License-Identifier: MIT */
/*
 * Diff figures (printed, not asserted; tests/bench/diff.bench runs thin_delta on the same
 * image next to them): a pool with 64 KiB data blocks holding a fully mapped 1 TiB volume
 * (16,777,216 mappings) and snapshots of it in which 1, 1,000, 10,000 and 100,000 random
 * blocks were then overwritten, written into the metadata image file argv[1] and
 * committed. The metadata is then opened anew from the file (cold block-manager cache) and
 * each snapshot diffed against the volume: time, nodes read, ranges. The time should
 * follow the change, not the 1 TiB; the full walk (SAME ranges too, what thin_delta does)
 * is timed once for comparison.
 * usage: bench_diff IMAGE [GiB]   (GiB: the volume size, 1024 by default)
 */
#include "core/thin/thin_metadata.h"
#include "host/hostdev.h"
#include "tests/support/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		int r_ = (x);                                                                      \
		if (r_) {                                                                          \
			fprintf(stderr, "bench_diff: %s failed: %d\n", #x, r_);                    \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

static const unsigned changes[] = { 1, 1000, 10000, 100000 };
#define NSNAPS (sizeof(changes) / sizeof(changes[0]))

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int count(void *ctx, const struct thin_diff_range *r)
{
	(void)ctx;
	(void)r;
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t gib = argc > 2 ? strtoull(argv[2], NULL, 0) : 1024;
	uint64_t nblocks = gib << 14; /* 64 KiB blocks */
	uint64_t meta_blocks = nblocks / 60 + 65536;
	struct thin_md_open_opts o = { .data_block_sectors = 128,
				       .format = true,
				       .data_dev_blocks = nblocks + 200000,
				       .cache_blocks = 65536 };
	struct blkdev *dev;
	struct thin_md *md;
	struct thin_dev *td;
	uint64_t rng = 42, b;
	double t0;

	setvbuf(stdout, NULL, _IOLBF, 0); /* lines as they come, between the tools' */
	if (argc < 2) {
		fprintf(stderr, "usage: bench_diff IMAGE [GiB]\n");
		return 2;
	}
	remove(argv[1]);
	CHECK(filedisk_open(argv[1], 4096, true, meta_blocks, &dev));
	CHECK(thin_md_open(dev, &o, &md));
	t0 = now();
	CHECK(thin_md_create_thin(md, 1));
	CHECK(thin_md_open_thin(md, 1, &td));
	for (uint64_t v = 0; v < nblocks; v++) {
		CHECK(thin_md_alloc_data_block(md, &b));
		CHECK(thin_insert_block(td, v, b));
	}
	thin_md_close_thin(td);
	CHECK(thin_md_commit(md));
	printf("built a fully mapped %llu GiB volume (%llu mappings) in %.1f s\n",
	       (unsigned long long)gib, (unsigned long long)nblocks, now() - t0);
	for (unsigned s = 0; s < NSNAPS; s++) {
		CHECK(thin_md_create_snap(md, 2 + s, 1));
		CHECK(thin_md_open_thin(md, 2 + s, &td));
		for (unsigned k = 0; k < changes[s]; k++) {
			CHECK(thin_md_alloc_data_block(md, &b));
			CHECK(thin_insert_block(td, test_rand(&rng) % nblocks, b));
		}
		thin_md_close_thin(td);
		CHECK(thin_md_commit(md));
	}
	CHECK(thin_md_close(md));
	blkdev_destroy(dev);

	/* Cold: a new block manager over the file. */
	o.format = false;
	o.data_dev_blocks = 0;
	o.cache_blocks = 4096;
	CHECK(filedisk_open(argv[1], 4096, false, 0, &dev));
	CHECK(thin_md_open(dev, &o, &md));
	for (unsigned s = 0; s < NSNAPS; s++) {
		struct thin_md_view v;
		struct thin_diff_stats st;
		double t;

		CHECK(thin_md_view_committed(md, &v));
		t0 = now();
		CHECK(thin_view_diff(&v, 1, 2 + s, 0, 0, count, NULL, &st));
		t = now() - t0;
		printf("diff of two %llu GiB volumes, %6u blocks changed: %9.3f ms, %7llu nodes "
		       "read, %6llu ranges (thin_delta --thin1 1 --thin2 %u)\n",
		       (unsigned long long)gib, changes[s], t * 1e3,
		       (unsigned long long)st.nodes_read, (unsigned long long)st.ranges, 2 + s);
	}
	{
		struct thin_md_view v;
		struct thin_diff_stats st;

		CHECK(thin_md_view_committed(md, &v));
		t0 = now();
		CHECK(thin_view_diff(&v, 1, 3, 0, THIN_DIFF_WANT_SAME, count, NULL, &st));
		printf("the same with SAME ranges (reads both trees whole), 1000 changed: %.0f ms, "
		       "%llu nodes read\n",
		       (now() - t0) * 1e3, (unsigned long long)st.nodes_read);
	}
	CHECK(thin_md_close(md));
	blkdev_destroy(dev);
	return 0;
}
