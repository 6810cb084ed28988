/* SPDX-License-Identifier: MIT */
/*
 * The NBD state machine without sockets: a test client writes protocol bytes into
 * nbd_conn_feed() (whole, split at every byte boundary, or a byte at a time), drains
 * nbd_conn_output(), and parses the replies. A queued block device (tests/support/queued_dev.h)
 * holds requests until told to complete them, in reverse order, to show replies leaving out of
 * order and back-pressure working; the memory device from host/ completes synchronously.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/netaddr.h"
#include "core/base/util.h"
#include "host/hostdev.h"
#include "net/nbd/nbd_proto.h"
#include "net/nbd/nbd_server.h"
#include "tests/support/harness.h"
#include "tests/support/nbd_client.h"
#include "tests/support/queued_dev.h"

#define DISK_BLOCKS 2048 /* 1 MiB of 512-byte blocks */
#define DISK_BYTES  (DISK_BLOCKS * 512)

/* ---- Test client ------------------------------------------------------------------------- */

struct t {
	struct nbd_server *srv;
	struct nbd_conn *c;
	struct blkdev *mem;
	struct queued_dev q;
	uint8_t *out; /* everything the server sent */
	size_t out_len, out_pos;
	unsigned released;
};

static void release_cb(void *ctx, struct blkdev *dev)
{
	((struct t *)ctx)->released++;
}

static void drain(struct t *t)
{
	nbdc_drain(t->c, &t->out, &t->out_len);
}

/* Feed everything, polling and draining whenever the server pushes back. */
static void feed(struct t *t, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	unsigned spins = 0;

	while (len && spins < 1000) {
		size_t k = nbd_conn_feed(t->c, p, len);

		p += k;
		len -= k;
		nbd_server_poll(t->srv);
		drain(t);
		spins = k ? 0 : spins + 1;
	}
	ok_eq(len, 0);
	drain(t);
}

static void setup(struct t *t, bool queued, unsigned depth, const struct nbd_limits *lim)
{
	struct nbd_export_config cfg = { .name = "disk", .description = "a test disk" };

	memset(t, 0, sizeof(*t));
	ok_eq(memdisk_create(DISK_BLOCKS, 512, &t->mem), 0);
	ok_eq(nbd_server_create(lim, &t->srv), 0);
	if (queued) {
		qd_init(&t->q, t->mem);
		t->q.depth = depth;
		cfg.dev = &t->q.dev;
	} else {
		cfg.dev = t->mem;
	}
	cfg.release = release_cb;
	cfg.ctx = t;
	ok_eq(nbd_server_add_export(t->srv, &cfg), 0);
	cfg.name = "ro";
	cfg.read_only = true;
	ok_eq(nbd_server_add_export(t->srv, &cfg), 0);
	ok_eq(nbd_conn_create(t->srv, &t->c), 0);
	drain(t);
}

static void teardown(struct t *t)
{
	nbd_conn_destroy(t->c);
	nbd_server_destroy(t->srv);
	ok_eq(t->released, 2);
	blkdev_destroy(t->mem);
	free(t->out);
}

/* Take @n bytes of server output; NULL (and a failure) if they are not there. */
static const uint8_t *take(struct t *t, size_t n)
{
	const uint8_t *p;

	if (!ok(t->out_len - t->out_pos >= n))
		return NULL;
	p = t->out + t->out_pos;
	t->out_pos += n;
	return p;
}

static size_t put_go(uint8_t *b, const char *name)
{
	uint8_t d[64];
	size_t nl = strlen(name);

	nbd_put_be32(d, (uint32_t)nl);
	memcpy(d + 4, name, nl);
	nbd_put_be16(d + 4 + nl, 1);
	nbd_put_be16(d + 6 + nl, NBD_INFO_BLOCK_SIZE);
	return nbdc_put_opt(b, NBD_OPT_GO, d, (uint32_t)(8 + nl));
}

static size_t put_meta(uint8_t *b, const char *name)
{
	uint8_t d[64];
	size_t nl = strlen(name);

	nbd_put_be32(d, (uint32_t)nl);
	memcpy(d + 4, name, nl);
	nbd_put_be32(d + 4 + nl, 1);
	nbd_put_be32(d + 8 + nl, 15);
	memcpy(d + 12 + nl, "base:allocation", 15);
	return nbdc_put_opt(b, NBD_OPT_SET_META_CONTEXT, d, (uint32_t)(27 + nl));
}

/* Skip option replies up to and including the final one for one option; its reply type. */
static uint32_t take_opt_final(struct t *t)
{
	for (;;) {
		const uint8_t *p = take(t, 20);
		uint32_t type, len;

		if (!p)
			return 0;
		ok_eq(nbd_get_be64(p), NBD_REP_MAGIC);
		type = nbd_get_be32(p + 12);
		len = nbd_get_be32(p + 16);
		if (!take(t, len))
			return 0;
		if (type == NBD_REP_ACK || (type & NBD_REP_FLAG_ERROR))
			return type;
	}
}

/* Client flags + STRUCTURED_REPLY (optional) + SET_META_CONTEXT + GO on @name. */
static size_t put_handshake(uint8_t *b, const char *name, bool structured)
{
	size_t n = 4;

	nbd_put_be32(b, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	if (structured) {
		n += nbdc_put_opt(b + n, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
		n += put_meta(b + n, name);
	}
	n += put_go(b + n, name);
	return n;
}

static void take_handshake(struct t *t, bool structured)
{
	const uint8_t *g = take(t, 18);

	if (!g)
		return;
	ok_eq(nbd_get_be64(g), NBD_MAGIC);
	ok_eq(nbd_get_be16(g + 16), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	if (structured) {
		ok_eq(take_opt_final(t), NBD_REP_ACK);
		ok_eq(take_opt_final(t), NBD_REP_ACK);
	}
	ok_eq(take_opt_final(t), NBD_REP_ACK);
}

struct reply {
	uint64_t cookie;
	uint32_t err;
	uint8_t data[8192]; /* READ data reassembled from chunks */
	uint32_t extents[8];
	unsigned chunks;
};

/* Parse one whole reply (simple, or structured chunks up to DONE); @readlen for simple READ. */
static bool take_reply(struct t *t, struct reply *r, size_t readlen)
{
	const uint8_t *p = take(t, 4);

	memset(r, 0, sizeof(*r));
	if (!p)
		return false;
	if (nbd_get_be32(p) == NBD_SIMPLE_REPLY_MAGIC) {
		p = take(t, 12);
		if (!p)
			return false;
		r->err = nbd_get_be32(p);
		r->cookie = nbd_get_be64(p + 4);
		if (!r->err && readlen) {
			p = take(t, readlen);
			if (p)
				memcpy(r->data, p, MIN(readlen, sizeof(r->data)));
		}
		return true;
	}
	for (;;) {
		uint16_t flags, type;
		uint32_t len;

		if (!ok_eq(nbd_get_be32(p), NBD_STRUCTURED_REPLY_MAGIC) || !(p = take(t, 16)))
			return false;
		flags = nbd_get_be16(p);
		type = nbd_get_be16(p + 2);
		r->cookie = nbd_get_be64(p + 4);
		len = nbd_get_be32(p + 12);
		if (!(p = take(t, len)))
			return false;
		r->chunks++;
		if (type == NBD_REPLY_TYPE_OFFSET_DATA || type == NBD_REPLY_TYPE_OFFSET_HOLE) {
			/* Offsets are absolute: tests read at offset 0..8191 only. */
			uint64_t off = nbd_get_be64(p);
			uint32_t dl =
			    type == NBD_REPLY_TYPE_OFFSET_DATA ? len - 8 : nbd_get_be32(p + 8);

			if (off < sizeof(r->data) && dl <= sizeof(r->data) - off) {
				if (type == NBD_REPLY_TYPE_OFFSET_DATA)
					memcpy(r->data + off, p + 8, dl);
				else
					memset(r->data + off, 0, dl);
			}
		} else if (type == NBD_REPLY_TYPE_BLOCK_STATUS) {
			unsigned i;

			/* context id, then (length, flags) pairs */
			for (i = 0; i < ARRAY_SIZE(r->extents) && 4 * i + 4 <= len; i++)
				r->extents[i] = nbd_get_be32(p + 4 * i);
		} else if (type & 0x8000) {
			r->err = nbd_get_be32(p);
		}
		if (flags & NBD_REPLY_FLAG_DONE)
			return true;
		if (!(p = take(t, 4)))
			return false;
	}
}

/* ---- Tests ------------------------------------------------------------------------------- */

/*
 * One conversation: handshake, WRITE, READ (structured: data + hole chunks), BLOCK_STATUS,
 * FLUSH, DISC. Its output must not depend on how the input is cut.
 */
static size_t conversation(uint8_t *b)
{
	size_t n = put_handshake(b, "disk", true);

	n += nbdc_put_req(b + n, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 1, 512, 1024);
	memset(b + n, 0xa5, 1024);
	n += 1024;
	n += nbdc_put_req(b + n, NBD_CMD_READ, 0, 2, 0, 8192);
	n += nbdc_put_req(b + n, NBD_CMD_BLOCK_STATUS, 0, 3, 0, 4096);
	n += nbdc_put_req(b + n, NBD_CMD_FLUSH, 0, 4, 0, 0);
	n += nbdc_put_req(b + n, NBD_CMD_DISC, 0, 5, 0, 0);
	return n;
}

static void run_conversation(uint8_t **out, size_t *out_len, const uint8_t *in, size_t len,
			     size_t cut, bool bytewise)
{
	struct t t;
	size_t i;

	setup(&t, false, 0, NULL);
	if (bytewise) {
		for (i = 0; i < len; i++)
			feed(&t, in + i, 1);
	} else {
		feed(&t, in, cut);
		feed(&t, in + cut, len - cut);
	}
	ok(nbd_conn_finished(t.c));
	*out = t.out;
	*out_len = t.out_len;
	t.out = NULL;
	teardown(&t);
}

TEST(conversation_replies)
{
	uint8_t *in = malloc(4096);
	size_t len = conversation(in);
	struct reply *r = malloc(sizeof(*r));
	struct t t;

	setup(&t, false, 0, NULL);
	feed(&t, in, len);
	take_handshake(&t, true);
	take_reply(&t, r, 0);
	ok_eq(r->cookie, 1);
	ok_eq(r->err, 0);
	take_reply(&t, r, 0);
	ok_eq(r->cookie, 2);
	ok_eq(r->err, 0);
	ok_eq(r->chunks, 2); /* data (the 4 KiB holding the write), then a hole */
	ok(r->data[511] == 0 && r->data[512] == 0xa5 && r->data[1535] == 0xa5 &&
	   r->data[1536] == 0);
	take_reply(&t, r, 0);
	ok_eq(r->cookie, 3);
	ok_eq(r->extents[0], 1);    /* context id */
	ok_eq(r->extents[1], 4096); /* one extent: no map, so "allocated data" */
	ok_eq(r->extents[2], 0);
	take_reply(&t, r, 0);
	ok_eq(r->cookie, 4);
	ok_eq(t.out_pos, t.out_len); /* DISC: no reply */
	ok(nbd_conn_finished(t.c));
	teardown(&t);
	free(r);
	free(in);
}

TEST(fragmentation_at_every_byte_boundary)
{
	uint8_t *in = malloc(4096), *ref, *out;
	size_t len = conversation(in), ref_len, out_len, cut;

	run_conversation(&ref, &ref_len, in, len, len, false);
	for (cut = 0; cut <= len && !test_failed(); cut++) {
		run_conversation(&out, &out_len, in, len, cut, false);
		if (out_len != ref_len || memcmp(out, ref, ref_len))
			fail("output differs when the input is cut at byte %zu", cut);
		free(out);
	}
	run_conversation(&out, &out_len, in, len, 0, true);
	ok(out_len == ref_len && !memcmp(out, ref, ref_len));
	free(out);
	free(ref);
	free(in);
}

TEST(handshake_variants)
{
	uint8_t b[2048];
	const uint8_t *p;
	struct reply r;
	size_t n;
	struct t t;

	/* EXPORT_NAME "" = default export, without NO_ZEROES: 124 zero bytes follow. */
	setup(&t, false, 0, NULL);
	nbd_put_be32(b, NBD_FLAG_C_FIXED_NEWSTYLE);
	n = 4 + nbdc_put_opt(b + 4, NBD_OPT_EXPORT_NAME, NULL, 0);
	n += nbdc_put_req(b + n, NBD_CMD_READ, 0, 7, 0, 512);
	feed(&t, b, n);
	take(&t, 18);
	p = take(&t, 10 + 124);
	if (p) {
		ok_eq(nbd_get_be64(p), DISK_BYTES);
		ok(nbd_get_be16(p + 8) & NBD_FLAG_HAS_FLAGS);
		ok(!(nbd_get_be16(p + 8) & NBD_FLAG_SEND_DF)); /* no structured replies */
	}
	take_reply(&t, &r, 512);
	ok_eq(r.cookie, 7);
	teardown(&t);

	/* LIST, INFO, unknown options, then GO on the read-only export. */
	setup(&t, false, 0, NULL);
	nbd_put_be32(b, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	n = 4 + nbdc_put_opt(b + 4, NBD_OPT_LIST, NULL, 0);
	n += nbdc_put_opt(b + n, NBD_OPT_EXTENDED_HEADERS, NULL, 0);
	n += nbdc_put_opt(b + n, NBD_OPT_STARTTLS, NULL, 0);
	n += nbdc_put_opt(b + n, 0x7777, "xyz", 3);
	n += put_go(b + n, "nope");
	n += put_go(b + n, "ro");
	n += nbdc_put_req(b + n, NBD_CMD_WRITE, 0, 8, 0, 512);
	memset(b + n, 1, 512);
	n += 512;
	n += nbdc_put_req(b + n, NBD_CMD_READ, 0, 9, 0, 512);
	feed(&t, b, n);
	take(&t, 18);
	ok_eq(take_opt_final(&t), NBD_REP_ACK);
	ok_eq(take_opt_final(&t), NBD_REP_ERR_UNSUP);
	ok_eq(take_opt_final(&t), NBD_REP_ERR_UNSUP);
	ok_eq(take_opt_final(&t), NBD_REP_ERR_UNSUP);
	ok_eq(take_opt_final(&t), NBD_REP_ERR_UNKNOWN);
	ok_eq(take_opt_final(&t), NBD_REP_ACK);
	take_reply(&t, &r, 0);
	ok_eq(r.cookie, 8);
	ok_eq(r.err, NBD_EPERM);
	take_reply(&t, &r, 512);
	ok_eq(r.cookie, 9);
	ok_eq(r.err, 0);
	teardown(&t);

	/* Unknown client flags: the connection ends. */
	setup(&t, false, 0, NULL);
	nbd_put_be32(b, 0x100);
	feed(&t, b, 4);
	ok(nbd_conn_finished(t.c));
	teardown(&t);
}

struct bad {
	const char *export;
	uint16_t type, flags;
	uint64_t off;
	uint32_t len;
	uint32_t err;
};

TEST(bad_requests_answered_without_disconnect)
{
	static const struct bad cases[] = {
		{ "disk", NBD_CMD_READ, 0, DISK_BYTES - 512, 1024, NBD_EINVAL },
		{ "disk", NBD_CMD_READ, 0, DISK_BYTES, 512, NBD_EINVAL },
		{ "disk", NBD_CMD_READ, 0, UINT64_MAX - 100, 512, NBD_EINVAL },
		{ "disk", NBD_CMD_READ, 0, 0, 0, NBD_EINVAL },
		{ "disk", NBD_CMD_READ, 0x8000, 0, 512, NBD_EINVAL },
		{ "disk", NBD_CMD_READ, NBD_CMD_FLAG_NO_HOLE, 0, 512, NBD_EINVAL },
		{ "disk", NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, NBD_EINVAL }, /* not structured */
		{ "disk", 42, 0, 0, 512, NBD_EINVAL },
		{ "disk", NBD_CMD_RESIZE, 0, 0, 0, NBD_EINVAL },
		{ "disk", NBD_CMD_WRITE_ZEROES, 0, DISK_BYTES - 512, 1024, NBD_ENOSPC },
		{ "disk", NBD_CMD_WRITE_ZEROES, 0, UINT64_MAX - 511, 512, NBD_ENOSPC },
		{ "disk", NBD_CMD_WRITE_ZEROES, 0, DISK_BYTES - 1, 2, NBD_ENOSPC }, /* unaligned */
		{ "disk", NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 1, 512, NBD_ENOTSUP },
		{ "disk", NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO, 0,
		  512, NBD_ENOTSUP },
		{ "disk", NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_DF, 0, 512, NBD_EINVAL },
		{ "disk", NBD_CMD_TRIM, 0, DISK_BYTES, 512, NBD_EINVAL },
		{ "disk", NBD_CMD_TRIM, NBD_CMD_FLAG_NO_HOLE, 0, 512, NBD_EINVAL },
		{ "disk", NBD_CMD_FLUSH, 0, 512, 0, NBD_EINVAL },
		{ "disk", NBD_CMD_CACHE, 0, DISK_BYTES, 1, NBD_EINVAL },
		{ "disk", NBD_CMD_BLOCK_STATUS, 0, 0, 512, NBD_EINVAL }, /* no meta context */
		{ "disk", NBD_CMD_CACHE, NBD_CMD_FLAG_FUA, 0, 512, 0 },
		{ "disk", NBD_CMD_TRIM, 0, 1, 100, 0 }, /* rounds to nothing: fine */
		{ "ro", NBD_CMD_TRIM, 0, 0, 512, NBD_EPERM },
		{ "ro", NBD_CMD_WRITE_ZEROES, 0, 0, 512, NBD_EPERM },
		{ "ro", NBD_CMD_WRITE_ZEROES, 0, DISK_BYTES, 512, NBD_EPERM },
		{ "ro", NBD_CMD_WRITE_ZEROES, 0, 1, 3, NBD_EPERM },
		{ "ro", NBD_CMD_FLUSH, 0, 0, 0, 0 },
	};
	uint8_t b[1024];
	struct reply r;
	unsigned i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct bad *c = &cases[i];
		struct t t;
		size_t n;

		setup(&t, false, 0, NULL);
		n = put_handshake(b, c->export, false);
		n += nbdc_put_req(b + n, c->type, c->flags, 100 + i, c->off, c->len);
		n += nbdc_put_req(b + n, NBD_CMD_READ, 0, 1, 0, 512);
		feed(&t, b, n);
		take_handshake(&t, false);
		take_reply(&t, &r, 0);
		if (r.cookie != 100 + i || r.err != c->err)
			fail("case %u: cookie %llu error %u, wanted %u", i,
			     (unsigned long long)r.cookie, r.err, c->err);
		take_reply(&t, &r, 512);
		ok_eq(r.cookie, 1);
		ok_eq(r.err, 0);
		ok(!nbd_conn_finished(t.c));
		teardown(&t);
	}
}

TEST(bad_writes_are_drained)
{
	uint8_t *b = calloc(1, 70000);
	struct nbd_limits lim = { .max_payload = 65536 };
	struct reply r;
	struct t t;
	size_t n;

	setup(&t, false, 0, &lim);
	n = put_handshake(b, "disk", true);
	n += nbdc_put_req(b + n, NBD_CMD_WRITE, 0, 1, DISK_BYTES - 512, 1024); /* ENOSPC */
	n += 1024;
	n += nbdc_put_req(b + n, NBD_CMD_WRITE, 0, 2, 0, 65536 + 512); /* over max payload */
	n += 65536 + 512;
	n += nbdc_put_req(b + n, NBD_CMD_WRITE, 0, 3, DISK_BYTES - 1,
			  512); /* unaligned, past the end */
	n += 512;
	n += nbdc_put_req(b + n, NBD_CMD_READ, 0, 4, 0, 512);
	feed(&t, b, n);
	take_handshake(&t, true);
	take_reply(&t, &r, 0);
	ok(r.cookie == 1 && r.err == NBD_ENOSPC);
	take_reply(&t, &r, 0);
	ok(r.cookie == 2 && r.err == NBD_EINVAL);
	take_reply(&t, &r, 0);
	ok(r.cookie == 3 && r.err == NBD_ENOSPC);
	take_reply(&t, &r, 0);
	ok(r.cookie == 4 && r.err == 0);

	/* Bad magic: no reply, the connection ends. */
	nbdc_put_req(b, NBD_CMD_READ, 0, 5, 0, 512);
	nbd_put_be32(b, 0x12345678);
	feed(&t, b, 28);
	ok(nbd_conn_finished(t.c));
	ok_eq(t.out_pos, t.out_len);
	teardown(&t);
	free(b);
}

TEST(out_of_order_completion_and_retry)
{
	uint8_t b[512];
	struct reply r;
	struct t t;
	size_t n;
	int i;

	/* Queue depth 2: the third request meets -EAGAIN and is retried by nbd_server_poll(). */
	setup(&t, true, 2, NULL);
	n = put_handshake(b, "disk", false);
	for (i = 1; i <= 3; i++)
		n += nbdc_put_req(b + n, NBD_CMD_READ, 0, (uint64_t)i, (uint64_t)i * 512, 512);
	t.q.hold = true;
	feed(&t, b, n);
	take_handshake(&t, false);
	ok_eq(t.out_pos, t.out_len); /* nothing answered yet */
	ok(nbd_server_busy(t.srv));
	ok_eq(t.q.n, 2);
	t.q.hold = false;
	nbd_server_poll(t.srv); /* completes 2 then 1; resubmits 3 */
	drain(&t);
	take_reply(&t, &r, 512);
	ok_eq(r.cookie, 2);
	take_reply(&t, &r, 512);
	ok_eq(r.cookie, 1);
	nbd_server_poll(t.srv);
	drain(&t);
	take_reply(&t, &r, 512);
	ok_eq(r.cookie, 3);
	ok(!nbd_server_busy(t.srv));
	teardown(&t);
}

TEST(back_pressure_limits_requests_in_flight)
{
	struct nbd_limits lim = { .max_requests = 4 };
	uint8_t b[1024];
	struct reply r;
	size_t n, k;
	struct t t;
	int i;

	setup(&t, true, 64, &lim);
	n = put_handshake(b, "disk", false);
	feed(&t, b, n);
	take_handshake(&t, false);
	for (n = 0, i = 0; i < 10; i++)
		n += nbdc_put_req(b + n, NBD_CMD_READ, 0, (uint64_t)i, 0, 512);
	t.q.hold = true;
	k = nbd_conn_feed(t.c, b, n);
	ok_eq(k, 4 * 28); /* four requests taken, the rest refused for now */
	ok(!nbd_conn_wants_input(t.c));
	t.q.hold = false;
	nbd_server_poll(t.srv);
	ok(nbd_conn_wants_input(t.c));
	feed(&t, b + k, n - k);
	for (i = 0; i < 10; i++) {
		take_reply(&t, &r, 512);
		ok_eq(r.err, 0);
	}
	teardown(&t);
}

TEST(vanished_client_with_requests_in_flight)
{
	uint8_t b[512];
	struct t t;
	size_t n;

	setup(&t, true, 64, NULL);
	n = put_handshake(b, "disk", false);
	n += nbdc_put_req(b + n, NBD_CMD_READ, 0, 1, 0, 512);
	n += nbdc_put_req(b + n, NBD_CMD_WRITE, 0, 2, 0, 512);
	t.q.hold = true;
	feed(&t, b, n + 100); /* half a WRITE payload */
	nbd_conn_destroy(t.c);
	t.c = NULL;
	ok(nbd_server_busy(t.srv));
	t.q.hold = false;
	nbd_server_poll(t.srv); /* completions of the dead connection are dropped */
	ok(!nbd_server_busy(t.srv));
	nbd_server_destroy(t.srv);
	ok_eq(t.released, 2);
	blkdev_destroy(t.mem);
	free(t.out);
}

TEST(export_table)
{
	struct nbd_export_config cfg = { .name = "x" };
	struct nbd_export_info info;
	uint8_t b[512];
	struct reply r;
	struct t t;
	size_t n;

	setup(&t, false, 0, NULL);
	cfg.dev = t.mem;
	ok_eq(nbd_server_add_export(t.srv, &cfg), 0);
	ok_eq(nbd_server_add_export(t.srv, &cfg), -EEXIST);
	cfg.name = "";
	ok_eq(nbd_server_add_export(t.srv, &cfg), -EINVAL);
	ok_eq(nbd_server_export_info(t.srv, 0, &info), 0);
	ok(!strcmp(info.name, "disk") && !strcmp(info.description, "a test disk"));
	ok_eq(info.size, DISK_BYTES);
	ok_eq(nbd_server_export_info(t.srv, 1, &info), 0);
	ok(info.read_only);
	ok_eq(nbd_server_export_info(t.srv, 3, &info), -ENOENT);
	ok_eq(nbd_server_remove_export(t.srv, "x", false), 0);
	ok_eq(nbd_server_remove_export(t.srv, "x", false), -ENOENT);

	/* Removing an export in use: new requests get ESHUTDOWN; release waits for the client. */
	n = put_handshake(b, "disk", false);
	feed(&t, b, n);
	take_handshake(&t, false);
	ok_eq(nbd_server_export_info(t.srv, 0, &info), 0);
	ok_eq(info.clients, 1);
	ok_eq(nbd_server_remove_export(t.srv, "disk", false), 0);
	ok_eq(t.released, 0);
	n = nbdc_put_req(b, NBD_CMD_READ, 0, 1, 0, 512);
	feed(&t, b, n);
	take_reply(&t, &r, 0);
	ok_eq(r.err, NBD_ESHUTDOWN);
	ok(!nbd_conn_finished(t.c));
	nbd_conn_destroy(t.c);
	t.c = NULL;
	ok_eq(t.released, 1);

	/* With force, the connection is told to close. */
	ok_eq(nbd_conn_create(t.srv, &t.c), 0);
	t.out_len = t.out_pos = 0;
	n = put_handshake(b, "ro", false);
	feed(&t, b, n);
	take_handshake(&t, false);
	ok_eq(nbd_server_remove_export(t.srv, "ro", true), 0);
	ok(nbd_conn_finished(t.c));
	nbd_conn_destroy(t.c);
	t.c = NULL;
	ok_eq(t.released, 2);
	nbd_server_destroy(t.srv);
	blkdev_destroy(t.mem);
	free(t.out);
}

TEST(option_cap_and_connection_cap)
{
	struct nbd_limits lim = { .max_options = 8, .max_conns = 2 };
	struct nbd_conn *c2, *c3;
	uint8_t b[1024];
	size_t n = 4;
	struct t t;
	int i;

	setup(&t, false, 0, &lim);
	nbd_put_be32(b, NBD_FLAG_C_FIXED_NEWSTYLE);
	for (i = 0; i < 20; i++)
		n += nbdc_put_opt(b + n, 0x7777, NULL, 0);
	feed(&t, b, n);
	ok(nbd_conn_finished(t.c));
	ok_eq(nbd_conn_create(t.srv, &c2), 0);
	ok_eq(nbd_conn_create(t.srv, &c3), -EBUSY);
	nbd_conn_destroy(c2);
	teardown(&t);
}

TEST(end_of_input_mid_write_finishes)
{
	uint8_t b[512];
	struct t t;
	size_t n;

	/* Found by fuzzing: a WRITE cut short by end of input kept the connection open. */
	setup(&t, false, 0, NULL);
	n = put_handshake(b, "disk", false);
	n += nbdc_put_req(b + n, NBD_CMD_WRITE, 0, 1, 0, 512);
	feed(&t, b, n + 100);
	ok(!nbd_conn_finished(t.c));
	nbd_conn_input_closed(t.c);
	ok(nbd_conn_finished(t.c));
	teardown(&t);
}

TEST(default_max_payload_is_64_mib)
{
	uint8_t b[256];
	uint32_t max = 0;
	struct t t;
	size_t n;

	setup(&t, false, 0, NULL);
	n = 4;
	nbd_put_be32(b, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	n += put_go(b + n, "disk");
	feed(&t, b, n);
	take(&t, 18);
	for (;;) {
		const uint8_t *p = take(&t, 20), *d;
		uint32_t type, len;

		if (!p)
			break;
		type = nbd_get_be32(p + 12);
		len = nbd_get_be32(p + 16);
		d = take(&t, len);
		if (type == NBD_REP_INFO && d && len == 14 &&
		    nbd_get_be16(d) == NBD_INFO_BLOCK_SIZE)
			max = nbd_get_be32(d + 10);
		if (type != NBD_REP_INFO)
			break;
	}
	ok_eq(max, 64u << 20); /* NBD_INFO_BLOCK_SIZE's maximum payload */
	teardown(&t);
}

TEST(request_buffers_bounded_server_wide)
{
	/* Room for one 64 KiB buffer in the whole server; connections themselves unlimited. */
	struct nbd_limits lim = { .max_payload = 65536,
				  .max_conn_bytes = 1 << 20,
				  .max_server_bytes = 96 * 1024 };
	uint8_t *b = calloc(1, 2 * 70000);
	struct nbd_conn *a, *c2;
	struct reply r;
	size_t n, hs, k;
	struct t t;

	setup(&t, true, 64, &lim);
	a = t.c;
	t.q.hold = true;
	/* A: a 64 KiB WRITE held inside the device. */
	n = put_handshake(b, "disk", false);
	n += nbdc_put_req(b + n, NBD_CMD_WRITE, 0, 1, 0, 65536);
	n += 65536;
	feed(&t, b, n);
	take_handshake(&t, false);
	ok_eq(t.q.n, 1);

	/* B: its WRITE's header is taken, its payload is not: the request waits. */
	ok_eq(nbd_conn_create(t.srv, &c2), 0);
	t.c = c2;
	hs = put_handshake(b, "disk", false);
	n = hs + nbdc_put_req(b + hs, NBD_CMD_WRITE, 0, 2, 65536, 65536);
	n += 65536;
	k = nbd_conn_feed(c2, b, n);
	ok_eq(k, hs + 28);
	nbd_server_poll(t.srv);
	ok(!nbd_conn_wants_input(c2));
	ok_eq(t.q.n, 1);
	drain(&t);
	take_handshake(&t, false);
	ok_eq(t.out_pos, t.out_len); /* no reply for it */

	/* A's WRITE completes: its buffer is freed, and B's request goes on. */
	t.q.hold = false;
	nbd_server_poll(t.srv);
	t.c = a;
	drain(&t);
	take_reply(&t, &r, 0);
	ok(r.cookie == 1 && r.err == 0);
	t.c = c2;
	ok(nbd_conn_wants_input(c2));
	feed(&t, b + k, n - k);
	nbd_server_poll(t.srv);
	drain(&t);
	take_reply(&t, &r, 0);
	ok(r.cookie == 2 && r.err == 0);
	nbd_conn_destroy(c2);
	t.c = a;
	teardown(&t);
	free(b);
}

TEST(request_buffers_bounded_per_connection)
{
	/* 96 KiB per connection: input stops once that much is held; one request may pass it. */
	struct nbd_limits lim = { .max_payload = 65536, .max_conn_bytes = 96 * 1024 };
	uint8_t *b = calloc(1, 3 * 70000);
	struct reply r;
	size_t n, k;
	struct t t;
	int i;

	setup(&t, true, 64, &lim);
	n = put_handshake(b, "disk", false);
	feed(&t, b, n);
	take_handshake(&t, false);
	t.q.hold = true;
	for (n = 0, i = 1; i <= 3; i++) {
		n += nbdc_put_req(b + n, NBD_CMD_WRITE, 0, (uint64_t)i, (uint64_t)(i - 1) * 65536,
				  65536);
		n += 65536;
	}
	k = nbd_conn_feed(t.c, b, n);
	ok_eq(k, 2 * (28 + 65536)); /* 128 KiB held: the third header is not read */
	nbd_server_poll(t.srv);
	ok_eq(t.q.n, 2);
	ok(!nbd_conn_wants_input(t.c));
	t.q.hold = false;
	nbd_server_poll(t.srv);
	ok(nbd_conn_wants_input(t.c));
	feed(&t, b + k, n - k);
	nbd_server_poll(t.srv);
	drain(&t);
	for (i = 0; i < 3; i++) {
		take_reply(&t, &r, 0);
		ok_eq(r.err, 0);
	}
	teardown(&t);
	free(b);
}

/* ---- Who may connect: allow lists and the per-client cap ---------------------------------- */

struct logbuf {
	unsigned lines;
	char last[256];
};

static void log_cb(void *ctx, const char *line)
{
	struct logbuf *l = ctx;

	l->lines++;
	snprintf(l->last, sizeof(l->last), "%s", line);
}

static struct nbd_peer peer(const char *addr, uint16_t port)
{
	struct nbd_peer p = { .port = port };

	ok_eq(net_addr_parse(addr, &p.addr), 0);
	return p;
}

static struct net_prefix prefix(const char *text)
{
	struct net_prefix p;

	ok_eq(net_prefix_parse(text, &p, NULL), 0);
	return p;
}

/* Replace t->c by a fresh connection from @addr, its greeting taken and flags sent. */
static void connect_from(struct t *t, const char *addr)
{
	struct nbd_peer p = peer(addr, 40000);
	uint8_t b[4];

	nbd_conn_destroy(t->c);
	t->out_len = t->out_pos = 0;
	ok_eq(nbd_conn_create_peer(t->srv, &p, &t->c), 0);
	drain(t);
	take(t, 18);
	nbd_put_be32(b, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	feed(t, b, 4);
}

/* NBD_OPT_LIST: the names the server lists, comma-separated into @names. */
static void list_exports(struct t *t, char *names, size_t size)
{
	uint8_t b[16];

	names[0] = '\0';
	feed(t, b, nbdc_put_opt(b, NBD_OPT_LIST, NULL, 0));
	for (;;) {
		const uint8_t *p = take(t, 20), *d;
		uint32_t type, len;

		if (!p)
			return;
		type = nbd_get_be32(p + 12);
		len = nbd_get_be32(p + 16);
		d = take(t, len);
		if (!d || type != NBD_REP_SERVER)
			return;
		snprintf(names + strlen(names), size - strlen(names), "%s%.*s", names[0] ? "," : "",
			 (int)nbd_get_be32(d), (const char *)d + 4);
	}
}

/* NBD_OPT_GO (or INFO) on @name: the final reply type. */
static uint32_t go(struct t *t, const char *name, bool info)
{
	uint8_t b[128];
	size_t n = put_go(b, name);

	if (info)
		nbd_put_be32(b + 8, NBD_OPT_INFO);
	feed(t, b, n);
	return take_opt_final(t);
}

TEST(allow_list_hides_and_refuses)
{
	struct net_prefix v4 = prefix("10.0.2.0/24"), v6[2] = { prefix("fd00::/8"), v4 };
	struct nbd_server_stats st;
	struct nbd_export_info info;
	struct logbuf log = { 0 };
	char names[128];
	uint8_t b[512];
	struct reply r;
	struct t t;

	setup(&t, false, 0, NULL);
	nbd_server_set_log(t.srv, log_cb, &log);
	ok_eq(nbd_server_set_export_allow(t.srv, "disk", &v4, 1), 0);
	ok_eq(nbd_server_set_export_allow(t.srv, "nope", &v4, 1), -ENOENT);

	/* Outside: LIST does not show it, GO and INFO get POLICY, the other export works. */
	connect_from(&t, "192.168.1.5");
	list_exports(&t, names, sizeof(names));
	ok(!strcmp(names, "ro"));
	ok_eq(go(&t, "disk", true), NBD_REP_ERR_POLICY);
	ok_eq(go(&t, "", false), NBD_REP_ERR_POLICY); /* the default export is "disk" */
	ok_eq(log.lines, 2);
	ok(strstr(log.last, "192.168.1.5:40000") && strstr(log.last, "'disk'"));
	feed(&t, b, put_meta(b, "disk")); /* needs structured replies first: INVALID */
	ok_eq(take_opt_final(&t), NBD_REP_ERR_INVALID);
	feed(&t, b, nbdc_put_opt(b, NBD_OPT_STRUCTURED_REPLY, NULL, 0));
	ok_eq(take_opt_final(&t), NBD_REP_ACK);
	feed(&t, b, put_meta(b, "disk"));
	ok_eq(take_opt_final(&t), NBD_REP_ERR_POLICY);
	ok_eq(go(&t, "ro", false), NBD_REP_ACK);
	ok_eq(nbd_server_export_info(t.srv, 0, &info), 0);
	ok_eq(info.refused, 3);
	ok_eq(info.nallow, 1);
	ok_eq(info.clients, 0);
	nbd_server_stats(t.srv, &st);
	ok_eq(st.refused_policy, 3);

	/* EXPORT_NAME has no error reply: the connection is closed. */
	connect_from(&t, "10.0.3.1");
	feed(&t, b, nbdc_put_opt(b, NBD_OPT_EXPORT_NAME, "disk", 4));
	ok(nbd_conn_finished(t.c));
	ok_eq(t.out_len, t.out_pos);

	/* A transport that cannot tell the address is outside every list. */
	nbd_conn_destroy(t.c);
	t.out_len = t.out_pos = 0;
	ok_eq(nbd_conn_create(t.srv, &t.c), 0);
	drain(&t);
	take(&t, 18);
	nbd_put_be32(b, NBD_FLAG_C_FIXED_NEWSTYLE);
	feed(&t, b, 4);
	ok_eq(go(&t, "disk", false), NBD_REP_ERR_POLICY);

	/* Inside (also as an IPv4-mapped IPv6 address): listed, opened, served. */
	connect_from(&t, "::ffff:10.0.2.9");
	list_exports(&t, names, sizeof(names));
	ok(!strcmp(names, "disk,ro"));
	connect_from(&t, "10.0.2.77");
	ok_eq(go(&t, "disk", false), NBD_REP_ACK);
	feed(&t, b, nbdc_put_req(b, NBD_CMD_READ, 0, 7, 0, 512));
	ok(take_reply(&t, &r, 512) && r.cookie == 7 && r.err == 0);

	/* IPv6 prefixes, and a list of several. */
	ok_eq(nbd_server_set_export_allow(t.srv, "ro", v6, 2), 0);
	connect_from(&t, "fd12:3456::1");
	ok_eq(go(&t, "ro", true), NBD_REP_ACK);
	connect_from(&t, "fe80::1");
	ok_eq(go(&t, "ro", true), NBD_REP_ERR_POLICY);
	ok(strstr(log.last, "[fe80::1]:40000") != NULL);
	/* Everyone again. */
	ok_eq(nbd_server_set_export_allow(t.srv, "ro", NULL, 0), 0);
	ok_eq(go(&t, "ro", true), NBD_REP_ACK);
	teardown(&t);
}

TEST(allow_list_change_closes_connections_outside)
{
	struct net_prefix a = prefix("10.0.2.0/24"), b24 = prefix("10.0.3.0/24");
	struct net_prefix bad = prefix("10.0.0.0/8");
	struct nbd_export_config cfg = { .name = "x", .allow = &a, .nallow = 1 };
	struct nbd_conn *inside;
	struct nbd_peer p = peer("10.0.3.4", 1);
	uint8_t b[512];
	struct t t;

	setup(&t, false, 0, NULL);
	/* Lists are checked when an export is added. */
	cfg.dev = t.mem;
	bad.addr.family = 5;
	cfg.allow = &bad;
	ok_eq(nbd_server_add_export(t.srv, &cfg), -EINVAL);
	cfg.allow = &a;
	cfg.nallow = NBD_MAX_ALLOW + 1;
	ok_eq(nbd_server_add_export(t.srv, &cfg), -EINVAL);

	ok_eq(nbd_server_set_export_allow(t.srv, "disk", &a, 1), 0);
	connect_from(&t, "10.0.2.1");
	ok_eq(go(&t, "disk", false), NBD_REP_ACK);
	ok_eq(nbd_conn_create_peer(t.srv, &p, &inside), 0);
	/* The new list leaves 10.0.2.1 out: its connection ends; a negotiating one stays. */
	ok_eq(nbd_server_set_export_allow(t.srv, "disk", &b24, 1), 0);
	ok(nbd_conn_finished(t.c));
	ok(!nbd_conn_finished(inside));
	nbd_conn_destroy(inside);
	/* And a connection the new list keeps is left alone. */
	connect_from(&t, "10.0.3.9");
	ok_eq(go(&t, "disk", false), NBD_REP_ACK);
	ok_eq(nbd_server_set_export_allow(t.srv, "disk", &b24, 1), 0);
	ok(!nbd_conn_finished(t.c));
	feed(&t, b, nbdc_put_req(b, NBD_CMD_FLUSH, 0, 1, 0, 0));
	ok(!nbd_conn_finished(t.c));
	teardown(&t);
}

TEST(per_client_cap)
{
	struct nbd_limits lim = { .max_per_client = 2 };
	struct nbd_peer a = peer("10.0.0.1", 1), a2 = peer("::ffff:10.0.0.1", 2),
			b = peer("10.0.0.2", 3);
	struct nbd_conn *c[4], *u[4], *cb;
	struct nbd_server_stats st;
	struct nbd_conn_info ci;
	struct logbuf log = { 0 };
	struct t t;

	setup(&t, false, 0, &lim);
	nbd_server_set_log(t.srv, log_cb, &log);
	nbd_server_stats(t.srv, &st);
	ok_eq(st.max_per_client, 2);
	ok_eq(nbd_conn_create_peer(t.srv, &a, &c[0]), 0);
	ok_eq(nbd_conn_create_peer(t.srv, &a2, &c[1]), 0); /* the same address, mapped */
	ok_eq(nbd_conn_create_peer(t.srv, &a, &c[2]), -EDQUOT);
	ok_eq(log.lines, 1);
	ok(strstr(log.last, "10.0.0.1:1") && strstr(log.last, "max-per-client 2"));
	ok_eq(nbd_conn_create_peer(t.srv, &b, &cb), 0); /* another address is not affected */
	/* Unknown addresses are not capped (t.c is one of them). */
	for (unsigned i = 0; i < 4; i++)
		ok_eq(nbd_conn_create(t.srv, &u[i]), 0);
	nbd_server_stats(t.srv, &st);
	ok_eq(st.refused_cap, 1);
	/* The connection list shows who is connected. */
	ok_eq(nbd_server_conn_info(t.srv, 5, &ci), 0);
	ok_eq(ci.peer.addr.family, NET_AF_INET);
	ok(ci.peer.port == 2 && ci.peer.addr.bytes[0] == 10 && ci.peer.addr.bytes[3] == 1);

	/* A closed connection makes room again; the cap can be raised at run time. */
	nbd_conn_destroy(c[0]);
	ok_eq(nbd_conn_create_peer(t.srv, &a, &c[0]), 0);
	ok_eq(nbd_server_set_max_per_client(t.srv, 0), -EINVAL);
	ok_eq(nbd_server_set_max_per_client(t.srv, 3), 0);
	ok_eq(nbd_conn_create_peer(t.srv, &a, &c[2]), 0);

	/* A client knocking in a loop: every refusal counted, few logged (4, then 8th, 16th). */
	log.lines = 0;
	for (unsigned i = 0; i < 20; i++)
		ok_eq(nbd_conn_create_peer(t.srv, &a, &c[3]), -EDQUOT);
	nbd_server_stats(t.srv, &st);
	ok_eq(st.refused_cap, 21);
	ok_eq(log.lines, 5); /* 2nd..4th, 8th, 16th of the run (the 1st was above) */
	ok(strstr(log.last, "16 in a row") != NULL);
	for (unsigned i = 0; i < 3; i++)
		nbd_conn_destroy(c[i]);
	nbd_conn_destroy(cb);
	for (unsigned i = 0; i < 4; i++)
		nbd_conn_destroy(u[i]);
	teardown(&t);
}

TEST(write_payload_received_in_place)
{
	uint8_t *b = malloc(256 * 1024), *data = malloc(128 * 1024), *back = malloc(128 * 1024);
	struct reply r;
	struct t t;
	size_t n, len, i;
	uint8_t *d;

	setup(&t, false, 0, NULL);
	for (i = 0; i < 128 * 1024; i++)
		data[i] = (uint8_t)(i * 7 + 3);
	/* Waiting for a header: no buffer to receive into, nothing to limit yet. */
	feed(&t, b, put_handshake(b, "disk", true));
	take_handshake(&t, true);
	ok(!nbd_conn_direct_buf(t.c, &len));
	ok_eq(nbd_conn_hdr_wanted(t.c), 0);
	/* A 128 KiB WRITE: its payload goes in place, in pieces, mixed with fed bytes. */
	feed(&t, b, nbdc_put_req(b, NBD_CMD_WRITE, 0, 9, 4096, 128 * 1024));
	d = nbd_conn_direct_buf(t.c, &len);
	if (!ok(d != NULL) || !ok_eq(len, 128 * 1024))
		goto out;
	memcpy(d, data, 1000);
	nbd_conn_direct_done(t.c, 1000);
	feed(&t, data + 1000, 5000);
	d = nbd_conn_direct_buf(t.c, &len);
	if (!ok(d != NULL) || !ok_eq(len, 128 * 1024 - 6000))
		goto out;
	memcpy(d, data + 6000, len);
	nbd_conn_direct_done(t.c, len);
	nbd_server_poll(t.srv);
	drain(&t);
	take_reply(&t, &r, 0);
	ok(r.cookie == 9 && r.err == 0);
	ok_eq(blkdev_read(t.mem, 8, 256, back), 0);
	ok(!memcmp(back, data, 128 * 1024));
	/* After a large WRITE the next header is wanted alone, byte count by byte count. */
	ok(!nbd_conn_direct_buf(t.c, &len));
	ok_eq(nbd_conn_hdr_wanted(t.c), 28);
	n = nbdc_put_req(b, NBD_CMD_READ, 0, 10, 0, 512);
	feed(&t, b, 10);
	ok_eq(nbd_conn_hdr_wanted(t.c), 18);
	feed(&t, b + 10, n - 10);
	take_reply(&t, &r, 512);
	ok(r.cookie == 10 && r.err == 0);
	/* A READ is not a large write: headers are no longer limited. */
	ok_eq(nbd_conn_hdr_wanted(t.c), 0);
	/* A small WRITE's payload can go in place too, but does not limit the next header. */
	feed(&t, b, nbdc_put_req(b, NBD_CMD_WRITE, 0, 11, 0, 512));
	d = nbd_conn_direct_buf(t.c, &len);
	if (!ok(d != NULL) || !ok_eq(len, 512))
		goto out;
	memset(d, 0x5a, 512);
	nbd_conn_direct_done(t.c, 512);
	nbd_server_poll(t.srv);
	drain(&t);
	take_reply(&t, &r, 0);
	ok(r.cookie == 11 && r.err == 0);
	ok_eq(nbd_conn_hdr_wanted(t.c), 0);
out:
	teardown(&t);
	free(b);
	free(data);
	free(back);
}
