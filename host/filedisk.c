/* SPDX-License-Identifier: MIT */
/* A block device on a regular file (pread/pwrite/fsync), for tools and bigger tests. */
#include "host/hostdev.h"
#include "core/base/util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

struct filedisk {
	struct blkdev dev;
	int fd;
};

static int filedisk_read(struct blkdev *dev, uint64_t block, uint32_t count, void *buf)
{
	struct filedisk *fd = container_of(dev, struct filedisk, dev);
	size_t len = (size_t)count * dev->block_size, done = 0;

	while (done < len) {
		ssize_t n = pread(fd->fd, (char *)buf + done, len - done,
				  (off_t)(block * dev->block_size + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

static int filedisk_write(struct blkdev *dev, uint64_t block, uint32_t count, const void *buf)
{
	struct filedisk *fd = container_of(dev, struct filedisk, dev);
	size_t len = (size_t)count * dev->block_size, done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd->fd, (const char *)buf + done, len - done,
				   (off_t)(block * dev->block_size + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 && errno == ENOSPC ? -ENOSPC : -EIO;
		done += (size_t)n;
	}
	return 0;
}

static int filedisk_flush(struct blkdev *dev)
{
	struct filedisk *fd = container_of(dev, struct filedisk, dev);

	return fsync(fd->fd) ? -EIO : 0;
}

static int filedisk_discard(struct blkdev *dev, uint64_t block, uint32_t count)
{
	struct filedisk *fd = container_of(dev, struct filedisk, dev);

	/* Punching a hole keeps the file size and makes the range read back as zeroes. */
	if (fallocate(fd->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(block * dev->block_size), (off_t)count * dev->block_size))
		return errno == EOPNOTSUPP ? -EOPNOTSUPP : -EIO;
	return 0;
}

static void filedisk_destroy(struct blkdev *dev)
{
	struct filedisk *fd = container_of(dev, struct filedisk, dev);

	close(fd->fd);
	free(fd);
}

static const struct blkdev_ops filedisk_ops = {
	.read = filedisk_read,
	.write = filedisk_write,
	.flush = filedisk_flush,
	.discard = filedisk_discard,
	.write_zeroes = filedisk_discard,
	.destroy = filedisk_destroy,
};

int filedisk_open(const char *path, uint32_t block_size, bool create, uint64_t nr_blocks,
		  struct blkdev **out)
{
	struct filedisk *fd;
	struct stat st;
	int f;

	if (block_size < 512 || (block_size & (block_size - 1)))
		return -EINVAL;
	f = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0), 0644);
	if (f < 0)
		return -errno;
	if (create && ftruncate(f, (off_t)(nr_blocks * block_size))) {
		int rc = -errno;

		close(f);
		return rc;
	}
	if (fstat(f, &st)) {
		int rc = -errno;

		close(f);
		return rc;
	}
	fd = calloc(1, sizeof(*fd));
	if (!fd) {
		close(f);
		return -ENOMEM;
	}
	fd->fd = f;
	fd->dev.ops = &filedisk_ops;
	fd->dev.name = "filedisk";
	fd->dev.block_size = block_size;
	fd->dev.nr_blocks = (uint64_t)st.st_size / block_size;
	fd->dev.discard_zeroes = true;
	if (!fd->dev.nr_blocks) {
		filedisk_destroy(&fd->dev);
		return -EINVAL;
	}
	*out = &fd->dev;
	return 0;
}
