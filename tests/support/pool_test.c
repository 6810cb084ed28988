/* SPDX-License-Identifier: MIT */
/* Helpers for the thin-pool tests (tests/support/pool_test.h). */
#include "tests/support/pool_test.h"

#include <errno.h>
#include <string.h>

#include "tests/support/harness.h"

/* ---- The out-of-order device ---- */

static int oo_read(struct blkdev *d, uint64_t b, uint32_t c, void *buf)
{
	return blkdev_read(container_of(d, struct oodev, dev)->lower, b, c, buf);
}
static int oo_write(struct blkdev *d, uint64_t b, uint32_t c, const void *buf)
{
	return blkdev_write(container_of(d, struct oodev, dev)->lower, b, c, buf);
}
static int oo_flush(struct blkdev *d)
{
	return blkdev_flush(container_of(d, struct oodev, dev)->lower);
}
static int oo_discard(struct blkdev *d, uint64_t b, uint32_t c)
{
	return blkdev_discard(container_of(d, struct oodev, dev)->lower, b, c);
}

static int oo_submit(struct blkdev *d, struct blkdev_req *req)
{
	struct oodev *o = container_of(d, struct oodev, dev);

	if (o->n == ARRAY_SIZE(o->q))
		return -EAGAIN;
	o->q[o->n++] = req;
	o->submitted++;
	if (o->n > o->max_depth)
		o->max_depth = o->n;
	return 0;
}

int blkdev_run_req(struct blkdev *lower, const struct blkdev_req *req)
{
	switch (req->op) {
	case BLKDEV_READ:
		return blkdev_read(lower, req->block, req->count, req->buf);
	case BLKDEV_WRITE:
		if (req->segs) {
			/* A double that takes segment lists: the device reads them at completion. */
			size_t len = (size_t)req->count * lower->block_size;
			void *b = malloc(len);
			int rc;

			if (!b)
				return -ENOMEM;
			blkdev_segs_gather(b, req->segs, req->nr_segs, req->seg_off, len);
			rc = blkdev_write(lower, req->block, req->count, b);
			free(b);
			return rc;
		}
		return blkdev_write(lower, req->block, req->count, req->buf);
	case BLKDEV_FLUSH:
		return blkdev_flush(lower);
	case BLKDEV_DISCARD:
		return blkdev_discard(lower, req->block, req->count);
	case BLKDEV_WRITE_ZEROES:
		return blkdev_write_zeroes(lower, req->block, req->count);
	case BLKDEV_WRITE_BYTES:
	case BLKDEV_WRITE_ZEROES_BYTES:
		break; /* the doubles do not set byte_writes */
	}
	return -EINVAL;
}

static void waiter_done(struct blkdev_req *req, int rc)
{
	struct waiter *w = container_of(req, struct waiter, req);

	w->done = true;
	w->rc = rc;
}

int waiter_submit(struct blkdev *d, struct waiter *w, enum blkdev_op op, uint64_t block,
		  uint32_t count, void *buf)
{
	memset(w, 0, sizeof(*w));
	w->req.op = op;
	w->req.block = block;
	w->req.count = count;
	w->req.buf = buf;
	w->req.done = waiter_done;
	return blkdev_submit(d, &w->req);
}

/* Complete a random half of the queue, in random order; the I/O happens at completion. */
static int oo_poll(struct blkdev *d)
{
	struct oodev *o = container_of(d, struct oodev, dev);
	unsigned todo = o->n ? 1 + (unsigned)(test_rand(&o->seed) % o->n) : 0, done = 0;

	while (done < todo && o->n) {
		unsigned i = (unsigned)(test_rand(&o->seed) % o->n);
		struct blkdev_req *req = o->q[i];
		int rc;

		o->q[i] = o->q[--o->n];
		rc = blkdev_run_req(o->lower, req);
		req->done(req, rc);
		done++;
	}
	return (int)done;
}

static const struct blkdev_ops oo_ops = { .read = oo_read,
					  .write = oo_write,
					  .flush = oo_flush,
					  .discard = oo_discard,
					  .submit = oo_submit,
					  .poll = oo_poll };

void oodev_init(struct oodev *o, struct blkdev *lower, uint64_t seed)
{
	memset(o, 0, sizeof(*o));
	o->lower = lower;
	o->seed = seed | 1;
	o->dev.ops = &oo_ops;
	o->dev.name = "oodev";
	o->dev.nr_blocks = lower->nr_blocks;
	o->dev.block_size = lower->block_size;
	o->dev.discard_zeroes = lower->discard_zeroes;
}

/* ---- Pools ---- */

int tpool_create(struct tpool *t, uint64_t meta_blocks, uint64_t data_blocks,
		 const struct thin_pool_opts *o)
{
	int r;

	memset(t, 0, sizeof(*t));
	if (o)
		t->o = *o;
	else
		thin_pool_default_opts(&t->o);
	r = memdisk_create(meta_blocks, 4096, &t->meta);
	if (!r)
		r = memdisk_create(data_blocks * KB64 / 512, 512, &t->data);
	if (!r)
		r = thin_pool_format(t->meta, t->data, &t->o, false);
	if (!r)
		r = thin_pool_open(t->meta, t->data, &t->o, NULL, 0, &t->pool);
	return r;
}

void tpool_destroy(struct tpool *t)
{
	if (t->pool)
		ok_eq(thin_pool_close(t->pool), 0);
	t->pool = NULL;
	blkdev_destroy(t->data);
	blkdev_destroy(t->meta);
}

void pattern(void *buf, size_t len, uint64_t tag)
{
	uint64_t *p = buf, s = tag * 0x9e3779b97f4a7c15ull + 1;

	for (size_t i = 0; i < len / 8; i++)
		p[i] = test_rand(&s);
}

bool all_bytes(const void *buf, size_t len, uint8_t v)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

uint64_t data_used(struct thin_pool *pool)
{
	struct thin_pool_status s;

	if (thin_pool_get_status(pool, &s))
		return ~0ull;
	return s.data_used;
}

struct blkdev *pool_vol_open(struct thin_pool *pool, thin_id_t id, uint64_t size,
			     struct thin_volume **vol)
{
	if (thin_md_device_exists(thin_pool_md(pool), id) == 0 &&
	    !ok_eq(thin_pool_create_thin(pool, id), 0))
		return NULL;
	if (!ok_eq(thin_volume_open(pool, id, size, false, vol), 0))
		return NULL;
	return thin_volume_blkdev(*vol);
}
