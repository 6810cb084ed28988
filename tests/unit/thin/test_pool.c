/* SPDX-License-Identifier: MIT */
/*
 * Thin pool data path: dm-thin semantics through a volume's blkdev (zeroes for holes,
 * provisioning with zero fill, copy-on-write after a snapshot, discard and passdown,
 * write-zeroes), a 100-deep snapshot chain, allocation locality, the commit policy, and a
 * model test on a data disk that completes requests out of order.
 */
#include "tests/support/pool_test.h"

#include "core/base/plat.h"

static uint8_t *bufa(size_t n)
{
	uint8_t *b = malloc(n);

	if (b)
		memset(b, 0x5c, n);
	return b;
}

/* A volume of @size bytes on thin device @id (created if needed). */
static struct blkdev *vol_open(struct thin_pool *pool, thin_id_t id, uint64_t size,
			       struct thin_volume **vol)
{
	int r = thin_md_device_exists(thin_pool_md(pool), id);

	if (r == 0)
		r = thin_pool_create_thin(pool, id);
	else if (r == 1)
		r = 0;
	if (!ok_eq(r, 0))
		return NULL;
	if (!ok_eq(thin_volume_open(pool, id, size, false, vol), 0))
		return NULL;
	return thin_volume_blkdev(*vol);
}

/* The device says it announces its completions (blkdev_ops signals_completion). */
static bool blkdev_signals_completion_test(const struct blkdev *d)
{
	return d->ops->signals_completion && d->ops->signals_completion(d);
}

TEST(unmapped_reads_zero_and_partial_write_zero_fills)
{
	struct tpool t;
	struct thin_volume *vol;
	struct blkdev *d;
	uint8_t *b = bufa(KB64), *w = bufa(4096);
	struct thin_lookup_result res;
	struct thin_dev *td;

	if (!ok_eq(tpool_create(&t, 256, 32, NULL), 0))
		return;
	/* Garbage on the data disk: zeroing must hide it. */
	memset(b, 0xee, KB64);
	for (uint64_t i = 0; i < 32; i++)
		blkdev_write(t.data, i * 128, 128, b);
	d = vol_open(t.pool, 1, 1 << 20, &vol);
	ok_eq(d->block_size, 512);
	ok_eq(d->nr_blocks, 2048);
	ok_eq(blkdev_read(d, 0, 128, b), 0);
	ok(all_bytes(b, KB64, 0));
	pattern(w, 4096, 7);
	/* 4 KiB at offset 8 KiB of block 1. */
	ok_eq(blkdev_write(d, 128 + 16, 8, w), 0);
	ok_eq(blkdev_read(d, 128, 128, b), 0);
	ok(all_bytes(b, 8192, 0));
	ok(!memcmp(b + 8192, w, 4096));
	ok(all_bytes(b + 12288, KB64 - 12288, 0));
	/* Block 0 is still a hole, and reads zero. */
	ok_eq(blkdev_read(d, 0, 1, b), 0);
	ok(all_bytes(b, 512, 0));
	ok_eq(data_used(t.pool), 1);
	/* Beyond the end: refused. */
	ok_eq(blkdev_read(d, 2048, 1, b), -EINVAL);
	/* A read straddling blocks 0/1. */
	ok_eq(blkdev_read(d, 120, 40, b), 0);
	ok(all_bytes(b, 8 * 512 + 16 * 512, 0));
	ok(!memcmp(b + 24 * 512, w, 4096));
	ok_eq(blkdev_flush(d), 0);
	thin_volume_close(vol);
	ok_eq(check_dev(t.meta), 0);
	/* The mapping was committed. */
	ok_eq(thin_md_open_thin(thin_pool_md(t.pool), 1, &td), 0);
	ok_eq(thin_find_block(td, 1, true, &res), 0);
	thin_md_close_thin(td);
	tpool_destroy(&t);
	free(b);
	free(w);
}

/* A data disk that counts the bytes written and zeroed, and may refuse WRITE_ZEROES. */
struct zcount {
	struct blkdev dev;
	struct blkdev *lower;
	uint64_t written, zeroed;
	unsigned wz_calls;
	bool refuse_wz;
	struct blkdev_req *q[64]; /* with zc_async_ops: requests run at the next poll */
	unsigned n;
};

static int zc_read(struct blkdev *d, uint64_t b, uint32_t c, void *buf)
{
	return blkdev_read(container_of(d, struct zcount, dev)->lower, b, c, buf);
}
static int zc_write(struct blkdev *d, uint64_t b, uint32_t c, const void *buf)
{
	struct zcount *z = container_of(d, struct zcount, dev);

	z->written += (uint64_t)c * d->block_size;
	return blkdev_write(z->lower, b, c, buf);
}
static int zc_flush(struct blkdev *d)
{
	return blkdev_flush(container_of(d, struct zcount, dev)->lower);
}
static int zc_discard(struct blkdev *d, uint64_t b, uint32_t c)
{
	return blkdev_discard(container_of(d, struct zcount, dev)->lower, b, c);
}
static int zc_write_zeroes(struct blkdev *d, uint64_t b, uint32_t c)
{
	struct zcount *z = container_of(d, struct zcount, dev);

	z->wz_calls++;
	if (z->refuse_wz)
		return -EOPNOTSUPP;
	z->zeroed += (uint64_t)c * d->block_size;
	return blkdev_write_zeroes(z->lower, b, c);
}

static int zc_submit(struct blkdev *d, struct blkdev_req *req)
{
	struct zcount *z = container_of(d, struct zcount, dev);

	if (z->n == ARRAY_SIZE(z->q))
		return -EAGAIN;
	z->q[z->n++] = req;
	return 0;
}

static int zc_poll(struct blkdev *d)
{
	struct zcount *z = container_of(d, struct zcount, dev);
	unsigned n = z->n;

	z->n = 0;
	for (unsigned i = 0; i < n; i++) {
		struct blkdev_req *req = z->q[i];
		int rc;

		switch (req->op) {
		case BLKDEV_READ:
			rc = zc_read(d, req->block, req->count, req->buf);
			break;
		case BLKDEV_WRITE:
			rc = zc_write(d, req->block, req->count, req->buf);
			break;
		case BLKDEV_WRITE_ZEROES:
			rc = zc_write_zeroes(d, req->block, req->count);
			break;
		default:
			rc = blkdev_run_req(z->lower, req);
			break;
		}
		req->done(req, rc);
	}
	return (int)n;
}

static const struct blkdev_ops zc_ops = { .read = zc_read,
					  .write = zc_write,
					  .flush = zc_flush,
					  .discard = zc_discard,
					  .write_zeroes = zc_write_zeroes };

/* A pool whose data disk is a zcount of 16 blocks holding garbage (0xee), volume 1 (1 MiB) open
 * on it: the volume's blkdev, or NULL (a check failed). */
struct zpool {
	struct zcount z;
	struct blkdev *meta;
	struct thin_pool *pool;
	struct thin_volume *vol;
};

static struct blkdev *zpool_open(struct zpool *zp, const struct blkdev_ops *ops)
{
	struct thin_pool_opts o;
	uint8_t *b;

	memset(zp, 0, sizeof(*zp));
	thin_pool_default_opts(&o);
	if (!ok_eq(memdisk_create(256, 4096, &zp->meta), 0) ||
	    !ok_eq(memdisk_create(16 * KB64 / 512, 512, &zp->z.lower), 0))
		return NULL;
	zp->z.dev = *zp->z.lower;
	zp->z.dev.ops = ops;
	zp->z.dev.name = "zcount";
	b = bufa(KB64);
	memset(b, 0xee, KB64);
	for (uint64_t i = 0; i < 16; i++)
		blkdev_write(zp->z.lower, i * 128, 128, b);
	free(b);
	if (!ok_eq(thin_pool_format(zp->meta, &zp->z.dev, &o, false), 0) ||
	    !ok_eq(thin_pool_open(zp->meta, &zp->z.dev, &o, NULL, 0, &zp->pool), 0))
		return NULL;
	return vol_open(zp->pool, 1, 1 << 20, &zp->vol);
}

/* Close it all: the pool closes cleanly and its metadata checks clean. */
static void zpool_close(struct zpool *zp)
{
	thin_volume_close(zp->vol);
	ok_eq(thin_pool_close(zp->pool), 0);
	ok_eq(check_dev(zp->meta), 0);
	blkdev_destroy(zp->z.lower);
	blkdev_destroy(zp->meta);
}

/*
 * Zeroing a new block is one WRITE_ZEROES and the payload, not 64 KiB of written zeroes (a
 * sparse terabyte data disk stays sparse); a disk that refuses WRITE_ZEROES gets the zeroes
 * written, and is not asked again.
 */
TEST(zero_fill_uses_write_zeroes)
{
	struct zpool zp;
	struct zcount *z = &zp.z;
	uint8_t *b = bufa(KB64), *w = bufa(4096);
	struct blkdev *d = zpool_open(&zp, &zc_ops);

	if (!d)
		return;
	pattern(w, 4096, 9);
	z->written = z->zeroed = 0;
	/* 4 KiB at offset 8 KiB of block 1: one WRITE_ZEROES of the block, 4 KiB written. */
	ok_eq(blkdev_write(d, 128 + 16, 8, w), 0);
	ok_eq(z->written, 4096);
	ok_eq(z->zeroed, KB64);
	ok_eq(blkdev_read(d, 128, 128, b), 0);
	ok(all_bytes(b, 8192, 0) && !memcmp(b + 8192, w, 4096) &&
	   all_bytes(b + 12288, KB64 - 12288, 0));
	/* Refused: the whole block is written, zeroes and all; later blocks are not asked. */
	z->refuse_wz = true;
	z->written = z->zeroed = 0;
	ok_eq(blkdev_write(d, 3 * 128 + 8, 8, w), 0);
	ok_eq(z->written, KB64);
	ok_eq(blkdev_read(d, 3 * 128, 128, b), 0);
	ok(all_bytes(b, 4096, 0) && !memcmp(b + 4096, w, 4096) &&
	   all_bytes(b + 8192, KB64 - 8192, 0));
	z->wz_calls = 0;
	ok_eq(blkdev_write(d, 5 * 128, 8, w), 0);
	ok_eq(z->wz_calls, 0);
	ok_eq(z->written, 2 * KB64);
	ok_eq(z->zeroed, 0);
	ok_eq(blkdev_read(d, 5 * 128, 128, b), 0);
	ok(!memcmp(b, w, 4096) && all_bytes(b + 4096, KB64 - 4096, 0));
	zpool_close(&zp);
	free(b);
	free(w);
}

static const struct blkdev_ops zc_async_ops = { .read = zc_read,
						.write = zc_write,
						.flush = zc_flush,
						.discard = zc_discard,
						.write_zeroes = zc_write_zeroes,
						.submit = zc_submit,
						.poll = zc_poll };

static void zc_done(struct blkdev_req *req, int rc)
{
	int *res = req->priv;

	*res = rc;
}

/* Several WRITE_ZEROES refused at once: every one of those writes is zero-filled by writing. */
TEST(zero_fill_refused_while_several_in_flight)
{
	struct zpool zp;
	struct zcount *z = &zp.z;
	struct blkdev_req req[4];
	int res[4];
	uint8_t *b = bufa(KB64), *w = bufa(4096);
	struct blkdev *d = zpool_open(&zp, &zc_async_ops);

	if (!d)
		return;
	pattern(w, 4096, 11);
	z->refuse_wz = true;
	for (int i = 0; i < 4; i++) {
		res[i] = 1;
		req[i] = (struct blkdev_req){ .op = BLKDEV_WRITE,
					      .block = (uint64_t)i * 128 + 8,
					      .count = 8,
					      .buf = w,
					      .done = zc_done,
					      .priv = &res[i] };
		ok_eq(blkdev_submit(d, &req[i]), 0);
	}
	for (int spin = 0;
	     spin < 1000 && (res[0] == 1 || res[1] == 1 || res[2] == 1 || res[3] == 1); spin++)
		thin_pool_poll(zp.pool);
	ok(z->wz_calls >= 2); /* several were refused, not one */
	for (int i = 0; i < 4; i++) {
		ok_eq(res[i], 0);
		ok_eq(blkdev_read(d, (uint64_t)i * 128, 128, b), 0);
		ok(all_bytes(b, 4096, 0) && !memcmp(b + 4096, w, 4096) &&
		   all_bytes(b + 8192, KB64 - 8192, 0));
	}
	zpool_close(&zp);
	free(b);
	free(w);
}

TEST(no_zeroing_leaves_the_rest_unwritten)
{
	struct tpool t;
	struct thin_pool_opts o;
	struct thin_volume *vol;
	struct blkdev *d;
	uint8_t *b = bufa(KB64), *w = bufa(512);

	thin_pool_default_opts(&o);
	o.zero_new_blocks = false;
	if (!ok_eq(tpool_create(&t, 256, 8, &o), 0))
		return;
	memset(b, 0xee, KB64);
	for (uint64_t i = 0; i < 8; i++)
		blkdev_write(t.data, i * 128, 128, b);
	d = vol_open(t.pool, 1, 1 << 20, &vol);
	pattern(w, 512, 3);
	ok_eq(blkdev_write(d, 5, 1, w), 0);
	ok_eq(blkdev_read(d, 0, 128, b), 0);
	ok(all_bytes(b, 5 * 512, 0xee));
	ok(!memcmp(b + 5 * 512, w, 512));
	/* Holes still read zero. */
	ok_eq(blkdev_read(d, 128, 128, b), 0);
	ok(all_bytes(b, KB64, 0));
	thin_volume_close(vol);
	tpool_destroy(&t);
	free(b);
	free(w);
}

TEST(snapshot_then_overwrite_origin)
{
	struct tpool t;
	struct thin_volume *vol, *snap;
	struct blkdev *d, *s;
	uint8_t *a = bufa(4 * KB64), *b = bufa(4 * KB64), *n = bufa(4096);
	uint32_t count, tm;
	uint64_t db;
	struct thin_md_view view;

	if (!ok_eq(tpool_create(&t, 256, 32, NULL), 0))
		return;
	d = vol_open(t.pool, 1, 4 * KB64, &vol);
	pattern(a, 4 * KB64, 1);
	ok_eq(blkdev_write(d, 0, 512, a), 0);
	ok_eq(data_used(t.pool), 4);
	thin_volume_close(vol);
	ok_eq(thin_pool_create_snap(t.pool, 2, 1), 0);
	d = vol_open(t.pool, 1, 4 * KB64, &vol);
	s = vol_open(t.pool, 2, 4 * KB64, &snap);
	/* Partial overwrite of block 1 (copy), whole overwrite of block 2 (no copy). */
	pattern(n, 4096, 2);
	ok_eq(blkdev_write(d, 128 + 8, 8, n), 0);
	pattern(b, KB64, 3);
	ok_eq(blkdev_write(d, 256, 128, b), 0);
	ok_eq(data_used(t.pool), 6);
	/* The snapshot reads the old data. */
	ok_eq(blkdev_read(s, 0, 512, b), 0);
	ok(!memcmp(a, b, 4 * KB64));
	/* The origin reads the new data, and the rest of block 1 was copied. */
	ok_eq(blkdev_read(d, 0, 512, b), 0);
	ok(!memcmp(b, a, KB64));
	ok(!memcmp(b + KB64, a + KB64, 4096));
	ok(!memcmp(b + KB64 + 4096, n, 4096));
	ok(!memcmp(b + KB64 + 8192, a + KB64 + 8192, KB64 - 8192));
	ok(!memcmp(b + 3 * KB64, a + 3 * KB64, KB64));
	/* Old blocks of 1 and 2 now only referenced by the snapshot; block 0 still shared. */
	ok_eq(thin_md_view_current(thin_pool_md(t.pool), &view), 0);
	ok_eq(thin_view_lookup(&view, 2, 1, &db, &tm), 0);
	ok_eq(thin_md_data_block_refcount(thin_pool_md(t.pool), db, &count), 0);
	ok_eq(count, 1);
	ok_eq(thin_view_lookup(&view, 2, 0, &db, &tm), 0);
	ok_eq(thin_md_data_block_refcount(thin_pool_md(t.pool), db, &count), 0);
	ok_eq(count, 2);
	/* Writing the snapshot's block 0 copies too; the origin keeps its data. */
	pattern(n, 4096, 9);
	ok_eq(blkdev_write(s, 0, 8, n), 0);
	ok_eq(blkdev_read(d, 0, 8, b), 0);
	ok(!memcmp(b, a, 4096));
	ok_eq(blkdev_flush(s), 0);
	thin_volume_close(snap);
	thin_volume_close(vol);
	ok_eq(check_dev(t.meta), 0);
	/* Delete the origin: its own blocks are freed, shared ones stay. */
	ok_eq(thin_pool_delete_thin(t.pool, 1), 0);
	ok_eq(data_used(t.pool), 4);
	ok_eq(check_dev(t.meta), 0);
	tpool_destroy(&t);
	free(a);
	free(b);
	free(n);
}

/* 100 snapshots, each of the previous one, each changing some 4 KiB pages; every level
 * checked against a model of page stamps, before and after a reopen. */
#define CHAIN	    100
#define CHAIN_PAGES 64 /* 4 blocks of 16 pages */
TEST(snapshot_chain_100_deep)
{
	static uint32_t model[CHAIN + 1][CHAIN_PAGES];
	struct tpool t;
	struct thin_volume *vol;
	struct blkdev *d;
	uint8_t *p = bufa(4096), *q = bufa(4096);
	uint64_t seed = test_seed();
	const uint64_t size = CHAIN_PAGES * 4096;

	if (!ok_eq(tpool_create(&t, 2048, 1024, NULL), 0))
		return;
	memset(model, 0, sizeof(model));
	for (unsigned lvl = 0; lvl <= CHAIN && !test_failed(); lvl++) {
		if (lvl) {
			ok_eq(thin_pool_create_snap(t.pool, lvl, lvl - 1), 0);
			memcpy(model[lvl], model[lvl - 1], sizeof(model[lvl]));
		} else {
			ok_eq(thin_pool_create_thin(t.pool, 0), 0);
		}
		ok_eq(thin_volume_open(t.pool, lvl, size, false, &vol), 0);
		d = thin_volume_blkdev(vol);
		for (unsigned k = 0; k < 3; k++) {
			unsigned pg = (unsigned)(test_rand(&seed) % CHAIN_PAGES);

			model[lvl][pg] = lvl * 1000 + k + 1;
			pattern(p, 4096, model[lvl][pg]);
			ok_eq(blkdev_write(d, pg * 8, 8, p), 0);
		}
		thin_volume_close(vol);
	}
	for (int pass = 0; pass < 2 && !test_failed(); pass++) {
		for (unsigned lvl = 0; lvl <= CHAIN && !test_failed(); lvl++) {
			ok_eq(thin_volume_open(t.pool, lvl, size, true, &vol), 0);
			d = thin_volume_blkdev(vol);
			for (unsigned pg = 0; pg < CHAIN_PAGES; pg++) {
				ok_eq(blkdev_read(d, pg * 8, 8, q), 0);
				if (model[lvl][pg])
					pattern(p, 4096, model[lvl][pg]);
				else
					memset(p, 0, 4096);
				if (memcmp(p, q, 4096)) {
					fail("level %u page %u differs", lvl, pg);
					break;
				}
			}
			thin_volume_close(vol);
		}
		/* Reopen and check again. */
		ok_eq(thin_pool_close(t.pool), 0);
		ok_eq(check_dev(t.meta), 0);
		ok_eq(thin_pool_open(t.meta, t.data, &t.o, NULL, 0, &t.pool), 0);
	}
	tpool_destroy(&t);
	free(p);
	free(q);
}

TEST(discard_unmaps_whole_blocks_and_passes_down)
{
	struct tpool t;
	struct thin_volume *vol, *snap;
	struct blkdev *d;
	uint8_t *a = bufa(4 * KB64), *b = bufa(4 * KB64);
	uint64_t mapped, db1;
	uint32_t tm;
	struct thin_md_view view;
	struct thin_dev *td;

	if (!ok_eq(tpool_create(&t, 256, 32, NULL), 0))
		return;
	d = vol_open(t.pool, 1, 4 * KB64, &vol);
	pattern(a, 4 * KB64, 11);
	ok_eq(blkdev_write(d, 0, 512, a), 0);
	ok_eq(data_used(t.pool), 4);
	/* Committed: a block allocated and freed in one transaction is free at once. */
	ok_eq(blkdev_flush(d), 0);
	ok_eq(thin_md_view_current(thin_pool_md(t.pool), &view), 0);
	ok_eq(thin_view_lookup(&view, 1, 1, &db1, &tm), 0);
	ok_eq(blkdev_read(t.data, db1 * 128, 128, b), 0);
	ok(!memcmp(b, a + KB64, KB64));
	/* Half of block 0 and all of block 1: only block 1 is unmapped. */
	ok_eq(blkdev_discard(d, 64, 192), 0);
	/* Freed blocks count as free after the commit (the space map's rule). */
	ok_eq(data_used(t.pool), 4);
	ok_eq(blkdev_flush(d), 0);
	ok_eq(data_used(t.pool), 3);
	ok_eq(blkdev_read(d, 0, 512, b), 0);
	ok(!memcmp(b, a, KB64)); /* the partial part keeps its data (TRIM, not zeroes) */
	ok(all_bytes(b + KB64, KB64, 0));
	ok(!memcmp(b + 2 * KB64, a + 2 * KB64, 2 * KB64));
	/* Passdown: the freed block was discarded on the data disk. */
	ok_eq(blkdev_read(t.data, db1 * 128, 128, b), 0);
	ok(all_bytes(b, KB64, 0));
	/* Write-zeroes: whole block 2 unmapped, the half of block 3 zeroed. */
	ok_eq(blkdev_write_zeroes(d, 256, 192), 0);
	ok_eq(blkdev_flush(d), 0);
	ok_eq(data_used(t.pool), 2);
	ok_eq(blkdev_read(d, 256, 256, b), 0);
	ok(all_bytes(b, KB64 + KB64 / 2, 0));
	ok(!memcmp(b + KB64 + KB64 / 2, a + 3 * KB64 + KB64 / 2, KB64 / 2));
	/* Write-zeroes over a hole provisions nothing. */
	ok_eq(blkdev_write_zeroes(d, 128 + 3, 5), 0);
	ok_eq(data_used(t.pool), 2);
	thin_volume_close(vol);

	/* A block shared with a snapshot: unmapped in the origin, not passed down. */
	ok_eq(thin_pool_create_snap(t.pool, 2, 1), 0);
	d = vol_open(t.pool, 1, 4 * KB64, &vol);
	ok_eq(thin_volume_open(t.pool, 2, 4 * KB64, true, &snap), 0);
	ok_eq(blkdev_discard(d, 0, 128), 0);
	ok_eq(blkdev_read(d, 0, 128, b), 0);
	ok(all_bytes(b, KB64, 0));
	ok_eq(blkdev_read(thin_volume_blkdev(snap), 0, 128, b), 0);
	ok(!memcmp(b, a, KB64));
	ok_eq(blkdev_flush(d), 0);
	thin_volume_close(snap);
	thin_volume_close(vol);
	ok_eq(thin_md_open_thin(thin_pool_md(t.pool), 1, &td), 0);
	ok_eq(thin_get_mapped_count(td, &mapped), 0);
	ok_eq(mapped, 1);
	thin_md_close_thin(td);
	ok_eq(check_dev(t.meta), 0);
	tpool_destroy(&t);
	free(a);
	free(b);
}

TEST(extents_report_holes_and_data)
{
	struct tpool t;
	struct thin_volume *vol;
	struct blkdev *d;
	struct thin_extent e[8];
	uint8_t *a = bufa(KB64);

	if (!ok_eq(tpool_create(&t, 256, 32, NULL), 0))
		return;
	d = vol_open(t.pool, 1, 8 * KB64, &vol);
	ok_eq(blkdev_write(d, 2 * 128, 128, a), 0);
	ok_eq(blkdev_write(d, 3 * 128 + 5, 1, a), 0);
	ok_eq(thin_volume_extents(vol, 0, 8 * KB64, e, 8), 3);
	ok_eq(e[0].length, 2 * KB64);
	ok_eq(e[0].flags, 3);
	ok_eq(e[1].length, 2 * KB64);
	ok_eq(e[1].flags, 0);
	ok_eq(e[2].length, 4 * KB64);
	ok_eq(e[2].flags, 3);
	ok_eq(thin_volume_extents(vol, 2 * KB64 + 100, 1000, e, 8), 1);
	ok_eq(e[0].length, 1000);
	ok_eq(e[0].flags, 0);
	ok_eq(thin_volume_extents(vol, 0, 8 * KB64, e, 1), 1);
	ok_eq(e[0].length, 2 * KB64);
	/* Shrink drops the blocks past the end. */
	ok_eq(thin_volume_resize(vol, 3 * KB64), 0);
	ok_eq(blkdev_flush(d), 0);
	ok_eq(data_used(t.pool), 1);
	thin_volume_close(vol);
	tpool_destroy(&t);
	free(a);
}

/* Two volumes written sequentially, interleaved block by block: each stays one run. */
TEST(allocation_follows_each_volume)
{
	struct tpool t;
	struct thin_volume *v1, *v2;
	struct blkdev *d1, *d2;
	struct thin_dev *td;
	uint8_t *a = bufa(KB64);
	uint64_t vb, ve, pb;
	bool sh;

	if (!ok_eq(tpool_create(&t, 512, 256, NULL), 0))
		return;
	d1 = vol_open(t.pool, 1, 64 * KB64, &v1);
	d2 = vol_open(t.pool, 2, 64 * KB64, &v2);
	/* The first write of volume 2 lands far away from volume 1's run. */
	ok_eq(blkdev_write(d1, 0, 128, a), 0);
	ok_eq(blkdev_write(d2, 0, 128, a), 0);
	for (uint64_t i = 1; i < 32; i++) {
		ok_eq(blkdev_write(d1, i * 128, 128, a), 0);
		ok_eq(blkdev_write(d2, i * 128, 128, a), 0);
	}
	thin_volume_close(v1);
	thin_volume_close(v2);
	for (thin_id_t id = 1; id <= 2; id++) {
		ok_eq(thin_md_open_thin(thin_pool_md(t.pool), id, &td), 0);
		ok_eq(thin_find_mapped_range(td, 0, 64, &vb, &ve, &pb, &sh), 0);
		ok_eq(vb, 0);
		if (!ok_eq(ve, 32))
			printf("  volume %llu: first run [%llu, %llu) at %llu\n",
			       (unsigned long long)id, (unsigned long long)vb,
			       (unsigned long long)ve, (unsigned long long)pb);
		thin_md_close_thin(td);
	}
	tpool_destroy(&t);
	free(a);
}

TEST(alloc_data_block_near_hint)
{
	struct tpool t;
	struct thin_md *md;
	uint64_t b;

	if (!ok_eq(tpool_create(&t, 256, 64, NULL), 0))
		return;
	md = thin_pool_md(t.pool);
	ok_eq(thin_md_alloc_data_block_near(md, 40, &b), 0);
	ok_eq(b, 40);
	ok_eq(thin_md_alloc_data_block_near(md, 40, &b), 0);
	ok_eq(b, 41);
	ok_eq(thin_md_alloc_data_block(md, &b), 0); /* continues after the last one */
	ok_eq(b, 42);
	ok_eq(thin_md_alloc_data_block_near(md, 1000, &b), 0); /* past the end: from 0 */
	ok_eq(b, 0);
	/* A block freed in this transaction is not handed out, even when hinted. */
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_dec_data_range(md, 41, 42), 0);
	ok_eq(thin_md_alloc_data_block_near(md, 41, &b), 0);
	ok_eq(b, 43);
	ok_eq(thin_md_abort(md), 0);
	tpool_destroy(&t);
}

static void count_done(struct blkdev_req *req, int rc)
{
	int *p = req->priv;

	p[0]++;
	if (rc && !p[1])
		p[1] = rc;
}

TEST(periodic_commit_and_flush)
{
	struct tpool t;
	struct thin_pool_opts o;
	struct thin_volume *vol;
	struct blkdev *d;
	struct thin_check_stats st;
	uint8_t *a = bufa(KB64);
	uint64_t t0;
	unsigned n = 0;

	thin_pool_default_opts(&o);
	o.commit_interval_ms = 100;
	if (!ok_eq(tpool_create(&t, 256, 32, &o), 0))
		return;
	d = vol_open(t.pool, 1, 8 * KB64, &vol);
	ok_eq(blkdev_write(d, 0, 128, a), 0);
	/* Not committed yet. */
	ok_eq(thin_check(t.meta, print_problem, &n, &st), 0);
	ok_eq(st.mappings, 0);
	t0 = plat_now_ns();
	while (plat_now_ns() - t0 < 300 * NSEC_PER_MSEC) {
		thin_pool_poll(t.pool);
		plat_udelay(1000);
	}
	ok_eq(thin_check(t.meta, print_problem, &n, &st), 0);
	ok_eq(st.mappings, 1);
	/* FLUSH commits at once. */
	ok_eq(blkdev_write(d, 128, 128, a), 0);
	ok_eq(blkdev_flush(d), 0);
	ok_eq(thin_check(t.meta, print_problem, &n, &st), 0);
	ok_eq(st.mappings, 2);
	thin_volume_close(vol);
	tpool_destroy(&t);
	free(a);
}

TEST(status_line)
{
	struct tpool t;
	struct thin_pool_opts o;
	char line[256];

	thin_pool_default_opts(&o);
	o.no_space_timeout_ms = 500;
	if (!ok_eq(tpool_create(&t, 256, 32, &o), 0))
		return;
	ok_eq(thin_pool_set_transaction_id(t.pool, 0, 5), 0);
	ok_eq(thin_pool_status_line(t.pool, line, sizeof(line)), 0);
	printf("  %s\n", line);
	ok(!strncmp(line, "5 ", 2));
	ok(strstr(line, "/256 0/32 - rw discard_passdown queue_if_no_space - 64") != NULL);
	ok_eq(thin_pool_reserve_metadata_snap(t.pool), 0);
	ok_eq(thin_pool_status_line(t.pool, line, sizeof(line)), 0);
	ok(strstr(line, " - rw") == NULL);
	ok_eq(thin_pool_release_metadata_snap(t.pool), 0);
	ok_eq(thin_pool_status_line(t.pool, line, 10), -ENOSPC);
	tpool_destroy(&t);
}

/*
 * Model test on a data disk that completes out of order: many requests in flight (reads,
 * writes, write-zeroes, flushes) to a few blocks, two volumes sharing blocks through a
 * snapshot. Requests in flight together never overlap by sector (except reads with reads),
 * as the order of overlapping in-place I/O is the data disk's; they do share data blocks
 * and data-disk blocks all the time, so provisioning with zero fill, copy-on-write and
 * read-modify-write must keep every neighbour's bytes: each read returns what the model
 * held when it was submitted, and the end state equals the model. Run on a data disk of
 * 512-byte blocks and on one of 4 KiB blocks (pieces smaller than that: read-modify-write).
 */
#define OO_BLOCKS 6
#define OO_SECT	  (OO_BLOCKS * 128)
struct oo_op {
	struct blkdev_req req;
	uint8_t *buf, *expect;
	int v;
	int rc;
	bool done;
};

/* An op in flight on volume @v conflicts with [blk, +cnt): overlap, one of them modifying. */
static bool oo_conflict(const struct oo_op *ops, int v, uint64_t blk, uint32_t cnt, bool read)
{
	for (unsigned i = 0; i < 64; i++) {
		const struct oo_op *o = &ops[i];

		if (!o->buf || o->v != v || o->req.op == BLKDEV_FLUSH)
			continue;
		if (read && o->req.op == BLKDEV_READ)
			continue;
		if (o->req.block < blk + cnt && blk < o->req.block + o->req.count)
			return true;
	}
	return false;
}

static void oo_done(struct blkdev_req *req, int rc)
{
	struct oo_op *op = container_of(req, struct oo_op, req);

	op->rc = rc;
	op->done = true;
}

static void out_of_order_model(uint32_t data_disk_block)
{
	struct blkdev *meta, *lower;
	struct oodev oo;
	struct thin_pool *pool;
	struct thin_volume *vol[2];
	struct blkdev *d[2];
	uint8_t *model[2];
	struct oo_op *ops = calloc(64, sizeof(*ops));
	uint64_t seed = test_seed();
	unsigned inflight = 0, total = 0;
	int r;

	ok_eq(memdisk_create(512, 4096, &meta), 0);
	ok_eq(memdisk_create(64 * KB64 / data_disk_block, data_disk_block, &lower), 0);
	oodev_init(&oo, lower, seed);
	ok_eq(thin_pool_format(meta, &oo.dev, NULL, false), 0);
	ok_eq(thin_pool_open(meta, &oo.dev, NULL, NULL, 0, &pool), 0);
	ok_eq(thin_pool_create_thin(pool, 0), 0);
	for (int v = 0; v < 2; v++) {
		model[v] = calloc(OO_SECT, 512);
		if (v == 1) {
			ok_eq(thin_pool_create_snap(pool, 1, 0), 0);
			memcpy(model[1], model[0], OO_SECT * 512);
		}
		ok_eq(thin_volume_open(pool, (thin_id_t)v, OO_SECT * 512, false, &vol[v]), 0);
		d[v] = thin_volume_blkdev(vol[v]);
		if (v == 0) {
			/* Fill some of volume 0 first, so the snapshot shares blocks. */
			uint8_t *a = malloc(3 * KB64);

			pattern(a, 3 * KB64, 77);
			ok_eq(blkdev_write(d[0], 0, 384, a), 0);
			memcpy(model[0], a, 3 * KB64);
			free(a);
		}
	}
	for (unsigned step = 0; step < 3000 && !test_failed(); step++) {
		unsigned i;

		/* Submit while there is room, else poll. */
		for (i = 0; i < 64 && ops[i].buf; i++)
			;
		if (i < 64 && test_rand(&seed) % 4) {
			struct oo_op *op = &ops[i];
			int v = (int)(test_rand(&seed) % 2), kind = (int)(test_rand(&seed) % 10);
			uint64_t blk = test_rand(&seed) % OO_SECT;
			uint32_t cnt = 1 + (uint32_t)(test_rand(&seed) % 160);

			if (blk + cnt > OO_SECT)
				cnt = (uint32_t)(OO_SECT - blk);
			if (kind < 9 && oo_conflict(ops, v, blk, cnt, kind < 4))
				goto poll;
			memset(op, 0, sizeof(*op));
			op->v = v;
			op->buf = malloc((size_t)cnt * 512);
			op->req.block = blk;
			op->req.count = cnt;
			op->req.buf = op->buf;
			op->req.done = oo_done;
			if (kind < 4) {
				op->req.op = BLKDEV_READ;
				op->expect = malloc((size_t)cnt * 512);
				memcpy(op->expect, model[v] + blk * 512, (size_t)cnt * 512);
			} else if (kind < 8) {
				op->req.op = BLKDEV_WRITE;
				pattern(op->buf, (size_t)cnt * 512, total + 1000);
				memcpy(model[v] + blk * 512, op->buf, (size_t)cnt * 512);
			} else if (kind == 8) {
				op->req.op = BLKDEV_WRITE_ZEROES;
				memset(model[v] + blk * 512, 0, (size_t)cnt * 512);
			} else {
				op->req.op = BLKDEV_FLUSH;
				op->req.block = 0;
				op->req.count = 0;
			}
			r = blkdev_submit(d[v], &op->req);
			if (!ok_eq(r, 0))
				break;
			inflight++;
			total++;
			continue;
		}
	poll:
		thin_pool_poll(pool);
		for (i = 0; i < 64; i++) {
			struct oo_op *op = &ops[i];

			if (!op->buf || !op->done)
				continue;
			ok_eq(op->rc, 0);
			if (op->expect && memcmp(op->expect, op->buf, op->req.count * 512ull))
				fail("read of %u sectors at %llu saw the wrong data", op->req.count,
				     (unsigned long long)op->req.block);
			free(op->buf);
			free(op->expect);
			memset(op, 0, sizeof(*op));
			inflight--;
		}
	}
	for (int k = 0; k < 100000 && inflight; k++) {
		thin_pool_poll(pool);
		for (unsigned i = 0; i < 64; i++) {
			if (ops[i].buf && ops[i].done) {
				ok_eq(ops[i].rc, 0);
				free(ops[i].buf);
				free(ops[i].expect);
				memset(&ops[i], 0, sizeof(ops[i]));
				inflight--;
			}
		}
	}
	ok_eq(inflight, 0);
	ok(oo.max_depth > 4);
	for (int v = 0; v < 2; v++) {
		uint8_t *b = malloc(OO_SECT * 512);

		ok_eq(blkdev_read(d[v], 0, OO_SECT, b), 0);
		if (memcmp(b, model[v], OO_SECT * 512))
			fail("volume %d differs from the model", v);
		free(b);
		thin_volume_close(vol[v]);
		free(model[v]);
	}
	printf("  %u requests, data queue depth up to %llu\n", total,
	       (unsigned long long)oo.max_depth);
	ok_eq(thin_pool_close(pool), 0);
	ok_eq(check_dev(meta), 0);
	blkdev_destroy(lower);
	blkdev_destroy(meta);
	free(ops);
}

TEST(out_of_order_device_keeps_block_order)
{
	out_of_order_model(512);
}

TEST(out_of_order_device_4k_data_disk_blocks)
{
	out_of_order_model(4096);
}

/*----------------------------------------------------------------*/
/* Cells: in-place I/O overlaps, provisioning, copy-on-write and unmaps do not. */

/*
 * A data disk that holds every request until gate_release() completes the ones queued then
 * (the I/O happens at completion), counting what is in flight per op. While open, its poll
 * completes everything (for the synchronous calls: setup, admin calls, close).
 */
struct gatedev {
	struct blkdev dev;
	struct blkdev *lower;
	struct blkdev_req *q[256];
	unsigned n;
	unsigned in_flight[5], max_in_flight[5]; /* per enum blkdev_op */
	unsigned submitted[5];
	bool open;
	bool signals; /* says it announces its completions (blkdev_ops signals_completion) */
};

static unsigned gate_complete(struct gatedev *g);

static int gate_read(struct blkdev *d, uint64_t b, uint32_t c, void *buf)
{
	return blkdev_read(container_of(d, struct gatedev, dev)->lower, b, c, buf);
}
static int gate_write(struct blkdev *d, uint64_t b, uint32_t c, const void *buf)
{
	return blkdev_write(container_of(d, struct gatedev, dev)->lower, b, c, buf);
}
static int gate_flush(struct blkdev *d)
{
	return blkdev_flush(container_of(d, struct gatedev, dev)->lower);
}
static int gate_discard(struct blkdev *d, uint64_t b, uint32_t c)
{
	return blkdev_discard(container_of(d, struct gatedev, dev)->lower, b, c);
}

static int gate_submit(struct blkdev *d, struct blkdev_req *req)
{
	struct gatedev *g = container_of(d, struct gatedev, dev);

	if (g->n == ARRAY_SIZE(g->q))
		return -EAGAIN;
	g->q[g->n++] = req;
	g->submitted[req->op]++;
	if (++g->in_flight[req->op] > g->max_in_flight[req->op])
		g->max_in_flight[req->op] = g->in_flight[req->op];
	return 0;
}

static int gate_poll(struct blkdev *d)
{
	struct gatedev *g = container_of(d, struct gatedev, dev);

	return g->open ? (int)gate_complete(g) : 0;
}

static bool gate_signals(const struct blkdev *d)
{
	return container_of(d, const struct gatedev, dev)->signals;
}

static const struct blkdev_ops gate_ops = { .read = gate_read,
					    .write = gate_write,
					    .flush = gate_flush,
					    .discard = gate_discard,
					    .submit = gate_submit,
					    .poll = gate_poll,
					    .signals_completion = gate_signals };

/* Complete, in reverse order, the requests queued now. */
static unsigned gate_complete(struct gatedev *g)
{
	unsigned n = g->n, done = n;
	struct blkdev_req *q[ARRAY_SIZE(g->q)];

	memcpy(q, g->q, n * sizeof(q[0]));
	g->n = 0;
	while (n--) {
		struct blkdev_req *req = q[n];
		int rc = blkdev_run_req(g->lower, req);

		g->in_flight[req->op]--;
		req->done(req, rc);
	}
	return done;
}

/* Complete the requests queued now, then let the pool move (it may submit more). */
static void gate_release(struct gatedev *g, struct thin_pool *pool)
{
	gate_complete(g);
	for (int k = 0; k < 10; k++)
		thin_pool_poll(pool);
}

/* Poll the pool until nothing moves (the gate stays shut). */
static void settle(struct thin_pool *pool)
{
	for (int k = 0; k < 10; k++)
		thin_pool_poll(pool);
}

struct gpool {
	struct blkdev *meta, *lower;
	struct gatedev g;
	struct thin_pool *pool;
};

/* A pool of 32 data blocks (64 KiB) on a gated data disk of @dbs-byte blocks; no timed
 * commits. */
static int gpool_create(struct gpool *t, uint32_t dbs)
{
	struct thin_pool_opts o;
	int r;

	memset(t, 0, sizeof(*t));
	thin_pool_default_opts(&o);
	o.commit_interval_ms = 3600u * 1000;
	r = memdisk_create(256, 4096, &t->meta);
	if (!r)
		r = memdisk_create(32 * KB64 / dbs, dbs, &t->lower);
	if (r)
		return r;
	t->g.lower = t->lower;
	t->g.dev.ops = &gate_ops;
	t->g.dev.name = "gatedev";
	t->g.dev.nr_blocks = t->lower->nr_blocks;
	t->g.dev.block_size = t->lower->block_size;
	t->g.open = true;
	r = thin_pool_format(t->meta, &t->g.dev, &o, false);
	if (!r)
		r = thin_pool_open(t->meta, &t->g.dev, &o, NULL, 0, &t->pool);
	return r;
}

static void gpool_destroy(struct gpool *t)
{
	ok_eq(thin_pool_close(t->pool), 0);
	ok_eq(check_dev(t->meta), 0);
	blkdev_destroy(t->lower);
	blkdev_destroy(t->meta);
}

/* The data block volume @id's @vblock maps to, or ~0 when unmapped. */
static uint64_t mapped_to(struct thin_pool *pool, thin_id_t id, uint64_t vblock)
{
	struct thin_md_view view;
	uint64_t db;
	uint32_t tm;

	if (thin_md_view_current(thin_pool_md(pool), &view) ||
	    thin_view_lookup(&view, id, vblock, &db, &tm))
		return ~0ull;
	return db;
}

/*
 * Drive the pool as the firmware's loop does (the gate shut: only gate_complete() finishes
 * the data disk's requests, as its interrupt would announce them): poll while the pool needs
 * the CPU; when it does not but is still busy, it only waits on the disk: something must be
 * there, and a poll must move nothing (else a loop halting there would stall work). Until
 * @cnt counts @want completions and the pool is not busy. Returns the waits met.
 */
static int drive_like_the_loop(struct gpool *t, const int *cnt, int want)
{
	int waits = 0;

	for (int k = 0; k < 10000 && (cnt[0] < want || thin_pool_busy(t->pool)); k++) {
		if (thin_pool_needs_cpu(t->pool)) {
			thin_pool_poll(t->pool);
			continue;
		}
		if (!ok(thin_pool_busy(t->pool)))
			break; /* not busy with completions missing: they would never come */
		waits++;
		ok(t->g.n > 0);
		ok_eq(thin_pool_poll(t->pool), 0);
		gate_complete(&t->g);
	}
	ok_eq(cnt[0], want);
	return waits;
}

/*
 * thin_pool_needs_cpu(): thin_pool_busy() without the waits on a data disk that announces
 * its completions. Provisioning writes (a full block, a partial one with its zero fill), a
 * FLUSH (the commit cycle: drain, data flush, commit) and reads go through waits the loop
 * may halt in; on a disk that does not announce them, needs_cpu is busy itself.
 */
TEST(needs_cpu_leaves_out_waits_on_a_signalling_disk)
{
	struct gpool t;
	struct thin_volume *vol;
	struct blkdev *d;
	struct blkdev_req req[4];
	uint8_t *a = bufa(2 * KB64), *b = bufa(2 * KB64);
	int cnt[2] = { 0, 0 };
	unsigned flushes;

	if (!ok_eq(gpool_create(&t, 512), 0))
		return;
	d = vol_open(t.pool, 1, 4 * KB64, &vol);
	ok(!thin_pool_needs_cpu(t.pool));
	ok(!blkdev_signals_completion_test(d));
	t.g.signals = true;
	ok(blkdev_signals_completion_test(d)); /* the volume announces what its disk does */
	t.g.open = false;
	pattern(a, 2 * KB64, 33);
	/* Block 0 whole, 4 KiB of block 1 (zero filled around it). */
	req[0] = (struct blkdev_req){ .op = BLKDEV_WRITE,
				      .block = 0,
				      .count = 128,
				      .buf = a,
				      .done = count_done,
				      .priv = cnt };
	req[1] = (struct blkdev_req){ .op = BLKDEV_WRITE,
				      .block = 136,
				      .count = 8,
				      .buf = a + KB64 + 4096,
				      .done = count_done,
				      .priv = cnt };
	ok_eq(blkdev_submit(d, &req[0]), 0);
	ok_eq(blkdev_submit(d, &req[1]), 0);
	ok(thin_pool_needs_cpu(t.pool)); /* queued: the next poll submits them */
	ok(drive_like_the_loop(&t, cnt, 2) > 0);
	flushes = t.g.submitted[BLKDEV_FLUSH];
	req[2] = (struct blkdev_req){ .op = BLKDEV_FLUSH, .done = count_done, .priv = cnt };
	ok_eq(blkdev_submit(d, &req[2]), 0);
	ok(drive_like_the_loop(&t, cnt, 3) > 0); /* the data flush is a wait */
	ok_eq(t.g.submitted[BLKDEV_FLUSH], flushes + 1);
	memset(b, 0x77, 2 * KB64);
	req[3] = (struct blkdev_req){ .op = BLKDEV_READ,
				      .block = 0,
				      .count = 256,
				      .buf = b,
				      .done = count_done,
				      .priv = cnt };
	ok_eq(blkdev_submit(d, &req[3]), 0);
	ok(drive_like_the_loop(&t, cnt, 4) > 0);
	ok_eq(cnt[1], 0);
	ok(!memcmp(b, a, KB64));
	ok(all_bytes(b + KB64, 4096, 0));
	ok(!memcmp(b + KB64 + 4096, a + KB64 + 4096, 4096));
	ok(all_bytes(b + KB64 + 8192, KB64 - 8192, 0));

	/* A disk that does not announce its completions: every wait needs the CPU (polling). */
	t.g.signals = false;
	cnt[0] = 0;
	ok_eq(blkdev_submit(d, &req[3]), 0);
	settle(t.pool);
	ok(t.g.n > 0);
	ok(thin_pool_busy(t.pool));
	ok(thin_pool_needs_cpu(t.pool));
	gate_release(&t.g, t.pool);
	ok_eq(cnt[0], 1);
	ok(!thin_pool_busy(t.pool));
	ok(!thin_pool_needs_cpu(t.pool));

	t.g.open = true;
	thin_volume_close(vol);
	gpool_destroy(&t);
	free(a);
	free(b);
}

/* 16 concurrent 4 KiB writes, then reads, inside one mapped unshared block: all in flight. */
TEST(in_place_io_to_one_block_overlaps)
{
	struct gpool t;
	struct thin_volume *vol;
	struct blkdev *d;
	struct blkdev_req req[16];
	uint8_t *a = bufa(KB64), *b = bufa(KB64);
	int cnt[2] = { 0, 0 };

	if (!ok_eq(gpool_create(&t, 512), 0))
		return;
	d = vol_open(t.pool, 1, 4 * KB64, &vol);
	ok_eq(blkdev_write(d, 128, 128, b), 0); /* map block 1 */
	t.g.open = false;
	pattern(a, KB64, 21);
	for (int i = 0; i < 16; i++) {
		req[i] = (struct blkdev_req){ .op = BLKDEV_WRITE,
					      .block = 128 + (uint64_t)i * 8,
					      .count = 8,
					      .buf = a + i * 4096,
					      .done = count_done,
					      .priv = cnt };
		ok_eq(blkdev_submit(d, &req[i]), 0);
	}
	settle(t.pool);
	ok_eq(t.g.in_flight[BLKDEV_WRITE], 16);
	gate_release(&t.g, t.pool);
	ok_eq(cnt[0], 16);
	ok_eq(cnt[1], 0);
	memset(b, 0, KB64);
	cnt[0] = 0;
	for (int i = 0; i < 16; i++) {
		req[i] = (struct blkdev_req){ .op = BLKDEV_READ,
					      .block = 128 + (uint64_t)i * 8,
					      .count = 8,
					      .buf = b + i * 4096,
					      .done = count_done,
					      .priv = cnt };
		ok_eq(blkdev_submit(d, &req[i]), 0);
	}
	settle(t.pool);
	ok_eq(t.g.in_flight[BLKDEV_READ], 16);
	gate_release(&t.g, t.pool);
	ok_eq(cnt[0], 16);
	ok_eq(cnt[1], 0);
	ok(!memcmp(a, b, KB64));
	ok_eq(data_used(t.pool), 1);
	t.g.open = true;
	thin_volume_close(vol);
	gpool_destroy(&t);
	free(a);
	free(b);
}

/*
 * Writes right behind the provisioning of their block wait for it (else the zero fill or a
 * second allocation would lose them), then overlap each other in place.
 */
TEST(writes_behind_provisioning_wait_then_overlap)
{
	struct gpool t;
	struct thin_volume *vol;
	struct blkdev *d;
	struct blkdev_req req[3];
	uint8_t *a = bufa(3 * 4096), *b = bufa(KB64);
	const uint64_t at[3] = { 0, 16, 64 }; /* sectors */
	int cnt[2] = { 0, 0 };

	if (!ok_eq(gpool_create(&t, 512), 0))
		return;
	d = vol_open(t.pool, 1, 4 * KB64, &vol);
	t.g.open = false;
	pattern(a, 3 * 4096, 22);
	/* 4 KiB at 0, 8 KiB and 32 KiB of unmapped block 2. */
	for (int i = 0; i < 3; i++) {
		req[i] = (struct blkdev_req){ .op = BLKDEV_WRITE,
					      .block = 256 + at[i],
					      .count = 8,
					      .buf = a + i * 4096,
					      .done = count_done,
					      .priv = cnt };
		ok_eq(blkdev_submit(d, &req[i]), 0);
	}
	settle(t.pool);
	/* Only the provisioning write (the block, zero-filled) is on the disk. */
	ok_eq(t.g.in_flight[BLKDEV_WRITE], 1);
	ok_eq(t.g.submitted[BLKDEV_WRITE], 1);
	ok_eq(mapped_to(t.pool, 1, 2), ~0ull);
	gate_release(&t.g, t.pool);
	ok_eq(cnt[0], 1);
	ok(mapped_to(t.pool, 1, 2) != ~0ull);
	/* Now the two others, in place, both at once. */
	ok_eq(t.g.in_flight[BLKDEV_WRITE], 2);
	gate_release(&t.g, t.pool);
	ok_eq(cnt[0], 3);
	ok_eq(cnt[1], 0);
	ok_eq(data_used(t.pool), 1);
	t.g.open = true;
	ok_eq(blkdev_read(t.lower, mapped_to(t.pool, 1, 2) * 128, 128, b), 0);
	ok(!memcmp(b, a, 4096));
	ok(all_bytes(b + 4096, 4096, 0));
	ok(!memcmp(b + 8192, a + 4096, 4096));
	ok(all_bytes(b + 12288, 32768 - 12288, 0));
	ok(!memcmp(b + 32768, a + 8192, 4096));
	ok(all_bytes(b + 36864, KB64 - 36864, 0));
	thin_volume_close(vol);
	gpool_destroy(&t);
	free(a);
	free(b);
}

/*
 * An unmap (discard, whole-block write-zeroes) waits for the in-place writes to its block
 * that started before it: unmapped first, the block could be reused (by another volume,
 * after a commit) and then receive an old write. Requests behind the unmap see its result.
 */
TEST(unmap_waits_for_earlier_in_place_io)
{
	struct gpool t;
	struct thin_volume *vol;
	struct blkdev *d;
	struct blkdev_req req[4], unmap, rd;
	uint8_t *a = bufa(KB64), *b = bufa(KB64);
	int cnt[2], ucnt[2], rcnt[2];

	if (!ok_eq(gpool_create(&t, 512), 0))
		return;
	d = vol_open(t.pool, 1, 4 * KB64, &vol);
	for (int round = 0; round < 2 && !test_failed(); round++) {
		enum blkdev_op op = round ? BLKDEV_WRITE_ZEROES : BLKDEV_DISCARD;
		uint64_t db;
		unsigned discards;

		t.g.open = true;
		ok_eq(blkdev_write(d, 0, 128, a), 0);
		ok_eq(blkdev_flush(d), 0);
		db = mapped_to(t.pool, 1, 0);
		ok(db != ~0ull);
		t.g.open = false;
		discards = t.g.submitted[BLKDEV_DISCARD];
		memset(cnt, 0, sizeof(cnt));
		memset(ucnt, 0, sizeof(ucnt));
		memset(rcnt, 0, sizeof(rcnt));
		for (int i = 0; i < 4; i++) {
			req[i] = (struct blkdev_req){ .op = BLKDEV_WRITE,
						      .block = (uint64_t)i * 32,
						      .count = 8,
						      .buf = a,
						      .done = count_done,
						      .priv = cnt };
			ok_eq(blkdev_submit(d, &req[i]), 0);
		}
		settle(t.pool);
		ok_eq(t.g.in_flight[BLKDEV_WRITE], 4);
		unmap = (struct blkdev_req){
			.op = op, .block = 0, .count = 128, .done = count_done, .priv = ucnt
		};
		ok_eq(blkdev_submit(d, &unmap), 0);
		rd = (struct blkdev_req){
			.op = BLKDEV_READ, .block = 0, .count = 128, .buf = b, .done = count_done
		};
		rd.priv = rcnt;
		ok_eq(blkdev_submit(d, &rd), 0);
		settle(t.pool);
		/* Still mapped, nothing passed down, the unmap and the read behind it wait. */
		ok_eq(ucnt[0], 0);
		ok_eq(rcnt[0], 0);
		ok_eq(mapped_to(t.pool, 1, 0), db);
		ok_eq(t.g.submitted[BLKDEV_DISCARD], discards);
		ok_eq(t.g.in_flight[BLKDEV_READ], 0);
		for (int k = 0; k < 10 && !(ucnt[0] && rcnt[0]); k++)
			gate_release(&t.g, t.pool);
		ok_eq(cnt[0], 4);
		ok_eq(cnt[1], 0);
		ok_eq(ucnt[0], 1);
		ok_eq(ucnt[1], 0);
		ok_eq(rcnt[0], 1);
		ok_eq(rcnt[1], 0);
		ok(all_bytes(b, KB64, 0));
		ok_eq(mapped_to(t.pool, 1, 0), ~0ull);
	}
	t.g.open = true;
	thin_volume_close(vol);
	gpool_destroy(&t);
	free(a);
	free(b);
}

/*
 * Copy-on-write of a shared block waits for the in-place reads of it that started earlier
 * (dm's shared_read_ds: once unmapped here, the snapshot could free the old block), and
 * the writes behind it wait for the copy, then overlap in place.
 */
TEST(copy_on_write_is_not_overtaken)
{
	struct gpool t;
	struct thin_volume *vol, *snap;
	struct blkdev *d;
	struct blkdev_req rd, w[3];
	uint8_t *a = bufa(KB64), *n = bufa(3 * 4096), *b = bufa(KB64), *r = bufa(4096);
	const uint64_t at[3] = { 16, 32, 64 }; /* sectors */
	int rcnt[2] = { 0, 0 }, cnt[2] = { 0, 0 };
	unsigned reads, writes;

	if (!ok_eq(gpool_create(&t, 512), 0))
		return;
	d = vol_open(t.pool, 1, 4 * KB64, &vol);
	pattern(a, KB64, 31);
	ok_eq(blkdev_write(d, 0, 128, a), 0);
	thin_volume_close(vol);
	ok_eq(thin_pool_create_snap(t.pool, 2, 1), 0);
	d = vol_open(t.pool, 1, 4 * KB64, &vol);
	ok_eq(thin_volume_open(t.pool, 2, 4 * KB64, true, &snap), 0);
	t.g.open = false;
	reads = t.g.submitted[BLKDEV_READ];
	writes = t.g.submitted[BLKDEV_WRITE];
	/* A read of the shared block goes in place. */
	rd = (struct blkdev_req){
		.op = BLKDEV_READ, .block = 0, .count = 8, .buf = r, .done = count_done
	};
	rd.priv = rcnt;
	ok_eq(blkdev_submit(d, &rd), 0);
	settle(t.pool);
	ok_eq(t.g.in_flight[BLKDEV_READ], 1);
	/* Three writes: the first copies, the others wait behind it. */
	pattern(n, 3 * 4096, 32);
	for (int i = 0; i < 3; i++) {
		w[i] = (struct blkdev_req){ .op = BLKDEV_WRITE,
					    .block = at[i],
					    .count = 8,
					    .buf = n + i * 4096,
					    .done = count_done,
					    .priv = cnt };
		ok_eq(blkdev_submit(d, &w[i]), 0);
	}
	settle(t.pool);
	ok_eq(t.g.submitted[BLKDEV_READ], reads + 1); /* the copy has not started */
	ok_eq(t.g.submitted[BLKDEV_WRITE], writes);
	gate_release(&t.g, t.pool);
	ok_eq(rcnt[0], 1);
	ok(!memcmp(r, a, 4096));
	/* The copy: read the old block, ... */
	ok_eq(t.g.in_flight[BLKDEV_READ], 1);
	ok_eq(t.g.in_flight[BLKDEV_WRITE], 0);
	gate_release(&t.g, t.pool);
	/* ... write the new one, alone, ... */
	ok_eq(t.g.in_flight[BLKDEV_WRITE], 1);
	gate_release(&t.g, t.pool);
	ok_eq(cnt[0], 1);
	/* ... then the two others in place, at once. */
	ok_eq(t.g.in_flight[BLKDEV_WRITE], 2);
	gate_release(&t.g, t.pool);
	ok_eq(cnt[0], 3);
	ok_eq(cnt[1], 0);
	t.g.open = true;
	ok_eq(blkdev_read(d, 0, 128, b), 0);
	for (int i = 0; i < 3; i++)
		memcpy(a + at[i] * 512, n + i * 4096, 4096);
	ok(!memcmp(b, a, KB64));
	pattern(a, KB64, 31);
	ok_eq(blkdev_read(thin_volume_blkdev(snap), 0, 128, b), 0);
	ok(!memcmp(b, a, KB64));
	ok_eq(data_used(t.pool), 2);
	thin_volume_close(snap);
	thin_volume_close(vol);
	gpool_destroy(&t);
	free(a);
	free(n);
	free(b);
	free(r);
}

/*
 * Data-disk blocks of 4 KiB: a 512-byte write is a read-modify-write of one, which stays
 * in the cell after the in-place I/O that started earlier, so it neither loses a
 * neighbour's sector nor brings back what an earlier write replaced.
 */
TEST(read_modify_write_stays_atomic)
{
	struct gpool t;
	struct thin_volume *vol;
	struct blkdev *d;
	struct blkdev_req w[3];
	uint8_t *a = bufa(KB64), *n = bufa(4096 + 2 * 512), *b = bufa(KB64);
	int cnt[2] = { 0, 0 };
	unsigned reads;

	if (!ok_eq(gpool_create(&t, 4096), 0))
		return;
	d = vol_open(t.pool, 1, 4 * KB64, &vol);
	pattern(a, KB64, 41);
	ok_eq(blkdev_write(d, 0, 128, a), 0);
	t.g.open = false;
	reads = t.g.submitted[BLKDEV_READ];
	pattern(n, 4096 + 2 * 512, 42);
	/* A whole disk block in place, then sectors 1 and 2 of it. */
	w[0] = (struct blkdev_req){
		.op = BLKDEV_WRITE, .block = 0, .count = 8, .buf = n, .done = count_done
	};
	for (int i = 1; i < 3; i++)
		w[i] = (struct blkdev_req){ .op = BLKDEV_WRITE,
					    .block = (uint64_t)i,
					    .count = 1,
					    .buf = n + 4096 + (i - 1) * 512,
					    .done = count_done };
	for (int i = 0; i < 3; i++) {
		w[i].priv = cnt;
		ok_eq(blkdev_submit(d, &w[i]), 0);
	}
	settle(t.pool);
	ok_eq(t.g.in_flight[BLKDEV_WRITE], 1);
	ok_eq(t.g.submitted[BLKDEV_READ], reads);
	gate_release(&t.g, t.pool);
	ok_eq(cnt[0], 1);
	/* One read-modify-write at a time. */
	for (int i = 1; i < 3; i++) {
		ok_eq(t.g.in_flight[BLKDEV_READ], 1);
		ok_eq(t.g.in_flight[BLKDEV_WRITE], 0);
		gate_release(&t.g, t.pool);
		ok_eq(t.g.in_flight[BLKDEV_WRITE], 1);
		gate_release(&t.g, t.pool);
		ok_eq(cnt[0], i + 1);
	}
	ok_eq(cnt[1], 0);
	t.g.open = true;
	ok_eq(blkdev_read(d, 0, 128, b), 0);
	memcpy(a, n, 4096);
	memcpy(a + 512, n + 4096, 1024);
	ok(!memcmp(b, a, KB64));
	thin_volume_close(vol);
	gpool_destroy(&t);
	free(a);
	free(n);
	free(b);
}

/* The async path with the synchronous fallback: a completion inside submit recurses not. */
TEST(async_many_requests_sync_device)
{
	struct tpool t;
	struct thin_volume *vol;
	struct blkdev *d;
	struct blkdev_req req[32];
	uint8_t *a = bufa(32 * 4096);
	int cnt[2] = { 0, 0 };

	if (!ok_eq(tpool_create(&t, 256, 32, NULL), 0))
		return;
	d = vol_open(t.pool, 1, 8 * KB64, &vol);
	for (int i = 0; i < 32; i++) {
		req[i] = (struct blkdev_req){ .op = BLKDEV_WRITE,
					      .block = (uint64_t)i * 8,
					      .count = 8,
					      .buf = a + i * 4096,
					      .done = count_done,
					      .priv = cnt };
		ok_eq(blkdev_submit(d, &req[i]), 0);
	}
	ok(thin_pool_busy(t.pool));
	for (int k = 0; k < 1000 && cnt[0] < 32; k++)
		blkdev_poll(d);
	ok_eq(cnt[0], 32);
	ok_eq(cnt[1], 0);
	ok_eq(data_used(t.pool), 2);
	thin_volume_close(vol);
	tpool_destroy(&t);
	free(a);
}
