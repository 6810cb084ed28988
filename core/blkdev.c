/* SPDX-License-Identifier: MIT */
/*
 * The asynchronous half of core/blkdev.h: a synchronous fallback for devices that only have
 * the blocking ops, so callers can use one submit/poll path for every device; and the
 * reverse, blkdev_submit_wait(), the one place synchronous calls wait for a request.
 */
#include "core/blkdev.h"
#include "core/base/perf.h"
#include "core/base/plat.h"
#include "core/base/util.h"

#include <stdlib.h>
#include <string.h>

void blkdev_segs_advance(const struct blkdev_seg **segs, uint32_t *nr, uint32_t *off, uint64_t skip)
{
	const struct blkdev_seg *s = *segs;
	uint32_t n = *nr, o = *off;

	while (n && skip >= s->len - o) {
		skip -= s->len - o;
		s++;
		n--;
		o = 0;
	}
	*segs = s;
	*nr = n;
	*off = o + (uint32_t)skip;
}

void blkdev_segs_gather(void *dst, const struct blkdev_seg *segs, uint32_t nr, uint32_t off,
			size_t len)
{
	uint8_t *d = dst;

	for (; len && nr; segs++, nr--, off = 0) {
		size_t k = MIN((size_t)(segs->len - off), len);

		memcpy(d, (const uint8_t *)segs->base + off, k);
		d += k;
		len -= k;
	}
}

uint32_t blkdev_segs_span(const struct blkdev_seg *segs, uint32_t nr, uint32_t off, uint64_t len)
{
	uint32_t i;

	for (i = 0; len && i < nr; i++, off = 0) {
		uint64_t k = MIN((uint64_t)(segs[i].len - off), len);

		len -= k;
	}
	return len ? 0 : i;
}

/* A segment list's payload fits in it, and comes with an op that takes one. */
static int blkdev_check_segs(struct blkdev *dev, const struct blkdev_req *req)
{
	if (req->op != BLKDEV_WRITE && req->op != BLKDEV_WRITE_BYTES)
		return -EINVAL;
	if (!req->nr_segs || req->seg_off >= req->segs[0].len)
		return -EINVAL;
	return blkdev_segs_span(req->segs, req->nr_segs, req->seg_off, blkdev_req_bytes(dev, req))
		   ? 0
		   : -EINVAL;
}

static int blkdev_check_req(struct blkdev *dev, const struct blkdev_req *req)
{
	switch (req->op) {
	case BLKDEV_FLUSH:
		return 0;
	case BLKDEV_READ:
		return blkdev_range_ok(dev, req->block, req->count) ? 0 : -EINVAL;
	case BLKDEV_WRITE:
	case BLKDEV_DISCARD:
	case BLKDEV_WRITE_ZEROES:
		if (!blkdev_range_ok(dev, req->block, req->count))
			return -EINVAL;
		return dev->read_only ? -EROFS : 0;
	case BLKDEV_WRITE_BYTES:
	case BLKDEV_WRITE_ZEROES_BYTES:
		if (!dev->byte_writes || !dev->ops->submit)
			return -EOPNOTSUPP;
		if (!blkdev_bytes_ok(dev, req->offset, req->length))
			return -EINVAL;
		return dev->read_only ? -EROFS : 0;
	}
	return -EINVAL;
}

/*
 * The one bounce for a device without seg_writes: the payload gathered into a buffer that
 * lives (with the request the device sees) until the device is done with it.
 */
struct seg_bounce {
	struct blkdev_req req;
	struct blkdev_req *orig;
	uint8_t data[];
};

static void seg_bounce_done(struct blkdev_req *req, int rc)
{
	struct seg_bounce *b = container_of(req, struct seg_bounce, req);
	struct blkdev_req *orig = b->orig;

	free(b);
	orig->done(orig, rc);
}

static int seg_bounce_submit(struct blkdev *dev, struct blkdev_req *req)
{
	size_t len = (size_t)blkdev_req_bytes(dev, req);
	struct seg_bounce *b = malloc(sizeof(*b) + len);
	int rc;

	if (!b)
		return -ENOMEM;
	perf_begin();
	blkdev_segs_gather(b->data, req->segs, req->nr_segs, req->seg_off, len);
	perf_end(PERF_COPY, len);
	perf_payload.write_copied += len;
	b->req = *req;
	b->req.buf = b->data;
	b->req.segs = NULL;
	b->req.nr_segs = 0;
	b->req.seg_off = 0;
	b->req.done = seg_bounce_done;
	b->orig = req;
	rc = blkdev_submit(dev, &b->req);
	if (rc)
		free(b); /* refused: done() does not run, the caller keeps its request */
	return rc;
}

int blkdev_submit(struct blkdev *dev, struct blkdev_req *req)
{
	int rc = blkdev_check_req(dev, req);

	if (!rc && req->segs)
		rc = blkdev_check_segs(dev, req);
	if (!rc && req->in_handle &&
	    (!dev->handle_writes || req->op != BLKDEV_WRITE || req->segs || !req->buf))
		rc = -EINVAL; /* only the device that said it takes one, and only as a WRITE */
	if (rc)
		return rc;
	if (req->segs && !dev->seg_writes)
		return seg_bounce_submit(dev, req);
	if (dev->ops->submit) {
		rc = dev->ops->submit(dev, req);
		/* A list this device cannot send as it is (core/blkdev.h): the bounce after all. */
		if (rc == -E2BIG && req->segs)
			return seg_bounce_submit(dev, req);
		return rc;
	}

	switch (req->op) {
	case BLKDEV_READ:
		rc = dev->ops->read(dev, req->block, req->count, req->buf);
		break;
	case BLKDEV_WRITE:
		rc = dev->ops->write(dev, req->block, req->count, req->buf);
		break;
	case BLKDEV_FLUSH:
		rc = dev->ops->flush(dev);
		break;
	case BLKDEV_DISCARD:
		rc = blkdev_discard(dev, req->block, req->count);
		break;
	case BLKDEV_WRITE_ZEROES:
		rc = blkdev_write_zeroes(dev, req->block, req->count);
		break;
	case BLKDEV_WRITE_BYTES:
	case BLKDEV_WRITE_ZEROES_BYTES:
		rc = -EOPNOTSUPP; /* refused above: only devices with a submit op take them */
		break;
	}
	/* Completed synchronously: the contract says done() runs exactly once per accepted req. */
	req->done(req, rc);
	return 0;
}

int blkdev_poll(struct blkdev *dev)
{
	return dev->ops->poll ? dev->ops->poll(dev) : 0;
}

/* A waited-for request: heap-held so one that timed out can still complete safely. */
struct wait_req {
	struct blkdev_req req;
	bool done, orphan;
	int rc;
};

static void wait_done(struct blkdev_req *req, int rc)
{
	struct wait_req *w = container_of(req, struct wait_req, req);

	if (w->orphan) {
		free(w);
		return;
	}
	w->rc = rc;
	w->done = true;
}

static void wait_poll(struct blkdev *dev, bool (*idle)(struct blkdev *dev))
{
	if (blkdev_poll(dev) <= 0 && idle && idle(dev))
		plat_udelay(BLKDEV_WAIT_IDLE_US);
}

int blkdev_submit_wait(struct blkdev *dev, const struct blkdev_req *req, uint64_t timeout_ns,
		       bool (*idle)(struct blkdev *dev))
{
	uint64_t deadline = plat_now_ns() + timeout_ns;
	struct wait_req *w = calloc(1, sizeof(*w));
	int rc;

	if (!w)
		return -ENOMEM;
	w->req.op = req->op;
	w->req.block = req->block;
	w->req.count = req->count;
	w->req.buf = req->buf;
	w->req.offset = req->offset;
	w->req.length = req->length;
	w->req.segs = req->segs;
	w->req.nr_segs = req->nr_segs;
	w->req.seg_off = req->seg_off;
	w->req.done = wait_done;
	while ((rc = blkdev_submit(dev, &w->req)) == -EAGAIN) {
		/* Full of other requests: they finish (or the device gives up on them) as we poll. */
		wait_poll(dev, idle);
		if (plat_now_ns() > deadline) {
			free(w);
			return -ETIMEDOUT;
		}
	}
	if (rc) {
		free(w);
		return rc;
	}
	while (!w->done) {
		wait_poll(dev, idle);
		if (!w->done && plat_now_ns() > deadline) {
			w->orphan = true; /* wait_done() frees it */
			return -ETIMEDOUT;
		}
	}
	rc = w->rc;
	free(w);
	return rc;
}
