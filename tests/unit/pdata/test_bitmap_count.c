/* SPDX-License-Identifier: MIT */
/*
 * sm_bitmap_count_free(), the word-at-a-time count the space-map recount runs over every
 * bitmap when a pool opens (docs/firmware.md, "Boot breakdown"), agrees with an entry-by-entry
 * count on random bitmaps of every density, for every end of the range: its edges (a range
 * ending inside a word, at a word's end, past the bitmap) and the first free entry.
 */
#include "tests/support/harness.h"

#include "core/pdata/space_map_common.h"

#include <stdlib.h>
#include <string.h>

#define BITMAP_BYTES (ENTRIES_PER_BLOCK / ENTRIES_PER_BYTE)

static uint32_t entry(const uint8_t *bytes, uint32_t e)
{
	return (bytes[e / 4] >> (2 * (e % 4))) & 3;
}

/* The reference: one entry at a time. */
static void slow_count(const uint8_t *bytes, uint32_t in_range, uint32_t *all, uint32_t *inr,
		       uint32_t *first)
{
	*all = *inr = 0;
	*first = ENTRIES_PER_BLOCK;
	for (uint32_t e = 0; e < ENTRIES_PER_BLOCK; e++) {
		if (entry(bytes, e))
			continue;
		(*all)++;
		if (e < in_range) {
			(*inr)++;
			if (*first == ENTRIES_PER_BLOCK)
				*first = e;
		}
	}
}

static bool same(const uint8_t *bytes, uint32_t in_range)
{
	uint32_t a, i, f, sa, si, sf;

	sm_bitmap_count_free(bytes, in_range, &a, &i, &f);
	slow_count(bytes, in_range, &sa, &si, &sf);
	return ok_eq(a, sa) && ok_eq(i, si) && ok_eq(f, sf);
}

/* Each entry is 0 with probability @free_pct %, else 1, 2 or 3 (either bit alone counts). */
static void fill(uint8_t *bytes, unsigned free_pct, unsigned seed)
{
	srand(seed);
	memset(bytes, 0, BITMAP_BYTES);
	for (uint32_t e = 0; e < ENTRIES_PER_BLOCK; e++)
		if ((unsigned)rand() % 100 >= free_pct)
			bytes[e / 4] |= (uint8_t)((1 + rand() % 3) << (2 * (e % 4)));
}

TEST(random_bitmaps_all_ranges)
{
	/* One byte in front: the count must not need 8-byte alignment. */
	static uint8_t buf[BITMAP_BYTES + 1];
	uint8_t *bytes = buf + 1;
	static const unsigned pct[] = { 0, 1, 50, 99, 100 };
	static const uint32_t ends[] = { 0,
					 1,
					 31,
					 32,
					 33,
					 63,
					 64,
					 1000,
					 ENTRIES_PER_BLOCK - 1,
					 ENTRIES_PER_BLOCK,
					 ENTRIES_PER_BLOCK + 5 };

	for (unsigned p = 0; p < sizeof(pct) / sizeof(pct[0]); p++) {
		fill(bytes, pct[p], 16 + p);
		for (unsigned e = 0; e < sizeof(ends) / sizeof(ends[0]); e++)
			if (!same(bytes, ends[e]))
				return;
		for (int k = 0; k < 200; k++)
			if (!same(bytes, (uint32_t)rand() % (ENTRIES_PER_BLOCK + 1)))
				return;
	}
}

/* A lone free entry at each position of a word, the rest taken by each value in turn: the
 * first free entry and the counts, with the range ending just before and just after it. */
TEST(lone_free_entry)
{
	static uint8_t bytes[BITMAP_BYTES];

	for (uint32_t v = 1; v <= 3; v++) {
		for (uint32_t e = 0; e < ENTRIES_PER_BLOCK; e++)
			bytes[e / 4] =
			    (uint8_t)((bytes[e / 4] & ~(3u << (2 * (e % 4)))) | v << (2 * (e % 4)));
		for (uint32_t pos = 4 * 32 - 3; pos < 4 * 32 + 33; pos++) {
			uint32_t a, i, f;

			bytes[pos / 4] &= (uint8_t) ~(3u << (2 * (pos % 4)));
			sm_bitmap_count_free(bytes, pos + 1, &a, &i, &f);
			ok_eq(a, 1);
			ok_eq(i, 1);
			ok_eq(f, pos);
			sm_bitmap_count_free(bytes, pos, &a, &i, &f);
			ok_eq(i, 0);
			ok_eq(f, ENTRIES_PER_BLOCK);
			bytes[pos / 4] |= (uint8_t)(v << (2 * (pos % 4)));
		}
	}
}
