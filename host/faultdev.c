/* SPDX-License-Identifier: MIT */
/* A fault-injecting wrapper: fails the n'th read, write or flush with -EIO. */
#include "host/hostdev.h"
#include "core/base/util.h"

#include <stdlib.h>

struct faultdev {
	struct blkdev dev;
	struct blkdev *lower;
	uint64_t count[3]; /* indexed by BLKDEV_READ, BLKDEV_WRITE, BLKDEV_FLUSH */
	uint64_t fail_at[3];
	bool sticky[3];
	bool fired;
};

static struct faultdev *to_fd(struct blkdev *dev)
{
	return container_of(dev, struct faultdev, dev);
}

/* Count one call of @op; true when it must fail. */
static bool faultdev_hit(struct faultdev *fd, enum blkdev_op op)
{
	uint64_t n = ++fd->count[op];

	if (!fd->fail_at[op] || n < fd->fail_at[op])
		return false;
	if (n > fd->fail_at[op] && !fd->sticky[op])
		return false;
	fd->fired = true;
	return true;
}

static int faultdev_read(struct blkdev *dev, uint64_t block, uint32_t count, void *buf)
{
	struct faultdev *fd = to_fd(dev);

	return faultdev_hit(fd, BLKDEV_READ) ? -EIO : blkdev_read(fd->lower, block, count, buf);
}

static int faultdev_write(struct blkdev *dev, uint64_t block, uint32_t count, const void *buf)
{
	struct faultdev *fd = to_fd(dev);

	return faultdev_hit(fd, BLKDEV_WRITE) ? -EIO : blkdev_write(fd->lower, block, count, buf);
}

static int faultdev_flush(struct blkdev *dev)
{
	struct faultdev *fd = to_fd(dev);

	return faultdev_hit(fd, BLKDEV_FLUSH) ? -EIO : blkdev_flush(fd->lower);
}

static void faultdev_destroy(struct blkdev *dev)
{
	free(to_fd(dev));
}

static const struct blkdev_ops faultdev_ops = {
	.read = faultdev_read,
	.write = faultdev_write,
	.flush = faultdev_flush,
	.destroy = faultdev_destroy,
};

int faultdev_create(struct blkdev *lower, struct blkdev **out)
{
	struct faultdev *fd = calloc(1, sizeof(*fd));

	if (!fd)
		return -ENOMEM;
	fd->lower = lower;
	fd->dev.ops = &faultdev_ops;
	fd->dev.name = "faultdev";
	fd->dev.nr_blocks = lower->nr_blocks;
	fd->dev.block_size = lower->block_size;
	*out = &fd->dev;
	return 0;
}

void faultdev_fail_nth(struct blkdev *dev, enum blkdev_op op, uint64_t n, bool sticky)
{
	struct faultdev *fd = to_fd(dev);

	if (op > BLKDEV_FLUSH)
		return;
	fd->fail_at[op] = n ? fd->count[op] + n : 0;
	fd->sticky[op] = sticky;
	fd->fired = false;
}

uint64_t faultdev_count(struct blkdev *dev, enum blkdev_op op)
{
	return op <= BLKDEV_FLUSH ? to_fd(dev)->count[op] : 0;
}

bool faultdev_fired(struct blkdev *dev)
{
	return to_fd(dev)->fired;
}
