/* SPDX-License-Identifier: MIT */
/*
 * The metadata space map (after dm-space-map-metadata.c). The recursion problem: changing a
 * count shadows a bitmap or an overflow-tree node, which allocates a block and drops one,
 * which changes counts in the same space map. Every public operation is bracketed by in()
 * and out(); count changes asked for while inside are queued ("block ops") and out() of the
 * outermost operation applies the queue until it is empty (applying may queue more).
 *
 * Bootstrap: while formatting (and extending) there is no usable bitmap yet, so new blocks
 * are handed out linearly from @begin and their increments are added afterwards.
 */
#include "core/pdata/space_map_metadata.h"
#include "core/pdata/space_map_common.h"
#include "core/base/util.h"

#include <stdlib.h>
#include <string.h>

#define MAX_RECURSIVE_ALLOCATIONS 1024

enum block_op_type {
	BOP_INC,
	BOP_DEC,
};

struct block_op {
	enum block_op_type type;
	dm_block_t block;
};

struct bop_ring_buffer {
	unsigned begin, end;
	struct block_op bops[MAX_RECURSIVE_ALLOCATIONS + 1];
};

struct sm_metadata {
	struct dm_space_map sm;
	struct ll_disk ll;
	struct ll_disk old_ll;
	dm_block_t begin;
	unsigned recursion_count;
	dm_block_t allocated_this_transaction;
	bool bootstrap;
	struct bop_ring_buffer uncommitted;
};

static struct sm_metadata *to_smm(struct dm_space_map *sm)
{
	return container_of(sm, struct sm_metadata, sm);
}

/*----------------------------------------------------------------*/
/* Queued block ops */

static bool brb_empty(struct bop_ring_buffer *brb)
{
	return brb->begin == brb->end;
}

static unsigned brb_next(unsigned i)
{
	return (i + 1) % (MAX_RECURSIVE_ALLOCATIONS + 1);
}

static int add_bop(struct sm_metadata *smm, enum block_op_type type, dm_block_t b)
{
	struct bop_ring_buffer *brb = &smm->uncommitted;
	unsigned next = brb_next(brb->end);

	if (next == brb->begin)
		return -ENOMEM; /* deeper than any real update needs: a loop */
	brb->bops[brb->end].type = type;
	brb->bops[brb->end].block = b;
	brb->end = next;
	return 0;
}

static int apply_bops(struct sm_metadata *smm)
{
	int r = 0;

	while (!r && !brb_empty(&smm->uncommitted)) {
		struct block_op op = smm->uncommitted.bops[smm->uncommitted.begin];
		enum allocation_event ev;

		smm->uncommitted.begin = brb_next(smm->uncommitted.begin);
		if (op.type == BOP_INC)
			r = sm_ll_inc(&smm->ll, op.block, &ev);
		else
			r = sm_ll_dec(&smm->ll, op.block, &ev);
	}
	return r;
}

static void in(struct sm_metadata *smm)
{
	smm->recursion_count++;
}

static int out(struct sm_metadata *smm)
{
	int r = 0;

	if (smm->recursion_count == 1)
		r = apply_bops(smm);
	smm->recursion_count--;
	return r;
}

static bool recursing(struct sm_metadata *smm)
{
	return smm->recursion_count > 0 || smm->bootstrap;
}

static int combine_errors(int r1, int r2)
{
	return r1 ? r1 : r2;
}

/*----------------------------------------------------------------*/

static void sm_metadata_destroy(struct dm_space_map *sm)
{
	free(to_smm(sm));
}

static int sm_metadata_get_nr_blocks(struct dm_space_map *sm, dm_block_t *count)
{
	*count = to_smm(sm)->ll.nr_blocks;
	return 0;
}

static int sm_metadata_get_nr_free(struct dm_space_map *sm, dm_block_t *count)
{
	struct sm_metadata *smm = to_smm(sm);

	*count = smm->ll.nr_blocks - smm->old_ll.nr_allocated - smm->allocated_this_transaction;
	return 0;
}

static int sm_metadata_get_count(struct dm_space_map *sm, dm_block_t b, uint32_t *result)
{
	struct sm_metadata *smm = to_smm(sm);
	int64_t adjust = 0;
	uint32_t count;
	int r;

	/* The count as it will be once the queued ops are applied. */
	for (unsigned i = smm->uncommitted.begin; i != smm->uncommitted.end; i = brb_next(i))
		if (smm->uncommitted.bops[i].block == b)
			adjust += smm->uncommitted.bops[i].type == BOP_INC ? 1 : -1;
	r = sm_ll_lookup(&smm->ll, b, &count);
	if (r)
		return r;
	if ((int64_t)count + adjust < 0)
		return -EILSEQ;
	*result = (uint32_t)((int64_t)count + adjust);
	return 0;
}

static int sm_metadata_count_is_more_than_one(struct dm_space_map *sm, dm_block_t b, int *result)
{
	uint32_t count;
	int r = sm_metadata_get_count(sm, b, &count);

	if (!r)
		*result = count > 1;
	return r;
}

static int sm_metadata_set_count(struct dm_space_map *sm, dm_block_t b, uint32_t count)
{
	struct sm_metadata *smm = to_smm(sm);
	enum allocation_event ev;
	int r, r2;

	if (recursing(smm))
		return -EINVAL;
	in(smm);
	r = sm_ll_insert(&smm->ll, b, count, &ev);
	r2 = out(smm);
	return combine_errors(r, r2);
}

static int mutate(struct sm_metadata *smm, enum block_op_type type, dm_block_t b)
{
	enum allocation_event ev;
	int r, r2;

	if (recursing(smm))
		return add_bop(smm, type, b);
	in(smm);
	r = type == BOP_INC ? sm_ll_inc(&smm->ll, b, &ev) : sm_ll_dec(&smm->ll, b, &ev);
	r2 = out(smm);
	return combine_errors(r, r2);
}

static int sm_metadata_inc_block(struct dm_space_map *sm, dm_block_t b)
{
	return mutate(to_smm(sm), BOP_INC, b);
}

static int sm_metadata_dec_block(struct dm_space_map *sm, dm_block_t b)
{
	return mutate(to_smm(sm), BOP_DEC, b);
}

/*
 * The first block in [begin, end) free in the committed state and, counting queued ops,
 * now. Finding it reads bitmaps but changes nothing, so it is safe while recursing.
 */
static int find_common_free(struct sm_metadata *smm, dm_block_t begin, dm_block_t end,
			    dm_block_t *result)
{
	dm_block_t old_end = MIN(end, smm->old_ll.nr_blocks);

	while (begin < end) {
		uint32_t c;
		int r;

		if (begin < old_end)
			r = sm_ll_find_free_block(&smm->old_ll, begin, old_end, result);
		else
			r = -ENOSPC;
		if (r == -ENOSPC) {
			if (begin < old_end)
				begin = old_end;
			r = sm_ll_find_free_block(&smm->ll, begin, end, result);
		}
		if (r)
			return r;
		r = sm_metadata_get_count(&smm->sm, *result, &c);
		if (r)
			return r;
		if (!c)
			return 0;
		begin = *result + 1;
	}
	return -ENOSPC;
}

static int sm_metadata_new_block(struct dm_space_map *sm, dm_block_t *b)
{
	struct sm_metadata *smm = to_smm(sm);
	int r;

	if (smm->bootstrap) {
		/* Nothing to search yet: hand out blocks in order; create() counts them. */
		if (smm->ll.nr_blocks && smm->begin >= smm->ll.nr_blocks)
			return -ENOSPC;
		*b = smm->begin++;
		return 0;
	}
	r = find_common_free(smm, smm->begin, smm->ll.nr_blocks, b);
	if (r == -ENOSPC && smm->begin)
		r = find_common_free(smm, 0, smm->begin, b);
	if (r)
		return r;
	smm->begin = *b + 1;
	r = mutate(smm, BOP_INC, *b);
	if (!r)
		smm->allocated_this_transaction++;
	return r;
}

static int sm_metadata_commit(struct dm_space_map *sm)
{
	struct sm_metadata *smm = to_smm(sm);
	int r;

	if (smm->recursion_count || !brb_empty(&smm->uncommitted))
		return -EINVAL;
	r = sm_ll_commit(&smm->ll);
	if (r)
		return r;
	memcpy(&smm->old_ll, &smm->ll, sizeof(smm->ll));
	smm->allocated_this_transaction = 0;
	return 0;
}

/*
 * Count the blocks [b, e) handed out in bootstrap mode: queue all the increments first (so
 * none of them looks free to an allocation made while applying), then apply the queue.
 */
static int count_range(struct sm_metadata *smm, dm_block_t b, dm_block_t e)
{
	int r = 0;

	in(smm);
	for (; b < e && !r; b++)
		r = add_bop(smm, BOP_INC, b);
	return combine_errors(r, out(smm));
}

static int sm_metadata_extend(struct dm_space_map *sm, dm_block_t extra_blocks)
{
	struct sm_metadata *smm = to_smm(sm);
	dm_block_t old_len = smm->ll.nr_blocks, begin_saved = smm->begin;
	int r;

	if (recursing(smm))
		return -EINVAL;
	if (old_len + extra_blocks > DM_SM_METADATA_MAX_BLOCKS)
		extra_blocks = DM_SM_METADATA_MAX_BLOCKS - old_len;
	if (!extra_blocks)
		return 0;
	/* New bitmaps come from the new area, which is free by definition. */
	smm->begin = old_len;
	smm->bootstrap = true;
	r = sm_ll_extend(&smm->ll, extra_blocks);
	smm->bootstrap = false;
	if (!r) {
		dm_block_t e = smm->begin;

		r = count_range(smm, old_len, e);
		if (!r)
			smm->allocated_this_transaction += e - old_len;
	}
	smm->begin = begin_saved;
	return r;
}

static int sm_metadata_root_size(struct dm_space_map *sm, size_t *result)
{
	*result = sizeof(struct disk_sm_root);
	return 0;
}

static int sm_metadata_copy_root(struct dm_space_map *sm, void *where_le, size_t max)
{
	struct disk_sm_root root;

	if (max < sizeof(root))
		return -ENOSPC;
	sm_ll_save_root(&to_smm(sm)->ll, &root);
	memcpy(where_le, &root, sizeof(root));
	return 0;
}

static const struct dm_space_map sm_metadata_ops = {
	.destroy = sm_metadata_destroy,
	.extend = sm_metadata_extend,
	.get_nr_blocks = sm_metadata_get_nr_blocks,
	.get_nr_free = sm_metadata_get_nr_free,
	.get_count = sm_metadata_get_count,
	.count_is_more_than_one = sm_metadata_count_is_more_than_one,
	.set_count = sm_metadata_set_count,
	.commit = sm_metadata_commit,
	.inc_block = sm_metadata_inc_block,
	.dec_block = sm_metadata_dec_block,
	.new_block = sm_metadata_new_block,
	.root_size = sm_metadata_root_size,
	.copy_root = sm_metadata_copy_root,
};

int dm_sm_metadata_init(struct dm_space_map **sm)
{
	struct sm_metadata *smm = calloc(1, sizeof(*smm));

	if (!smm)
		return -ENOMEM;
	smm->sm = sm_metadata_ops;
	*sm = &smm->sm;
	return 0;
}

int dm_sm_metadata_create(struct dm_space_map *sm, struct dm_transaction_manager *tm,
			  dm_block_t nr_blocks, dm_block_t superblock)
{
	struct sm_metadata *smm = to_smm(sm);
	int r;

	if (nr_blocks > DM_SM_METADATA_MAX_BLOCKS)
		nr_blocks = DM_SM_METADATA_MAX_BLOCKS;
	if (superblock >= nr_blocks)
		return -EINVAL;
	smm->begin = superblock + 1;
	smm->bootstrap = true;
	r = sm_ll_new_metadata(&smm->ll, tm);
	if (!r)
		r = sm_ll_extend(&smm->ll, nr_blocks);
	smm->bootstrap = false;
	if (r)
		return r;
	/* Count everything from the superblock to the last block handed out. */
	r = count_range(smm, superblock, smm->begin);
	if (r)
		return r;
	smm->allocated_this_transaction = 0;
	return sm_metadata_commit(sm);
}

int dm_sm_metadata_recount(struct dm_space_map *sm, bool *changed)
{
	struct sm_metadata *smm = to_smm(sm);
	int r;

	if (recursing(smm) || !brb_empty(&smm->uncommitted) || smm->allocated_this_transaction ||
	    memcmp(&smm->ll, &smm->old_ll, sizeof(smm->ll)))
		return -EBUSY;
	r = sm_ll_recount(&smm->ll, changed);
	/* The index is in core and the bitmaps are untouched: the committed view is the same. */
	if (!r)
		memcpy(&smm->old_ll, &smm->ll, sizeof(smm->ll));
	return r;
}

int dm_sm_metadata_open(struct dm_space_map *sm, struct dm_transaction_manager *tm,
			const void *root_le, size_t len)
{
	struct sm_metadata *smm = to_smm(sm);
	int r = sm_ll_open_metadata(&smm->ll, tm, root_le, len);

	if (r)
		return r;
	if (smm->ll.nr_blocks > dm_bm_nr_blocks(dm_tm_get_bm(tm)))
		return -EILSEQ;
	memcpy(&smm->old_ll, &smm->ll, sizeof(smm->ll));
	return 0;
}
