/* SPDX-License-Identifier: MIT */
/*
 * Copy-on-write: remembers which blocks were allocated or shadowed in this transaction
 * (only those may be written in place) in an open-addressing hash set, cleared at commit.
 */
#include "core/pdata/transaction_manager.h"
#include "core/pdata/space_map_metadata.h"

#include <stdlib.h>
#include <string.h>

#define NO_BLOCK (~(dm_block_t)0)

struct dm_transaction_manager {
	struct dm_block_manager *bm;
	struct dm_space_map *sm;
	dm_block_t *shadows; /* hash set; NO_BLOCK marks an empty slot */
	size_t nr_shadows, cap;
};

int dm_tm_create(struct dm_block_manager *bm, struct dm_space_map *sm,
		 struct dm_transaction_manager **out)
{
	struct dm_transaction_manager *tm = calloc(1, sizeof(*tm));

	if (!tm)
		return -ENOMEM;
	tm->bm = bm;
	tm->sm = sm;
	*out = tm;
	return 0;
}

void dm_tm_destroy(struct dm_transaction_manager *tm)
{
	if (!tm)
		return;
	free(tm->shadows);
	free(tm);
}

static size_t shadow_hash(dm_block_t b, size_t cap)
{
	return (size_t)((b * 0x9e3779b97f4a7c15ull) >> 17) & (cap - 1);
}

static bool is_shadow(struct dm_transaction_manager *tm, dm_block_t b)
{
	if (!tm->nr_shadows)
		return false;
	for (size_t i = shadow_hash(b, tm->cap);; i = (i + 1) & (tm->cap - 1)) {
		if (tm->shadows[i] == b)
			return true;
		if (tm->shadows[i] == NO_BLOCK)
			return false;
	}
}

static void set_add(dm_block_t *set, size_t cap, dm_block_t b)
{
	size_t i = shadow_hash(b, cap);

	while (set[i] != NO_BLOCK && set[i] != b)
		i = (i + 1) & (cap - 1);
	set[i] = b;
}

static int insert_shadow(struct dm_transaction_manager *tm, dm_block_t b)
{
	if ((tm->nr_shadows + 1) * 2 > tm->cap) {
		size_t ncap = tm->cap ? tm->cap * 2 : 256;
		dm_block_t *n = malloc(ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		memset(n, 0xff, ncap * sizeof(*n));
		for (size_t i = 0; i < tm->cap; i++)
			if (tm->shadows[i] != NO_BLOCK)
				set_add(n, ncap, tm->shadows[i]);
		free(tm->shadows);
		tm->shadows = n;
		tm->cap = ncap;
	}
	if (!is_shadow(tm, b)) {
		set_add(tm->shadows, tm->cap, b);
		tm->nr_shadows++;
	}
	return 0;
}

static void wipe_shadow_table(struct dm_transaction_manager *tm)
{
	if (tm->shadows)
		memset(tm->shadows, 0xff, tm->cap * sizeof(*tm->shadows));
	tm->nr_shadows = 0;
}

int dm_tm_pre_commit(struct dm_transaction_manager *tm)
{
	return dm_sm_commit(tm->sm);
}

int dm_tm_commit(struct dm_transaction_manager *tm, struct dm_block *superblock)
{
	wipe_shadow_table(tm);
	return dm_bm_flush_and_unlock(tm->bm, superblock);
}

int dm_tm_new_block(struct dm_transaction_manager *tm, const struct dm_block_validator *v,
		    struct dm_block **result)
{
	dm_block_t b;
	int r = dm_sm_new_block(tm->sm, &b);

	if (r)
		return r;
	r = insert_shadow(tm, b);
	if (r)
		return r;
	return dm_bm_write_lock_zero(tm->bm, b, v, result);
}

static int shadow_copy(struct dm_transaction_manager *tm, dm_block_t orig,
		       const struct dm_block_validator *v, struct dm_block **result)
{
	struct dm_block *o, *n;
	dm_block_t b;
	int r;

	/* Read the original first so a corrupt block fails before anything changes. */
	r = dm_bm_read_lock(tm->bm, orig, v, &o);
	if (r)
		return r;
	r = dm_sm_new_block(tm->sm, &b);
	if (!r)
		r = dm_bm_write_lock_zero(tm->bm, b, v, &n);
	if (r) {
		dm_bm_unlock(o);
		return r;
	}
	memcpy(dm_block_data(n), dm_block_data(o), DM_BM_BLOCK_SIZE);
	dm_bm_unlock(o);
	r = dm_sm_dec_block(tm->sm, orig);
	if (!r)
		r = insert_shadow(tm, b);
	if (r) {
		dm_bm_unlock(n);
		return r;
	}
	*result = n;
	return 0;
}

int dm_tm_shadow_block(struct dm_transaction_manager *tm, dm_block_t orig,
		       const struct dm_block_validator *v, struct dm_block **result,
		       int *inc_children)
{
	int more_than_one, r;

	r = dm_sm_count_is_more_than_one(tm->sm, orig, &more_than_one);
	if (r)
		return r;
	if (is_shadow(tm, orig) && !more_than_one) {
		*inc_children = 0;
		return dm_bm_write_lock(tm->bm, orig, v, result);
	}
	r = shadow_copy(tm, orig, v, result);
	if (r)
		return r;
	*inc_children = more_than_one;
	return 0;
}

int dm_tm_read_lock(struct dm_transaction_manager *tm, dm_block_t b,
		    const struct dm_block_validator *v, struct dm_block **result)
{
	return dm_bm_read_lock(tm->bm, b, v, result);
}

int dm_tm_read_try_lock(struct dm_transaction_manager *tm, dm_block_t b,
			const struct dm_block_validator *v, struct dm_block **result)
{
	return dm_bm_read_try_lock(tm->bm, b, v, result);
}

void dm_tm_unlock(struct dm_transaction_manager *tm, struct dm_block *b)
{
	dm_bm_unlock(b);
}

int dm_tm_inc(struct dm_transaction_manager *tm, dm_block_t b)
{
	return dm_sm_inc_block(tm->sm, b);
}

int dm_tm_dec(struct dm_transaction_manager *tm, dm_block_t b)
{
	return dm_sm_dec_block(tm->sm, b);
}

int dm_tm_ref(struct dm_transaction_manager *tm, dm_block_t b, uint32_t *result)
{
	return dm_sm_get_count(tm->sm, b, result);
}

int dm_tm_block_is_shared(struct dm_transaction_manager *tm, dm_block_t b, int *result)
{
	return dm_sm_count_is_more_than_one(tm->sm, b, result);
}

struct dm_block_manager *dm_tm_get_bm(struct dm_transaction_manager *tm)
{
	return tm->bm;
}

static int tm_with_sm(struct dm_block_manager *bm, dm_block_t sb_location, const void *sm_root,
		      size_t root_len, bool create, struct dm_transaction_manager **tm,
		      struct dm_space_map **sm)
{
	int r;

	r = dm_sm_metadata_init(sm);
	if (r)
		return r;
	r = dm_tm_create(bm, *sm, tm);
	if (r) {
		dm_sm_destroy(*sm);
		return r;
	}
	if (create)
		r = dm_sm_metadata_create(*sm, *tm, dm_bm_nr_blocks(bm), sb_location);
	else
		r = dm_sm_metadata_open(*sm, *tm, sm_root, root_len);
	if (r) {
		dm_tm_destroy(*tm);
		dm_sm_destroy(*sm);
		*tm = NULL;
		*sm = NULL;
	}
	return r;
}

int dm_tm_create_with_sm(struct dm_block_manager *bm, dm_block_t sb_location,
			 struct dm_transaction_manager **tm, struct dm_space_map **sm)
{
	return tm_with_sm(bm, sb_location, NULL, 0, true, tm, sm);
}

int dm_tm_open_with_sm(struct dm_block_manager *bm, dm_block_t sb_location, const void *sm_root,
		       size_t root_len, struct dm_transaction_manager **tm,
		       struct dm_space_map **sm)
{
	return tm_with_sm(bm, sb_location, sm_root, root_len, false, tm, sm);
}
