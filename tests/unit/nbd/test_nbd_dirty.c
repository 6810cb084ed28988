/* SPDX-License-Identifier: MIT */
/*
 * qemu:dirty-bitmap:NAME meta contexts in the NBD server, on the wire, with an export whose
 * callbacks play two bitmaps ("a": 8 KiB clean, 8 KiB dirty, ...; "b": gone) and a second
 * export without any:
 *  - LIST: "qemu:" and "qemu:dirty-bitmap:" list both, an exact name itself, an unknown name
 *    and an export without bitmaps nothing; no query lists all three contexts;
 *  - SET with base:allocation and bitmap a: ids 1 and 2; BLOCK_STATUS answers one chunk per
 *    context, allocation first without DONE, the dirty map last with DONE; REQ_ONE;
 *  - a bitmap whose callback fails: one ERROR chunk (EINVAL, naming the bitmap), nothing
 *    else; the connection goes on;
 *  - SET with the wildcard alone selects nothing; a selection is dropped at GO on another
 *    export (BLOCK_STATUS then EINVAL).
 * (Real clients on the appliance: tests/appliance/backup.t.)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/hostdev.h"
#include "net/nbd/nbd_proto.h"
#include "net/nbd/nbd_server.h"
#include "tests/support/harness.h"
#include "tests/support/nbd_client.h"

struct t {
	struct nbd_server *srv;
	struct nbd_conn *c;
	struct blkdev *mem;
	uint8_t *out;
	size_t out_len, out_pos;
	unsigned dirty_calls;
};

static int fake_extents(void *ctx, uint64_t off, uint64_t len, struct nbd_extent *ext, unsigned max)
{
	(void)ctx;
	(void)off;
	ext[0] = (struct nbd_extent){ len, 0 };
	return max ? 1 : 0;
}

static int fake_name(void *ctx, unsigned idx, char *buf, size_t len)
{
	(void)ctx;
	if (idx > 1)
		return -ENOENT;
	snprintf(buf, len, "%c", 'a' + idx);
	return 0;
}

static int fake_dirty(void *ctx, const char *bitmap, uint64_t off, uint64_t len,
		      struct nbd_extent *ext, unsigned max)
{
	struct t *t = ctx;
	unsigned i;

	(void)off;
	(void)len;
	t->dirty_calls++;
	if (strcmp(bitmap, "a"))
		return -ENOENT;
	for (i = 0; i < max && i < 4; i++)
		ext[i] = (struct nbd_extent){ 8192, (i & 1) ? NBD_STATE_DIRTY : 0 };
	return (int)i;
}

static void drain(struct t *t)
{
	nbdc_drain(t->c, &t->out, &t->out_len);
}

static void feed(struct t *t, const void *buf, size_t len)
{
	ok_eq(nbd_conn_feed(t->c, buf, len), len);
	nbd_server_poll(t->srv);
	drain(t);
}

static const uint8_t *take(struct t *t, size_t n)
{
	const uint8_t *p;

	if (!ok(t->out_len - t->out_pos >= n))
		return NULL;
	p = t->out + t->out_pos;
	t->out_pos += n;
	return p;
}

static void setup(struct t *t)
{
	struct nbd_export_config cfg = { .name = "disk", .ctx = t };
	uint8_t b[4 + 16];

	memset(t, 0, sizeof(*t));
	ok_eq(memdisk_create(256, 512, &t->mem), 0);
	ok_eq(nbd_server_create(NULL, &t->srv), 0);
	cfg.dev = t->mem;
	cfg.extents = fake_extents;
	cfg.bitmap_name = fake_name;
	cfg.dirty = fake_dirty;
	ok_eq(nbd_server_add_export(t->srv, &cfg), 0);
	cfg.name = "plain";
	cfg.bitmap_name = NULL;
	cfg.dirty = NULL;
	ok_eq(nbd_server_add_export(t->srv, &cfg), 0);
	ok_eq(nbd_conn_create(t->srv, &t->c), 0);
	drain(t);
	take(t, 18); /* greeting */
	nbd_put_be32(b, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	nbd_put_be64(b + 4, NBD_OPT_MAGIC);
	nbd_put_be32(b + 12, NBD_OPT_STRUCTURED_REPLY);
	nbd_put_be32(b + 16, 0);
	feed(t, b, sizeof(b));
	take(t, 20); /* its ACK */
}

static void teardown(struct t *t)
{
	nbd_conn_destroy(t->c);
	nbd_server_destroy(t->srv);
	blkdev_destroy(t->mem);
	free(t->out);
}

/* LIST (!@set) or SET on @export with @nq queries; the contexts answered as "id:name,". */
static void meta(struct t *t, bool set, const char *export, const char *const *q, unsigned nq,
		 char *got, size_t size)
{
	uint8_t d[512], hdr[16];
	size_t n = 0, el = strlen(export);

	nbd_put_be32(d, (uint32_t)el);
	memcpy(d + 4, export, el);
	nbd_put_be32(d + 4 + el, nq);
	n = 8 + el;
	for (unsigned i = 0; i < nq; i++) {
		size_t ql = strlen(q[i]);

		nbd_put_be32(d + n, (uint32_t)ql);
		memcpy(d + n + 4, q[i], ql);
		n += 4 + ql;
	}
	nbd_put_be64(hdr, NBD_OPT_MAGIC);
	nbd_put_be32(hdr + 8, set ? NBD_OPT_SET_META_CONTEXT : NBD_OPT_LIST_META_CONTEXT);
	nbd_put_be32(hdr + 12, (uint32_t)n);
	ok_eq(nbd_conn_feed(t->c, hdr, 16), 16);
	feed(t, d, n);
	got[0] = 0;
	for (;;) {
		const uint8_t *p = take(t, 20);
		uint32_t type, len;
		const uint8_t *body;

		if (!p)
			return;
		type = nbd_get_be32(p + 12);
		len = nbd_get_be32(p + 16);
		body = take(t, len);
		if (!body || type != NBD_REP_META_CONTEXT) {
			ok_eq(type, NBD_REP_ACK);
			return;
		}
		snprintf(got + strlen(got), size - strlen(got), "%u:%.*s,", nbd_get_be32(body),
			 (int)(len - 4), (const char *)body + 4);
	}
}

static void go(struct t *t, const char *export)
{
	uint8_t b[64];
	size_t el = strlen(export);

	nbd_put_be64(b, NBD_OPT_MAGIC);
	nbd_put_be32(b + 8, NBD_OPT_GO);
	nbd_put_be32(b + 12, (uint32_t)(6 + el));
	nbd_put_be32(b + 16, (uint32_t)el);
	memcpy(b + 20, export, el);
	nbd_put_be16(b + 20 + el, 0);
	feed(t, b, 22 + el);
	for (;;) {
		const uint8_t *p = take(t, 20);

		if (!p || !take(t, nbd_get_be32(p + 16)) || nbd_get_be32(p + 12) == NBD_REP_ACK)
			return;
	}
}

static void block_status(struct t *t, uint16_t flags, uint64_t off, uint32_t len)
{
	uint8_t b[28];

	nbd_put_be32(b, NBD_REQUEST_MAGIC);
	nbd_put_be16(b + 4, flags);
	nbd_put_be16(b + 6, NBD_CMD_BLOCK_STATUS);
	nbd_put_be64(b + 8, 77);
	nbd_put_be64(b + 16, off);
	nbd_put_be32(b + 24, len);
	feed(t, b, sizeof(b));
}

/* One structured chunk: its flags and type, the payload in @pl (up to 256 bytes). */
static bool chunk(struct t *t, uint16_t *flags, uint16_t *type, uint8_t *pl, uint32_t *len)
{
	const uint8_t *p = take(t, 20), *q;

	if (!p || !ok_eq(nbd_get_be32(p), NBD_STRUCTURED_REPLY_MAGIC))
		return false;
	*flags = nbd_get_be16(p + 4);
	*type = nbd_get_be16(p + 6);
	*len = nbd_get_be32(p + 16);
	q = take(t, *len);
	if (!q || !ok(*len <= 256))
		return false;
	memcpy(pl, q, *len);
	return true;
}

TEST(list_queries)
{
	static const char *const qemu[] = { "qemu:" }, *const prefix[] = { "qemu:dirty-bitmap:" },
				 *const exact[] = { "qemu:dirty-bitmap:b" },
				 *const unknown[] = { "qemu:dirty-bitmap:zz" };
	struct t t;
	char got[512];

	setup(&t);
	meta(&t, false, "disk", qemu, 1, got, sizeof(got));
	ok(!strcmp(got, "2:qemu:dirty-bitmap:a,2:qemu:dirty-bitmap:b,"));
	meta(&t, false, "disk", prefix, 1, got, sizeof(got));
	ok(!strcmp(got, "2:qemu:dirty-bitmap:a,2:qemu:dirty-bitmap:b,"));
	meta(&t, false, "disk", exact, 1, got, sizeof(got));
	ok(!strcmp(got, "2:qemu:dirty-bitmap:b,"));
	meta(&t, false, "disk", unknown, 1, got, sizeof(got));
	ok(!strcmp(got, ""));
	meta(&t, false, "disk", NULL, 0, got, sizeof(got));
	ok(!strcmp(got, "1:base:allocation,2:qemu:dirty-bitmap:a,2:qemu:dirty-bitmap:b,"));
	meta(&t, false, "plain", qemu, 1, got, sizeof(got));
	ok(!strcmp(got, ""));
	if (test_failed())
		printf("  last: %s\n", got);
	teardown(&t);
}

TEST(block_status_with_both_contexts)
{
	static const char *const both[] = { "base:allocation", "qemu:dirty-bitmap:a" };
	struct t t;
	char got[512];
	uint8_t pl[256];
	uint16_t flags, type;
	uint32_t len;

	setup(&t);
	meta(&t, true, "disk", both, 2, got, sizeof(got));
	ok(!strcmp(got, "2:qemu:dirty-bitmap:a,1:base:allocation,") ||
	   !strcmp(got, "1:base:allocation,2:qemu:dirty-bitmap:a,"));
	go(&t, "disk");
	block_status(&t, 0, 0, 32768);
	if (chunk(&t, &flags, &type, pl, &len)) {
		ok_eq(flags, 0);
		ok_eq(type, NBD_REPLY_TYPE_BLOCK_STATUS);
		ok_eq(nbd_get_be32(pl), 1);
		ok_eq(len, 12);
		ok_eq(nbd_get_be32(pl + 4), 32768);
	}
	if (chunk(&t, &flags, &type, pl, &len)) {
		ok_eq(flags, NBD_REPLY_FLAG_DONE);
		ok_eq(type, NBD_REPLY_TYPE_BLOCK_STATUS);
		ok_eq(nbd_get_be32(pl), 2);
		ok_eq(len, 4 + 4 * 8);
		for (unsigned i = 0; i < 4 && len == 36; i++) {
			ok_eq(nbd_get_be32(pl + 4 + 8 * i), 8192);
			ok_eq(nbd_get_be32(pl + 8 + 8 * i), i & 1);
		}
	}
	/* REQ_ONE: one extent per context. */
	block_status(&t, NBD_CMD_FLAG_REQ_ONE, 0, 32768);
	if (chunk(&t, &flags, &type, pl, &len))
		ok_eq(len, 12);
	if (chunk(&t, &flags, &type, pl, &len)) {
		ok_eq(len, 12);
		ok_eq(nbd_get_be32(pl), 2);
		ok_eq(flags, NBD_REPLY_FLAG_DONE);
	}
	ok_eq(t.out_pos, t.out_len);
	teardown(&t);
}

TEST(gone_bitmap_is_one_error_chunk)
{
	static const char *const both[] = { "base:allocation", "qemu:dirty-bitmap:b" };
	struct t t;
	char got[512];
	uint8_t pl[256];
	uint16_t flags, type;
	uint32_t len;

	setup(&t);
	meta(&t, true, "disk", both, 2, got, sizeof(got));
	go(&t, "disk");
	block_status(&t, 0, 0, 32768);
	if (chunk(&t, &flags, &type, pl, &len)) {
		ok_eq(flags, NBD_REPLY_FLAG_DONE);
		ok_eq(type, NBD_REPLY_TYPE_ERROR);
		ok_eq(nbd_get_be32(pl), NBD_EINVAL);
		ok(len > 6 && memmem(pl + 6, len - 6, "dirty bitmap b", 14));
	}
	ok_eq(t.out_pos, t.out_len); /* nothing else: no allocation chunk */
	/* The connection goes on. */
	block_status(&t, 0, 0, 512);
	ok(chunk(&t, &flags, &type, pl, &len) && type == NBD_REPLY_TYPE_ERROR);
	teardown(&t);
}

TEST(wildcard_set_and_other_export_select_nothing)
{
	static const char *const qemu[] = { "qemu:dirty-bitmap:" }, *const a[] = {
		"qemu:dirty-bitmap:a"
	};
	struct t t;
	char got[512];
	uint8_t pl[256];
	uint16_t flags, type;
	uint32_t len;

	setup(&t);
	meta(&t, true, "disk", qemu, 1, got, sizeof(got));
	ok(!strcmp(got, ""));
	meta(&t, true, "disk", a, 1, got, sizeof(got));
	ok(!strcmp(got, "2:qemu:dirty-bitmap:a,"));
	go(&t, "plain"); /* chosen for "disk": dropped */
	block_status(&t, 0, 0, 512);
	if (chunk(&t, &flags, &type, pl, &len)) {
		ok_eq(type, NBD_REPLY_TYPE_ERROR);
		ok_eq(nbd_get_be32(pl), NBD_EINVAL);
	}
	ok_eq(t.dirty_calls, 0);
	teardown(&t);
}
