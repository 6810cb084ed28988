/* SPDX-License-Identifier: MIT */
/*
 * The thin pool in service: dm-thin's data path (drivers/md/dm-thin.c semantics) on top of
 * the pool metadata (core/thin/thin_metadata.h), a metadata disk and a data disk.
 *
 * A pool owns its metadata and drives data I/O on the data disk asynchronously. Each open
 * thin volume is a struct blkdev (512-byte blocks, asynchronous submit/poll plus the
 * synchronous calls), which is what the NBD server exports:
 *   - a read of an unmapped block returns zeros;
 *   - a write to an unmapped block provisions a data block and zeroes the parts not written
 *     (unless the pool was formatted with zeroing off);
 *   - a write to a shared block (after a snapshot) first copies it to a new block; no
 *     half-updated block is ever visible;
 *   - discard unmaps whole data blocks (and, when passdown is on, discards freed blocks on
 *     the data disk after the commit that made the unmap durable); write-zeroes unmaps whole
 *     blocks and zeroes partial ones;
 *   - a write or discard that provisions, copies (copy-on-write), read-modify-writes (a
 *     piece smaller than a data-disk block) or unmaps a data block runs after the earlier
 *     requests to that block completed, and the later ones wait for it; reads and writes that
 *     go in place (mapped block, unshared for writes) overlap, like on a plain disk: their
 *     order, where they overlap, is the data disk's. Requests to different blocks overlap;
 *   - byte-granular writes (core/blkdev.h: BLKDEV_WRITE_BYTES, BLKDEV_WRITE_ZEROES_BYTES,
 *     byte_writes is set): a piece of a 512-byte sector is a read-modify-write of its
 *     data-disk block under the cell, so it is ordered as the item above says (after every
 *     earlier request to that data block, before every later one): two unaligned writes to
 *     one sector both land. Whole data blocks inside a BLKDEV_WRITE_ZEROES_BYTES are
 *     unmapped as BLKDEV_WRITE_ZEROES does;
 *   - flush (and FUA) completes only after the data disk was flushed and then the metadata
 *     committed: data is durable before the metadata that points to it. A failed data flush
 *     rolls the open transaction back, sets needs_check and makes the pool read-only (dm).
 * The pool also commits by itself once a second while it has changes (thin_pool_poll()).
 *
 * Modes, as dm-thin's (docs/dm-thin-format.md §9.7): write; out of data space
 * (writes needing a new block queue, without holding their cells, until space appears, or
 * fail with -ENOSPC: at once with error_if_no_space, else once the pool's one timer,
 * started when the pool entered the mode, has run no_space_timeout_ms (0: never), and from
 * then on at once until space appears; everything else works, FLUSHes included, which do
 * not wait for the queued writes); read-only (after a metadata error, or when
 * needs_check is set: reads and writes to mapped unshared blocks work, the rest -EROFS or
 * -EIO); fail (the rollback itself failed: every I/O fails with -EIO).
 *
 * Errors common to all calls: -ENOMEM, -EIO/-ETIMEDOUT from a disk, -EILSEQ/-ENOTBLK for
 * corrupt metadata, -EROFS in read-only mode.
 */
#ifndef CORE_THIN_THIN_POOL_H
#define CORE_THIN_THIN_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/blkdev.h"
#include "core/thin/thin_metadata.h"

/* thin_pool_check()'s "problems found"; newlib (the firmware's libc) lacks it: Linux's value. */
#ifndef EUCLEAN
#define EUCLEAN 117
#endif

struct thin_pool;
struct thin_volume;

enum thin_pool_mode {
	THIN_POOL_WRITE,
	THIN_POOL_OUT_OF_DATA_SPACE,
	THIN_POOL_READ_ONLY,
	THIN_POOL_FAIL,
};

/* dm-thin's COMMIT_PERIOD: the pool commits once a second while it has changes. */
#define THIN_POOL_COMMIT_INTERVAL_MS_DEFAULT 1000u

struct thin_pool_opts {
	/* Format only: data block size in 512-byte sectors (default 128 = 64 KiB). */
	uint32_t data_block_sectors;
	/* Zero the unwritten parts of newly provisioned blocks (dm-thin's default). */
	bool zero_new_blocks;
	/* Discard freed data blocks on the data disk (when the disk supports it). */
	bool discard_passdown;
	/* Out of data space, fail writes needing a new block with -ENOSPC at once (dm's
	 * error_if_no_space; default off: they queue). */
	bool error_if_no_space;
	/* Out of data space without error_if_no_space: how long after the pool entered that
	 * mode its timer fails the queued writes (and, until space appears, every later write
	 * needing a block) with -ENOSPC; 0 queues them until space appears. dm's
	 * no_space_timeout; default 60000. */
	uint32_t no_space_timeout_ms;
	/* Free data blocks at or below which the low-water event fires (0: none). */
	uint64_t low_water_blocks;
	/* Automatic commit period while dirty (THIN_POOL_COMMIT_INTERVAL_MS_DEFAULT; 0 also
	 * means the default, so a zeroed struct behaves). */
	uint32_t commit_interval_ms;
	/* Metadata blocks to cache (0: the metadata layer's default). */
	unsigned meta_cache_blocks;
	/* Open without changing anything (read-only mode from the start). */
	bool read_only;
};

/* The defaults above. */
void thin_pool_default_opts(struct thin_pool_opts *o);

/*
 * Format a new pool on @meta and @data: the data disk's size decides the number of data
 * blocks. Refuses (-EEXIST) when @meta's block 0 is not all zeroes unless @force, in which
 * case block 0 is zeroed first. -EINVAL for a bad block size or a data disk smaller than one
 * data block.
 */
int thin_pool_format(struct blkdev *meta, struct blkdev *data, const struct thin_pool_opts *o,
		     bool force);

/*
 * Open the pool on @meta and @data (kept, not owned). -ENODATA when @meta is not formatted;
 * -ENOSPC when the data disk is smaller than the allocated blocks need; the metadata layer's
 * errors for corrupt or incompatible metadata (@why/@why_len, optional, get a sentence).
 * A pool whose needs_check flag is set opens in read-only mode.
 */
int thin_pool_open(struct blkdev *meta, struct blkdev *data, const struct thin_pool_opts *o,
		   char *why, size_t why_len, struct thin_pool **out);
/*
 * Commit (when writable and dirty) and close. -EBUSY while volumes are open or I/O is in
 * flight (close the volumes first).
 */
int thin_pool_close(struct thin_pool *pool);

/*
 * Make progress: poll the data disk, finish requests, run the periodic commit and the
 * out-of-space timeout. Call it from the main loop. Returns how many requests moved.
 */
int thin_pool_poll(struct thin_pool *pool);
/* True while requests are in flight: poll again without sleeping. */
bool thin_pool_busy(const struct thin_pool *pool);
/*
 * The CPU part of thin_pool_busy(): true when the next thin_pool_poll() has work of its own
 * (queued, completed or retried requests, a commit step that can go on), or when the pool
 * waits on a data disk that does not announce its completions (blkdev_ops
 * signals_completion), which only polling finds. False while the pool only waits on a data
 * disk that announces them: the caller may sleep until that announcement (the firmware's
 * main loop halts until the disk's interrupt), and must poll again after it.
 */
bool thin_pool_needs_cpu(const struct thin_pool *pool);

/* The metadata, for calls that have no pool-level wrapper (views, details). */
struct thin_md *thin_pool_md(struct thin_pool *pool);

/* ---- Pool administration (each waits for I/O in flight and commits) -------------------- */

/* Create / snapshot / delete thin devices (dm-thin's messages), then commit. */
int thin_pool_create_thin(struct thin_pool *pool, thin_id_t id);
int thin_pool_create_snap(struct thin_pool *pool, thin_id_t id, thin_id_t origin);
/* -EBUSY while the device is open as a volume. */
int thin_pool_delete_thin(struct thin_pool *pool, thin_id_t id);
/* Flush the data disk, then commit the metadata. */
int thin_pool_commit(struct thin_pool *pool);
/* Compare-and-swap the transaction id (-EINVAL when @current is wrong), then commit. */
int thin_pool_set_transaction_id(struct thin_pool *pool, uint64_t current, uint64_t new_id);
/* Hold a metadata snapshot, taken at a commit point after the data flush. -EBUSY when one
 * is already held. */
int thin_pool_reserve_metadata_snap(struct thin_pool *pool);
int thin_pool_release_metadata_snap(struct thin_pool *pool);
/* Re-read the data disk's size and grow the pool to it (-EINVAL if it shrank). */
int thin_pool_resize_data(struct thin_pool *pool);
/*
 * Change the out-of-data-space options (error_if_no_space, no_space_timeout_ms above) of the
 * running pool, at once: queued writes fail when error_if_no_space is turned on, and a new
 * timeout counts from when the pool ran out of space (it may fire at the next poll). Never
 * fails.
 */
void thin_pool_set_no_space(struct thin_pool *pool, bool error_if_no_space, uint32_t timeout_ms);

struct thin_pool_status {
	enum thin_pool_mode mode;
	uint64_t transaction_id;
	uint64_t meta_used, meta_total; /* 4 KiB metadata blocks */
	uint64_t data_used, data_total; /* data blocks */
	uint32_t data_block_sectors;
	uint64_t held_root; /* 0 when none */
	bool needs_check;
	/* error_if_no_space as dm reports it: the option, or the no-space timer fired. */
	bool discard_passdown, zero_new_blocks, error_if_no_space;
	uint32_t no_space_timeout_ms; /* the option */
	bool no_space_timed_out;      /* out of data space and the timer fired */
	unsigned queued_for_space;    /* writes (per data block) waiting for space */
	uint64_t low_water_blocks;
	bool low_water_reached;
	uint64_t meta_low_water_blocks;
	unsigned open_volumes, requests_in_flight;
	/* The metadata block cache (thin_pool_opts.meta_cache_blocks): at most this many
	 * blocks, taking at most meta_cache_bytes of memory; its hits and misses so far. */
	unsigned meta_cache_blocks;
	uint64_t meta_cache_bytes, meta_cache_hits, meta_cache_misses;
};

int thin_pool_get_status(struct thin_pool *pool, struct thin_pool_status *out);
/*
 * The dm-thin pool status line (docs/dm-thin-format.md §9.3):
 * "<transaction id> <used meta>/<total meta> <used data>/<total data> <held root|->
 * rw|ro|out_of_data_space discard_passdown|no_discard_passdown
 * error_if_no_space|queue_if_no_space needs_check|- <metadata low water mark>", or "Fail".
 */
int thin_pool_status_line(struct thin_pool *pool, char *buf, size_t len);

/*
 * Full consistency check of the committed metadata (what thin_check verifies and more, as
 * core/thin/thin_check.h). @progress (optional) gets done/total as it goes; each problem
 * goes to @problem, and so does each warning ("warning: ..." lines: space-map counters
 * only, which do not make the check fail). Returns 0 when clean (warnings or not),
 * -EUCLEAN when problems were found.
 */
int thin_pool_check(struct thin_pool *pool,
		    void (*progress)(void *ctx, uint64_t done, uint64_t total),
		    void (*problem)(void *ctx, const char *msg), void *ctx);

/* ---- Volumes ----------------------------------------------------------------------------- */

/*
 * Open thin device @id as a volume of @size bytes (a multiple of 512; dm-thin stores no
 * size, the caller's configuration does). With @read_only the blkdev refuses writes.
 * -ENODATA when the device does not exist, -EBUSY when it is already open.
 */
int thin_volume_open(struct thin_pool *pool, thin_id_t id, uint64_t size, bool read_only,
		     struct thin_volume **out);
/* Wait for the volume's requests in flight, then close it. */
void thin_volume_close(struct thin_volume *vol);
/* The volume as a block device (512-byte blocks), valid until thin_volume_close(). */
struct blkdev *thin_volume_blkdev(struct thin_volume *vol);
/*
 * Change the size. Shrinking unmaps every block past the new end (their data is gone).
 * -EBUSY while requests are in flight.
 */
int thin_volume_resize(struct thin_volume *vol, uint64_t size);
/*
 * Allocation map for NBD base:allocation: fill up to @max extents describing
 * [offset, offset + length) from @offset: mapped runs (flags 0) and holes (flags
 * hole|zero, as NBD_STATE_HOLE | NBD_STATE_ZERO = 3). Returns the count (>= 1), or -errno.
 */
struct thin_extent {
	uint64_t length;
	uint32_t flags;
};
int thin_volume_extents(struct thin_volume *vol, uint64_t offset, uint64_t length,
			struct thin_extent *ext, unsigned max);

#endif
