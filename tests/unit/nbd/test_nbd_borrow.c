/* SPDX-License-Identifier: MIT */
/*
 * Borrowed input (nbd_conn_feed_ref(), docs/nbd.md "Borrowed input"): a WRITE whose payload
 * arrives in many pieces of the transport's memory reaches the block device as a segment
 * list over those very pieces (no copy), and every hold of a piece is released exactly once:
 * on completion, on a device error, on a connection reset mid-payload, with the request still
 * in the device when the connection and then the server go away; a payload in more pieces than
 * its list holds, and an unaligned WRITE the server read-modify-writes, are copied instead.
 * ASan catches a piece used after its release (each piece is freed when its count hits 0).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/perf.h"
#include "core/base/util.h"
#include "host/hostdev.h"
#include "net/nbd/nbd_proto.h"
#include "net/nbd/nbd_server.h"
#include "tests/support/harness.h"
#include "tests/support/nbd_client.h"
#include "tests/support/queued_dev.h"

#define DISK_BLOCKS 4096 /* 2 MiB of 512-byte blocks */

/* ---- The transport's pieces: reference counted, freed at zero ---- */

struct piece {
	unsigned refs; /* the test's own reference plus the server's holds */
	unsigned holds, releases;
	size_t len;
	uint8_t data[];
};

static unsigned live_pieces;
static unsigned holds_now, holds_peak; /* the server's holds outstanding, and their peak */

static struct piece *piece_new(const uint8_t *bytes, size_t len)
{
	struct piece *p = malloc(sizeof(*p) + len);

	p->refs = 1;
	p->holds = p->releases = 0;
	p->len = len;
	memcpy(p->data, bytes, len);
	live_pieces++;
	return p;
}

static void piece_put(struct piece *p)
{
	if (!ok(p->refs > 0))
		return;
	if (--p->refs == 0) {
		live_pieces--;
		free(p);
	}
}

static void hold_cb(void *ctx, void *ref)
{
	struct piece *p = ref;

	(void)ctx;
	p->refs++;
	p->holds++;
	if (++holds_now > holds_peak)
		holds_peak = holds_now;
}

static void release_cb(void *ctx, void *ref)
{
	struct piece *p = ref;

	(void)ctx;
	p->releases++;
	holds_now--;
	piece_put(p);
}

static const struct nbd_input_ops in_ops = { .hold = hold_cb, .release = release_cb };

/* ---- The client ---- */

struct t {
	struct nbd_server *srv;
	struct nbd_conn *c;
	struct blkdev *mem;
	struct queued_dev l; /* takes lists, holds requests until told */
	uint8_t *out;
	size_t out_len, out_pos;
};

static void drain(struct t *t)
{
	nbdc_drain(t->c, &t->out, &t->out_len);
}

/* Feed @len bytes as one piece (the test drops its own reference after the call). */
static size_t feed_piece(struct t *t, const uint8_t *bytes, size_t len)
{
	struct piece *p = piece_new(bytes, len);
	size_t k = nbd_conn_feed_ref(t->c, p->data, len, &in_ops, p);

	piece_put(p);
	return k;
}

static void setup(struct t *t)
{
	struct nbd_export_config cfg = { .name = "d" };
	uint8_t b[64];
	size_t n = 4;

	memset(t, 0, sizeof(*t));
	ok_eq(memdisk_create(DISK_BLOCKS, 512, &t->mem), 0);
	qd_init(&t->l, t->mem);
	t->l.dev.seg_writes = true;
	ok_eq(nbd_server_create(NULL, &t->srv), 0);
	cfg.dev = &t->l.dev;
	ok_eq(nbd_server_add_export(t->srv, &cfg), 0);
	ok_eq(nbd_conn_create(t->srv, &t->c), 0);
	nbd_put_be32(b, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	n += nbdc_put_opt(b + n, NBD_OPT_EXPORT_NAME, "d", 1);
	ok_eq(feed_piece(t, b, n), n);
	drain(t);
	t->out_pos = t->out_len; /* the greeting and the export's answer */
}

static void teardown(struct t *t)
{
	if (t->c)
		nbd_conn_destroy(t->c);
	nbd_server_destroy(t->srv);
	blkdev_destroy(t->mem);
	free(t->out);
	ok_eq(live_pieces, 0); /* every hold released */
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

/*
 * Header + @len payload bytes at byte @off, fed as pieces of @piece bytes (the header
 * shares the first piece, as in a TCP segment); stops after @stop payload bytes. Fills
 * @pieces with the pieces (their data pointers: what the list must point into).
 */
static void send_write(struct t *t, uint64_t cookie, uint64_t off, const uint8_t *payload,
		       size_t len, size_t piece, size_t stop, const uint8_t **starts, unsigned *np)
{
	uint8_t *wire = malloc(28 + len);
	size_t total = 28 + MIN(len, stop), pos = 0;
	unsigned i = 0;

	nbdc_put_req(wire, NBD_CMD_WRITE, 0, cookie, off, (uint32_t)len);
	memcpy(wire + 28, payload, len);
	while (pos < total) {
		size_t k = MIN(piece + (pos ? 0 : 28), total - pos);
		struct piece *p = piece_new(wire + pos, k);

		if (starts)
			starts[i] = p->data + (pos ? 0 : 28);
		i++;
		ok_eq(nbd_conn_feed_ref(t->c, p->data, k, &in_ops, p), k);
		piece_put(p);
		pos += k;
	}
	if (np)
		*np = i;
	free(wire);
}

TEST(write_in_45_pieces_reaches_the_device_as_those_pieces)
{
	struct t t;
	uint8_t *w = malloc(65536), *back = malloc(65536);
	const uint8_t *starts[64];
	uint64_t copied, borrowed;
	unsigned np;

	setup(&t);
	pattern_fill(w, 65536, 1);
	t.l.hold = true;
	copied = perf_payload.write_copied;
	borrowed = perf_payload.write_borrowed;
	send_write(&t, 7, 4096, w, 65536, 1460, SIZE_MAX, starts, &np);
	ok_eq(np, 45);
	nbd_server_poll(t.srv);
	/* In the device: a list over the pieces themselves, each piece held once. */
	ok_eq(t.l.list_writes, 1);
	ok_eq(t.l.buf_writes, 0);
	ok(t.l.seen.segs != NULL && t.l.seen.buf == NULL);
	ok_eq(t.l.seen.nr_segs, 45);
	ok_eq(t.l.seen.block, 8);
	ok_eq(t.l.seen.count, 128);
	for (unsigned i = 0; i < 45; i++)
		ok(t.l.seen_segs[i].base == starts[i]);
	ok_eq(t.l.seen_segs[0].len, 1460);
	ok_eq(t.l.seen_segs[44].len, 65536 - 44 * 1460);
	ok_eq(live_pieces, 45);
	ok_eq(perf_payload.write_copied, copied);
	ok_eq(perf_payload.write_borrowed - borrowed, 65536);
	/* Completed: the reply, every piece released once, the bytes on the disk. */
	t.l.hold = false;
	nbd_server_poll(t.srv);
	ok_eq(reply(&t, 7), 0);
	ok_eq(live_pieces, 0);
	ok_eq(blkdev_read(t.mem, 8, 128, back), 0);
	ok(memcmp(back, w, 65536) == 0);
	teardown(&t);
	free(w);
	free(back);
}

TEST(pieces_released_on_error)
{
	struct t t;
	uint8_t *w = malloc(8192);

	setup(&t);
	pattern_fill(w, 8192, 2);
	t.l.fail = -EIO;
	send_write(&t, 9, 0, w, 8192, 1000, SIZE_MAX, NULL, NULL);
	nbd_server_poll(t.srv);
	ok_eq(reply(&t, 9), NBD_EIO);
	ok_eq(live_pieces, 0);
	teardown(&t);
	free(w);
}

TEST(pieces_released_on_reset_mid_payload)
{
	struct t t;
	uint8_t *w = malloc(65536);

	setup(&t);
	pattern_fill(w, 65536, 3);
	send_write(&t, 11, 0, w, 65536, 1460, 30000, NULL, NULL);
	ok(live_pieces > 10); /* the payload so far, held */
	nbd_conn_destroy(t.c);
	t.c = NULL;
	nbd_server_poll(t.srv);
	ok_eq(live_pieces, 0);
	ok_eq(t.l.list_writes, 0); /* never reached the device */
	teardown(&t);
	free(w);
}

TEST(pieces_released_when_in_flight_at_close)
{
	struct t t;
	uint8_t *w = malloc(65536), *back = malloc(65536);

	setup(&t);
	pattern_fill(w, 65536, 4);
	t.l.hold = true;
	send_write(&t, 12, 0, w, 65536, 1460, SIZE_MAX, NULL, NULL);
	send_write(&t, 13, 65536, w, 65536, 1460, SIZE_MAX, NULL, NULL);
	nbd_server_poll(t.srv);
	ok_eq(t.l.n, 2);
	nbd_conn_destroy(t.c); /* the transport is gone; the device still reads the pieces */
	t.c = NULL;
	nbd_server_poll(t.srv);
	ok_eq(live_pieces, 90);
	t.l.hold = false;
	nbd_server_poll(t.srv); /* completed and dropped */
	ok_eq(live_pieces, 0);
	ok_eq(blkdev_read(t.mem, 128, 128, back), 0);
	ok(memcmp(back, w, 65536) == 0);
	/* And at server destroy: one more connection, a write held in the device. */
	ok_eq(nbd_conn_create(t.srv, &t.c), 0);
	{
		uint8_t b[64];
		size_t n = 4;

		nbd_put_be32(b, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
		n += nbdc_put_opt(b + n, NBD_OPT_EXPORT_NAME, "d", 1);
		ok_eq(feed_piece(&t, b, n), n);
	}
	t.l.hold = true;
	send_write(&t, 14, 0, w, 4096, 1460, SIZE_MAX, NULL, NULL);
	nbd_server_poll(t.srv);
	ok_eq(live_pieces, 3);
	t.l.hold = false; /* nbd_server_destroy() polls the device until it is done */
	teardown(&t);	  /* checks live_pieces == 0 */
	free(w);
	free(back);
}

TEST(too_many_pieces_and_server_rmw_are_copied)
{
	struct t t;
	uint8_t *w = malloc(8192), *back = malloc(8192);
	uint64_t copied;

	setup(&t);
	pattern_fill(w, 8192, 5);
	/* 4 KiB in 10-byte pieces: its list holds 12, the rest is copied. */
	copied = perf_payload.write_copied;
	send_write(&t, 21, 512, w, 4096, 10, SIZE_MAX, NULL, NULL);
	nbd_server_poll(t.srv);
	ok_eq(reply(&t, 21), 0);
	ok_eq(perf_payload.write_copied - copied, 4096);
	ok_eq(t.l.buf_writes, 1);
	ok_eq(blkdev_read(t.mem, 1, 8, back), 0);
	ok(memcmp(back, w, 4096) == 0);
	ok_eq(live_pieces, 0);
	/* Unaligned, to a device without byte_writes: the server patches from a copy. */
	copied = perf_payload.write_copied;
	send_write(&t, 22, 100, w + 1, 1000, 300, SIZE_MAX, NULL, NULL);
	for (int i = 0; i < 10; i++)
		nbd_server_poll(t.srv);
	ok_eq(reply(&t, 22), 0);
	ok_eq(perf_payload.write_copied - copied, 1000);
	ok_eq(blkdev_read(t.mem, 0, 4, back), 0);
	ok(memcmp(back + 100, w + 1, 1000) == 0);
	ok_eq(live_pieces, 0);
	teardown(&t);
	free(w);
	free(back);
}

/*
 * A held piece pins a whole receive buffer of the transport, of which the firmware has about
 * 1,800: WRITEs holding them all would stop every frame from arriving, their own payloads'
 * included. The server holds at most 1,024 at once; past that, payloads are copied.
 */
TEST(holds_are_bounded_across_requests)
{
	struct t t;
	size_t len = 1u << 20;
	uint8_t *w = malloc(2 * len), *back = malloc(2 * len);
	uint64_t copied;

	setup(&t);
	pattern_fill(w, 2 * len, 6);
	t.l.hold = true; /* both stay in the device, holding what they hold */
	holds_peak = holds_now;
	copied = perf_payload.write_copied;
	/* 1 MiB in 1460-byte segments is 719 pieces (its list has room for 1,032). */
	send_write(&t, 31, 0, w, len, 1460, SIZE_MAX, NULL, NULL);
	send_write(&t, 32, len, w + len, len, 1460, SIZE_MAX, NULL, NULL);
	nbd_server_poll(t.srv);
	ok_eq(t.l.n, 2);
	ok(holds_peak <= 1024);
	ok(perf_payload.write_copied > copied); /* the second one, copied from the 306th piece */
	t.l.hold = false;
	nbd_server_poll(t.srv);
	ok_eq(reply(&t, 32), 0); /* the device completes the newest first */
	ok_eq(reply(&t, 31), 0);
	ok_eq(live_pieces, 0);
	ok_eq(holds_now, 0);
	ok_eq(blkdev_read(t.mem, 0, (uint32_t)(2 * len / 512), back), 0);
	ok(memcmp(back, w, 2 * len) == 0);
	teardown(&t);
	free(w);
	free(back);
}
