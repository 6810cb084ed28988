/* SPDX-License-Identifier: MIT */
/*
 * The low-level space-map format shared by the disk and metadata space maps (after Linux's
 * dm-space-map-common.h): 2-bit reference counts in bitmap blocks, an index of bitmaps,
 * and a B-tree of the counts that don't fit in two bits.
 *
 * Bitmap i covers blocks [i * 16320, (i + 1) * 16320). A 2-bit entry holds 0, 1, 2 or 3;
 * 3 means "look in the overflow tree", which then holds the full count (>= 3). The disk
 * space map keeps its index in a B-tree (key: bitmap number, value: disk_index_entry), the
 * metadata space map in a single index block of 255 entries, kept in core and written at
 * commit.
 */
#ifndef CORE_PDATA_SPACE_MAP_COMMON_H
#define CORE_PDATA_SPACE_MAP_COMMON_H

#include "core/base/endian.h"
#include "core/pdata/btree.h"

#define ENTRIES_PER_BYTE     4
#define BITMAP_HEADER_SIZE   16
#define ENTRIES_PER_BLOCK    ((DM_BM_BLOCK_SIZE - BITMAP_HEADER_SIZE) * ENTRIES_PER_BYTE)
#define MAX_METADATA_BITMAPS 255
/*
 * The largest metadata device the format describes (the metadata space map's one index
 * block): 255 * 16320 = 4,161,600 blocks, about 15.9 GiB. The one definition of that limit;
 * a bigger device works and the excess is ignored.
 */
#define DM_SM_METADATA_MAX_BLOCKS ((uint64_t)MAX_METADATA_BITMAPS * ENTRIES_PER_BLOCK)

#define INDEX_CSUM_XOR	160478u
#define BITMAP_CSUM_XOR 240779u

struct disk_index_entry {
	le64 blocknr;
	le32 nr_free;
	le32 none_free_before;
} __attribute__((packed));
_Static_assert(sizeof(struct disk_index_entry) == 16, "disk_index_entry is 16 bytes");

struct disk_metadata_index {
	le32 csum;
	le32 padding;
	le64 blocknr;
	struct disk_index_entry index[MAX_METADATA_BITMAPS];
} __attribute__((packed));
_Static_assert(sizeof(struct disk_metadata_index) == 4096, "disk_metadata_index fills a block");

struct disk_bitmap_header {
	le32 csum;
	le32 not_used;
	le64 blocknr;
} __attribute__((packed));
_Static_assert(sizeof(struct disk_bitmap_header) == BITMAP_HEADER_SIZE, "bitmap header");

/* The root saved in the superblock (the rest of its 128-byte area is zero). */
struct disk_sm_root {
	le64 nr_blocks;
	le64 nr_allocated;
	le64 bitmap_root;
	le64 ref_count_root;
} __attribute__((packed));
_Static_assert(sizeof(struct disk_sm_root) == 32, "disk_sm_root is 32 bytes");

extern const struct dm_block_validator dm_sm_bitmap_validator;
extern const struct dm_block_validator dm_sm_index_validator;

struct ll_disk;

typedef int (*load_ie_fn)(struct ll_disk *ll, dm_block_t index, struct disk_index_entry *result);
typedef int (*save_ie_fn)(struct ll_disk *ll, dm_block_t index, struct disk_index_entry *ie);
typedef int (*init_index_fn)(struct ll_disk *ll);
typedef int (*open_index_fn)(struct ll_disk *ll);
typedef dm_block_t (*max_index_entries_fn)(struct ll_disk *ll);
typedef int (*commit_fn)(struct ll_disk *ll);

/* One low-level state; the space maps keep two (committed and current). Plain data: copyable. */
struct ll_disk {
	struct dm_transaction_manager *tm;
	struct dm_btree_info bitmap_info;    /* disk sm: the index tree */
	struct dm_btree_info ref_count_info; /* the overflow tree */
	dm_block_t nr_blocks;
	dm_block_t nr_allocated;
	dm_block_t bitmap_root; /* disk: index tree root; metadata: index block */
	dm_block_t ref_count_root;
	struct disk_metadata_index mi_le; /* metadata sm: the index, in core */
	load_ie_fn load_ie;
	save_ie_fn save_ie;
	init_index_fn init_index;
	open_index_fn open_index;
	max_index_entries_fn max_entries;
	commit_fn commit;
};

/* A reference-count change's effect on allocation. */
enum allocation_event {
	SM_NONE,
	SM_ALLOC,
	SM_FREE,
};

int sm_ll_new_metadata(struct ll_disk *ll, struct dm_transaction_manager *tm);
int sm_ll_open_metadata(struct ll_disk *ll, struct dm_transaction_manager *tm, const void *root_le,
			size_t len);
int sm_ll_new_disk(struct ll_disk *ll, struct dm_transaction_manager *tm);
int sm_ll_open_disk(struct ll_disk *ll, struct dm_transaction_manager *tm, const void *root_le,
		    size_t len);

/* Grow by @extra_blocks: new, zeroed bitmaps (new index entries count all as free). */
int sm_ll_extend(struct ll_disk *ll, dm_block_t extra_blocks);

/* The 2-bit value of @b (0..3). */
int sm_ll_lookup_bitmap(struct ll_disk *ll, dm_block_t b, uint32_t *result);
/* The full count of @b. */
int sm_ll_lookup(struct ll_disk *ll, dm_block_t b, uint32_t *result);

/* First block in [begin, end) that is free in @ll; -ENOSPC if none. */
int sm_ll_find_free_block(struct ll_disk *ll, dm_block_t begin, dm_block_t end, dm_block_t *result);

int sm_ll_insert(struct ll_disk *ll, dm_block_t b, uint32_t ref_count, enum allocation_event *ev);
int sm_ll_inc(struct ll_disk *ll, dm_block_t b, enum allocation_event *ev);
int sm_ll_dec(struct ll_disk *ll, dm_block_t b, enum allocation_event *ev);
int sm_ll_commit(struct ll_disk *ll);

/*
 * Recompute the counters that summarise the bitmaps (each index entry's nr_free and
 * none_free_before, and nr_allocated) from the bitmaps, saving the index entries that are
 * wrong (a hint lagging below the first free entry, and either convention for a last
 * bitmap's past-the-end entries, are right and kept). *@changed says whether anything was
 * corrected. Reads every bitmap. An error may leave the transaction half changed.
 */
int sm_ll_recount(struct ll_disk *ll, bool *changed);

/*
 * Count the free (zero) entries among a bitmap's ENTRIES_PER_BLOCK 2-bit entries at @bytes
 * (the bit string after the header, read as little-endian 64-bit words; no alignment
 * needed): *@all of them, *@in_range_free among the first @in_range (clamped to
 * ENTRIES_PER_BLOCK), and *@first, the first free one of those (ENTRIES_PER_BLOCK when
 * none). Cannot fail.
 */
void sm_bitmap_count_free(const uint8_t *bytes, uint32_t in_range, uint32_t *all,
			  uint32_t *in_range_free, uint32_t *first);

/* Fill a disk_sm_root from @ll. */
void sm_ll_save_root(const struct ll_disk *ll, struct disk_sm_root *root);

#endif
