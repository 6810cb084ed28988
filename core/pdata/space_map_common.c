/* SPDX-License-Identifier: MIT */
/* Bitmaps, index entries and the overflow tree (after dm-space-map-common.c). */
#include "core/pdata/space_map_common.h"
#include "core/base/util.h"

#include <string.h>

/*----------------------------------------------------------------*/
/* Validators */

static void index_prepare_for_write(const struct dm_block_validator *v, struct dm_block *b,
				    size_t block_size)
{
	struct disk_metadata_index *mi = dm_block_data(b);

	put_le64(&mi->blocknr, dm_block_location(b));
	put_le32(&mi->csum, dm_bm_checksum((uint8_t *)mi + 4, block_size - 4, INDEX_CSUM_XOR));
}

static int index_check(const struct dm_block_validator *v, struct dm_block *b, size_t block_size)
{
	struct disk_metadata_index *mi = dm_block_data(b);

	if (get_le64(&mi->blocknr) != dm_block_location(b))
		return -ENOTBLK;
	if (get_le32(&mi->csum) !=
	    dm_bm_checksum((uint8_t *)mi + 4, block_size - 4, INDEX_CSUM_XOR))
		return -EILSEQ;
	return 0;
}

const struct dm_block_validator dm_sm_index_validator = {
	.name = "index",
	.prepare_for_write = index_prepare_for_write,
	.check = index_check,
};

static void bitmap_prepare_for_write(const struct dm_block_validator *v, struct dm_block *b,
				     size_t block_size)
{
	struct disk_bitmap_header *h = dm_block_data(b);

	put_le64(&h->blocknr, dm_block_location(b));
	put_le32(&h->csum, dm_bm_checksum((uint8_t *)h + 4, block_size - 4, BITMAP_CSUM_XOR));
}

static int bitmap_check(const struct dm_block_validator *v, struct dm_block *b, size_t block_size)
{
	struct disk_bitmap_header *h = dm_block_data(b);

	if (get_le64(&h->blocknr) != dm_block_location(b))
		return -ENOTBLK;
	if (get_le32(&h->csum) != dm_bm_checksum((uint8_t *)h + 4, block_size - 4, BITMAP_CSUM_XOR))
		return -EILSEQ;
	return 0;
}

const struct dm_block_validator dm_sm_bitmap_validator = {
	.name = "sm_bitmap",
	.prepare_for_write = bitmap_prepare_for_write,
	.check = bitmap_check,
};

/*----------------------------------------------------------------*/
/* 2-bit entries: entry e is bits 2e (high, value 2) and 2e+1 (low, value 1) of the
 * little-endian bit string after the header. */

static uint8_t *bitmap_bytes(struct dm_block *b)
{
	return (uint8_t *)dm_block_data(b) + BITMAP_HEADER_SIZE;
}

static uint32_t sm_lookup_bitmap(const uint8_t *bytes, uint32_t e)
{
	uint8_t byte = bytes[e / 4];
	unsigned sh = 2 * (e % 4);

	return ((byte >> sh) & 1) << 1 | ((byte >> (sh + 1)) & 1);
}

static void sm_set_bitmap(uint8_t *bytes, uint32_t e, uint32_t val)
{
	unsigned sh = 2 * (e % 4);
	uint8_t byte = bytes[e / 4] & (uint8_t) ~(3u << sh);

	byte |= (uint8_t)(((val >> 1) & 1) << sh | (val & 1) << (sh + 1));
	bytes[e / 4] = byte;
}

/* First entry in [begin, end) with value 0, or -1. */
static int64_t bitmap_find_free(const uint8_t *bytes, uint32_t begin, uint32_t end)
{
	uint32_t e = begin;

	while (e < end) {
		if (e % 32 == 0 && end - e >= 32) {
			uint64_t w, used;

			memcpy(&w, bytes + e / 4, 8);
			w = get_le64(&w);
			/* One bit per entry (at the even position) if any of its two bits is set. */
			used = (w | (w >> 1)) & 0x5555555555555555ull;
			if (used == 0x5555555555555555ull) {
				e += 32;
				continue;
			}
			return e + (uint32_t)__builtin_ctzll(~used & 0x5555555555555555ull) / 2;
		}
		if (!sm_lookup_bitmap(bytes, e))
			return e;
		e++;
	}
	return -1;
}

/*----------------------------------------------------------------*/

static int ll_init(struct ll_disk *ll, struct dm_transaction_manager *tm)
{
	memset(ll, 0, sizeof(*ll));
	ll->tm = tm;
	ll->bitmap_info.tm = tm;
	ll->bitmap_info.levels = 1;
	ll->bitmap_info.value_type.size = sizeof(struct disk_index_entry);
	ll->ref_count_info.tm = tm;
	ll->ref_count_info.levels = 1;
	ll->ref_count_info.value_type.size = sizeof(le32);
	return 0;
}

static dm_block_t div_up(dm_block_t n, dm_block_t d)
{
	return (n + d - 1) / d;
}

/* What the bitmap of index entry @ie holds: free entries in all, free ones among the first
 * @in_range (those below nr_blocks), and the first free one of those (ENTRIES_PER_BLOCK
 * when none). */
struct bitmap_free {
	uint32_t all, in_range, first;
};

void sm_bitmap_count_free(const uint8_t *bytes, uint32_t in_range, uint32_t *all,
			  uint32_t *in_range_free, uint32_t *first)
{
	const uint64_t evens = 0x5555555555555555ull;

	*all = *in_range_free = 0;
	*first = ENTRIES_PER_BLOCK;
	in_range = MIN(in_range, (uint32_t)ENTRIES_PER_BLOCK);
	/* 32 entries a word: one bit per free entry (at its even position). Entry by entry
	 * this loop was most of a terabyte pool's reopen under TCG (docs/firmware.md, "Boot
	 * breakdown"). */
	for (uint32_t e = 0; e < ENTRIES_PER_BLOCK; e += 32) {
		uint64_t w, free;

		memcpy(&w, bytes + e / 4, 8);
		w = get_le64(&w);
		free = ~(w | (w >> 1)) & evens;
		*all += (uint32_t)__builtin_popcountll(free);
		if (e >= in_range)
			continue;
		if (in_range - e < 32)
			free &= (1ull << (2 * (in_range - e))) - 1;
		*in_range_free += (uint32_t)__builtin_popcountll(free);
		if (free && *first == ENTRIES_PER_BLOCK)
			*first = e + (uint32_t)__builtin_ctzll(free) / 2;
	}
}

_Static_assert(ENTRIES_PER_BLOCK % 32 == 0, "a bitmap is whole 64-bit words of entries");

static int count_free(struct ll_disk *ll, const struct disk_index_entry *ie, uint32_t in_range,
		      struct bitmap_free *f)
{
	struct dm_block *blk;
	int r = dm_tm_read_lock(ll->tm, get_le64(&ie->blocknr), &dm_sm_bitmap_validator, &blk);

	if (r)
		return r;
	sm_bitmap_count_free(bitmap_bytes(blk), in_range, &f->all, &f->in_range, &f->first);
	dm_tm_unlock(ll->tm, blk);
	return 0;
}

/* Make index entry @i count every free entry of its bitmap, past the end included (the
 * kernel's convention), with a none-free-before hint no higher than the end. */
static int count_partial_bitmap(struct ll_disk *ll, dm_block_t i)
{
	uint32_t in_range = (uint32_t)(ll->nr_blocks - i * ENTRIES_PER_BLOCK);
	struct disk_index_entry ie;
	struct bitmap_free f;
	int r = ll->load_ie(ll, i, &ie);

	if (!r)
		r = count_free(ll, &ie, in_range, &f);
	if (r)
		return r;
	put_le32(&ie.nr_free, f.all);
	if (get_le32(&ie.none_free_before) > in_range)
		put_le32(&ie.none_free_before, in_range);
	return ll->save_ie(ll, i, &ie);
}

int sm_ll_extend(struct ll_disk *ll, dm_block_t extra_blocks)
{
	dm_block_t nr_blocks = ll->nr_blocks + extra_blocks;
	dm_block_t old_bitmaps = div_up(ll->nr_blocks, ENTRIES_PER_BLOCK);
	dm_block_t bitmaps = div_up(nr_blocks, ENTRIES_PER_BLOCK);

	if (nr_blocks < ll->nr_blocks || bitmaps > ll->max_entries(ll))
		return -EINVAL;
	if (ll->nr_blocks % ENTRIES_PER_BLOCK && extra_blocks) {
		/* The last bitmap was partial and its new entries are free. thin_restore counts
		 * only the entries in range as free: a full last bitmap then says 0 free, and
		 * the search would skip the blocks just added to it. */
		int r = count_partial_bitmap(ll, old_bitmaps - 1);

		if (r)
			return r;
	}
	/* Set first: new bitmaps may be allocated from the area they describe. */
	ll->nr_blocks = nr_blocks;
	for (dm_block_t i = old_bitmaps; i < bitmaps; i++) {
		struct disk_index_entry ie;
		struct dm_block *b;
		int r = dm_tm_new_block(ll->tm, &dm_sm_bitmap_validator, &b);

		if (r)
			return r;
		put_le64(&ie.blocknr, dm_block_location(b));
		dm_tm_unlock(ll->tm, b);
		/* The kernel's convention: a new bitmap counts all its entries as free. */
		put_le32(&ie.nr_free, ENTRIES_PER_BLOCK);
		put_le32(&ie.none_free_before, 0);
		r = ll->save_ie(ll, i, &ie);
		if (r)
			return r;
	}
	return 0;
}

int sm_ll_lookup_bitmap(struct ll_disk *ll, dm_block_t b, uint32_t *result)
{
	struct disk_index_entry ie;
	struct dm_block *blk;
	int r;

	if (b >= ll->nr_blocks)
		return -EINVAL;
	r = ll->load_ie(ll, b / ENTRIES_PER_BLOCK, &ie);
	if (r)
		return r;
	r = dm_tm_read_lock(ll->tm, get_le64(&ie.blocknr), &dm_sm_bitmap_validator, &blk);
	if (r)
		return r;
	*result = sm_lookup_bitmap(bitmap_bytes(blk), (uint32_t)(b % ENTRIES_PER_BLOCK));
	dm_tm_unlock(ll->tm, blk);
	return 0;
}

static int lookup_big_ref_count(struct ll_disk *ll, dm_block_t b, uint32_t *result)
{
	le32 le_rc;
	int r = dm_btree_lookup(&ll->ref_count_info, ll->ref_count_root, &b, &le_rc);

	/* A 3 in the bitmap promises a tree entry of at least 3. */
	if (r == -ENODATA || (!r && get_le32(&le_rc) < 3))
		return -EILSEQ;
	if (r)
		return r;
	*result = get_le32(&le_rc);
	return 0;
}

int sm_ll_lookup(struct ll_disk *ll, dm_block_t b, uint32_t *result)
{
	int r = sm_ll_lookup_bitmap(ll, b, result);

	if (r || *result != 3)
		return r;
	return lookup_big_ref_count(ll, b, result);
}

int sm_ll_find_free_block(struct ll_disk *ll, dm_block_t begin, dm_block_t end, dm_block_t *result)
{
	if (end > ll->nr_blocks)
		end = ll->nr_blocks;
	for (dm_block_t i = begin / ENTRIES_PER_BLOCK; i < div_up(end, ENTRIES_PER_BLOCK); i++) {
		struct disk_index_entry ie;
		struct dm_block *blk;
		dm_block_t base = i * ENTRIES_PER_BLOCK;
		uint32_t lo = begin > base ? (uint32_t)(begin - base) : 0;
		uint32_t hi = (uint32_t)MIN((dm_block_t)ENTRIES_PER_BLOCK, end - base);
		int64_t pos;
		int r = ll->load_ie(ll, i, &ie);

		if (r)
			return r;
		if (!get_le32(&ie.nr_free))
			continue;
		if (get_le32(&ie.none_free_before) > lo)
			lo = get_le32(&ie.none_free_before);
		if (lo >= hi)
			continue;
		r = dm_tm_read_lock(ll->tm, get_le64(&ie.blocknr), &dm_sm_bitmap_validator, &blk);
		if (r)
			return r;
		pos = bitmap_find_free(bitmap_bytes(blk), lo, hi);
		dm_tm_unlock(ll->tm, blk);
		if (pos >= 0) {
			*result = base + (dm_block_t)pos;
			return 0;
		}
	}
	return -ENOSPC;
}

/*
 * Change the count of @b to what @mutator computes from the old count. The bitmap block is
 * shadowed and the index entry saved before the overflow tree is touched, so that nested
 * space-map lookups made while the tree is updated see the new bitmap.
 */
static int sm_ll_mutate(struct ll_disk *ll, dm_block_t b,
			int (*mutator)(void *context, uint32_t old, uint32_t *new_count),
			void *context, enum allocation_event *ev)
{
	uint32_t bit = (uint32_t)(b % ENTRIES_PER_BLOCK), old, bm_old, ref_count;
	dm_block_t index = b / ENTRIES_PER_BLOCK;
	struct disk_index_entry ie;
	struct dm_block *nb;
	int r, inc;

	*ev = SM_NONE;
	if (b >= ll->nr_blocks)
		return -EINVAL;
	r = ll->load_ie(ll, index, &ie);
	if (r)
		return r;
	r = dm_tm_shadow_block(ll->tm, get_le64(&ie.blocknr), &dm_sm_bitmap_validator, &nb, &inc);
	if (r)
		return r;
	put_le64(&ie.blocknr, dm_block_location(nb));
	old = bm_old = sm_lookup_bitmap(bitmap_bytes(nb), bit);
	if (bm_old == 3)
		r = lookup_big_ref_count(ll, b, &old);
	if (!r)
		r = mutator(context, old, &ref_count);
	if (r) {
		dm_tm_unlock(ll->tm, nb);
		return r;
	}
	sm_set_bitmap(bitmap_bytes(nb), bit, ref_count > 2 ? 3 : ref_count);
	dm_tm_unlock(ll->tm, nb);

	if (ref_count && !old) {
		*ev = SM_ALLOC;
		ll->nr_allocated++;
		put_le32(&ie.nr_free, get_le32(&ie.nr_free) - 1);
		if (get_le32(&ie.none_free_before) == bit)
			put_le32(&ie.none_free_before, bit + 1);
	} else if (old && !ref_count) {
		*ev = SM_FREE;
		ll->nr_allocated--;
		put_le32(&ie.nr_free, get_le32(&ie.nr_free) + 1);
		if (bit < get_le32(&ie.none_free_before))
			put_le32(&ie.none_free_before, bit);
	}
	r = ll->save_ie(ll, index, &ie);
	if (r)
		return r;

	if (ref_count > 2) {
		le32 le_rc;

		put_le32(&le_rc, ref_count);
		r = dm_btree_insert(&ll->ref_count_info, ll->ref_count_root, &b, &le_rc,
				    &ll->ref_count_root);
	} else if (bm_old == 3) {
		r = dm_btree_remove(&ll->ref_count_info, ll->ref_count_root, &b,
				    &ll->ref_count_root);
	}
	return r;
}

static int set_ref_count(void *context, uint32_t old, uint32_t *new_count)
{
	*new_count = *(uint32_t *)context;
	return 0;
}

static int inc_ref_count(void *context, uint32_t old, uint32_t *new_count)
{
	if (old == UINT32_MAX)
		return -EINVAL;
	*new_count = old + 1;
	return 0;
}

static int dec_ref_count(void *context, uint32_t old, uint32_t *new_count)
{
	/* Freeing a free block means the caller's counting is wrong; refuse, don't wrap. */
	if (!old)
		return -EINVAL;
	*new_count = old - 1;
	return 0;
}

int sm_ll_insert(struct ll_disk *ll, dm_block_t b, uint32_t ref_count, enum allocation_event *ev)
{
	return sm_ll_mutate(ll, b, set_ref_count, &ref_count, ev);
}

int sm_ll_inc(struct ll_disk *ll, dm_block_t b, enum allocation_event *ev)
{
	return sm_ll_mutate(ll, b, inc_ref_count, NULL, ev);
}

int sm_ll_dec(struct ll_disk *ll, dm_block_t b, enum allocation_event *ev)
{
	return sm_ll_mutate(ll, b, dec_ref_count, NULL, ev);
}

/* Read the bitmaps of index entries [@first, @first + DM_BM_PREFETCH_MAX) into the cache at
 * once; a hint, so errors are left for the reads that follow to meet. */
static void recount_prefetch(struct ll_disk *ll, dm_block_t first)
{
	dm_block_t locs[DM_BM_PREFETCH_MAX];
	dm_block_t end = MIN(first + DM_BM_PREFETCH_MAX, div_up(ll->nr_blocks, ENTRIES_PER_BLOCK));
	unsigned n = 0;

	for (dm_block_t i = first; i < end; i++) {
		struct disk_index_entry ie;

		if (ll->load_ie(ll, i, &ie))
			break;
		locs[n++] = get_le64(&ie.blocknr);
	}
	if (n > 1)
		(void)dm_bm_prefetch(dm_tm_get_bm(ll->tm), locs, n);
}

int sm_ll_recount(struct ll_disk *ll, bool *changed)
{
	dm_block_t allocated = 0;

	*changed = false;
	for (dm_block_t i = 0; i < div_up(ll->nr_blocks, ENTRIES_PER_BLOCK); i++) {
		dm_block_t base = i * ENTRIES_PER_BLOCK;
		/* The next bitmaps read together: one at a time, a terabyte's 1,028 synchronous
		 * reads were most of its reopen (docs/firmware.md, "Boot breakdown"). */
		if (i % DM_BM_PREFETCH_MAX == 0)
			recount_prefetch(ll, i);
		uint32_t in_range =
		    (uint32_t)MIN((dm_block_t)ENTRIES_PER_BLOCK, ll->nr_blocks - base);
		struct disk_index_entry ie;
		struct bitmap_free f;
		bool fix = false;
		int r = ll->load_ie(ll, i, &ie);

		if (!r)
			r = count_free(ll, &ie, in_range, &f);
		if (r)
			return r;
		allocated += in_range - f.in_range;
		/* Either convention for the entries past the end (see the checker) is right. */
		if (get_le32(&ie.nr_free) != f.in_range && get_le32(&ie.nr_free) != f.all) {
			put_le32(&ie.nr_free, f.all);
			fix = true;
		}
		/* A hint below the first free entry is fine; one above it hides free blocks. */
		if (get_le32(&ie.none_free_before) > f.first) {
			put_le32(&ie.none_free_before, f.first);
			fix = true;
		}
		if (fix) {
			r = ll->save_ie(ll, i, &ie);
			if (r)
				return r;
			*changed = true;
		}
	}
	if (ll->nr_allocated != allocated) {
		ll->nr_allocated = allocated;
		*changed = true;
	}
	return 0;
}

int sm_ll_commit(struct ll_disk *ll)
{
	return ll->commit ? ll->commit(ll) : 0;
}

void sm_ll_save_root(const struct ll_disk *ll, struct disk_sm_root *root)
{
	put_le64(&root->nr_blocks, ll->nr_blocks);
	put_le64(&root->nr_allocated, ll->nr_allocated);
	put_le64(&root->bitmap_root, ll->bitmap_root);
	put_le64(&root->ref_count_root, ll->ref_count_root);
}

static int ll_load_root(struct ll_disk *ll, const void *root_le, size_t len)
{
	const struct disk_sm_root *root = root_le;

	if (len < sizeof(*root))
		return -EINVAL;
	ll->nr_blocks = get_le64(&root->nr_blocks);
	ll->nr_allocated = get_le64(&root->nr_allocated);
	ll->bitmap_root = get_le64(&root->bitmap_root);
	ll->ref_count_root = get_le64(&root->ref_count_root);
	if (ll->nr_allocated > ll->nr_blocks ||
	    div_up(ll->nr_blocks, ENTRIES_PER_BLOCK) > ll->max_entries(ll))
		return -EILSEQ;
	return 0;
}

/*----------------------------------------------------------------*/
/* Metadata: the index lives in one block, held in core. */

static int metadata_ll_load_ie(struct ll_disk *ll, dm_block_t index, struct disk_index_entry *ie)
{
	if (index >= MAX_METADATA_BITMAPS)
		return -EINVAL;
	memcpy(ie, &ll->mi_le.index[index], sizeof(*ie));
	return 0;
}

static int metadata_ll_save_ie(struct ll_disk *ll, dm_block_t index, struct disk_index_entry *ie)
{
	if (index >= MAX_METADATA_BITMAPS)
		return -EINVAL;
	memcpy(&ll->mi_le.index[index], ie, sizeof(*ie));
	return 0;
}

static int metadata_ll_init_index(struct ll_disk *ll)
{
	struct dm_block *b;
	int r = dm_tm_new_block(ll->tm, &dm_sm_index_validator, &b);

	if (r)
		return r;
	ll->bitmap_root = dm_block_location(b);
	dm_tm_unlock(ll->tm, b);
	return 0;
}

static int metadata_ll_open(struct ll_disk *ll)
{
	struct dm_block *b;
	int r = dm_tm_read_lock(ll->tm, ll->bitmap_root, &dm_sm_index_validator, &b);

	if (r)
		return r;
	memcpy(&ll->mi_le, dm_block_data(b), sizeof(ll->mi_le));
	dm_tm_unlock(ll->tm, b);
	return 0;
}

static dm_block_t metadata_ll_max_entries(struct ll_disk *ll)
{
	return MAX_METADATA_BITMAPS;
}

static int metadata_ll_commit(struct ll_disk *ll)
{
	struct dm_block *b;
	int r, inc;

	/* Shadowing may change counts (so the index); copy the index only afterwards. */
	r = dm_tm_shadow_block(ll->tm, ll->bitmap_root, &dm_sm_index_validator, &b, &inc);
	if (r)
		return r;
	ll->bitmap_root = dm_block_location(b);
	memcpy(dm_block_data(b), &ll->mi_le, sizeof(ll->mi_le));
	dm_tm_unlock(ll->tm, b);
	return 0;
}

static void metadata_ll_ops(struct ll_disk *ll)
{
	ll->load_ie = metadata_ll_load_ie;
	ll->save_ie = metadata_ll_save_ie;
	ll->init_index = metadata_ll_init_index;
	ll->open_index = metadata_ll_open;
	ll->max_entries = metadata_ll_max_entries;
	ll->commit = metadata_ll_commit;
}

int sm_ll_new_metadata(struct ll_disk *ll, struct dm_transaction_manager *tm)
{
	int r = ll_init(ll, tm);

	if (r)
		return r;
	metadata_ll_ops(ll);
	r = ll->init_index(ll);
	if (r)
		return r;
	return dm_btree_empty(&ll->ref_count_info, &ll->ref_count_root);
}

int sm_ll_open_metadata(struct ll_disk *ll, struct dm_transaction_manager *tm, const void *root_le,
			size_t len)
{
	int r = ll_init(ll, tm);

	if (r)
		return r;
	metadata_ll_ops(ll);
	r = ll_load_root(ll, root_le, len);
	return r ? r : ll->open_index(ll);
}

/*----------------------------------------------------------------*/
/* Disk: the index is a B-tree keyed by bitmap number. */

static int disk_ll_load_ie(struct ll_disk *ll, dm_block_t index, struct disk_index_entry *ie)
{
	int r = dm_btree_lookup(&ll->bitmap_info, ll->bitmap_root, &index, ie);

	/* Every bitmap below nr_blocks has an entry; a missing one is corruption. */
	return r == -ENODATA ? -EILSEQ : r;
}

static int disk_ll_save_ie(struct ll_disk *ll, dm_block_t index, struct disk_index_entry *ie)
{
	return dm_btree_insert(&ll->bitmap_info, ll->bitmap_root, &index, ie, &ll->bitmap_root);
}

static int disk_ll_init_index(struct ll_disk *ll)
{
	return dm_btree_empty(&ll->bitmap_info, &ll->bitmap_root);
}

static int disk_ll_open(struct ll_disk *ll)
{
	return 0;
}

static dm_block_t disk_ll_max_entries(struct ll_disk *ll)
{
	/* The format allows 2^40 data blocks (the mapping value's block field). */
	return div_up(1ull << 40, ENTRIES_PER_BLOCK);
}

static void disk_ll_ops(struct ll_disk *ll)
{
	ll->load_ie = disk_ll_load_ie;
	ll->save_ie = disk_ll_save_ie;
	ll->init_index = disk_ll_init_index;
	ll->open_index = disk_ll_open;
	ll->max_entries = disk_ll_max_entries;
	ll->commit = NULL;
}

int sm_ll_new_disk(struct ll_disk *ll, struct dm_transaction_manager *tm)
{
	int r = ll_init(ll, tm);

	if (r)
		return r;
	disk_ll_ops(ll);
	r = ll->init_index(ll);
	if (r)
		return r;
	return dm_btree_empty(&ll->ref_count_info, &ll->ref_count_root);
}

int sm_ll_open_disk(struct ll_disk *ll, struct dm_transaction_manager *tm, const void *root_le,
		    size_t len)
{
	int r = ll_init(ll, tm);

	if (r)
		return r;
	disk_ll_ops(ll);
	r = ll_load_root(ll, root_le, len);
	return r ? r : ll->open_index(ll);
}
