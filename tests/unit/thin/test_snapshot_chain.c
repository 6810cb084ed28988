/* SPDX-License-Identifier: MIT */
/*
 * A chain of 1,000 nested snapshots, each remapping a few blocks: lookups at every level
 * return the right blocks (the newest remap at or below that level, else the origin's),
 * deleting the middle of the chain keeps the rest intact, and the pool checks clean
 * throughout (thin_check too). That lookup cost does not grow with depth is measured by
 * tests/bench/bench_thin.c.
 */
#include "tests/support/thin_test.h"

#define DEPTH  1000
#define VSPACE 512
#define REMAPS 3

TEST(chain_of_1000_nested_snapshots)
{
	char img[512];
	uint64_t(*model)[VSPACE] = calloc(DEPTH + 1, sizeof(*model));
	uint64_t rng = test_seed();
	struct blkdev *dev;
	struct thin_md *md;
	struct thin_dev *td;
	unsigned bad = 0;

	snprintf(img, sizeof(img), "%s/chain.bin", test_tmpdir());
	if (!ok(model) || !ok_eq(filedisk_open(img, 4096, true, 8192, &dev), 0) ||
	    !ok_eq(md_open(dev, true, 100000, &md), 0))
		return;
	/* Level 0: an origin with every block mapped. */
	ok_eq(thin_md_create_thin(md, 0), 0);
	ok_eq(thin_md_open_thin(md, 0, &td), 0);
	for (unsigned v = 0; v < VSPACE; v++) {
		ok_eq(thin_md_alloc_data_block(md, &model[0][v]), 0);
		ok_eq(thin_insert_block(td, v, model[0][v]), 0);
	}
	thin_md_close_thin(td);
	/* Level L snapshots level L-1, then remaps a few blocks. */
	for (unsigned l = 1; l <= DEPTH && !test_failed(); l++) {
		memcpy(model[l], model[l - 1], sizeof(model[l]));
		if (!ok_eq(thin_md_create_snap(md, l, l - 1), 0) ||
		    !ok_eq(thin_md_open_thin(md, l, &td), 0))
			break;
		for (unsigned k = 0; k < REMAPS; k++) {
			unsigned v = (unsigned)(test_rand(&rng) % VSPACE);

			ok_eq(thin_md_alloc_data_block(md, &model[l][v]), 0);
			ok_eq(thin_insert_block(td, v, model[l][v]), 0);
		}
		thin_md_close_thin(td);
		if (l % 250 == 0)
			ok_eq(thin_md_commit(md), 0);
	}
	ok_eq(thin_md_commit(md), 0);
	/* Every block at every level. */
	for (unsigned l = 0; l <= DEPTH && !test_failed(); l++) {
		if (!ok_eq(thin_md_open_thin(md, l, &td), 0))
			break;
		for (unsigned v = 0; v < VSPACE; v++) {
			struct thin_lookup_result lr;

			if ((thin_find_block(td, v, true, &lr) || lr.block != model[l][v]) &&
			    bad++ < 5)
				printf("  level %u block %u: %llu, expected %llu\n", l, v,
				       (unsigned long long)lr.block,
				       (unsigned long long)model[l][v]);
		}
		thin_md_close_thin(td);
	}
	ok_eq(bad, 0);
	ok_eq(check_dev(dev), 0);
	/* Delete every other level in the middle; the others still see their blocks. */
	for (unsigned l = 300; l < 700; l += 2)
		ok_eq(thin_md_delete_thin(md, l), 0);
	ok_eq(thin_md_commit(md), 0);
	for (unsigned l = 1; l <= DEPTH && !test_failed(); l += 1) {
		if (l >= 300 && l < 700 && l % 2 == 0)
			continue;
		if (!ok_eq(thin_md_open_thin(md, l, &td), 0))
			break;
		for (unsigned v = 0; v < VSPACE; v += 7) {
			struct thin_lookup_result lr;

			if ((thin_find_block(td, v, true, &lr) || lr.block != model[l][v]) &&
			    bad++ < 5)
				printf("  after deletes: level %u block %u\n", l, v);
		}
		thin_md_close_thin(td);
	}
	ok_eq(bad, 0);
	ok_eq(check_dev(dev), 0);
	ok_eq(thin_md_close(md), 0);
	blkdev_destroy(dev);
	ok_eq(tpt_check(img, NULL), 0);
	ok_eq(tpt_dump_matches(img, NULL), 0);
	free(model);
}
