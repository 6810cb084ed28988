/* SPDX-License-Identifier: MIT */
/*
 * Segment-list WRITEs (core/blkdev.h "Segment lists"): the position helpers; a list through
 * blkdev_linear (two pieces), blkdev_slice and a thin volume reaches the data device as the
 * same bytes and as the caller's own pieces (no bounce), with pieces of odd lengths at odd
 * addresses straddling sector, piece and pool-block boundaries, 1, more than 8 and more than
 * 254 of them; the single fallback bounce for a device without seg_writes (synchronous and
 * asynchronous); refusals; the pool's provisioning, copy-on-write of a shared block and
 * partial-block writes from a list.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/perf.h"
#include "core/base/util.h"
#include "core/blkdev_linear.h"
#include "core/blkdev_slice.h"
#include "host/hostdev.h"
#include "tests/support/harness.h"
#include "tests/support/pool_test.h"

/* ---- The caller's pieces: carved out of one arena, with gaps, in order ---- */

#define ARENA  (4u << 20)
#define MAXSEG 4096

static uint8_t *arena;
static struct blkdev_seg segs[MAXSEG];

/*
 * Cut @len bytes of @data into pieces whose lengths cycle through @lens (@nlens of them),
 * each copied to a fresh odd address of the arena (3 bytes of gap after each). The number
 * of pieces.
 */
static uint32_t cut(const uint8_t *data, size_t len, const uint32_t *lens, unsigned nlens)
{
	size_t at = 1, pos = 0;
	uint32_t n = 0;

	while (pos < len && n < MAXSEG) {
		uint32_t k = (uint32_t)MIN((size_t)lens[n % nlens], len - pos);

		memcpy(arena + at, data + pos, k);
		segs[n].base = arena + at;
		segs[n].len = k;
		n++;
		pos += k;
		at += k + 3;
	}
	return n;
}

static bool in_arena(const void *p, size_t len)
{
	const uint8_t *b = p;

	return b >= arena && b + len <= arena + ARENA;
}

/* ---- A data device that takes lists, checks them and records what it saw ---- */

struct segdev {
	struct blkdev dev;
	struct blkdev *mem;
	struct blkdev_req *head, *tail;
	uint64_t seg_reqs, buf_writes; /* WRITEs with a list / with a buffer */
	uint64_t foreign;	       /* list pieces outside the caller's arena (a copy) */
	uint32_t max_segs;	       /* most pieces one request's payload touched */
};

static int sd_read(struct blkdev *dev, uint64_t b, uint32_t n, void *buf)
{
	return blkdev_read(container_of(dev, struct segdev, dev)->mem, b, n, buf);
}

static int sd_write(struct blkdev *dev, uint64_t b, uint32_t n, const void *buf)
{
	return blkdev_write(container_of(dev, struct segdev, dev)->mem, b, n, buf);
}

static int sd_flush(struct blkdev *dev)
{
	return blkdev_flush(container_of(dev, struct segdev, dev)->mem);
}

static int sd_zero(struct blkdev *dev, uint64_t b, uint32_t n)
{
	return blkdev_write_zeroes(container_of(dev, struct segdev, dev)->mem, b, n);
}

static int sd_submit(struct blkdev *dev, struct blkdev_req *req)
{
	struct segdev *sd = container_of(dev, struct segdev, dev);

	if (req->op == BLKDEV_WRITE && req->segs) {
		uint64_t bytes = (uint64_t)req->count * dev->block_size;
		uint32_t n = blkdev_segs_span(req->segs, req->nr_segs, req->seg_off, bytes);

		sd->seg_reqs++;
		sd->max_segs = MAX(sd->max_segs, n);
		for (uint32_t i = 0; i < n; i++)
			if (!in_arena(req->segs[i].base, req->segs[i].len))
				sd->foreign++;
	} else if (req->op == BLKDEV_WRITE) {
		sd->buf_writes++;
	}
	req->next = NULL;
	if (sd->tail)
		sd->tail->next = req;
	else
		sd->head = req;
	sd->tail = req;
	return 0;
}

static int sd_poll(struct blkdev *dev)
{
	struct segdev *sd = container_of(dev, struct segdev, dev);
	int n = 0;

	while (sd->head) {
		struct blkdev_req *r = sd->head;
		int rc;

		sd->head = r->next;
		if (!sd->head)
			sd->tail = NULL;
		rc = blkdev_run_req(sd->mem, r);
		r->done(r, rc);
		n++;
	}
	return n;
}

static const struct blkdev_ops sd_ops = {
	.read = sd_read,
	.write = sd_write,
	.flush = sd_flush,
	.write_zeroes = sd_zero,
	.submit = sd_submit,
	.poll = sd_poll,
};

static void sd_init(struct segdev *sd, uint64_t nr_blocks, uint32_t bs, bool seg_writes)
{
	memset(sd, 0, sizeof(*sd));
	sd->dev = (struct blkdev){ .ops = &sd_ops,
				   .name = "segdev",
				   .nr_blocks = nr_blocks,
				   .block_size = bs,
				   .seg_writes = seg_writes };
	memdisk_create(nr_blocks, bs, &sd->mem);
}

static void sd_fini(struct segdev *sd)
{
	blkdev_destroy(sd->mem);
}

/* ---- Submitting and waiting ---- */

static void wdone(struct blkdev_req *req, int rc)
{
	struct waiter *w = container_of(req, struct waiter, req);

	ok(!w->done); /* exactly once */
	w->done = true;
	w->rc = rc;
}

/* A list WRITE of @count blocks at @block (or, @bytes, a WRITE_BYTES at byte @block of @count
 * bytes) from segs[0..n) at @off; polls @d until done. The result, or the refusal. */
static int write_list(struct blkdev *d, uint64_t block, uint32_t count, uint32_t n, uint32_t off,
		      bool bytes)
{
	struct waiter w;
	int rc;

	memset(&w, 0, sizeof(w));
	w.req.op = bytes ? BLKDEV_WRITE_BYTES : BLKDEV_WRITE;
	if (bytes) {
		w.req.offset = block;
		w.req.length = count;
	} else {
		w.req.block = block;
		w.req.count = count;
	}
	w.req.segs = segs;
	w.req.nr_segs = n;
	w.req.seg_off = off;
	w.req.done = wdone;
	rc = blkdev_submit(d, &w.req);
	if (rc)
		return rc;
	for (int i = 0; i < 100000 && !w.done; i++)
		blkdev_poll(d);
	ok(w.done);
	return w.rc;
}

static uint8_t *pat(size_t len, uint64_t tag)
{
	uint8_t *p = malloc(len + 8);

	pattern(p, (len + 7) & ~(size_t)7, tag);
	return p;
}

/* ---- Cases ---- */

TEST(position_helpers)
{
	uint8_t data[100];
	uint8_t out[100];
	const uint32_t lens[] = { 1, 7, 30, 2 };
	const struct blkdev_seg *s;
	uint32_t n, nr, off;

	arena = calloc(1, ARENA);
	for (unsigned i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 1);
	n = cut(data, sizeof(data), lens, 4); /* 1,7,30,2,1,7,30,2,1,7,12 */
	ok_eq(n, 11);
	ok_eq(blkdev_segs_span(segs, n, 0, 100), 11);
	ok_eq(blkdev_segs_span(segs, n, 0, 101), 0); /* the list holds fewer */
	ok_eq(blkdev_segs_span(segs, n, 0, 8), 2);
	ok_eq(blkdev_segs_span(segs + 2, n - 2, 3, 27), 1);
	ok_eq(blkdev_segs_span(segs + 2, n - 2, 3, 28), 2);
	/* Advance 8: exactly to the start of the third piece. */
	s = segs;
	nr = n;
	off = 0;
	blkdev_segs_advance(&s, &nr, &off, 8);
	ok(s == &segs[2]);
	ok_eq(nr, 9);
	ok_eq(off, 0);
	blkdev_segs_advance(&s, &nr, &off, 29);
	ok(s == &segs[2]);
	ok_eq(off, 29);
	blkdev_segs_gather(out, s, nr, off, 100 - 37);
	ok(memcmp(out, data + 37, 100 - 37) == 0);
	blkdev_segs_gather(out, segs, n, 0, 100);
	ok(memcmp(out, data, 100) == 0);
	free(arena);
}

/* Through a linear device of two pieces over two list-taking devices, and a slice. */
static void linear_case(const uint32_t *lens, unsigned nlens, uint32_t blocks, uint64_t at,
			uint32_t min_segs)
{
	const uint32_t bs = 512;
	struct segdev a, b;
	struct blkdev *lin, *slice;
	struct blkdev_piece p[2];
	uint8_t *data = pat((size_t)blocks * bs, blocks + at), *back = malloc((size_t)blocks * bs);
	uint32_t n;

	sd_init(&a, 4096, bs, true);
	sd_init(&b, 4096, bs, true);
	p[0] = (struct blkdev_piece){ &a.dev, 100, 50 }; /* linear blocks 0..49 */
	p[1] = (struct blkdev_piece){ &b.dev, 7, 2000 }; /* linear blocks 50.. */
	ok_eq(blkdev_linear_create(p, 2, &lin), 0);
	ok(lin->seg_writes);
	n = cut(data, (size_t)blocks * bs, lens, nlens);
	ok(n >= min_segs);
	ok_eq(write_list(lin, at, blocks, n, 0, false), 0);
	ok_eq(blkdev_read(lin, at, blocks, back), 0);
	ok(memcmp(back, data, (size_t)blocks * bs) == 0);
	ok_eq(a.buf_writes + b.buf_writes, 0); /* never bounced */
	ok_eq(a.foreign + b.foreign, 0);
	ok(a.seg_reqs + b.seg_reqs >= 1);
	/* The same bytes again through a slice of the linear device, starting mid-piece. */
	ok_eq(blkdev_slice_create(lin, 10, 1000, &slice), 0);
	pattern(data, (size_t)blocks * bs, 77 + blocks);
	n = cut(data, (size_t)blocks * bs, lens, nlens);
	ok_eq(write_list(slice, at, blocks, n, 0, false), 0);
	ok_eq(blkdev_read(lin, at + 10, blocks, back), 0);
	ok(memcmp(back, data, (size_t)blocks * bs) == 0);
	ok_eq(a.buf_writes + b.buf_writes, 0);
	ok_eq(a.foreign + b.foreign, 0);
	blkdev_destroy(slice);
	blkdev_destroy(lin);
	sd_fini(&a);
	sd_fini(&b);
	free(data);
	free(back);
}

TEST(linear_and_slice_pass_lists_down)
{
	static const uint32_t one[] = { 1u << 20 };
	static const uint32_t odd[] = { 1, 511, 513, 7, 1460, 3, 1000 };
	static const uint32_t mss[] = { 1460 };
	static const uint32_t tiny[] = { 3, 5, 11 };

	arena = calloc(1, ARENA);
	linear_case(one, 1, 8, 3, 1);	  /* one piece, inside the first lower device */
	linear_case(one, 1, 8, 46, 1);	  /* one piece across the two lower devices */
	linear_case(odd, 7, 40, 30, 9);	  /* > 8 odd pieces across sectors and devices */
	linear_case(mss, 1, 128, 20, 45); /* 64 KiB in 1460-byte pieces: 45 */
	linear_case(tiny, 3, 8, 45, 255); /* > 254 pieces */
	free(arena);
}

TEST(fallback_bounces_once)
{
	static const uint32_t odd[] = { 1, 511, 513, 7, 1460, 3, 1000 };
	struct segdev async_nolist;
	struct blkdev *mem;
	uint8_t *data = pat(64 * 512, 5), *back = malloc(64 * 512);
	uint32_t n;
	uint64_t before;

	arena = calloc(1, ARENA);
	n = cut(data, 64 * 512, odd, 7);
	/* A synchronous device (memdisk, no submit): gathered, written, done() at once. */
	ok_eq(memdisk_create(256, 512, &mem), 0);
	ok(!mem->seg_writes);
	before = perf_payload.write_copied;
	ok_eq(write_list(mem, 9, 64, n, 0, false), 0);
	ok_eq(perf_payload.write_copied - before, 64 * 512);
	ok_eq(blkdev_read(mem, 9, 64, back), 0);
	ok(memcmp(back, data, 64 * 512) == 0);
	/* An asynchronous device without seg_writes: it sees one buffer, never the list. */
	n = cut(data, 64 * 512, odd + 2, 5); /* segs[0] is 513 bytes: start 5 bytes in */
	sd_init(&async_nolist, 256, 512, false);
	before = perf_payload.write_copied;
	ok_eq(write_list(&async_nolist.dev, 100, 63, n, 5, false), 0);
	ok_eq(perf_payload.write_copied - before, 63 * 512);
	ok_eq(async_nolist.seg_reqs, 0);
	ok_eq(async_nolist.buf_writes, 1);
	ok_eq(blkdev_read(async_nolist.mem, 100, 63, back), 0);
	ok(memcmp(back, data + 5, 63 * 512) == 0);
	/* Refusals: a list shorter than the payload, a list on READ, an offset past segs[0]. */
	n = cut(data, 64 * 512, odd, 7);
	ok_eq(write_list(mem, 0, 65, n, 0, false), -EINVAL);
	ok_eq(write_list(mem, 0, 1, n, 1, false), -EINVAL); /* segs[0] is 1 byte long */
	ok_eq(write_list(mem, 0, 1, 0, 0, false), -EINVAL);
	{
		struct waiter w;

		memset(&w, 0, sizeof(w));
		w.req.op = BLKDEV_READ;
		w.req.count = 1;
		w.req.segs = segs;
		w.req.nr_segs = n;
		w.req.done = wdone;
		ok_eq(blkdev_submit(mem, &w.req), -EINVAL);
		ok(!w.done);
	}
	blkdev_destroy(mem);
	sd_fini(&async_nolist);
	free(data);
	free(back);
	free(arena);
}

/* A pool on a list-taking data disk (512-byte sectors, 64 KiB pool blocks). */
struct lpool {
	struct blkdev *meta;
	struct segdev data;
	struct thin_pool *pool;
	struct thin_volume *vol, *snap;
	struct blkdev *v, *s;
};

static void lpool_open(struct lpool *lp, bool zero_new)
{
	struct thin_pool_opts o;

	memset(lp, 0, sizeof(*lp));
	thin_pool_default_opts(&o);
	o.zero_new_blocks = zero_new;
	ok_eq(memdisk_create(1024, 4096, &lp->meta), 0);
	sd_init(&lp->data, 64 * KB64 / 512, 512, true);
	ok_eq(thin_pool_format(lp->meta, &lp->data.dev, &o, false), 0);
	ok_eq(thin_pool_open(lp->meta, &lp->data.dev, &o, NULL, 0, &lp->pool), 0);
	lp->v = pool_vol_open(lp->pool, 1, 16 * KB64, &lp->vol);
	ok(lp->v && lp->v->seg_writes);
}

static void lpool_close(struct lpool *lp)
{
	if (lp->snap)
		thin_volume_close(lp->snap);
	thin_volume_close(lp->vol);
	ok_eq(thin_pool_close(lp->pool), 0);
	sd_fini(&lp->data);
	blkdev_destroy(lp->meta);
}

static void pool_case(bool zero_new)
{
	static const uint32_t mss[] = { 1460 };
	static const uint32_t odd[] = { 1, 511, 513, 7, 1460, 3, 1000 };
	const size_t len = 4 * KB64;
	uint8_t *data = pat(len, 9), *back = malloc(len), *old = malloc(len), *snap = malloc(len);
	struct lpool lp;
	uint64_t copied;
	uint32_t n;

	arena = calloc(1, ARENA);
	lpool_open(&lp, zero_new);
	/* Provisioning: four whole pool blocks, 1460-byte pieces straddling their boundaries. */
	copied = perf_payload.write_copied;
	n = cut(data, len, mss, 1);
	ok_eq(write_list(lp.v, 0, (uint32_t)(len / 512), n, 0, false), 0);
	ok_eq(perf_payload.write_copied, copied); /* no copy anywhere */
	ok_eq(lp.data.buf_writes, 0);
	ok_eq(lp.data.foreign, 0);
	ok_eq(lp.data.seg_reqs, 4); /* one per pool block */
	ok(lp.data.max_segs >= 45 && lp.data.max_segs <= 47);
	ok_eq(blkdev_read(lp.v, 0, (uint32_t)(len / 512), back), 0);
	ok(memcmp(back, data, len) == 0);
	/* In place (mapped, not shared), sector-aligned but not block-aligned: still no copy. */
	pattern(data, len, 10);
	n = cut(data, 3 * KB64, odd, 7);
	ok_eq(write_list(lp.v, 17, 3 * KB64 / 512, n, 0, false), 0);
	ok_eq(perf_payload.write_copied, copied);
	ok_eq(lp.data.buf_writes, 0);
	ok_eq(blkdev_read(lp.v, 17, 3 * KB64 / 512, back), 0);
	ok(memcmp(back, data, 3 * KB64) == 0);
	/* A snapshot makes the blocks shared: copy-on-write of partial blocks from a list
	 * (WRITE_BYTES at an odd offset), the old block's other bytes kept. */
	ok_eq(blkdev_read(lp.v, 0, (uint32_t)(len / 512), old), 0);
	ok_eq(thin_pool_create_snap(lp.pool, 2, 1), 0);
	memcpy(snap, old, len);
	pattern(data, len, 11);
	n = cut(data, KB64 + 1001, odd, 7);
	ok_eq(write_list(lp.v, KB64 - 333, KB64 + 1001, n, 0, true), 0);
	ok(perf_payload.write_copied > copied); /* the partial blocks are gathered */
	memcpy(old + KB64 - 333, data, KB64 + 1001);
	ok_eq(blkdev_read(lp.v, 0, (uint32_t)(len / 512), back), 0);
	ok(memcmp(back, old, len) == 0);
	/* The snapshot still has the bytes of before. */
	lp.s = pool_vol_open(lp.pool, 2, 16 * KB64, &lp.snap);
	ok_eq(blkdev_read(lp.s, 0, (uint32_t)(len / 512), back), 0);
	ok(memcmp(back, snap, len) == 0);
	/* Provisioning a partial block (unmapped, odd offset and length) from a list. */
	pattern(data, len, 12);
	n = cut(data, 5000, odd, 7);
	ok_eq(write_list(lp.v, 9 * KB64 + 77, 5000, n, 0, true), 0);
	ok_eq(blkdev_read(lp.v, 9 * KB64 / 512, KB64 / 512, back), 0);
	ok(memcmp(back + 77, data, 5000) == 0);
	ok(all_bytes(back, 77, 0));
	if (zero_new)
		ok(all_bytes(back + 77 + 5000, KB64 - 77 - 5000, 0));
	/* A whole shared block overwritten from a list: the copy-on-write copies nothing. */
	copied = perf_payload.write_copied;
	pattern(data, len, 13);
	n = cut(data, KB64, mss, 1);
	ok_eq(write_list(lp.s, 2 * KB64 / 512, KB64 / 512, n, 0, false), 0);
	ok_eq(perf_payload.write_copied, copied);
	ok_eq(blkdev_read(lp.s, 2 * KB64 / 512, KB64 / 512, back), 0);
	ok(memcmp(back, data, KB64) == 0);
	lpool_close(&lp);
	free(data);
	free(back);
	free(old);
	free(snap);
	free(arena);
}

TEST(pool_provision_in_place_and_cow_from_lists)
{
	pool_case(true);
	pool_case(false);
}
