/* SPDX-License-Identifier: MIT */
/*
 * Unaligned WRITE and WRITE_ZEROES (docs/nbd.md "Unaligned writes"): requests at any byte
 * offset and length, on the devices the server meets: a synchronous memory disk and an
 * out-of-order queue without byte writes (the server's own read-modify-write, ordered by its
 * write list), a double that takes the byte ops, and thin volumes (the pool's byte ops under
 * its cells), with out-of-order data disks and a snapshot. Checked against a byte model, with
 * two connections writing pieces of the same sectors at once, with FUA, and with the errors
 * that stay (read-only, past the end, FAST_ZERO).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "host/hostdev.h"
#include "net/nbd/nbd_proto.h"
#include "net/nbd/nbd_server.h"
#include "tests/support/harness.h"
#include "tests/support/nbd_client.h"
#include "tests/support/pool_test.h"

#define DEV_BYTES (4 * KB64) /* four pool blocks */

/* ---- A synchronous device that logs its operations (optionally with byte writes) -------- */

struct ldev {
	struct blkdev dev;
	struct blkdev *lower;
	char log[64];
	unsigned nlog;
};

static void ldev_log(struct ldev *l, char c)
{
	if (l->nlog + 1 < sizeof(l->log))
		l->log[l->nlog++] = c;
}

static int ldev_read(struct blkdev *d, uint64_t b, uint32_t c, void *buf)
{
	return blkdev_read(container_of(d, struct ldev, dev)->lower, b, c, buf);
}

static int ldev_write(struct blkdev *d, uint64_t b, uint32_t c, const void *buf)
{
	return blkdev_write(container_of(d, struct ldev, dev)->lower, b, c, buf);
}

static int ldev_flush(struct blkdev *d)
{
	return 0;
}

/* The byte ops, done the simple way a synchronous test double may: nothing runs meanwhile. */
static int ldev_bytes(struct ldev *l, const struct blkdev_req *r)
{
	uint8_t *all = malloc(DEV_BYTES);
	int rc;

	if (!all)
		return -ENOMEM;
	rc = blkdev_read(l->lower, 0, DEV_BYTES / 512, all);
	if (r->op == BLKDEV_WRITE_BYTES)
		memcpy(all + r->offset, r->buf, r->length);
	else
		memset(all + r->offset, 0, r->length);
	if (!rc)
		rc = blkdev_write(l->lower, 0, DEV_BYTES / 512, all);
	free(all);
	return rc;
}

static int ldev_submit(struct blkdev *d, struct blkdev_req *r)
{
	struct ldev *l = container_of(d, struct ldev, dev);
	static const char name[] = { [BLKDEV_READ] = 'R',
				     [BLKDEV_WRITE] = 'W',
				     [BLKDEV_FLUSH] = 'F',
				     [BLKDEV_DISCARD] = 'D',
				     [BLKDEV_WRITE_ZEROES] = 'Z',
				     [BLKDEV_WRITE_BYTES] = 'w',
				     [BLKDEV_WRITE_ZEROES_BYTES] = 'z' };
	int rc;

	ldev_log(l, name[r->op]);
	if (r->op == BLKDEV_WRITE_BYTES || r->op == BLKDEV_WRITE_ZEROES_BYTES)
		rc = ldev_bytes(l, r);
	else
		rc = blkdev_run_req(l->lower, r);
	r->done(r, rc);
	return 0;
}

static const struct blkdev_ops ldev_ops = {
	.read = ldev_read,
	.write = ldev_write,
	.flush = ldev_flush,
	.submit = ldev_submit,
};

static void ldev_init(struct ldev *l, struct blkdev *lower, bool bytes)
{
	memset(l, 0, sizeof(*l));
	l->lower = lower;
	l->dev.ops = &ldev_ops;
	l->dev.name = "ldev";
	l->dev.nr_blocks = lower->nr_blocks;
	l->dev.block_size = lower->block_size;
	l->dev.byte_writes = bytes;
}

/* ---- Clients ----------------------------------------------------------------------------- */

struct cl {
	struct nbd_conn *c;
	uint8_t *out;
	size_t len, pos;
};

struct rig {
	struct nbd_server *srv;
	struct blkdev *dev;
	struct cl cl[2];
};

static void cl_drain(struct cl *k)
{
	struct nbd_iov iov[16];
	unsigned n;

	if (!k->c)
		return;
	for (;;) {
		nbd_conn_output(k->c, 0, iov, 16, &n);
		if (!n)
			break;
		for (unsigned i = 0; i < n; i++) {
			k->out = realloc(k->out, k->len + iov[i].len);
			memcpy(k->out + k->len, iov[i].base, iov[i].len);
			k->len += iov[i].len;
			nbd_conn_output_done(k->c, iov[i].len);
		}
	}
}

/* Poll until nothing moves (bounded). */
static void settle(struct rig *g)
{
	for (unsigned i = 0; i < 1000000; i++) {
		nbd_server_poll(g->srv);
		cl_drain(&g->cl[0]);
		cl_drain(&g->cl[1]);
		if (!nbd_server_busy(g->srv))
			return;
	}
	fail("the server never settled");
}

/* Offer all of @buf, polling when the server pushes back (bounded). */
static void cl_feed(struct rig *g, struct cl *k, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	unsigned spins = 0;

	while (len && spins < 100000) {
		size_t n = nbd_conn_feed(k->c, p, len);

		p += n;
		len -= n;
		if (len) {
			nbd_server_poll(g->srv);
			cl_drain(&g->cl[0]);
			cl_drain(&g->cl[1]);
		}
		spins = n ? 0 : spins + 1;
	}
	ok_eq(len, 0);
}

static const uint8_t *cl_take(struct cl *k, size_t n)
{
	const uint8_t *p;

	if (!ok(k->len - k->pos >= n))
		return NULL;
	p = k->out + k->pos;
	k->pos += n;
	return p;
}

/*
 * Connect client @i to @name with GO asking for NBD_INFO_BLOCK_SIZE; fills @bsz (minimum,
 * preferred, maximum) from the reply.
 */
static void cl_open(struct rig *g, unsigned i, const char *name, uint32_t bsz[3])
{
	struct cl *k = &g->cl[i];
	uint8_t b[128], d[64];
	size_t nl = strlen(name), n = 4;

	memset(k, 0, sizeof(*k));
	bsz[0] = bsz[1] = bsz[2] = 0;
	if (!ok_eq(nbd_conn_create(g->srv, &k->c), 0))
		return;
	nbd_put_be32(b, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	nbd_put_be32(d, (uint32_t)nl);
	memcpy(d + 4, name, nl);
	nbd_put_be16(d + 4 + nl, 1);
	nbd_put_be16(d + 6 + nl, NBD_INFO_BLOCK_SIZE);
	n += nbdc_put_opt(b + n, NBD_OPT_GO, d, (uint32_t)(8 + nl));
	cl_feed(g, k, b, n);
	settle(g);
	if (!cl_take(k, 18))
		return;
	for (;;) {
		const uint8_t *p = cl_take(k, 20);
		uint32_t type, len;

		if (!p)
			return;
		type = nbd_get_be32(p + 12);
		len = nbd_get_be32(p + 16);
		if (!(p = cl_take(k, len)))
			return;
		if (type == NBD_REP_INFO && len == 14 && nbd_get_be16(p) == NBD_INFO_BLOCK_SIZE) {
			bsz[0] = nbd_get_be32(p + 2);
			bsz[1] = nbd_get_be32(p + 6);
			bsz[2] = nbd_get_be32(p + 10);
		}
		if (type == NBD_REP_ACK || (type & NBD_REP_FLAG_ERROR)) {
			ok_eq(type, NBD_REP_ACK);
			return;
		}
	}
}

/* One request (header + payload) into @b; its length. */
static size_t put_req(uint8_t *b, uint16_t type, uint16_t flags, uint64_t cookie, uint64_t off,
		      uint32_t len, const void *payload)
{
	nbdc_put_req(b, type, flags, cookie, off, len);
	if (type != NBD_CMD_WRITE)
		return 28;
	memcpy(b + 28, payload, len);
	return 28 + len;
}

/* Take one simple reply (no READ data): its error, or ~0 when none is there. */
static uint32_t cl_reply(struct cl *k, uint64_t *cookie)
{
	const uint8_t *p = cl_take(k, 16);

	if (!p)
		return ~0u;
	ok_eq(nbd_get_be32(p), NBD_SIMPLE_REPLY_MAGIC);
	if (cookie)
		*cookie = nbd_get_be64(p + 8);
	return nbd_get_be32(p + 4);
}

/* One request, waited for; its error. */
static uint32_t request(struct rig *g, uint16_t type, uint16_t flags, uint64_t off, uint32_t len,
			const void *payload)
{
	uint8_t *b = malloc(28 + (type == NBD_CMD_WRITE ? len : 0));
	static uint64_t cookie = 1000;
	uint64_t got = 0;
	uint32_t err;
	size_t n;

	n = put_req(b, type, flags, ++cookie, off, len, payload);
	cl_feed(g, &g->cl[0], b, n);
	free(b);
	settle(g);
	err = cl_reply(&g->cl[0], &got);
	ok_eq(got, cookie);
	return err;
}

static void rig_start(struct rig *g, struct blkdev *dev)
{
	struct nbd_export_config cfg = { .name = "d", .dev = dev };

	memset(g, 0, sizeof(*g));
	g->dev = dev;
	ok_eq(nbd_server_create(NULL, &g->srv), 0);
	ok_eq(nbd_server_add_export(g->srv, &cfg), 0);
	cfg.name = "ro";
	cfg.read_only = true;
	ok_eq(nbd_server_add_export(g->srv, &cfg), 0);
}

static void rig_stop(struct rig *g)
{
	for (unsigned i = 0; i < 2; i++) {
		nbd_conn_destroy(g->cl[i].c);
		free(g->cl[i].out);
	}
	nbd_server_destroy(g->srv);
}

/* ---- The model --------------------------------------------------------------------------- */

static bool same_as_model(struct blkdev *dev, const uint8_t *model, uint64_t from, uint64_t to)
{
	uint32_t bs = dev->block_size;
	uint64_t a = from / bs, e = (to + bs - 1) / bs;
	uint8_t *got = malloc((size_t)(e - a) * bs);
	bool same;

	if (!ok_eq(blkdev_read(dev, a, (uint32_t)(e - a), got), 0)) {
		free(got);
		return false;
	}
	same = !memcmp(got, model + a * bs, (size_t)(e - a) * bs);
	for (uint64_t i = 0; !same && i < (e - a) * bs; i++) {
		if (got[i] != model[a * bs + i]) {
			fail("byte %llu: %#x, the model says %#x", (unsigned long long)(a * bs + i),
			     got[i], model[a * bs + i]);
			break;
		}
	}
	free(got);
	return same;
}

/*
 * Unaligned WRITEs, WRITE_ZEROES (hole allowed or not) and some FUA at every small offset
 * around sector and pool-block edges, each waited for and compared with a model. @snap_at:
 * after that many requests, snapshot thin device 1 of @pool into 2 (copy-on-write from then).
 */
static void model_run(struct blkdev *dev, struct thin_pool *pool, unsigned snap_at)
{
	static const uint64_t bases[] = { 0, 512, 4096, KB64, 2 * KB64, DEV_BYTES };
	static const int64_t deltas[] = { -513, -3, -1, 0, 1, 2, 255, 511 };
	static const uint32_t lens[] = { 1, 2, 3, 255, 511, 512, 513, 1000, 1537, 4097, KB64 + 3 };
	uint8_t *model = malloc(DEV_BYTES), *pay = malloc(KB64 + 3);
	unsigned count = 0;
	uint32_t bsz[3];
	struct rig g;

	rig_start(&g, dev);
	cl_open(&g, 0, "d", bsz);
	ok_eq(bsz[0], 1);
	ok_eq(bsz[1], MAX(4096u, dev->block_size));
	ok_eq(bsz[2], 64u << 20);
	ok_eq(blkdev_read(dev, 0, (uint32_t)(DEV_BYTES / dev->block_size), model), 0);
	for (size_t bi = 0; bi < ARRAY_SIZE(bases); bi++) {
		for (size_t di = 0; di < ARRAY_SIZE(deltas); di++) {
			for (size_t li = 0; li < ARRAY_SIZE(lens) && !test_failed(); li++) {
				int64_t off = (int64_t)bases[bi] + deltas[di];
				uint32_t len = lens[li];
				unsigned kind = count % 3;
				uint16_t flags = count % 4 == 1 ? NBD_CMD_FLAG_FUA : 0;
				uint32_t err;

				if (off < 0 || off >= DEV_BYTES)
					continue;
				len = (uint32_t)MIN((uint64_t)len, DEV_BYTES - (uint64_t)off);
				if (pool && count == snap_at)
					ok_eq(thin_pool_create_snap(pool, 2, 1), 0);
				count++;
				if (kind == 0) {
					pattern(pay, len, count);
					err = request(&g, NBD_CMD_WRITE, flags, (uint64_t)off, len,
						      pay);
					memcpy(model + off, pay, len);
				} else {
					if (kind == 2)
						flags |= NBD_CMD_FLAG_NO_HOLE;
					err = request(&g, NBD_CMD_WRITE_ZEROES, flags,
						      (uint64_t)off, len, NULL);
					memset(model + off, 0, len);
				}
				if (err)
					fail("request %u (kind %u at %lld, %u bytes): error %u",
					     count, kind, (long long)off, len, err);
				same_as_model(dev, model, (uint64_t)MAX(0, off - 1024),
					      MIN((uint64_t)off + len + 1024, (uint64_t)DEV_BYTES));
			}
		}
	}
	ok(count > 300);
	ok(same_as_model(dev, model, 0, DEV_BYTES));
	rig_stop(&g);
	free(model);
	free(pay);
}

TEST(unaligned_writes_match_model_memdisk)
{
	struct blkdev *mem;

	ok_eq(memdisk_create(DEV_BYTES / 512, 512, &mem), 0);
	model_run(mem, NULL, 0);
	blkdev_destroy(mem);
}

/* A device with 4 KiB blocks (a virtio-blk disk may have them): partial blocks of 4 KiB. */
TEST(unaligned_writes_match_model_4k_blocks)
{
	struct blkdev *mem;
	struct oodev o;

	ok_eq(memdisk_create(DEV_BYTES / 4096, 4096, &mem), 0);
	oodev_init(&o, mem, test_seed());
	model_run(&o.dev, NULL, 0);
	blkdev_destroy(mem);
}

TEST(unaligned_writes_match_model_out_of_order_device)
{
	struct blkdev *mem;
	struct oodev o;

	ok_eq(memdisk_create(DEV_BYTES / 512, 512, &mem), 0);
	oodev_init(&o, mem, test_seed());
	model_run(&o.dev, NULL, 0);
	blkdev_destroy(mem);
}

TEST(unaligned_writes_match_model_byte_device)
{
	struct blkdev *mem;
	struct ldev l;

	ok_eq(memdisk_create(DEV_BYTES / 512, 512, &mem), 0);
	ldev_init(&l, mem, true);
	model_run(&l.dev, NULL, 0);
	blkdev_destroy(mem);
}

TEST(unaligned_writes_match_model_thin_volume)
{
	struct thin_volume *vol;
	struct tpool t;
	struct blkdev *d;

	if (!ok_eq(tpool_create(&t, 256, 16, NULL), 0))
		return;
	d = pool_vol_open(t.pool, 1, DEV_BYTES, &vol);
	if (d) {
		ok(d->byte_writes);
		model_run(d, t.pool, 200);
		thin_volume_close(vol);
	}
	tpool_destroy(&t);
}

/* A pool whose data disk completes out of order: its byte ops under the cells. */
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

TEST(unaligned_writes_match_model_thin_out_of_order_no_zeroing)
{
	struct thin_volume *vol;
	struct oopool p;
	struct blkdev *d;

	if (oopool_create(&p, false)) {
		d = pool_vol_open(p.pool, 1, DEV_BYTES, &vol);
		if (d) {
			model_run(d, p.pool, 100);
			thin_volume_close(vol);
		}
	}
	oopool_destroy(&p);
}

/* ---- Two connections, pieces of the same sectors, all in flight at once ------------------ */

#define CELL	  3u
#define REGION	  4608u /* 512 bytes before the sector 10 edge ... */
#define REGION_SZ 1024u /* ... to 512 after it */

/*
 * The region is cut into 3-byte cells; cell i is written by connection i % 2 (every fifth
 * one zeroed instead), all pipelined before anything completes, alternating between the two
 * connections. Without ordering, two read-modify-writes of one sector read the same old
 * sector and the later write-back loses the other's bytes.
 */
static void concurrent_run(struct blkdev *dev)
{
	unsigned ncell = (REGION_SZ + CELL - 1) / CELL, replies[2] = { 0, 0 };
	uint8_t *expect = malloc(REGION_SZ), *fill = malloc(REGION_SZ + 1024);
	uint8_t b[64], sect[28 + 512], one[512];
	uint32_t bsz[3];
	struct rig g;

	memset(fill, 0x11, REGION_SZ + 1024);
	ok_eq(blkdev_write(dev, (REGION - 512) / 512, (REGION_SZ + 1024) / 512, fill), 0);
	rig_start(&g, dev);
	cl_open(&g, 0, "d", bsz);
	cl_open(&g, 1, "d", bsz);
	for (unsigned i = 0; i < ncell; i++) {
		uint32_t len = MIN(CELL, REGION_SZ - i * CELL);
		uint8_t v[CELL];
		size_t n;

		memset(v, (int)(0x20 + i % 200), sizeof(v));
		if (i % 5 == 4) {
			n = put_req(b, NBD_CMD_WRITE_ZEROES, 0, i, REGION + i * CELL, len, NULL);
			memset(expect + i * CELL, 0, len);
		} else {
			n = put_req(b, NBD_CMD_WRITE, 0, i, REGION + i * CELL, len, v);
			memcpy(expect + i * CELL, v, len);
		}
		cl_feed(&g, &g.cl[i % 2], b, n);
		/* And an aligned sector elsewhere, so the device really has several at once. */
		memset(one, (int)(0x20 + i % 200), 512);
		n = put_req(sect, NBD_CMD_WRITE, 0, 1000 + i, (150 + i) * 512, 512, one);
		cl_feed(&g, &g.cl[i % 2], sect, n);
	}
	settle(&g);
	for (unsigned k = 0; k < 2; k++) {
		uint64_t cookie;

		while (g.cl[k].pos < g.cl[k].len) {
			if (!ok_eq(cl_reply(&g.cl[k], &cookie), 0))
				break;
			ok_eq(cookie % 2, k);
			replies[k]++;
		}
	}
	ok_eq(replies[0] + replies[1], 2 * ncell);
	rig_stop(&g);
	if (!ok_eq(blkdev_read(dev, (REGION - 512) / 512, (REGION_SZ + 1024) / 512, fill), 0))
		goto out;
	ok(all_bytes(fill, 512, 0x11));
	ok(all_bytes(fill + 512 + REGION_SZ, 512, 0x11));
	for (unsigned i = 0; i < REGION_SZ; i++) {
		if (fill[512 + i] != expect[i]) {
			fail("byte %u of the region: %#x, wanted %#x (a lost update)", i,
			     fill[512 + i], expect[i]);
			break;
		}
	}
	for (unsigned i = 0; i < ncell; i++) {
		if (!ok_eq(blkdev_read(dev, 150 + i, 1, fill), 0) ||
		    !ok(all_bytes(fill, 512, (uint8_t)(0x20 + i % 200))))
			break;
	}
out:
	free(expect);
	free(fill);
}

TEST(two_connections_same_sectors_out_of_order_device)
{
	struct blkdev *mem;
	struct oodev o;

	ok_eq(memdisk_create(DEV_BYTES / 512, 512, &mem), 0);
	oodev_init(&o, mem, test_seed());
	concurrent_run(&o.dev);
	ok(o.max_depth > 1); /* things really were in flight together */
	blkdev_destroy(mem);
}

TEST(two_connections_same_sectors_thin_out_of_order)
{
	struct thin_volume *vol;
	struct oopool p;
	struct blkdev *d;

	if (oopool_create(&p, true)) {
		d = pool_vol_open(p.pool, 1, DEV_BYTES, &vol);
		if (d) {
			concurrent_run(d);
			ok(p.o.max_depth > 1);
			thin_volume_close(vol);
		}
	}
	oopool_destroy(&p);
}

/* A connection vanishes with read-modify-writes waiting behind the other's: nothing leaks,
 * the other's writes land. */
TEST(vanished_connection_with_waiting_writes)
{
	struct blkdev *mem;
	struct oodev o;
	uint8_t b[64], v[3] = { 7, 7, 7 }, got[512];
	uint32_t bsz[3];
	struct rig g;

	ok_eq(memdisk_create(DEV_BYTES / 512, 512, &mem), 0);
	oodev_init(&o, mem, test_seed());
	rig_start(&g, &o.dev);
	cl_open(&g, 0, "d", bsz);
	cl_open(&g, 1, "d", bsz);
	for (unsigned i = 0; i < 20; i++) {
		size_t n = put_req(b, NBD_CMD_WRITE, 0, i, 100 + i * 3, 3, v);

		cl_feed(&g, &g.cl[i % 2], b, n);
	}
	nbd_conn_destroy(g.cl[1].c);
	g.cl[1].c = NULL;
	settle(&g);
	for (unsigned i = 0; i < 10; i++)
		ok_eq(cl_reply(&g.cl[0], NULL), 0);
	rig_stop(&g);
	ok_eq(blkdev_read(mem, 0, 1, got), 0);
	for (unsigned i = 0; i < 20; i += 2)
		ok(got[100 + i * 3] == 7 && got[102 + i * 3] == 7);
	blkdev_destroy(mem);
}

/*
 * An aligned write arriving while a read-modify-write of its sector is in flight waits for
 * it and lands after it (arrival order), and goes once the read-modify-write is done even
 * though none is left in the list. Every request is answered.
 */
TEST(aligned_write_behind_read_modify_write)
{
	uint8_t b[28 + 512], sect[512], got[512], v[3] = { 9, 9, 9 };
	struct blkdev *mem;
	struct oodev o;
	uint32_t bsz[3];
	struct rig g;
	size_t n;

	ok_eq(memdisk_create(DEV_BYTES / 512, 512, &mem), 0);
	oodev_init(&o, mem, test_seed());
	rig_start(&g, &o.dev);
	cl_open(&g, 0, "d", bsz);
	cl_open(&g, 1, "d", bsz);
	memset(sect, 0x77, sizeof(sect));
	memset(got, 0x55, sizeof(got));
	ok_eq(blkdev_write(mem, 1, 1, got), 0);
	n = put_req(b, NBD_CMD_WRITE, 0, 1, 1, 3, v);
	cl_feed(&g, &g.cl[0], b, n);
	n = put_req(b, NBD_CMD_WRITE, 0, 2, 0, 512, sect);
	cl_feed(&g, &g.cl[1], b, n);
	n = put_req(b, NBD_CMD_WRITE_ZEROES, 0, 3, 512, 512, NULL);
	cl_feed(&g, &g.cl[1], b, n);
	settle(&g);
	/* (the last read-modify-write leaving the list must let the aligned ones go) */
	ok_eq(cl_reply(&g.cl[0], NULL), 0);
	ok_eq(cl_reply(&g.cl[1], NULL), 0);
	ok_eq(cl_reply(&g.cl[1], NULL), 0);
	n = put_req(b, NBD_CMD_WRITE, 0, 4, 510, 3, v);
	cl_feed(&g, &g.cl[0], b, n);
	n = put_req(b, NBD_CMD_WRITE, 0, 5, 1024, 512, sect);
	cl_feed(&g, &g.cl[1], b, n);
	settle(&g);
	ok_eq(cl_reply(&g.cl[0], NULL), 0);
	ok_eq(cl_reply(&g.cl[1], NULL), 0);
	ok_eq(blkdev_read(mem, 0, 1, got), 0);
	/* The sector write came after the first piece, the last piece after it and the zeroes. */
	ok(all_bytes(got, 510, 0x77) && got[510] == 9 && got[511] == 9);
	ok_eq(blkdev_read(mem, 1, 1, got), 0);
	ok(got[0] == 9 && all_bytes(got + 1, 511, 0));
	rig_stop(&g);
	blkdev_destroy(mem);
}

/* ---- FUA and errors ---------------------------------------------------------------------- */

TEST(fua_covers_the_whole_unaligned_request)
{
	struct blkdev *mem;
	uint8_t pay[2048];
	uint32_t bsz[3];
	struct rig g;
	struct ldev l;

	ok_eq(memdisk_create(DEV_BYTES / 512, 512, &mem), 0);
	memset(pay, 0x5a, sizeof(pay));
	/* Without byte writes: edges read, patched and written, the middle, then one flush. */
	ldev_init(&l, mem, false);
	rig_start(&g, &l.dev);
	cl_open(&g, 0, "d", bsz);
	l.nlog = 0;
	ok_eq(request(&g, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 1, 3, pay), 0);
	ok(!strcmp(l.log, "RWF"));
	memset(l.log, 0, sizeof(l.log));
	l.nlog = 0;
	ok_eq(request(&g, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 511, 1026, pay), 0);
	ok(!strcmp(l.log, "RWRWWF"));
	memset(l.log, 0, sizeof(l.log));
	l.nlog = 0;
	ok_eq(request(&g, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FUA, 513, 2000, NULL), 0);
	ok(!strcmp(l.log, "RWRWWF")); /* no write_zeroes op: the middle is a zero-buffer write */
	memset(l.log, 0, sizeof(l.log));
	l.nlog = 0;
	ok_eq(request(&g, NBD_CMD_WRITE, 0, 1, 3, pay), 0);
	ok(!strcmp(l.log, "RW"));
	rig_stop(&g);

	/* With byte writes: one byte op, then the flush. */
	ldev_init(&l, mem, true);
	rig_start(&g, &l.dev);
	cl_open(&g, 0, "d", bsz);
	l.nlog = 0;
	ok_eq(request(&g, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 1, 3, pay), 0);
	ok(!strcmp(l.log, "wF"));
	memset(l.log, 0, sizeof(l.log));
	l.nlog = 0;
	ok_eq(request(&g, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FUA, 513, 2000, NULL), 0);
	ok(!strcmp(l.log, "zF"));
	memset(l.log, 0, sizeof(l.log));
	l.nlog = 0;
	ok_eq(request(&g, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 513, 2000, NULL), 0);
	ok(!strcmp(l.log, "w"));
	/* Aligned requests keep the block ops. */
	memset(l.log, 0, sizeof(l.log));
	l.nlog = 0;
	ok_eq(request(&g, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 512, 1024, pay), 0);
	ok(!strcmp(l.log, "WF"));
	rig_stop(&g);
	blkdev_destroy(mem);
}

static void errors_run(struct blkdev *dev)
{
	uint8_t pay[1024] = { 0 };
	uint32_t bsz[3];
	struct rig g;

	rig_start(&g, dev);
	cl_open(&g, 0, "d", bsz);
	ok_eq(request(&g, NBD_CMD_WRITE, 0, DEV_BYTES - 1, 2, pay), NBD_ENOSPC);
	ok_eq(request(&g, NBD_CMD_WRITE_ZEROES, 0, DEV_BYTES - 3, 5, NULL), NBD_ENOSPC);
	ok_eq(request(&g, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 1, 3, NULL), NBD_ENOTSUP);
	ok_eq(request(&g, NBD_CMD_WRITE, 0, 1, 0, pay), NBD_EINVAL);
	ok_eq(request(&g, NBD_CMD_WRITE, 0, DEV_BYTES - 1, 1, pay), 0);
	nbd_conn_destroy(g.cl[0].c);
	free(g.cl[0].out);
	cl_open(&g, 0, "ro", bsz);
	ok_eq(bsz[0], 1);
	ok_eq(request(&g, NBD_CMD_WRITE, 0, 1, 3, pay), NBD_EPERM);
	ok_eq(request(&g, NBD_CMD_WRITE_ZEROES, 0, 1, 3, NULL), NBD_EPERM);
	ok_eq(request(&g, NBD_CMD_WRITE, 0, DEV_BYTES - 1, 2, pay), NBD_EPERM);
	rig_stop(&g);
}

TEST(errors_stay_for_unaligned_requests)
{
	struct blkdev *mem;
	struct ldev l;

	ok_eq(memdisk_create(DEV_BYTES / 512, 512, &mem), 0);
	errors_run(mem);
	ldev_init(&l, mem, true);
	errors_run(&l.dev);
	blkdev_destroy(mem);
}
