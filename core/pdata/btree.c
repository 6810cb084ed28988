/* SPDX-License-Identifier: MIT */
/*
 * dm-btree: lookup, insert (top-down splitting), remove (top-down rebalancing), delete,
 * walk. Nodes are reached through a "spine" holding at most the parent and the current
 * node write-locked, as the kernel's dm-btree-spine.c does.
 */
#include "core/pdata/btree_internal.h"

#include <stdlib.h>
#include <string.h>

/* A valid tree of 2^64 keys is at most ~10 levels deep; more means a cycle. */
#define MAX_DEPTH 32

/*----------------------------------------------------------------*/
/* Validator */

static void node_prepare_for_write(const struct dm_block_validator *v, struct dm_block *b,
				   size_t block_size)
{
	struct btree_node *n = dm_block_data(b);

	put_le64(&n->header.blocknr, dm_block_location(b));
	put_le32(&n->header.csum, dm_bm_checksum((uint8_t *)n + 4, block_size - 4, BTREE_CSUM_XOR));
}

static int node_check(const struct dm_block_validator *v, struct dm_block *b, size_t block_size)
{
	struct btree_node *n = dm_block_data(b);
	uint32_t flags = node_flags(n), max = node_max(n), vs = node_vsize(n);

	if (get_le64(&n->header.blocknr) != dm_block_location(b))
		return -ENOTBLK;
	if (get_le32(&n->header.csum) !=
	    dm_bm_checksum((uint8_t *)n + 4, block_size - 4, BTREE_CSUM_XOR))
		return -EILSEQ;
	if ((uint64_t)sizeof(struct node_header) + (8ull + vs) * max > block_size)
		return -EILSEQ;
	if (node_nr(n) > max)
		return -EILSEQ;
	if (flags != INTERNAL_NODE && flags != LEAF_NODE)
		return -EILSEQ;
	return 0;
}

const struct dm_block_validator btree_node_validator = {
	.name = "btree_node",
	.prepare_for_write = node_prepare_for_write,
	.check = node_check,
};

/*----------------------------------------------------------------*/
/* Node helpers */

uint32_t dm_btree_max_entries(uint32_t value_size)
{
	uint32_t total =
	    (DM_BM_BLOCK_SIZE - (uint32_t)sizeof(struct node_header)) / (8 + value_size);

	/* 3n entries: "works more nicely for repeated insert remove loops than (2n + 1)". */
	return 3 * (total / 3);
}

int btree_lower_bound(const struct btree_node *n, uint64_t key)
{
	int lo = -1, hi = (int)node_nr(n);

	while (hi - lo > 1) {
		int mid = lo + (hi - lo) / 2;

		if (node_key(n, (uint32_t)mid) <= key)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static uint32_t level_vsize(struct dm_btree_info *info, unsigned level)
{
	return level + 1 < info->levels ? 8 : info->value_type.size;
}

/*
 * The validator checks what any node must satisfy; this checks what a node of this tree and
 * level must: the right value size and the exact max_entries (siblings must agree, and the
 * kernel's rebalancing relies on it).
 */
int node_fits(struct dm_btree_info *info, unsigned level, struct btree_node *n)
{
	uint32_t vs = node_flags(n) == INTERNAL_NODE ? 8 : level_vsize(info, level);

	if (node_vsize(n) != vs || node_max(n) != dm_btree_max_entries(vs))
		return -EILSEQ;
	if (node_flags(n) == INTERNAL_NODE && !node_nr(n))
		return -EILSEQ;
	return 0;
}

static void node_init(struct btree_node *n, uint32_t flags, uint32_t value_size)
{
	put_le32(&n->header.flags, flags);
	put_le32(&n->header.nr_entries, 0);
	put_le32(&n->header.max_entries, dm_btree_max_entries(value_size));
	put_le32(&n->header.value_size, value_size);
	put_le32(&n->header.padding, 0);
}

static void set_nr(struct btree_node *n, uint32_t nr)
{
	put_le32(&n->header.nr_entries, nr);
}

static void set_key(struct btree_node *n, uint32_t i, uint64_t k)
{
	put_le64(&n->keys[i], k);
}

static void insert_at(struct btree_node *n, uint32_t i, uint64_t key, const void *value)
{
	uint32_t nr = node_nr(n), vs = node_vsize(n);

	memmove(&n->keys[i + 1], &n->keys[i], (size_t)(nr - i) * 8);
	memmove(value_ptr(n, i + 1), value_ptr(n, i), (size_t)(nr - i) * vs);
	set_key(n, i, key);
	memcpy(value_ptr(n, i), value, vs);
	set_nr(n, nr + 1);
}

static void delete_at(struct btree_node *n, uint32_t i)
{
	uint32_t nr = node_nr(n), vs = node_vsize(n);

	memmove(&n->keys[i], &n->keys[i + 1], (size_t)(nr - i - 1) * 8);
	memmove(value_ptr(n, i), value_ptr(n, i + 1), (size_t)(nr - i - 1) * vs);
	set_nr(n, nr - 1);
}

/* Copy @count entries from @src[@si] to @dst[@di] (nodes of the same shape). */
static void copy_entries(struct btree_node *dst, uint32_t di, struct btree_node *src, uint32_t si,
			 uint32_t count)
{
	memmove(&dst->keys[di], &src->keys[si], (size_t)count * 8);
	memmove(value_ptr(dst, di), value_ptr(src, si), (size_t)count * node_vsize(src));
}

/*----------------------------------------------------------------*/
/* Reference counting of children */

static int le64_inc(void *context, const void *value_le)
{
	return dm_tm_inc(context, get_le64(value_le));
}

/* The value type of an upper level: le64 subtree roots. */
static struct dm_btree_value_type level_vt(struct dm_btree_info *info, unsigned level)
{
	if (level + 1 < info->levels) {
		struct dm_btree_value_type vt = { info->tm, 8, le64_inc, NULL, NULL };

		return vt;
	}
	return info->value_type;
}

/* A shared node was copied: everything the copy points to gained a reference. */
static int inc_children(struct dm_btree_info *info, struct btree_node *n,
			const struct dm_btree_value_type *vt)
{
	uint32_t nr = node_nr(n);
	int r = 0;

	if (node_flags(n) == INTERNAL_NODE) {
		for (uint32_t i = 0; i < nr && !r; i++)
			r = dm_tm_inc(info->tm, value64(n, i));
	} else if (vt->inc) {
		for (uint32_t i = 0; i < nr && !r; i++)
			r = vt->inc(vt->context, value_ptr(n, i));
	}
	return r;
}

/*----------------------------------------------------------------*/
/* Spine: the shadowed path, parent and current write-locked */

struct spine {
	struct dm_btree_info *info;
	struct dm_block *nodes[2];
	int count;
	dm_block_t root; /* location of the first node shadowed: the new root */
	uint32_t parent_index;
	unsigned depth;
	bool depth_root; /* the current node is the root of its level's tree */
};

static void spine_init(struct spine *s, struct dm_btree_info *info)
{
	memset(s, 0, sizeof(*s));
	s->info = info;
}

static void spine_exit(struct spine *s)
{
	for (int i = 0; i < s->count; i++)
		dm_tm_unlock(s->info->tm, s->nodes[i]);
	s->count = 0;
}

static struct btree_node *spine_current(struct spine *s)
{
	return dm_block_data(s->nodes[s->count - 1]);
}

static struct btree_node *spine_parent(struct spine *s)
{
	return s->count == 2 ? dm_block_data(s->nodes[0]) : NULL;
}

static void spine_push(struct spine *s, struct dm_block *b)
{
	if (s->count == 2) {
		dm_tm_unlock(s->info->tm, s->nodes[0]);
		s->nodes[0] = s->nodes[1];
		s->count = 1;
	}
	s->nodes[s->count++] = b;
}

/* Shadow @b (a node of @level) and make it current; patch the parent's pointer to it. */
static int shadow_step(struct spine *s, dm_block_t b, unsigned level)
{
	struct dm_btree_info *info = s->info;
	struct dm_btree_value_type vt = level_vt(info, level);
	struct dm_block *blk;
	int inc, r;

	if (++s->depth > MAX_DEPTH)
		return -EILSEQ;
	r = dm_tm_shadow_block(info->tm, b, &btree_node_validator, &blk, &inc);
	if (r)
		return r;
	r = node_fits(info, level, dm_block_data(blk));
	if (!r && inc)
		r = inc_children(info, dm_block_data(blk), &vt);
	if (r) {
		dm_tm_unlock(info->tm, blk);
		return r;
	}
	if (s->depth == 1)
		s->root = dm_block_location(blk);
	spine_push(s, blk);
	if (spine_parent(s))
		put_le64(value_ptr(spine_parent(s), s->parent_index),
			 dm_block_location(s->nodes[1]));
	return 0;
}

/* Shadow child @i of the current node (for rebalancing); patches the pointer. */
static int shadow_child(struct dm_btree_info *info, unsigned level, struct btree_node *parent,
			uint32_t i, struct dm_block **result)
{
	struct dm_btree_value_type vt = level_vt(info, level);
	int inc, r;

	r = dm_tm_shadow_block(info->tm, value64(parent, i), &btree_node_validator, result, &inc);
	if (r)
		return r;
	r = node_fits(info, level, dm_block_data(*result));
	if (!r && inc)
		r = inc_children(info, dm_block_data(*result), &vt);
	if (r) {
		dm_tm_unlock(info->tm, *result);
		return r;
	}
	put_le64(value_ptr(parent, i), dm_block_location(*result));
	return 0;
}

/*----------------------------------------------------------------*/
/* Empty, delete */

static int empty_level(struct dm_btree_info *info, unsigned level, dm_block_t *root)
{
	struct dm_block *b;
	int r;

	r = dm_tm_new_block(info->tm, &btree_node_validator, &b);
	if (r)
		return r;
	node_init(dm_block_data(b), LEAF_NODE, level_vsize(info, level));
	*root = dm_block_location(b);
	dm_tm_unlock(info->tm, b);
	return 0;
}

static bool info_ok(const struct dm_btree_info *info)
{
	return info->levels && info->levels <= DM_BTREE_MAX_LEVELS && info->value_type.size &&
	       dm_btree_max_entries(info->value_type.size) >= 3;
}

int dm_btree_empty(struct dm_btree_info *info, dm_block_t *root)
{
	if (!info_ok(info))
		return -EINVAL;
	return empty_level(info, 0, root);
}

/* Read-lock node @b of @level; without @can_block only from the cache (-EWOULDBLOCK). */
static int read_node_lock(struct dm_btree_info *info, unsigned level, dm_block_t b, bool can_block,
			  struct dm_block **blk)
{
	int r = can_block ? dm_tm_read_lock(info->tm, b, &btree_node_validator, blk)
			  : dm_tm_read_try_lock(info->tm, b, &btree_node_validator, blk);

	if (r)
		return r;
	r = node_fits(info, level, dm_block_data(*blk));
	if (r)
		dm_tm_unlock(info->tm, *blk);
	return r;
}

static int read_node(struct dm_btree_info *info, unsigned level, dm_block_t b,
		     struct dm_block **blk)
{
	return read_node_lock(info, level, b, true, blk);
}

static int del(struct dm_btree_info *info, dm_block_t root, unsigned level, unsigned depth)
{
	struct dm_block *blk;
	struct btree_node *n;
	uint32_t count;
	int r;

	if (depth > MAX_DEPTH)
		return -EILSEQ;
	r = dm_tm_ref(info->tm, root, &count);
	if (r)
		return r;
	if (count > 1)
		return dm_tm_dec(info->tm, root);
	r = read_node(info, level, root, &blk);
	if (r)
		return r;
	n = dm_block_data(blk);
	for (uint32_t i = 0; i < node_nr(n) && !r; i++) {
		if (node_flags(n) == INTERNAL_NODE)
			r = del(info, value64(n, i), level, depth + 1);
		else if (level + 1 < info->levels)
			r = del(info, value64(n, i), level + 1, depth + 1);
		else if (info->value_type.dec)
			r = info->value_type.dec(info->value_type.context, value_ptr(n, i));
	}
	dm_tm_unlock(info->tm, blk);
	return r ? r : dm_tm_dec(info->tm, root);
}

int dm_btree_del(struct dm_btree_info *info, dm_block_t root)
{
	return del(info, root, 0, 0);
}

/*----------------------------------------------------------------*/
/* Lookup */

/* Find @key in the single-level tree at @root; copy the value (vsize bytes). */
static int lookup_one(struct dm_btree_info *info, unsigned level, dm_block_t root, uint64_t key,
		      bool can_block, void *value_le)
{
	for (unsigned depth = 0; depth < MAX_DEPTH; depth++) {
		struct dm_block *blk;
		struct btree_node *n;
		int i, r = read_node_lock(info, level, root, can_block, &blk);

		if (r)
			return r;
		n = dm_block_data(blk);
		i = btree_lower_bound(n, key);
		if (i < 0 || (node_flags(n) == LEAF_NODE && node_key(n, (uint32_t)i) != key)) {
			dm_tm_unlock(info->tm, blk);
			return -ENODATA;
		}
		if (node_flags(n) == LEAF_NODE) {
			memcpy(value_le, value_ptr(n, (uint32_t)i), node_vsize(n));
			dm_tm_unlock(info->tm, blk);
			return 0;
		}
		root = value64(n, (uint32_t)i);
		dm_tm_unlock(info->tm, blk);
	}
	return -EILSEQ;
}

/* Follow keys[0 .. levels-2] to the last level's root. */
static int find_last_root(struct dm_btree_info *info, dm_block_t root, const uint64_t *keys,
			  bool can_block, dm_block_t *last)
{
	for (unsigned level = 0; level + 1 < info->levels; level++) {
		uint8_t v[8];
		int r = lookup_one(info, level, root, keys[level], can_block, v);

		if (r)
			return r;
		root = get_le64(v);
	}
	*last = root;
	return 0;
}

int dm_btree_lookup(struct dm_btree_info *info, dm_block_t root, const uint64_t *keys,
		    void *value_le)
{
	int r = find_last_root(info, root, keys, true, &root);

	return r ? r
		 : lookup_one(info, info->levels - 1, root, keys[info->levels - 1], true, value_le);
}

int dm_btree_lookup_nonblocking(struct dm_btree_info *info, dm_block_t root, const uint64_t *keys,
				void *value_le)
{
	int r = find_last_root(info, root, keys, false, &root);

	return r ? r
		 : lookup_one(info, info->levels - 1, root, keys[info->levels - 1], false,
			      value_le);
}

static int lookup_next_one(struct dm_btree_info *info, unsigned level, dm_block_t root,
			   uint64_t key, uint64_t *rkey, void *value_le, unsigned depth)
{
	struct dm_block *blk;
	struct btree_node *n;
	int i, r;

	if (depth > MAX_DEPTH)
		return -EILSEQ;
	r = read_node(info, level, root, &blk);
	if (r)
		return r;
	n = dm_block_data(blk);
	i = btree_lower_bound(n, key);
	if (i < 0)
		i = 0;
	r = -ENODATA;
	if (node_flags(n) == INTERNAL_NODE) {
		for (uint32_t j = (uint32_t)i; j < node_nr(n) && r == -ENODATA; j++)
			r = lookup_next_one(info, level, value64(n, j), key, rkey, value_le,
					    depth + 1);
	} else {
		uint32_t j = (uint32_t)i;

		if (j < node_nr(n) && node_key(n, j) < key)
			j++;
		if (j < node_nr(n)) {
			*rkey = node_key(n, j);
			memcpy(value_le, value_ptr(n, j), node_vsize(n));
			r = 0;
		}
	}
	dm_tm_unlock(info->tm, blk);
	return r;
}

int dm_btree_lookup_next(struct dm_btree_info *info, dm_block_t root, const uint64_t *keys,
			 uint64_t *rkey, void *value_le)
{
	int r = find_last_root(info, root, keys, true, &root);

	return r ? r
		 : lookup_next_one(info, info->levels - 1, root, keys[info->levels - 1], rkey,
				   value_le, 0);
}

static int find_key(struct dm_btree_info *info, dm_block_t root, bool highest,
		    uint64_t *result_keys)
{
	for (unsigned level = 0; level < info->levels; level++) {
		for (unsigned depth = 0;; depth++) {
			struct dm_block *blk;
			struct btree_node *n;
			uint32_t i;
			int r;

			if (depth > MAX_DEPTH)
				return -EILSEQ;
			r = read_node(info, level, root, &blk);
			if (r)
				return r;
			n = dm_block_data(blk);
			if (!node_nr(n)) {
				dm_tm_unlock(info->tm, blk);
				return -ENODATA;
			}
			i = highest ? node_nr(n) - 1 : 0;
			root = value64(n, i);
			result_keys[level] = node_key(n, i);
			if (node_flags(n) == LEAF_NODE) {
				dm_tm_unlock(info->tm, blk);
				break;
			}
			dm_tm_unlock(info->tm, blk);
		}
	}
	return 0;
}

int dm_btree_find_highest_key(struct dm_btree_info *info, dm_block_t root, uint64_t *result_keys)
{
	return find_key(info, root, true, result_keys);
}

int dm_btree_find_lowest_key(struct dm_btree_info *info, dm_block_t root, uint64_t *result_keys)
{
	return find_key(info, root, false, result_keys);
}

/*----------------------------------------------------------------*/
/* Insert */

/*
 * The current node is a full root (of its level): move its entries into two new children
 * and make it an internal node over them. The root keeps its block, so nothing above needs
 * patching. Afterwards the child that @key belongs in is current, the root its parent.
 */
static int split_beneath(struct spine *s, uint64_t key)
{
	struct dm_btree_info *info = s->info;
	struct dm_block *left, *right;
	struct btree_node *pn = spine_current(s), *ln, *rn;
	uint32_t nr = node_nr(pn), nr_left = nr / 2, vs = node_vsize(pn);
	uint8_t loc[8];
	int r;

	r = dm_tm_new_block(info->tm, &btree_node_validator, &left);
	if (r)
		return r;
	r = dm_tm_new_block(info->tm, &btree_node_validator, &right);
	if (r) {
		dm_tm_unlock(info->tm, left);
		return r;
	}
	ln = dm_block_data(left);
	rn = dm_block_data(right);
	node_init(ln, node_flags(pn), vs);
	node_init(rn, node_flags(pn), vs);
	copy_entries(ln, 0, pn, 0, nr_left);
	set_nr(ln, nr_left);
	copy_entries(rn, 0, pn, nr_left, nr - nr_left);
	set_nr(rn, nr - nr_left);

	node_init(pn, INTERNAL_NODE, 8);
	put_le64(loc, dm_block_location(left));
	insert_at(pn, 0, node_key(ln, 0), loc);
	put_le64(loc, dm_block_location(right));
	insert_at(pn, 1, node_key(rn, 0), loc);
	/*
	 * A new smallest key goes into the left child below its old first key; the root's
	 * key must not stay above it (the rule "parent key <= every key below").
	 */
	if (key < node_key(pn, 0))
		set_key(pn, 0, key);

	/* Make the root the parent and the right half current. */
	if (s->count == 2) {
		dm_tm_unlock(info->tm, s->nodes[0]);
		s->nodes[0] = s->nodes[1];
		s->count = 1;
	}
	if (key < node_key(rn, 0)) {
		dm_tm_unlock(info->tm, right);
		s->nodes[s->count++] = left;
		s->parent_index = 0;
	} else {
		dm_tm_unlock(info->tm, left);
		s->nodes[s->count++] = right;
		s->parent_index = 1;
	}
	return 0;
}

/*
 * The current (non-root) node is full: move its upper half into a new right sibling and
 * add that to the parent, which has room (it was split on the way down if full).
 */
static int split_sibling(struct spine *s, uint64_t key)
{
	struct dm_btree_info *info = s->info;
	struct btree_node *pn = spine_parent(s), *ln = spine_current(s), *rn;
	uint32_t nr = node_nr(ln), nr_left = nr / 2;
	struct dm_block *right;
	uint8_t loc[8];
	int r;

	r = dm_tm_new_block(info->tm, &btree_node_validator, &right);
	if (r)
		return r;
	rn = dm_block_data(right);
	node_init(rn, node_flags(ln), node_vsize(ln));
	copy_entries(rn, 0, ln, nr_left, nr - nr_left);
	set_nr(rn, nr - nr_left);
	set_nr(ln, nr_left);
	put_le64(loc, dm_block_location(right));
	insert_at(pn, s->parent_index + 1, node_key(rn, 0), loc);

	if (key < node_key(rn, 0)) {
		dm_tm_unlock(info->tm, right);
	} else {
		dm_tm_unlock(info->tm, s->nodes[1]);
		s->nodes[1] = right;
		s->parent_index++;
	}
	return 0;
}

/*
 * Shadow the path to where @key belongs in the tree of @level at @root, splitting full
 * nodes on the way down. Leaves the leaf current and sets *index to the position of @key
 * (or where it is to be inserted).
 */
static int insert_raw(struct spine *s, dm_block_t root, unsigned level, uint64_t key,
		      uint32_t *index)
{
	bool top = true;
	int i, r;

	for (;;) {
		struct btree_node *n;

		r = shadow_step(s, root, level);
		if (r)
			return r;
		n = spine_current(s);
		if (node_nr(n) == node_max(n)) {
			i = btree_lower_bound(n, key);
			/* An overwrite needs no room. */
			if (node_flags(n) == LEAF_NODE && i >= 0 && node_key(n, (uint32_t)i) == key)
				break;
			r = top ? split_beneath(s, key) : split_sibling(s, key);
			if (r)
				return r;
			n = spine_current(s);
		}
		i = btree_lower_bound(n, key);
		if (node_flags(n) == LEAF_NODE)
			break;
		if (i < 0) {
			/* Keep "key[0] <= every key below" true for the new smallest key. */
			set_key(n, 0, key);
			i = 0;
		}
		s->parent_index = (uint32_t)i;
		root = value64(n, (uint32_t)i);
		top = false;
	}
	struct btree_node *leaf = spine_current(s);

	if (i < 0 || node_key(leaf, (uint32_t)i) != key)
		i++;
	*index = (uint32_t)i;
	return 0;
}

int dm_btree_insert_notify(struct dm_btree_info *info, dm_block_t root, const uint64_t *keys,
			   const void *value_le, dm_block_t *new_root, int *inserted)
{
	struct spine s;
	unsigned last = info->levels - 1;
	int r = 0;

	spine_init(&s, info);
	for (unsigned level = 0; level <= last; level++) {
		struct btree_node *n;
		uint32_t index;
		bool need_insert;

		r = insert_raw(&s, root, level, keys[level], &index);
		if (r)
			break;
		n = spine_current(&s);
		need_insert = index >= node_nr(n) || node_key(n, index) != keys[level];
		if (level < last) {
			if (need_insert) {
				dm_block_t sub;
				uint8_t v[8];

				r = empty_level(info, level + 1, &sub);
				if (r)
					break;
				put_le64(v, sub);
				n = spine_current(&s);
				insert_at(n, index, keys[level], v);
			}
			s.parent_index = index;
			root = value64(n, index);
			continue;
		}
		if (need_insert) {
			insert_at(n, index, keys[level], value_le);
		} else {
			const struct dm_btree_value_type *vt = &info->value_type;
			void *old = value_ptr(n, index);

			if (vt->dec && (!vt->equal || !vt->equal(vt->context, old, value_le)))
				r = vt->dec(vt->context, old);
			memcpy(value_ptr(n, index), value_le, vt->size);
		}
		if (inserted)
			*inserted = need_insert;
	}
	if (!r)
		*new_root = s.root;
	spine_exit(&s);
	return r;
}

int dm_btree_insert(struct dm_btree_info *info, dm_block_t root, const uint64_t *keys,
		    const void *value_le, dm_block_t *new_root)
{
	return dm_btree_insert_notify(info, root, keys, value_le, new_root, NULL);
}

/*----------------------------------------------------------------*/
/* Remove */

/*
 * Balance children @li and @li + 1 of the current node so that child @target (one of the
 * two) can lose an entry and keep the minimum fill (max/3) thin_check demands of every
 * non-root node: merge them when both fit in one node with room to spare, else share the
 * entries evenly (both halves then exceed the minimum).
 */
static int rebalance2(struct spine *s, unsigned level, uint32_t li)
{
	struct dm_btree_info *info = s->info;
	struct btree_node *pn = spine_current(s), *ln, *rn;
	struct dm_block *left, *right;
	uint32_t nl, nr, min, total;
	int r;

	r = shadow_child(info, level, pn, li, &left);
	if (r)
		return r;
	r = shadow_child(info, level, pn, li + 1, &right);
	if (r) {
		dm_tm_unlock(info->tm, left);
		return r;
	}
	ln = dm_block_data(left);
	rn = dm_block_data(right);
	if (node_flags(ln) != node_flags(rn)) {
		r = -EILSEQ;
		goto out;
	}
	nl = node_nr(ln);
	nr = node_nr(rn);
	min = node_max(ln) / 3;
	total = nl + nr;
	if (total <= 2 * min + 1) {
		/* Merge: the right node's entries move, so its children keep their counts. */
		dm_block_t rloc = dm_block_location(right);

		copy_entries(ln, nl, rn, 0, nr);
		set_nr(ln, total);
		delete_at(pn, li + 1);
		dm_tm_unlock(info->tm, right);
		dm_tm_unlock(info->tm, left);
		return dm_tm_dec(info->tm, rloc);
	}
	if (nl > total / 2) {
		uint32_t move = nl - total / 2;

		memmove(&rn->keys[move], &rn->keys[0], (size_t)nr * 8);
		memmove(value_ptr(rn, move), value_ptr(rn, 0), (size_t)nr * node_vsize(rn));
		copy_entries(rn, 0, ln, nl - move, move);
	} else if (nl < total / 2) {
		uint32_t move = total / 2 - nl;

		copy_entries(ln, nl, rn, 0, move);
		memmove(&rn->keys[0], &rn->keys[move], (size_t)(nr - move) * 8);
		memmove(value_ptr(rn, 0), value_ptr(rn, move),
			(size_t)(nr - move) * node_vsize(rn));
	}
	set_nr(ln, total / 2);
	set_nr(rn, total - total / 2);
	set_key(pn, li + 1, node_key(rn, 0));
out:
	dm_tm_unlock(info->tm, right);
	dm_tm_unlock(info->tm, left);
	return r;
}

/*
 * An internal root with a single child: pull the child up into the root block. If the child
 * is shared, its children gain the root as a new referrer, so increment them first.
 */
static int collapse_root(struct spine *s, unsigned level)
{
	struct dm_btree_info *info = s->info;
	struct dm_btree_value_type vt = level_vt(info, level);
	struct btree_node *pn = spine_current(s);
	dm_block_t child = value64(pn, 0);
	struct dm_block *cb;
	int shared, r;

	r = dm_tm_block_is_shared(info->tm, child, &shared);
	if (r)
		return r;
	r = read_node(info, level, child, &cb);
	if (r)
		return r;
	if (shared)
		r = inc_children(info, dm_block_data(cb), &vt);
	if (!r)
		/* Everything but csum (restamped on write); blocknr is rewritten too. */
		memcpy((uint8_t *)pn + 4, (uint8_t *)dm_block_data(cb) + 4, DM_BM_BLOCK_SIZE - 4);
	dm_tm_unlock(info->tm, cb);
	return r ? r : dm_tm_dec(info->tm, child);
}

static int rebalance_children(struct spine *s, unsigned level, uint64_t key)
{
	struct dm_btree_info *info = s->info;
	struct btree_node *n = spine_current(s), *cn;
	struct dm_block *cb;
	uint32_t nr_child, min;
	int i, r;

	while (node_flags(n) == INTERNAL_NODE && node_nr(n) == 1 && s->depth_root) {
		r = collapse_root(s, level);
		if (r)
			return r;
	}
	if (node_flags(n) == LEAF_NODE)
		return 0;
	i = btree_lower_bound(n, key);
	if (i < 0)
		return -ENODATA;
	r = read_node(info, level, value64(n, (uint32_t)i), &cb);
	if (r)
		return r;
	cn = dm_block_data(cb);
	nr_child = node_nr(cn);
	min = node_max(cn) / 3;
	dm_tm_unlock(info->tm, cb);
	if (nr_child > min)
		return 0;
	if (node_nr(n) < 2)
		return -EILSEQ;
	return rebalance2(s, level, i > 0 ? (uint32_t)i - 1 : (uint32_t)i);
}

/*
 * Shadow the path to @key in the tree of @level, rebalancing (@balance) so every node we
 * descend into can lose one entry. Leaves the leaf current with *index at @key.
 */
static int remove_raw(struct spine *s, dm_block_t root, unsigned level, uint64_t key, bool balance,
		      uint32_t *index)
{
	for (bool top = true;; top = false) {
		struct btree_node *n;
		int i, r;

		r = shadow_step(s, root, level);
		if (r)
			return r;
		s->depth_root = top;
		if (balance && node_flags(spine_current(s)) == INTERNAL_NODE) {
			r = rebalance_children(s, level, key);
			if (r)
				return r;
		}
		n = spine_current(s);
		i = btree_lower_bound(n, key);
		if (i < 0)
			return -ENODATA;
		if (node_flags(n) == LEAF_NODE) {
			if (node_key(n, (uint32_t)i) != key)
				return -ENODATA;
			*index = (uint32_t)i;
			return 0;
		}
		s->parent_index = (uint32_t)i;
		root = value64(n, (uint32_t)i);
	}
}

int dm_btree_remove(struct dm_btree_info *info, dm_block_t root, const uint64_t *keys,
		    dm_block_t *new_root)
{
	unsigned last = info->levels - 1;
	struct spine s;
	/* The values of the thin metadata's trees (8 to 24 bytes) fit on the stack: removing
	 * a mapping allocates nothing (issue 14); larger ones go to the heap. */
	uint64_t small[16];
	uint8_t *probe = (uint8_t *)small;
	int r;

	/* Look first, so that removing an absent key changes nothing. */
	if (info->value_type.size > sizeof(small)) {
		probe = malloc(info->value_type.size);
		if (!probe)
			return -ENOMEM;
	}
	r = dm_btree_lookup(info, root, keys, probe);
	if (probe != (uint8_t *)small)
		free(probe);
	if (r) {
		*new_root = root;
		return r;
	}
	spine_init(&s, info);
	for (unsigned level = 0; level <= last && !r; level++) {
		struct btree_node *n;
		uint32_t index;

		/* Upper levels lose no entries, so they need no rebalancing. */
		r = remove_raw(&s, root, level, keys[level], level == last, &index);
		if (r)
			break;
		n = spine_current(&s);
		if (level < last) {
			s.parent_index = index;
			root = value64(n, index);
			continue;
		}
		if (info->value_type.dec)
			r = info->value_type.dec(info->value_type.context, value_ptr(n, index));
		delete_at(n, index);
	}
	if (!r)
		*new_root = s.root;
	spine_exit(&s);
	return r;
}

/*----------------------------------------------------------------*/
/* Walk */

static int walk_node(struct dm_btree_info *info, dm_block_t b, unsigned level, uint64_t *keys,
		     int (*fn)(void *, const uint64_t *, void *), void *context, unsigned depth)
{
	struct dm_block *blk;
	struct btree_node *n;
	int r;

	if (depth > MAX_DEPTH)
		return -EILSEQ;
	r = read_node(info, level, b, &blk);
	if (r)
		return r;
	n = dm_block_data(blk);
	for (uint32_t i = 0; i < node_nr(n) && !r; i++) {
		if (node_flags(n) == INTERNAL_NODE) {
			r = walk_node(info, value64(n, i), level, keys, fn, context, depth + 1);
		} else if (level + 1 < info->levels) {
			keys[level] = node_key(n, i);
			r = walk_node(info, value64(n, i), level + 1, keys, fn, context, depth + 1);
		} else {
			keys[level] = node_key(n, i);
			r = fn(context, keys, value_ptr(n, i));
		}
	}
	dm_tm_unlock(info->tm, blk);
	return r;
}

int dm_btree_walk(struct dm_btree_info *info, dm_block_t root,
		  int (*fn)(void *context, const uint64_t *keys, void *value_le), void *context)
{
	uint64_t keys[DM_BTREE_MAX_LEVELS] = { 0 };

	return walk_node(info, root, 0, keys, fn, context, 0);
}
