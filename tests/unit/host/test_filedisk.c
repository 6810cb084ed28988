/* SPDX-License-Identifier: MIT */
/*
 * host/filedisk.c's asynchronous submit/poll against core/blkdev.h's contract, on both
 * backends (io_uring where the kernel allows it, else that half is skipped with a note; the
 * worker threads always): many requests in flight and a full table, completions out of
 * submission order, FLUSH, injected errors, short transfers, reads past the end of the file,
 * the wake-up descriptor, and done() submitting again; with io_uring, which reads and writes
 * are done inside submit (and which writes go through the ring after one of them slept).
 * WRITE payloads waiting in a pipe (handle_writes): spliced into the file inside submit, or
 * read into the buffer (the back-off, the seams, the worker threads); refused by the
 * synchronous backend.
 */
#include "tests/support/harness.h"
#include "host/hostdev.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define BS	512u
#define NBLK	8192u /* 4 MiB */
#define MAXREQ	160u
#define WAIT_NS 10000000000ull /* every wait in these tests gives up after 10 s */

struct rec {
	struct blkdev_req req;
	int rc;
	int calls;
	int order; /* 1-based position among completions */
};

static int completions;

static void rec_done(struct blkdev_req *req, int rc)
{
	struct rec *r = req->priv;

	r->rc = rc;
	r->calls++;
	r->order = ++completions;
}

static void rec_init(struct rec *r, enum blkdev_op op, uint64_t block, uint32_t count, void *buf)
{
	memset(r, 0, sizeof(*r));
	r->req.op = op;
	r->req.block = block;
	r->req.count = count;
	r->req.buf = buf;
	r->req.done = rec_done;
	r->req.priv = r;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Poll until @dev has nothing in flight (bounded); false on timeout. */
static bool drain(struct blkdev *dev)
{
	uint64_t end = now_ns() + WAIT_NS;

	while (filedisk_inflight(dev)) {
		if (now_ns() > end)
			return false;
		if (blkdev_poll(dev) == 0)
			usleep(50);
	}
	return true;
}

static const char *path_of(const char *name)
{
	static char p[512];

	snprintf(p, sizeof(p), "%s/%s", test_tmpdir(), name);
	return p;
}

/* A fresh NBLK-block file on @io; NULL (and a note) when the backend is unavailable here. */
static struct blkdev *open_dev(enum filedisk_io io, const char *name)
{
	struct blkdev *dev = NULL;
	int rc = filedisk_open_io(path_of(name), BS, true, NBLK, io, &dev);

	if (rc && io == FILEDISK_IO_URING) {
		printf("  note: io_uring refused here (%d): only the worker threads tested\n", rc);
		return NULL;
	}
	if (!ok_eq(rc, 0))
		return NULL;
	ok_eq(filedisk_backend(dev), io);
	return dev;
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		p[i] = (uint8_t)(seed >> 56);
	}
}

/* ---- many in flight, a full table, data round trip ----------------------------------- */

static void many_in_flight(enum filedisk_io io)
{
	struct blkdev *dev = open_dev(io, "many.img");
	struct rec *r = calloc(MAXREQ, sizeof(*r));
	uint8_t *w = malloc((size_t)NBLK * BS), *rd = calloc(NBLK, BS);
	unsigned i, accepted = 0;
	int rc = 0;

	if (!dev || !ok(r && w && rd))
		goto out;
	fill(w, (size_t)NBLK * BS, 7);
	completions = 0;
	/* 32-block writes until the table is full: the first refusal must be -EAGAIN. */
	for (i = 0; i < NBLK / 32 && i < MAXREQ; i++) {
		rec_init(&r[i], BLKDEV_WRITE, i * 32ull, 32, w + (size_t)i * 32 * BS);
		rc = blkdev_submit(dev, &r[i].req);
		if (rc)
			break;
		accepted++;
	}
	if (!ok_eq(rc, -EAGAIN))
		goto out; /* a synchronous device never fills up */
	ok(accepted >= 64);
	ok_eq(r[accepted].calls, 0); /* refused: done() never runs */
	/* Nothing was delivered inside submit: the device is asynchronous. */
	ok_eq(completions, 0);
	ok(drain(dev));
	for (i = 0; i < accepted; i++) {
		ok_eq(r[i].calls, 1);
		ok_eq(r[i].rc, 0);
	}
	/* The rest, then everything back through async reads of another shape (8 blocks). */
	for (; i < NBLK / 32; i++) {
		rec_init(&r[0], BLKDEV_WRITE, i * 32ull, 32, w + (size_t)i * 32 * BS);
		ok_eq(blkdev_submit(dev, &r[0].req), 0);
		ok(drain(dev));
		ok_eq(r[0].rc, 0);
	}
	for (unsigned base = 0; base < NBLK; base += 8 * 100) {
		unsigned n = 0;

		for (i = 0; i < 100 && base + i * 8 < NBLK; i++, n++) {
			rec_init(&r[i], BLKDEV_READ, base + i * 8ull, 8,
				 rd + (size_t)(base + i * 8) * BS);
			ok_eq(blkdev_submit(dev, &r[i].req), 0);
		}
		ok(drain(dev));
		for (i = 0; i < n; i++)
			ok(r[i].calls == 1 && r[i].rc == 0);
	}
	ok(!memcmp(w, rd, (size_t)NBLK * BS));
	/* And the synchronous path sees the same bytes. */
	memset(rd, 0, BS * 64);
	ok_eq(blkdev_read(dev, 4000, 64, rd), 0);
	ok(!memcmp(rd, w + 4000ull * BS, BS * 64));
out:
	blkdev_destroy(dev);
	free(r);
	free(w);
	free(rd);
}

TEST(many_in_flight_uring)
{
	many_in_flight(FILEDISK_IO_URING);
}

TEST(many_in_flight_pool)
{
	many_in_flight(FILEDISK_IO_POOL);
}

/* ---- completions out of order -------------------------------------------------------- */

static void out_of_order(enum filedisk_io io)
{
	struct blkdev *dev = open_dev(io, "ooo.img");
	static uint8_t buf[16][BS];
	struct rec r[16];
	unsigned i;

	if (!dev)
		return;
	completions = 0;
	/* The first read is held back 50 ms: the fifteen after it overtake it. */
	filedisk_delay_nth(dev, BLKDEV_READ, 1, 50000000ull);
	for (i = 0; i < 16; i++) {
		rec_init(&r[i], BLKDEV_READ, i, 1, buf[i]);
		ok_eq(blkdev_submit(dev, &r[i].req), 0);
	}
	ok(drain(dev));
	for (i = 0; i < 16; i++)
		ok(r[i].calls == 1 && r[i].rc == 0);
	ok_eq(r[0].order, 16);
	blkdev_destroy(dev);
}

TEST(out_of_order_uring)
{
	out_of_order(FILEDISK_IO_URING);
}

TEST(out_of_order_pool)
{
	out_of_order(FILEDISK_IO_POOL);
}

/* ---- FLUSH ---------------------------------------------------------------------------- */

static void flush(enum filedisk_io io)
{
	struct blkdev *dev = open_dev(io, "flush.img");
	static uint8_t w[8 * BS], rd[8 * BS];
	struct rec wr, fl, dc;
	uint64_t syncs;
	int f;

	if (!dev)
		return;
	fill(w, sizeof(w), 3);
	/* A write completes; a FLUSH submitted after it is a sync call, and succeeds. */
	rec_init(&wr, BLKDEV_WRITE, 100, 8, w);
	ok_eq(blkdev_submit(dev, &wr.req), 0);
	ok(drain(dev));
	ok_eq(wr.rc, 0);
	syncs = filedisk_syncs(dev);
	rec_init(&fl, BLKDEV_FLUSH, 0, 0, NULL);
	ok_eq(blkdev_submit(dev, &fl.req), 0);
	ok(drain(dev));
	ok(fl.calls == 1 && fl.rc == 0);
	ok_eq(filedisk_syncs(dev), syncs + 1);
	/* The file holds it (another descriptor, past our device). */
	f = open(path_of("flush.img"), O_RDONLY);
	ok(f >= 0 && pread(f, rd, sizeof(rd), 100 * BS) == (ssize_t)sizeof(rd));
	ok(!memcmp(w, rd, sizeof(rd)));
	if (f >= 0)
		close(f);
	/* A discard, then a flush (fsync for the punched hole); the range reads zeroes. */
	rec_init(&dc, BLKDEV_DISCARD, 100, 8, NULL);
	ok_eq(blkdev_submit(dev, &dc.req), 0);
	ok(drain(dev));
	ok(dc.rc == 0 || dc.rc == -EOPNOTSUPP);
	rec_init(&fl, BLKDEV_FLUSH, 0, 0, NULL);
	ok_eq(blkdev_submit(dev, &fl.req), 0);
	ok(drain(dev));
	ok_eq(fl.rc, 0);
	if (dc.rc == 0) {
		ok_eq(blkdev_read(dev, 100, 8, rd), 0);
		ok(rd[0] == 0 && !memcmp(rd, rd + 1, sizeof(rd) - 1));
	}
	/* A failed flush says so. */
	filedisk_fail_nth(dev, BLKDEV_FLUSH, 1, -EIO);
	rec_init(&fl, BLKDEV_FLUSH, 0, 0, NULL);
	ok_eq(blkdev_submit(dev, &fl.req), 0);
	ok(drain(dev));
	ok(fl.calls == 1 && fl.rc == -EIO);
	/* A FLUSH orders nothing: one submitted while a write is held back may finish first. */
	filedisk_delay_nth(dev, BLKDEV_WRITE, 1, 30000000ull);
	completions = 0;
	rec_init(&wr, BLKDEV_WRITE, 200, 8, w);
	rec_init(&fl, BLKDEV_FLUSH, 0, 0, NULL);
	ok_eq(blkdev_submit(dev, &wr.req), 0);
	ok_eq(blkdev_submit(dev, &fl.req), 0);
	ok(drain(dev));
	ok(wr.rc == 0 && fl.rc == 0 && fl.order == 1 && wr.order == 2);
	blkdev_destroy(dev);
}

TEST(flush_uring)
{
	flush(FILEDISK_IO_URING);
}

TEST(flush_pool)
{
	flush(FILEDISK_IO_POOL);
}

/* ---- errors: injected, refused, short transfers, end of file --------------------------- */

static void errors(enum filedisk_io io)
{
	struct blkdev *dev = open_dev(io, "err.img");
	static uint8_t buf[4][8 * BS];
	struct rec r[4];
	unsigned i;

	if (!dev)
		return;
	/* The second of four reads fails; the others do not notice. */
	filedisk_fail_nth(dev, BLKDEV_READ, 2, -EIO);
	for (i = 0; i < 4; i++) {
		rec_init(&r[i], BLKDEV_READ, i * 8ull, 8, buf[i]);
		ok_eq(blkdev_submit(dev, &r[i].req), 0);
	}
	ok(drain(dev));
	ok(r[0].rc == 0 && r[1].rc == -EIO && r[2].rc == 0 && r[3].rc == 0);
	/* A write failing with -ENOSPC keeps its error. */
	filedisk_fail_nth(dev, BLKDEV_WRITE, 1, -ENOSPC);
	rec_init(&r[0], BLKDEV_WRITE, 0, 8, buf[0]);
	ok_eq(blkdev_submit(dev, &r[0].req), 0);
	ok(drain(dev));
	ok_eq(r[0].rc, -ENOSPC);
	/* Refused at submit: out of range, zero count. done() never runs. */
	rec_init(&r[0], BLKDEV_READ, NBLK - 4, 8, buf[0]);
	ok_eq(blkdev_submit(dev, &r[0].req), -EINVAL);
	rec_init(&r[1], BLKDEV_WRITE, 0, 0, buf[1]);
	ok_eq(blkdev_submit(dev, &r[1].req), -EINVAL);
	ok(drain(dev));
	ok(r[0].calls == 0 && r[1].calls == 0);
	blkdev_destroy(dev);
}

TEST(errors_uring)
{
	errors(FILEDISK_IO_URING);
}

TEST(errors_pool)
{
	errors(FILEDISK_IO_POOL);
}

static void short_and_eof(enum filedisk_io io)
{
	struct blkdev *dev = open_dev(io, "short.img");
	uint8_t *w = malloc(128 * BS), *rd = calloc(128, BS);
	struct rec a, b;

	if (!dev || !ok(w && rd))
		goto out;
	/* Every system call moves at most 1000 bytes: 64 KiB takes 66 of them, data intact. */
	filedisk_set_max_transfer(dev, 1000);
	fill(w, 128 * BS, 11);
	rec_init(&a, BLKDEV_WRITE, 300, 128, w);
	ok_eq(blkdev_submit(dev, &a.req), 0);
	ok(drain(dev));
	ok(a.calls == 1 && a.rc == 0);
	rec_init(&a, BLKDEV_READ, 300, 128, rd);
	ok_eq(blkdev_submit(dev, &a.req), 0);
	ok(drain(dev));
	ok(a.calls == 1 && a.rc == 0);
	ok(!memcmp(w, rd, 128 * BS));
	filedisk_set_max_transfer(dev, 0);
	/* The file shrinks under us (to 1000 blocks and a half): a read across the new end
	 * gets part of its bytes, then end of file: -EIO; one before the end still works. */
	ok_eq(truncate(path_of("short.img"), 1000 * BS + BS / 2), 0);
	rec_init(&a, BLKDEV_READ, 996, 8, rd);
	rec_init(&b, BLKDEV_READ, 990, 8, rd + 8 * BS);
	ok_eq(blkdev_submit(dev, &a.req), 0);
	ok_eq(blkdev_submit(dev, &b.req), 0);
	ok(drain(dev));
	ok(a.calls == 1 && a.rc == -EIO);
	ok(b.calls == 1 && b.rc == 0);
out:
	blkdev_destroy(dev);
	free(w);
	free(rd);
}

TEST(short_and_eof_uring)
{
	short_and_eof(FILEDISK_IO_URING);
}

TEST(short_and_eof_pool)
{
	short_and_eof(FILEDISK_IO_POOL);
}

/* ---- waiting on the wake-up descriptor ------------------------------------------------ */

static void wake(enum filedisk_io io)
{
	struct blkdev *dev = open_dev(io, "wake.img");
	static uint8_t buf[8 * BS];
	struct pollfd p;
	struct rec r;
	int n;

	if (!dev)
		return;
	ok(filedisk_wake_fd() >= 0);
	drain(dev);
	filedisk_wake_clear();
	rec_init(&r, BLKDEV_READ, 0, 8, buf);
	ok_eq(blkdev_submit(dev, &r.req), 0);
	/* io_uring: the entry is handed to the kernel by the next poll; until then the loop
	 * must not sleep (filedisk_signals() false). */
	if (!filedisk_signals(dev))
		blkdev_poll(dev);
	ok(filedisk_signals(dev) || r.calls == 1);
	/* Sleep on the descriptor alone: the completion wakes it, well before 10 s. */
	p = (struct pollfd){ .fd = filedisk_wake_fd(), .events = POLLIN };
	n = r.calls ? 1 : poll(&p, 1, 10000);
	ok_eq(n, 1);
	filedisk_wake_clear();
	ok(drain(dev));
	ok(r.calls == 1 && r.rc == 0);
	/* Nothing in flight and the signal cleared: the descriptor is quiet. */
	p.revents = 0;
	ok_eq(poll(&p, 1, 0), 0);
	blkdev_destroy(dev);
}

TEST(wake_uring)
{
	wake(FILEDISK_IO_URING);
}

TEST(wake_pool)
{
	wake(FILEDISK_IO_POOL);
}

/* ---- done() submitting again, and destroy with requests in flight --------------------- */

struct chain {
	struct blkdev_req req;
	struct blkdev *dev;
	int left;
	int rc;
};

static void chain_done(struct blkdev_req *req, int rc)
{
	struct chain *c = req->priv;

	if (rc || --c->left == 0) {
		c->rc = rc;
		c->left = rc ? -1 : 0;
		return;
	}
	req->block++;
	/* The contract allows it: our slot is free again before done() runs. */
	c->rc = blkdev_submit(c->dev, req);
	if (c->rc)
		c->left = -1;
}

static void resubmit_and_destroy(enum filedisk_io io)
{
	struct blkdev *dev = open_dev(io, "chain.img");
	static uint8_t buf[BS], many[32][BS];
	struct chain c = { .left = 50 };
	struct rec r[32];
	unsigned i;

	if (!dev)
		return;
	c.dev = dev;
	c.req.op = BLKDEV_READ;
	c.req.count = 1;
	c.req.buf = buf;
	c.req.done = chain_done;
	c.req.priv = &c;
	ok_eq(blkdev_submit(dev, &c.req), 0);
	ok(drain(dev));
	ok(c.left == 0 && c.rc == 0);
	/* Destroyed with 32 requests in flight: each completes exactly once, inside destroy. */
	for (i = 0; i < 32; i++) {
		rec_init(&r[i], BLKDEV_READ, i * 3ull, 1, many[i]);
		ok_eq(blkdev_submit(dev, &r[i].req), 0);
	}
	blkdev_destroy(dev);
	for (i = 0; i < 32; i++)
		ok(r[i].calls == 1 && r[i].rc == 0);
}

TEST(resubmit_and_destroy_uring)
{
	resubmit_and_destroy(FILEDISK_IO_URING);
}

TEST(resubmit_and_destroy_pool)
{
	resubmit_and_destroy(FILEDISK_IO_POOL);
}

/* ---- io_uring: large writes done inside submit, and the back-off after one slept ------- */

#define LARGE_BLKS 512u /* 256 KiB: the sequential-write bench's request size */

/* Submit a write of @count blocks at @block from @buf; true when it was done inside submit
 * (its bytes are in the file through @other before any poll, and done() has not run). */
static bool write_in_submit(struct blkdev *dev, int other, uint64_t block, uint32_t count,
			    void *buf)
{
	size_t len = (size_t)count * BS;
	uint64_t before = filedisk_inline_writes(dev);
	uint8_t *back = malloc(len);
	struct rec r;
	bool in_submit;

	rec_init(&r, BLKDEV_WRITE, block, count, buf);
	if (!ok_eq(blkdev_submit(dev, &r.req), 0) || !ok(back)) {
		free(back);
		return false;
	}
	ok_eq(r.calls, 0); /* done() never runs inside submit */
	in_submit = filedisk_inline_writes(dev) == before + 1;
	if (in_submit)
		ok(pread(other, back, len, (off_t)(block * BS)) == (ssize_t)len &&
		   !memcmp(back, buf, len));
	else
		ok_eq(filedisk_inline_writes(dev), before);
	ok(drain(dev));
	ok(r.calls == 1 && r.rc == 0);
	ok(pread(other, back, len, (off_t)(block * BS)) == (ssize_t)len && !memcmp(back, buf, len));
	free(back);
	return in_submit;
}

TEST(large_writes_in_submit_uring)
{
	struct blkdev *dev = open_dev(FILEDISK_IO_URING, "inline.img");
	size_t big = 2048u * BS; /* 1 MiB */
	uint8_t *w = malloc(2 * big);
	int other = open(path_of("inline.img"), O_RDONLY | O_CLOEXEC);

	if (!dev || !ok(w && other >= 0))
		goto out;
	fill(w, 2 * big, 11);
	/* 4 KiB and 256 KiB: done in submit, the bytes in the file before the poll. */
	ok(write_in_submit(dev, other, 0, 8, w));
	ok(write_in_submit(dev, other, 8, LARGE_BLKS, w + 8 * BS));
	/* Up to 1 MiB in submit; past that the ring, as before. */
	ok(write_in_submit(dev, other, 1024, 2048, w));
	ok(!write_in_submit(dev, other, 4096, 4096, w));
	/* A large write that slept: the large ones after it take the ring until the back-off
	 * (100 ms here) is over; small ones stay in submit. */
	filedisk_inline_slept(dev, 100000000ull);
	ok(write_in_submit(dev, other, 0, LARGE_BLKS, w + big));
	ok(!write_in_submit(dev, other, LARGE_BLKS, LARGE_BLKS, w));
	ok(write_in_submit(dev, other, 2 * LARGE_BLKS, 8, w));
	ok(!write_in_submit(dev, other, 3 * LARGE_BLKS, 33, w));
	usleep(150000);
	ok(write_in_submit(dev, other, 4 * LARGE_BLKS, LARGE_BLKS, w + 3 * BS));
	ok(write_in_submit(dev, other, 5 * LARGE_BLKS, LARGE_BLKS, w + 5 * BS));
out:
	if (other >= 0)
		close(other);
	blkdev_destroy(dev);
	free(w);
}

/*
 * The back-off is started by a real sleep, not only the seam: a write whose source buffer is
 * a mapping of a file evicted from the page cache faults inside pwrite() and waits for the
 * disk. Skipped with a note where the pages cannot be evicted (tmpfs keeps them).
 */
TEST(write_that_sleeps_starts_backoff_uring)
{
	struct blkdev *dev = open_dev(FILEDISK_IO_URING, "sleepy.img");
	size_t len = (size_t)LARGE_BLKS * BS, page = (size_t)sysconf(_SC_PAGESIZE);
	uint8_t *w = malloc(len), *map = MAP_FAILED;
	unsigned char *resident = calloc(len / page, 1);
	int src = open(path_of("src.img"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int other = open(path_of("sleepy.img"), O_RDONLY | O_CLOEXEC);
	size_t i, in_cache = 0;

	if (!dev || !ok(w && resident && src >= 0 && other >= 0))
		goto out;
	fill(w, len, 21);
	ok(pwrite(src, w, len, 0) == (ssize_t)len);
	ok_eq(fsync(src), 0);
	ok_eq(posix_fadvise(src, 0, (off_t)len, POSIX_FADV_DONTNEED), 0);
	map = mmap(NULL, len, PROT_READ, MAP_SHARED, src, 0);
	if (!ok(map != MAP_FAILED) || !ok_eq(mincore(map, len, resident), 0))
		goto out;
	for (i = 0; i < len / page; i++)
		in_cache += resident[i] & 1;
	if (in_cache) {
		printf("  note: %zu of %zu source pages stay cached here: sleep not tested\n",
		       in_cache, len / page);
		goto out;
	}
	/* Done in submit (it waited for the disk there), and it started the back-off. */
	ok(write_in_submit(dev, other, 0, LARGE_BLKS, map));
	ok(!write_in_submit(dev, other, LARGE_BLKS, LARGE_BLKS, w));
out:
	if (map != MAP_FAILED)
		munmap(map, len);
	if (src >= 0)
		close(src);
	if (other >= 0)
		close(other);
	blkdev_destroy(dev);
	free(w);
	free(resident);
}

/* io_uring: a cached read of up to 1 MiB is done inside submit (done() still waits for the
 * poll); a larger one goes through the ring, as before. */
TEST(cached_reads_in_submit_uring)
{
	struct blkdev *dev = open_dev(FILEDISK_IO_URING, "cached.img");
	size_t len = 4096u * BS; /* 2 MiB */
	uint8_t *w = malloc(len), *rd = calloc(1, len);
	uint32_t sizes[] = { 8, 128, LARGE_BLKS, 2048, 4096 };
	struct rec r;

	if (!dev || !ok(w && rd))
		goto out;
	fill(w, len, 31);
	ok_eq(blkdev_write(dev, 0, 4096, w), 0); /* through pwrite: the pages are cached now */
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = (size_t)sizes[i] * BS;

		memset(rd, 0, len);
		rec_init(&r, BLKDEV_READ, 0, sizes[i], rd);
		ok_eq(blkdev_submit(dev, &r.req), 0);
		ok_eq(r.calls, 0);
		/* In submit up to 1 MiB: the bytes are there before any poll. */
		ok_eq(!memcmp(rd, w, n), sizes[i] <= 2048);
		ok(drain(dev));
		ok(r.calls == 1 && r.rc == 0 && !memcmp(rd, w, n));
	}
out:
	blkdev_destroy(dev);
	free(w);
	free(rd);
}

/* ---- WRITE payloads waiting in the transport's pipe (core/blkdev.h handle_writes) ------ */

/* A non-blocking pipe holding @len bytes of @bytes (as host/nbd_sock.c fills one). */
static bool pipe_with(int p[2], const uint8_t *bytes, size_t len)
{
	if (!ok_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0))
		return false;
	if (!ok(fcntl(p[1], F_SETPIPE_SZ, (int)len) >= (int)len) ||
	    !ok(write(p[1], bytes, len) == (ssize_t)len)) {
		close(p[0]);
		close(p[1]);
		return false;
	}
	return true;
}

static int pipe_left(int rfd)
{
	int n = -1;

	return ioctl(rfd, FIONREAD, &n) ? -1 : n;
}

/*
 * One in_handle WRITE of @count blocks at @block; its result, the bytes checked in the file
 * through @other. *@in_submit: the bytes were in the file before any poll. @scratch: the
 * request's buffer (the fallback), left as it is when the payload was spliced.
 */
static int handle_write(struct blkdev *dev, int other, uint64_t block, uint32_t count,
			const uint8_t *payload, size_t pipe_bytes, uint8_t *scratch,
			bool *in_submit)
{
	size_t len = (size_t)count * BS;
	uint8_t *back = malloc(len);
	struct rec r;
	int p[2], rc;

	if (!ok(back) || !pipe_with(p, payload, pipe_bytes)) {
		free(back);
		return -999;
	}
	rec_init(&r, BLKDEV_WRITE, block, count, scratch);
	r.req.in_handle = true;
	r.req.handle = p[0];
	rc = blkdev_submit(dev, &r.req);
	if (rc) {
		r.rc = rc;
		goto out;
	}
	ok_eq(r.calls, 0);
	*in_submit = pread(other, back, len, (off_t)(block * BS)) == (ssize_t)len &&
		     !memcmp(back, payload, len);
	ok(drain(dev));
	ok_eq(r.calls, 1);
	ok_eq(pipe_left(p[0]), 0); /* consumed before done() */
	if (!r.rc)
		ok(pread(other, back, len, (off_t)(block * BS)) == (ssize_t)len &&
		   !memcmp(back, payload, len));
out:
	close(p[0]);
	close(p[1]);
	free(back);
	return r.rc;
}

/*
 * The in_handle cases' set-up and tear-down: a fresh device on @io with handle_writes, its file
 * opened again read-only (@other: what reached the file), payload bytes (@w: LARGE_BLKS blocks
 * and one more, so that payloads can start a few bytes into it) filled from @seed, a scratch
 * buffer and a zeroed one (LARGE_BLKS blocks each). False when any of it is missing.
 */
struct handle_case {
	struct blkdev *dev;
	int other;
	size_t len; /* LARGE_BLKS blocks */
	uint8_t *w, *scratch, *zero;
};

static bool handle_case_open(struct handle_case *c, enum filedisk_io io, const char *name,
			     uint64_t seed)
{
	c->dev = open_dev(io, name);
	c->len = (size_t)LARGE_BLKS * BS;
	c->w = malloc(c->len + BS);
	c->scratch = calloc(1, c->len);
	c->zero = calloc(1, c->len);
	c->other = open(path_of(name), O_RDONLY | O_CLOEXEC);
	if (!c->dev || !ok(c->w && c->scratch && c->zero && c->other >= 0))
		return false;
	ok(c->dev->handle_writes);
	fill(c->w, c->len + BS, seed);
	return true;
}

static void handle_case_close(struct handle_case *c)
{
	if (c->other >= 0)
		close(c->other);
	blkdev_destroy(c->dev);
	free(c->w);
	free(c->scratch);
	free(c->zero);
}

TEST(pipe_payload_spliced_in_submit_uring)
{
	struct handle_case c;
	bool in_submit = false;
	uint64_t spliced, bounced;

	if (!handle_case_open(&c, FILEDISK_IO_URING, "splice.img", 41))
		goto out;
	spliced = filedisk_spliced_writes(c.dev);
	bounced = filedisk_handle_bounces(c.dev);
	/* 256 KiB: spliced into the file inside submit, the buffer never touched. */
	ok_eq(handle_write(c.dev, c.other, 64, LARGE_BLKS, c.w, c.len, c.scratch, &in_submit), 0);
	ok(in_submit);
	ok_eq(filedisk_spliced_writes(c.dev), spliced + 1);
	ok_eq(filedisk_handle_bounces(c.dev), bounced);
	ok(!memcmp(c.scratch, c.zero, c.len));
	/* 4 KiB too. */
	ok_eq(handle_write(c.dev, c.other, 3, 8, c.w + 77, 8 * BS, c.scratch, &in_submit), 0);
	ok(in_submit);
	ok_eq(filedisk_spliced_writes(c.dev), spliced + 2);
	/* The back-off after a write that slept: read into the buffer, written through the ring. */
	filedisk_inline_slept(c.dev, 100000000ull);
	ok_eq(handle_write(c.dev, c.other, 1024, LARGE_BLKS, c.w, c.len, c.scratch, &in_submit), 0);
	ok_eq(handle_write(c.dev, c.other, 2048, LARGE_BLKS, c.w + 5, c.len, c.scratch, &in_submit),
	      0);
	ok(!in_submit);
	ok_eq(filedisk_spliced_writes(c.dev), spliced + 3);
	ok_eq(filedisk_handle_bounces(c.dev), bounced + 1);
	ok(!memcmp(c.scratch, c.w + 5, c.len)); /* the bounce */
	usleep(150000);
	/* An injected error: the payload is still taken from the pipe, done() says -EIO. */
	filedisk_fail_nth(c.dev, BLKDEV_WRITE, 1, -EIO);
	ok_eq(handle_write(c.dev, c.other, 0, LARGE_BLKS, c.w, c.len, c.scratch, &in_submit), -EIO);
	/* A pipe holding less than the payload: -EIO from done(), no wait (it is non-blocking). */
	ok_eq(handle_write(c.dev, c.other, 0, LARGE_BLKS, c.w, c.len - 512, c.scratch, &in_submit),
	      -EIO);
	/* Held back by the delay seam: read into the buffer first, written when let go. */
	filedisk_delay_nth(c.dev, BLKDEV_WRITE, 1, 20000000ull);
	ok_eq(handle_write(c.dev, c.other, 4096, LARGE_BLKS, c.w + 9, c.len, c.scratch, &in_submit),
	      0);
	ok(!in_submit);
out:
	handle_case_close(&c);
}

/* The worker threads: the payload is read into the buffer and written from there. A device
 * without handle_writes (the synchronous backend) refuses such a request outright. */
TEST(pipe_payload_bounced_pool_and_refused_sync)
{
	struct handle_case c;
	bool in_submit = false;

	if (!handle_case_open(&c, FILEDISK_IO_POOL, "splice-pool.img", 43))
		goto out;
	ok_eq(handle_write(c.dev, c.other, 8, LARGE_BLKS, c.w, c.len, c.scratch, &in_submit), 0);
	ok_eq(filedisk_spliced_writes(c.dev), 0);
	ok_eq(filedisk_handle_bounces(c.dev), 1);
	blkdev_destroy(c.dev);
	c.dev = NULL;
	ok_eq(
	    filedisk_open_io(path_of("splice-sync.img"), BS, true, NBLK, FILEDISK_IO_SYNC, &c.dev),
	    0);
	if (!c.dev)
		goto out;
	ok(!c.dev->handle_writes);
	ok_eq(handle_write(c.dev, c.other, 8, LARGE_BLKS, c.w, c.len, c.scratch, &in_submit),
	      -EINVAL);
out:
	handle_case_close(&c);
}
