/* SPDX-License-Identifier: MIT */
/*
 * Block manager: the lowest persistent-data layer (after Linux's dm-block-manager.h).
 *
 * It reads and writes whole 4 KiB metadata blocks of a struct blkdev through a bounded
 * cache, checks every block read from the device with a validator (checksum and
 * self-location; bad checksum -> -EILSEQ, wrong location -> -ENOTBLK), and stamps the
 * checksum just before every write. The cache holds at most cache_blocks blocks; unlocked
 * dirty blocks are written back when evicted, so the metadata need not fit in memory.
 *
 * Locking rules (single-threaded; a breach is a bug in the caller, reported as -EBUSY and
 * counted by dm_bm_misuse_count()): any number of read locks, or one write lock, on a
 * block; never read- and write-locked at once. Every lock is released with dm_bm_unlock().
 * A write-locked block becomes dirty when it is unlocked.
 *
 * Errors common to the lock calls: -EINVAL for a block outside the device, -ENOMEM when
 * every cache slot is locked (or malloc failed), -EIO (or the device's error) from a read
 * or from writing back an evicted dirty block, -EILSEQ / -ENOTBLK from the validator.
 */
#ifndef CORE_PDATA_BLOCK_MANAGER_H
#define CORE_PDATA_BLOCK_MANAGER_H

#include "core/blkdev.h"

#include <stddef.h>
#include <stdint.h>

/*
 * The validators' "wrong location" code. newlib defines ENOTBLK only under
 * __LINUX_ERRNO_EXTENSIONS__, so the firmware build would not compile without this; the
 * value is Linux's (and newlib's).
 */
#ifndef ENOTBLK
#define ENOTBLK 15
#endif

typedef uint64_t dm_block_t;

#define DM_BM_BLOCK_SIZE 4096u

struct dm_block_manager;
struct dm_block;

/*
 * Per block type checks, as the kernel's struct dm_block_validator: prepare_for_write()
 * stamps self-location and checksum; check() verifies them on every read from the device
 * and returns 0, -EILSEQ (bad checksum or contents) or -ENOTBLK (wrong location).
 */
struct dm_block_validator {
	const char *name;
	void (*prepare_for_write)(const struct dm_block_validator *v, struct dm_block *b,
				  size_t block_size);
	int (*check)(const struct dm_block_validator *v, struct dm_block *b, size_t block_size);
};

/* crc32c(~0, data, len) ^ init_xor, the metadata checksum (dm_bm_checksum). */
uint32_t dm_bm_checksum(const void *data, size_t len, uint32_t init_xor);

/*
 * Create a block manager on @dev, whose block size must divide 4096 (-EINVAL otherwise),
 * caching at most @cache_blocks blocks (at least 16, fewer is raised to 16). Block
 * buffers are allocated on first use, so a large limit costs nothing until used.
 */
int dm_block_manager_create(struct blkdev *dev, unsigned cache_blocks,
			    struct dm_block_manager **out);
/* Free the cache. Dirty blocks are dropped, not written: flush first to keep them. */
void dm_block_manager_destroy(struct dm_block_manager *bm);

/* Size of the device in 4 KiB blocks. */
dm_block_t dm_bm_nr_blocks(struct dm_block_manager *bm);

dm_block_t dm_block_location(const struct dm_block *b);
void *dm_block_data(const struct dm_block *b);

/* Lock @b for reading; -EBUSY if it is write-locked. @v may be NULL (no check). */
int dm_bm_read_lock(struct dm_block_manager *bm, dm_block_t b, const struct dm_block_validator *v,
		    struct dm_block **result);
/*
 * As dm_bm_read_lock() but never reads the device: -EWOULDBLOCK when @b is not cached (the
 * caller retries from a context that may wait; dm_bm_read_try_lock in Linux).
 */
int dm_bm_read_try_lock(struct dm_block_manager *bm, dm_block_t b,
			const struct dm_block_validator *v, struct dm_block **result);
/* Lock @b for writing (its current contents, validated); -EBUSY if it is locked at all. */
int dm_bm_write_lock(struct dm_block_manager *bm, dm_block_t b, const struct dm_block_validator *v,
		     struct dm_block **result);
/* As dm_bm_write_lock() but the contents are zeroed, not read: for new blocks. */
int dm_bm_write_lock_zero(struct dm_block_manager *bm, dm_block_t b,
			  const struct dm_block_validator *v, struct dm_block **result);
void dm_bm_unlock(struct dm_block *b);
/*
 * Read the blocks at @locs[0..@n) that are not cached into the cache, all at once: the
 * device's asynchronous requests, in flight together, rather than one synchronous read each
 * (the pool's open reads every space-map bitmap: docs/firmware.md "Boot breakdown"). At most
 * DM_BM_PREFETCH_MAX blocks and a quarter of the cache; duplicates and blocks past the end
 * are skipped. The blocks are checked when first locked, as the type the lock asks for. A
 * hint: a read that fails or is refused leaves its block uncached, and 0 is returned; -ENOMEM,
 * a device error from polling, or -ETIMEDOUT after DM_BM_PREFETCH_WAIT_NS (the reads then
 * stay in flight into a buffer that is never freed) are returned. Room is made as a read
 * makes it (the least recently used unlocked blocks; dirty ones are written first).
 * A block is put in the cache if it is still missing when its read completes, so the caller
 * must not write these blocks through the device while the prefetch runs (the pool's open,
 * the only caller, writes nothing yet): a write completed meanwhile would be cached stale.
 */
#define DM_BM_PREFETCH_MAX     64
#define DM_BM_PREFETCH_WAIT_NS (30ull * 1000000000ull)
int dm_bm_prefetch(struct dm_block_manager *bm, const dm_block_t *locs, unsigned n);

/*
 * Write every dirty block and flush the device. -EBUSY if a block is write-locked (its
 * contents are not final), else 0 or the device error; a block that failed to write stays
 * dirty.
 */
int dm_bm_flush(struct dm_block_manager *bm);
/*
 * The commit order: write every dirty block except @superblock (which the caller holds
 * write-locked), flush, unlock and write @superblock, flush again. @superblock is unlocked
 * whatever happens; on an error the superblock may or may not have reached the disk, but
 * all it points to did before it.
 */
int dm_bm_flush_and_unlock(struct dm_block_manager *bm, struct dm_block *superblock);

/*
 * Forget every dirty block (the abort path: they belong to the abandoned transaction).
 * -EBUSY if any block is locked.
 */
int dm_bm_drop_dirty(struct dm_block_manager *bm);
/* Forget every clean cached block too, so the next reads come from the device (tests). */
int dm_bm_drop_clean(struct dm_block_manager *bm);

/* Introspection for tests and benchmarks. */
struct dm_bm_stats {
	uint64_t reads, writes, hits, misses, evictions;
	unsigned cached, dirty, locked, capacity;
	size_t bytes_per_block; /* memory per cached block: buffer + bookkeeping + hash share */
};
void dm_bm_get_stats(struct dm_block_manager *bm, struct dm_bm_stats *st);
/* Locks currently held (should be 0 between operations). */
unsigned dm_bm_locks_held(struct dm_block_manager *bm);
/* Breaches of the locking rules seen so far (should stay 0). */
unsigned dm_bm_misuse_count(struct dm_block_manager *bm);

#endif
