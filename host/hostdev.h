/* SPDX-License-Identifier: MIT */
/*
 * Host implementations of core/blkdev.h: a memory device, a file-backed device, and two
 * wrappers for tests (a crash-simulating device and a fault-injecting device).
 *
 * All constructors return 0 and set *out, or -ENOMEM / -EINVAL / a file error. Destroy a
 * device with blkdev_destroy(). A wrapper never owns its lower device: destroy the wrapper
 * first, then the lower device.
 */
#ifndef HOST_HOSTDEV_H
#define HOST_HOSTDEV_H

#include "core/blkdev.h"

/* A zero-filled device in heap memory; -EINVAL if @block_size is not a power of two >= 512. */
int memdisk_create(uint64_t nr_blocks, uint32_t block_size, struct blkdev **out);

/*
 * A device on a regular file. With @create the file is created or truncated to
 * @nr_blocks * @block_size bytes; otherwise it is opened and its size (rounded down to
 * whole blocks) gives nr_blocks (@nr_blocks is ignored). The synchronous ops are
 * pread/pwrite/fsync. submit/poll are asynchronous (FILEDISK_IO_URING or _POOL): submit
 * starts the request (-EAGAIN past 128 in flight; with io_uring a read of up to 1 MiB found
 * in the page cache, and a write of up to 16 KiB, are done at once, and so is a write of up
 * to 1 MiB unless such a write slept in the kernel less than a second ago), and done() runs
 * inside a later poll (or destroy), never inside submit, on the caller's thread; completions
 * come in any order. A BLKDEV_FLUSH request is
 * fdatasync() (fsync() when a discard came since the last flush) issued when it is
 * submitted, so it covers every write completed before (core/blkdev.h). A read or write the
 * kernel does in part is continued; a read past the end of the file is -EIO, a failed
 * write -EIO or -ENOSPC, a discard the file system cannot punch -EOPNOTSUPP.
 */
enum filedisk_io {
	FILEDISK_IO_AUTO,  /* THINBOX_FILE_IO=uring|pool|sync if set; else io_uring, else pool */
	FILEDISK_IO_URING, /* io_uring (liburing); open fails with its error where refused */
	FILEDISK_IO_POOL,  /* worker threads doing pread/pwrite (started at the first submit) */
	FILEDISK_IO_SYNC,  /* no submit op: core/blkdev.c's synchronous fallback */
};
int filedisk_open(const char *path, uint32_t block_size, bool create, uint64_t nr_blocks,
		  struct blkdev **out);
int filedisk_open_io(const char *path, uint32_t block_size, bool create, uint64_t nr_blocks,
		     enum filedisk_io io, struct blkdev **out);
/* The backend a filedisk uses (FILEDISK_IO_SYNC for any other device), and its name. */
enum filedisk_io filedisk_backend(const struct blkdev *dev);
const char *filedisk_backend_name(enum filedisk_io io);
/*
 * Waiting without spinning: every asynchronous filedisk of the process makes one eventfd
 * readable when a completion is ready for its poll (-1 before the first one is opened). A
 * loop puts it in its poll() set, calls filedisk_wake_clear() after poll() returns and
 * before polling the devices (a completion after that wakes the next poll()). While only
 * devices for which filedisk_signals() is true have requests in flight, the loop may sleep;
 * false (another device, or requests not yet handed to the kernel) means poll again now.
 */
int filedisk_wake_fd(void);
void filedisk_wake_clear(void);
bool filedisk_signals(const struct blkdev *dev);
/*
 * Test seams (asynchronous backends, submit/poll only). filedisk_fail_nth(): the @n'th
 * request of @op submitted from now on (1-based) completes with @err instead of doing its
 * I/O (0 disarms). filedisk_delay_nth(): the @n'th request of @op is held back @ns before it
 * reaches the backend, so later ones overtake it. filedisk_set_max_transfer(): each read or
 * write system call moves at most @bytes (0: no cap), as short transfers would.
 */
void filedisk_fail_nth(struct blkdev *dev, enum blkdev_op op, uint64_t n, int err);
void filedisk_delay_nth(struct blkdev *dev, enum blkdev_op op, uint64_t n, uint64_t ns);
void filedisk_set_max_transfer(struct blkdev *dev, size_t bytes);
/*
 * filedisk_inline_slept(): the next write of more than 16 KiB done inside submit counts as
 * one that slept, and the back-off after it (writes of more than 16 KiB through the ring)
 * lasts @backoff_ns, as it does after every such write from now on (default 1 s).
 * filedisk_inline_writes(): writes done inside submit so far (io_uring backend).
 */
void filedisk_inline_slept(struct blkdev *dev, uint64_t backoff_ns);
uint64_t filedisk_inline_writes(const struct blkdev *dev);
/*
 * WRITEs whose payload came in the transport's pipe (core/blkdev.h handle_writes; host/
 * nbd_sock.c): filedisk_spliced_writes() moved into the file by splice() inside submit,
 * filedisk_handle_bounces() read from the pipe into the request's buffer instead (the
 * back-off, a seam, the worker pool), both since the device was opened. Setting
 * THINBOX_NO_SPLICE in the environment before opening makes the device refuse such payloads.
 */
uint64_t filedisk_spliced_writes(const struct blkdev *dev);
uint64_t filedisk_handle_bounces(const struct blkdev *dev);
/* Flush system calls issued (synchronous and asynchronous), and requests in flight. */
uint64_t filedisk_syncs(const struct blkdev *dev);
unsigned filedisk_inflight(const struct blkdev *dev);

/*
 * Crash simulation. Writes are kept apart (in memory) from @lower until a flush applies
 * them in order; reads see them. crashdev_power_cut() then decides the fate of each
 * unflushed write from @seed: kept, dropped, or torn at a 512-byte sector boundary (a
 * prefix of its sectors reaches @lower, or for multi-sector writes a random subset), writes
 * the survivors to @lower and empties the pending list. After a cut the device fails every
 * call with -EIO until crashdev_revive().
 *
 * crashdev_cut_at(dev, n) arms an automatic cut: the n'th write or flush from now (1-based)
 * is the first one that does not happen — it and everything after fail with -EIO, as if the
 * power failed just before it; the pending writes stay pending until crashdev_power_cut().
 * Counting flushes too matters: a cut just before a flush is when the most writes are
 * pending. 0 disarms.
 */
int crashdev_create(struct blkdev *lower, struct blkdev **out);
void crashdev_cut_at(struct blkdev *dev, uint64_t nth_write);
/* @a and @b share a power supply: when an armed cut trips one, the other fails every call
 * from then on too (until crashdev_revive()), as both disks of a machine would. */
void crashdev_share_power(struct blkdev *a, struct blkdev *b);
/* True once the armed cut point was reached. */
bool crashdev_tripped(struct blkdev *dev);
/* Apply the power cut described above; returns the number of pending writes it resolved. */
uint64_t crashdev_power_cut(struct blkdev *dev, uint64_t seed);
/*
 * Discards (when @lower reads discarded blocks as zeroes; otherwise the device has no
 * discard) and write-zeroes are pending writes of zeroes like any other write.
 *
 * crashdev_fail_flush(dev, n): the first flush, from the n'th from now on (1-based), that
 * finds writes pending fails with -EIO and drops them all, as a disk that lost its volatile
 * cache; the device stays usable and later flushes work. 0 disarms. crashdev_flush_failed()
 * tells whether it happened.
 */
void crashdev_fail_flush(struct blkdev *dev, uint64_t nth_flush);
bool crashdev_flush_failed(struct blkdev *dev);
/* Make the device usable again after a cut (nothing pending, no cut armed). */
void crashdev_revive(struct blkdev *dev);
/* Writes seen since creation (including those refused after the cut point). */
uint64_t crashdev_writes(struct blkdev *dev);
/* Writes plus flushes seen: the unit of crashdev_cut_at(). */
uint64_t crashdev_events(struct blkdev *dev);

/*
 * Fault injection: passes everything to @lower, counting reads, writes and flushes
 * separately. faultdev_fail_nth(dev, op, n, sticky) makes the n'th call (1-based, counted
 * from now) of @op (BLKDEV_READ, BLKDEV_WRITE or BLKDEV_FLUSH) fail with -EIO without
 * reaching @lower; with @sticky every later call of that op fails too. n = 0 disarms.
 */
int faultdev_create(struct blkdev *lower, struct blkdev **out);
void faultdev_fail_nth(struct blkdev *dev, enum blkdev_op op, uint64_t n, bool sticky);
/* Calls of @op seen so far (failed ones included). */
uint64_t faultdev_count(struct blkdev *dev, enum blkdev_op op);
/* True when an armed fault has fired. */
bool faultdev_fired(struct blkdev *dev);

#endif
