/* SPDX-License-Identifier: MIT */
/*
 * Transaction manager (after Linux's dm-transaction-manager.h): copy-on-write on top of the
 * block manager and the metadata space map.
 *
 * The only ways to get a writable block are dm_tm_new_block() and dm_tm_shadow_block(), so
 * a block reachable from the last committed superblock is never overwritten. Commit is
 * two-phase:
 *   dm_tm_pre_commit(tm);                 -- commits the space maps; no allocation after
 *   ...copy the space-map roots into the superblock, write-lock it with dm_bm_write_lock...
 *   dm_tm_commit(tm, superblock);         -- dirty blocks, flush, superblock, flush
 * Abort: destroy the tm and the space maps, dm_bm_drop_dirty(), and open again from the
 * committed superblock (dm_tm_open_with_sm); nothing since the last commit survives.
 *
 * Errors are those of the block manager and space maps below; after any error in a
 * modifying call the transaction must be aborted.
 */
#ifndef CORE_PDATA_TRANSACTION_MANAGER_H
#define CORE_PDATA_TRANSACTION_MANAGER_H

#include "core/pdata/block_manager.h"
#include "core/pdata/space_map.h"

struct dm_transaction_manager;

/* A tm on @bm allocating through @sm (not owned). */
int dm_tm_create(struct dm_block_manager *bm, struct dm_space_map *sm,
		 struct dm_transaction_manager **out);
void dm_tm_destroy(struct dm_transaction_manager *tm);

/* Commit the metadata space map (phase one of commit). */
int dm_tm_pre_commit(struct dm_transaction_manager *tm);
/*
 * Phase two: write every dirty block, flush, write and unlock @superblock (write-locked by
 * the caller through the bm, never shadowed), flush. @superblock is unlocked in all cases.
 */
int dm_tm_commit(struct dm_transaction_manager *tm, struct dm_block *superblock);

/* Allocate a block, zero it, and return it write-locked. */
int dm_tm_new_block(struct dm_transaction_manager *tm, const struct dm_block_validator *v,
		    struct dm_block **result);
/*
 * Get a writable version of @orig: @orig itself if it was allocated or shadowed in this
 * transaction and is not shared, otherwise a copy in a new block (and @orig is decremented).
 * *inc_children is set when @orig was shared (count > 1): the caller must then increment
 * everything the copy references. Don't use @orig after this.
 */
int dm_tm_shadow_block(struct dm_transaction_manager *tm, dm_block_t orig,
		       const struct dm_block_validator *v, struct dm_block **result,
		       int *inc_children);
int dm_tm_read_lock(struct dm_transaction_manager *tm, dm_block_t b,
		    const struct dm_block_validator *v, struct dm_block **result);
/* As dm_tm_read_lock() but never reads the device: -EWOULDBLOCK when @b is not cached. */
int dm_tm_read_try_lock(struct dm_transaction_manager *tm, dm_block_t b,
			const struct dm_block_validator *v, struct dm_block **result);
void dm_tm_unlock(struct dm_transaction_manager *tm, struct dm_block *b);

/* Reference counts of metadata blocks (the metadata space map). */
int dm_tm_inc(struct dm_transaction_manager *tm, dm_block_t b);
int dm_tm_dec(struct dm_transaction_manager *tm, dm_block_t b);
int dm_tm_ref(struct dm_transaction_manager *tm, dm_block_t b, uint32_t *result);
int dm_tm_block_is_shared(struct dm_transaction_manager *tm, dm_block_t b, int *result);

struct dm_block_manager *dm_tm_get_bm(struct dm_transaction_manager *tm);

/*
 * Format: a new metadata space map covering the whole device (capped at the format's
 * maximum), with block @sb_location reserved for the caller's superblock, and a tm on it.
 * Open: the same from a copy of the committed metadata space-map root.
 */
int dm_tm_create_with_sm(struct dm_block_manager *bm, dm_block_t sb_location,
			 struct dm_transaction_manager **tm, struct dm_space_map **sm);
int dm_tm_open_with_sm(struct dm_block_manager *bm, dm_block_t sb_location, const void *sm_root,
		       size_t root_len, struct dm_transaction_manager **tm,
		       struct dm_space_map **sm);

#endif
