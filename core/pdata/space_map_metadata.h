/* SPDX-License-Identifier: MIT */
/*
 * The metadata space map (after dm-space-map-metadata.h): counts the metadata device's own
 * blocks, including the blocks that hold it, so updating it can allocate and free blocks it
 * manages. Changes requested while it is already inside an update are queued and applied
 * when the outermost update finishes; new blocks come from blocks free in the committed
 * state, so finding one never changes anything.
 *
 * Use through dm_tm_create_with_sm() / dm_tm_open_with_sm(), which do init + create/open.
 */
#ifndef CORE_PDATA_SPACE_MAP_METADATA_H
#define CORE_PDATA_SPACE_MAP_METADATA_H

#include "core/pdata/transaction_manager.h"

/* Allocate an unconfigured metadata space map (so a tm can be created on it). */
int dm_sm_metadata_init(struct dm_space_map **sm);
/*
 * Format: space for @nr_blocks blocks (capped at
 * DM_SM_METADATA_MAX_BLOCKS, core/pdata/space_map_common.h), blocks 0 .. @superblock
 * reserved, the space map's own blocks allocated right after @superblock, and committed.
 */
int dm_sm_metadata_create(struct dm_space_map *sm, struct dm_transaction_manager *tm,
			  dm_block_t nr_blocks, dm_block_t superblock);
int dm_sm_metadata_open(struct dm_space_map *sm, struct dm_transaction_manager *tm,
			const void *root_le, size_t len);
/*
 * Right after open (-EBUSY otherwise): correct the counters that summarise the bitmaps
 * (sm_ll_recount()); they reach the disk at the next commit. Reads every bitmap.
 */
int dm_sm_metadata_recount(struct dm_space_map *sm, bool *changed);

#endif
