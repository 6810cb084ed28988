/* SPDX-License-Identifier: MIT */
/* The data space map: a committed and a current low-level state (after dm-space-map-disk.c). */
#include "core/pdata/space_map_disk.h"
#include "core/pdata/space_map_common.h"
#include "core/base/util.h"

#include <stdlib.h>
#include <string.h>

struct sm_disk {
	struct dm_space_map sm;
	struct ll_disk ll;
	struct ll_disk old_ll;
	dm_block_t begin;
	dm_block_t nr_allocated_this_transaction;
};

static struct sm_disk *to_smd(struct dm_space_map *sm)
{
	return container_of(sm, struct sm_disk, sm);
}

static void sm_disk_destroy(struct dm_space_map *sm)
{
	free(to_smd(sm));
}

static int sm_disk_extend(struct dm_space_map *sm, dm_block_t extra_blocks)
{
	return sm_ll_extend(&to_smd(sm)->ll, extra_blocks);
}

static int sm_disk_get_nr_blocks(struct dm_space_map *sm, dm_block_t *count)
{
	*count = to_smd(sm)->ll.nr_blocks;
	return 0;
}

static int sm_disk_get_nr_free(struct dm_space_map *sm, dm_block_t *count)
{
	struct sm_disk *smd = to_smd(sm);

	*count = smd->ll.nr_blocks - smd->old_ll.nr_allocated - smd->nr_allocated_this_transaction;
	return 0;
}

static int sm_disk_get_count(struct dm_space_map *sm, dm_block_t b, uint32_t *result)
{
	return sm_ll_lookup(&to_smd(sm)->ll, b, result);
}

static int sm_disk_count_is_more_than_one(struct dm_space_map *sm, dm_block_t b, int *result)
{
	uint32_t count;
	int r = sm_disk_get_count(sm, b, &count);

	if (!r)
		*result = count > 1;
	return r;
}

/*
 * Keep nr_allocated_this_transaction exact whatever call changed a count (as
 * dm-space-map-disk.c does): it counts the blocks free in the committed state that are in
 * use now. A block the committed state uses stays out of the free count while freed (it
 * cannot be handed out before the commit), so its events change nothing.
 */
static int account(struct sm_disk *smd, dm_block_t b, enum allocation_event ev)
{
	uint32_t old_count = 0;
	int r;

	if (ev == SM_NONE)
		return 0;
	if (b < smd->old_ll.nr_blocks) {
		r = sm_ll_lookup_bitmap(&smd->old_ll, b, &old_count);
		if (r)
			return r;
	}
	if (old_count)
		return 0;
	if (ev == SM_ALLOC)
		smd->nr_allocated_this_transaction++;
	else
		smd->nr_allocated_this_transaction--;
	return 0;
}

static int sm_disk_set_count(struct dm_space_map *sm, dm_block_t b, uint32_t count)
{
	enum allocation_event ev;
	int r = sm_ll_insert(&to_smd(sm)->ll, b, count, &ev);

	return r ? r : account(to_smd(sm), b, ev);
}

static int sm_disk_inc_block(struct dm_space_map *sm, dm_block_t b)
{
	enum allocation_event ev;
	int r = sm_ll_inc(&to_smd(sm)->ll, b, &ev);

	return r ? r : account(to_smd(sm), b, ev);
}

static int sm_disk_dec_block(struct dm_space_map *sm, dm_block_t b)
{
	enum allocation_event ev;
	int r = sm_ll_dec(&to_smd(sm)->ll, b, &ev);

	return r ? r : account(to_smd(sm), b, ev);
}

/*
 * A block free both in the committed state (so no committed mapping can point at it) and
 * now. Blocks beyond the committed size (after an extend) only need to be free now.
 */
static int find_common_free(struct sm_disk *smd, dm_block_t begin, dm_block_t end,
			    dm_block_t *result)
{
	dm_block_t old_end = MIN(end, smd->old_ll.nr_blocks);

	while (begin < old_end) {
		uint32_t c;
		int r = sm_ll_find_free_block(&smd->old_ll, begin, old_end, result);

		if (r == -ENOSPC)
			break;
		if (r)
			return r;
		r = sm_ll_lookup_bitmap(&smd->ll, *result, &c);
		if (r)
			return r;
		if (!c)
			return 0;
		begin = *result + 1;
	}
	return sm_ll_find_free_block(&smd->ll, MAX(begin, old_end), end, result);
}

static int sm_disk_new_block(struct dm_space_map *sm, dm_block_t *b)
{
	struct sm_disk *smd = to_smd(sm);
	enum allocation_event ev;
	int r;

	r = find_common_free(smd, smd->begin, smd->ll.nr_blocks, b);
	if (r == -ENOSPC && smd->begin)
		r = find_common_free(smd, 0, smd->begin, b);
	if (r)
		return r;
	smd->begin = *b + 1;
	r = sm_ll_inc(&smd->ll, *b, &ev);
	return r ? r : account(smd, *b, ev);
}

void dm_sm_disk_set_alloc_hint(struct dm_space_map *sm, dm_block_t b)
{
	struct sm_disk *smd = to_smd(sm);

	smd->begin = b < smd->ll.nr_blocks ? b : 0;
}

int dm_sm_disk_recount(struct dm_space_map *sm, bool *changed)
{
	struct sm_disk *smd = to_smd(sm);
	int r;

	if (smd->nr_allocated_this_transaction || memcmp(&smd->ll, &smd->old_ll, sizeof(smd->ll)))
		return -EBUSY;
	r = sm_ll_recount(&smd->ll, changed);
	/*
	 * The bitmaps are untouched, so the committed state allocates what the current one
	 * does: keep the free count exact. (The committed index keeps its old hints; they
	 * only steer the search until the commit.)
	 */
	if (!r)
		smd->old_ll.nr_allocated = smd->ll.nr_allocated;
	return r;
}

static int sm_disk_commit(struct dm_space_map *sm)
{
	struct sm_disk *smd = to_smd(sm);
	int r = sm_ll_commit(&smd->ll);

	if (r)
		return r;
	memcpy(&smd->old_ll, &smd->ll, sizeof(smd->ll));
	smd->nr_allocated_this_transaction = 0;
	return 0;
}

static int sm_disk_root_size(struct dm_space_map *sm, size_t *result)
{
	*result = sizeof(struct disk_sm_root);
	return 0;
}

static int sm_disk_copy_root(struct dm_space_map *sm, void *where_le, size_t max)
{
	struct disk_sm_root root;

	if (max < sizeof(root))
		return -ENOSPC;
	sm_ll_save_root(&to_smd(sm)->ll, &root);
	memcpy(where_le, &root, sizeof(root));
	return 0;
}

static const struct dm_space_map sm_disk_ops = {
	.destroy = sm_disk_destroy,
	.extend = sm_disk_extend,
	.get_nr_blocks = sm_disk_get_nr_blocks,
	.get_nr_free = sm_disk_get_nr_free,
	.get_count = sm_disk_get_count,
	.count_is_more_than_one = sm_disk_count_is_more_than_one,
	.set_count = sm_disk_set_count,
	.commit = sm_disk_commit,
	.inc_block = sm_disk_inc_block,
	.dec_block = sm_disk_dec_block,
	.new_block = sm_disk_new_block,
	.root_size = sm_disk_root_size,
	.copy_root = sm_disk_copy_root,
};

int dm_sm_disk_create(struct dm_transaction_manager *tm, dm_block_t nr_blocks,
		      struct dm_space_map **result)
{
	struct sm_disk *smd = calloc(1, sizeof(*smd));
	int r;

	if (!smd)
		return -ENOMEM;
	smd->sm = sm_disk_ops;
	r = sm_ll_new_disk(&smd->ll, tm);
	if (!r)
		r = sm_ll_extend(&smd->ll, nr_blocks);
	if (!r)
		r = sm_disk_commit(&smd->sm);
	if (r) {
		free(smd);
		return r;
	}
	*result = &smd->sm;
	return 0;
}

int dm_sm_disk_open(struct dm_transaction_manager *tm, const void *root_le, size_t len,
		    struct dm_space_map **result)
{
	struct sm_disk *smd = calloc(1, sizeof(*smd));
	int r;

	if (!smd)
		return -ENOMEM;
	smd->sm = sm_disk_ops;
	r = sm_ll_open_disk(&smd->ll, tm, root_le, len);
	if (!r)
		r = sm_disk_commit(&smd->sm);
	if (r) {
		free(smd);
		return r;
	}
	*result = &smd->sm;
	return 0;
}
