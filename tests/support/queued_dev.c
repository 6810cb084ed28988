/* SPDX-License-Identifier: MIT */
/* The queued block device played by the NBD tests (tests/support/queued_dev.h). */
#include "tests/support/queued_dev.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"

static struct queued_dev *to_qd(struct blkdev *d)
{
	return container_of(d, struct queued_dev, dev);
}

static int qd_read(struct blkdev *d, uint64_t b, uint32_t c, void *buf)
{
	return blkdev_read(to_qd(d)->lower, b, c, buf);
}

static int qd_write(struct blkdev *d, uint64_t b, uint32_t c, const void *buf)
{
	return blkdev_write(to_qd(d)->lower, b, c, buf);
}

static int qd_flush(struct blkdev *d)
{
	(void)d;
	return 0;
}

static void record_write(struct queued_dev *qd, const struct blkdev_req *r)
{
	qd->seen = *r;
	if (r->in_handle) {
		qd->handle_writes++;
	} else if (r->segs) {
		qd->list_writes++;
		memcpy(qd->seen_segs, r->segs,
		       MIN(r->nr_segs, (uint32_t)ARRAY_SIZE(qd->seen_segs)) * sizeof(*r->segs));
	} else {
		qd->buf_writes++;
	}
}

static int qd_submit(struct blkdev *d, struct blkdev_req *r)
{
	struct queued_dev *qd = to_qd(d);

	if (qd->n >= (qd->depth ? MIN(qd->depth, QD_MAX_QUEUE) : QD_MAX_QUEUE))
		return -EAGAIN;
	if (r->op == BLKDEV_WRITE) {
		if (qd->refuse)
			return qd->refuse;
		record_write(qd, r);
		if (qd->on_submit)
			qd->on_submit(qd, r);
	}
	qd->q[qd->n++] = r;
	return 0;
}

/* A WRITE's payload, read now, at completion: whatever holds it must still be there. */
static int complete_write(struct queued_dev *qd, struct blkdev_req *r)
{
	size_t len = (size_t)r->count * qd->dev.block_size;
	const void *src;
	uint8_t *b;
	int rc;

	if (qd->fail)
		return qd->fail;
	if (r->in_handle) {
		src = qd->payload ? qd->payload(qd, r) : NULL;
		return src ? blkdev_write(qd->lower, r->block, r->count, src) : -EIO;
	}
	if (!r->segs)
		return blkdev_write(qd->lower, r->block, r->count, r->buf);
	b = malloc(len);
	if (!b)
		return -ENOMEM;
	blkdev_segs_gather(b, r->segs, r->nr_segs, r->seg_off, len);
	rc = blkdev_write(qd->lower, r->block, r->count, b);
	free(b);
	return rc;
}

/* Complete everything queued, newest first. */
static int qd_poll(struct blkdev *d)
{
	struct queued_dev *qd = to_qd(d);
	int n = 0;

	while (!qd->hold && qd->n) {
		struct blkdev_req *r = qd->q[--qd->n];
		int rc = 0;

		if (r->op == BLKDEV_READ)
			rc = blkdev_read(qd->lower, r->block, r->count, r->buf);
		else if (r->op == BLKDEV_WRITE)
			rc = complete_write(qd, r);
		else if (r->op == BLKDEV_WRITE_ZEROES || r->op == BLKDEV_DISCARD)
			rc = blkdev_write_zeroes(qd->lower, r->block, r->count);
		r->done(r, rc);
		n++;
	}
	return n;
}

static const struct blkdev_ops qd_ops = {
	.read = qd_read,
	.write = qd_write,
	.flush = qd_flush,
	.submit = qd_submit,
	.poll = qd_poll,
};

void qd_init(struct queued_dev *qd, struct blkdev *lower)
{
	memset(qd, 0, sizeof(*qd));
	qd->dev = (struct blkdev){ .ops = &qd_ops,
				   .name = "queued",
				   .nr_blocks = lower ? lower->nr_blocks : 0,
				   .block_size = lower ? lower->block_size : 512 };
	qd->lower = lower;
}
