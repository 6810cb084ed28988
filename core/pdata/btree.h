/* SPDX-License-Identifier: MIT */
/*
 * Copy-on-write B+trees in the dm-btree on-disk format (after Linux's dm-btree.h).
 *
 * Keys are uint64_t, values fixed-size little-endian blobs. A tree with levels = N is a
 * tree of trees: for every level but the last the leaf values are le64 roots of the next
 * level's trees, and calls take a vector of N keys. Every update shadows the path from the
 * root, so it returns a new root; the old root is no longer valid after the call (its
 * reference was handed to the new one).
 *
 * Value types tell the tree how to count what its leaves point to: inc() when a shared leaf
 * is copied (both copies now reference the value), dec() when a value is dropped (removed,
 * overwritten by a different value, or deleted with the tree). Values handed to insert
 * already carry their reference.
 *
 * Errors: -ENODATA when the key is absent (lookups, remove), -EILSEQ / -ENOTBLK for corrupt
 * nodes (bad checksum, location, header, or a structure no valid tree has), -EINVAL for
 * bad arguments, -ENOSPC when metadata space runs out, and I/O errors from below. A
 * modifying call that fails with anything but -ENODATA/-EINVAL leaves the transaction
 * inconsistent: abort it.
 */
#ifndef CORE_PDATA_BTREE_H
#define CORE_PDATA_BTREE_H

#include "core/pdata/transaction_manager.h"

#include <stdint.h>

#define DM_BTREE_MAX_LEVELS 4

struct dm_btree_value_type {
	void *context;
	/* Bytes per value; all values are little-endian on disk. */
	uint32_t size;
	/* Take / drop one reference to what @value_le points to; NULL = nothing to count. */
	int (*inc)(void *context, const void *value_le);
	int (*dec)(void *context, const void *value_le);
	/* True when two values are the same reference (an overwrite then keeps it, no dec). */
	int (*equal)(void *context, const void *value1_le, const void *value2_le);
};

struct dm_btree_info {
	struct dm_transaction_manager *tm;
	unsigned levels; /* 1 .. DM_BTREE_MAX_LEVELS */
	struct dm_btree_value_type value_type;
};

/* The node validator (salt 121107); exposed for checkers. */
extern const struct dm_block_validator btree_node_validator;

/* max_entries of a node holding @value_size-byte values: 3 * floor(floor(4064/(8+vs))/3). */
uint32_t dm_btree_max_entries(uint32_t value_size);

/* Create an empty tree (one empty leaf). */
int dm_btree_empty(struct dm_btree_info *info, dm_block_t *root);
/* Drop a reference to a tree: nodes whose count reaches 0 are freed, their values dec'd. */
int dm_btree_del(struct dm_btree_info *info, dm_block_t root);

/* O(log n). Copy the value of @keys into @value_le. */
int dm_btree_lookup(struct dm_btree_info *info, dm_block_t root, const uint64_t *keys,
		    void *value_le);
/*
 * As dm_btree_lookup(), but never waits for the device: it reads no block from it and only
 * uses nodes already in the block manager's cache. -EWOULDBLOCK as soon as a node on the
 * path is not cached; nothing was read or changed then, and the caller retries with
 * dm_btree_lookup() from a context that may wait for I/O. Otherwise the same results and
 * errors as dm_btree_lookup(). (Linux gets this from a non-blocking clone of the transaction
 * manager, dm_tm_create_non_blocking_clone(), for dm-thin's fast path.)
 */
int dm_btree_lookup_nonblocking(struct dm_btree_info *info, dm_block_t root, const uint64_t *keys,
				void *value_le);
/*
 * The first entry whose last-level key is >= keys[levels-1] (upper-level keys must match
 * exactly); its key in *rkey and value in @value_le. -ENODATA if there is none.
 */
int dm_btree_lookup_next(struct dm_btree_info *info, dm_block_t root, const uint64_t *keys,
			 uint64_t *rkey, void *value_le);

/*
 * Insert or overwrite. Overwriting calls dec() on the old value unless equal() says it is
 * the same. *inserted (may be NULL) is 1 for a new key, 0 for an overwrite.
 */
int dm_btree_insert(struct dm_btree_info *info, dm_block_t root, const uint64_t *keys,
		    const void *value_le, dm_block_t *new_root);
int dm_btree_insert_notify(struct dm_btree_info *info, dm_block_t root, const uint64_t *keys,
			   const void *value_le, dm_block_t *new_root, int *inserted);

/*
 * Remove @keys, calling dec() on its value. -ENODATA (and nothing changed, *new_root =
 * root) if absent. Empty lower-level trees are kept.
 */
int dm_btree_remove(struct dm_btree_info *info, dm_block_t root, const uint64_t *keys,
		    dm_block_t *new_root);

/* Highest / lowest key at each level, following the highest / lowest path; -ENODATA if empty. */
int dm_btree_find_highest_key(struct dm_btree_info *info, dm_block_t root, uint64_t *result_keys);
int dm_btree_find_lowest_key(struct dm_btree_info *info, dm_block_t root, uint64_t *result_keys);

/*
 * Call @fn for every last-level entry in key order, with the full key vector. O(n). A
 * non-zero return from @fn stops the walk and is returned.
 */
int dm_btree_walk(struct dm_btree_info *info, dm_block_t root,
		  int (*fn)(void *context, const uint64_t *keys, void *value_le), void *context);

#endif
