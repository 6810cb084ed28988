/* SPDX-License-Identifier: MIT */
/*
 * Thin-pool figures through a volume's blkdev (printed, not asserted), on a memory disk and
 * on file disks: provisioning-write IOPS (4 KiB to unmapped 64 KiB blocks, zero fill),
 * copy-on-write IOPS (4 KiB to blocks shared with a snapshot), 4 KiB random-read IOPS from
 * the newest volume of a snapshot chain 1, 100 and 1000 deep, and sequential MiB/s.
 */
#include "core/thin/thin_pool.h"
#include "host/hostdev.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VOL_BLOCKS 2048ull /* 128 MiB volumes of 64 KiB blocks */
#define VOL_BYTES  (VOL_BLOCKS * 65536)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

struct env {
	struct blkdev *meta, *data;
	struct thin_pool *pool;
};

static int env_open(struct env *e, const char *dir, uint64_t data_blocks)
{
	char mp[512], dp[512];
	int r;

	if (dir) {
		snprintf(mp, sizeof(mp), "%s/bench-pool-meta.img", dir);
		snprintf(dp, sizeof(dp), "%s/bench-pool-data.img", dir);
		r = filedisk_open(mp, 4096, true, 16384, &e->meta);
		if (!r)
			r = filedisk_open(dp, 512, true, data_blocks * 128, &e->data);
	} else {
		r = memdisk_create(16384, 4096, &e->meta);
		if (!r)
			r = memdisk_create(data_blocks * 128, 512, &e->data);
	}
	if (!r)
		r = thin_pool_format(e->meta, e->data, NULL, true);
	if (!r)
		r = thin_pool_open(e->meta, e->data, NULL, NULL, 0, &e->pool);
	return r;
}

static void env_close(struct env *e, const char *dir)
{
	char p[512];

	thin_pool_close(e->pool);
	blkdev_destroy(e->data);
	blkdev_destroy(e->meta);
	if (dir) {
		snprintf(p, sizeof(p), "%s/bench-pool-meta.img", dir);
		remove(p);
		snprintf(p, sizeof(p), "%s/bench-pool-data.img", dir);
		remove(p);
	}
}

/* 4 KiB writes at the start of @n distinct blocks in random order; returns IOPS. */
static double write_blocks(struct blkdev *d, uint8_t *buf, uint64_t n, uint64_t seed)
{
	uint64_t *order = malloc(n * sizeof(*order));
	double t0;

	for (uint64_t i = 0; i < n; i++)
		order[i] = i;
	for (uint64_t i = n - 1; i > 0; i--) {
		uint64_t j = rnd(&seed) % (i + 1), x = order[i];

		order[i] = order[j];
		order[j] = x;
	}
	t0 = now();
	for (uint64_t i = 0; i < n; i++)
		if (blkdev_write(d, order[i] * 128, 8, buf))
			return -1;
	if (blkdev_flush(d))
		return -1;
	free(order);
	return (double)n / (now() - t0);
}

static double random_reads(struct blkdev *d, uint8_t *buf, double secs)
{
	uint64_t s = 88172645463325252ull, n = 0;
	double t0 = now();

	while (now() - t0 < secs) {
		for (int i = 0; i < 256; i++, n++)
			if (blkdev_read(d, (rnd(&s) % (VOL_BYTES / 4096)) * 8, 8, buf))
				return -1;
	}
	return (double)n / (now() - t0);
}

static void bench(const char *label, const char *dir)
{
	struct env e;
	struct thin_volume *v;
	struct blkdev *d;
	uint8_t *buf = calloc(1, 1 << 20);
	double t0, prov, cow, wseq, rseq;
	unsigned depth = 0;

	memset(buf, 0xa5, 1 << 20);
	if (env_open(&e, dir, 4 * VOL_BLOCKS + 2048)) {
		printf("%s: setup failed\n", label);
		return;
	}
	/* Provisioning: volume 1, every block written once by a 4 KiB write. */
	thin_pool_create_thin(e.pool, 1);
	thin_volume_open(e.pool, 1, VOL_BYTES, false, &v);
	prov = write_blocks(thin_volume_blkdev(v), buf, VOL_BLOCKS, 1);
	thin_volume_close(v);
	/* Copy-on-write: snapshot, then the same writes to the origin. */
	thin_pool_create_snap(e.pool, 2, 1);
	thin_volume_open(e.pool, 1, VOL_BYTES, false, &v);
	cow = write_blocks(thin_volume_blkdev(v), buf, VOL_BLOCKS, 2);
	thin_volume_close(v);
	/* Sequential: volume 3, 1 MiB writes then reads. */
	thin_pool_create_thin(e.pool, 3);
	thin_volume_open(e.pool, 3, VOL_BYTES, false, &v);
	d = thin_volume_blkdev(v);
	t0 = now();
	for (uint64_t off = 0; off < VOL_BYTES; off += 1 << 20)
		blkdev_write(d, off / 512, 2048, buf);
	blkdev_flush(d);
	wseq = (double)VOL_BYTES / (1 << 20) / (now() - t0);
	t0 = now();
	for (uint64_t off = 0; off < VOL_BYTES; off += 1 << 20)
		blkdev_read(d, off / 512, 2048, buf);
	rseq = (double)VOL_BYTES / (1 << 20) / (now() - t0);
	thin_volume_close(v);
	printf("%-8s provisioning 4 KiB writes %9.0f IOPS   copy-on-write %9.0f IOPS\n", label,
	       prov, cow);
	printf("%-8s sequential 1 MiB writes   %9.0f MiB/s  reads         %9.0f MiB/s\n", label,
	       wseq, rseq);
	/* Random reads from the newest snapshot of chains 1, 100, 1000 deep (of volume 3,
	 * each level writing one block of its own). */
	for (unsigned want = 1; want <= 1000; want *= want == 1 ? 100 : 10) {
		double iops;

		while (depth < want) {
			thin_id_t id = 1000 + depth, origin = depth ? id - 1 : 3;

			if (thin_pool_create_snap(e.pool, id, origin))
				break;
			depth++;
			thin_volume_open(e.pool, id, VOL_BYTES, false, &v);
			blkdev_write(thin_volume_blkdev(v), (depth % VOL_BLOCKS) * 128, 8, buf);
			thin_volume_close(v);
		}
		thin_volume_open(e.pool, 1000 + depth - 1, VOL_BYTES, true, &v);
		iops = random_reads(thin_volume_blkdev(v), buf, 1.0);
		thin_volume_close(v);
		printf("%-8s 4 KiB random reads at snapshot depth %4u: %9.0f IOPS\n", label, depth,
		       iops);
	}
	env_close(&e, dir);
	free(buf);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "build";

	bench("memdisk", NULL);
	bench("filedisk", dir);
	return 0;
}
