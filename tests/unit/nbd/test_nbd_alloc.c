/* SPDX-License-Identifier: MIT */
/*
 * The NBD server's memory on the data path (docs/nbd.md "Memory"):
 *  - in steady state a connection allocates nothing per request: after a warm-up, rounds of
 *    pipelined WRITE / READ (aligned, unaligned read-modify-writes, simple and structured
 *    replies), FLUSH, TRIM and WRITE_ZEROES cause no heap allocation at all, counted for the
 *    whole process by the sanitizer's malloc hook;
 *  - output a transport borrowed (nbd_conn_output() without nbd_conn_output_done(), as lwIP
 *    holds zero-copy segments until they are acknowledged) stays valid and unchanged while
 *    later requests run, whatever the free lists recycle;
 *  - a connection destroyed with borrowed output, and the server after it, give every byte
 *    back (allocations and frees balance).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "host/hostdev.h"
#include "net/nbd/nbd_proto.h"
#include "net/nbd/nbd_server.h"
#include "tests/support/alloc_count.h"
#include "tests/support/harness.h"
#include "tests/support/nbd_client.h"

#define DISK_BLOCKS 4096 /* 2 MiB of 512-byte blocks */
#define SINK_BYTES  (1024 * 1024)

/* ---- A client that allocates nothing ----------------------------------------------------- */

struct t {
	struct nbd_server *srv;
	struct nbd_conn *c;
	struct blkdev *mem;
};

static uint8_t sink[SINK_BYTES]; /* output drained since the last sink_reset() */
static size_t sink_len;

static void drain(struct t *t)
{
	struct nbd_iov iov[16];
	unsigned n, i;

	for (;;) {
		nbd_conn_output(t->c, 0, iov, 16, &n);
		if (!n)
			break;
		for (i = 0; i < n; i++) {
			if (!ok(sink_len + iov[i].len <= SINK_BYTES))
				return;
			memcpy(sink + sink_len, iov[i].base, iov[i].len);
			sink_len += iov[i].len;
			nbd_conn_output_done(t->c, iov[i].len);
		}
	}
}

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
	nbd_server_poll(t->srv);
	drain(t);
}

/* Client flags, optionally structured replies, then GO "disk". */
static void handshake(struct t *t, bool structured)
{
	uint8_t b[128], go[16];
	size_t n = 4;

	nbd_put_be32(b, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	if (structured)
		n += nbdc_put_opt(b + n, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	nbd_put_be32(go, 4);
	memcpy(go + 4, "disk", 4);
	nbd_put_be16(go + 8, 0);
	n += nbdc_put_opt(b + n, NBD_OPT_GO, go, 10);
	feed(t, b, n);
	sink_len = 0; /* the greeting and option replies: not looked at */
}

static void setup_lim(struct t *t, bool structured, const struct nbd_limits *lim)
{
	struct nbd_export_config cfg = { .name = "disk" };

	memset(t, 0, sizeof(*t));
	ok_eq(memdisk_create(DISK_BLOCKS, 512, &t->mem), 0);
	ok_eq(nbd_server_create(lim, &t->srv), 0);
	cfg.dev = t->mem;
	ok_eq(nbd_server_add_export(t->srv, &cfg), 0);
	ok_eq(nbd_conn_create(t->srv, &t->c), 0);
	handshake(t, structured);
}

static void setup(struct t *t, bool structured)
{
	setup_lim(t, structured, NULL);
}

static void teardown(struct t *t)
{
	nbd_conn_destroy(t->c);
	nbd_server_destroy(t->srv);
	blkdev_destroy(t->mem);
}

static void pattern(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 31 + i * 7 + (i >> 9));
}

/* One round's requests: what each is, for checking the replies. */
struct op {
	uint16_t type;
	uint64_t off;
	uint32_t len;
};

static const struct op round_ops[] = {
	{ NBD_CMD_WRITE, 0, 4096 },	 { NBD_CMD_WRITE, 65536, 65536 },
	{ NBD_CMD_WRITE, 200000, 1000 }, /* unaligned: the server's read-modify-write */
	{ NBD_CMD_READ, 0, 4096 },	 { NBD_CMD_READ, 65536, 65536 },
	{ NBD_CMD_READ, 200000, 1000 },	 { NBD_CMD_WRITE_ZEROES, 524288, 8192 },
	{ NBD_CMD_READ, 524288, 8192 }, /* zeroes: a hole chunk when structured */
	{ NBD_CMD_TRIM, 1048576, 4096 }, { NBD_CMD_FLUSH, 0, 0 },
};

static uint8_t req_bytes[512 * 1024];
static uint8_t expect[65536];

/*
 * Send one round pipelined (every request in one feed), then check the replies: every
 * cookie answered without error, and simple READ replies carry the data written.
 */
static void round_trip(struct t *t, unsigned seed, bool structured)
{
	size_t n = 0, pos = 0;
	unsigned replies = 0;

	for (unsigned i = 0; i < ARRAY_SIZE(round_ops); i++) {
		const struct op *o = &round_ops[i];

		n += nbdc_put_req(req_bytes + n, o->type, 0, seed * 100 + i, o->off, o->len);
		if (o->type == NBD_CMD_WRITE) {
			pattern(req_bytes + n, o->len, seed + i);
			n += o->len;
		}
	}
	sink_len = 0;
	feed(t, req_bytes, n);
	while (pos + 16 <= sink_len) {
		uint32_t magic = nbd_get_be32(sink + pos);
		uint64_t cookie;
		unsigned i;

		if (magic == NBD_SIMPLE_REPLY_MAGIC) {
			ok_eq(nbd_get_be32(sink + pos + 4), 0);
			cookie = nbd_get_be64(sink + pos + 8);
			pos += 16;
			i = (unsigned)(cookie - seed * 100);
			if (!ok(i < ARRAY_SIZE(round_ops)))
				return;
			if (round_ops[i].type == NBD_CMD_READ) {
				const struct op *o = &round_ops[i];

				if (o->off == 524288)
					memset(expect, 0, o->len);
				else
					pattern(expect, o->len, seed + i - 3);
				if (!ok(pos + o->len <= sink_len) ||
				    !ok(!memcmp(sink + pos, expect, o->len)))
					return;
				pos += o->len;
			}
			replies++;
			continue;
		}
		if (!ok_eq(magic, NBD_STRUCTURED_REPLY_MAGIC) || !ok(pos + 20 <= sink_len))
			return;
		if (nbd_get_be16(sink + pos + 4) & NBD_REPLY_FLAG_DONE)
			replies++;
		ok(!(nbd_get_be16(sink + pos + 6) & 0x8000)); /* no error chunk */
		pos += 20 + nbd_get_be32(sink + pos + 16);
	}
	ok_eq(pos, sink_len);
	ok_eq(replies, ARRAY_SIZE(round_ops));
	(void)structured;
}

static void steady_state(bool structured)
{
	struct t t;
	unsigned long before;

	setup(&t, structured);
	for (unsigned s = 1; s <= 8; s++) /* warm-up: the free lists fill */
		round_trip(&t, s, structured);
	before = alloc_count();
	for (unsigned s = 9; s < 9 + 200 && !test_failed(); s++)
		round_trip(&t, s, structured);
	if (!ok_eq(alloc_count() - before, 0))
		printf("# %lu allocations in 200 rounds of %zu requests\n", alloc_count() - before,
		       ARRAY_SIZE(round_ops));
	teardown(&t);
}

/* ---- Tests ------------------------------------------------------------------------------- */

TEST(steady_state_allocates_nothing_simple_replies)
{
	steady_state(false);
}

TEST(steady_state_allocates_nothing_structured_replies)
{
	steady_state(true);
}

/* A piece of output the "transport" holds, and what it held when it took it. */
struct borrow {
	const uint8_t *base;
	size_t len;
	size_t snap; /* offset of its copy in snaps[] */
};

static uint8_t snaps[4 * 1024 * 1024];

/*
 * Like lwIP: take output beyond what is already borrowed (nbd_conn_output(.., skip = held)),
 * keep pointers to it, and release ("acknowledge") only the oldest bytes, a round later.
 * Before every release, everything still borrowed must equal what was taken.
 */
TEST(borrowed_output_stays_valid_until_released)
{
	static struct borrow held[4096];
	unsigned nheld = 0, first = 0;
	size_t borrowed = 0, snap_len = 0;
	struct t t;

	setup(&t, false);
	for (unsigned s = 1; s <= 40 && !test_failed(); s++) {
		struct nbd_iov iov[16];
		size_t n = 0, acked;
		unsigned k;

		/* The same ranges rewritten with new data and read back each round: a READ
		 * buffer recycled too early would be overwritten by a later READ of new data. */
		for (unsigned i = 0; i < 4; i++) {
			n += nbdc_put_req(req_bytes + n, NBD_CMD_WRITE, 0, s * 10 + i, i * 65536,
					  65536);
			pattern(req_bytes + n, 65536, s * 10 + i);
			n += 65536;
			n += nbdc_put_req(req_bytes + n, NBD_CMD_READ, 0, s * 10 + 5 + i, i * 65536,
					  65536);
		}
		/* Feed without draining: the output piles up, borrowed below (well within the
		 * connection's budget, so all of it is taken). */
		ok_eq(nbd_conn_feed(t.c, req_bytes, n), n);
		nbd_server_poll(t.srv);
		nbd_conn_output(t.c, borrowed, iov, 16, &k);
		while (k) {
			for (unsigned i = 0; i < k; i++) {
				if (!ok(nheld < ARRAY_SIZE(held)) ||
				    !ok(snap_len + iov[i].len <= sizeof(snaps)))
					goto out;
				held[nheld].base = iov[i].base;
				held[nheld].len = iov[i].len;
				held[nheld].snap = snap_len;
				memcpy(snaps + snap_len, iov[i].base, iov[i].len);
				snap_len += iov[i].len;
				borrowed += iov[i].len;
				nheld++;
			}
			nbd_conn_output(t.c, borrowed, iov, 16, &k);
		}
		/* Check everything held, then acknowledge about half of it, oldest first. */
		for (unsigned i = first; i < nheld; i++)
			if (!ok(!memcmp(held[i].base, snaps + held[i].snap, held[i].len)))
				goto out;
		acked = 0;
		while (first < nheld && acked < borrowed / 2) {
			acked += held[first].len;
			first++;
		}
		nbd_conn_output_done(t.c, acked);
		borrowed -= acked;
		/* Forget the released pieces: the rest moves to the front. */
		if (first < nheld) {
			size_t base = held[first].snap;

			memmove(snaps, snaps + base, snap_len - base);
			snap_len -= base;
			for (unsigned i = first; i < nheld; i++) {
				held[i - first] = held[i];
				held[i - first].snap -= base;
			}
		} else {
			snap_len = 0;
		}
		nheld -= first;
		first = 0;
	}
out:
	teardown(&t);
}

/*
 * The transport goes away holding output (a connection reset while lwIP had unacknowledged
 * zero-copy segments; lwIP dropped them first): the connection's buffers, and at the end the
 * server's free lists, go back to the heap.
 */
TEST(destroy_with_borrowed_output_frees_everything)
{
	unsigned long a0 = alloc_count(), f0 = free_count();
	struct nbd_iov iov[16];
	size_t n = 0;
	unsigned k;
	struct t t;

	setup(&t, true);
	for (unsigned i = 0; i < 8; i++)
		n += nbdc_put_req(req_bytes + n, NBD_CMD_READ, 0, i, i * 65536, 65536);
	nbd_conn_feed(t.c, req_bytes, n);
	nbd_server_poll(t.srv);
	ok(nbd_conn_output(t.c, 0, iov, 16, &k) > 0); /* borrowed, never released */
	nbd_conn_output_done(t.c, iov[0].len / 2);    /* part of it acknowledged */
	/* A second connection in steady state keeps using the server meanwhile. */
	nbd_conn_destroy(t.c);
	nbd_server_poll(t.srv);
	ok_eq(nbd_conn_create(t.srv, &t.c), 0);
	handshake(&t, false);
	round_trip(&t, 1, false);
	teardown(&t);
	ok_eq(alloc_count() - a0, free_count() - f0);
}

/*
 * What the free lists keep is bounded by the server's buffer limit: READs of every size from
 * 4 KiB to 1 MiB, one at a time (a different size class nearly every time), on a server
 * allowed 1 MiB of request buffers, leave at most that much cached (plus the records).
 */
TEST(cached_buffers_bounded_by_server_limit)
{
	struct nbd_limits lim = { .max_server_bytes = 1024 * 1024 };
	long base;
	struct t t;

	setup_lim(&t, false, &lim);
	base = alloc_live_bytes();
	for (uint32_t len = 4096; len <= 1024 * 1024 && !test_failed(); len += 4096 + 512) {
		uint8_t h[28];

		nbdc_put_req(h, NBD_CMD_READ, 0, len, 0, len);
		sink_len = 0;
		feed(&t, h, sizeof(h));
		ok_eq(sink_len, 16 + len);
	}
	if (!ok(alloc_live_bytes() - base <= 1024 * 1024 + 64 * 1024))
		printf("# %ld bytes kept after the reads\n", alloc_live_bytes() - base);
	teardown(&t);
}
