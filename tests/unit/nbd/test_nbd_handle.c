/* SPDX-License-Identifier: MIT */
/*
 * WRITE payloads the transport keeps (nbd_conn_direct_handle_len() / _done(), core/blkdev.h
 * "Payloads held by the transport"; the host glue's spliced pipes): the server offers the
 * handshake only for a block-aligned WRITE none of whose payload arrived yet, on a device
 * that takes such payloads; a handed-over payload reaches the device as in_handle with the
 * transport's handle (and the request's buffer for a fallback); and the handle is released
 * exactly once, after the device is done with it: on completion, on a device error, on a
 * refused submit, with the request still in the device when the connection and then the
 * server go away. A test device plays filedisk: its "handle" names a payload object of the
 * test, read at completion (so a release before that is caught).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "host/hostdev.h"
#include "net/nbd/nbd_proto.h"
#include "net/nbd/nbd_server.h"
#include "tests/support/harness.h"
#include "tests/support/nbd_client.h"
#include "tests/support/queued_dev.h"

#define DISK_BLOCKS 4096 /* 2 MiB of 512-byte blocks */
#define NOBJ	    8

/* ---- The transport's payload objects, named by handle (index + 100) ---- */

struct obj {
	uint8_t *data;
	size_t len;
	bool live;	   /* handed to the server, not released yet */
	unsigned releases; /* release() calls */
};
static struct obj objs[NOBJ];

static int obj_new(const uint8_t *bytes, size_t len)
{
	for (int i = 0; i < NOBJ; i++) {
		if (!objs[i].live && !objs[i].data) {
			objs[i].data = malloc(len);
			memcpy(objs[i].data, bytes, len);
			objs[i].len = len;
			objs[i].live = true;
			objs[i].releases = 0;
			return i + 100;
		}
	}
	return -1;
}

static struct obj *obj_of(int handle)
{
	if (!ok(handle >= 100 && handle < 100 + NOBJ))
		return NULL;
	return &objs[handle - 100];
}

static void release_cb(void *ctx, int handle)
{
	struct obj *o = obj_of(handle);

	ok(ctx == (void *)objs);
	if (!o)
		return;
	o->releases++;
	ok(o->live); /* exactly once */
	o->live = false;
	free(o->data);
	o->data = NULL;
}

static const struct nbd_handle_ops h_ops = { .release = release_cb, .ctx = objs };

static unsigned live_objs(void)
{
	unsigned n = 0;

	for (int i = 0; i < NOBJ; i++)
		n += objs[i].live;
	return n;
}

/* ---- The device (takes in_handle WRITEs, holds requests until told) reads them here ---- */

/* An in_handle WRITE's payload, read at completion: it must still be there. */
static const void *handle_payload(struct queued_dev *qd, const struct blkdev_req *r)
{
	struct obj *o = obj_of(r->handle);

	if (!ok(o && o->live && o->len == (size_t)r->count * 512))
		return NULL; /* the WRITE completes with -EIO */
	return o->data;
}

/* ---- The client ---- */

struct t {
	struct nbd_server *srv;
	struct nbd_conn *c;
	struct blkdev *mem;
	struct queued_dev h;
	uint8_t *out;
	size_t out_len, out_pos;
};

static void negotiate(struct t *t)
{
	uint8_t b[64];
	size_t n = 4;

	nbd_put_be32(b, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	n += nbdc_put_opt(b + n, NBD_OPT_EXPORT_NAME, "d", 1);
	ok_eq(nbd_conn_feed(t->c, b, n), n);
	nbdc_drain(t->c, &t->out, &t->out_len);
	t->out_pos = t->out_len; /* the greeting and the export's answer */
}

static void setup(struct t *t, bool handle_writes)
{
	struct nbd_export_config cfg = { .name = "d" };

	memset(t, 0, sizeof(*t));
	ok_eq(memdisk_create(DISK_BLOCKS, 512, &t->mem), 0);
	qd_init(&t->h, t->mem);
	t->h.dev.handle_writes = handle_writes;
	t->h.payload = handle_payload;
	ok_eq(nbd_server_create(NULL, &t->srv), 0);
	cfg.dev = &t->h.dev;
	ok_eq(nbd_server_add_export(t->srv, &cfg), 0);
	ok_eq(nbd_conn_create(t->srv, &t->c), 0);
	negotiate(t);
}

static void teardown(struct t *t)
{
	if (t->c)
		nbd_conn_destroy(t->c);
	nbd_server_destroy(t->srv);
	blkdev_destroy(t->mem);
	free(t->out);
	ok_eq(live_objs(), 0); /* every handle released */
}

/* The next simple reply's error (-1 when there is none). */
static int64_t reply(struct t *t, uint64_t cookie)
{
	return nbdc_simple_reply(t->c, &t->out, &t->out_len, &t->out_pos, cookie);
}

static void pattern_fill(uint8_t *b, size_t len, unsigned tag)
{
	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)(tag * 13 + i * 7 + (i >> 8));
}

/* A WRITE's header, fed; then the payload @len bytes long handed over as an object. */
static size_t send_hdr(struct t *t, uint64_t cookie, uint64_t off, uint32_t len)
{
	uint8_t hdr[28];

	nbdc_put_req(hdr, NBD_CMD_WRITE, 0, cookie, off, len);
	ok_eq(nbd_conn_feed(t->c, hdr, 28), 28);
	return nbd_conn_direct_handle_len(t->c);
}

static int send_handle_write(struct t *t, uint64_t cookie, uint64_t off, const uint8_t *payload,
			     uint32_t len)
{
	int h;

	if (!ok_eq(send_hdr(t, cookie, off, len), len))
		return -1;
	h = obj_new(payload, len);
	nbd_conn_direct_handle_done(t->c, h, &h_ops);
	return h;
}

TEST(offered_only_for_aligned_writes_on_a_device_that_takes_them)
{
	struct t t;
	uint8_t *w = malloc(65536);

	pattern_fill(w, 65536, 1);
	setup(&t, true);
	ok_eq(nbd_conn_direct_handle_len(t.c), 0); /* waiting for a header */
	ok_eq(send_hdr(&t, 1, 512, 1000), 0);	   /* unaligned: the server patches from r->buf */
	ok_eq(nbd_conn_feed(t.c, w, 1000), 1000);
	for (int i = 0; i < 8; i++) /* the edges' reads, then the writes */
		nbd_server_poll(t.srv);
	ok_eq(reply(&t, 1), 0);
	ok_eq(send_hdr(&t, 2, 4096, 65536), 65536);
	ok_eq(nbd_conn_feed(t.c, w, 100), 100); /* some of it came the usual way: no more */
	ok_eq(nbd_conn_direct_handle_len(t.c), 0);
	ok_eq(nbd_conn_feed(t.c, w + 100, 65536 - 100), 65536 - 100);
	nbd_server_poll(t.srv);
	ok_eq(reply(&t, 2), 0);
	ok_eq(t.h.handle_writes, 0);
	teardown(&t);
	/* A device without handle_writes (a thin volume, a memdisk) is never offered one. */
	setup(&t, false);
	ok_eq(send_hdr(&t, 3, 0, 65536), 0);
	ok(nbd_conn_direct_buf(t.c, &(size_t){ 0 }) != NULL); /* the buffer path, as before */
	ok_eq(nbd_conn_feed(t.c, w, 65536), 65536);
	nbd_server_poll(t.srv);
	ok_eq(reply(&t, 3), 0);
	teardown(&t);
	free(w);
}

TEST(handed_over_payload_reaches_the_device_and_is_released_once)
{
	struct t t;
	uint8_t *w = malloc(65536), *back = malloc(65536);
	int h;

	pattern_fill(w, 65536, 2);
	setup(&t, true);
	t.h.hold = true;
	h = send_handle_write(&t, 7, 4096, w, 65536);
	nbd_server_poll(t.srv);
	ok_eq(t.h.handle_writes, 1);
	ok_eq(t.h.buf_writes, 0);
	ok(t.h.seen.in_handle);
	ok_eq(t.h.seen.handle, h);
	ok(t.h.seen.buf != NULL); /* the fallback buffer goes along */
	ok(t.h.seen.segs == NULL);
	ok_eq(t.h.seen.block, 8);
	ok_eq(t.h.seen.count, 128);
	ok_eq(live_objs(), 1); /* not released while the device has it */
	t.h.hold = false;
	nbd_server_poll(t.srv);
	ok_eq(reply(&t, 7), 0);
	ok_eq(live_objs(), 0);
	ok_eq(objs[h - 100].releases, 1);
	ok_eq(blkdev_read(t.mem, 8, 128, back), 0);
	ok(memcmp(back, w, 65536) == 0);
	/* The next request's header goes the usual way, and so does a READ after it. */
	ok_eq(send_hdr(&t, 8, 0, 65536), 65536);
	nbd_conn_direct_handle_done(t.c, h = obj_new(w, 65536), &h_ops);
	nbd_server_poll(t.srv);
	ok_eq(reply(&t, 8), 0);
	ok_eq(objs[h - 100].releases, 1);
	teardown(&t);
	free(w);
	free(back);
}

TEST(released_once_on_device_error_and_refused_submit)
{
	struct t t;
	uint8_t *w = malloc(65536);
	int h;

	pattern_fill(w, 65536, 3);
	setup(&t, true);
	t.h.fail = -EIO;
	h = send_handle_write(&t, 9, 0, w, 65536);
	nbd_server_poll(t.srv);
	ok_eq(reply(&t, 9), NBD_EIO);
	ok_eq(objs[h - 100].releases, 1);
	t.h.fail = 0;
	t.h.refuse = -EIO;
	h = send_handle_write(&t, 10, 0, w, 65536);
	nbd_server_poll(t.srv);
	ok_eq(reply(&t, 10), NBD_EIO);
	ok_eq(objs[h - 100].releases, 1);
	ok_eq(live_objs(), 0);
	teardown(&t);
	free(w);
}

TEST(released_once_when_in_flight_at_close_and_at_server_destroy)
{
	struct t t;
	uint8_t *w = malloc(65536), *back = malloc(65536);
	int h1, h2, h3;

	pattern_fill(w, 65536, 4);
	setup(&t, true);
	t.h.hold = true;
	h1 = send_handle_write(&t, 12, 0, w, 65536);
	h2 = send_handle_write(&t, 13, 65536, w, 65536);
	nbd_server_poll(t.srv);
	ok_eq(t.h.n, 2);
	nbd_conn_destroy(t.c); /* the transport is gone; the device still reads the payloads */
	t.c = NULL;
	nbd_server_poll(t.srv);
	ok_eq(live_objs(), 2);
	t.h.hold = false;
	nbd_server_poll(t.srv); /* completed and dropped */
	ok_eq(live_objs(), 0);
	ok(objs[h1 - 100].releases == 1 && objs[h2 - 100].releases == 1);
	ok_eq(blkdev_read(t.mem, 128, 128, back), 0);
	ok(memcmp(back, w, 65536) == 0);
	/* And at server destroy: one more connection, a write held in the device. */
	ok_eq(nbd_conn_create(t.srv, &t.c), 0);
	negotiate(&t);
	t.h.hold = true;
	h3 = send_handle_write(&t, 14, 0, w, 4096);
	nbd_server_poll(t.srv);
	ok_eq(live_objs(), 1);
	t.h.hold = false; /* nbd_server_destroy() polls the device until it is done */
	teardown(&t);	  /* checks live_objs() == 0 */
	ok_eq(objs[h3 - 100].releases, 1);
	free(w);
	free(back);
}

static void noop_done(struct blkdev_req *req, int rc)
{
	(void)req;
	(void)rc;
}

/* core/blkdev.c: only a device with handle_writes gets one, only as a WRITE with a buffer. */
TEST(blkdev_submit_refuses_handles_elsewhere)
{
	struct t t;
	uint8_t buf[512];
	struct blkdev_seg seg = { buf, sizeof(buf) };
	struct blkdev_req r = { .op = BLKDEV_WRITE,
				.count = 1,
				.buf = buf,
				.done = noop_done,
				.in_handle = true,
				.handle = 100 };

	setup(&t, true);
	ok_eq(blkdev_submit(t.mem, &r), -EINVAL); /* a memdisk: no handle_writes */
	r.op = BLKDEV_READ;
	ok_eq(blkdev_submit(&t.h.dev, &r), -EINVAL);
	r.op = BLKDEV_WRITE;
	r.buf = NULL;
	ok_eq(blkdev_submit(&t.h.dev, &r), -EINVAL);
	r.buf = buf;
	r.segs = &seg;
	r.nr_segs = 1;
	ok_eq(blkdev_submit(&t.h.dev, &r), -EINVAL);
	ok_eq(t.h.n, 0); /* none reached the device */
	teardown(&t);
}
