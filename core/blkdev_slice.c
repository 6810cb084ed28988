/* SPDX-License-Identifier: MIT */
/*
 * A window onto a lower block device; see core/blkdev_slice.h. The only invariant: no
 * request reaches the lower device outside [first, first + nr_blocks), which the inline
 * blkdev_*() wrappers and blkdev_submit() already guarantee by checking the slice's own
 * nr_blocks before an op is called.
 */
#include "core/blkdev_slice.h"

#include <stdlib.h>

#include "core/base/util.h"

struct blkdev_slice {
	struct blkdev dev;
	struct blkdev *lower;
	uint64_t first;
};

/* A forwarded asynchronous request: the caller's request keeps its own block number. */
struct slice_req {
	struct blkdev_req req; /* what the lower device sees */
	struct blkdev_req *orig;
};

static struct blkdev_slice *to_slice(struct blkdev *dev)
{
	return container_of(dev, struct blkdev_slice, dev);
}

static int slice_read(struct blkdev *dev, uint64_t block, uint32_t count, void *buf)
{
	struct blkdev_slice *s = to_slice(dev);

	return blkdev_read(s->lower, s->first + block, count, buf);
}

static int slice_write(struct blkdev *dev, uint64_t block, uint32_t count, const void *buf)
{
	struct blkdev_slice *s = to_slice(dev);

	return blkdev_write(s->lower, s->first + block, count, buf);
}

static int slice_flush(struct blkdev *dev)
{
	return blkdev_flush(to_slice(dev)->lower);
}

static int slice_discard(struct blkdev *dev, uint64_t block, uint32_t count)
{
	struct blkdev_slice *s = to_slice(dev);

	return blkdev_discard(s->lower, s->first + block, count);
}

static int slice_write_zeroes(struct blkdev *dev, uint64_t block, uint32_t count)
{
	struct blkdev_slice *s = to_slice(dev);

	return blkdev_write_zeroes(s->lower, s->first + block, count);
}

static void slice_req_done(struct blkdev_req *req, int rc)
{
	struct slice_req *sr = container_of(req, struct slice_req, req);
	struct blkdev_req *orig = sr->orig;

	free(sr);
	orig->done(orig, rc);
}

static int slice_submit(struct blkdev *dev, struct blkdev_req *req)
{
	struct blkdev_slice *s = to_slice(dev);
	struct slice_req *sr = malloc(sizeof(*sr));
	int rc;

	if (!sr)
		return -ENOMEM;
	sr->req = *req;
	sr->req.block = req->op == BLKDEV_FLUSH ? 0 : s->first + req->block;
	sr->req.done = slice_req_done;
	sr->req.next = NULL;
	sr->orig = req;
	rc = blkdev_submit(s->lower, &sr->req);
	if (rc) /* refused: done() will not run, so the copy is ours to free */
		free(sr);
	return rc;
}

static int slice_poll(struct blkdev *dev)
{
	return blkdev_poll(to_slice(dev)->lower);
}

static void slice_destroy(struct blkdev *dev)
{
	free(to_slice(dev));
}

static const struct blkdev_ops slice_ops = {
	.read = slice_read,
	.write = slice_write,
	.flush = slice_flush,
	.discard = slice_discard,
	.write_zeroes = slice_write_zeroes,
	.submit = slice_submit,
	.poll = slice_poll,
	.destroy = slice_destroy,
};

static const struct blkdev_ops slice_sync_ops = {
	.read = slice_read,
	.write = slice_write,
	.flush = slice_flush,
	.discard = slice_discard,
	.write_zeroes = slice_write_zeroes,
	.destroy = slice_destroy,
};

int blkdev_slice_create(struct blkdev *lower, uint64_t first, uint64_t nr_blocks,
			struct blkdev **out)
{
	struct blkdev_slice *s;

	if (!lower || !blkdev_range_ok(lower, first, nr_blocks))
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->lower = lower;
	s->first = first;
	/* Optional ops stay optional: forward only what the lower device has. */
	s->dev.ops = lower->ops->submit ? &slice_ops : &slice_sync_ops;
	s->dev.name = lower->name;
	s->dev.nr_blocks = nr_blocks;
	s->dev.block_size = lower->block_size;
	s->dev.read_only = lower->read_only;
	s->dev.discard_zeroes = lower->discard_zeroes;
	*out = &s->dev;
	return 0;
}
