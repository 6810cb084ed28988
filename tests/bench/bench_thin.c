/* SPDX-License-Identifier: MIT */
/*
 * Thin-metadata figures (printed, not asserted), on a memory disk with a warm cache:
 *  - lookup cost on a device at snapshot depth 1, 10, 100 and 1000 of one chain (each
 *    level remaps a few blocks of a 100,000-mapping origin) side by side: it must not grow
 *    with depth (the chain shares subtrees; a lookup only walks one device's tree);
 *  - snapshot creation time for origins of 1,000 and 1,000,000 mappings;
 *  - insert rates (sequential and random), remove rate;
 *  - commit latency after 1, 100 and 10,000 changed mappings.
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
			fprintf(stderr, "bench_thin: %s failed: %d\n", #x, r_);                    \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct thin_md *pool(struct blkdev **dev, uint64_t meta_blocks, uint64_t data_blocks)
{
	struct thin_md_open_opts o = { .data_block_sectors = 128,
				       .format = true,
				       .data_dev_blocks = data_blocks,
				       .cache_blocks = 65536 };
	struct thin_md *md;

	CHECK(memdisk_create(meta_blocks, 4096, dev));
	CHECK(thin_md_open(*dev, &o, &md));
	return md;
}

static void fill(struct thin_md *md, thin_id_t id, uint64_t n, double *secs)
{
	struct thin_dev *td;
	double t0 = now();

	CHECK(thin_md_create_thin(md, id));
	CHECK(thin_md_open_thin(md, id, &td));
	for (uint64_t v = 0; v < n; v++) {
		uint64_t b;

		CHECK(thin_md_alloc_data_block(md, &b));
		CHECK(thin_insert_block(td, v, b));
	}
	thin_md_close_thin(td);
	CHECK(thin_md_commit(md));
	if (secs)
		*secs = now() - t0;
}

static double lookup_ns(struct thin_md *md, thin_id_t id, uint64_t space, unsigned n)
{
	struct thin_lookup_result lr;
	struct thin_dev *td;
	uint64_t rng = 42;
	double t0;

	CHECK(thin_md_open_thin(md, id, &td));
	for (unsigned i = 0; i < n / 4; i++) /* warm */
		CHECK(thin_find_block(td, test_rand(&rng) % space, true, &lr));
	t0 = now();
	for (unsigned i = 0; i < n; i++)
		CHECK(thin_find_block(td, test_rand(&rng) % space, true, &lr));
	thin_md_close_thin(td);
	return (now() - t0) / n * 1e9;
}

int main(void)
{
	struct blkdev *dev;
	struct thin_md *md;
	double secs;
	uint64_t rng = 7;

	/* Lookup cost by snapshot depth. */
	{
		const uint64_t space = 100000;
		const unsigned depths[] = { 1, 10, 100, 1000 };

		md = pool(&dev, 65536, 400000);
		fill(md, 0, space, NULL);
		for (unsigned l = 1; l <= 1000; l++) {
			struct thin_dev *td;

			CHECK(thin_md_create_snap(md, l, l - 1));
			CHECK(thin_md_open_thin(md, l, &td));
			for (int k = 0; k < 3; k++) {
				uint64_t b;

				CHECK(thin_md_alloc_data_block(md, &b));
				CHECK(thin_insert_block(td, test_rand(&rng) % space, b));
			}
			thin_md_close_thin(td);
		}
		CHECK(thin_md_commit(md));
		printf("lookup cost by snapshot depth (100,000-mapping origin, 3 remaps per "
		       "level):\n");
		printf("  %-8s %-8s %-8s %-8s\n", "depth 1", "10", "100", "1000");
		printf(" ");
		for (unsigned i = 0; i < 4; i++)
			printf(" %5.0f ns", lookup_ns(md, depths[i], space, 300000));
		printf("   (origin: %.0f ns)\n", lookup_ns(md, 0, space, 300000));
		thin_md_close(md);
		blkdev_destroy(dev);
	}

	/* Snapshot creation time vs origin size; insert rates. */
	{
		const uint64_t sizes[] = { 1000, 1000000 };

		for (unsigned i = 0; i < 2; i++) {
			double t0, snap;

			md = pool(&dev, 65536, 1100000);
			fill(md, 0, sizes[i], &secs);
			if (i == 1)
				printf("insert, sequential: %.0f mappings/s (1,000,000 into one "
				       "device, allocation included)\n",
				       (double)sizes[i] / secs);
			t0 = now();
			for (unsigned s = 1; s <= 100; s++)
				CHECK(thin_md_create_snap(md, s, 0));
			snap = (now() - t0) / 100;
			t0 = now();
			CHECK(thin_md_commit(md));
			printf("snapshot of a %7llu-mapping origin: %.1f us each (100 snapshots; "
			       "their commit %.2f ms)\n",
			       (unsigned long long)sizes[i], snap * 1e6, (now() - t0) * 1e3);
			thin_md_close(md);
			blkdev_destroy(dev);
		}
	}

	/* Random inserts, removes, commit latency. */
	{
		struct thin_dev *td;
		const unsigned n = 200000;
		double t0;

		md = pool(&dev, 65536, 1000000);
		CHECK(thin_md_create_thin(md, 1));
		CHECK(thin_md_open_thin(md, 1, &td));
		t0 = now();
		for (unsigned i = 0; i < n; i++) {
			uint64_t b;

			CHECK(thin_md_alloc_data_block(md, &b));
			CHECK(thin_insert_block(td, (uint64_t)i * 7919 % 10000019, b));
		}
		printf("insert, random order: %.0f mappings/s (%u)\n", n / (now() - t0), n);
		CHECK(thin_md_commit(md));
		t0 = now();
		for (unsigned i = 0; i < n; i += 2)
			CHECK(thin_remove_block(td, (uint64_t)i * 7919 % 10000019));
		printf("remove: %.0f mappings/s (%u)\n", n / 2 / (now() - t0), n / 2);
		CHECK(thin_md_commit(md));
		printf("commit latency after N changed mappings:");
		for (unsigned changes = 1; changes <= 10000; changes *= 100) {
			for (unsigned i = 0; i < changes; i++) {
				uint64_t b;

				CHECK(thin_md_alloc_data_block(md, &b));
				CHECK(thin_insert_block(td, test_rand(&rng) % 10000019, b));
			}
			t0 = now();
			CHECK(thin_md_commit(md));
			printf("  %u: %.2f ms", changes, (now() - t0) * 1e3);
		}
		printf("\n");
		thin_md_close_thin(td);
		thin_md_close(md);
		blkdev_destroy(dev);
	}
	return 0;
}
