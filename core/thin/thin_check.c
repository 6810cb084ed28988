/* SPDX-License-Identifier: MIT */
/*
 * The metadata checker (contract in thin_check.h). Method: walk everything reachable from
 * the superblock (and the held copy) once, counting one expected reference per pointer to
 * each metadata block and one per distinct leaf entry to each data block; a node reached a
 * second time (shared) is counted but not descended again, its facts (entries below it,
 * height) memoised from the first visit. The held copy's trees, walked after the live ones,
 * still list the devices of the nodes they share with them (list_again()), so its details
 * and mapping trees are cross-checked as whole trees. Then decode both space maps from their
 * bitmaps and overflow trees and compare block by block. Blocks are read without validators
 * so each fault can be named precisely.
 */
#include "core/thin/thin_check.h"
#include "core/thin/thin_format.h"
#include "core/thin/thin_metadata.h"

#include "core/base/endian.h"
#include "core/base/util.h"
#include "core/pdata/btree_internal.h"
#include "core/pdata/space_map_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_BLOCKS	 1024u
#define MAX_DEPTH	 32
#define REPORT_LIMIT	 30 /* lines per kind of count mismatch before summarising */
#define SEEN_IN_OVERFLOW 0x80000000u

enum kind {
	K_NONE,
	K_SUPER,
	K_MAPPING,
	K_DETAILS,
	K_SM_INDEX,
	K_REFCOUNT,
	K_BITMAP,
	K_META_INDEX,
};

static const char *const kind_name[] = { "",
					 "superblock",
					 "mapping tree",
					 "details tree",
					 "data space map index",
					 "space map overflow tree",
					 "bitmap",
					 "metadata index" };

struct dev_entry {
	uint64_t id;
	uint64_t value; /* details: index into details array; mapping: entries */
	struct thin_dev_details d;
};

struct dev_list {
	struct dev_entry *v;
	size_t n, cap;
};

/*
 * Reference counts, one per block of a device: a byte each, and the rare count of 255 or more
 * (a block shared by that many devices, or a flagged overflow value) in a small hash table.
 * At 1 TiB of 64 KiB data blocks that is 16 MiB per array where uint32_t took 64 MiB, so the
 * firmware's `pool check` fits in its 256 MiB (docs/firmware.md "Memory at 1 TiB").
 */
#define COUNT_BIG 255u

struct count_slot {
	uint64_t key; /* block + 1; 0: empty */
	uint32_t value;
};

struct counts {
	uint8_t *small;
	struct count_slot *big;
	size_t big_n, big_cap; /* big_cap: 0 or a power of two */
};

static int counts_init(struct counts *ct, uint64_t n)
{
	memset(ct, 0, sizeof(*ct));
	ct->small = calloc(n ? n : 1, 1);
	return ct->small ? 0 : -ENOMEM;
}

static void counts_free(struct counts *ct)
{
	free(ct->small);
	free(ct->big);
	memset(ct, 0, sizeof(*ct));
}

static struct count_slot *counts_slot(const struct counts *ct, uint64_t b)
{
	size_t i = (size_t)((b + 1) * 0x9E3779B97F4A7C15ull >> 17) & (ct->big_cap - 1);

	while (ct->big[i].key && ct->big[i].key != b + 1)
		i = (i + 1) & (ct->big_cap - 1);
	return &ct->big[i];
}

static uint32_t counts_get(const struct counts *ct, uint64_t b)
{
	if (ct->small[b] != COUNT_BIG)
		return ct->small[b];
	return counts_slot(ct, b)->value;
}

/* Set block @b's count; -ENOMEM when the table cannot grow (the count is then unchanged). */
static int counts_set(struct counts *ct, uint64_t b, uint32_t v)
{
	struct count_slot *s;

	if (v < COUNT_BIG) {
		/* A slot once made stays (with the value) but is no longer looked at. */
		ct->small[b] = (uint8_t)v;
		return 0;
	}
	if ((ct->big_n + 1) * 2 > ct->big_cap) {
		size_t cap = ct->big_cap ? ct->big_cap * 2 : 64;
		struct counts old = *ct;

		ct->big = calloc(cap, sizeof(*ct->big));
		if (!ct->big) {
			ct->big = old.big;
			return -ENOMEM;
		}
		ct->big_cap = cap;
		for (size_t i = 0; i < old.big_cap; i++)
			if (old.big[i].key)
				*counts_slot(ct, old.big[i].key - 1) = old.big[i];
		free(old.big);
	}
	s = counts_slot(ct, b);
	if (!s->key) {
		s->key = b + 1;
		ct->big_n++;
	}
	s->value = v;
	ct->small[b] = COUNT_BIG;
	return 0;
}

struct ck {
	struct dm_block_manager *bm;
	thin_check_report_fn report;
	void *ctx;
	struct thin_check_stats st;
	char line[320];
	dm_block_t dev_blocks, nr_meta;
	uint64_t nr_data;
	uint32_t sb_time;
	uint64_t sb_trans_id;
	struct counts mexp, mact, dexp, dact;
	uint64_t *entries; /* per metadata block: last-level entries below it */
	uint8_t *height;   /* per metadata block: height above the leaves, +1 (0 = unseen) */
	uint8_t *kind;
	/* Collected while walking one pool root. */
	struct dev_list details, mapping;
	/*
	 * The root being walked follows another (the held copy after the live trees): a node
	 * they share was walked for the other's lists, and is listed again for this one's.
	 */
	bool relist_shared;
	/* Space-map decoding state. */
	struct counts *sm_out;
	dm_block_t sm_nr;
	uint64_t sm_allocated;
	const char *sm_name;
	uint64_t next_index;
	bool fatal; /* could not run further (ENOMEM, I/O) */
	int io_error;
	/* Progress: blocks read so far against the metadata blocks in use (an estimate of the
	 * reads a clean pool needs; shared subtrees are read once). */
	thin_check_progress_fn progress;
	uint64_t reads, expected_reads;
};

static void problem(struct ck *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Set a count; out of memory stops the check (-ENOMEM, not a problem of the pool). */
static void cset(struct ck *c, struct counts *ct, uint64_t b, uint32_t v)
{
	if (counts_set(ct, b, v)) {
		c->fatal = true;
		c->io_error = -ENOMEM;
	}
}

static void vproblem(struct ck *c, const char *fmt, va_list ap)
{
	c->st.problems++;
	vsnprintf(c->line, sizeof(c->line), fmt, ap);
	if (c->report)
		c->report(c->ctx, c->line);
}

static void problem(struct ck *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vproblem(c, fmt, ap);
	va_end(ap);
}

/* A problem when @report; a fault already reported otherwise. */
static void problem_if(struct ck *c, bool report, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem_if(struct ck *c, bool report, const char *fmt, ...)
{
	va_list ap;

	if (!report)
		return;
	va_start(ap, fmt);
	vproblem(c, fmt, ap);
	va_end(ap);
}

/*
 * A space-map counter that disagrees with the bitmaps it summarises (an index entry's
 * nr_free or none_free_before, a root's nr_allocated): it cannot lose data (allocation
 * searches the bitmaps), thin_check 0.9.0 does not look, and thin_restore 0.9.0 writes
 * such pools; the pool recounts them when it opens read-write and writes them at its next
 * commit. Reported as "warning: ...", not counted as a problem.
 */
static void warning(struct ck *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void warning(struct ck *c, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(c->line, sizeof(c->line), "warning: ");

	c->st.warnings++;
	va_start(ap, fmt);
	vsnprintf(c->line + n, sizeof(c->line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (c->report)
		c->report(c->ctx, c->line);
}

static int dev_list_add(struct dev_list *l, uint64_t id, uint64_t value,
			const struct thin_dev_details *d)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct dev_entry *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n].id = id;
	l->v[l->n].value = value;
	if (d)
		l->v[l->n].d = *d;
	l->n++;
	return 0;
}

/* Read @b without a validator; reports and returns non-zero when it cannot be read. */
static int read_block(struct ck *c, dm_block_t b, const char *what, struct dm_block **blk)
{
	int r;

	if (b >= c->nr_meta) {
		problem(c, "%s: block %llu is beyond the metadata device (%llu blocks)", what,
			(unsigned long long)b, (unsigned long long)c->nr_meta);
		return -EILSEQ;
	}
	r = dm_bm_read_lock(c->bm, b, NULL, blk);
	/* Every 256 reads is often enough for a bar and costs nothing next to the I/O. */
	if (c->progress && ++c->reads % 256 == 0)
		c->progress(c->ctx, MIN(c->reads, c->expected_reads - 1), c->expected_reads);
	if (r) {
		problem(c, "%s: cannot read block %llu (%d)", what, (unsigned long long)b, r);
		if (r != -EILSEQ && r != -ENOTBLK) {
			c->fatal = true;
			c->io_error = r;
		}
	}
	return r;
}

static bool csum_ok(const void *data, uint32_t xor)
{
	return get_le32(data) ==
	       dm_bm_checksum((const uint8_t *)data + 4, DM_BM_BLOCK_SIZE - 4, xor);
}

/* One more reference to metadata block @b; true on the first. */
static bool ref_meta(struct ck *c, dm_block_t b, enum kind k)
{
	if (b >= c->nr_meta)
		return false;
	uint32_t n = counts_get(&c->mexp, b);

	if (n && c->kind[b] != k) {
		problem(c, "block %llu is used both as %s and as %s", (unsigned long long)b,
			kind_name[c->kind[b]], kind_name[k]);
	}
	c->kind[b] = (uint8_t)k;
	cset(c, &c->mexp, b, n + 1);
	return n == 0;
}

/*----------------------------------------------------------------*/
/* B-trees */

struct tree {
	enum kind kind;
	unsigned levels;
	uint32_t leaf_vsize;
	const char *name;
	/* Called for each last-level entry (first visits, and shared nodes when lists_leaves). */
	int (*leaf)(struct ck *c, struct tree *t, const uint64_t *keys, const uint8_t *value);
	/* Called for each top-level entry of a multi-level tree, after its subtree's walk. */
	int (*sub)(struct ck *c, struct tree *t, uint64_t key, dm_block_t root, uint64_t entries);
	/* leaf only lists devices (no counting): a shared node's leaves are listed again. */
	bool lists_leaves;
};

static int walk(struct ck *c, struct tree *t, dm_block_t b, unsigned level, uint64_t *keys,
		bool is_root, uint64_t lo, uint64_t hi, bool has_hi, unsigned depth,
		uint64_t *entries, unsigned *height);

/*
 * A node's header against what its place in the tree requires. @report false: the node was
 * checked (and any fault reported) on an earlier visit; only say whether it is safe to read.
 */
static int check_header(struct ck *c, struct tree *t, dm_block_t b, struct btree_node *n,
			unsigned level, bool is_root, bool report)
{
	uint32_t flags = node_flags(n), nr = node_nr(n), max = node_max(n), vs = node_vsize(n);
	uint32_t want_vs = flags == INTERNAL_NODE ? 8 : level + 1 < t->levels ? 8 : t->leaf_vsize;

	if (!csum_ok(n, BTREE_CSUM_XOR)) {
		problem_if(c, report, "%s: bad checksum in btree node (block %llu)", t->name,
			   (unsigned long long)b);
		return -EILSEQ;
	}
	if (get_le64(&n->header.blocknr) != b) {
		problem_if(c, report, "%s: bad block nr in btree node (block %llu says %llu)",
			   t->name, (unsigned long long)b,
			   (unsigned long long)get_le64(&n->header.blocknr));
		return -EILSEQ;
	}
	if (flags != INTERNAL_NODE && flags != LEAF_NODE) {
		problem_if(c, report,
			   "%s: btree node %llu has flags %u (neither internal nor leaf)", t->name,
			   (unsigned long long)b, flags);
		return -EILSEQ;
	}
	if (vs != want_vs) {
		problem_if(c, report,
			   "%s: value size mismatch in node %llu: expected %u, but got %u", t->name,
			   (unsigned long long)b, want_vs, vs);
		return -EILSEQ;
	}
	if (max != dm_btree_max_entries(vs)) {
		problem_if(c, report, "%s: node %llu has max_entries %u, expected %u", t->name,
			   (unsigned long long)b, max, dm_btree_max_entries(vs));
		return -EILSEQ;
	}
	if (nr > max) {
		problem_if(c, report, "%s: node %llu has %u entries, more than max %u", t->name,
			   (unsigned long long)b, nr, max);
		return -EILSEQ;
	}
	if (report && !is_root && nr < max / 3) {
		problem(c, "%s: too few entries in btree node %llu: %u, expected at least %u",
			t->name, (unsigned long long)b, nr, max / 3);
		/* not fatal for the walk */
	}
	if (flags == INTERNAL_NODE && !nr) {
		problem_if(c, report, "%s: internal node %llu is empty", t->name,
			   (unsigned long long)b);
		return -EILSEQ;
	}
	return 0;
}

/*
 * The device lists for the root being walked hold what a shared node @b lists: its devices
 * and their entry counts are the same whichever root reaches it, but the lists are per
 * root (a held copy whose details tree is the live one's must still name its devices).
 * Nothing is counted again; the node's faults were reported on its first visit.
 */
static int list_again(struct ck *c, struct tree *t, dm_block_t b, unsigned level, uint64_t *keys,
		      unsigned depth)
{
	bool lists = level + 1 < t->levels ? t->sub != NULL : t->lists_leaves;
	struct dm_block *blk;
	struct btree_node *n;
	int r;

	if (!lists)
		return 0;
	if (depth > MAX_DEPTH) {
		problem(c, "%s: tree deeper than %u at block %llu (a cycle?)", t->name, MAX_DEPTH,
			(unsigned long long)b);
		return -EILSEQ;
	}
	r = read_block(c, b, t->name, &blk);
	if (r)
		return r;
	n = dm_block_data(blk);
	r = check_header(c, t, b, n, level, false, false);
	for (uint32_t i = 0; !r && i < node_nr(n) && !c->fatal; i++) {
		uint64_t k = node_key(n, i);

		if (node_flags(n) == INTERNAL_NODE) {
			r = list_again(c, t, value64(n, i), level, keys, depth + 1);
		} else if (level + 1 < t->levels) {
			dm_block_t sub = value64(n, i);

			/* Its entries were memoised when it was first walked. */
			r = sub < c->nr_meta ? t->sub(c, t, k, sub, c->entries[sub]) : -EILSEQ;
		} else {
			keys[level] = k;
			r = t->leaf(c, t, keys, value_ptr(n, i));
		}
	}
	dm_bm_unlock(blk);
	return r;
}

static int walk(struct ck *c, struct tree *t, dm_block_t b, unsigned level, uint64_t *keys,
		bool is_root, uint64_t lo, uint64_t hi, bool has_hi, unsigned depth,
		uint64_t *entries, unsigned *height)
{
	struct dm_block *blk;
	struct btree_node *n;
	uint64_t total = 0;
	int child_height = -1;
	int r;

	*entries = 0;
	*height = 0;
	if (depth > MAX_DEPTH) {
		problem(c, "%s: tree deeper than %u at block %llu (a cycle?)", t->name, MAX_DEPTH,
			(unsigned long long)b);
		return -EILSEQ;
	}
	if (b >= c->nr_meta) {
		problem(c, "%s: reference to block %llu beyond the metadata device", t->name,
			(unsigned long long)b);
		return -EILSEQ;
	}
	if (!ref_meta(c, b, t->kind)) {
		/* Shared: counted; its contents were checked on the first visit. */
		*entries = c->entries[b];
		*height = c->height[b] ? c->height[b] - 1u : 0;
		return c->relist_shared ? list_again(c, t, b, level, keys, depth) : 0;
	}
	r = read_block(c, b, t->name, &blk);
	if (r)
		return r;
	n = dm_block_data(blk);
	r = check_header(c, t, b, n, level, is_root, true);
	for (uint32_t i = 0; !r && i < node_nr(n); i++) {
		uint64_t k = node_key(n, i);

		if (i && k <= node_key(n, i - 1)) {
			problem(c, "%s: keys are out of order in node %llu (%llu after %llu)",
				t->name, (unsigned long long)b, (unsigned long long)k,
				(unsigned long long)node_key(n, i - 1));
			r = -EILSEQ;
		} else if (k < lo || (has_hi && k >= hi)) {
			problem(c,
				"%s: key %llu in node %llu is outside the range its parent gives "
				"[%llu, %s%llu)",
				t->name, (unsigned long long)k, (unsigned long long)b,
				(unsigned long long)lo, has_hi ? "" : ">",
				(unsigned long long)(has_hi ? hi : k));
			r = -EILSEQ;
		}
	}
	for (uint32_t i = 0; !r && i < node_nr(n) && !c->fatal; i++) {
		uint64_t k = node_key(n, i), sub_entries;
		unsigned h;

		if (node_flags(n) == INTERNAL_NODE) {
			bool last = i + 1 == node_nr(n);

			r = walk(c, t, value64(n, i), level, keys, false, k,
				 last ? hi : node_key(n, i + 1), last ? has_hi : true, depth + 1,
				 &sub_entries, &h);
			if (r)
				break;
			if (child_height >= 0 && (unsigned)child_height != h) {
				problem(c, "%s: leaves at different depths below node %llu",
					t->name, (unsigned long long)b);
				r = -EILSEQ;
			}
			child_height = (int)h;
			total += sub_entries;
		} else if (level + 1 < t->levels) {
			dm_block_t sub = value64(n, i);

			keys[level] = k;
			r = walk(c, t, sub, level + 1, keys, true, 0, 0, false, depth + 1,
				 &sub_entries, &h);
			if (!r && t->sub)
				r = t->sub(c, t, k, sub, sub_entries);
			total += sub_entries;
		} else {
			keys[level] = k;
			total++;
			if (t->leaf)
				r = t->leaf(c, t, keys, value_ptr(n, i));
		}
	}
	dm_bm_unlock(blk);
	*entries = total;
	*height = child_height >= 0 ? (unsigned)child_height + 1 : 0;
	c->entries[b] = total;
	c->height[b] = (uint8_t)(*height + 1);
	return r;
}

static int walk_tree(struct ck *c, struct tree *t, dm_block_t root)
{
	uint64_t keys[2] = { 0, 0 }, entries;
	unsigned h;

	return walk(c, t, root, 0, keys, true, 0, 0, false, 0, &entries, &h);
}

/*----------------------------------------------------------------*/
/* The thin trees */

static int mapping_leaf(struct ck *c, struct tree *t, const uint64_t *keys, const uint8_t *v)
{
	uint64_t block;
	uint32_t time;

	thin_unpack_block_time(get_le64(v), &block, &time);
	c->st.mappings++;
	if (block >= c->nr_data) {
		problem(c,
			"thin device %llu maps block %llu to data block %llu beyond the data "
			"device (%llu blocks)",
			(unsigned long long)keys[0], (unsigned long long)keys[1],
			(unsigned long long)block, (unsigned long long)c->nr_data);
		return 0;
	}
	cset(c, &c->dexp, block, counts_get(&c->dexp, block) + 1);
	if (time > c->sb_time)
		problem(c, "thin device %llu block %llu has time %u, later than the pool's %u",
			(unsigned long long)keys[0], (unsigned long long)keys[1], time, c->sb_time);
	return 0;
}

static int mapping_sub(struct ck *c, struct tree *t, uint64_t key, dm_block_t root,
		       uint64_t entries)
{
	return dev_list_add(&c->mapping, key, entries, NULL);
}

static int details_leaf(struct ck *c, struct tree *t, const uint64_t *keys, const uint8_t *v)
{
	const struct disk_device_details *le = (const void *)v;
	struct thin_dev_details d = {
		get_le64(&le->mapped_blocks),
		get_le64(&le->transaction_id),
		get_le32(&le->creation_time),
		get_le32(&le->snapshotted_time),
	};

	return dev_list_add(&c->details, keys[0], 0, &d);
}

/* Details and mapping trees must name the same devices; details must fit the mappings. */
static void cross_check(struct ck *c, const char *which)
{
	size_t i = 0, j = 0;

	while (i < c->details.n || j < c->mapping.n) {
		struct dev_entry *d = i < c->details.n ? &c->details.v[i] : NULL;
		struct dev_entry *m = j < c->mapping.n ? &c->mapping.v[j] : NULL;

		if (d && (!m || d->id < m->id)) {
			problem(c, "%sdevice %llu has details but no mappings tree", which,
				(unsigned long long)d->id);
			i++;
			continue;
		}
		if (m && (!d || m->id < d->id)) {
			problem(c,
				"%smappings present for device %llu, but it isn't in the "
				"details tree",
				which, (unsigned long long)m->id);
			j++;
			continue;
		}
		if (d->d.mapped_blocks != m->value)
			problem(c, "%sdevice %llu: mapped_blocks is %llu, but it has %llu mappings",
				which, (unsigned long long)d->id,
				(unsigned long long)d->d.mapped_blocks,
				(unsigned long long)m->value);
		if (d->d.creation_time > c->sb_time || d->d.snapshotted_time > c->sb_time)
			problem(c,
				"%sdevice %llu: creation time %u / snapshot time %u later than "
				"the pool's %u",
				which, (unsigned long long)d->id, d->d.creation_time,
				d->d.snapshotted_time, c->sb_time);
		if (d->d.snapshotted_time < d->d.creation_time)
			problem(c, "%sdevice %llu: snapshot time %u before its creation time %u",
				which, (unsigned long long)d->id, d->d.snapshotted_time,
				d->d.creation_time);
		if (d->d.transaction_id > c->sb_trans_id)
			problem(c, "%sdevice %llu: transaction id %llu beyond the pool's %llu",
				which, (unsigned long long)d->id,
				(unsigned long long)d->d.transaction_id,
				(unsigned long long)c->sb_trans_id);
		i++;
		j++;
	}
}

static void check_pool_trees(struct ck *c, dm_block_t mapping_root, dm_block_t details_root,
			     const char *which, bool count_devices)
{
	struct tree mt = { K_MAPPING, 2, 8, "mapping tree", mapping_leaf, mapping_sub, false };
	struct tree dt = {
		K_DETAILS, 1,	sizeof(struct disk_device_details), "details tree", details_leaf,
		NULL,	   true
	};
	uint64_t before = c->st.mappings;
	int r1, r2;

	c->details.n = c->mapping.n = 0;
	/* The live trees are walked first; the held copy's may share nodes with them. */
	c->relist_shared = !count_devices;
	r1 = walk_tree(c, &dt, details_root);
	r2 = walk_tree(c, &mt, mapping_root);
	c->relist_shared = false;
	if (!r1 && !r2 && !c->fatal)
		cross_check(c, which);
	if (count_devices)
		c->st.devices = c->mapping.n;
	else
		c->st.mappings = before;
}

/*----------------------------------------------------------------*/
/* Space maps */

static void decode_bitmap(struct ck *c, uint64_t index, const struct disk_index_entry *ie)
{
	dm_block_t bb = get_le64(&ie->blocknr);
	uint32_t nr_free = 0, past_end = 0, nfb = get_le32(&ie->none_free_before);
	bool first_free_seen = false;
	struct dm_block *blk;
	const uint8_t *d;

	if (bb >= c->nr_meta) {
		problem(c, "%s: bitmap %llu at block %llu beyond the metadata device", c->sm_name,
			(unsigned long long)index, (unsigned long long)bb);
		return;
	}
	ref_meta(c, bb, K_BITMAP);
	if (read_block(c, bb, c->sm_name, &blk))
		return;
	d = dm_block_data(blk);
	if (!csum_ok(d, BITMAP_CSUM_XOR)) {
		problem(c, "%s: bad checksum in space map bitmap (block %llu)", c->sm_name,
			(unsigned long long)bb);
	} else if (get_le64(d + 8) != bb) {
		problem(c, "%s: bitmap block %llu says it is block %llu", c->sm_name,
			(unsigned long long)bb, (unsigned long long)get_le64(d + 8));
	} else {
		for (uint32_t e = 0; e < ENTRIES_PER_BLOCK; e++) {
			uint64_t b = index * ENTRIES_PER_BLOCK + e;
			uint8_t byte = d[BITMAP_HEADER_SIZE + e / 4];
			unsigned sh = 2 * (e % 4);
			/* Bit 2e is the high bit, 2e+1 the low one (sm_lookup_bitmap). */
			uint32_t v = ((byte >> sh) & 1u) << 1 | ((byte >> (sh + 1)) & 1u);

			if (b >= c->sm_nr) {
				if (v)
					problem(c,
						"%s: bitmap entry for block %llu past the end is "
						"in use",
						c->sm_name, (unsigned long long)b);
				past_end++;
				continue;
			}
			cset(c, c->sm_out, b, v);
			if (v) {
				c->sm_allocated++;
			} else {
				nr_free++;
				if (!first_free_seen && e < nfb)
					warning(
					    c,
					    "%s: index entry %llu says none free before %u, but "
					    "block %llu is free",
					    c->sm_name, (unsigned long long)index, nfb,
					    (unsigned long long)b);
				first_free_seen = true;
			}
		}
		/* Kernel (counts past-the-end entries as free) or tpt (exact) convention. */
		if (get_le32(&ie->nr_free) != nr_free &&
		    get_le32(&ie->nr_free) != nr_free + past_end)
			warning(c, "%s: index entry %llu says %u free, the bitmap has %u",
				c->sm_name, (unsigned long long)index, get_le32(&ie->nr_free),
				nr_free);
	}
	dm_bm_unlock(blk);
}

static int index_leaf(struct ck *c, struct tree *t, const uint64_t *keys, const uint8_t *v)
{
	if (keys[0] != c->next_index)
		problem(c, "%s: index tree has bitmap %llu where %llu was expected", c->sm_name,
			(unsigned long long)keys[0], (unsigned long long)c->next_index);
	c->next_index = keys[0] + 1;
	if (keys[0] * ENTRIES_PER_BLOCK < c->sm_nr)
		decode_bitmap(c, keys[0], (const struct disk_index_entry *)v);
	return 0;
}

static int overflow_leaf(struct ck *c, struct tree *t, const uint64_t *keys, const uint8_t *v)
{
	uint64_t b = keys[0];
	uint32_t count = get_le32(v);

	if (b >= c->sm_nr) {
		problem(c, "%s: overflow count for block %llu beyond the space map", c->sm_name,
			(unsigned long long)b);
	} else if (counts_get(c->sm_out, b) != 3) {
		problem(c, "%s: overflow count %u for block %llu whose bitmap entry is %u",
			c->sm_name, count, (unsigned long long)b, counts_get(c->sm_out, b) & 3);
	} else if (count < 3) {
		problem(c, "%s: overflow count %u (< 3) for block %llu", c->sm_name, count,
			(unsigned long long)b);
	} else {
		cset(c, c->sm_out, b, count | SEEN_IN_OVERFLOW);
	}
	return 0;
}

static void finish_sm(struct ck *c, const struct disk_sm_root *root)
{
	struct tree ot = {
		K_REFCOUNT, 1, 4, "space map overflow tree", overflow_leaf, NULL, false
	};

	walk_tree(c, &ot, get_le64(&root->ref_count_root));
	for (dm_block_t b = 0; b < c->sm_nr; b++) {
		uint32_t v = counts_get(c->sm_out, b);

		if (v == 3)
			problem(c, "%s: ref count not in tree for block %llu", c->sm_name,
				(unsigned long long)b);
		if (v & SEEN_IN_OVERFLOW)
			cset(c, c->sm_out, b, v & ~SEEN_IN_OVERFLOW);
	}
	/* More than the space map's size: the pool refuses to open it, so that is damage. */
	if (get_le64(&root->nr_allocated) > get_le64(&root->nr_blocks))
		problem(c, "%s: root says %llu blocks allocated, more than its %llu blocks",
			c->sm_name, (unsigned long long)get_le64(&root->nr_allocated),
			(unsigned long long)get_le64(&root->nr_blocks));
	else if (get_le64(&root->nr_allocated) != c->sm_allocated)
		warning(c, "%s: root says %llu blocks allocated, the bitmaps have %llu", c->sm_name,
			(unsigned long long)get_le64(&root->nr_allocated),
			(unsigned long long)c->sm_allocated);
}

static void check_metadata_sm(struct ck *c, const struct disk_sm_root *root)
{
	dm_block_t ib = get_le64(&root->bitmap_root);
	struct dm_block *blk;
	const struct disk_metadata_index *mi;

	c->sm_out = &c->mact;
	c->sm_nr = c->nr_meta;
	c->sm_allocated = 0;
	c->sm_name = "metadata space map";
	if (ib >= c->nr_meta) {
		problem(c, "metadata space map: index block %llu beyond the device",
			(unsigned long long)ib);
		return;
	}
	ref_meta(c, ib, K_META_INDEX);
	if (read_block(c, ib, c->sm_name, &blk))
		return;
	mi = dm_block_data(blk);
	if (!csum_ok(mi, INDEX_CSUM_XOR))
		problem(c, "bad checksum in metadata index block (block %llu)",
			(unsigned long long)ib);
	else if (get_le64(&mi->blocknr) != ib)
		problem(c, "metadata index block %llu says it is block %llu",
			(unsigned long long)ib, (unsigned long long)get_le64(&mi->blocknr));
	else
		for (uint64_t i = 0; i * ENTRIES_PER_BLOCK < c->nr_meta && !c->fatal; i++)
			decode_bitmap(c, i, &mi->index[i]);
	dm_bm_unlock(blk);
	finish_sm(c, root);
}

static void check_data_sm(struct ck *c, const struct disk_sm_root *root)
{
	struct tree it = { K_SM_INDEX,
			   1,
			   sizeof(struct disk_index_entry),
			   "data space map index",
			   index_leaf,
			   NULL,
			   false };

	c->sm_out = &c->dact;
	c->sm_nr = c->nr_data;
	c->sm_allocated = 0;
	c->sm_name = "data space map";
	c->next_index = 0;
	walk_tree(c, &it, get_le64(&root->bitmap_root));
	if (c->next_index * ENTRIES_PER_BLOCK < c->nr_data)
		problem(
		    c, "data space map: index tree ends at bitmap %llu, %llu needed",
		    (unsigned long long)c->next_index,
		    (unsigned long long)((c->nr_data + ENTRIES_PER_BLOCK - 1) / ENTRIES_PER_BLOCK));
	finish_sm(c, root);
}

static void compare_counts(struct ck *c, const char *what, const struct counts *exp_c,
			   const struct counts *act_c, uint64_t n, uint64_t *used)
{
	uint64_t bad = 0;

	*used = 0;
	for (uint64_t b = 0; b < n; b++) {
		uint32_t exp = counts_get(exp_c, b), act = counts_get(act_c, b);

		if (act)
			(*used)++;
		if (exp == act)
			continue;
		if (++bad <= REPORT_LIMIT)
			problem(c,
				"%s reference counts differ for block %llu, expected %u, but got "
				"%u%s",
				what, (unsigned long long)b, exp, act,
				act > exp ? " (leaked)" : "");
	}
	if (bad > REPORT_LIMIT) {
		problem(c, "... and %llu more %s blocks with wrong reference counts",
			(unsigned long long)(bad - REPORT_LIMIT), what);
		c->st.problems += bad - REPORT_LIMIT - 1;
	}
}

/*----------------------------------------------------------------*/
/* Superblocks */

static int check_superblock(struct ck *c, const struct thin_disk_superblock *sb, dm_block_t loc)
{
	uint32_t v;

	if (get_le64(&sb->magic) != THIN_SUPERBLOCK_MAGIC) {
		problem(c, "superblock %llu: bad magic %llu (not dm-thin metadata)",
			(unsigned long long)loc, (unsigned long long)get_le64(&sb->magic));
		return -EILSEQ;
	}
	if (!csum_ok(sb, THIN_SUPERBLOCK_CSUM_XOR)) {
		problem(c, "superblock %llu: bad checksum", (unsigned long long)loc);
		return -EILSEQ;
	}
	if (get_le64(&sb->blocknr) != loc)
		problem(c, "superblock %llu: says it is block %llu", (unsigned long long)loc,
			(unsigned long long)get_le64(&sb->blocknr));
	v = get_le32(&sb->version);
	if (v < THIN_MIN_VERSION || v > THIN_MAX_VERSION)
		problem(c, "superblock %llu: unknown metadata version %u", (unsigned long long)loc,
			v);
	if (get_le32(&sb->flags) & ~THIN_METADATA_NEEDS_CHECK_FLAG)
		problem(c, "superblock %llu: unknown flags 0x%x", (unsigned long long)loc,
			get_le32(&sb->flags));
	if (get_le32(&sb->metadata_block_size) != THIN_METADATA_BLOCK_SECTORS)
		problem(c, "superblock %llu: metadata block size %u sectors, expected %u",
			(unsigned long long)loc, get_le32(&sb->metadata_block_size),
			THIN_METADATA_BLOCK_SECTORS);
	v = get_le32(&sb->data_block_size);
	if (v < THIN_DATA_BLOCK_SECTORS_MIN || v > THIN_DATA_BLOCK_SECTORS_MAX ||
	    (v & (THIN_DATA_BLOCK_SECTORS_MIN - 1)))
		problem(c, "superblock %llu: data block size %u sectors is invalid",
			(unsigned long long)loc, v);
	if (get_le32(&sb->incompat_flags) & ~THIN_FEATURE_INCOMPAT_SUPP)
		problem(c, "superblock %llu: unknown incompatible features 0x%x",
			(unsigned long long)loc, get_le32(&sb->incompat_flags));
	if (get_le32(&sb->compat_ro_flags) & ~THIN_FEATURE_COMPAT_RO_SUPP)
		problem(c, "superblock %llu: unknown read-only-compatible features 0x%x",
			(unsigned long long)loc, get_le32(&sb->compat_ro_flags));
	return 0;
}

static void check_held(struct ck *c, dm_block_t held, const struct thin_disk_superblock *live)
{
	const struct thin_disk_superblock *sb;
	struct dm_block *blk;
	dm_block_t mroot, droot;
	uint32_t time;

	if (held >= c->nr_meta) {
		problem(c, "held root %llu beyond the metadata device", (unsigned long long)held);
		return;
	}
	ref_meta(c, held, K_SUPER);
	if (read_block(c, held, "held root", &blk))
		return;
	sb = dm_block_data(blk);
	if (check_superblock(c, sb, held)) {
		dm_bm_unlock(blk);
		return;
	}
	mroot = get_le64(&sb->data_mapping_root);
	droot = get_le64(&sb->device_details_root);
	time = get_le32(&sb->time);
	if (get_le64(&sb->held_root))
		problem(c, "held root %llu holds another root", (unsigned long long)held);
	if (time > c->sb_time || get_le64(&sb->trans_id) > c->sb_trans_id)
		problem(c, "held root %llu is newer than the pool", (unsigned long long)held);
	for (size_t i = 0; i < THIN_SPACE_MAP_ROOT_SIZE; i++)
		if (sb->data_space_map_root[i] || sb->metadata_space_map_root[i]) {
			problem(c, "held root %llu carries space-map roots",
				(unsigned long long)held);
			break;
		}
	dm_bm_unlock(blk);
	{
		/* Times in the held trees are bounded by the held copy's own time. */
		uint32_t saved = c->sb_time;

		c->sb_time = time;
		check_pool_trees(c, mroot, droot, "held root: ", false);
		c->sb_time = saved;
	}
	(void)live;
}

int thin_check(struct blkdev *meta, thin_check_report_fn report, void *ctx,
	       struct thin_check_stats *stats)
{
	return thin_check_progress(meta, report, NULL, ctx, stats);
}

int thin_check_progress(struct blkdev *meta, thin_check_report_fn report,
			thin_check_progress_fn progress, void *ctx, struct thin_check_stats *stats)
{
	struct thin_disk_superblock *sb = NULL;
	struct disk_sm_root mroot, droot;
	struct dm_block *blk;
	dm_block_t held, map_root, details_root;
	struct ck *c;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->report = report;
	c->progress = progress;
	c->expected_reads = 2; /* until the superblock says more; never 0 (a divisor) */
	c->ctx = ctx;
	r = dm_block_manager_create(meta, CACHE_BLOCKS, &c->bm);
	if (r) {
		free(c);
		return r;
	}
	c->dev_blocks = c->nr_meta = dm_bm_nr_blocks(c->bm);
	if (c->nr_meta < 1) {
		problem(c, "metadata device is empty");
		goto out;
	}
	/* Superblock */
	if (read_block(c, THIN_SUPERBLOCK_LOCATION, "superblock", &blk))
		goto out;
	/* A whole-block copy: the checksum covers all of it. */
	sb = malloc(DM_BM_BLOCK_SIZE);
	if (!sb) {
		dm_bm_unlock(blk);
		r = -ENOMEM;
		goto out;
	}
	memcpy(sb, dm_block_data(blk), DM_BM_BLOCK_SIZE);
	if (!csum_ok(dm_block_data(blk), THIN_SUPERBLOCK_CSUM_XOR)) {
		problem(c, "superblock is corrupt: bad checksum");
		dm_bm_unlock(blk);
		goto out;
	}
	dm_bm_unlock(blk);
	if (check_superblock(c, sb, THIN_SUPERBLOCK_LOCATION))
		goto out;
	c->sb_time = get_le32(&sb->time);
	c->sb_trans_id = c->st.trans_id = get_le64(&sb->trans_id);
	c->st.needs_check = get_le32(&sb->flags) & THIN_METADATA_NEEDS_CHECK_FLAG;
	memcpy(&mroot, sb->metadata_space_map_root, sizeof(mroot));
	memcpy(&droot, sb->data_space_map_root, sizeof(droot));
	map_root = get_le64(&sb->data_mapping_root);
	details_root = get_le64(&sb->device_details_root);
	held = get_le64(&sb->held_root);
	c->st.held_root = held != 0;

	c->nr_meta = get_le64(&mroot.nr_blocks);
	if (c->nr_meta > c->dev_blocks || c->nr_meta > DM_SM_METADATA_MAX_BLOCKS || !c->nr_meta) {
		problem(c, "metadata space map covers %llu blocks, the device has %llu",
			(unsigned long long)c->nr_meta, (unsigned long long)c->dev_blocks);
		c->nr_meta = MIN(c->dev_blocks, (dm_block_t)DM_SM_METADATA_MAX_BLOCKS);
	}
	c->expected_reads = MAX(get_le64(&mroot.nr_allocated), (uint64_t)2);
	c->nr_data = get_le64(&droot.nr_blocks);
	if (c->nr_data > THIN_MAX_DATA_BLOCKS) {
		problem(c, "data space map of %llu blocks is beyond the format's limit",
			(unsigned long long)c->nr_data);
		goto out;
	}
	c->st.metadata_blocks = c->nr_meta;
	c->st.data_blocks = c->nr_data;
	c->entries = calloc(c->nr_meta, sizeof(*c->entries));
	c->height = calloc(c->nr_meta, 1);
	c->kind = calloc(c->nr_meta, 1);
	if (counts_init(&c->mexp, c->nr_meta) || counts_init(&c->mact, c->nr_meta) ||
	    counts_init(&c->dexp, c->nr_data + 1) || counts_init(&c->dact, c->nr_data + 1) ||
	    !c->entries || !c->height || !c->kind) {
		r = -ENOMEM;
		goto out;
	}
	ref_meta(c, THIN_SUPERBLOCK_LOCATION, K_SUPER);

	check_pool_trees(c, map_root, details_root, "", true);
	if (held && !c->fatal)
		check_held(c, held, sb);
	if (!c->fatal)
		check_metadata_sm(c, &mroot);
	if (!c->fatal)
		check_data_sm(c, &droot);
	if (!c->fatal) {
		compare_counts(c, "metadata", &c->mexp, &c->mact, c->nr_meta, &c->st.metadata_used);
		compare_counts(c, "data", &c->dexp, &c->dact, c->nr_data, &c->st.data_used);
	}
out:
	if (progress)
		progress(ctx, c->expected_reads, c->expected_reads);
	if (!r && c->fatal)
		r = c->io_error;
	if (!r && c->st.problems)
		r = -EILSEQ;
	if (stats)
		*stats = c->st;
	free(sb);
	counts_free(&c->mexp);
	counts_free(&c->mact);
	free(c->entries);
	free(c->height);
	free(c->kind);
	counts_free(&c->dexp);
	counts_free(&c->dact);
	free(c->details.v);
	free(c->mapping.v);
	dm_block_manager_destroy(c->bm);
	free(c);
	return r;
}
