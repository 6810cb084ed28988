/* SPDX-License-Identifier: MIT */
/*
 * The difference of two single-level B-trees on one transaction manager, in key order,
 * skipping every subtree the two share.
 *
 * Copy-on-write trees share nodes: a node reachable from both roots is one block, so the
 * same block number means the same keys and values below it. dm_btree_diff() walks both
 * trees side by side with two cursors (a stack of nodes from the root down, at most the
 * trees' depth) and steps over a subtree the moment both cursors stand on the same block,
 * without reading it. Its cost is the nodes on the paths to what differs, not the size of
 * the trees; its memory is one node copy per level per tree.
 *
 * Nodes are copied out of the block manager and unlocked before @fn runs, so @fn may read
 * the metadata; it must not change the trees being compared (the caller serialises).
 */
#ifndef CORE_PDATA_BTREE_DIFF_H
#define CORE_PDATA_BTREE_DIFF_H

#include "core/pdata/btree.h"

#include <stdbool.h>
#include <stdint.h>

struct dm_btree_diff_stats {
	uint64_t nodes_read;	   /* B-tree nodes read (through the block manager's cache) */
	uint64_t subtrees_skipped; /* shared subtrees stepped over unread */
	uint64_t keys_compared;	   /* leaf entries looked at */
};

/*
 * Call @fn for every key of the single-level trees @left and @right (info->levels must be
 * 1) from key @from on, in ascending order, where the two differ: present in one only
 * (the other value pointer NULL) or present in both with values that
 * info->value_type.equal() says differ (memcmp() when it is NULL). With @want_same, also
 * for keys present in both with equal values; then shared subtrees are read, not skipped
 * (their keys must be listed). The walk starts with a descent to @from: keys below it are
 * never read. A non-zero return from @fn stops the walk and is returned. @stats (optional)
 * is filled in whatever the result.
 * Errors: -EINVAL (bad arguments), -ENOMEM, -EILSEQ for a node that is not a valid node of
 * such a tree (or a tree deeper than any valid one), and the block manager's errors.
 */
int dm_btree_diff(struct dm_btree_info *info, dm_block_t left, dm_block_t right, uint64_t from,
		  bool want_same,
		  int (*fn)(void *context, uint64_t key, const void *left_le, const void *right_le),
		  void *context, struct dm_btree_diff_stats *stats);

#endif
