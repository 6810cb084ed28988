/* SPDX-License-Identifier: MIT */
/*
 * The asynchronous half of core/blkdev.h: a synchronous fallback for devices that only have
 * the blocking ops, so callers can use one submit/poll path for every device.
 */
#include "core/blkdev.h"

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
	}
	return -EINVAL;
}

int blkdev_submit(struct blkdev *dev, struct blkdev_req *req)
{
	int rc = blkdev_check_req(dev, req);

	if (rc)
		return rc;
	if (dev->ops->submit)
		return dev->ops->submit(dev, req);

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
	}
	/* Completed synchronously: the contract says done() runs exactly once per accepted req. */
	req->done(req, rc);
	return 0;
}

int blkdev_poll(struct blkdev *dev)
{
	return dev->ops->poll ? dev->ops->poll(dev) : 0;
}
