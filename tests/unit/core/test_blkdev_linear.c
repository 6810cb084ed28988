/* SPDX-License-Identifier: MIT */
/*
 * core/blkdev_linear: creation rules, offsets of pieces out of order and across two lower
 * devices, bounds, every op split at piece ends, flush of each lower device once,
 * asynchronous requests split into children and completed once (errors, refusals, full
 * pools), and a thin pool on 3-piece devices.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "core/blkdev_linear.h"
#include "core/blkdev_slice.h"
#include "host/hostdev.h"
#include "tests/support/harness.h"
#include "tests/support/pool_test.h"

#define BS 4096u

/* Block @b of a memory disk tagged: its first 8 bytes hold @tag. */
static void put_tag(struct blkdev *d, uint64_t b, uint64_t tag)
{
	uint8_t buf[BS];

	memset(buf, 0, sizeof(buf));
	memcpy(buf, &tag, sizeof(tag));
	blkdev_write(d, b, 1, buf);
}

static uint64_t get_tag(struct blkdev *d, uint64_t b)
{
	uint8_t buf[BS];
	uint64_t tag = ~0ull;

	if (blkdev_read(d, b, 1, buf) == 0)
		memcpy(&tag, buf, sizeof(tag));
	return tag;
}

static void tags(uint8_t *buf, uint64_t first, unsigned n)
{
	memset(buf, 0, (size_t)n * BS);
	for (unsigned i = 0; i < n; i++) {
		uint64_t t = 1000 + first + i;

		memcpy(buf + (size_t)i * BS, &t, sizeof(t));
	}
}

TEST(create_rules)
{
	struct blkdev *a, *b, *small, *l;
	struct blkdev huge = { .nr_blocks = UINT64_MAX, .block_size = BS };

	ok_eq(memdisk_create(64, BS, &a), 0);
	ok_eq(memdisk_create(32, BS, &b), 0);
	ok_eq(memdisk_create(64, 512, &small), 0);
	{
		struct blkdev_piece p[2] = { { a, 0, 8 }, { b, 0, 8 } };

		ok_eq(blkdev_linear_create(p, 0, &l), -EINVAL);
		ok_eq(blkdev_linear_create(NULL, 1, &l), -EINVAL);
		ok_eq(blkdev_linear_create(p, BLKDEV_LINEAR_MAX_PIECES + 1, &l), -EINVAL);
		p[1].lower = NULL;
		ok_eq(blkdev_linear_create(p, 2, &l), -EINVAL);
		p[1] = (struct blkdev_piece){ b, 0, 0 }; /* empty */
		ok_eq(blkdev_linear_create(p, 2, &l), -EINVAL);
		p[1] = (struct blkdev_piece){ b, 30, 3 }; /* past the end of b */
		ok_eq(blkdev_linear_create(p, 2, &l), -EINVAL);
		p[1] = (struct blkdev_piece){ b, UINT64_MAX, 2 };
		ok_eq(blkdev_linear_create(p, 2, &l), -EINVAL);
		p[1] = (struct blkdev_piece){ small, 0, 8 }; /* another block size */
		ok_eq(blkdev_linear_create(p, 2, &l), -EINVAL);
		p[0] = (struct blkdev_piece){ &huge, 0, UINT64_MAX };
		p[1] = (struct blkdev_piece){ &huge, 0, 1 }; /* the sum overflows */
		ok_eq(blkdev_linear_create(p, 2, &l), -EINVAL);
	}
	{
		struct blkdev_piece p[3] = { { a, 60, 4 }, { b, 0, 32 }, { a, 0, 10 } };

		ok_eq(blkdev_linear_create(p, 3, &l), 0);
		ok_eq(l->nr_blocks, 46);
		ok_eq(l->block_size, BS);
		ok(!l->read_only);
		ok(l->discard_zeroes);
		ok(l->name && strstr(l->name, "memdisk"));
		ok(l->ops->submit == NULL); /* no lower has one: blkdev_submit()'s fallback */
		blkdev_destroy(l);
		/* read_only if any lower is; discard_zeroes only if all are. */
		a->read_only = true; /* the first lower: the others must not undo it */
		a->discard_zeroes = false;
		ok_eq(blkdev_linear_create(p, 3, &l), 0);
		ok(l->read_only);
		ok(!l->discard_zeroes);
		ok_eq(blkdev_write(l, 0, 1, (uint8_t[BS]){ 0 }), -EROFS);
		blkdev_destroy(l);
		a->read_only = false;
		a->discard_zeroes = true;
	}
	{
		/* The most pieces, each one block of a. */
		struct blkdev_piece p[BLKDEV_LINEAR_MAX_PIECES];

		for (unsigned i = 0; i < BLKDEV_LINEAR_MAX_PIECES; i++)
			p[i] = (struct blkdev_piece){ a, 63 - i, 1 };
		ok_eq(blkdev_linear_create(p, BLKDEV_LINEAR_MAX_PIECES, &l), 0);
		put_tag(l, 0, 77);
		ok_eq(get_tag(a, 63), 77);
		put_tag(l, 63, 78);
		ok_eq(get_tag(a, 0), 78);
		blkdev_destroy(l);
	}
	blkdev_destroy(small);
	blkdev_destroy(b);
	blkdev_destroy(a);
}

/*
 * Pieces out of order on one disk and across two: every block of the linear device lands
 * where the pieces say, nothing else is touched, and reads and writes span 2 and 3 pieces.
 */
TEST(offsets_out_of_order_and_across_two_lowers)
{
	struct blkdev *a, *b, *l;
	/* linear 0-3 = a 40-43, 4-6 = b 5-7, 7-11 = a 10-14, 12-13 = a 0-1 */
	struct blkdev_piece p[4] = {
		{ NULL, 40, 4 }, { NULL, 5, 3 }, { NULL, 10, 5 }, { NULL, 0, 2 }
	};
	static const struct {
		int on_b;
		uint64_t block;
	} where[14] = { { 0, 40 }, { 0, 41 }, { 0, 42 }, { 0, 43 }, { 1, 5 },  { 1, 6 }, { 1, 7 },
			{ 0, 10 }, { 0, 11 }, { 0, 12 }, { 0, 13 }, { 0, 14 }, { 0, 0 }, { 0, 1 } };
	uint8_t *buf = malloc(14 * BS), *chk = malloc(14 * BS);

	ok_eq(memdisk_create(64, BS, &a), 0);
	ok_eq(memdisk_create(16, BS, &b), 0);
	p[0].lower = p[2].lower = p[3].lower = a;
	p[1].lower = b;
	ok_eq(blkdev_linear_create(p, 4, &l), 0);
	ok_eq(l->nr_blocks, 14);
	ok(l->name && strstr(l->name, "linear(4)"));

	/* One write of the whole device: each block at its place. */
	tags(buf, 0, 14);
	ok_eq(blkdev_write(l, 0, 14, buf), 0);
	for (unsigned i = 0; i < 14; i++)
		if (!ok_eq(get_tag(where[i].on_b ? b : a, where[i].block), 1000 + i))
			printf("  linear block %u\n", i);
	/* Nothing outside the pieces was written. */
	for (uint64_t i = 0; i < 64; i++)
		if ((i >= 2 && i < 10) || (i >= 15 && i < 40) || i >= 44)
			ok_eq(get_tag(a, i), 0);
	for (uint64_t i = 0; i < 16; i++)
		if (i < 5 || i >= 8)
			ok_eq(get_tag(b, i), 0);

	/* Reads spanning 2 pieces (3-4: a then b) and 3 pieces (2-8: a, b, a). */
	ok_eq(blkdev_read(l, 3, 2, chk), 0);
	ok(!memcmp(chk, buf + 3 * BS, 2 * BS));
	ok_eq(blkdev_read(l, 2, 7, chk), 0);
	ok(!memcmp(chk, buf + 2 * BS, 7 * BS));
	/* A write spanning 3 pieces (6-12: b, a, a), then read whole. */
	tags(buf + 6 * BS, 500, 7);
	ok_eq(blkdev_write(l, 6, 7, buf + 6 * BS), 0);
	ok_eq(get_tag(b, 7), 1500);
	ok_eq(get_tag(a, 10), 1501);
	ok_eq(get_tag(a, 14), 1505);
	ok_eq(get_tag(a, 0), 1506);
	ok_eq(get_tag(a, 1), 1013);
	ok_eq(blkdev_read(l, 0, 14, chk), 0);
	ok(!memcmp(chk, buf, 14 * BS));
	/* Reads see the lower devices at the offsets. */
	put_tag(b, 5, 4242);
	ok_eq(get_tag(l, 4), 4242);

	blkdev_destroy(l);
	blkdev_destroy(b);
	blkdev_destroy(a);
	free(buf);
	free(chk);
}

/* Out of range: -EINVAL before any lower device sees a call (faultdev counts them). */
TEST(out_of_range_reaches_no_lower)
{
	struct blkdev *ma, *mb, *a, *b, *l;
	uint8_t buf[2 * BS] = { 0 };

	ok_eq(memdisk_create(16, BS, &ma), 0);
	ok_eq(memdisk_create(16, BS, &mb), 0);
	ok_eq(faultdev_create(ma, &a), 0);
	ok_eq(faultdev_create(mb, &b), 0);
	{
		struct blkdev_piece p[3] = { { a, 8, 4 }, { b, 0, 4 }, { a, 0, 4 } };

		ok_eq(blkdev_linear_create(p, 3, &l), 0);
	}
	ok_eq(blkdev_write(l, 11, 2, buf), -EINVAL);
	ok_eq(blkdev_write(l, 12, 1, buf), -EINVAL);
	ok_eq(blkdev_read(l, 11, 2, buf), -EINVAL);
	ok_eq(blkdev_read(l, UINT64_MAX, 1, buf), -EINVAL);
	ok_eq(blkdev_read(l, 0, 0, buf), -EINVAL);
	ok_eq(blkdev_discard(l, 10, 3), -EINVAL);
	ok_eq(blkdev_write_zeroes(l, 0, 13), -EINVAL);
	{
		struct waiter w;

		ok_eq(waiter_submit(l, &w, BLKDEV_WRITE, 12, 1, buf), -EINVAL);
		ok(!w.done);
	}
	ok_eq(faultdev_count(a, BLKDEV_READ) + faultdev_count(a, BLKDEV_WRITE), 0);
	ok_eq(faultdev_count(b, BLKDEV_READ) + faultdev_count(b, BLKDEV_WRITE), 0);
	/* The last block is fine: piece 2's last, a's block 3. */
	put_tag(l, 11, 99);
	ok_eq(get_tag(ma, 3), 99);
	ok_eq(faultdev_count(a, BLKDEV_WRITE), 1);
	ok_eq(faultdev_count(b, BLKDEV_WRITE), 0);
	blkdev_destroy(l);
	blkdev_destroy(b);
	blkdev_destroy(a);
	blkdev_destroy(mb);
	blkdev_destroy(ma);
}

/* flush: every distinct lower device once, all of them after an error too, first error. */
TEST(flush_reaches_every_lower_once)
{
	struct blkdev *ma, *mb, *a, *b, *l;

	ok_eq(memdisk_create(16, BS, &ma), 0);
	ok_eq(memdisk_create(16, BS, &mb), 0);
	ok_eq(faultdev_create(ma, &a), 0);
	ok_eq(faultdev_create(mb, &b), 0);
	{
		struct blkdev_piece p[4] = { { a, 8, 4 }, { b, 0, 4 }, { a, 0, 4 }, { b, 8, 1 } };

		ok_eq(blkdev_linear_create(p, 4, &l), 0);
	}
	ok_eq(blkdev_flush(l), 0);
	ok_eq(faultdev_count(a, BLKDEV_FLUSH), 1);
	ok_eq(faultdev_count(b, BLKDEV_FLUSH), 1);
	/* a fails: b is flushed all the same, and the error is returned. */
	faultdev_fail_nth(a, BLKDEV_FLUSH, 1, false);
	ok_eq(blkdev_flush(l), -EIO);
	ok_eq(faultdev_count(a, BLKDEV_FLUSH), 2);
	ok_eq(faultdev_count(b, BLKDEV_FLUSH), 2);
	/* b fails: its error, a flushed once. */
	faultdev_fail_nth(b, BLKDEV_FLUSH, 1, false);
	ok_eq(blkdev_flush(l), -EIO);
	ok_eq(faultdev_count(a, BLKDEV_FLUSH), 3);
	ok_eq(faultdev_count(b, BLKDEV_FLUSH), 3);
	/* A FLUSH request through blkdev_submit()'s fallback: the same. */
	{
		struct waiter w;

		ok_eq(waiter_submit(l, &w, BLKDEV_FLUSH, 0, 0, NULL), 0);
		ok(w.done);
		ok_eq(w.rc, 0);
		ok_eq(faultdev_count(a, BLKDEV_FLUSH), 4);
		ok_eq(faultdev_count(b, BLKDEV_FLUSH), 4);
	}
	/* A read error in the middle of a spanning read stops it there. */
	faultdev_fail_nth(b, BLKDEV_READ, 1, false);
	{
		uint8_t buf[6 * BS];

		ok_eq(blkdev_read(l, 2, 6, buf), -EIO);
		ok_eq(faultdev_count(a, BLKDEV_READ), 1);
		ok_eq(faultdev_count(b, BLKDEV_READ), 1);
	}
	blkdev_destroy(l);
	blkdev_destroy(b);
	blkdev_destroy(a);
	blkdev_destroy(mb);
	blkdev_destroy(ma);
}

/* discard and write_zeroes are cut at piece ends too; a lower without them: -EOPNOTSUPP. */
TEST(discard_and_write_zeroes_split)
{
	struct blkdev *a, *b, *fb, *l;
	struct blkdev_piece p[3] = { { NULL, 20, 4 }, { NULL, 2, 4 }, { NULL, 0, 4 } };
	uint8_t buf[12 * BS];

	ok_eq(memdisk_create(32, BS, &a), 0);
	ok_eq(memdisk_create(8, BS, &b), 0);
	p[0].lower = p[2].lower = a;
	p[1].lower = b;
	ok_eq(blkdev_linear_create(p, 3, &l), 0);
	tags(buf, 0, 12);
	ok_eq(blkdev_write(l, 0, 12, buf), 0);
	/* Discard linear 2-9: a 22-23, b 2-5, a 0-1. */
	ok_eq(blkdev_discard(l, 2, 8), 0);
	ok_eq(get_tag(a, 21), 1001);
	ok_eq(get_tag(a, 22), 0);
	ok_eq(get_tag(a, 23), 0);
	for (uint64_t i = 2; i < 6; i++)
		ok_eq(get_tag(b, i), 0);
	ok_eq(get_tag(a, 0), 0);
	ok_eq(get_tag(a, 1), 0);
	ok_eq(get_tag(a, 2), 1010);
	ok_eq(blkdev_write(l, 0, 12, buf), 0);
	/* Write zeroes linear 3-4: a 23, b 2. */
	ok_eq(blkdev_write_zeroes(l, 3, 2), 0);
	ok_eq(get_tag(a, 22), 1002);
	ok_eq(get_tag(a, 23), 0);
	ok_eq(get_tag(b, 2), 0);
	ok_eq(get_tag(b, 3), 1005);
	blkdev_destroy(l);

	/* b behind a faultdev (no discard, no write_zeroes): refused before a is touched. */
	ok_eq(faultdev_create(b, &fb), 0);
	p[1].lower = fb;
	ok_eq(blkdev_linear_create(p, 3, &l), 0);
	ok_eq(blkdev_write(l, 0, 12, buf), 0);
	ok_eq(blkdev_discard(l, 0, 6), -EOPNOTSUPP);
	ok_eq(blkdev_write_zeroes(l, 2, 8), -EOPNOTSUPP);
	ok_eq(get_tag(a, 20), 1000);
	ok_eq(get_tag(a, 23), 1003);
	ok_eq(get_tag(a, 0), 1008);
	/* Inside a's pieces only: fine. */
	ok_eq(blkdev_discard(l, 0, 4), 0);
	ok_eq(get_tag(a, 20), 0);
	blkdev_destroy(l);
	blkdev_destroy(fb);
	blkdev_destroy(b);
	blkdev_destroy(a);
}

/* ---- An asynchronous lower device: requests wait in a FIFO until poll. ---- */

struct asyncdev {
	struct blkdev dev;
	struct blkdev *mem;
	struct blkdev_req *head, *tail;
	unsigned queued, max_queue;
	uint64_t submitted, completed, flushes;
	uint64_t fail_block;   /* a request starting here completes with -EIO (~0: none) */
	uint64_t refuse_block; /* a request starting here is refused with refuse_rc ... */
	int refuse_rc;
	unsigned refuse_times; /* ... this many times */
	bool signals;	       /* says it announces its completions (signals_completion) */
};

static int ad_read(struct blkdev *dev, uint64_t b, uint32_t n, void *buf)
{
	return blkdev_read(container_of(dev, struct asyncdev, dev)->mem, b, n, buf);
}

static int ad_write(struct blkdev *dev, uint64_t b, uint32_t n, const void *buf)
{
	return blkdev_write(container_of(dev, struct asyncdev, dev)->mem, b, n, buf);
}

static int ad_flush(struct blkdev *dev)
{
	container_of(dev, struct asyncdev, dev)->flushes++;
	return 0;
}

static int ad_discard(struct blkdev *dev, uint64_t b, uint32_t n)
{
	return blkdev_discard(container_of(dev, struct asyncdev, dev)->mem, b, n);
}

static int ad_submit(struct blkdev *dev, struct blkdev_req *req)
{
	struct asyncdev *ad = container_of(dev, struct asyncdev, dev);

	if (req->op != BLKDEV_FLUSH && req->block == ad->refuse_block && ad->refuse_times) {
		ad->refuse_times--;
		return ad->refuse_rc;
	}
	if (ad->max_queue && ad->queued == ad->max_queue)
		return -EAGAIN;
	req->next = NULL;
	if (ad->tail)
		ad->tail->next = req;
	else
		ad->head = req;
	ad->tail = req;
	ad->queued++;
	ad->submitted++;
	return 0;
}

static int ad_poll(struct blkdev *dev)
{
	struct asyncdev *ad = container_of(dev, struct asyncdev, dev);
	int n = 0;

	while (ad->head) {
		struct blkdev_req *r = ad->head;
		int rc;

		ad->head = r->next;
		if (!ad->head)
			ad->tail = NULL;
		ad->queued--;
		if (r->op == BLKDEV_FLUSH)
			rc = ad_flush(dev);
		else if (r->block == ad->fail_block)
			rc = -EIO;
		else
			rc = blkdev_run_req(ad->mem, r);
		ad->completed++;
		r->done(r, rc);
		n++;
	}
	return n;
}

static bool ad_signals(const struct blkdev *dev)
{
	return container_of(dev, const struct asyncdev, dev)->signals;
}

static const struct blkdev_ops ad_ops = {
	.read = ad_read,
	.write = ad_write,
	.flush = ad_flush,
	.discard = ad_discard,
	.write_zeroes = ad_discard,
	.submit = ad_submit,
	.poll = ad_poll,
	.signals_completion = ad_signals,
};

static void ad_init(struct asyncdev *ad, uint64_t nr_blocks)
{
	memset(ad, 0, sizeof(*ad));
	ad->dev = (struct blkdev){ .ops = &ad_ops,
				   .name = "asyncdev",
				   .nr_blocks = nr_blocks,
				   .block_size = BS,
				   .discard_zeroes = true };
	ad->fail_block = ad->refuse_block = ~0ull;
	memdisk_create(nr_blocks, BS, &ad->mem);
}

/* A caller's request that checks, when it completes, that the lower devices hold no child. */
struct parent {
	struct blkdev_req req;
	struct asyncdev *ad[2];
	unsigned calls;
	int rc;
	bool children_left; /* a lower device still had a request queued at done() */
};

static void parent_done(struct blkdev_req *req, int rc)
{
	struct parent *p = container_of(req, struct parent, req);

	p->calls++;
	p->rc = rc;
	for (int i = 0; i < 2; i++)
		if (p->ad[i] && p->ad[i]->queued)
			p->children_left = true;
}

static int parent_submit(struct blkdev *l, struct parent *p, enum blkdev_op op, uint64_t block,
			 uint32_t count, void *buf)
{
	struct asyncdev *ad0 = p->ad[0], *ad1 = p->ad[1];

	memset(p, 0, sizeof(*p));
	p->ad[0] = ad0;
	p->ad[1] = ad1;
	p->req = (struct blkdev_req){
		.op = op, .block = block, .count = count, .buf = buf, .done = parent_done
	};
	return blkdev_submit(l, &p->req);
}

TEST(async_split_and_completed_once)
{
	struct asyncdev a, b;
	struct blkdev *l;
	/* linear 0-3 = a 8-11, 4-7 = b 0-3, 8-11 = a 0-3 */
	struct blkdev_piece pc[3] = { { &a.dev, 8, 4 }, { &b.dev, 0, 4 }, { &a.dev, 0, 4 } };
	struct parent p = { .ad = { &a, &b } };
	uint8_t *buf = malloc(12 * BS), *chk = malloc(12 * BS);

	ad_init(&a, 16);
	ad_init(&b, 8);
	ok_eq(blkdev_linear_create(pc, 3, &l), 0);
	ok(l->ops->submit != NULL);

	/* A write over 3 pieces: 3 children, done() once after the last. */
	tags(buf, 0, 12);
	ok_eq(parent_submit(l, &p, BLKDEV_WRITE, 2, 8, buf + 2 * BS), 0);
	ok_eq(a.submitted, 2);
	ok_eq(b.submitted, 1);
	ok_eq(p.calls, 0);
	ok_eq(p.req.block, 2); /* the caller's request is not rewritten */
	ok_eq(p.req.count, 8);
	ok_eq(blkdev_poll(l), 1);
	ok_eq(p.calls, 1);
	ok_eq(p.rc, 0);
	ok(!p.children_left);
	ok_eq(get_tag(a.mem, 10), 1002);
	ok_eq(get_tag(a.mem, 11), 1003);
	ok_eq(get_tag(b.mem, 0), 1004);
	ok_eq(get_tag(b.mem, 3), 1007);
	ok_eq(get_tag(a.mem, 0), 1008);
	ok_eq(get_tag(a.mem, 1), 1009);
	ok_eq(get_tag(a.mem, 2), 0);
	ok_eq(get_tag(a.mem, 9), 0);

	/* A read inside one piece: one child, as a slice. */
	ok_eq(parent_submit(l, &p, BLKDEV_READ, 5, 2, chk), 0);
	ok_eq(b.submitted, 2);
	ok_eq(blkdev_poll(l), 1);
	ok_eq(p.calls, 1);
	ok(!memcmp(chk, buf + 5 * BS, 2 * BS));
	/* A read spanning 2 pieces. */
	ok_eq(parent_submit(l, &p, BLKDEV_READ, 3, 3, chk), 0);
	ok_eq(blkdev_poll(l), 1);
	ok_eq(p.calls, 1);
	ok(!memcmp(chk, buf + 3 * BS, 3 * BS));

	/* A child fails: the parent fails once, after every child finished. */
	a.fail_block = 8; /* piece 0, polled first */
	ok_eq(parent_submit(l, &p, BLKDEV_WRITE, 0, 12, buf), 0);
	ok_eq(blkdev_poll(l), 1);
	ok_eq(p.calls, 1);
	ok_eq(p.rc, -EIO);
	ok(!p.children_left);
	ok_eq(blkdev_poll(l), 0);
	ok_eq(p.calls, 1);
	a.fail_block = ~0ull;
	b.fail_block = 0; /* piece 1, on the lower polled last */
	ok_eq(parent_submit(l, &p, BLKDEV_READ, 0, 12, chk), 0);
	ok_eq(blkdev_poll(l), 1);
	ok_eq(p.calls, 1);
	ok_eq(p.rc, -EIO);
	ok(!p.children_left);
	b.fail_block = ~0ull;

	/* FLUSH: one child per distinct lower device. */
	ok_eq(parent_submit(l, &p, BLKDEV_FLUSH, 0, 0, NULL), 0);
	ok_eq(blkdev_poll(l), 1);
	ok_eq(p.calls, 1);
	ok_eq(a.flushes, 1);
	ok_eq(b.flushes, 1);

	/* DISCARD and WRITE_ZEROES requests are split as well. */
	ok_eq(blkdev_write(l, 0, 12, buf), 0);
	ok_eq(parent_submit(l, &p, BLKDEV_DISCARD, 3, 2, NULL), 0);
	ok_eq(blkdev_poll(l), 1);
	ok_eq(p.calls, 1);
	ok_eq(get_tag(a.mem, 10), 1002);
	ok_eq(get_tag(a.mem, 11), 0);
	ok_eq(get_tag(b.mem, 0), 0);
	ok_eq(get_tag(b.mem, 1), 1005);
	ok_eq(parent_submit(l, &p, BLKDEV_WRITE_ZEROES, 7, 2, NULL), 0);
	ok_eq(blkdev_poll(l), 1);
	ok_eq(get_tag(b.mem, 2), 1006);
	ok_eq(get_tag(b.mem, 3), 0);
	ok_eq(get_tag(a.mem, 0), 0);
	ok_eq(get_tag(a.mem, 1), 1009);

	blkdev_destroy(l);
	blkdev_destroy(a.mem);
	blkdev_destroy(b.mem);
	free(buf);
	free(chk);
}

/* Refusals by a lower device: of the first child, of a later one, and -EAGAIN. */
TEST(async_refusals)
{
	struct asyncdev a, b;
	struct blkdev *l;
	struct blkdev_piece pc[3] = { { &a.dev, 8, 4 }, { &b.dev, 0, 4 }, { &a.dev, 0, 4 } };
	struct parent p = { .ad = { &a, &b } };
	uint8_t *buf = malloc(12 * BS);

	ad_init(&a, 16);
	ad_init(&b, 8);
	ok_eq(blkdev_linear_create(pc, 3, &l), 0);
	tags(buf, 0, 12);

	/* The first child refused: the request is refused, done() never runs. */
	a.refuse_block = 9;
	a.refuse_rc = -EIO;
	a.refuse_times = 1;
	ok_eq(parent_submit(l, &p, BLKDEV_WRITE, 1, 6, buf), -EIO);
	ok_eq(a.submitted + b.submitted, 0);
	ok_eq(blkdev_poll(l), 0);
	ok_eq(p.calls, 0);
	/* ... and -EAGAIN likewise (poll, then submit again). */
	a.refuse_rc = -EAGAIN;
	a.refuse_times = 1;
	ok_eq(parent_submit(l, &p, BLKDEV_WRITE, 1, 6, buf), -EAGAIN);
	ok_eq(p.calls, 0);

	/* A later child refused with an error: the first is in flight, the parent fails once. */
	b.refuse_block = 0;
	b.refuse_rc = -EIO;
	b.refuse_times = 1;
	ok_eq(parent_submit(l, &p, BLKDEV_WRITE, 1, 6, buf), 0);
	ok_eq(a.submitted, 1);
	ok_eq(p.calls, 0);
	ok_eq(blkdev_poll(l), 1);
	ok_eq(p.calls, 1);
	ok_eq(p.rc, -EIO);

	/* A later child refused with -EAGAIN: submitted again at the next poll, completed. */
	b.refuse_rc = -EAGAIN;
	b.refuse_times = 1;
	ok_eq(parent_submit(l, &p, BLKDEV_WRITE, 3, 6, buf + 3 * BS), 0);
	ok_eq(a.submitted, 3);
	ok_eq(b.submitted, 0);
	ok_eq(blkdev_poll(l), 0); /* a's children done; b's submitted now */
	ok_eq(b.submitted, 1);
	ok_eq(p.calls, 0);
	ok_eq(blkdev_poll(l), 1);
	ok_eq(p.calls, 1);
	ok_eq(p.rc, 0);
	for (unsigned i = 3; i < 9; i++)
		ok_eq(get_tag(l, i), 1000 + i);
	/* Refused again at the retry with an error: that is the child's result. */
	b.refuse_times = 1;
	ok_eq(parent_submit(l, &p, BLKDEV_WRITE, 3, 2, buf), 0);
	b.refuse_rc = -EIO;
	b.refuse_times = 1;
	ok_eq(blkdev_poll(l), 1);
	ok_eq(p.calls, 1);
	ok_eq(p.rc, -EIO);

	blkdev_destroy(l);
	blkdev_destroy(a.mem);
	blkdev_destroy(b.mem);
	free(buf);
}

static bool lin_says_signals(const struct blkdev *l)
{
	return l->ops->signals_completion && l->ops->signals_completion(l);
}

/*
 * The linear device announces its completions only when every lower device does and no
 * child waits for the next poll to be submitted again (the firmware's loop may halt then).
 */
TEST(signals_completion_only_when_every_lower_does)
{
	struct asyncdev a, b;
	struct blkdev *l;
	struct blkdev_piece pc[2] = { { &a.dev, 0, 4 }, { &b.dev, 0, 4 } };
	struct parent p = { .ad = { &a, &b } };
	uint8_t *buf = malloc(8 * BS);

	ad_init(&a, 8);
	ad_init(&b, 8);
	ok_eq(blkdev_linear_create(pc, 2, &l), 0);
	tags(buf, 0, 8);
	ok(!lin_says_signals(l));
	a.signals = true;
	ok(!lin_says_signals(l)); /* b does not */
	b.signals = true;
	ok(lin_says_signals(l));

	/* A child refused with -EAGAIN waits for lin_poll(): no announcement for it. */
	b.refuse_block = 0;
	b.refuse_rc = -EAGAIN;
	b.refuse_times = 1;
	ok_eq(parent_submit(l, &p, BLKDEV_WRITE, 2, 4, buf), 0);
	ok(!lin_says_signals(l));
	ok_eq(blkdev_poll(l), 0); /* a's child done; b's submitted again */
	ok(lin_says_signals(l));  /* b's child is in flight on b, which announces it */
	ok_eq(blkdev_poll(l), 1);
	ok_eq(p.calls, 1);
	ok_eq(p.rc, 0);
	ok(lin_says_signals(l));

	blkdev_destroy(l);
	blkdev_destroy(a.mem);
	blkdev_destroy(b.mem);
	free(buf);
}

/*
 * The pools: BLKDEV_LINEAR_QUEUE requests in flight, or fewer when they span pieces (the
 * children run out first), then -EAGAIN until a poll; then everything completes.
 */
TEST(async_pool_full_then_eagain)
{
	struct asyncdev a, b;
	struct blkdev *l;
	struct blkdev_piece pc[2] = { { &a.dev, 0, 4 }, { &b.dev, 0, 4 } };
	struct waiter *w = calloc(BLKDEV_LINEAR_QUEUE + 1, sizeof(*w));
	uint8_t *buf = calloc(2, BS);
	unsigned done = 0, n;

	ad_init(&a, 4);
	ad_init(&b, 4);
	ok_eq(blkdev_linear_create(pc, 2, &l), 0);
	for (unsigned i = 0; i < BLKDEV_LINEAR_QUEUE; i++)
		ok_eq(waiter_submit(l, &w[i], BLKDEV_READ, i % 8, 1, buf), 0);
	ok_eq(waiter_submit(l, &w[BLKDEV_LINEAR_QUEUE], BLKDEV_READ, 0, 1, buf), -EAGAIN);
	ok_eq(blkdev_poll(l), BLKDEV_LINEAR_QUEUE);
	for (unsigned i = 0; i < BLKDEV_LINEAR_QUEUE; i++)
		done += w[i].done && w[i].rc == 0;
	ok_eq(done, BLKDEV_LINEAR_QUEUE);
	ok(!w[BLKDEV_LINEAR_QUEUE].done);

	/* Two children each: the children (QUEUE + 2) run out after (QUEUE + 2) / 2. */
	for (n = 0; n <= BLKDEV_LINEAR_QUEUE; n++)
		if (waiter_submit(l, &w[n], BLKDEV_READ, 3, 2, buf))
			break;
	ok_eq(n, (BLKDEV_LINEAR_QUEUE + 2) / 2);
	ok_eq(a.queued, n);
	ok_eq(b.queued, n);
	ok_eq(blkdev_poll(l), n);
	ok_eq(waiter_submit(l, &w[n], BLKDEV_READ, 3, 2, buf), 0);
	ok_eq(blkdev_poll(l), 1);
	done = 0;
	for (unsigned i = 0; i <= n; i++)
		done += w[i].done && w[i].rc == 0;
	ok_eq(done, n + 1);
	blkdev_destroy(l);
	blkdev_destroy(a.mem);
	blkdev_destroy(b.mem);
	free(w);
	free(buf);
}

/* One async lower and one without submit: the latter's children complete at once. */
TEST(async_mixed_with_synchronous_lower)
{
	struct asyncdev a;
	struct blkdev *m, *l;
	struct blkdev_piece pc[2] = { { NULL, 0, 4 }, { NULL, 2, 4 } };
	struct parent p = { 0 };
	uint8_t *buf = malloc(8 * BS);

	ad_init(&a, 8);
	ok_eq(memdisk_create(8, BS, &m), 0);
	pc[0].lower = m;
	pc[1].lower = &a.dev;
	p.ad[0] = &a;
	ok_eq(blkdev_linear_create(pc, 2, &l), 0);
	tags(buf, 0, 8);
	ok_eq(parent_submit(l, &p, BLKDEV_WRITE, 2, 4, buf + 2 * BS), 0);
	ok_eq(get_tag(m, 2), 1002); /* already done */
	ok_eq(p.calls, 0);
	ok_eq(blkdev_poll(l), 1);
	ok_eq(p.calls, 1);
	ok_eq(get_tag(a.mem, 3), 1005);
	/* Entirely on the synchronous lower: completes inside submit. */
	ok_eq(parent_submit(l, &p, BLKDEV_READ, 0, 3, buf), 0);
	ok_eq(p.calls, 1);
	ok_eq(p.rc, 0);
	ok_eq(get_tag(m, 2), 1002);
	blkdev_destroy(l);
	blkdev_destroy(m);
	blkdev_destroy(a.mem);
	free(buf);
}

/* One piece: what a slice does, the same results. */
TEST(one_piece_is_a_slice)
{
	struct blkdev *m, *l, *s;
	uint8_t buf[BS], chk[BS];

	ok_eq(memdisk_create(32, BS, &m), 0);
	{
		struct blkdev_piece p = { m, 10, 20 };

		ok_eq(blkdev_linear_create(&p, 1, &l), 0);
	}
	ok_eq(blkdev_slice_create(m, 10, 20, &s), 0);
	ok_eq(l->nr_blocks, s->nr_blocks);
	ok(l->name == s->name);
	ok_eq(l->read_only, s->read_only);
	ok_eq(l->discard_zeroes, s->discard_zeroes);
	memset(buf, 0x3c, sizeof(buf));
	ok_eq(blkdev_write(l, 19, 1, buf), 0);
	ok_eq(blkdev_read(s, 19, 1, chk), 0);
	ok(!memcmp(buf, chk, BS));
	ok_eq(blkdev_write(l, 20, 1, buf), blkdev_write(s, 20, 1, buf));
	ok_eq(blkdev_discard(l, 19, 1), 0);
	ok_eq(blkdev_read(m, 29, 1, chk), 0);
	ok(chk[0] == 0);
	blkdev_destroy(s);
	blkdev_destroy(l);
	blkdev_destroy(m);
}

/* ---- A thin pool on 3-piece linear devices ---- */

#define SENTINEL 0xa5

static bool range_is(struct blkdev *d, uint64_t first, uint64_t n, uint8_t v)
{
	uint8_t *b = malloc(d->block_size);
	bool same = true;

	for (uint64_t i = first; i < first + n && same; i++)
		same = blkdev_read(d, i, 1, b) == 0 && all_bytes(b, d->block_size, v);
	free(b);
	return same;
}

static void fill_range(struct blkdev *d, uint64_t first, uint64_t n, uint8_t v)
{
	uint8_t *b = malloc(d->block_size);

	memset(b, v, d->block_size);
	for (uint64_t i = first; i < first + n; i++)
		blkdev_write(d, i, 1, b);
	free(b);
}

#define VOL_SECT 2048u /* 1 MiB volumes */

TEST(thin_pool_on_three_piece_devices)
{
	struct blkdev *mdisk, *da, *db, *meta, *data;
	struct oodev oo;
	struct thin_pool *pool;
	struct thin_volume *vol[2];
	struct blkdev *d[2];
	uint8_t *model[2], *b = malloc(VOL_SECT * 512);
	/* Metadata: 4 KiB blocks of one disk, out of order, gaps between. */
	struct blkdev_piece mp[3] = { { NULL, 400, 100 }, { NULL, 0, 150 }, { NULL, 200, 50 } };
	/* Data: 512-byte blocks; pool blocks (128 sectors) straddle every piece end. */
	struct blkdev_piece dp[3] = { { NULL, 3000, 2700 },
				      { NULL, 1100, 3300 },
				      { NULL, 150, 2700 } };
	struct waiter w[8];
	uint64_t seed = test_seed();

	ok_eq(memdisk_create(600, 4096, &mdisk), 0);
	ok_eq(memdisk_create(8000, 512, &da), 0);
	ok_eq(memdisk_create(5000, 512, &db), 0);
	fill_range(mdisk, 0, 600, SENTINEL);
	fill_range(da, 0, 8000, SENTINEL);
	fill_range(db, 0, 5000, SENTINEL);
	/* Data disk b completes out of order, so the pool's requests split into async children. */
	oodev_init(&oo, db, seed);
	mp[0].lower = mp[1].lower = mp[2].lower = mdisk;
	dp[0].lower = dp[2].lower = da;
	dp[1].lower = &oo.dev;
	ok_eq(blkdev_linear_create(mp, 3, &meta), 0);
	ok_eq(blkdev_linear_create(dp, 3, &data), 0);
	/* The metadata device's blocks were written with the sentinel: zero block 0 to format. */
	fill_range(meta, 0, 1, 0);
	ok_eq(thin_pool_format(meta, data, NULL, false), 0);
	ok_eq(thin_pool_open(meta, data, NULL, NULL, 0, &pool), 0);
	if (test_failed())
		return;

	for (int v = 0; v < 2; v++) {
		model[v] = calloc(VOL_SECT, 512);
		d[v] = pool_vol_open(pool, (thin_id_t)v, VOL_SECT * 512, &vol[v]);
		if (!d[v])
			return;
	}
	/* Synchronous writes straddling pool blocks, then a burst of async ones in flight. */
	for (unsigned i = 0; i < 40 && !test_failed(); i++) {
		int v = (int)(test_rand(&seed) % 2);
		uint64_t blk = test_rand(&seed) % VOL_SECT;
		uint32_t cnt = 1 + (uint32_t)(test_rand(&seed) % 300);

		if (blk + cnt > VOL_SECT)
			cnt = (uint32_t)(VOL_SECT - blk);
		pattern(model[v] + blk * 512, (size_t)cnt * 512, i + 1);
		ok_eq(blkdev_write(d[v], blk, cnt, model[v] + blk * 512), 0);
	}
	for (unsigned i = 0; i < 8; i++) {
		/* Disjoint ranges of volume 1, eight at once. */
		uint64_t blk = i * 256 + 17;

		pattern(model[1] + blk * 512, 100 * 512, 100 + i);
		ok_eq(waiter_submit(d[1], &w[i], BLKDEV_WRITE, blk, 100, model[1] + blk * 512), 0);
	}
	for (int k = 0; k < 100000; k++) {
		unsigned n = 0;

		for (unsigned i = 0; i < 8; i++)
			n += w[i].done;
		if (n == 8)
			break;
		thin_pool_poll(pool);
	}
	for (unsigned i = 0; i < 8; i++)
		ok(w[i].done && w[i].rc == 0);
	ok(oo.submitted > 0);
	ok_eq(blkdev_write_zeroes(d[0], 100, 200), 0);
	memset(model[0] + 100 * 512, 0, 200 * 512);
	ok_eq(thin_pool_create_snap(pool, 2, 0), 0);
	for (int v = 0; v < 2; v++) {
		ok_eq(blkdev_read(d[v], 0, VOL_SECT, b), 0);
		ok(!memcmp(b, model[v], VOL_SECT * 512));
		ok_eq(blkdev_flush(d[v]), 0);
		thin_volume_close(vol[v]);
	}
	ok_eq(thin_pool_close(pool), 0);
	ok_eq(check_dev(meta), 0);

	/* Reopened on new linear devices over the same pieces: everything is there. */
	blkdev_destroy(meta);
	blkdev_destroy(data);
	ok_eq(blkdev_linear_create(mp, 3, &meta), 0);
	ok_eq(blkdev_linear_create(dp, 3, &data), 0);
	ok_eq(thin_pool_open(meta, data, NULL, NULL, 0, &pool), 0);
	for (int v = 0; v < 3; v++) {
		struct thin_volume *tv;

		ok_eq(thin_volume_open(pool, (thin_id_t)v, VOL_SECT * 512, true, &tv), 0);
		ok_eq(blkdev_read(thin_volume_blkdev(tv), 0, VOL_SECT, b), 0);
		ok(!memcmp(b, model[v == 2 ? 0 : v], VOL_SECT * 512));
		thin_volume_close(tv);
	}
	ok_eq(thin_pool_close(pool), 0);
	ok_eq(check_dev(meta), 0);
	/* Nothing outside the pieces was touched. */
	ok(range_is(mdisk, 150, 50, SENTINEL));
	ok(range_is(mdisk, 250, 150, SENTINEL));
	ok(range_is(mdisk, 500, 100, SENTINEL));
	ok(range_is(da, 0, 150, SENTINEL));
	ok(range_is(da, 2850, 150, SENTINEL));
	ok(range_is(da, 5700, 2300, SENTINEL));
	ok(range_is(db, 0, 1100, SENTINEL));
	ok(range_is(db, 4400, 600, SENTINEL));

	blkdev_destroy(meta);
	blkdev_destroy(data);
	blkdev_destroy(mdisk);
	blkdev_destroy(da);
	blkdev_destroy(db);
	free(model[0]);
	free(model[1]);
	free(b);
}
