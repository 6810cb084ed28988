/* SPDX-License-Identifier: MIT */
/*
 * NBD_OPT_STARTTLS in the NBD server with the real TLS layer (net/tls/tls_server.c), no
 * sockets: a test client speaks plain NBD into nbd_conn_feed(), then, after the ACK, runs an
 * mbedTLS client whose BIO is the same two byte queues. Covers the option negotiation in each
 * mode (off, on, require), ERR_TLS_REQD, STARTTLS twice or with data, bytes sent after
 * STARTTLS before its ACK, TLS-only exports, a wrong key, a failing entropy source, data
 * through TLS, the TLS checks together with allow lists (TLS first), and the psktool
 * keys-file parser.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/base/netaddr.h"
#include "host/hostdev.h"
#include "net/nbd/nbd_proto.h"
#include "net/nbd/nbd_server.h"
#include "net/tls/tls_psk.h"
#include "net/tls/tls_server.h"
#include "tests/support/harness.h"

#include "mbedtls/ctr_drbg.h"
#include "mbedtls/entropy.h"
#include "mbedtls/ssl.h"

#define QBYTES (4u << 20)

static const char KEYS[] =
    "alice:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
    "bob:00112233445566778899aabbccddeeff\n";
static const unsigned char ALICE_KEY[32] = { 0,	 1,  2,	 3,  4,	 5,  6,	 7,  8,	 9,  10,
					     11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
					     22, 23, 24, 25, 26, 27, 28, 29, 30, 31 };

struct q {
	uint8_t *b;
	size_t len, pos;
};

struct rig {
	struct nbd_server *srv;
	struct tls_server *ts;
	struct nbd_conn *c;
	struct blkdev *disk, *secret;
	struct q c2s, s2c;
	bool tls;
	mbedtls_entropy_context ent;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_ssl_config conf;
	mbedtls_ssl_context ssl;
};

static int entropy_calls, entropy_fail_after = -1;

/* getrandom(), or a failure after entropy_fail_after calls (a dead random source). */
static int test_entropy(void *buf, size_t len)
{
	if (entropy_fail_after >= 0 && entropy_calls++ >= entropy_fail_after)
		return -EIO;
	return getrandom(buf, len, 0) == (ssize_t)len ? 0 : -EIO;
}

static int cli_entropy(void *data, unsigned char *out, size_t len, size_t *olen)
{
	*olen = len;
	return getrandom(out, len, 0) == (ssize_t)len ? 0 : MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
}

static void q_put(struct q *q, const void *p, size_t n)
{
	if (q->len + n > QBYTES) {
		fail("queue overflow");
		return;
	}
	memcpy(q->b + q->len, p, n);
	q->len += n;
}

/* Move bytes both ways until nothing moves. */
static void pump(struct rig *r)
{
	for (int round = 0; round < 1000; round++) {
		size_t moved = 0;
		struct nbd_iov iov[16];
		unsigned n;

		if (r->c2s.pos < r->c2s.len) {
			size_t k =
			    nbd_conn_feed(r->c, r->c2s.b + r->c2s.pos, r->c2s.len - r->c2s.pos);

			r->c2s.pos += k;
			moved += k;
		}
		nbd_server_poll(r->srv);
		while (nbd_conn_output_pending(r->c)) {
			size_t k = nbd_conn_output(r->c, 0, iov, 16, &n);

			if (!n)
				break;
			for (unsigned i = 0; i < n; i++)
				q_put(&r->s2c, iov[i].base, iov[i].len);
			nbd_conn_output_done(r->c, k);
			moved += k;
		}
		if (!moved && !nbd_server_busy(r->srv))
			return;
	}
	fail("pump: no end");
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
	struct rig *r = ctx;

	q_put(&r->c2s, buf, len);
	return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
	struct rig *r = ctx;
	size_t n = r->s2c.len - r->s2c.pos;

	if (!n)
		return MBEDTLS_ERR_SSL_WANT_READ;
	n = n < len ? n : len;
	memcpy(buf, r->s2c.b + r->s2c.pos, n);
	r->s2c.pos += n;
	return (int)n;
}

static void logline(void *ctx, const char *line)
{
	char *last = ctx;

	snprintf(last, 256, "%s", line);
}

static char last_log[256];

/* The rig's connection comes from this address when set (else: unknown address). */
static const struct nbd_peer *rig_peer;
/* The rig's server limits when set (else: the defaults). */
static const struct nbd_limits *rig_lim;

/* A server with exports disk (plain allowed) and secret (TLS-only), one connection. */
static bool rig_init(struct rig *r, enum nbd_tls_mode mode)
{
	struct nbd_export_config ec = { 0 };
	struct tls_server_opts to = { .entropy = test_entropy,
				      .log = logline,
				      .log_ctx = last_log };
	struct nbd_tls_config tc = { .mode = NBD_TLS_OFF };
	char err[200];
	uint8_t b[18];

	memset(r, 0, sizeof(*r));
	r->c2s.b = malloc(QBYTES);
	r->s2c.b = malloc(QBYTES);
	entropy_calls = 0;
	if (!ok(r->c2s.b && r->s2c.b) || !ok_eq(nbd_server_create(rig_lim, &r->srv), 0) ||
	    !ok_eq(memdisk_create(2048, 512, &r->disk), 0) ||
	    !ok_eq(memdisk_create(2048, 512, &r->secret), 0))
		return false;
	if (mode != NBD_TLS_OFF) {
		if (!ok_eq(tls_server_create(&to, &r->ts, err, sizeof(err)), 0) ||
		    !ok_eq(tls_server_load_psk(r->ts, KEYS, strlen(KEYS), err, sizeof(err)), 0) ||
		    !ok_eq(tls_server_nbd_config(r->ts, mode, &tc), 0))
			return false;
	}
	if (!ok_eq(nbd_server_set_tls(r->srv, &tc), 0))
		return false;
	ec.name = "disk";
	ec.dev = r->disk;
	if (!ok_eq(nbd_server_add_export(r->srv, &ec), 0))
		return false;
	ec.name = "secret";
	ec.dev = r->secret;
	ec.tls_only = true;
	if (!ok_eq(nbd_server_add_export(r->srv, &ec), 0) ||
	    !ok_eq(rig_peer ? nbd_conn_create_peer(r->srv, rig_peer, &r->c)
			    : nbd_conn_create(r->srv, &r->c),
		   0))
		return false;
	/* Greeting, then the client's flags. */
	pump(r);
	if (!ok_eq(r->s2c.len - r->s2c.pos, 18))
		return false;
	r->s2c.pos += 18;
	nbd_put_be32(b, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	q_put(&r->c2s, b, 4);
	pump(r);
	return true;
}

static void rig_free(struct rig *r)
{
	if (r->tls) {
		mbedtls_ssl_free(&r->ssl);
		mbedtls_ssl_config_free(&r->conf);
		mbedtls_ctr_drbg_free(&r->drbg);
		mbedtls_entropy_free(&r->ent);
	}
	if (r->c)
		nbd_conn_destroy(r->c);
	nbd_server_destroy(r->srv);
	tls_server_destroy(r->ts);
	blkdev_destroy(r->disk);
	blkdev_destroy(r->secret);
	free(r->c2s.b);
	free(r->s2c.b);
}

/* Send an option: in plain, or through the client's TLS session. */
static void send_opt(struct rig *r, uint32_t opt, const void *data, uint32_t len)
{
	uint8_t h[16];

	nbd_put_be64(h, NBD_OPT_MAGIC);
	nbd_put_be32(h + 8, opt);
	nbd_put_be32(h + 12, len);
	if (!r->tls) {
		q_put(&r->c2s, h, 16);
		if (len)
			q_put(&r->c2s, data, len);
		return;
	}
	ok_eq(mbedtls_ssl_write(&r->ssl, h, 16), 16);
	if (len)
		ok_eq(mbedtls_ssl_write(&r->ssl, data, len), (int)len);
}

/* Read exactly @n bytes from the server (plain or TLS); false when they do not come. */
static bool recv_bytes(struct rig *r, void *buf, size_t n)
{
	size_t got = 0;

	for (int i = 0; i < 100 && got < n; i++) {
		pump(r);
		if (!r->tls) {
			size_t k = r->s2c.len - r->s2c.pos;

			k = k < n - got ? k : n - got;
			memcpy((uint8_t *)buf + got, r->s2c.b + r->s2c.pos, k);
			r->s2c.pos += k;
			got += k;
		} else {
			int k = mbedtls_ssl_read(&r->ssl, (uint8_t *)buf + got, n - got);

			if (k > 0)
				got += (size_t)k;
			else if (k != MBEDTLS_ERR_SSL_WANT_READ)
				return false;
		}
	}
	return got == n;
}

/* One option reply: its type (0 when none came); the payload in @data (up to 4096). */
static uint32_t reply(struct rig *r, uint32_t opt, char *data)
{
	uint8_t h[20];
	uint32_t len;

	if (!recv_bytes(r, h, 20))
		return 0;
	ok_eq(nbd_get_be64(h), NBD_REP_MAGIC);
	ok_eq(nbd_get_be32(h + 8), opt);
	len = nbd_get_be32(h + 16);
	if (!ok(len < 4096))
		return 0;
	if (!recv_bytes(r, data, len))
		return 0;
	data[len] = '\0';
	return nbd_get_be32(h + 12);
}

/* An INFO/GO request for @name with no info requests. */
static size_t info_req(uint8_t *b, const char *name)
{
	size_t nl = strlen(name);

	nbd_put_be32(b, (uint32_t)nl);
	memcpy(b + 4, name, nl);
	nbd_put_be16(b + 4 + nl, 0);
	return 6 + nl;
}

/* The client's side of TLS with PSK @id / @key, set up (not yet run). */
static bool client_setup(struct rig *r, const char *id, const unsigned char *key, size_t klen)
{
	mbedtls_entropy_init(&r->ent);
	mbedtls_ctr_drbg_init(&r->drbg);
	mbedtls_ssl_config_init(&r->conf);
	mbedtls_ssl_init(&r->ssl);
	r->tls = true;
	return ok_eq(mbedtls_entropy_add_source(&r->ent, cli_entropy, NULL, 32,
						MBEDTLS_ENTROPY_SOURCE_STRONG),
		     0) &&
	       ok_eq(mbedtls_ctr_drbg_seed(&r->drbg, mbedtls_entropy_func, &r->ent, NULL, 0), 0) &&
	       ok_eq(mbedtls_ssl_config_defaults(&r->conf, MBEDTLS_SSL_IS_CLIENT,
						 MBEDTLS_SSL_TRANSPORT_STREAM,
						 MBEDTLS_SSL_PRESET_DEFAULT),
		     0) &&
	       (mbedtls_ssl_conf_rng(&r->conf, mbedtls_ctr_drbg_random, &r->drbg), true) &&
	       ok_eq(
		   mbedtls_ssl_conf_psk(&r->conf, key, klen, (const unsigned char *)id, strlen(id)),
		   0) &&
	       ok_eq(mbedtls_ssl_setup(&r->ssl, &r->conf), 0) &&
	       (mbedtls_ssl_set_bio(&r->ssl, r, bio_send, bio_recv, NULL), true);
}

/* Run the client's handshake against the server: its last mbedTLS code (0: done). */
static int client_handshake(struct rig *r)
{
	int rc = MBEDTLS_ERR_SSL_WANT_READ;

	for (int i = 0; i < 200 && rc == MBEDTLS_ERR_SSL_WANT_READ; i++) {
		rc = mbedtls_ssl_handshake(&r->ssl);
		pump(r);
	}
	return rc;
}

/* STARTTLS acknowledged, then a PSK handshake as alice. */
static bool start_tls(struct rig *r)
{
	char d[4096];

	send_opt(r, NBD_OPT_STARTTLS, NULL, 0);
	return ok_eq(reply(r, NBD_OPT_STARTTLS, d), NBD_REP_ACK) &&
	       client_setup(r, "alice", ALICE_KEY, sizeof(ALICE_KEY)) &&
	       ok_eq(client_handshake(r), 0);
}

TEST(off_starttls_unsupported)
{
	struct rig r;
	char d[4096];
	uint8_t b[64];

	if (!rig_init(&r, NBD_TLS_OFF))
		goto out;
	send_opt(&r, NBD_OPT_STARTTLS, NULL, 0);
	ok_eq(reply(&r, NBD_OPT_STARTTLS, d), NBD_REP_ERR_UNSUP);
	/* The session goes on in plain; a TLS-only export is refused without TLS_REQD (NOTLS). */
	send_opt(&r, NBD_OPT_INFO, b, (uint32_t)info_req(b, "disk"));
	ok_eq(reply(&r, NBD_OPT_INFO, d), NBD_REP_INFO);
	send_opt(&r, NBD_OPT_INFO, b, (uint32_t)info_req(b, "secret"));
	while (reply(&r, NBD_OPT_INFO, d) == NBD_REP_INFO)
		;
	send_opt(&r, NBD_OPT_INFO, b, (uint32_t)info_req(b, "secret"));
	ok_eq(reply(&r, NBD_OPT_INFO, d), NBD_REP_ERR_POLICY);
out:
	rig_free(&r);
}

TEST(require_refuses_everything_before_tls)
{
	struct tls_server_stats st;
	static const uint32_t opts[] = { NBD_OPT_LIST,
					 NBD_OPT_INFO,
					 NBD_OPT_GO,
					 NBD_OPT_STRUCTURED_REPLY,
					 NBD_OPT_LIST_META_CONTEXT,
					 NBD_OPT_SET_META_CONTEXT };
	struct rig r;
	char d[4096];
	uint8_t b[64];

	if (!rig_init(&r, NBD_TLS_REQUIRE))
		goto out;
	for (unsigned i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		size_t n =
		    opts[i] == NBD_OPT_INFO || opts[i] == NBD_OPT_GO ? info_req(b, "disk") : 0;

		send_opt(&r, opts[i], b, (uint32_t)n);
		ok_eq(reply(&r, opts[i], d), NBD_REP_ERR_TLS_REQD);
		/* Nothing about the exports in the message. */
		ok(!strstr(d, "disk") && !strstr(d, "secret"));
	}
	ok(!nbd_conn_finished(r.c));
	/* STARTTLS with data: invalid, and still plain. */
	send_opt(&r, NBD_OPT_STARTTLS, "x", 1);
	ok_eq(reply(&r, NBD_OPT_STARTTLS, d), NBD_REP_ERR_INVALID);
	/* Now TLS: LIST answers, with both exports; STARTTLS again is invalid. */
	if (!start_tls(&r))
		goto out;
	send_opt(&r, NBD_OPT_LIST, NULL, 0);
	ok_eq(reply(&r, NBD_OPT_LIST, d), NBD_REP_SERVER);
	ok(!memcmp(d + 4, "disk", 4));
	ok_eq(reply(&r, NBD_OPT_LIST, d), NBD_REP_SERVER);
	ok(!memcmp(d + 4, "secret", 6));
	ok_eq(reply(&r, NBD_OPT_LIST, d), NBD_REP_ACK);
	send_opt(&r, NBD_OPT_STARTTLS, NULL, 0);
	ok_eq(reply(&r, NBD_OPT_STARTTLS, d), NBD_REP_ERR_INVALID);
	ok(strstr(last_log, "PSK identity 'alice'") != NULL);
	tls_server_get_stats(r.ts, &st);
	ok_eq(st.handshakes_ok, 1);
	ok_eq(st.handshakes_failed, 0);
out:
	rig_free(&r);
}

TEST(require_export_name_closes)
{
	struct rig r;

	if (!rig_init(&r, NBD_TLS_REQUIRE))
		goto out;
	send_opt(&r, NBD_OPT_EXPORT_NAME, "disk", 4);
	pump(&r);
	ok(nbd_conn_finished(r.c));
	ok_eq(r.s2c.len - r.s2c.pos, 0); /* not a byte about the export */
out:
	rig_free(&r);
}

TEST(require_abort_served)
{
	struct rig r;
	char d[4096];

	if (!rig_init(&r, NBD_TLS_REQUIRE))
		goto out;
	send_opt(&r, NBD_OPT_ABORT, NULL, 0);
	ok_eq(reply(&r, NBD_OPT_ABORT, d), NBD_REP_ACK);
	ok(nbd_conn_finished(r.c));
out:
	rig_free(&r);
}

/* --tls=on: plain clients see the plain exports only; the TLS-only one after STARTTLS. */
TEST(on_tls_only_export)
{
	struct rig r;
	char d[4096];
	uint8_t b[64], rq[28], rp[16], data[512];

	if (!rig_init(&r, NBD_TLS_ON))
		goto out;
	send_opt(&r, NBD_OPT_LIST, NULL, 0);
	ok_eq(reply(&r, NBD_OPT_LIST, d), NBD_REP_SERVER);
	ok(!memcmp(d + 4, "disk", 4));
	ok_eq(reply(&r, NBD_OPT_LIST, d), NBD_REP_ACK); /* secret left out */
	send_opt(&r, NBD_OPT_GO, b, (uint32_t)info_req(b, "secret"));
	ok_eq(reply(&r, NBD_OPT_GO, d), NBD_REP_ERR_TLS_REQD);
	/* Structured replies negotiated in plain do not survive STARTTLS. */
	send_opt(&r, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	ok_eq(reply(&r, NBD_OPT_STRUCTURED_REPLY, d), NBD_REP_ACK);
	if (!start_tls(&r))
		goto out;
	send_opt(&r, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	ok_eq(reply(&r, NBD_OPT_STRUCTURED_REPLY, d), NBD_REP_ACK);
	send_opt(&r, NBD_OPT_GO, b, (uint32_t)info_req(b, "secret"));
	while (reply(&r, NBD_OPT_GO, d) == NBD_REP_INFO)
		;
	/* Transmission over TLS: a write and a read back. */
	memset(data, 0xa5, sizeof(data));
	nbd_put_be32(rq, NBD_REQUEST_MAGIC);
	nbd_put_be16(rq + 4, NBD_CMD_FLAG_FUA);
	nbd_put_be16(rq + 6, NBD_CMD_WRITE);
	nbd_put_be64(rq + 8, 7);
	nbd_put_be64(rq + 16, 4096);
	nbd_put_be32(rq + 24, sizeof(data));
	ok_eq(mbedtls_ssl_write(&r.ssl, rq, 28), 28);
	ok_eq(mbedtls_ssl_write(&r.ssl, data, sizeof(data)), (int)sizeof(data));
	if (!ok(recv_bytes(&r, rp, 16)))
		goto out;
	ok_eq(nbd_get_be32(rp), NBD_SIMPLE_REPLY_MAGIC);
	ok_eq(nbd_get_be32(rp + 4), 0);
	memset(data, 0, sizeof(data));
	ok_eq(blkdev_read(r.secret, 8, 1, data), 0);
	ok_eq(data[0], 0xa5);
	ok_eq(data[511], 0xa5);
	nbd_put_be16(rq + 6, NBD_CMD_DISC);
	ok_eq(mbedtls_ssl_write(&r.ssl, rq, 28), 28);
	pump(&r);
	ok(nbd_conn_finished(r.c));
	/* The server said close_notify. */
	ok_eq(mbedtls_ssl_read(&r.ssl, data, sizeof(data)), MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY);
out:
	rig_free(&r);
}

/*
 * Ciphertext the server left in a feed (it stopped wanting input with decrypted requests
 * still waiting for budget), then a poll once the output is written: the poll drives the
 * session on, and must not read the last feed's buffer, which the caller still owns (the
 * server read it through a NULL window: found by tests/fuzz/fuzz_tls.c). The rest is fed
 * again and every READ is answered.
 */
TEST(poll_after_partial_feed)
{
	enum { N = 8, LEN = 256 * 1024 };
	/* Input stops at 256 KiB of replies held: after each READ. */
	struct nbd_limits lim = { .max_conn_bytes = LEN };
	struct rig r;
	char d[4096];
	uint8_t b[64], rq[4 * 28];
	size_t fed = 0, answered = 0;
	static uint8_t data[LEN];

	rig_lim = &lim;
	if (!rig_init(&r, NBD_TLS_REQUIRE) || !start_tls(&r))
		goto out;
	send_opt(&r, NBD_OPT_GO, b, (uint32_t)info_req(b, "disk"));
	while (reply(&r, NBD_OPT_GO, d) == NBD_REP_INFO)
		;
	/* N reads of 256 KiB, four to a record: each record is one ssl_write. */
	for (int i = 0; i < N; i += 4) {
		for (int j = 0; j < 4; j++) {
			uint8_t *q = rq + 28 * j;

			nbd_put_be32(q, NBD_REQUEST_MAGIC);
			nbd_put_be16(q + 4, 0);
			nbd_put_be16(q + 6, NBD_CMD_READ);
			nbd_put_be64(q + 8, (uint64_t)(i + j));
			nbd_put_be64(q + 16, 0);
			nbd_put_be32(q + 24, LEN);
		}
		ok_eq(mbedtls_ssl_write(&r.ssl, rq, sizeof(rq)), (int)sizeof(rq));
	}
	/* Feed it all at once, then write the output and poll before feeding the rest. */
	for (int round = 0; round < 1000 && answered < (size_t)N * (16 + LEN); round++) {
		struct nbd_iov iov[16];
		unsigned n;
		size_t k;

		fed += nbd_conn_feed(r.c, r.c2s.b + r.c2s.pos + fed, r.c2s.len - r.c2s.pos - fed);
		while ((k = nbd_conn_output(r.c, 0, iov, 16, &n)) != 0) {
			for (unsigned i = 0; i < n; i++)
				q_put(&r.s2c, iov[i].base, iov[i].len);
			nbd_conn_output_done(r.c, k);
		}
		nbd_server_poll(r.srv);
		for (;;) {
			int got = mbedtls_ssl_read(&r.ssl, data, sizeof(data));

			if (got <= 0)
				break;
			answered += (size_t)got;
		}
	}
	ok_eq(answered, (size_t)N * (16 + LEN));
	ok_eq(r.c2s.pos + fed, r.c2s.len);
out:
	rig_lim = NULL;
	rig_free(&r);
}

/*
 * A client that sends plain options right after STARTTLS, without waiting for the ACK: after
 * the ACK every byte is TLS, so they are a broken handshake. The connection closes and the
 * option is never answered in plain.
 */
TEST(data_after_starttls_before_ack_is_tls)
{
	struct rig r;
	char d[4096];
	uint8_t h[16];

	if (!rig_init(&r, NBD_TLS_REQUIRE))
		goto out;
	nbd_put_be64(h, NBD_OPT_MAGIC);
	nbd_put_be32(h + 8, NBD_OPT_STARTTLS);
	nbd_put_be32(h + 12, 0);
	q_put(&r.c2s, h, 16);
	nbd_put_be32(h + 8, NBD_OPT_LIST);
	q_put(&r.c2s, h, 16);
	ok_eq(reply(&r, NBD_OPT_STARTTLS, d), NBD_REP_ACK);
	pump(&r);
	ok(nbd_conn_finished(r.c));
	/* Only a TLS alert may follow (content type 21), never an option reply. */
	ok(r.s2c.len == r.s2c.pos || r.s2c.b[r.s2c.pos] == 21);
	ok(strstr(last_log, "handshake failed") != NULL);
out:
	rig_free(&r);
}

/* The same with a real ClientHello pipelined behind STARTTLS: that is valid TLS, it works. */
TEST(client_hello_pipelined_with_starttls)
{
	struct rig r;
	char d[4096];
	uint8_t h[16];

	if (!rig_init(&r, NBD_TLS_REQUIRE))
		goto out;
	nbd_put_be64(h, NBD_OPT_MAGIC);
	nbd_put_be32(h + 8, NBD_OPT_STARTTLS);
	nbd_put_be32(h + 12, 0);
	q_put(&r.c2s, h, 16);
	if (!client_setup(&r, "alice", ALICE_KEY, sizeof(ALICE_KEY)))
		goto out;
	/* The ClientHello goes into the queue before the server has seen the option at all. */
	ok_eq(mbedtls_ssl_handshake(&r.ssl), MBEDTLS_ERR_SSL_WANT_READ);
	r.tls = false;
	ok_eq(reply(&r, NBD_OPT_STARTTLS, d), NBD_REP_ACK);
	r.tls = true;
	ok_eq(client_handshake(&r), 0);
	send_opt(&r, NBD_OPT_LIST, NULL, 0);
	ok_eq(reply(&r, NBD_OPT_LIST, d), NBD_REP_SERVER);
out:
	rig_free(&r);
}

TEST(wrong_key_refused)
{
	static const unsigned char bad[32] = { 1 };
	struct tls_server_stats st;
	struct rig r;
	char d[4096];

	if (!rig_init(&r, NBD_TLS_REQUIRE))
		goto out;
	send_opt(&r, NBD_OPT_STARTTLS, NULL, 0);
	ok_eq(reply(&r, NBD_OPT_STARTTLS, d), NBD_REP_ACK);
	if (!client_setup(&r, "alice", bad, sizeof(bad)))
		goto out;
	ok(client_handshake(&r) != 0);
	pump(&r);
	ok(nbd_conn_finished(r.c));
	ok(strstr(last_log, "handshake failed (PSK identity 'alice')") != NULL);
	/* Counted for the firmware's `tls`: one failed, none finished. */
	tls_server_get_stats(r.ts, &st);
	ok_eq(st.handshakes_failed, 1);
	ok_eq(st.handshakes_ok, 0);
out:
	rig_free(&r);
}

TEST(unknown_identity_refused)
{
	struct rig r;
	char d[4096];

	if (!rig_init(&r, NBD_TLS_REQUIRE))
		goto out;
	send_opt(&r, NBD_OPT_STARTTLS, NULL, 0);
	ok_eq(reply(&r, NBD_OPT_STARTTLS, d), NBD_REP_ACK);
	if (!client_setup(&r, "mallory", ALICE_KEY, sizeof(ALICE_KEY)))
		goto out;
	ok(client_handshake(&r) != 0);
	pump(&r);
	ok(nbd_conn_finished(r.c));
	ok(strstr(last_log, "'mallory'") != NULL);
out:
	rig_free(&r);
}

/* No entropy at start-up: no TLS server. Entropy lost later: STARTTLS refused, plainly said. */
TEST(entropy_failure_refuses_tls)
{
	struct tls_server_opts to = { .entropy = test_entropy };
	struct tls_server *ts = NULL;
	struct rig r;
	char err[200], d[4096];

	entropy_calls = 0;
	entropy_fail_after = 0;
	ok_eq(tls_server_create(&to, &ts, err, sizeof(err)), -EIO);
	ok(strstr(err, "no entropy source") && strstr(err, "TLS refused"));
	entropy_fail_after = -1;
	if (!rig_init(&r, NBD_TLS_REQUIRE))
		goto out;
	entropy_calls = 0;
	entropy_fail_after = 0;
	send_opt(&r, NBD_OPT_STARTTLS, NULL, 0);
	ok_eq(reply(&r, NBD_OPT_STARTTLS, d), NBD_REP_ERR_PLATFORM);
	ok(strstr(d, "no entropy source") != NULL);
	ok(!nbd_conn_finished(r.c));
out:
	entropy_fail_after = -1;
	rig_free(&r);
}

TEST(psk_file_parsing)
{
	static const struct {
		const char *text, *err;
	} bad[] = {
		{ "", "no keys" },
		{ "\n\n", "no keys" },
		{ "alice\n", "line 1: no ':'" },
		{ "alice:00112233445566778899aabbccddeeff\nbob:0011\n", "line 2: key shorter" },
		{ "a:00112233445566778899aabbccddeeff0\n", "line 1: key has an odd" },
		{ "a:00112233445566778899aabbccddeegg\n", "line 1: key is not hex" },
		{ ":00112233445566778899aabbccddeeff\n", "line 1: empty identity" },
		{ "a b:00112233445566778899aabbccddeeff\n", "line 1: identity has a space" },
		{ "a:00112233445566778899aabbccddeeff\r\n", "line 1: carriage return" },
		{ "a:b:00112233445566778899aabbccddeeff\n", "line 1: more than one ':'" },
		{ "\na:00112233445566778899aabbccddeeff\na:00112233445566778899aabbccddeeff\n",
		  "line 3: identity 'a' appears twice" },
		{ "a:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\n",
		  "line 1: key longer than 32 bytes" },
	};
	struct tls_psk_keys k;
	char err[200];

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ok_eq(tls_psk_parse(bad[i].text, strlen(bad[i].text), &k, err, sizeof(err)),
		      -EINVAL);
		if (!ok(strstr(err, bad[i].err)))
			fail("case %u: '%s'", i, err);
		/* Never the key material in a message. */
		ok(!strstr(err, "0011223344"));
		ok_eq(k.n, 0);
	}
	ok_eq(tls_psk_parse(KEYS, strlen(KEYS), &k, err, sizeof(err)), 0);
	ok_eq(k.n, 2);
	ok(tls_psk_find(&k, "alice", 5) && tls_psk_find(&k, "alice", 5)->key_len == 32 &&
	   !memcmp(tls_psk_find(&k, "alice", 5)->key, ALICE_KEY, 32));
	ok(tls_psk_find(&k, "bob", 3) && tls_psk_find(&k, "bob", 3)->key_len == 16);
	ok(!tls_psk_find(&k, "alic", 4));
	tls_psk_free(&k);
	/* No newline at the end is fine; upper-case hex too. */
	ok_eq(tls_psk_parse("z:00112233445566778899AABBCCDDEEFF", 34, &k, err, sizeof(err)), 0);
	ok_eq(k.n, 1);
	tls_psk_free(&k);
}

/* ---- TLS and allow lists together ------------------------------------------------------- */

static char nbd_log[256];

/* Export @name's allow list: the one prefix @text. */
static bool allow_only(struct rig *r, const char *name, const char *text)
{
	struct net_prefix p;

	return ok_eq(net_prefix_parse(text, &p, NULL), 0) &&
	       ok_eq(nbd_server_set_export_allow(r->srv, name, &p, 1), 0);
}

static uint64_t refused_policy(struct rig *r)
{
	struct nbd_server_stats st;

	nbd_server_stats(r->srv, &st);
	return st.refused_policy;
}

/* GO on @name succeeds: INFO replies, then ACK. */
static bool go_ok(struct rig *r, const char *name)
{
	char d[4096];
	uint8_t b[64];
	uint32_t t;

	send_opt(r, NBD_OPT_GO, b, (uint32_t)info_req(b, name));
	while ((t = reply(r, NBD_OPT_GO, d)) == NBD_REP_INFO)
		;
	return ok_eq(t, NBD_REP_ACK);
}

/* A rig whose connection comes from 192.0.2.7:40000, refusals logged into nbd_log. */
static bool rig_init_from(struct rig *r, enum nbd_tls_mode mode)
{
	static struct nbd_peer peer = { .port = 40000 };
	bool ok;

	if (!ok_eq(net_addr_parse("192.0.2.7", &peer.addr), 0))
		return false;
	rig_peer = &peer;
	ok = rig_init(r, mode);
	rig_peer = NULL;
	nbd_log[0] = '\0';
	if (ok)
		nbd_server_set_log(r->srv, logline, nbd_log);
	return ok;
}

/*
 * --tls=require with an allow list that leaves the client out: before STARTTLS every option
 * gets ERR_TLS_REQD and the allow list is not consulted (nothing counted or logged, the export
 * not named); over TLS the allow list decides (ERR_POLICY, counted and logged; LIST hides it).
 */
TEST(require_before_allow_list)
{
	struct rig r;
	char d[4096];
	uint8_t b[64];

	if (!rig_init_from(&r, NBD_TLS_REQUIRE) || !allow_only(&r, "disk", "10.0.0.0/8") ||
	    !allow_only(&r, "secret", "192.0.2.0/24"))
		goto out;
	send_opt(&r, NBD_OPT_GO, b, (uint32_t)info_req(b, "disk"));
	ok_eq(reply(&r, NBD_OPT_GO, d), NBD_REP_ERR_TLS_REQD);
	send_opt(&r, NBD_OPT_INFO, b, (uint32_t)info_req(b, "disk"));
	ok_eq(reply(&r, NBD_OPT_INFO, d), NBD_REP_ERR_TLS_REQD);
	send_opt(&r, NBD_OPT_LIST, NULL, 0);
	ok_eq(reply(&r, NBD_OPT_LIST, d), NBD_REP_ERR_TLS_REQD);
	ok_eq(refused_policy(&r), 0);
	ok_eq(nbd_log[0], '\0');
	if (!start_tls(&r))
		goto out;
	/* LIST over TLS: only the export whose list takes the client. */
	send_opt(&r, NBD_OPT_LIST, NULL, 0);
	ok_eq(reply(&r, NBD_OPT_LIST, d), NBD_REP_SERVER);
	ok(!memcmp(d + 4, "secret", 6));
	ok_eq(reply(&r, NBD_OPT_LIST, d), NBD_REP_ACK);
	send_opt(&r, NBD_OPT_GO, b, (uint32_t)info_req(b, "disk"));
	ok_eq(reply(&r, NBD_OPT_GO, d), NBD_REP_ERR_POLICY);
	ok_eq(refused_policy(&r), 1);
	ok(strstr(nbd_log, "refused 192.0.2.7:40000: export 'disk'") != NULL);
	go_ok(&r, "secret");
out:
	rig_free(&r);
}

/*
 * --tls=on, a TLS-only export whose allow list leaves the client out: on the plain connection
 * it is refused for want of TLS (ERR_TLS_REQD, the allow list not consulted); over TLS for the
 * address (ERR_POLICY). A plain export whose list takes the client is served.
 */
TEST(on_tls_only_then_allow_list)
{
	struct rig r;
	char d[4096];
	uint8_t b[64];

	if (!rig_init_from(&r, NBD_TLS_ON) || !allow_only(&r, "secret", "10.0.0.0/8") ||
	    !allow_only(&r, "disk", "192.0.2.0/24"))
		goto out;
	send_opt(&r, NBD_OPT_GO, b, (uint32_t)info_req(b, "secret"));
	ok_eq(reply(&r, NBD_OPT_GO, d), NBD_REP_ERR_TLS_REQD);
	send_opt(&r, NBD_OPT_LIST, NULL, 0);
	ok_eq(reply(&r, NBD_OPT_LIST, d), NBD_REP_SERVER);
	ok(!memcmp(d + 4, "disk", 4));
	ok_eq(reply(&r, NBD_OPT_LIST, d), NBD_REP_ACK);
	ok_eq(refused_policy(&r), 0);
	ok_eq(nbd_log[0], '\0');
	if (!start_tls(&r))
		goto out;
	send_opt(&r, NBD_OPT_LIST, NULL, 0);
	ok_eq(reply(&r, NBD_OPT_LIST, d), NBD_REP_SERVER);
	ok(!memcmp(d + 4, "disk", 4));
	ok_eq(reply(&r, NBD_OPT_LIST, d), NBD_REP_ACK); /* secret: not for this address */
	send_opt(&r, NBD_OPT_GO, b, (uint32_t)info_req(b, "secret"));
	ok_eq(reply(&r, NBD_OPT_GO, d), NBD_REP_ERR_POLICY);
	ok_eq(refused_policy(&r), 1);
	ok(strstr(nbd_log, "export 'secret'") != NULL);
	go_ok(&r, "disk");
out:
	rig_free(&r);
}
