/* SPDX-License-Identifier: MIT */
/*
 * Thin-pool metadata: the contract of Linux's drivers/md/dm-thin-metadata.h on our
 * persistent-data engine, byte-compatible with dm-thin (docs/thin-metadata.md).
 *
 * A pool's metadata lives on one block device of 4 KiB blocks: a superblock at block 0, a
 * metadata space map, a data space map, a two-level mapping tree (thin id -> virtual block
 * -> data block and time) and a device-details tree. Every change is made in a transaction
 * by shadowing and becomes durable only at thin_md_commit(); thin_md_abort() returns to the
 * last commit. Nothing here does data I/O: callers copy and zero data blocks themselves,
 * and flush the data device before thin_md_commit().
 *
 * Costs: a snapshot costs O(1) metadata whatever the origin's size (the origin's mapping
 * subtree is shared and reference-counted); a lookup costs O(log devices + log mapped
 * blocks) and does not depend on how deep a chain of snapshots is.
 *
 * Errors common to every call: -ENOMEM; -EIO and -ETIMEDOUT from the metadata device;
 * -EILSEQ / -ENOTBLK for a metadata block whose checksum, contents or location is wrong;
 * -EROFS from a modifying call when the metadata is read-only (opened so, set so, or
 * flagged needs_check). After any error other than -EINVAL/-EEXIST/-ENODATA/-ENOSPC/-EBUSY/
 * -ENODEV/-EROFS from a modifying call the in-memory transaction may be half done: the
 * caller must thin_md_abort() (and usually thin_md_set_needs_check()); until then every
 * modifying call returns -EIO.
 *
 * Single-threaded: the caller serialises all calls on one pool.
 */
#ifndef CORE_THIN_THIN_METADATA_H
#define CORE_THIN_THIN_METADATA_H

#include "core/blkdev.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define THIN_METADATA_BLOCK_SIZE 4096u
/* Data block size limits in 512-byte sectors (dm-thin: 64 KiB .. 1 GiB, multiple of 64 KiB). */
#define THIN_DATA_BLOCK_SECTORS_MIN 128u
#define THIN_DATA_BLOCK_SECTORS_MAX 2097152u
/* Thin device ids are 24 bits in dm-thin's messages. */
#define THIN_MAX_DEV_ID ((1u << 24) - 1)

/* Superblock flag bit 0. */
#define THIN_METADATA_NEEDS_CHECK_FLAG (1u << 0)
/* Feature flags this implementation understands (dm-thin defines none). */
#define THIN_FEATURE_COMPAT_SUPP    0u
#define THIN_FEATURE_COMPAT_RO_SUPP 0u
#define THIN_FEATURE_INCOMPAT_SUPP  0u

typedef uint64_t thin_id_t;

struct thin_md;
struct thin_dev;

/*----------------------------------------------------------------*/
/* Open, close */

struct thin_md_open_opts {
	/* Data block size in sectors; must equal the stored one. 0: take the stored size (an
	 * existing pool only). */
	uint32_t data_block_sectors;
	/* Format when block 0 is all zeroes (never over anything else). */
	bool format;
	/* No changes at all; modifying calls return -EROFS. Also implied by needs_check. */
	bool read_only;
	/* When non-zero: the data device's size in data blocks, applied as by
	 * thin_md_resize_data_dev() (grow, or shrink only if no allocated block is lost). */
	uint64_t data_dev_blocks;
	/* Metadata blocks to cache (0: a default of 1024 = 4 MiB). */
	unsigned cache_blocks;
	/* Optional: on failure a sentence saying why is written here. */
	char *why;
	size_t why_len;
};

/*
 * Open the pool metadata on @meta (block size 4096 or a divisor of it; the pool keeps the
 * pointer, not ownership). With opts->format and an all-zero block 0, write a new empty
 * pool (data size opts->data_dev_blocks, possibly 0) and commit it. Nothing is written on
 * any failure.
 * -ENODATA: block 0 is all zeroes and !format. -EILSEQ: not a dm-thin superblock (bad
 * magic), bad checksum, or an implausible field (version, metadata block size, roots).
 * -ENOTBLK: superblock self-location wrong. -EINVAL: data block size out of range or not
 * the stored one. -EOPNOTSUPP: unknown incompat flags (or compat_ro flags, unless read-only).
 * -ENOSPC: opts->data_dev_blocks is smaller than the allocated data blocks need.
 */
int thin_md_open(struct blkdev *meta, const struct thin_md_open_opts *opts, struct thin_md **out);
/*
 * Whether @meta is blank: its block 0 (the superblock's place, THIN_METADATA_BLOCK_SIZE
 * bytes) is all zeroes, so it holds no pool and nothing else worth keeping. The one test
 * behind "format only a blank device" (thin_md_open(), thin_pool_format(), first boot).
 * 0 with *blank set, -ENOMEM, or the read's -errno (-EINVAL when @meta's block size is
 * larger than THIN_METADATA_BLOCK_SIZE or the device is smaller than one metadata block).
 */
int thin_md_is_blank(struct blkdev *meta, bool *blank);
/*
 * Make @meta blank (see thin_md_is_blank()): zero block 0 and flush. What was on the device
 * is lost for good; thin_md_open() with opts->format then writes a new pool. 0, -ENOMEM,
 * -EROFS, or the write's / flush's -errno.
 */
int thin_md_erase(struct blkdev *meta);
/*
 * Close without committing (an uncommitted transaction is dropped, as after a crash).
 * -EBUSY (and nothing closed) while thin devices are open.
 */
int thin_md_close(struct thin_md *md);

/*----------------------------------------------------------------*/
/* Devices */

/* Create an empty thin device. -EEXIST if @id exists, -EINVAL if @id > THIN_MAX_DEV_ID. */
int thin_md_create_thin(struct thin_md *md, thin_id_t id);
/*
 * Create @id as a snapshot of @origin (itself possibly a snapshot, to any depth): the two
 * share @origin's mapping subtree until either changes, so the cost does not depend on the
 * origin's size. Bumps the pool time. -EEXIST if @id exists, -ENODATA if @origin does not,
 * -EINVAL if @id > THIN_MAX_DEV_ID. The origin should be quiesced (not enforced).
 */
int thin_md_create_snap(struct thin_md *md, thin_id_t id, thin_id_t origin);
/*
 * Delete a thin device: every metadata node and data block that only it referenced is
 * freed (shared ones are just dereferenced). -ENODATA if absent, -EBUSY while it is open.
 */
int thin_md_delete_thin(struct thin_md *md, thin_id_t id);
/* True (1) / false (0) whether @id exists, or -errno. */
int thin_md_device_exists(struct thin_md *md, thin_id_t id);

/*----------------------------------------------------------------*/
/* Transactions */

/*
 * Make everything since the last commit durable: changed device details are written, the
 * space maps committed, every new block written and flushed, then the superblock written
 * and flushed. The data device must already be flushed by the caller.
 */
int thin_md_commit(struct thin_md *md);
/*
 * Drop everything since the last commit. Open devices see the committed state; a device
 * whose creation is undone stays open but its calls fail with -ENODEV. Allowed in
 * read-only mode (it is the recovery path).
 */
int thin_md_abort(struct thin_md *md);

/* Compare-and-swap the userspace transaction id: -EINVAL unless @current matches. */
int thin_md_set_transaction_id(struct thin_md *md, uint64_t current, uint64_t new_id);
int thin_md_get_transaction_id(struct thin_md *md, uint64_t *out);

/*----------------------------------------------------------------*/
/* Held root (metadata snapshot) */

/*
 * Commit, then hold a read-only copy of the committed metadata: a copy of the superblock in
 * a new block whose trees are shared with the live pool (so it costs one block now, and
 * extra copying on later first writes to shared nodes until released). It is recorded in
 * the superblock at the next commit. -EBUSY if one is held.
 */
int thin_md_reserve_metadata_snap(struct thin_md *md);
/* Release the held copy, freeing what only it referenced. -EINVAL if none is held. */
int thin_md_release_metadata_snap(struct thin_md *md);
/* The held superblock's block number, 0 when none is held. */
int thin_md_get_metadata_snap(struct thin_md *md, uint64_t *out);

/*----------------------------------------------------------------*/
/* Thin devices: mappings */

/*
 * Open a thin device for mapping calls. -ENODATA if absent, -EBUSY if already open.
 * Works read-only too (lookups only).
 */
int thin_md_open_thin(struct thin_md *md, thin_id_t id, struct thin_dev **out);
/* Close a handle (NULL is fine). Changes stay in the transaction. */
void thin_md_close_thin(struct thin_dev *td);
thin_id_t thin_dev_id(const struct thin_dev *td);

struct thin_lookup_result {
	uint64_t block; /* data block */
	bool shared;	/* written before the device's last snapshot: copy before writing */
};

/*
 * Look @vblock up. O(log devices + log mapped blocks), independent of snapshot depth.
 * -ENODATA when unmapped; -EWOULDBLOCK when !@can_block and a metadata block it needs is
 * not cached (retry from a context that may wait for I/O); -ENODEV for a deleted device.
 * "shared" is dm-thin's time test (mapping time < device's snapshotted_time): it may say
 * shared after the sharing was broken, never the opposite.
 */
int thin_find_block(struct thin_dev *td, uint64_t vblock, bool can_block,
		    struct thin_lookup_result *out);
/*
 * The first run of mappings in [begin, end) whose virtual and data blocks are both
 * consecutive and that agree on shared: *vbegin, *vend (exclusive), *pbegin, *shared.
 * -ENODATA when there is none.
 */
int thin_find_mapped_range(struct thin_dev *td, uint64_t begin, uint64_t end, uint64_t *vbegin,
			   uint64_t *vend, uint64_t *pbegin, bool *shared);

/*
 * Allocate a free data block (reference count 1). Never a block freed in this transaction.
 * -ENOSPC only when the data device is full (no block free in both the committed and the
 * current state; nothing changed). Running out of metadata space while recording the
 * allocation is a failed modifying call (-EIO; abort).
 */
int thin_md_alloc_data_block(struct thin_md *md, uint64_t *out);
/*
 * The same, searching from @hint upward (and wrapping) instead of from the last allocation,
 * so a volume written in logical order gets consecutive data blocks even while others
 * allocate too. A hint past the end searches from 0. Same errors.
 */
int thin_md_alloc_data_block_near(struct thin_md *md, uint64_t hint, uint64_t *out);
/*
 * Map @vblock to @data_block, stamped with the pool time, taking over the caller's
 * reference to @data_block (from thin_md_alloc_data_block()). An old mapping to another
 * block is dropped (its data block dereferenced). -EINVAL if @data_block is beyond the data
 * device or @vblock >= 2^63.
 */
int thin_insert_block(struct thin_dev *td, uint64_t vblock, uint64_t data_block);
/* Unmap @vblock (its data block dereferenced). -ENODATA when it was not mapped. */
int thin_remove_block(struct thin_dev *td, uint64_t vblock);
/* Unmap every mapping in [begin, end); fine when there are none. O(k log n). */
int thin_remove_range(struct thin_dev *td, uint64_t begin, uint64_t end);

/* Highest mapped virtual block. -ENODATA when nothing is mapped. */
int thin_get_highest_mapped_block(struct thin_dev *td, uint64_t *out);
/* Mapped virtual blocks (the details' mapped_blocks, kept incrementally). */
int thin_get_mapped_count(struct thin_dev *td, uint64_t *out);
/* True if the device changed since the last commit. */
bool thin_changed_this_transaction(const struct thin_dev *td);
/* True if an abort dropped changes of this device (FLUSH to it must then fail). */
bool thin_aborted_with_changes(const struct thin_dev *td);

/*----------------------------------------------------------------*/
/* Pool-wide figures and resizing */

int thin_md_get_free_data_blocks(struct thin_md *md, uint64_t *out);
int thin_md_get_data_dev_size(struct thin_md *md, uint64_t *out); /* in data blocks */
/*
 * Free metadata blocks as the kernel reports them: free in the space map minus a reserve
 * kept for commits (min(4096 blocks, size / 10)), floored at 0.
 */
int thin_md_get_free_metadata_blocks(struct thin_md *md, uint64_t *out);
int thin_md_get_metadata_dev_size(struct thin_md *md, uint64_t *out); /* in 4 KiB blocks */
uint32_t thin_md_data_block_sectors(const struct thin_md *md);
/* Data block reference count (2+ means shared between devices' leaves or a held root). */
int thin_md_data_block_refcount(struct thin_md *md, uint64_t block, uint32_t *out);
/* True (1) when the data block's count is > 1 (dm_pool_block_is_shared), or -errno. */
int thin_md_data_block_is_shared(struct thin_md *md, uint64_t block);

/*
 * Resize the data device to @new_blocks data blocks. Growing is cheap and stays in the
 * transaction. Shrinking checks first that no block at or past @new_blocks is allocated
 * (-ENOSPC, nothing changed), then commits, rebuilds the data space map at the new size and
 * leaves that in the (uncommitted) transaction. -EINVAL beyond 2^40 blocks.
 */
int thin_md_resize_data_dev(struct thin_md *md, uint64_t new_blocks);
/*
 * Grow the metadata space map to @new_blocks (the device must already be that big; capped
 * at DM_SM_METADATA_MAX_BLOCKS, core/pdata/space_map_common.h). -EINVAL when smaller than now or than the device allows.
 */
int thin_md_resize_metadata_dev(struct thin_md *md, uint64_t new_blocks);

/*----------------------------------------------------------------*/
/* needs_check, read-only */

/*
 * Set NEEDS_CHECK in the committed superblock at once (block 0 rewritten in place and
 * flushed, as dm_pool_metadata_set_needs_check) and go read-only. It stays set across
 * commits and opens until thin_md_clear_needs_check().
 *
 * Only the flag is written, on the last committed state: an uncommitted transaction (a
 * failed one after a failed commit or modifying call, or a healthy one) is dropped first
 * as by thin_md_abort(), so none of its blocks, the half-built superblock of a failed
 * commit among them, reaches the disk. Errors: -EROFS if opened read-only; the abort's
 * error (the flag is still written when every uncommitted block could be dropped; if not,
 * nothing is written); the metadata device's error writing block 0. The metadata is
 * read-only afterwards whatever the result.
 */
int thin_md_set_needs_check(struct thin_md *md);
/* The metadata block cache: at most @capacity blocks, @bytes_per_block of memory each
 * (buffer and bookkeeping), @cached now, and the hits and misses so far. Never fails. */
struct thin_md_cache_info {
	unsigned capacity, cached;
	size_t bytes_per_block;
	uint64_t hits, misses;
};
void thin_md_cache_info(struct thin_md *md, struct thin_md_cache_info *out);

bool thin_md_needs_check(const struct thin_md *md);
/*
 * Clear NEEDS_CHECK in the superblock at once (what thin_check --clear-needs-check-flag
 * does after a clean check; the caller is responsible for having checked). -EBUSY with
 * uncommitted changes.
 */
int thin_md_clear_needs_check(struct thin_md *md);
/* Refuse further changes (after a failed operation); reads keep working. */
void thin_md_set_read_only(struct thin_md *md);
/* Back to read-write: -EROFS while needs_check is set or when opened read-only. */
int thin_md_set_read_write(struct thin_md *md);
bool thin_md_is_read_only(const struct thin_md *md);
/*
 * How long thin_md_open() took to load the superblock and space maps, and to recount the
 * space maps' counters from every bitmap (a read-write open of a formatted device; 0
 * otherwise), in plat_now_ns() nanoseconds: the boot breakdown's figures.
 */
void thin_md_open_times(const struct thin_md *md, uint64_t *load_ns, uint64_t *recount_ns);

/*----------------------------------------------------------------*/
/* Data reference ranges, restore */

/*
 * Take / drop one reference to each data block in [begin, end) (dm_pool_inc_data_range;
 * the discard path holds freed blocks this way while the discard is in flight, and a
 * restore takes the reference a mapping needs). -EINVAL past the data device; dropping a
 * free block is -EINVAL and leaves the transaction to be aborted.
 */
int thin_md_inc_data_range(struct thin_md *md, uint64_t begin, uint64_t end);
int thin_md_dec_data_range(struct thin_md *md, uint64_t begin, uint64_t end);

/*
 * For tools that rebuild a pool from a description (thinbox-restore), nothing else:
 * set the pool time; insert a mapping with an explicit @time (<= the pool time, else
 * -EINVAL), taking over a reference to @data_block like thin_insert_block(); set a device's
 * transaction id and times (mapped_blocks is always derived from the mappings).
 */
int thin_md_set_time(struct thin_md *md, uint32_t time);
int thin_insert_block_time(struct thin_dev *td, uint64_t vblock, uint64_t data_block,
			   uint32_t time);
int thin_set_details(struct thin_dev *td, uint64_t transaction_id, uint32_t creation_time,
		     uint32_t snapshotted_time);

/*----------------------------------------------------------------*/
/* Read-only views and iteration (for tools and the shell) */

struct thin_md_sb_info {
	uint32_t flags, version, time;
	uint64_t trans_id;
	uint64_t held_root;
	uint32_t data_block_sectors;
	uint64_t nr_data_blocks;     /* data space map size (0 in a held view) */
	uint64_t metadata_nr_blocks; /* as recorded at format time */
	uint32_t compat_flags, compat_ro_flags, incompat_flags;
	uint8_t uuid[16];
};

struct thin_dev_details {
	uint64_t mapped_blocks;
	uint64_t transaction_id;
	uint32_t creation_time;
	uint32_t snapshotted_time;
};

/* Which metadata a view shows; plain values, valid until the pool's next change. */
struct thin_md_view {
	struct thin_md *md;
	uint64_t mapping_root, details_root;
	struct thin_md_sb_info sb;
};

/*
 * The current transaction's state (changed device details are first written into the
 * details tree, which stays in the transaction).
 */
int thin_md_view_current(struct thin_md *md, struct thin_md_view *out);
/*
 * The held root as committed (@block 0: whatever the superblock holds; else it must be that
 * block). Its sb.nr_data_blocks is 0 (a held copy has no space maps). -ENODATA when no
 * root is held, -EINVAL when @block is not the held one.
 */
int thin_md_view_held(struct thin_md *md, uint64_t block, struct thin_md_view *out);

/*
 * The committed state: what block 0 describes, what a power cut now would leave. Valid
 * during a transaction too (committed blocks are never overwritten nor reused before the
 * next commit). Its sb.nr_data_blocks is 0, as in a held view (the space maps are not read).
 */
int thin_md_view_committed(struct thin_md *md, struct thin_md_view *out);

/* Devices in ascending id order (the details tree); non-zero from @fn stops and is returned. */
int thin_view_for_each_device(const struct thin_md_view *v,
			      int (*fn)(void *ctx, thin_id_t id, const struct thin_dev_details *d),
			      void *ctx);
/* One device's mappings in ascending virtual block order; -ENODATA if @id is absent. */
int thin_view_for_each_mapping(const struct thin_md_view *v, thin_id_t id,
			       int (*fn)(void *ctx, uint64_t vblock, uint64_t data_block,
					 uint32_t time),
			       void *ctx);
/* One mapping: -ENODATA when @id or @vblock is absent. */
int thin_view_lookup(const struct thin_md_view *v, thin_id_t id, uint64_t vblock,
		     uint64_t *data_block, uint32_t *time);
/* One device's details: -ENODATA when absent. */
int thin_view_get_details(const struct thin_md_view *v, thin_id_t id, struct thin_dev_details *out);

/*----------------------------------------------------------------*/
/* Diff of two thin devices (thin_delta's ranges) */

/*
 * thin_delta's four kinds, for one virtual block: mapped in both to the same data block
 * (the time stamps are not compared, as thin_delta), only in the first (left) device, only
 * in the second (right), in both but to different data blocks.
 */
enum thin_diff_kind {
	THIN_DIFF_SAME,
	THIN_DIFF_LEFT_ONLY,
	THIN_DIFF_RIGHT_ONLY,
	THIN_DIFF_DIFFERENT,
};
#define THIN_DIFF_KINDS 4

/* A run of consecutive virtual blocks [begin, end) of one kind (merged as thin_delta does
 * without --verbose: adjacent blocks of one kind, whatever their data blocks). */
struct thin_diff_range {
	enum thin_diff_kind kind;
	uint64_t begin, end;
};

struct thin_diff_stats {
	uint64_t nodes_read;		  /* mapping-tree nodes read (cache hits included) */
	uint64_t subtrees_skipped;	  /* shared subtrees stepped over without reading them */
	uint64_t ranges;		  /* ranges given to the callback */
	uint64_t blocks[THIN_DIFF_KINDS]; /* virtual blocks per kind reported */
};

/* Also report SAME ranges (then shared subtrees must be read: cost follows the size). */
#define THIN_DIFF_WANT_SAME 1u

/*
 * The mappings of devices @left and @right in view @v, compared (thin_delta --thin1 left
 * --thin2 right) from virtual block @begin on (what lies below it is not read): @fn gets
 * each range in ascending order, merged into runs; SAME ranges only
 * with THIN_DIFF_WANT_SAME. Without it, a subtree both devices share (a snapshot and its
 * origin share everything neither changed since) is stepped over without being read, so the
 * cost is the change, not the size (core/pdata/btree_diff.h); memory is a few nodes.
 * The pool must not change during the call (single-threaded: @fn must not modify it).
 * A non-zero return from @fn stops the diff and is returned; @stats (optional) is filled in
 * whatever the result. -ENODATA when either device is absent from the view; the tree
 * errors (-EILSEQ, -ENOTBLK, I/O).
 */
int thin_view_diff(const struct thin_md_view *v, thin_id_t left, thin_id_t right, uint64_t begin,
		   unsigned flags, int (*fn)(void *ctx, const struct thin_diff_range *r), void *ctx,
		   struct thin_diff_stats *stats);

#endif
