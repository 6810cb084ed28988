/* SPDX-License-Identifier: MIT */
/* The persistent-data tests' miniature pool and its checker (tests/support/pdata_pool.h). */
#include "tests/support/pdata_pool.h"

#include <errno.h>

static void sb_prepare(const struct dm_block_validator *v, struct dm_block *b, size_t bs)
{
	uint8_t *d = dm_block_data(b);

	put_le64(d + 8, dm_block_location(b));
	put_le32(d, dm_bm_checksum(d + 4, bs - 4, SB_CSUM_XOR));
}

static int sb_check(const struct dm_block_validator *v, struct dm_block *b, size_t bs)
{
	uint8_t *d = dm_block_data(b);

	if (get_le64(d + 8) != dm_block_location(b))
		return -ENOTBLK;
	if (get_le32(d) != dm_bm_checksum(d + 4, bs - 4, SB_CSUM_XOR))
		return -EILSEQ;
	if (get_le64(d + 32) != SB_MAGIC)
		return -EILSEQ;
	return 0;
}

const struct dm_block_validator sb_validator = {
	.name = "superblock",
	.prepare_for_write = sb_prepare,
	.check = sb_check,
};

static int data_inc(void *ctx, const void *v)
{
	return dm_sm_inc_block(ctx, get_le64(v) >> 24);
}

static int data_dec(void *ctx, const void *v)
{
	return dm_sm_dec_block(ctx, get_le64(v) >> 24);
}

static int data_equal(void *ctx, const void *a, const void *b)
{
	return get_le64(a) >> 24 == get_le64(b) >> 24;
}

static void pool_setup_infos(struct pool *p)
{
	p->map_info.tm = p->tm;
	p->map_info.levels = 2;
	p->map_info.value_type =
	    (struct dm_btree_value_type){ p->dsm, 8, data_inc, data_dec, data_equal };
	p->details_info.tm = p->tm;
	p->details_info.levels = 1;
	p->details_info.value_type = (struct dm_btree_value_type){ NULL, 24, NULL, NULL, NULL };
}

int pool_commit(struct pool *p)
{
	struct dm_block *sb;
	uint8_t *d;
	int r;

	r = dm_sm_commit(p->dsm);
	if (!r)
		r = dm_tm_pre_commit(p->tm);
	if (!r)
		r = dm_bm_write_lock(p->bm, 0, &sb_validator, &sb);
	if (r)
		return r;
	d = dm_block_data(sb);
	p->trans_id++;
	put_le64(d + 48, p->trans_id);
	r = dm_sm_copy_root(p->dsm, d + SB_OFF_DATA_SM, 128);
	if (!r)
		r = dm_sm_copy_root(p->msm, d + SB_OFF_META_SM, 128);
	put_le64(d + SB_OFF_MAPPING, p->map_root);
	put_le64(d + SB_OFF_DETAILS, p->details_root);
	if (r) {
		dm_bm_unlock(sb);
		return r;
	}
	return dm_tm_commit(p->tm, sb);
}

static void pool_destroy_tm(struct pool *p)
{
	dm_sm_destroy(p->dsm);
	dm_tm_destroy(p->tm);
	dm_sm_destroy(p->msm);
	p->dsm = p->msm = NULL;
	p->tm = NULL;
}

/* Open the sms and roots from the committed superblock (bm already set up). */
static int pool_load(struct pool *p)
{
	struct dm_block *sb;
	uint8_t *d;
	int r;

	r = dm_bm_read_lock(p->bm, 0, &sb_validator, &sb);
	if (r)
		return r;
	d = dm_block_data(sb);
	p->trans_id = get_le64(d + 48);
	p->map_root = get_le64(d + SB_OFF_MAPPING);
	p->details_root = get_le64(d + SB_OFF_DETAILS);
	r = dm_tm_open_with_sm(p->bm, 0, d + SB_OFF_META_SM, 128, &p->tm, &p->msm);
	if (!r)
		r = dm_sm_disk_open(p->tm, d + SB_OFF_DATA_SM, 128, &p->dsm);
	dm_bm_unlock(sb);
	if (r) {
		pool_destroy_tm(p);
		return r;
	}
	pool_setup_infos(p);
	return 0;
}

int pool_format(struct pool *p, struct blkdev *dev, unsigned cache, dm_block_t nr_data_blocks)
{
	struct dm_block *sb;
	uint8_t *d;
	int r;

	memset(p, 0, sizeof(*p));
	p->dev = dev;
	p->cache = cache;
	r = dm_block_manager_create(dev, cache, &p->bm);
	if (r)
		return r;
	r = dm_tm_create_with_sm(p->bm, 0, &p->tm, &p->msm);
	if (!r)
		r = dm_sm_disk_create(p->tm, nr_data_blocks, &p->dsm);
	if (r)
		return r;
	pool_setup_infos(p);
	r = dm_btree_empty(&p->map_info, &p->map_root);
	if (!r)
		r = dm_btree_empty(&p->details_info, &p->details_root);
	if (!r)
		r = dm_bm_write_lock_zero(p->bm, 0, &sb_validator, &sb);
	if (r)
		return r;
	d = dm_block_data(sb);
	put_le64(d + 32, SB_MAGIC);
	put_le32(d + 40, 2);	/* version */
	put_le32(d + 336, 128); /* data_block_size (sectors) */
	put_le32(d + 340, 8);	/* metadata_block_size */
	put_le64(d + 344, MIN(dm_bm_nr_blocks(p->bm), (dm_block_t)DM_SM_METADATA_MAX_BLOCKS));
	dm_bm_unlock(sb);
	return pool_commit(p);
}

int pool_open(struct pool *p, struct blkdev *dev, unsigned cache)
{
	int r;

	memset(p, 0, sizeof(*p));
	p->dev = dev;
	p->cache = cache;
	r = dm_block_manager_create(dev, cache, &p->bm);
	if (r)
		return r;
	r = pool_load(p);
	if (r) {
		dm_block_manager_destroy(p->bm);
		p->bm = NULL;
	}
	return r;
}

/* Drop everything since the last commit and continue from the committed state. */
int pool_abort(struct pool *p)
{
	int r;

	pool_destroy_tm(p);
	r = dm_bm_drop_dirty(p->bm);
	return r ? r : pool_load(p);
}

void pool_close(struct pool *p)
{
	pool_destroy_tm(p);
	dm_block_manager_destroy(p->bm);
	p->bm = NULL;
}

/* A new data block and its block_time value (the data sm reference is taken). */
int pool_new_mapping(struct pool *p, uint32_t time, uint8_t value_le[8])
{
	dm_block_t b;
	int r = dm_sm_new_block(p->dsm, &b);

	if (!r)
		put_le64(value_le, b << 24 | time);
	return r;
}

/*----------------------------------------------------------------*/
/* The checker */

struct checker {
	struct pool *p;
	dm_block_t nr_meta, nr_data;
	uint32_t *mcount, *dcount; /* expected */
	uint32_t *mdisk, *ddisk;   /* decoded from the space maps */
	uint64_t entries;	   /* last-level entries seen (first visits) */
	char err[256];
};

#define CHK_FAIL(c, ...)                                                                           \
	do {                                                                                       \
		if (!(c)->err[0])                                                                  \
			snprintf((c)->err, sizeof((c)->err), __VA_ARGS__);                         \
		return -EILSEQ;                                                                    \
	} while (0)

static int chk_ref(struct checker *c, dm_block_t b)
{
	if (b >= c->nr_meta)
		CHK_FAIL(c, "reference to block %llu past the end", (unsigned long long)b);
	return c->mcount[b]++ ? 1 : 0;
}

enum tree_kind {
	TREE_MAPPING,
	TREE_DETAILS,
	TREE_SM_INDEX,
	TREE_REFCOUNT,
};

struct walk_ctx {
	enum tree_kind kind;
	unsigned levels;
	uint32_t leaf_vsize;
	int leaf_depth;
	uint32_t (*leaf_fn)(struct checker *c, uint64_t key, const uint8_t *v);
};

static int chk_node(struct checker *c, struct walk_ctx *w, dm_block_t b, unsigned level,
		    bool is_root, uint64_t lo, uint64_t hi, bool has_hi, int depth)
{
	struct dm_block *blk;
	struct btree_node *n;
	uint32_t nr, vs;
	int r;

	r = chk_ref(c, b);
	if (r)
		return r < 0 ? r : 0; /* shared: contents counted on the first visit */
	r = dm_bm_read_lock(c->p->bm, b, &btree_node_validator, &blk);
	if (r)
		CHK_FAIL(c, "node %llu unreadable: %d", (unsigned long long)b, r);
	n = dm_block_data(blk);
	nr = node_nr(n);
	vs = node_flags(n) == INTERNAL_NODE ? 8 : level + 1 < w->levels ? 8 : w->leaf_vsize;
	r = 0;
	if (node_vsize(n) != vs || node_max(n) != dm_btree_max_entries(vs))
		r = -1;
	else if (!is_root && nr < node_max(n) / 3)
		r = -2;
	for (uint32_t i = 0; i < nr && !r; i++) {
		uint64_t k = node_key(n, i);

		if (i && k <= node_key(n, i - 1))
			r = -3;
		else if (k < lo || (has_hi && k >= hi)) {
			r = -4;
			if (getenv("PDATA_DEBUG"))
				printf("  key[%u]=%llu lo %llu hi %llu(%d) level %u flags %u\n", i,
				       (unsigned long long)k, (unsigned long long)lo,
				       (unsigned long long)hi, has_hi, level, node_flags(n));
		}
	}
	if (!r && !is_root && nr && node_key(n, 0) != lo && node_flags(n) == INTERNAL_NODE)
		r = 0; /* parent key may be below the first key (allowed) */
	if (r) {
		dm_bm_unlock(blk);
		CHK_FAIL(c, "node %llu breaks a B-tree rule (%d): nr %u max %u",
			 (unsigned long long)b, r, nr, node_max(n));
	}
	if (node_flags(n) == LEAF_NODE && level + 1 == w->levels) {
		if (w->leaf_depth < 0 && is_root)
			w->leaf_depth = depth;
		else if (w->leaf_depth < 0)
			w->leaf_depth = depth;
		if (w->leaf_depth != depth && !(is_root && depth == 0)) {
			/* depth is per tree: subtrees reset it below */
		}
	}
	for (uint32_t i = 0; i < nr && !r; i++) {
		if (node_flags(n) == INTERNAL_NODE) {
			bool last = i + 1 == nr;

			r = chk_node(c, w, value64(n, i), level, false, node_key(n, i),
				     last ? hi : node_key(n, i + 1), last ? has_hi : true,
				     depth + 1);
		} else if (level + 1 < w->levels) {
			int saved = w->leaf_depth;

			w->leaf_depth = -1;
			r = chk_node(c, w, value64(n, i), level + 1, true, 0, 0, false, 0);
			w->leaf_depth = saved;
		} else {
			c->entries++;
			if (w->leaf_fn)
				w->leaf_fn(c, node_key(n, i), value_ptr(n, i));
		}
	}
	dm_bm_unlock(blk);
	return r;
}

/* Check all leaves of each single tree are at one depth. */
static int chk_depth(struct checker *c, unsigned levels, uint32_t leaf_vsize, dm_block_t b,
		     unsigned level, int depth, int *leaf_depth)
{
	struct dm_block *blk;
	struct btree_node *n;
	int r;

	if (depth > 32)
		CHK_FAIL(c, "tree too deep at %llu", (unsigned long long)b);
	r = dm_bm_read_lock(c->p->bm, b, &btree_node_validator, &blk);
	if (r)
		CHK_FAIL(c, "node %llu unreadable: %d", (unsigned long long)b, r);
	n = dm_block_data(blk);
	if (node_flags(n) == LEAF_NODE) {
		if (*leaf_depth < 0)
			*leaf_depth = depth;
		if (*leaf_depth != depth)
			r = -1;
		for (uint32_t i = 0; i < node_nr(n) && !r && level + 1 < levels; i++) {
			int ld = -1;

			r = chk_depth(c, levels, leaf_vsize, value64(n, i), level + 1, 0, &ld);
		}
	} else {
		for (uint32_t i = 0; i < node_nr(n) && !r; i++)
			r = chk_depth(c, levels, leaf_vsize, value64(n, i), level, depth + 1,
				      leaf_depth);
	}
	dm_bm_unlock(blk);
	if (r == -1)
		CHK_FAIL(c, "leaves at different depths under %llu", (unsigned long long)b);
	return r;
}

static uint32_t map_leaf(struct checker *c, uint64_t key, const uint8_t *v)
{
	uint64_t db = get_le64(v) >> 24;

	if (db < c->nr_data)
		c->dcount[db]++;
	else
		snprintf(c->err, sizeof(c->err), "mapping to data block %llu past the end",
			 (unsigned long long)db);
	return 0;
}

static dm_block_t chk_cur_bitmaps[1];

/* Decode one space map (bitmaps + overflow tree) into @out. */
static int chk_decode_bitmap(struct checker *c, const struct disk_index_entry *ie, dm_block_t i,
			     dm_block_t nr_blocks, uint32_t *out, uint64_t *allocated)
{
	struct dm_block *blk;
	uint32_t nr_free = 0;
	uint8_t *bytes;
	int r;

	r = dm_bm_read_lock(c->p->bm, get_le64(&ie->blocknr), &dm_sm_bitmap_validator, &blk);
	if (r)
		CHK_FAIL(c, "bitmap %llu unreadable: %d",
			 (unsigned long long)get_le64(&ie->blocknr), r);
	bytes = (uint8_t *)dm_block_data(blk) + BITMAP_HEADER_SIZE;
	for (uint32_t e = 0; e < ENTRIES_PER_BLOCK; e++) {
		dm_block_t b = i * ENTRIES_PER_BLOCK + e;
		uint8_t byte = bytes[e / 4];
		unsigned sh = 2 * (e % 4);
		uint32_t v = ((byte >> sh) & 1u) << 1 | ((byte >> (sh + 1)) & 1u);

		if (b >= nr_blocks) {
			if (v) {
				dm_bm_unlock(blk);
				CHK_FAIL(c, "bitmap entry past the end in use");
			}
			nr_free++;
			continue;
		}
		out[b] = v;
		if (!v)
			nr_free++;
		else
			(*allocated)++;
	}
	dm_bm_unlock(blk);
	if (nr_free != get_le32(&ie->nr_free))
		CHK_FAIL(c, "index entry %llu: nr_free %u, bitmap says %u", (unsigned long long)i,
			 get_le32(&ie->nr_free), nr_free);
	for (uint32_t e = 0; e < get_le32(&ie->none_free_before) && e < ENTRIES_PER_BLOCK; e++) {
		dm_block_t b = i * ENTRIES_PER_BLOCK + e;

		if (b < nr_blocks && !out[b])
			CHK_FAIL(c, "none_free_before %u but block %llu free",
				 get_le32(&ie->none_free_before), (unsigned long long)b);
	}
	return 0;
}

struct chk_sm {
	struct checker *c;
	uint32_t *out;
	dm_block_t nr_blocks;
	uint64_t allocated;
};

static int chk_refcount_entry(void *ctx, const uint64_t *keys, void *v)
{
	struct chk_sm *s = ctx;

	if (keys[0] >= s->nr_blocks || s->out[keys[0]] != 3 || get_le32(v) < 3)
		CHK_FAIL(s->c, "overflow entry %llu=%u without a 3 in the bitmap",
			 (unsigned long long)keys[0], get_le32(v));
	s->out[keys[0]] = get_le32(v) | 0x80000000u; /* mark as seen */
	return 0;
}

static int chk_index_entry(void *ctx, const uint64_t *keys, void *v)
{
	struct chk_sm *s = ctx;

	if (chk_ref(s->c, get_le64(v)) != 0)
		CHK_FAIL(s->c, "bitmap block referenced twice");
	return chk_decode_bitmap(s->c, v, keys[0], s->nr_blocks, s->out, &s->allocated);
}

static int chk_finish_sm(struct chk_sm *s, const struct disk_sm_root *root, const char *name)
{
	for (dm_block_t b = 0; b < s->nr_blocks; b++) {
		if (s->out[b] == 3)
			CHK_FAIL(s->c, "%s: block %llu is 3 in the bitmap but not in the tree",
				 name, (unsigned long long)b);
		s->out[b] &= 0x7fffffffu;
	}
	if (s->allocated != get_le64(&root->nr_allocated))
		CHK_FAIL(s->c, "%s: nr_allocated %llu, bitmaps say %llu", name,
			 (unsigned long long)get_le64(&root->nr_allocated),
			 (unsigned long long)s->allocated);
	return 0;
}

/*
 * Check everything reachable from the superblock on the device (through the cache). Call
 * right after a commit or open. Returns 0, or -EILSEQ with c->err describing the first
 * problem (printed).
 */
int pool_check_ex(struct pool *p, uint64_t *entries)
{
	struct checker *c = calloc(1, sizeof(*c));
	struct disk_sm_root mroot, droot;
	struct dm_btree_info idx_info = { p->tm, 1, { NULL, 16, NULL, NULL, NULL } };
	struct dm_btree_info rc_info = { p->tm, 1, { NULL, 4, NULL, NULL, NULL } };
	struct walk_ctx w;
	struct dm_block *sb;
	struct chk_sm ms, ds;
	int r, ld;

	(void)chk_cur_bitmaps;
	if (!c)
		return -ENOMEM;
	c->p = p;
	r = dm_bm_read_lock(p->bm, 0, &sb_validator, &sb);
	if (r) {
		free(c);
		return r;
	}
	memcpy(&droot, (uint8_t *)dm_block_data(sb) + SB_OFF_DATA_SM, sizeof(droot));
	memcpy(&mroot, (uint8_t *)dm_block_data(sb) + SB_OFF_META_SM, sizeof(mroot));
	dm_block_t map_root = get_le64((uint8_t *)dm_block_data(sb) + SB_OFF_MAPPING);
	dm_block_t det_root = get_le64((uint8_t *)dm_block_data(sb) + SB_OFF_DETAILS);
	dm_bm_unlock(sb);

	c->nr_meta = get_le64(&mroot.nr_blocks);
	c->nr_data = get_le64(&droot.nr_blocks);
	c->mcount = calloc(c->nr_meta + 1, 4);
	c->mdisk = calloc(c->nr_meta + 1, 4);
	c->dcount = calloc(c->nr_data + 1, 4);
	c->ddisk = calloc(c->nr_data + 1, 4);
	if (!c->mcount || !c->mdisk || !c->dcount || !c->ddisk) {
		r = -ENOMEM;
		goto out;
	}
	c->mcount[0]++; /* the superblock */

	/* Metadata space map: index block, bitmaps, overflow tree. */
	ms = (struct chk_sm){ c, c->mdisk, c->nr_meta, 0 };
	{
		dm_block_t ib = get_le64(&mroot.bitmap_root);
		struct dm_block *blk;
		struct disk_metadata_index *mi;

		r = chk_ref(c, ib);
		if (!r)
			r = dm_bm_read_lock(p->bm, ib, &dm_sm_index_validator, &blk);
		if (r) {
			snprintf(c->err, sizeof(c->err), "metadata index unreadable");
			r = -EILSEQ;
			goto out;
		}
		mi = dm_block_data(blk);
		for (dm_block_t i = 0; i * ENTRIES_PER_BLOCK < c->nr_meta && !r; i++) {
			r = chk_ref(c, get_le64(&mi->index[i].blocknr));
			if (!r)
				r = chk_decode_bitmap(c, &mi->index[i], i, c->nr_meta, c->mdisk,
						      &ms.allocated);
		}
		dm_bm_unlock(blk);
	}
	memset(&w, 0, sizeof(w));
	w.kind = TREE_REFCOUNT;
	w.levels = 1;
	w.leaf_vsize = 4;
	if (!r)
		r = chk_node(c, &w, get_le64(&mroot.ref_count_root), 0, true, 0, 0, false, 0);
	if (!r)
		r = dm_btree_walk(&rc_info, get_le64(&mroot.ref_count_root), chk_refcount_entry,
				  &ms);
	if (!r)
		r = chk_finish_sm(&ms, &mroot, "metadata sm");

	/* Data space map: index tree, bitmaps, overflow tree. */
	ds = (struct chk_sm){ c, c->ddisk, c->nr_data, 0 };
	w.kind = TREE_SM_INDEX;
	w.leaf_vsize = 16;
	if (!r)
		r = chk_node(c, &w, get_le64(&droot.bitmap_root), 0, true, 0, 0, false, 0);
	if (!r)
		r = dm_btree_walk(&idx_info, get_le64(&droot.bitmap_root), chk_index_entry, &ds);
	w.kind = TREE_REFCOUNT;
	w.leaf_vsize = 4;
	if (!r)
		r = chk_node(c, &w, get_le64(&droot.ref_count_root), 0, true, 0, 0, false, 0);
	if (!r)
		r = dm_btree_walk(&rc_info, get_le64(&droot.ref_count_root), chk_refcount_entry,
				  &ds);
	if (!r)
		r = chk_finish_sm(&ds, &droot, "data sm");

	/* The thin trees. */
	w.kind = TREE_MAPPING;
	w.levels = 2;
	w.leaf_vsize = 8;
	w.leaf_fn = map_leaf;
	c->entries = 0;
	if (!r)
		r = chk_node(c, &w, map_root, 0, true, 0, 0, false, 0);
	if (entries)
		*entries = c->entries;
	ld = -1;
	if (!r)
		r = chk_depth(c, 2, 8, map_root, 0, 0, &ld);
	w.kind = TREE_DETAILS;
	w.levels = 1;
	w.leaf_vsize = 24;
	w.leaf_fn = NULL;
	if (!r)
		r = chk_node(c, &w, det_root, 0, true, 0, 0, false, 0);
	ld = -1;
	if (!r)
		r = chk_depth(c, 1, 24, det_root, 0, 0, &ld);
	if (!r && c->err[0])
		r = -EILSEQ;

	for (dm_block_t b = 0; b < c->nr_meta && !r; b++)
		if (c->mcount[b] != c->mdisk[b]) {
			snprintf(c->err, sizeof(c->err),
				 "metadata block %llu: %u references, count %u",
				 (unsigned long long)b, c->mcount[b], c->mdisk[b]);
			r = -EILSEQ;
		}
	for (dm_block_t b = 0; b < c->nr_data && !r; b++)
		if (c->dcount[b] != c->ddisk[b]) {
			snprintf(c->err, sizeof(c->err), "data block %llu: %u references, count %u",
				 (unsigned long long)b, c->dcount[b], c->ddisk[b]);
			r = -EILSEQ;
		}
out:
	if (r)
		printf("  pool_check: %s (%d)\n", c->err[0] ? c->err : "error", r);
	free(c->mcount);
	free(c->mdisk);
	free(c->dcount);
	free(c->ddisk);
	free(c);
	return r;
}

int pool_check(struct pool *p)
{
	return pool_check_ex(p, NULL);
}
