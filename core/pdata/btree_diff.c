/* SPDX-License-Identifier: MIT */
/*
 * Side-by-side walk of two B-trees (see btree_diff.h).
 *
 * A cursor is a stack of frames, one per level from the root; each frame holds a copy of
 * its node, the index of the current entry and the exclusive upper bound of the keys under
 * the node (from the parent, UINT64_MAX for the root: "no bound"). The current entry of the
 * deepest frame is the cursor's item: a subtree (internal node entry: child block, keys in
 * [key, next key)) or a mapping (leaf entry). Everything before the item has been
 * consumed, and an internal entry's key is a lower bound of every key below it (dm-btree
 * keeps keys[0] <= the child's smallest key), which is what makes the merge below sound.
 */
#include "core/pdata/btree_diff.h"
#include "core/pdata/btree_internal.h"

#include <stdlib.h>
#include <string.h>

/* Deeper than any valid tree of 2^64 keys with >= 2 entries per internal node. */
#define DIFF_MAX_DEPTH 64

struct frame {
	uint8_t *node; /* DM_BM_BLOCK_SIZE bytes */
	uint32_t i;
	uint64_t hi;
};

struct cursor {
	struct frame f[DIFF_MAX_DEPTH];
	int top; /* index of the deepest frame; -1 at the end */
};

struct item {
	bool internal;
	uint64_t lo, hi;
	dm_block_t child;
	const void *value;
};

struct diff {
	struct dm_btree_info *info;
	struct dm_btree_diff_stats st;
};

static struct btree_node *frame_node(const struct frame *f)
{
	return (struct btree_node *)f->node;
}

/* Read @b into a new frame below the current top (copied, then unlocked). */
static int push(struct diff *d, struct cursor *c, dm_block_t b, uint64_t hi)
{
	struct dm_block *blk;
	struct frame *f;
	int r;

	if (c->top + 1 >= DIFF_MAX_DEPTH)
		return -EILSEQ;
	f = &c->f[c->top + 1];
	if (!f->node) {
		f->node = malloc(DM_BM_BLOCK_SIZE);
		if (!f->node)
			return -ENOMEM;
	}
	r = dm_tm_read_lock(d->info->tm, b, &btree_node_validator, &blk);
	if (r)
		return r;
	memcpy(f->node, dm_block_data(blk), DM_BM_BLOCK_SIZE);
	dm_tm_unlock(d->info->tm, blk);
	d->st.nodes_read++;
	r = node_fits(d->info, 0, frame_node(f)); /* one-level trees only */
	if (r)
		return r;
	f->i = 0;
	f->hi = hi;
	c->top++;
	return 0;
}

/* Pop exhausted frames, moving each parent on to its next entry. */
static void settle(struct cursor *c)
{
	while (c->top >= 0 && c->f[c->top].i >= node_nr(frame_node(&c->f[c->top]))) {
		c->top--;
		if (c->top >= 0)
			c->f[c->top].i++;
	}
}

static void advance(struct cursor *c)
{
	c->f[c->top].i++;
	settle(c);
}

static void item(const struct cursor *c, struct item *it)
{
	const struct frame *f = &c->f[c->top];
	struct btree_node *n = frame_node(f);

	it->internal = node_flags(n) == INTERNAL_NODE;
	it->lo = node_key(n, f->i);
	it->hi = f->i + 1 < node_nr(n) ? node_key(n, f->i + 1) : f->hi;
	it->child = it->internal ? value64(n, f->i) : 0;
	it->value = it->internal ? NULL : value_ptr(n, f->i);
}

static int descend(struct diff *d, struct cursor *c, const struct item *it)
{
	int r = push(d, c, it->child, it->hi);

	if (!r)
		settle(c);
	return r;
}

static void cursor_free(struct cursor *c)
{
	for (int i = 0; i < DIFF_MAX_DEPTH; i++)
		free(c->f[i].node);
}

static bool values_equal(struct dm_btree_info *info, const void *a, const void *b)
{
	if (info->value_type.equal)
		return info->value_type.equal(info->value_type.context, a, b);
	return !memcmp(a, b, info->value_type.size);
}

/*
 * Move @c to its first key >= @from: subtrees wholly below it are stepped over unread, so
 * this reads one path, not what lies before @from.
 */
static int seek(struct diff *d, struct cursor *c, uint64_t from)
{
	struct item it;
	int r = 0;

	while (!r && c->top >= 0) {
		item(c, &it);
		if (it.internal && it.hi != UINT64_MAX && it.hi <= from)
			advance(c);
		else if (it.internal && it.lo < from)
			r = descend(d, c, &it);
		else if (!it.internal && it.lo < from)
			advance(c);
		else
			break;
	}
	return r;
}

int dm_btree_diff(struct dm_btree_info *info, dm_block_t left, dm_block_t right, uint64_t from,
		  bool want_same,
		  int (*fn)(void *context, uint64_t key, const void *left_le, const void *right_le),
		  void *context, struct dm_btree_diff_stats *stats)
{
	struct diff d = { .info = info };
	struct cursor *a, *b;
	struct item ia, ib;
	int r;

	if (!info || info->levels != 1 || !info->value_type.size || !fn)
		return -EINVAL;
	if (left == right && !want_same) {
		/* One tree: nothing differs (a snapshot nobody has written to yet). */
		d.st.subtrees_skipped = 1;
		if (stats)
			*stats = d.st;
		return 0;
	}
	a = calloc(1, sizeof(*a));
	b = calloc(1, sizeof(*b));
	if (!a || !b) {
		free(a);
		free(b);
		return -ENOMEM;
	}
	a->top = b->top = -1;
	r = push(&d, a, left, UINT64_MAX);
	if (!r)
		r = push(&d, b, right, UINT64_MAX);
	if (!r) {
		settle(a);
		settle(b);
	}
	if (!r && from)
		r = seek(&d, a, from);
	if (!r && from)
		r = seek(&d, b, from);
	while (!r && (a->top >= 0 || b->top >= 0)) {
		if (a->top < 0 || b->top < 0) {
			/* One tree is done: the rest of the other is on its side only. */
			struct cursor *c = a->top < 0 ? b : a;

			item(c, &ia);
			if (ia.internal) {
				r = descend(&d, c, &ia);
				continue;
			}
			d.st.keys_compared++;
			r = c == a ? fn(context, ia.lo, ia.value, NULL)
				   : fn(context, ia.lo, NULL, ia.value);
			advance(c);
			continue;
		}
		item(a, &ia);
		item(b, &ib);
		if (ia.internal && ib.internal && ia.child == ib.child && !want_same) {
			/* The same block: the same keys and values below it. */
			d.st.subtrees_skipped++;
			advance(a);
			advance(b);
			continue;
		}
		if (ia.internal || ib.internal) {
			/*
			 * Open the subtree that may hold the smallest key still to come; of two
			 * starting at the same key, the wider one (the taller, usually), so the
			 * other side gets the chance to meet a block the two share.
			 */
			bool open_a, open_b;

			if (ia.internal && ib.internal) {
				open_a = ia.lo < ib.lo || (ia.lo == ib.lo && ia.hi >= ib.hi);
				open_b = ib.lo < ia.lo || (ia.lo == ib.lo && ib.hi >= ia.hi);
			} else if (ia.internal) {
				open_a = ia.lo <= ib.lo;
				open_b = false;
			} else {
				open_a = false;
				open_b = ib.lo <= ia.lo;
			}
			if (open_a)
				r = descend(&d, a, &ia);
			if (!r && open_b)
				r = descend(&d, b, &ib);
			if (open_a || open_b)
				continue;
			/* The mapping comes before everything under the other's subtree. */
			d.st.keys_compared++;
			if (ia.internal) {
				r = fn(context, ib.lo, NULL, ib.value);
				advance(b);
			} else {
				r = fn(context, ia.lo, ia.value, NULL);
				advance(a);
			}
			continue;
		}
		d.st.keys_compared++;
		if (ia.lo < ib.lo) {
			r = fn(context, ia.lo, ia.value, NULL);
			advance(a);
		} else if (ib.lo < ia.lo) {
			r = fn(context, ib.lo, NULL, ib.value);
			advance(b);
		} else {
			if (want_same || !values_equal(info, ia.value, ib.value))
				r = fn(context, ia.lo, ia.value, ib.value);
			advance(a);
			advance(b);
		}
	}
	if (stats)
		*stats = d.st;
	cursor_free(a);
	cursor_free(b);
	free(a);
	free(b);
	return r;
}
