/* SPDX-License-Identifier: MIT */
/*
 * Thin-pool figures through a volume's blkdev (printed, not asserted), on a memory disk and
 * on file disks: provisioning-write IOPS (4 KiB to unmapped 64 KiB blocks, zero fill),
 * copy-on-write IOPS (4 KiB to blocks shared with a snapshot), 4 KiB random-read IOPS from
 * the newest volume of a snapshot chain 1, 100 and 1000 deep, and sequential MiB/s. Then
 * 4 KiB random writes at queue depth 16 confined to 4 mapped data blocks, on a data disk with
 * 100 us latency and a deep queue (in-place I/O to one block overlaps), next to the same
 * load kept to one request per data block at a time, as the pool did before it released a
 * block's cell once the block was found mapped.
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

/*----------------------------------------------------------------*/
/* Small I/O confined to a few data blocks */

#define LAT_US 100.0
#define LAT_Q  256

/* A data disk whose requests complete LAT_US after submission, all in parallel (an NVMe
 * SSD, roughly); the I/O happens at completion. */
struct latdev {
	struct blkdev dev; /* first */
	struct blkdev *lower;
	struct blkdev_req *q[LAT_Q];
	double due[LAT_Q];
	unsigned n;
};

static int lat_read(struct blkdev *d, uint64_t b, uint32_t c, void *buf)
{
	return blkdev_read(((struct latdev *)d)->lower, b, c, buf);
}
static int lat_write(struct blkdev *d, uint64_t b, uint32_t c, const void *buf)
{
	return blkdev_write(((struct latdev *)d)->lower, b, c, buf);
}
static int lat_flush(struct blkdev *d)
{
	return blkdev_flush(((struct latdev *)d)->lower);
}
static int lat_discard(struct blkdev *d, uint64_t b, uint32_t c)
{
	return blkdev_discard(((struct latdev *)d)->lower, b, c);
}

static int lat_submit(struct blkdev *d, struct blkdev_req *req)
{
	struct latdev *l = (struct latdev *)d;

	if (l->n == LAT_Q)
		return -EAGAIN;
	l->q[l->n] = req;
	l->due[l->n++] = now() + LAT_US / 1e6;
	return 0;
}

static int lat_poll(struct blkdev *d)
{
	struct latdev *l = (struct latdev *)d;
	double t = now();
	int done = 0;

	for (unsigned i = 0; i < l->n;) {
		struct blkdev_req *req = l->q[i];
		int rc = -EINVAL;

		if (l->due[i] > t) {
			i++;
			continue;
		}
		l->q[i] = l->q[--l->n];
		l->due[i] = l->due[l->n];
		if (req->op == BLKDEV_READ)
			rc = blkdev_read(l->lower, req->block, req->count, req->buf);
		else if (req->op == BLKDEV_WRITE)
			rc = blkdev_write(l->lower, req->block, req->count, req->buf);
		else if (req->op == BLKDEV_FLUSH)
			rc = blkdev_flush(l->lower);
		else if (req->op == BLKDEV_DISCARD)
			rc = blkdev_discard(l->lower, req->block, req->count);
		req->done(req, rc);
		done++;
	}
	return done;
}

static const struct blkdev_ops lat_ops = { .read = lat_read,
					   .write = lat_write,
					   .flush = lat_flush,
					   .discard = lat_discard,
					   .submit = lat_submit,
					   .poll = lat_poll };

#define CONF_BLOCKS 4
#define CONF_QD	    16

struct conf_slot {
	struct blkdev_req req;
	uint64_t vblock;
	bool busy;
	int *done;
};

static void conf_done(struct blkdev_req *req, int rc)
{
	struct conf_slot *s = req->priv;

	s->busy = false;
	*s->done += rc ? 0 : 1;
}

/*
 * 4 KiB writes at random 4 KiB offsets of CONF_BLOCKS mapped blocks, CONF_QD outstanding,
 * for @secs; IOPS. With @one_per_block a request waits (here, before the pool) while another
 * one to its data block is outstanding: what the block's cell did before.
 */
static double confined_writes(struct thin_pool *pool, struct blkdev *d, uint8_t *buf,
			      bool one_per_block, double secs)
{
	struct conf_slot s[CONF_QD];
	unsigned per_block[CONF_BLOCKS];
	uint64_t seed = 0x2545f4914f6cdd1dull;
	int done = 0;
	double t0 = now();

	memset(s, 0, sizeof(s));
	memset(per_block, 0, sizeof(per_block));
	for (int i = 0; i < CONF_QD; i++) {
		s[i].done = &done;
		s[i].vblock = ~0ull;
	}
	while (now() - t0 < secs) {
		for (int i = 0; i < CONF_QD; i++) {
			uint64_t pos;

			if (s[i].busy)
				continue;
			if (s[i].vblock != ~0ull) {
				per_block[s[i].vblock]--; /* finished */
				s[i].vblock = ~0ull;
			}
			pos = rnd(&seed) % (CONF_BLOCKS * 16); /* 4 KiB slots */
			if (one_per_block && per_block[pos / 16])
				continue; /* tried again in the next round */
			s[i].vblock = pos / 16;
			per_block[s[i].vblock]++;
			s[i].req = (struct blkdev_req){ .op = BLKDEV_WRITE,
							.block = pos * 8,
							.count = 8,
							.buf = buf,
							.done = conf_done,
							.priv = &s[i] };
			s[i].busy = true;
			if (blkdev_submit(d, &s[i].req)) {
				s[i].busy = false;
				return -1;
			}
		}
		thin_pool_poll(pool);
	}
	for (int k = 0; k < 1000000; k++) {
		bool any = false;

		for (int i = 0; i < CONF_QD; i++)
			any |= s[i].busy;
		if (!any)
			break;
		thin_pool_poll(pool);
	}
	return done / (now() - t0);
}

static void bench_confined(void)
{
	struct blkdev *meta = NULL, *lower = NULL;
	struct latdev lat;
	struct thin_pool *pool = NULL;
	struct thin_volume *v;
	uint8_t *buf = calloc(1, CONF_BLOCKS * 65536);
	double before, after;

	memset(buf, 0x3c, CONF_BLOCKS * 65536);
	memset(&lat, 0, sizeof(lat));
	if (memdisk_create(16384, 4096, &meta) || memdisk_create(64 * 128, 512, &lower))
		goto out;
	lat.lower = lower;
	lat.dev.ops = &lat_ops;
	lat.dev.name = "latdisk";
	lat.dev.nr_blocks = lower->nr_blocks;
	lat.dev.block_size = lower->block_size;
	if (thin_pool_format(meta, &lat.dev, NULL, true) ||
	    thin_pool_open(meta, &lat.dev, NULL, NULL, 0, &pool) ||
	    thin_pool_create_thin(pool, 1) ||
	    thin_volume_open(pool, 1, CONF_BLOCKS * 65536, false, &v))
		goto out;
	/* Map the blocks first: the figure is about in-place writes. */
	if (blkdev_write(thin_volume_blkdev(v), 0, CONF_BLOCKS * 128, buf) ||
	    blkdev_flush(thin_volume_blkdev(v)))
		goto out;
	before = confined_writes(pool, thin_volume_blkdev(v), buf, true, 1.0);
	after = confined_writes(pool, thin_volume_blkdev(v), buf, false, 1.0);
	thin_volume_close(v);
	printf("latdisk  4 KiB random writes QD%d confined to %d data blocks (%.0f us disk): "
	       "%9.0f IOPS   one request per block at a time (before): %9.0f IOPS\n",
	       CONF_QD, CONF_BLOCKS, LAT_US, after, before);
out:
	if (pool)
		thin_pool_close(pool);
	blkdev_destroy(lower);
	blkdev_destroy(meta);
	free(buf);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "build";

	bench("memdisk", NULL);
	bench("filedisk", dir);
	bench_confined();
	return 0;
}
