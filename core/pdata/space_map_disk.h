/* SPDX-License-Identifier: MIT */
/*
 * The disk space map (after dm-space-map-disk.h): reference counts of data blocks, stored
 * in metadata blocks through @tm (index B-tree, bitmaps, overflow tree).
 */
#ifndef CORE_PDATA_SPACE_MAP_DISK_H
#define CORE_PDATA_SPACE_MAP_DISK_H

#include "core/pdata/transaction_manager.h"

/* A new space map of @nr_blocks blocks, all free. */
int dm_sm_disk_create(struct dm_transaction_manager *tm, dm_block_t nr_blocks,
		      struct dm_space_map **result);
/* Open from a committed root (struct disk_sm_root); -EILSEQ if it is implausible. */
int dm_sm_disk_open(struct dm_transaction_manager *tm, const void *root_le, size_t len,
		    struct dm_space_map **result);
/*
 * Start the next allocation's search at @b (it still wraps round and still skips blocks
 * freed in this transaction); a hint past the end means 0. Only for a disk space map.
 */
void dm_sm_disk_set_alloc_hint(struct dm_space_map *sm, dm_block_t b);
/*
 * Right after open (-EBUSY otherwise): correct the counters that summarise the bitmaps
 * (sm_ll_recount()) in the current transaction; they reach the disk at the next commit.
 * Reads every bitmap. After an error other than -EBUSY the transaction must be aborted.
 */
int dm_sm_disk_recount(struct dm_space_map *sm, bool *changed);

#endif
