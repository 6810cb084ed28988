/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: arbitrary client bytes into the NBD state machine, through the
 * handshake and transmission phases (nbdkit fuzzes its -s stdin mode the same way).
 *
 * Input layout: byte 0 picks the variant (bit 0: a queued device that completes out of
 * order instead of the synchronous memory disk; bit 1: remove the export halfway; bits 2-7:
 * seed for the chunk sizes the rest is cut into; bit 2 also gives the export an allocation
 * map and two dirty bitmaps, one of them gone). Everything after byte 0 is what the client
 * sends. Output is drained and dropped; the sanitizers are the oracle, plus the invariant
 * that feeding always terminates and a finished connection stays finished.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "host/hostdev.h"
#include "net/nbd/nbd_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct qdev {
	struct blkdev dev;
	struct blkdev *lower;
	struct blkdev_req *q[8];
	unsigned n;
};

static int q_read(struct blkdev *d, uint64_t b, uint32_t c, void *buf)
{
	return blkdev_read(container_of(d, struct qdev, dev)->lower, b, c, buf);
}

static int q_write(struct blkdev *d, uint64_t b, uint32_t c, const void *buf)
{
	return blkdev_write(container_of(d, struct qdev, dev)->lower, b, c, buf);
}

static int q_flush(struct blkdev *d)
{
	return 0;
}

static int q_submit(struct blkdev *d, struct blkdev_req *r)
{
	struct qdev *q = container_of(d, struct qdev, dev);

	if (q->n == ARRAY_SIZE(q->q))
		return -EAGAIN;
	q->q[q->n++] = r;
	return 0;
}

static int q_poll(struct blkdev *d)
{
	struct qdev *q = container_of(d, struct qdev, dev);
	int n = 0;

	while (q->n) {
		struct blkdev_req *r = q->q[--q->n];
		int rc = 0;

		if (r->op == BLKDEV_READ)
			rc = blkdev_read(q->lower, r->block, r->count, r->buf);
		else if (r->op == BLKDEV_WRITE && r->segs) {
			/* The pieces are read at completion: they must still be held. */
			uint8_t *b = malloc((size_t)r->count * 512);

			blkdev_segs_gather(b, r->segs, r->nr_segs, r->seg_off,
					   (size_t)r->count * 512);
			rc = blkdev_write(q->lower, r->block, r->count, b);
			free(b);
		} else if (r->op == BLKDEV_WRITE)
			rc = blkdev_write(q->lower, r->block, r->count, r->buf);
		else if (r->op == BLKDEV_WRITE_ZEROES || r->op == BLKDEV_DISCARD)
			rc = blkdev_write_zeroes(q->lower, r->block, r->count);
		r->done(r, rc);
		n++;
	}
	return n;
}

static const struct blkdev_ops q_ops = {
	.read = q_read,
	.write = q_write,
	.flush = q_flush,
	.submit = q_submit,
	.poll = q_poll,
};

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
	struct qdev q;
	uint32_t seed;
	size_t pos = 1, stalls = 0;
	bool removed = false;

	if (size < 1)
		return 0;
	seed = data[0] >> 2 | 1;
	if (memdisk_create(256, 512, &mem)) /* 128 KiB */
		return 0;
	memset(&q, 0, sizeof(q));
	q.dev.ops = &q_ops;
	q.dev.block_size = 512;
	q.dev.nr_blocks = 256;
	q.lower = mem;
	q.dev.seg_writes = (data[0] & 0x20) != 0; /* takes borrowed payloads as lists */
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
		if (data[0] & 0x10)
			k = feed_borrowed(c, data + pos, chunk);
		else
			k = nbd_conn_feed(c, data + pos, chunk);
		pos += k;
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
	if (live_pieces)
		abort(); /* a borrowed piece never released */
	return 0;
}
