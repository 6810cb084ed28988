/* SPDX-License-Identifier: MIT */
/*
 * The thin pool's memory on the data path (docs/thin-pool.md "Memory"): after a warm-up,
 * rounds of pipelined requests through a volume, of every kind (READ of mapped blocks and
 * holes; WRITE to new blocks, partial (zero fill) and whole; WRITE in place, aligned and a
 * byte-granular read-modify-write; copy-on-write of blocks shared with a snapshot;
 * WRITE_ZEROES; DISCARD with passdown; FLUSH with its commit) make no heap allocation at
 * all, counted for the whole process by the sanitizer's malloc hook. The snapshot is made
 * and deleted between the counted batches (admin calls allocate). Closing the pool gives
 * back what its free lists hold (allocations and frees balance).
 */
#include "tests/support/alloc_count.h"
#include "tests/support/pool_test.h"

#define VOL_BLOCKS 16 /* data blocks of 64 KiB */
#define MAXQ	   64
#define SECTORS	   (KB64 / 512)

struct batch {
	struct waiter w[MAXQ];
	unsigned n;
	unsigned long allocs; /* made by the counted batches so far */
};

static uint8_t wbuf[KB64], rbuf[MAXQ][KB64];

/* Queue one request of the batch (nothing is polled until batch_run()). */
static void q(struct batch *b, struct blkdev *d, enum blkdev_op op, uint64_t block, uint32_t count,
	      void *buf)
{
	if (!ok(b->n < MAXQ))
		return;
	ok_eq(waiter_submit(d, &b->w[b->n++], op, block, count, buf), 0);
}

static void bytes_done(struct blkdev_req *req, int rc)
{
	struct waiter *w = container_of(req, struct waiter, req);

	w->rc = rc;
	w->done = true;
}

static void q_bytes(struct batch *b, struct blkdev *d, uint64_t offset, uint32_t length)
{
	struct waiter *w;

	if (!ok(b->n < MAXQ))
		return;
	w = &b->w[b->n++];
	memset(w, 0, sizeof(*w));
	w->req.op = BLKDEV_WRITE_BYTES;
	w->req.offset = offset;
	w->req.length = length;
	w->req.buf = wbuf;
	w->req.done = bytes_done;
	ok_eq(blkdev_submit(d, &w->req), 0);
}

/* Poll the pool until every queued request completed; all must succeed. */
static void batch_wait(struct batch *b, struct thin_pool *pool)
{
	bool all = false;

	for (unsigned spin = 0; spin < 100000 && !all; spin++) {
		thin_pool_poll(pool);
		all = true;
		for (unsigned i = 0; i < b->n; i++)
			all = all && b->w[i].done;
	}
	ok(all);
	for (unsigned i = 0; i < b->n; i++)
		ok_eq(b->w[i].rc, 0);
	b->n = 0;
}

/*
 * One round; the allocations made while its batches are submitted and completed are added
 * to b->allocs (not those of the snapshot's create and delete between them).
 */
static void round_run(struct batch *b, struct tpool *t, struct blkdev *d, unsigned k)
{
	unsigned long a0;
	unsigned i;

	/* New blocks: 4 KiB inside blocks 0-7 (zero fill), whole blocks 8-11. */
	a0 = alloc_count();
	for (i = 0; i < 8; i++)
		q(b, d, BLKDEV_WRITE, i * SECTORS + 8 * (k % 8), 8, wbuf);
	for (i = 8; i < 12; i++)
		q(b, d, BLKDEV_WRITE, i * SECTORS, SECTORS, wbuf);
	batch_wait(b, t->pool);
	/* READ: mapped blocks (4 KiB and whole) and holes (12-15). */
	for (i = 0; i < 16; i++)
		q(b, d, BLKDEV_READ, i * SECTORS + 8 * i, 8, rbuf[i]);
	for (i = 0; i < 4; i++)
		q(b, d, BLKDEV_READ, (8 + i) * SECTORS, SECTORS, rbuf[16 + i]);
	batch_wait(b, t->pool);
	/* In place: aligned writes, unaligned byte writes (read-modify-write), WRITE_ZEROES of a
	 * piece, then a FLUSH behind them (a commit). */
	for (i = 0; i < 8; i++)
		q(b, d, BLKDEV_WRITE, i * SECTORS + 16, 8, wbuf);
	for (i = 0; i < 4; i++)
		q_bytes(b, d, (uint64_t)(8 + i) * KB64 + 1000 + 7 * k, 3000);
	q(b, d, BLKDEV_WRITE_ZEROES, 11 * SECTORS + 32, 8, NULL);
	q(b, d, BLKDEV_FLUSH, 0, 0, NULL);
	batch_wait(b, t->pool);
	b->allocs += alloc_count() - a0;

	/* Copy-on-write: blocks 0-7 shared with a snapshot, written partially and whole. */
	ok_eq(thin_pool_create_snap(t->pool, 2, 1), 0);
	a0 = alloc_count();
	for (i = 0; i < 4; i++)
		q(b, d, BLKDEV_WRITE, i * SECTORS + 24, 8, wbuf);
	for (i = 4; i < 8; i++)
		q(b, d, BLKDEV_WRITE, i * SECTORS, SECTORS, wbuf);
	batch_wait(b, t->pool);
	b->allocs += alloc_count() - a0;
	ok_eq(thin_pool_delete_thin(t->pool, 2), 0);

	/* DISCARD everything (passdown after the commit), FLUSH: the blocks come back. */
	a0 = alloc_count();
	for (i = 0; i < VOL_BLOCKS; i++)
		q(b, d, BLKDEV_DISCARD, i * SECTORS, SECTORS, NULL);
	q(b, d, BLKDEV_FLUSH, 0, 0, NULL);
	batch_wait(b, t->pool);
	/* The passdowns the commit started complete. */
	for (unsigned spin = 0; spin < 1000 && thin_pool_busy(t->pool); spin++)
		thin_pool_poll(t->pool);
	b->allocs += alloc_count() - a0;
}

TEST(steady_state_requests_allocate_nothing)
{
	static struct batch b;
	struct thin_pool_opts o;
	struct oodev oo;
	struct blkdev *meta, *lower, *d;
	struct thin_pool *pool;
	struct thin_volume *vol;
	struct tpool t;
	unsigned long a0, f0;

	thin_pool_default_opts(&o);
	o.discard_passdown = true;
	/* A small metadata cache: it fills (one buffer per slot, kept) during the warm-up. */
	o.meta_cache_blocks = 64;
	pattern(wbuf, sizeof(wbuf), 3);
	a0 = alloc_count();
	f0 = free_count();
	if (!ok_eq(memdisk_create(1024, 4096, &meta), 0) ||
	    !ok_eq(memdisk_create(64 * SECTORS, 512, &lower), 0))
		return;
	/* Requests complete out of order, some time after they were submitted: they overlap. */
	oodev_init(&oo, lower, 14);
	if (!ok_eq(thin_pool_format(meta, &oo.dev, &o, false), 0) ||
	    !ok_eq(thin_pool_open(meta, &oo.dev, &o, NULL, 0, &pool), 0))
		return;
	memset(&t, 0, sizeof(t));
	t.pool = pool;
	d = pool_vol_open(pool, 1, (uint64_t)VOL_BLOCKS * KB64, &vol);
	if (!d)
		return;
	for (unsigned k = 0; k < 3; k++)
		round_run(&b, &t, d, k);
	b.allocs = 0;
	for (unsigned k = 0; k < 20; k++)
		round_run(&b, &t, d, k);
	if (!ok_eq(b.allocs, 0))
		printf("# %lu allocations in 20 rounds of pipelined requests\n", b.allocs);
	ok(oo.max_depth > 1); /* the requests did overlap on the data disk */
	thin_volume_close(vol);
	ok_eq(thin_pool_close(pool), 0);
	ok_eq(check_dev(meta), 0);
	blkdev_destroy(lower);
	blkdev_destroy(meta);
	/* check_dev() allocates and frees too: what matters is that nothing stays. */
	ok_eq(alloc_count() - a0, free_count() - f0);
}
