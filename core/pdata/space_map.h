/* SPDX-License-Identifier: MIT */
/*
 * The space-map interface (after Linux's dm-space-map.h): reference counts for a range of
 * blocks plus an allocator. Two implementations: the disk space map (data blocks,
 * space_map_disk.h) and the metadata space map (metadata blocks, space_map_metadata.h).
 * Callers use the dm_sm_* wrappers, never the ops.
 *
 * Counts are 32-bit; 0 means free. A block freed in the current transaction is never handed
 * out again before the next commit (the committed metadata may still reference it).
 *
 * Errors: -EINVAL for a block past nr_blocks or a dec of a free block, -ENOSPC when no
 * block is free, -EILSEQ / -ENOTBLK for corrupt space-map blocks, -EIO etc. from the device.
 * After any error other than -EINVAL/-ENOSPC the transaction must be aborted.
 */
#ifndef CORE_PDATA_SPACE_MAP_H
#define CORE_PDATA_SPACE_MAP_H

#include "core/pdata/block_manager.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

struct dm_space_map {
	void (*destroy)(struct dm_space_map *sm);
	/* Grow by @extra_blocks; space maps never shrink. */
	int (*extend)(struct dm_space_map *sm, dm_block_t extra_blocks);
	int (*get_nr_blocks)(struct dm_space_map *sm, dm_block_t *count);
	/* Blocks allocatable now: free in the committed state and not taken since. */
	int (*get_nr_free)(struct dm_space_map *sm, dm_block_t *count);
	int (*get_count)(struct dm_space_map *sm, dm_block_t b, uint32_t *result);
	int (*count_is_more_than_one)(struct dm_space_map *sm, dm_block_t b, int *result);
	int (*set_count)(struct dm_space_map *sm, dm_block_t b, uint32_t count);
	/* Make the current state the committed one (writes what must be written). */
	int (*commit)(struct dm_space_map *sm);
	int (*inc_block)(struct dm_space_map *sm, dm_block_t b);
	int (*dec_block)(struct dm_space_map *sm, dm_block_t b);
	/* Allocate a block (count becomes 1). */
	int (*new_block)(struct dm_space_map *sm, dm_block_t *b);
	/* The on-disk root (struct disk_sm_root, 32 bytes) describing the committed state. */
	int (*root_size)(struct dm_space_map *sm, size_t *result);
	int (*copy_root)(struct dm_space_map *sm, void *copy_to_here_le, size_t len);
};

static inline void dm_sm_destroy(struct dm_space_map *sm)
{
	if (sm)
		sm->destroy(sm);
}

static inline int dm_sm_extend(struct dm_space_map *sm, dm_block_t extra_blocks)
{
	return sm->extend(sm, extra_blocks);
}

static inline int dm_sm_get_nr_blocks(struct dm_space_map *sm, dm_block_t *count)
{
	return sm->get_nr_blocks(sm, count);
}

static inline int dm_sm_get_nr_free(struct dm_space_map *sm, dm_block_t *count)
{
	return sm->get_nr_free(sm, count);
}

static inline int dm_sm_get_count(struct dm_space_map *sm, dm_block_t b, uint32_t *result)
{
	return sm->get_count(sm, b, result);
}

static inline int dm_sm_count_is_more_than_one(struct dm_space_map *sm, dm_block_t b, int *result)
{
	return sm->count_is_more_than_one(sm, b, result);
}

static inline int dm_sm_set_count(struct dm_space_map *sm, dm_block_t b, uint32_t count)
{
	return sm->set_count(sm, b, count);
}

static inline int dm_sm_commit(struct dm_space_map *sm)
{
	return sm->commit(sm);
}

static inline int dm_sm_inc_block(struct dm_space_map *sm, dm_block_t b)
{
	return sm->inc_block(sm, b);
}

static inline int dm_sm_dec_block(struct dm_space_map *sm, dm_block_t b)
{
	return sm->dec_block(sm, b);
}

/* [b, e) ranges, one block at a time. */
static inline int dm_sm_inc_blocks(struct dm_space_map *sm, dm_block_t b, dm_block_t e)
{
	int r = 0;

	for (; b < e && !r; b++)
		r = sm->inc_block(sm, b);
	return r;
}

static inline int dm_sm_dec_blocks(struct dm_space_map *sm, dm_block_t b, dm_block_t e)
{
	int r = 0;

	for (; b < e && !r; b++)
		r = sm->dec_block(sm, b);
	return r;
}

static inline int dm_sm_new_block(struct dm_space_map *sm, dm_block_t *b)
{
	return sm->new_block(sm, b);
}

static inline int dm_sm_root_size(struct dm_space_map *sm, size_t *result)
{
	return sm->root_size(sm, result);
}

static inline int dm_sm_copy_root(struct dm_space_map *sm, void *copy_to_here_le, size_t len)
{
	return sm->copy_root(sm, copy_to_here_le, len);
}

#endif
