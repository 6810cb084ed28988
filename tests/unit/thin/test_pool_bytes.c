/* SPDX-License-Identifier: MIT */
/*
 * A thin volume's byte-granular writes (core/blkdev.h "Byte-granular writes":
 * BLKDEV_WRITE_BYTES, BLKDEV_WRITE_ZEROES_BYTES), which the NBD server uses for unaligned
 * requests: against a byte model over holes, mapped blocks and shared blocks (a snapshot
 * stays as it was), zeroes over a hole provisioning nothing, many pieces of one sector in
 * flight at once on a data disk that completes out of order (none lost), and the refusals.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "host/hostdev.h"
#include "tests/support/harness.h"
#include "tests/support/pool_test.h"

#define VOL (4 * KB64)

static void byte_done(struct blkdev_req *req, int rc)
{
	struct waiter *w = container_of(req, struct waiter, req);

	w->done = true;
	w->rc = rc;
}

/* Submit a byte op with @w (not waited for); blkdev_submit()'s result. */
static int bytes_submit(struct blkdev *d, struct waiter *w, enum blkdev_op op, uint64_t off,
			uint32_t len, void *buf)
{
	memset(w, 0, sizeof(*w));
	w->req.op = op;
	w->req.offset = off;
	w->req.length = len;
	w->req.buf = buf;
	w->req.done = byte_done;
	return blkdev_submit(d, &w->req);
}

/* Poll @pool until every one of @w[0..n) completed (bounded). */
static bool wait_all(struct thin_pool *pool, struct waiter *w, unsigned n)
{
	for (unsigned spin = 0; spin < 1000000; spin++) {
		unsigned done = 0;

		for (unsigned i = 0; i < n; i++)
			done += w[i].done;
		if (done == n)
			return true;
		thin_pool_poll(pool);
	}
	return ok(false);
}

/* One byte op, waited for; its result. */
static int bytes_sync(struct thin_pool *pool, struct blkdev *d, enum blkdev_op op, uint64_t off,
		      uint32_t len, void *buf)
{
	struct waiter w;
	int rc = bytes_submit(d, &w, op, off, len, buf);

	if (rc)
		return rc;
	wait_all(pool, &w, 1);
	return w.rc;
}

static bool matches(struct blkdev *d, const uint8_t *model)
{
	uint8_t *got = malloc(VOL);
	bool same;

	same = ok_eq(blkdev_read(d, 0, VOL / 512, got), 0) && !memcmp(got, model, VOL);
	for (size_t i = 0; !same && i < VOL; i++) {
		if (got[i] != model[i]) {
			fail("byte %zu: %#x, the model says %#x", i, got[i], model[i]);
			break;
		}
	}
	free(got);
	return same;
}

/*
 * Pieces at odd offsets and lengths around sector and pool-block edges: first over holes,
 * then over what they mapped, then (after a snapshot) over shared blocks. @pool's data
 * disk may complete out of order.
 */
static void model_run(struct thin_pool *pool)
{
	static const uint64_t bases[] = { 0, 512, 4096, KB64, 3 * KB64 };
	static const int64_t deltas[] = { -511, -2, -1, 0, 1, 3, 511 };
	static const uint32_t lens[] = { 1, 3, 510, 512, 513, 4095, KB64 - 1, KB64 + 2 };
	uint8_t *model = calloc(1, VOL), *snap = NULL, *pay = malloc(KB64 + 2);
	struct thin_volume *vol, *svol;
	struct blkdev *d, *s;
	unsigned n = 0;

	d = pool_vol_open(pool, 1, VOL, &vol);
	if (!d)
		goto out;
	ok(d->byte_writes);
	for (unsigned round = 0; round < 3 && !test_failed(); round++) {
		if (round == 2) {
			ok_eq(thin_pool_create_snap(pool, 2, 1), 0);
			snap = malloc(VOL);
			memcpy(snap, model, VOL);
		}
		for (size_t bi = 0; bi < ARRAY_SIZE(bases); bi++) {
			for (size_t di = 0; di < ARRAY_SIZE(deltas); di++) {
				for (size_t li = 0; li < ARRAY_SIZE(lens); li++) {
					int64_t off = (int64_t)bases[bi] + deltas[di];
					uint32_t len = lens[li];
					bool zero = ++n % 4 == 0;

					if (off < 0 || off >= VOL)
						continue;
					len = (uint32_t)MIN((uint64_t)len, VOL - (uint64_t)off);
					pattern(pay, KB64 + 2, n);
					if (zero) {
						ok_eq(bytes_sync(pool, d, BLKDEV_WRITE_ZEROES_BYTES,
								 (uint64_t)off, len, NULL),
						      0);
						memset(model + off, 0, len);
					} else {
						ok_eq(bytes_sync(pool, d, BLKDEV_WRITE_BYTES,
								 (uint64_t)off, len, pay),
						      0);
						memcpy(model + off, pay, len);
					}
				}
			}
			if (!matches(d, model))
				goto close;
		}
	}
	/* The snapshot kept what the volume held when it was taken. */
	if (ok_eq(thin_volume_open(pool, 2, VOL, true, &svol), 0)) {
		s = thin_volume_blkdev(svol);
		matches(s, snap);
		thin_volume_close(svol);
	}
close:
	thin_volume_close(vol);
out:
	free(model);
	free(snap);
	free(pay);
}

TEST(byte_writes_match_model)
{
	struct tpool t;

	if (ok_eq(tpool_create(&t, 256, 16, NULL), 0))
		model_run(t.pool);
	tpool_destroy(&t);
}

/* The pool on an out-of-order data disk, without zeroing of new blocks. */
struct oopool {
	struct blkdev *meta, *data;
	struct oodev o;
	struct thin_pool *pool;
};

static bool oopool_create(struct oopool *p, bool zero_new)
{
	struct thin_pool_opts o;

	memset(p, 0, sizeof(*p));
	thin_pool_default_opts(&o);
	o.zero_new_blocks = zero_new;
	if (!ok_eq(memdisk_create(256, 4096, &p->meta), 0) ||
	    !ok_eq(memdisk_create(16 * KB64 / 512, 512, &p->data), 0))
		return false;
	oodev_init(&p->o, p->data, test_seed());
	return ok_eq(thin_pool_format(p->meta, &p->o.dev, &o, false), 0) &&
	       ok_eq(thin_pool_open(p->meta, &p->o.dev, &o, NULL, 0, &p->pool), 0);
}

static void oopool_destroy(struct oopool *p)
{
	if (p->pool)
		ok_eq(thin_pool_close(p->pool), 0);
	blkdev_destroy(p->meta);
	blkdev_destroy(p->data);
}

TEST(byte_writes_match_model_out_of_order_no_zeroing)
{
	struct oopool p;

	if (oopool_create(&p, false))
		model_run(p.pool);
	oopool_destroy(&p);
}

TEST(zeroes_over_a_hole_provision_nothing)
{
	struct thin_volume *vol;
	uint8_t buf[1024];
	struct blkdev *d;
	struct tpool t;

	if (!ok_eq(tpool_create(&t, 256, 16, NULL), 0))
		return;
	d = pool_vol_open(t.pool, 1, VOL, &vol);
	if (d) {
		ok_eq(bytes_sync(t.pool, d, BLKDEV_WRITE_ZEROES_BYTES, 1, 3, NULL), 0);
		ok_eq(bytes_sync(t.pool, d, BLKDEV_WRITE_ZEROES_BYTES, 513, KB64 * 2, NULL), 0);
		ok_eq(data_used(t.pool), 0);
		ok_eq(blkdev_read(d, 0, 2, buf), 0);
		ok(all_bytes(buf, sizeof(buf), 0));
		/* A piece of a byte provisions its block. */
		memset(buf, 0xa5, 1);
		ok_eq(bytes_sync(t.pool, d, BLKDEV_WRITE_BYTES, 700, 1, buf), 0);
		ok_eq(data_used(t.pool), 1);
		ok_eq(blkdev_read(d, 1, 1, buf), 0);
		ok(buf[700 - 512] == 0xa5 && all_bytes(buf, 700 - 512, 0));
		/* Zeroes over the whole mapped block unmap it (the piece past it: a hole). */
		ok_eq(bytes_sync(t.pool, d, BLKDEV_WRITE_ZEROES_BYTES, 0, KB64 + 5, NULL), 0);
		ok_eq(thin_pool_commit(t.pool), 0); /* the freed block counts until then */
		ok_eq(data_used(t.pool), 0);
		ok_eq(blkdev_read(d, 1, 1, buf), 0);
		ok(all_bytes(buf, 512, 0));
		thin_volume_close(vol);
	}
	tpool_destroy(&t);
}

/*
 * Every 3-byte piece of two sectors (across a sector edge), plus whole sectors written in
 * place in the same pool block and in another one, all submitted before anything completes,
 * on a data disk that completes in random order: every piece lands (the cell orders the
 * read-modify-writes).
 */
/* The aligned writes: even ones into the pieces' pool block, odd ones into block 2. */
static uint64_t sector_of(unsigned i)
{
	return i % 2 ? 2 * KB64 / 512 + i : 20 + i;
}

TEST(pieces_of_one_sector_in_flight_at_once)
{
	enum { BASE = 4608, SPAN = 1024, N = (SPAN + 2) / 3, AL = 8 };
	struct waiter *w = calloc(N + AL, sizeof(*w));
	uint8_t *vals = malloc(SPAN), *sect = malloc(AL * 512), *got = malloc(VOL);
	struct thin_volume *vol;
	struct blkdev *d;
	struct oopool p;

	if (!oopool_create(&p, true))
		goto out;
	d = pool_vol_open(p.pool, 1, VOL, &vol);
	if (!d)
		goto out;
	/* Mapped first, so the pieces are read-modify-writes in place. */
	memset(got, 0x11, VOL);
	ok_eq(blkdev_write(d, 0, VOL / 512, got), 0);
	for (unsigned i = 0; i < SPAN; i++)
		vals[i] = (uint8_t)(0x20 + (i / 3) % 200);
	for (unsigned i = 0; i < AL; i++)
		memset(sect + i * 512, 0x40 + i, 512);
	for (unsigned i = 0; i < N; i++) {
		uint32_t len = MIN(3u, SPAN - i * 3);

		ok_eq(bytes_submit(d, &w[i], BLKDEV_WRITE_BYTES, BASE + i * 3, len, vals + i * 3),
		      0);
		if (i < AL)
			ok_eq(waiter_submit(d, &w[N + i], BLKDEV_WRITE, sector_of(i), 1,
					    sect + i * 512),
			      0);
	}
	if (wait_all(p.pool, w, N + AL)) {
		for (unsigned i = 0; i < N + AL; i++)
			ok_eq(w[i].rc, 0);
		ok_eq(blkdev_read(d, 0, VOL / 512, got), 0);
		ok(!memcmp(got + BASE, vals, SPAN));
		ok(all_bytes(got + BASE - 512, 512, 0x11));
		ok(all_bytes(got + BASE + SPAN, 512, 0x11));
		for (unsigned i = 0; i < AL; i++)
			ok(all_bytes(got + sector_of(i) * 512, 512, (uint8_t)(0x40 + i)));
	}
	ok(p.o.max_depth > 1);
	thin_volume_close(vol);
out:
	oopool_destroy(&p);
	free(w);
	free(vals);
	free(sect);
	free(got);
}

TEST(refusals)
{
	struct thin_volume *vol, *ro;
	struct blkdev *d, *mem;
	uint8_t buf[4] = { 0 };
	struct waiter w;
	struct tpool t;

	if (!ok_eq(tpool_create(&t, 256, 16, NULL), 0))
		return;
	d = pool_vol_open(t.pool, 1, VOL, &vol);
	if (d) {
		ok_eq(bytes_submit(d, &w, BLKDEV_WRITE_BYTES, VOL - 1, 2, buf), -EINVAL);
		ok_eq(bytes_submit(d, &w, BLKDEV_WRITE_BYTES, VOL, 1, buf), -EINVAL);
		ok_eq(bytes_submit(d, &w, BLKDEV_WRITE_ZEROES_BYTES, 5, 0, NULL), -EINVAL);
		ok_eq(bytes_sync(t.pool, d, BLKDEV_WRITE_BYTES, VOL - 1, 1, buf), 0);
		thin_volume_close(vol);
	}
	ok_eq(thin_pool_create_snap(t.pool, 2, 1), 0);
	if (ok_eq(thin_volume_open(t.pool, 2, VOL, true, &ro), 0)) {
		ok_eq(bytes_submit(thin_volume_blkdev(ro), &w, BLKDEV_WRITE_BYTES, 1, 1, buf),
		      -EROFS);
		thin_volume_close(ro);
	}
	tpool_destroy(&t);
	/* A device without byte writes refuses them. */
	ok_eq(memdisk_create(8, 512, &mem), 0);
	ok_eq(bytes_submit(mem, &w, BLKDEV_WRITE_BYTES, 1, 1, buf), -EOPNOTSUPP);
	blkdev_destroy(mem);
}
