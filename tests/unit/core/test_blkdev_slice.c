/* SPDX-License-Identifier: MIT */
/* core/blkdev_slice: offsets, bounds, forwarding of every op, async requests. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "core/blkdev_slice.h"
#include "host/hostdev.h"
#include "tests/support/harness.h"

static void fill(uint8_t *buf, size_t len, uint8_t v)
{
	memset(buf, v, len);
}

TEST(create_bounds)
{
	struct blkdev *lower, *s;

	ok_eq(memdisk_create(64, 4096, &lower), 0);
	ok_eq(blkdev_slice_create(lower, 0, 0, &s), -EINVAL);
	ok_eq(blkdev_slice_create(lower, 0, 65, &s), -EINVAL);
	ok_eq(blkdev_slice_create(lower, 64, 1, &s), -EINVAL);
	ok_eq(blkdev_slice_create(lower, 60, 5, &s), -EINVAL);
	ok_eq(blkdev_slice_create(lower, UINT64_MAX, 2, &s), -EINVAL);
	ok_eq(blkdev_slice_create(NULL, 0, 1, &s), -EINVAL);
	ok_eq(blkdev_slice_create(lower, 0, 64, &s), 0);
	ok_eq(s->nr_blocks, 64);
	ok_eq(s->block_size, 4096);
	blkdev_destroy(s);
	ok_eq(blkdev_slice_create(lower, 63, 1, &s), 0);
	blkdev_destroy(s);
	blkdev_destroy(lower);
}

TEST(offsets_and_bounds)
{
	struct blkdev *lower, *s;
	uint8_t *buf = malloc(4096 * 4), *chk = malloc(4096 * 4);

	ok_eq(memdisk_create(64, 4096, &lower), 0);
	ok_eq(blkdev_slice_create(lower, 10, 20, &s), 0);
	fill(buf, 4096 * 2, 0xab);
	ok_eq(blkdev_write(s, 0, 2, buf), 0);
	ok_eq(blkdev_read(lower, 10, 2, chk), 0);
	ok(!memcmp(buf, chk, 4096 * 2));
	ok_eq(blkdev_read(lower, 9, 1, chk), 0);
	ok(chk[0] == 0 && chk[4095] == 0);

	/* The last block of the slice, and everything past it. */
	fill(buf, 4096, 0xcd);
	ok_eq(blkdev_write(s, 19, 1, buf), 0);
	ok_eq(blkdev_read(lower, 29, 1, chk), 0);
	ok(chk[0] == 0xcd);
	ok_eq(blkdev_write(s, 20, 1, buf), -EINVAL);
	ok_eq(blkdev_write(s, 19, 2, buf), -EINVAL);
	ok_eq(blkdev_read(s, 20, 1, chk), -EINVAL);
	ok_eq(blkdev_discard(s, 18, 3), -EINVAL);
	ok_eq(blkdev_read(lower, 30, 1, chk), 0);
	ok(chk[0] == 0 && chk[4095] == 0);

	/* Reads through the slice see the lower device at the offset. */
	fill(buf, 4096, 0x11);
	ok_eq(blkdev_write(lower, 15, 1, buf), 0);
	ok_eq(blkdev_read(s, 5, 1, chk), 0);
	ok(chk[0] == 0x11);

	/* discard / write_zeroes are forwarded at the offset (memdisk zeroes). */
	ok_eq(blkdev_discard(s, 5, 1), 0);
	ok_eq(blkdev_read(lower, 15, 1, chk), 0);
	ok(chk[0] == 0);
	ok_eq(blkdev_write_zeroes(s, 0, 1), 0);
	ok_eq(blkdev_read(lower, 10, 1, chk), 0);
	ok(chk[0] == 0);
	ok_eq(blkdev_read(lower, 11, 1, chk), 0);
	ok(chk[0] == 0xab);
	ok_eq(blkdev_flush(s), 0);

	blkdev_destroy(s);
	blkdev_destroy(lower);
	free(buf);
	free(chk);
}

TEST(read_only_is_inherited)
{
	struct blkdev *lower, *s;
	uint8_t buf[4096] = { 0 };

	ok_eq(memdisk_create(8, 4096, &lower), 0);
	lower->read_only = true;
	ok_eq(blkdev_slice_create(lower, 2, 2, &s), 0);
	ok(s->read_only);
	ok_eq(blkdev_write(s, 0, 1, buf), -EROFS);
	blkdev_destroy(s);
	blkdev_destroy(lower);
}

/* ---- An asynchronous lower device: requests wait in a list until poll. ---- */

struct asyncdev {
	struct blkdev dev;
	struct blkdev *mem;
	struct blkdev_req *queue;
	uint64_t last_block;
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
	return 0;
}

static int ad_submit(struct blkdev *dev, struct blkdev_req *req)
{
	struct asyncdev *ad = container_of(dev, struct asyncdev, dev);

	if (req->block == 3) /* a block the device refuses outright */
		return -EIO;
	ad->last_block = req->block;
	req->next = ad->queue;
	ad->queue = req;
	return 0;
}

static int ad_poll(struct blkdev *dev)
{
	struct asyncdev *ad = container_of(dev, struct asyncdev, dev);
	int n = 0;

	while (ad->queue) {
		struct blkdev_req *r = ad->queue;
		int rc = 0;

		ad->queue = r->next;
		if (r->op == BLKDEV_READ)
			rc = blkdev_read(ad->mem, r->block, r->count, r->buf);
		else if (r->op == BLKDEV_WRITE)
			rc = blkdev_write(ad->mem, r->block, r->count, r->buf);
		r->done(r, rc);
		n++;
	}
	return n;
}

static const struct blkdev_ops ad_ops = {
	.read = ad_read,
	.write = ad_write,
	.flush = ad_flush,
	.submit = ad_submit,
	.poll = ad_poll,
};

static int done_calls, done_rc;

static void on_done(struct blkdev_req *req, int rc)
{
	done_calls++;
	done_rc = rc;
}

TEST(async_forwarding)
{
	struct asyncdev ad = { .dev = { .ops = &ad_ops, .nr_blocks = 16, .block_size = 4096 } };
	struct blkdev *s;
	struct blkdev_req req;
	uint8_t buf[4096], chk[4096];

	ok_eq(memdisk_create(16, 4096, &ad.mem), 0);
	ok_eq(blkdev_slice_create(&ad.dev, 4, 8, &s), 0);
	memset(buf, 0x5a, sizeof(buf));
	memset(&req, 0, sizeof(req));
	req.op = BLKDEV_WRITE;
	req.block = 2;
	req.count = 1;
	req.buf = buf;
	req.done = on_done;
	done_calls = 0;
	ok_eq(blkdev_submit(s, &req), 0);
	ok_eq(done_calls, 0);
	ok_eq(ad.last_block, 6);
	ok(blkdev_poll(s) == 1);
	ok_eq(done_calls, 1);
	ok_eq(done_rc, 0);
	ok_eq(req.block, 2); /* the caller's request is not rewritten */
	ok_eq(blkdev_read(ad.mem, 6, 1, chk), 0);
	ok(chk[0] == 0x5a);

	/* Out of the slice: refused before the lower device sees it. */
	req.block = 8;
	ok_eq(blkdev_submit(s, &req), -EINVAL);
	/* Refused by the lower device: no done() and nothing leaked (ASan would tell). */
	req.block = 3; /* slice block 3 is lower block 7: accepted */
	ok_eq(blkdev_submit(s, &req), 0);
	blkdev_poll(s);
	ok_eq(done_calls, 2);
	blkdev_destroy(s);
	ok_eq(blkdev_slice_create(&ad.dev, 0, 8, &s), 0);
	req.block = 3;
	ok_eq(blkdev_submit(s, &req), -EIO);
	ok_eq(done_calls, 2);
	blkdev_destroy(s);
	blkdev_destroy(ad.mem);
}
