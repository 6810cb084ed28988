/* SPDX-License-Identifier: MIT */
/* The crash and fault tests' workload (tests/support/pdata_workload.h). */
#include "tests/support/pdata_workload.h"

#include <errno.h>

#include "tests/support/harness.h"

static int wl_subtree_inc(void *ctx, const void *v)
{
	return dm_tm_inc(((struct pool *)ctx)->tm, get_le64(v));
}

static int wl_subtree_dec(void *ctx, const void *v)
{
	struct pool *p = ctx;
	struct dm_btree_info bl = p->map_info;

	bl.levels = 1;
	return dm_btree_del(&bl, get_le64(v));
}

struct dm_btree_info wl_tl_info(struct pool *p)
{
	struct dm_btree_info tl = { p->tm, 1, { p, 8, wl_subtree_inc, wl_subtree_dec, NULL } };

	return tl;
}

static int wl_hash_entry(void *ctx, const uint64_t *keys, void *v)
{
	uint64_t *h = ctx;

	*h = (*h ^ keys[0]) * 0x100000001b3ull;
	*h = (*h ^ keys[1]) * 0x100000001b3ull;
	*h = (*h ^ get_le64(v)) * 0x100000001b3ull;
	return 0;
}

int wl_hash(struct pool *p, uint64_t *hash)
{
	*hash = 0xcbf29ce484222325ull;
	return dm_btree_walk(&p->map_info, p->map_root, wl_hash_entry, hash);
}

int wl_transaction(struct pool *p, uint64_t *rng, unsigned nops)
{
	struct dm_btree_info tl = wl_tl_info(p);
	int r = 0;

	for (unsigned i = 0; i < nops && !r; i++) {
		uint64_t dev = test_rand(rng) % WL_DEVS,
			 keys[2] = { dev, test_rand(rng) % WL_KEYS };
		unsigned op = (unsigned)(test_rand(rng) % 100);
		dm_block_t root, sub;
		uint8_t v[8];

		r = dm_btree_lookup(&tl, p->map_root, &dev, v);
		if (r == -ENODATA) {
			/* Create the device, sometimes as a snapshot of another. */
			uint64_t origin = (dev + 1) % WL_DEVS;

			r = dm_btree_lookup(&tl, p->map_root, &origin, v);
			if (!r && op < 50) {
				r = dm_tm_inc(p->tm, get_le64(v));
			} else if (!r || r == -ENODATA) {
				r = dm_btree_empty(&p->map_info, &sub);
				put_le64(v, sub);
			}
			if (!r)
				r = dm_btree_insert(&tl, p->map_root, &dev, v, &root);
			if (!r)
				p->map_root = root;
			continue;
		}
		if (r)
			break;
		if (op < 2) {
			r = dm_btree_remove(&tl, p->map_root, &dev, &root);
		} else if (op < 65) {
			r = pool_new_mapping(p, i, v);
			if (!r)
				r = dm_btree_insert(&p->map_info, p->map_root, keys, v, &root);
		} else {
			r = dm_btree_remove(&p->map_info, p->map_root, keys, &root);
			if (r == -ENODATA) {
				r = 0;
				continue;
			}
		}
		if (!r)
			p->map_root = root;
	}
	return r;
}
