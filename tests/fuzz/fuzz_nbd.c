/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: arbitrary client bytes into the NBD state machine, through the
 * handshake and transmission phases (nbdkit fuzzes its -s stdin mode the same way).
 *
 * Input layout: byte 0 picks the variant (bit 0: a queued device that completes out of
 * order instead of the synchronous memory disk: tests/support/queued_dev.h, 8 requests deep,
 * newest first, payloads read at completion; bit 1: remove the export halfway; bits 2-7:
 * seed for the chunk sizes the rest is cut into; bit 2 also gives the export an allocation
 * map and two dirty bitmaps, one of them gone; bit 4: input fed as borrowed pieces; bit 5:
 * the queued device takes segment lists; bit 6: it takes payloads held by the transport,
 * handed over as host/nbd_sock.c does, see hold_take()). Everything after byte 0 is what the
 * client sends. Output is drained and dropped; the sanitizers are the oracle, plus the
 * invariant that feeding always terminates and a finished connection stays finished.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "host/hostdev.h"
#include "net/nbd/nbd_server.h"
#include "tests/support/queued_dev.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Payloads held by the transport (core/blkdev.h handle_writes): the bytes in an object of ours
 * named by its index, read by the device only at completion (so it must still be held then),
 * released exactly once (abort otherwise); every one gone at the end.
 */
struct hold {
	uint8_t *data;
	size_t len;
};

static struct hold holds[8];
static unsigned live_holds;

static void hold_release(void *ctx, int h)
{
	(void)ctx;
	if (h < 0 || h >= (int)ARRAY_SIZE(holds) || !holds[h].data)
		abort(); /* released twice, or never handed over */
	free(holds[h].data);
	holds[h].data = NULL;
	live_holds--;
}

static const struct nbd_handle_ops hold_ops = { .release = hold_release };

/* The queued device's payload hook: an in_handle WRITE's bytes, at its completion. */
static const void *hold_payload(struct queued_dev *qd, const struct blkdev_req *r)
{
	(void)qd;
	if (r->handle < 0 || r->handle >= (int)ARRAY_SIZE(holds) || !holds[r->handle].data ||
	    holds[r->handle].len != (size_t)r->count * 512 || !r->buf)
		abort(); /* released before the device is done, or not the whole payload */
	return holds[r->handle].data;
}

/*
 * As host/nbd_sock.c does: a payload the server waits for whole (nbd_conn_direct_handle_len())
 * is taken from the input into a held object at once, and handed over a pass later (the server
 * runs in between, an export may go: the transport asks again and drops the object when the
 * request is gone). The index of the object taken, or -1.
 */
static int hold_take(struct nbd_conn *c, const uint8_t *in, size_t len)
{
	size_t want = nbd_conn_direct_handle_len(c);
	int h;

	if (!want || want > len)
		return -1;
	for (h = 0; h < (int)ARRAY_SIZE(holds) && holds[h].data; h++)
		;
	if (h == (int)ARRAY_SIZE(holds) || !(holds[h].data = malloc(want)))
		return -1;
	memcpy(holds[h].data, in, want);
	holds[h].len = want;
	live_holds++;
	return h;
}

static void hold_hand_over(struct nbd_conn *c, int h)
{
	if (nbd_conn_direct_handle_len(c) == holds[h].len)
		nbd_conn_direct_handle_done(c, h, &hold_ops);
	else
		hold_release(NULL, h); /* the request is gone: the transport drops its object */
}

static int fake_extents(void *ctx, uint64_t off, uint64_t len, struct nbd_extent *ext, unsigned max)
{
	/* Alternating 4 KiB data / hole, possibly more than asked for. */
	unsigned i;

	for (i = 0; i < max && i < 4; i++)
		ext[i] = (struct nbd_extent){ 4096, (i & 1) ? 3u : 0u };
	return (int)i;
}

/* Two bitmaps: "a" alternates dirty and clean 8 KiB; "b" is gone (as a deleted snapshot). */
static int fake_bitmap_name(void *ctx, unsigned idx, char *buf, size_t len)
{
	(void)ctx;
	if (idx > 1 || len < 2)
		return -ENOENT;
	buf[0] = (char)('a' + idx);
	buf[1] = 0;
	return 0;
}

static int fake_dirty(void *ctx, const char *bitmap, uint64_t off, uint64_t len,
		      struct nbd_extent *ext, unsigned max)
{
	unsigned i;

	(void)ctx;
	(void)off;
	(void)len;
	if (strcmp(bitmap, "a"))
		return -ENOENT;
	for (i = 0; i < max && i < 5; i++)
		ext[i] = (struct nbd_extent){ 8192, (i & 1) ? NBD_STATE_DIRTY : 0u };
	return (int)i;
}

/* Borrowed input: each chunk fed as a reference-counted piece, freed at zero (ASan sees a
 * use after the server's release); every piece must be gone at the end. */
struct piece {
	unsigned refs;
	uint8_t data[];
};

static unsigned live_pieces;

static void piece_put(struct piece *p)
{
	if (p->refs == 0)
		abort(); /* released more often than held */
	if (--p->refs == 0) {
		live_pieces--;
		free(p);
	}
}

static void piece_hold(void *ctx, void *ref)
{
	(void)ctx;
	((struct piece *)ref)->refs++;
}

static void piece_release(void *ctx, void *ref)
{
	(void)ctx;
	piece_put(ref);
}

static const struct nbd_input_ops piece_ops = { .hold = piece_hold, .release = piece_release };

static size_t feed_borrowed(struct nbd_conn *c, const uint8_t *in, size_t len)
{
	struct piece *p = malloc(sizeof(*p) + len);
	size_t k;

	p->refs = 1;
	memcpy(p->data, in, len);
	live_pieces++;
	k = nbd_conn_feed_ref(c, p->data, len, &piece_ops, p);
	piece_put(p);
	return k;
}

/*
 * With payloads held by the transport: @in fed a byte at a time, stopping where a WRITE's
 * payload the server would take held begins (host/nbd_sock.c receives a large WRITE's header
 * alone for that), so hold_take() sees it whole.
 */
static size_t feed_to_payload(struct nbd_conn *c, const uint8_t *in, size_t len, bool borrowed)
{
	size_t n = 0, k;

	while (n < len && !nbd_conn_direct_handle_len(c)) {
		k = borrowed ? feed_borrowed(c, in + n, 1) : nbd_conn_feed(c, in + n, 1);
		if (!k)
			break;
		n += k;
	}
	return n;
}

static void drain(struct nbd_conn *c)
{
	struct nbd_iov iov[8];
	unsigned n;
	size_t total;

	while ((total = nbd_conn_output(c, 0, iov, 8, &n)) != 0)
		nbd_conn_output_done(c, total);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The server-wide buffer budget below the connection's, so that requests wait for
	 * memory (CS_REQ_WAIT) and resume from nbd_server_poll() under the fuzzer too. */
	struct nbd_limits lim = { .max_payload = 65536,
				  .max_conn_bytes = 256 * 1024,
				  .max_requests = 16,
				  .max_options = 32,
				  .max_server_bytes = 160 * 1024 };
	struct nbd_export_config cfg = { .name = "disk", .description = "fuzz" };
	struct nbd_server *srv;
	struct nbd_conn *c;
	struct blkdev *mem;
	struct queued_dev q;
	uint32_t seed;
	size_t pos = 1, stalls = 0;
	bool removed = false;
	int held = -1;

	if (size < 1)
		return 0;
	seed = data[0] >> 2 | 1;
	if (memdisk_create(256, 512, &mem)) /* 128 KiB */
		return 0;
	qd_init(&q, mem);
	q.depth = 8;
	q.payload = hold_payload;
	q.dev.seg_writes = (data[0] & 0x20) != 0;    /* takes borrowed payloads as lists */
	q.dev.handle_writes = (data[0] & 0x40) != 0; /* payloads held by the transport */
	cfg.dev = (data[0] & 1) ? &q.dev : mem;
	cfg.extents = (data[0] & 4) ? fake_extents : NULL;
	cfg.bitmap_name = (data[0] & 4) ? fake_bitmap_name : NULL;
	cfg.dirty = (data[0] & 4) ? fake_dirty : NULL;
	if (nbd_server_create(&lim, &srv) || nbd_server_add_export(srv, &cfg))
		abort();
	cfg.name = "ro";
	cfg.read_only = true;
	nbd_server_add_export(srv, &cfg);
	if (nbd_conn_create(srv, &c))
		abort();
	while (pos < size && stalls < 4) {
		size_t chunk, k;

		seed = seed * 1103515245u + 12345u;
		chunk = MIN(size - pos, (size_t)(1 + (seed >> 16) % 97));
		if (held >= 0) {
			hold_hand_over(c, held); /* consumes no input, but progress */
			held = -1;
			k = 1;
		} else if ((held = hold_take(c, data + pos, size - pos)) >= 0) {
			k = holds[held].len;
			pos += k;
		} else if (q.dev.handle_writes && cfg.dev == &q.dev) {
			k = feed_to_payload(c, data + pos, chunk, data[0] & 0x10);
			pos += k;
		} else {
			if (data[0] & 0x10)
				k = feed_borrowed(c, data + pos, chunk);
			else
				k = nbd_conn_feed(c, data + pos, chunk);
			pos += k;
		}
		nbd_server_poll(srv);
		drain(c);
		stalls = k ? 0 : stalls + 1;
		if ((data[0] & 2) && !removed && pos > size / 2) {
			nbd_server_remove_export(srv, "disk", (data[0] & 8) != 0);
			removed = true;
		}
		if (nbd_conn_finished(c))
			break;
	}
	if (held >= 0)
		hold_hand_over(c, held);
	/* Whatever is left in flight must come back and be answered. */
	while (nbd_server_busy(srv)) {
		nbd_server_poll(srv);
		drain(c);
	}
	nbd_conn_input_closed(c);
	drain(c);
	if (!nbd_conn_finished(c))
		abort(); /* end of input with nothing in flight must end the connection */
	nbd_conn_destroy(c);
	nbd_server_destroy(srv);
	blkdev_destroy(mem);
	if (live_pieces || live_holds)
		abort(); /* a borrowed piece or a held payload never released */
	return 0;
}
