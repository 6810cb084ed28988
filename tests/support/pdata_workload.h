/* SPDX-License-Identifier: MIT */
/*
 * A deterministic multi-transaction workload on the test pool for the crash and fault
 * tests: inserts, overwrites, removes, snapshots and deletes in a small key space, with a
 * hash of the full tree contents recorded after each commit.
 */
#ifndef TESTS_SUPPORT_PDATA_WORKLOAD_H
#define TESTS_SUPPORT_PDATA_WORKLOAD_H

#include <stdint.h>

#include "tests/support/pdata_pool.h"

#define WL_DEVS 3
#define WL_KEYS 400

/* The top level of the mapping tree (device -> subtree) as a one-level tree. */
struct dm_btree_info wl_tl_info(struct pool *p);
/* Hash of every (dev, key, value) in order; 0 and *hash set, or the walk's error. */
int wl_hash(struct pool *p, uint64_t *hash);
/* One transaction's worth of changes (not committed), chosen by @rng. */
int wl_transaction(struct pool *p, uint64_t *rng, unsigned nops);

#endif
