/* SPDX-License-Identifier: MIT */
/*
 * A block device on a regular file.
 *
 * The synchronous ops (the metadata path, the tools) are pread/pwrite/fsync. The data path's
 * submit/poll is asynchronous, so the host loop never waits for the disk: io_uring (liburing)
 * when the kernel lets us set up a ring, else a small pool of worker threads doing the same
 * pread/pwrite/fdatasync/fallocate (containers often forbid io_uring_setup). Either way a
 * completion is a record the worker or the kernel leaves behind plus a write to one
 * process-wide eventfd (filedisk_wake_fd()); done() runs only inside filedisk_poll(), on the
 * caller's thread, never on a worker.
 *
 * I/O the page cache takes at once is done in submit (try_cached_read(), try_small_write(),
 * which says when a write may still wait, and how a write that did keeps the next ones off
 * the loop): a trip through the ring would do the same copy, later and dearer. Its done()
 * still runs only from the next poll.
 *
 * Requests live in a fixed table of slots (no allocation per request; a full table is
 * -EAGAIN). A read or write that transfers less than asked is continued from where it
 * stopped; a read that reaches the end of the file is -EIO, as the synchronous read is.
 */
#include "host/hostdev.h"
#include "core/base/util.h"

#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define FD_SLOTS	   128		  /* requests in flight per device */
#define POOL_WORKERS	   4		  /* threads of the fallback, started at the first submit */
#define ASYNC_MIN_BYTES	   (64 * 1024)	  /* transfers punted to io-wq (see uring_prep()) */
#define CACHED_READ_MAX	   (1024 * 1024)  /* reads tried from the page cache in submit */
#define SMALL_WRITE_MAX	   (16 * 1024)	  /* writes always done in submit (try_small_write()) */
#define INLINE_WRITE_MAX   (1024 * 1024)  /* larger ones too, unless one slept recently */
#define INLINE_BACKOFF_NS  1000000000ull  /* how long large writes avoid submit after that */
#define DESTROY_TIMEOUT_NS 30000000000ull /* bound on waiting for requests at destroy */

struct fd_slot {
	struct blkdev_req *req; /* NULL: free */
	struct fd_slot *next;	/* free list, pool queue, pool done list, delayed list */
	size_t done;		/* bytes transferred so far */
	int inject;		/* a seam's result instead of the I/O (0: none) */
	int rc;			/* pool: the result */
	bool full_sync;		/* FLUSH: fsync (a discard since the last one), not fdatasync */
	uint64_t release_ns;	/* delayed: when to issue it */
};

struct filedisk {
	struct blkdev dev;
	int fd;
	enum filedisk_io io;
	bool meta_dirty;	       /* a discard since the last flush: fsync, not fdatasync */
	bool nowait_writes;	       /* RWF_NOWAIT writes not refused yet (try_small_write()) */
	size_t max_xfer;	       /* seam: cap on one transfer (0: none) */
	uint64_t nfail[5], fail_at[5]; /* seams, per op: requests counted, the one to fail */
	uint64_t ndelay[5], delay_at[5], delay_ns;
	int fail_err;
	uint64_t syncs; /* flush system calls issued */

	/* large writes done in submit (try_small_write()) */
	uint64_t inline_off_until; /* until then through the ring instead (0: not) */
	uint64_t backoff_ns;	   /* INLINE_BACKOFF_NS, or a test's */
	bool seam_slept;	   /* seam: take the next one as one that slept */
	uint64_t inline_writes;	   /* writes (any size) done in submit */
	uint64_t spliced_writes;   /* ... of which moved from the transport's pipe by splice() */
	uint64_t handle_bounces;   /* payloads in a pipe read into the request's buffer instead */

	struct fd_slot slots[FD_SLOTS];
	struct fd_slot *free;
	unsigned inflight;		    /* slots taken */
	struct fd_slot *delayed;	    /* held back by the delay seam */
	struct fd_slot *local, *local_tail; /* finished in submit (page-cache hits), for poll */

	/* io_uring */
	struct io_uring ring;
	bool ring_up;

	/* worker pool */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct fd_slot *queue, *queue_tail; /* waiting for a worker */
	struct fd_slot *fin, *fin_tail;	    /* finished, for filedisk_poll() */
	pthread_t workers[POOL_WORKERS];
	unsigned nworkers;
	bool stopping;
};

static int wake_fd = -1; /* one eventfd for every device of the process */

static struct filedisk *to_fd(struct blkdev *dev)
{
	return container_of(dev, struct filedisk, dev);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void wake(void)
{
	uint64_t one = 1;

	/* Only fails when the counter would overflow: the descriptor is readable then anyway. */
	if (write(wake_fd, &one, sizeof(one)) < 0)
		return;
}

int filedisk_wake_fd(void)
{
	return wake_fd;
}

void filedisk_wake_clear(void)
{
	uint64_t v;

	if (wake_fd >= 0 && read(wake_fd, &v, sizeof(v)) < 0)
		return; /* EAGAIN: nothing was signalled */
}

/* ---- Synchronous ops ------------------------------------------------------------------- */

/* The system call's failure as a block-device error. */
static int io_err(int e)
{
	return e == ENOSPC ? -ENOSPC : e == EOPNOTSUPP ? -EOPNOTSUPP : -EIO;
}

static int filedisk_read(struct blkdev *dev, uint64_t block, uint32_t count, void *buf)
{
	struct filedisk *fd = to_fd(dev);
	size_t len = (size_t)count * dev->block_size, done = 0;

	while (done < len) {
		ssize_t n = pread(fd->fd, (char *)buf + done, len - done,
				  (off_t)(block * dev->block_size + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

static int filedisk_write(struct blkdev *dev, uint64_t block, uint32_t count, const void *buf)
{
	struct filedisk *fd = to_fd(dev);
	size_t len = (size_t)count * dev->block_size, done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd->fd, (const char *)buf + done, len - done,
				   (off_t)(block * dev->block_size + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 && errno == ENOSPC ? -ENOSPC : -EIO;
		done += (size_t)n;
	}
	return 0;
}

static int filedisk_flush(struct blkdev *dev)
{
	struct filedisk *fd = to_fd(dev);

	fd->syncs++;
	fd->meta_dirty = false;
	return fsync(fd->fd) ? -EIO : 0;
}

static int filedisk_discard(struct blkdev *dev, uint64_t block, uint32_t count)
{
	struct filedisk *fd = to_fd(dev);

	/* Punching a hole keeps the file size and makes the range read back as zeroes. */
	fd->meta_dirty = true;
	if (fallocate(fd->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(block * dev->block_size), (off_t)count * dev->block_size))
		return errno == EOPNOTSUPP ? -EOPNOTSUPP : -EIO;
	return 0;
}

/* ---- One transfer, as the worker pool does it ------------------------------------------ */

/* Do @s's request (in a worker, or inline): 0 or -errno. */
static int slot_run(struct filedisk *fd, struct fd_slot *s, bool datasync)
{
	struct blkdev_req *req = s->req;
	size_t len = (size_t)req->count * fd->dev.block_size;
	off_t off = (off_t)(req->block * fd->dev.block_size);

	switch (req->op) {
	case BLKDEV_READ:
	case BLKDEV_WRITE:
		while (s->done < len) {
			size_t k = len - s->done;
			ssize_t n;

			if (fd->max_xfer && k > fd->max_xfer)
				k = fd->max_xfer;
			if (req->op == BLKDEV_READ)
				n = pread(fd->fd, (char *)req->buf + s->done, k,
					  off + (off_t)s->done);
			else
				n = pwrite(fd->fd, (const char *)req->buf + s->done, k,
					   off + (off_t)s->done);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return io_err(errno);
			if (n == 0)
				return -EIO; /* end of file */
			s->done += (size_t)n;
		}
		return 0;
	case BLKDEV_FLUSH:
		return (datasync ? fdatasync(fd->fd) : fsync(fd->fd)) ? -EIO : 0;
	case BLKDEV_DISCARD:
	case BLKDEV_WRITE_ZEROES:
		if (fallocate(fd->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, (off_t)len))
			return io_err(errno);
		return 0;
	case BLKDEV_WRITE_BYTES:
	case BLKDEV_WRITE_ZEROES_BYTES:
		break; /* refused by filedisk_submit() */
	}
	return -EINVAL;
}

static void push(struct fd_slot **head, struct fd_slot **tail, struct fd_slot *s)
{
	s->next = NULL;
	if (*tail)
		(*tail)->next = s;
	else
		*head = s;
	*tail = s;
}

static struct fd_slot *pop(struct fd_slot **head, struct fd_slot **tail)
{
	struct fd_slot *s = *head;

	if (s) {
		*head = s->next;
		if (!*head)
			*tail = NULL;
	}
	return s;
}

static void *pool_worker(void *arg)
{
	struct filedisk *fd = arg;

	pthread_mutex_lock(&fd->mu);
	for (;;) {
		struct fd_slot *s;

		while (!fd->queue && !fd->stopping)
			pthread_cond_wait(&fd->cv, &fd->mu);
		s = pop(&fd->queue, &fd->queue_tail);
		if (!s)
			break; /* stopping, and nothing left to do */
		pthread_mutex_unlock(&fd->mu);
		s->rc = s->inject ? s->inject : slot_run(fd, s, !s->full_sync);
		pthread_mutex_lock(&fd->mu);
		push(&fd->fin, &fd->fin_tail, s);
		wake();
	}
	pthread_mutex_unlock(&fd->mu);
	return NULL;
}

static int pool_start(struct filedisk *fd)
{
	while (fd->nworkers < POOL_WORKERS) {
		int rc = pthread_create(&fd->workers[fd->nworkers], NULL, pool_worker, fd);

		if (rc)
			return fd->nworkers ? 0 : -rc; /* fewer workers still work */
		fd->nworkers++;
	}
	return 0;
}

/* ---- io_uring --------------------------------------------------------------------------- */

/* Queue the (rest of the) transfer of @s on the ring; -EAGAIN when the ring has no room. */
static int uring_prep(struct filedisk *fd, struct fd_slot *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&fd->ring);
	struct blkdev_req *req = s->req;
	size_t len = (size_t)req->count * fd->dev.block_size;
	uint64_t off = req->block * fd->dev.block_size;

	if (!sqe)
		return -EAGAIN;
	if (s->inject) {
		io_uring_prep_nop(sqe);
	} else {
		switch (req->op) {
		case BLKDEV_READ:
		case BLKDEV_WRITE: {
			size_t k = len - s->done;

			if (fd->max_xfer && k > fd->max_xfer)
				k = fd->max_xfer;
			if (req->op == BLKDEV_READ)
				io_uring_prep_read(sqe, fd->fd, (char *)req->buf + s->done,
						   (unsigned)k, off + s->done);
			else
				io_uring_prep_write(sqe, fd->fd, (const char *)req->buf + s->done,
						    (unsigned)k, off + s->done);
			break;
		}
		case BLKDEV_FLUSH:
			io_uring_prep_fsync(sqe, fd->fd, s->full_sync ? 0 : IORING_FSYNC_DATASYNC);
			break;
		case BLKDEV_DISCARD:
		case BLKDEV_WRITE_ZEROES:
			io_uring_prep_fallocate(
			    sqe, fd->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
			break;
		case BLKDEV_WRITE_BYTES:
		case BLKDEV_WRITE_ZEROES_BYTES:
			io_uring_prep_nop(sqe); /* refused by filedisk_submit(): never here */
			break;
		}
	}
	/*
	 * A large transfer goes to the kernel's io-wq workers instead of being copied inline in
	 * io_uring_enter(): the copy then runs on another core while this thread sends replies.
	 */
	if (!s->inject && (req->op == BLKDEV_READ || req->op == BLKDEV_WRITE) &&
	    len - s->done >= ASYNC_MIN_BYTES)
		io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
	io_uring_sqe_set_data(sqe, s);
	return 0;
}

/* ---- Submit and poll -------------------------------------------------------------------- */

static void slot_free(struct filedisk *fd, struct fd_slot *s)
{
	s->req = NULL;
	s->next = fd->free;
	fd->free = s;
	fd->inflight--;
}

/*
 * A read whose pages are all in the page cache is done now (RWF_NOWAIT never waits for the
 * disk): cheaper than a trip through the ring, which would copy the same way inside
 * io_uring_enter() or, for a large one, on an io-wq worker, whose copy then reaches the
 * reply's sendmsg() from the other core's cache, after two context switches. Done here, the
 * bytes are still in this core's cache when the reply copies them out: sequential 256 KiB
 * reads took about a tenth less CPU per GiB (docs/performance.md). Its done() still runs
 * from the next poll. False: not (all) cached, or a seam is armed; the rest goes to the
 * backend as usual.
 */
static bool try_cached_read(struct filedisk *fd, struct fd_slot *s)
{
	struct blkdev_req *req = s->req;
	size_t len = (size_t)req->count * fd->dev.block_size;
	struct iovec v;
	ssize_t n;

	if (fd->io != FILEDISK_IO_URING || len > CACHED_READ_MAX || s->inject || fd->max_xfer)
		return false;
	v.iov_base = req->buf;
	v.iov_len = len;
	n = preadv2(fd->fd, &v, 1, (off_t)(req->block * fd->dev.block_size), RWF_NOWAIT);
	if (n > 0)
		s->done = (size_t)n; /* a part: the ring reads the rest */
	if (n < 0 || (size_t)n < len)
		return false;
	push(&fd->local, &fd->local_tail, s);
	return true;
}

/* Voluntary context switches of the calling thread so far: each one is a sleep. */
static long thread_sleeps(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_THREAD, &ru) ? -1 : ru.ru_nvcsw;
}

/*
 * Whether a write of @len may be done in submit now (try_small_write(), try_splice_write()):
 * the io_uring backend, no seam armed, up to INLINE_WRITE_MAX, and for one larger than
 * SMALL_WRITE_MAX not while the back-off after a write that slept lasts.
 */
static bool inline_write_ok(struct filedisk *fd, const struct fd_slot *s, size_t len)
{
	if (fd->io != FILEDISK_IO_URING || len > INLINE_WRITE_MAX || s->inject || fd->max_xfer)
		return false;
	if (len > SMALL_WRITE_MAX && fd->inline_off_until) {
		if (now_ns() < fd->inline_off_until)
			return false;
		fd->inline_off_until = 0;
	}
	return true;
}

/* After a large write done in submit: if it slept (@sleeps0 is thread_sleeps() from before
 * it), large writes go through the ring for the back-off. */
static void inline_write_after(struct filedisk *fd, long sleeps0)
{
	if (fd->seam_slept || thread_sleeps() != sleeps0) {
		fd->seam_slept = false;
		fd->inline_off_until = now_ns() + fd->backoff_ns;
	}
}

/*
 * A write is a copy into the page cache: done in submit it costs one system call, where the
 * ring hands it to io-wq (ext4 has no non-blocking buffered write, so io_uring punts every
 * one to a worker, one at a time per file: 4 KiB random writes at QD16 ran at half the
 * synchronous rate). A large write done here also copies its payload while it is still in
 * this core's cache, straight after recv() put it there, and skips the worker's two context
 * switches: sequential 256 KiB writes took a third less CPU per GiB than through io-wq
 * (docs/performance.md). RWF_NOWAIT first, so a file system that has it never waits here;
 * where it answers EOPNOTSUPP (ext4) a plain pwrite(), which waits when the kernel throttles
 * dirty pages (or a page must be read first). A write of up to SMALL_WRITE_MAX is done here
 * always; a larger one, up to INLINE_WRITE_MAX, only while no such write slept in the last
 * INLINE_BACKOFF_NS: one that did (a voluntary context switch during the call) sends the
 * large writes after it through the ring, so a throttled file costs the loop one wait per
 * back-off, not one per request. False: not done (or done in part); the rest goes to the
 * backend.
 */
static bool try_small_write(struct filedisk *fd, struct fd_slot *s)
{
	struct blkdev_req *req = s->req;
	size_t len = (size_t)req->count * fd->dev.block_size;
	off_t off = (off_t)(req->block * fd->dev.block_size);
	bool large = len > SMALL_WRITE_MAX;
	long sleeps = 0;
	struct iovec v;
	ssize_t n;

	if (!inline_write_ok(fd, s, len))
		return false;
	if (large)
		sleeps = thread_sleeps();
	v.iov_base = req->buf;
	v.iov_len = len;
	n = fd->nowait_writes ? pwritev2(fd->fd, &v, 1, off, RWF_NOWAIT)
			      : pwrite(fd->fd, req->buf, len, off);
	if (n < 0 && errno == EOPNOTSUPP && fd->nowait_writes) {
		fd->nowait_writes = false;
		n = pwrite(fd->fd, req->buf, len, off);
	}
	if (large)
		inline_write_after(fd, sleeps);
	if (n > 0)
		s->done = (size_t)n;
	if (n < 0 || (size_t)n < len)
		return false;
	fd->inline_writes++;
	push(&fd->local, &fd->local_tail, s);
	return true;
}

/*
 * A WRITE whose payload waits in the transport's pipe (core/blkdev.h "Payloads held by the
 * transport"; host/nbd_sock.c spliced it there from the socket, the pipe holding references
 * to the socket's pages): splice() moves it into the file at its offset, so the copy into
 * the page cache is the only one, where recv() into the buffer and pwrite() from it were
 * two. Done in submit on the same terms as try_small_write(): the io_uring backend, no seam
 * armed, up to INLINE_WRITE_MAX, not while the back-off after a write that slept lasts, and
 * one that sleeps here starts that back-off. False: not done (or done in part, s->done
 * says how much); handle_bounce() then reads the rest into the request's buffer.
 */
static bool try_splice_write(struct filedisk *fd, struct fd_slot *s)
{
	struct blkdev_req *req = s->req;
	size_t len = (size_t)req->count * fd->dev.block_size;
	loff_t off = (loff_t)(req->block * fd->dev.block_size);
	bool large = len > SMALL_WRITE_MAX;
	long sleeps = 0;

	if (!inline_write_ok(fd, s, len))
		return false;
	if (large)
		sleeps = thread_sleeps();
	while (s->done < len) {
		loff_t o = off + (loff_t)s->done;
		/* The pipe is non-blocking: a payload shorter than promised is EAGAIN, not a hang. */
		ssize_t n = splice(req->handle, NULL, fd->fd, &o, len - s->done, SPLICE_F_MOVE);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		s->done += (size_t)n;
	}
	if (large)
		inline_write_after(fd, sleeps);
	if (s->done < len)
		return false;
	fd->inline_writes++;
	fd->spliced_writes++;
	push(&fd->local, &fd->local_tail, s);
	return true;
}

/*
 * The rest of a payload in the transport's pipe (after s->done bytes) read into the
 * request's buffer, for the backend's usual write from there. 0, or -EIO when the pipe holds
 * fewer bytes than the payload (it is non-blocking: that is EAGAIN, not a wait).
 */
static int handle_bounce(struct filedisk *fd, struct fd_slot *s)
{
	struct blkdev_req *req = s->req;
	size_t len = (size_t)req->count * fd->dev.block_size, got = s->done;

	fd->handle_bounces++;
	while (got < len) {
		ssize_t n = read(req->handle, (char *)req->buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EIO;
		got += (size_t)n;
	}
	return 0;
}

/* Hand @s to the backend (the delay seam has let it go). */
static void slot_issue(struct filedisk *fd, struct fd_slot *s)
{
	if (s->req->op == BLKDEV_FLUSH) {
		/* A punched hole is metadata fdatasync() need not write: fsync() then. */
		fd->syncs++;
		s->full_sync = fd->meta_dirty;
		fd->meta_dirty = false;
	}
	if (fd->io == FILEDISK_IO_URING) {
		/* The slot table is no larger than the ring: there is always an entry. */
		if (uring_prep(fd, s))
			abort();
	} else {
		pthread_mutex_lock(&fd->mu);
		push(&fd->queue, &fd->queue_tail, s);
		pthread_cond_signal(&fd->cv);
		pthread_mutex_unlock(&fd->mu);
	}
}

static int filedisk_submit(struct blkdev *dev, struct blkdev_req *req)
{
	struct filedisk *fd = to_fd(dev);
	struct fd_slot *s = fd->free;
	unsigned op = req->op;

	if (op == BLKDEV_WRITE_BYTES || op == BLKDEV_WRITE_ZEROES_BYTES)
		return -EOPNOTSUPP; /* no byte_writes: the NBD server does the read-modify-write */
	if (op > BLKDEV_WRITE_ZEROES)
		return -EINVAL;
	if (op != BLKDEV_FLUSH && !blkdev_range_ok(dev, req->block, req->count))
		return -EINVAL;
	if (op != BLKDEV_READ && op != BLKDEV_FLUSH && dev->read_only)
		return -EROFS;
	if (!s)
		return -EAGAIN;
	if (fd->io == FILEDISK_IO_POOL && !fd->nworkers) {
		int rc = pool_start(fd);

		if (rc)
			return rc;
	}
	fd->free = s->next;
	fd->inflight++;
	memset(s, 0, sizeof(*s));
	s->req = req;
	if (fd->fail_at[op] && ++fd->nfail[op] == fd->fail_at[op]) {
		fd->fail_at[op] = 0;
		s->inject = fd->fail_err;
	}
	if (op == BLKDEV_DISCARD || op == BLKDEV_WRITE_ZEROES)
		fd->meta_dirty = true;
	if (req->in_handle) {
		bool held_back = fd->delay_at[op] && fd->ndelay[op] + 1 == fd->delay_at[op];
		int rc;

		if (!held_back && try_splice_write(fd, s))
			return 0;
		/* Held back by the delay seam, or not spliced (in whole): the payload, or what
		 * is left of it, waits in the buffer for the usual path. */
		rc = handle_bounce(fd, s);
		if (rc && !s->inject)
			s->inject = rc;
	}
	if (fd->delay_at[op] && ++fd->ndelay[op] == fd->delay_at[op]) {
		fd->delay_at[op] = 0;
		s->release_ns = now_ns() + fd->delay_ns;
		s->next = fd->delayed;
		fd->delayed = s;
		return 0;
	}
	if (op == BLKDEV_READ && try_cached_read(fd, s))
		return 0;
	/* After a splice in part the buffer holds only the rest: that goes to the backend. */
	if (op == BLKDEV_WRITE && !s->done && try_small_write(fd, s))
		return 0;
	slot_issue(fd, s);
	return 0;
}

/* Finish @s with @rc: done() runs, the slot is free again first (done() may submit). */
static void slot_complete(struct filedisk *fd, struct fd_slot *s, int rc)
{
	struct blkdev_req *req = s->req;

	slot_free(fd, s);
	req->done(req, rc);
}

/* Issue the delayed slots whose time has come (all of them with @all). */
static void release_delayed(struct filedisk *fd, bool all)
{
	struct fd_slot **p = &fd->delayed;
	uint64_t now = now_ns();

	while (*p) {
		struct fd_slot *s = *p;

		if (all || s->release_ns <= now) {
			*p = s->next;
			slot_issue(fd, s);
		} else {
			p = &s->next;
		}
	}
}

static int uring_poll(struct filedisk *fd)
{
	struct fd_slot *done[FD_SLOTS];
	int res[FD_SLOTS];
	struct io_uring_cqe *cqe;
	unsigned head, n = 0, i;
	int delivered = 0;

	if (io_uring_sq_ready(&fd->ring)) {
		int rc = io_uring_submit(&fd->ring);

		/* -EAGAIN/-EBUSY: the kernel is short of resources; the entries stay queued. */
		if (rc < 0 && rc != -EAGAIN && rc != -EBUSY && rc != -EINTR)
			return rc;
	}
	/* Collect first, then call done(): a done() may submit, which must not see our head. */
	io_uring_for_each_cqe(&fd->ring, head, cqe)
	{
		done[n] = io_uring_cqe_get_data(cqe);
		res[n] = cqe->res;
		if (++n == FD_SLOTS)
			break;
	}
	io_uring_cq_advance(&fd->ring, n);
	for (i = 0; i < n; i++) {
		struct fd_slot *s = done[i];
		struct blkdev_req *req = s->req;
		size_t len = (size_t)req->count * fd->dev.block_size;
		int r = res[i];

		if (s->inject) {
			slot_complete(fd, s, s->inject);
		} else if (req->op == BLKDEV_READ || req->op == BLKDEV_WRITE) {
			if (r > 0 && s->done + (size_t)r < len) {
				/* A short transfer: continue where it stopped. */
				s->done += (size_t)r;
				if (uring_prep(fd, s))
					abort();
				continue;
			}
			slot_complete(fd, s, r > 0 ? 0 : r == 0 ? -EIO : io_err(-r));
		} else if (req->op == BLKDEV_FLUSH) {
			slot_complete(fd, s, r < 0 ? -EIO : 0);
		} else {
			slot_complete(fd, s, r < 0 ? io_err(-r) : 0);
		}
		delivered++;
	}
	if (io_uring_sq_ready(&fd->ring))
		io_uring_submit(&fd->ring); /* continuations, and what done() submitted */
	return delivered;
}

static int pool_poll(struct filedisk *fd)
{
	struct fd_slot *list, *s;
	int delivered = 0;

	pthread_mutex_lock(&fd->mu);
	list = fd->fin;
	fd->fin = fd->fin_tail = NULL;
	pthread_mutex_unlock(&fd->mu);
	while ((s = list)) {
		list = s->next;
		slot_complete(fd, s, s->rc);
		delivered++;
	}
	return delivered;
}

static int filedisk_poll(struct blkdev *dev)
{
	struct filedisk *fd = to_fd(dev);
	struct fd_slot *list = fd->local, *s;
	int n = 0;

	if (fd->delayed)
		release_delayed(fd, false);
	/* Taken whole first: a done() may submit, and a new cached read waits for the next poll. */
	fd->local = fd->local_tail = NULL;
	while ((s = list)) {
		list = s->next;
		slot_complete(fd, s, 0);
		n++;
	}
	return n + (fd->io == FILEDISK_IO_URING ? uring_poll(fd) : pool_poll(fd));
}

static void filedisk_destroy(struct blkdev *dev)
{
	struct filedisk *fd = to_fd(dev);
	uint64_t deadline = now_ns() + DESTROY_TIMEOUT_NS;
	unsigned i;

	/* Requests still in flight: let them finish (bounded), so no buffer is written later. */
	release_delayed(fd, true);
	while (fd->inflight && now_ns() < deadline) {
		if (filedisk_poll(dev) == 0)
			usleep(100);
	}
	if (fd->io == FILEDISK_IO_POOL) {
		pthread_mutex_lock(&fd->mu);
		fd->stopping = true;
		pthread_cond_broadcast(&fd->cv);
		pthread_mutex_unlock(&fd->mu);
		for (i = 0; i < fd->nworkers; i++)
			pthread_join(fd->workers[i], NULL);
		pthread_cond_destroy(&fd->cv);
		pthread_mutex_destroy(&fd->mu);
	}
	if (fd->ring_up)
		io_uring_queue_exit(&fd->ring);
	close(fd->fd);
	free(fd);
}

static const struct blkdev_ops filedisk_ops = {
	.read = filedisk_read,
	.write = filedisk_write,
	.flush = filedisk_flush,
	.discard = filedisk_discard,
	.write_zeroes = filedisk_discard,
	.submit = filedisk_submit,
	.poll = filedisk_poll,
	.signals_completion = filedisk_signals,
	.destroy = filedisk_destroy,
};

static const struct blkdev_ops filedisk_sync_ops = {
	.read = filedisk_read,
	.write = filedisk_write,
	.flush = filedisk_flush,
	.discard = filedisk_discard,
	.write_zeroes = filedisk_discard,
	.destroy = filedisk_destroy,
};

/* ---- Opening ---------------------------------------------------------------------------- */

/* THINBOX_FILE_IO=uring|pool|sync chooses for FILEDISK_IO_AUTO (tests, comparisons). */
static enum filedisk_io auto_choice(void)
{
	const char *e = getenv("THINBOX_FILE_IO");

	if (e && !strcmp(e, "uring"))
		return FILEDISK_IO_URING;
	if (e && !strcmp(e, "pool"))
		return FILEDISK_IO_POOL;
	if (e && !strcmp(e, "sync"))
		return FILEDISK_IO_SYNC;
	return FILEDISK_IO_AUTO;
}

/* Set up the ring (registered with the wake eventfd); -errno when the kernel refuses. */
static int uring_setup(struct filedisk *fd)
{
	int rc = io_uring_queue_init(FD_SLOTS, &fd->ring, 0);

	if (rc)
		return rc;
	/*
	 * Every completion signals (not IORING_REGISTER_EVENTFD_ASYNC: a read that waited for a
	 * locked page completes through task work on this thread, signals nothing then, and the
	 * loop slept through it until its timeout: measured as 100 ms stalls at queue depth 1).
	 * Page-cache hits do not come this way at all: try_cached_read().
	 */
	rc = io_uring_register_eventfd(&fd->ring, wake_fd);
	if (rc) {
		io_uring_queue_exit(&fd->ring);
		return rc;
	}
	fd->ring_up = true;
	return 0;
}

static int backend_setup(struct filedisk *fd, enum filedisk_io io)
{
	unsigned i;
	int rc;

	if (io == FILEDISK_IO_AUTO)
		io = auto_choice();
	if (io != FILEDISK_IO_SYNC && wake_fd < 0) {
		wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (wake_fd < 0)
			return -errno;
	}
	if (io == FILEDISK_IO_AUTO || io == FILEDISK_IO_URING) {
		rc = uring_setup(fd);
		if (!rc)
			io = FILEDISK_IO_URING;
		else if (io == FILEDISK_IO_URING)
			return rc;
		else
			io = FILEDISK_IO_POOL;
	}
	fd->io = io;
	fd->dev.ops = io == FILEDISK_IO_SYNC ? &filedisk_sync_ops : &filedisk_ops;
	/* Payloads in the transport's pipe (try_splice_write()); the pool reads them first. */
	fd->dev.handle_writes = io != FILEDISK_IO_SYNC && !getenv("THINBOX_NO_SPLICE");
	if (io == FILEDISK_IO_POOL) {
		pthread_mutex_init(&fd->mu, NULL);
		pthread_cond_init(&fd->cv, NULL);
	}
	for (i = FD_SLOTS; i-- > 0;) {
		fd->slots[i].next = fd->free;
		fd->free = &fd->slots[i];
	}
	return 0;
}

int filedisk_open_io(const char *path, uint32_t block_size, bool create, uint64_t nr_blocks,
		     enum filedisk_io io, struct blkdev **out)
{
	struct filedisk *fd;
	struct stat st;
	int f, rc;

	if (block_size < 512 || (block_size & (block_size - 1)))
		return -EINVAL;
	f = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0), 0644);
	if (f < 0)
		return -errno;
	if (create && ftruncate(f, (off_t)(nr_blocks * block_size))) {
		rc = -errno;
		close(f);
		return rc;
	}
	if (fstat(f, &st)) {
		rc = -errno;
		close(f);
		return rc;
	}
	fd = calloc(1, sizeof(*fd));
	if (!fd) {
		close(f);
		return -ENOMEM;
	}
	fd->fd = f;
	fd->dev.name = "filedisk";
	fd->dev.block_size = block_size;
	fd->dev.nr_blocks = (uint64_t)st.st_size / block_size;
	fd->dev.discard_zeroes = true;
	fd->nowait_writes = true;
	fd->backoff_ns = INLINE_BACKOFF_NS;
	rc = backend_setup(fd, io);
	if (rc) {
		close(f);
		free(fd);
		return rc;
	}
	if (!fd->dev.nr_blocks) {
		filedisk_destroy(&fd->dev);
		return -EINVAL;
	}
	*out = &fd->dev;
	return 0;
}

int filedisk_open(const char *path, uint32_t block_size, bool create, uint64_t nr_blocks,
		  struct blkdev **out)
{
	return filedisk_open_io(path, block_size, create, nr_blocks, FILEDISK_IO_AUTO, out);
}

/* ---- Questions and test seams ----------------------------------------------------------- */

static bool is_filedisk(const struct blkdev *dev)
{
	return dev && (dev->ops == &filedisk_ops || dev->ops == &filedisk_sync_ops);
}

enum filedisk_io filedisk_backend(const struct blkdev *dev)
{
	return is_filedisk(dev) ? container_of(dev, const struct filedisk, dev)->io
				: FILEDISK_IO_SYNC;
}

const char *filedisk_backend_name(enum filedisk_io io)
{
	switch (io) {
	case FILEDISK_IO_URING:
		return "io_uring";
	case FILEDISK_IO_POOL:
		return "worker threads";
	case FILEDISK_IO_SYNC:
		return "synchronous";
	default:
		return "automatic";
	}
}

bool filedisk_signals(const struct blkdev *dev)
{
	const struct filedisk *fd;

	if (!dev || dev->ops != &filedisk_ops)
		return false;
	fd = container_of(dev, const struct filedisk, dev);
	/* Unsubmitted ring entries, reads done in submit and held-back requests need a poll. */
	return !fd->delayed && !fd->local && !(fd->ring_up && io_uring_sq_ready(&fd->ring));
}

void filedisk_fail_nth(struct blkdev *dev, enum blkdev_op op, uint64_t n, int err)
{
	struct filedisk *fd = to_fd(dev);

	fd->nfail[op] = 0;
	fd->fail_at[op] = n;
	fd->fail_err = err;
}

void filedisk_delay_nth(struct blkdev *dev, enum blkdev_op op, uint64_t n, uint64_t ns)
{
	struct filedisk *fd = to_fd(dev);

	fd->ndelay[op] = 0;
	fd->delay_at[op] = n;
	fd->delay_ns = ns;
}

void filedisk_set_max_transfer(struct blkdev *dev, size_t bytes)
{
	to_fd(dev)->max_xfer = bytes;
}

void filedisk_inline_slept(struct blkdev *dev, uint64_t backoff_ns)
{
	struct filedisk *fd = to_fd(dev);

	fd->seam_slept = true;
	fd->backoff_ns = backoff_ns;
}

uint64_t filedisk_inline_writes(const struct blkdev *dev)
{
	return container_of(dev, const struct filedisk, dev)->inline_writes;
}

uint64_t filedisk_spliced_writes(const struct blkdev *dev)
{
	return container_of(dev, const struct filedisk, dev)->spliced_writes;
}

uint64_t filedisk_handle_bounces(const struct blkdev *dev)
{
	return container_of(dev, const struct filedisk, dev)->handle_bounces;
}

uint64_t filedisk_syncs(const struct blkdev *dev)
{
	return container_of(dev, const struct filedisk, dev)->syncs;
}

unsigned filedisk_inflight(const struct blkdev *dev)
{
	return container_of(dev, const struct filedisk, dev)->inflight;
}
