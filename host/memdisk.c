/* SPDX-License-Identifier: MIT */
/* A block device in heap memory: the fastest backing for unit tests and benchmarks. */
#include "host/hostdev.h"
#include "core/base/util.h"

#include <stdlib.h>
#include <string.h>

struct memdisk {
	struct blkdev dev;
	uint8_t *mem;
};

static int memdisk_read(struct blkdev *dev, uint64_t block, uint32_t count, void *buf)
{
	struct memdisk *md = container_of(dev, struct memdisk, dev);

	memcpy(buf, md->mem + block * dev->block_size, (size_t)count * dev->block_size);
	return 0;
}

static int memdisk_write(struct blkdev *dev, uint64_t block, uint32_t count, const void *buf)
{
	struct memdisk *md = container_of(dev, struct memdisk, dev);

	memcpy(md->mem + block * dev->block_size, buf, (size_t)count * dev->block_size);
	return 0;
}

static int memdisk_flush(struct blkdev *dev)
{
	return 0;
}

static int memdisk_discard(struct blkdev *dev, uint64_t block, uint32_t count)
{
	struct memdisk *md = container_of(dev, struct memdisk, dev);

	memset(md->mem + block * dev->block_size, 0, (size_t)count * dev->block_size);
	return 0;
}

static void memdisk_destroy(struct blkdev *dev)
{
	struct memdisk *md = container_of(dev, struct memdisk, dev);

	free(md->mem);
	free(md);
}

static const struct blkdev_ops memdisk_ops = {
	.read = memdisk_read,
	.write = memdisk_write,
	.flush = memdisk_flush,
	.discard = memdisk_discard,
	.write_zeroes = memdisk_discard,
	.destroy = memdisk_destroy,
};

int memdisk_create(uint64_t nr_blocks, uint32_t block_size, struct blkdev **out)
{
	struct memdisk *md;

	if (block_size < 512 || (block_size & (block_size - 1)) || !nr_blocks)
		return -EINVAL;
	md = calloc(1, sizeof(*md));
	if (!md)
		return -ENOMEM;
	md->mem = calloc(nr_blocks, block_size);
	if (!md->mem) {
		free(md);
		return -ENOMEM;
	}
	md->dev.ops = &memdisk_ops;
	md->dev.name = "memdisk";
	md->dev.nr_blocks = nr_blocks;
	md->dev.block_size = block_size;
	md->dev.discard_zeroes = true;
	*out = &md->dev;
	return 0;
}
