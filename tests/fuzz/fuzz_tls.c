/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: NBD_OPT_STARTTLS and the TLS session behind it (net/nbd/nbd_server.c over
 * net/tls/tls_server.c and mbedTLS), no sockets. The input picks the server's TLS mode, its
 * credentials and the scenario, then is what the client sends:
 *
 *   a) plain:  the whole body is the client's plain option stream (it may hold STARTTLS
 *              itself; whatever follows its ACK is then ciphertext);
 *   b) raw:    a plain option prefix, STARTTLS (a variant below), then the rest of the body as
 *              ciphertext: garbage records, truncated or mutated ClientHellos, bad versions,
 *              wrong PSK identities (the corpus holds recorded client flights to mutate);
 *   c) client: a plain option prefix, STARTTLS, then a real mbedTLS client (credentials and
 *              suites chosen by the input, randomness from the input) completes the handshake
 *              and sends the rest of the body as the encrypted NBD stream (options and
 *              transmission), misbehaving at a point the input chooses: close_notify early,
 *              the ciphertext cut short, a ciphertext byte flipped.
 *
 * STARTTLS variants: plain, with data first (ERR_INVALID), twice back to back (the second is
 * plain bytes where the handshake belongs), the client's first flight pipelined behind it
 * before the ACK, and STARTTLS again once TLS is up.
 *
 * Header (9 bytes), then the body:
 *   [0] bits 0-1 mode (0 off, 1 on, 2-3 require); bit 2: export "fzdisk" TLS-only too;
 *       bits 3-4 credentials (0 PSK, 1 X.509, 2 both, 3 both and client certificates
 *       required); bit 5: the entropy source dies after start-up (STARTTLS: ERR_PLATFORM)
 *   [1] bits 0-1 scenario (0 a, 1 b, 2-3 c); bits 2-4 STARTTLS variant (0-4, else 0);
 *       bit 5: the client's flags are the prefix's first 4 bytes instead of FIXED_NEWSTYLE |
 *       NO_ZEROES
 *   [2] length of the plain prefix (b, c)
 *   [3] client (c): bits 0-1 credential (0 alice's key, 1 alice with a wrong key, 2 an
 *       unknown identity, 3 X.509), bits 2-3 suites (all, PSK-AES-GCM, PSK-ChaCha20,
 *       ECDHE-PSK-CBC / ECDHE-ECDSA), bit 4 present a client certificate, bit 5 P-256
 *       before X25519
 *   [4] misbehaviour (c): 0 none, 1 close_notify after K plaintext bytes, 2 the ciphertext
 *       stops after K bytes, 3 the ciphertext byte at K is flipped; else none
 *   [5,6] K (big-endian)
 *   [7] seed: the server's entropy, the client's randomness, the chunk sizes
 *   [8] reserved (0)
 *
 * Randomness is the input's: the server's entropy source (struct tls_server_opts.entropy, the
 * seam the unit tests use too) and the client's RNG are a generator seeded from [7], and the
 * fuzz build's mbedTLS reads a fixed clock (mbedtls_config.h, THINBOX_FUZZING), so one input
 * is one run and a recorded client flight replays in b).
 *
 * Invariants (abort() on violation; ASan/UBSan for the rest, leaks included):
 *   - feeding always ends, and at the end of the input with nothing in flight the connection
 *     is finished;
 *   - the server's output parses: the greeting, fixed-newstyle option replies, and from
 *     STARTTLS's ACK on nothing but TLS records (no plaintext after the ACK);
 *   - under require, before TLS: every reply is an ACK or an error, and no export name or
 *     description appears in the plaintext output;
 *   - under require, when no handshake completed, neither device's bytes changed;
 *   - a plain LIST never names the TLS-only export, and with TLS off ERR_TLS_REQD is never
 *     sent (proto.md);
 *   - c) with a well-behaved client that completed its handshake, the client never sees a
 *     fatal alert or a bad record from the server.
 *
 * FUZZ_TLS_VERBOSE set: the server's TLS log and a line per run on stderr (what
 * tests/fuzz/fuzz_tls.t checks the seeds with).
 * FUZZ_TLS_RECORD=FILE (corpus making only): c) writes the client's ciphertext after the ACK
 * to FILE, for b) seeds that replay a whole session.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "host/hostdev.h"
#include "net/nbd/nbd_proto.h"
#include "net/nbd/nbd_server.h"
#include "net/tls/tls_server.h"

#include "mbedtls/ecp.h"
#include "mbedtls/pk.h"
#include "mbedtls/ssl.h"
#include "mbedtls/x509_crt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define HDR	      9
#define DISK_BLOCKS   256 /* 128 KiB each */
#define Q_MAX	      (16u << 20)
#define MAX_ROUNDS    4096
#define SERVER_NAME   "thinbox fuzz server"
#define FUZZ_NOW      1780000000 /* 2026-05-28: inside the certificates' validity */
#define EXPORT_DISK   "fzdisk"
#define EXPORT_SECRET "fzsecret"
#define EXPORT_DESC   "fzdescription"

static const char KEYS[] =
    "alice:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
    "bob:00112233445566778899aabbccddeeff\n";
static const unsigned char ALICE_KEY[32] = { 0,	 1,  2,	 3,  4,	 5,  6,	 7,  8,	 9,  10,
					     11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
					     22, 23, 24, 25, 26, 27, 28, 29, 30, 31 };

time_t thinbox_fuzz_time(time_t *t)
{
	if (t)
		*t = FUZZ_NOW;
	return FUZZ_NOW;
}

/* ---- Deterministic randomness -------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void fill(uint64_t *s, unsigned char *out, size_t len)
{
	while (len) {
		uint64_t v = splitmix(s);
		size_t k = MIN(len, sizeof(v));

		memcpy(out, &v, k);
		out += k;
		len -= k;
	}
}

static bool entropy_dead;

/* The server's entropy source: the input's generator, or dead once start-up is over. */
static int fuzz_entropy(void *buf, size_t len)
{
	if (entropy_dead)
		return -EIO;
	fill(&rng_state, buf, len);
	return 0;
}

/* The client's (and the certificate maker's) RNG for mbedTLS. */
static int fuzz_rng(void *p, unsigned char *out, size_t len)
{
	fill(p, out, len);
	return 0;
}

/* ---- X.509, made once at start-up ---------------------------------------------------------- */

struct ident {
	mbedtls_pk_context key;
	mbedtls_x509_crt crt;
	unsigned char crt_pem[4096], key_pem[2048];
};

static struct ident ca, server, client;

/* @id's EC key and a certificate signed by @issuer (NULL: self-signed CA), as PEM and parsed. */
static int make_ident(struct ident *id, const char *subject, struct ident *issuer,
		      const char *issuer_name, uint64_t *g)
{
	mbedtls_x509write_cert w;
	mbedtls_mpi sn;
	int r;

	mbedtls_pk_init(&id->key);
	mbedtls_x509_crt_init(&id->crt);
	r = mbedtls_pk_setup(&id->key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
	if (!r)
		r = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(id->key), fuzz_rng,
					g);
	if (r)
		return r;
	mbedtls_x509write_crt_init(&w);
	mbedtls_mpi_init(&sn);
	mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
	mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
	mbedtls_x509write_crt_set_subject_key(&w, &id->key);
	mbedtls_x509write_crt_set_issuer_key(&w, issuer ? &issuer->key : &id->key);
	r = mbedtls_mpi_lset(&sn, issuer ? 2 : 1);
	if (!r)
		r = mbedtls_x509write_crt_set_serial(&w, &sn);
	if (!r)
		r = mbedtls_x509write_crt_set_subject_name(&w, subject);
	if (!r)
		r = mbedtls_x509write_crt_set_issuer_name(&w, issuer ? issuer_name : subject);
	if (!r)
		r = mbedtls_x509write_crt_set_validity(&w, "20200101000000", "20491231235959");
	if (!r)
		r = mbedtls_x509write_crt_set_basic_constraints(&w, issuer == NULL, -1);
	if (!r)
		r = mbedtls_x509write_crt_pem(&w, id->crt_pem, sizeof(id->crt_pem), fuzz_rng, g);
	if (!r)
		r = mbedtls_pk_write_key_pem(&id->key, id->key_pem, sizeof(id->key_pem));
	if (!r)
		r = mbedtls_x509_crt_parse(&id->crt, id->crt_pem, strlen((char *)id->crt_pem) + 1);
	mbedtls_mpi_free(&sn);
	mbedtls_x509write_crt_free(&w);
	return r;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	uint64_t g = 0x7468696e626f78ull; /* fixed: the same certificates every run */

	if (make_ident(&ca, "CN=thinbox fuzz CA", NULL, NULL, &g) ||
	    make_ident(&server, "CN=" SERVER_NAME, &ca, "CN=thinbox fuzz CA", &g) ||
	    make_ident(&client, "CN=alice", &ca, "CN=thinbox fuzz CA", &g)) {
		fprintf(stderr, "fuzz_tls: cannot make the test certificates\n");
		abort();
	}
	return 0;
}

/* ---- Byte queues ---------------------------------------------------------------------------- */

/* Bytes one side wrote; @pos is how far the reader got. Compacted as readers move on. */
struct q {
	uint8_t *b;
	size_t len, cap;
};

static void q_put(struct q *q, const void *p, size_t n)
{
	if (q->len + n > q->cap) {
		size_t cap = MAX(q->cap * 2, q->len + n + 4096);

		if (cap > Q_MAX)
			abort(); /* the server's output is bounded by max_conn_bytes: a runaway */
		q->b = realloc(q->b, cap);
		if (!q->b)
			abort();
		q->cap = cap;
	}
	memcpy(q->b + q->len, p, n);
	q->len += n;
}

/* Drop the first @n bytes. */
static void q_drop(struct q *q, size_t n)
{
	memmove(q->b, q->b + n, q->len - n);
	q->len -= n;
}

/* ---- The server's output, checked as it comes ------------------------------------------- */

enum out_state { OUT_GREETING, OUT_REPLIES, OUT_TLS, OUT_OTHER };

struct run {
	const uint8_t *d;
	int mode; /* enum nbd_tls_mode */
	struct nbd_server *srv;
	struct tls_server *ts;
	struct nbd_conn *c;
	struct q c2s;	  /* client to server, not yet fed */
	struct q s2c;	  /* server to client, from @parsed on unchecked */
	size_t parsed;	  /* s2c bytes checked */
	size_t cli_pos;	  /* s2c bytes the TLS client has read (c) */
	size_t tls_start; /* s2c offset of the first TLS byte (after the ACK), when OUT_TLS */
	size_t plain_out; /* plaintext bytes the server sent before TLS, when OUT_TLS */
	enum out_state st;
	bool handshake_done; /* the server logged a completed handshake */
	uint32_t chunk_seed;
	size_t fed;   /* ciphertext bytes fed after the ACK (c) */
	size_t cut;   /* c: stop feeding ciphertext at this count (SIZE_MAX: never) */
	size_t flip;  /* c: flip the ciphertext byte at this count (SIZE_MAX: never) */
	FILE *record; /* FUZZ_TLS_RECORD */
	bool use_client;
	mbedtls_ssl_context ssl;
	mbedtls_ssl_config conf;
	uint64_t cli_rng;
};

/* FUZZ_TLS_VERBOSE set: the server's TLS log and a summary of each run on stderr. */
static bool verbose;

static void server_log(void *ctx, const char *line)
{
	struct run *r = ctx;

	if (verbose)
		fprintf(stderr, "server: %s\n", line);
	/* A completed handshake logs its version first ("tls: TLSv1.2 ..."). */
	if (!strncmp(line, "tls: TLSv", 9))
		r->handshake_done = true;
}

static bool contains(const uint8_t *p, size_t n, const char *s)
{
	return memmem(p, n, s, strlen(s)) != NULL;
}

/* Check what the server sent since the last call; abort() on a broken invariant. */
static void check_output(struct run *r)
{
	for (;;) {
		const uint8_t *p = r->s2c.b + r->parsed;
		size_t avail = r->s2c.len - r->parsed;

		switch (r->st) {
		case OUT_GREETING:
			if (avail < 18)
				return;
			if (nbd_get_be64(p) != NBD_MAGIC || nbd_get_be64(p + 8) != NBD_OPT_MAGIC)
				abort();
			r->parsed += 18;
			r->st = OUT_REPLIES;
			break;
		case OUT_REPLIES: {
			uint32_t opt, type, len;

			if (avail < 8)
				return;
			if (nbd_get_be64(p) != NBD_REP_MAGIC) {
				/*
				 * Not an option reply: EXPORT_NAME's answer and transmission, which
				 * require never reaches in plain.
				 */
				if (r->mode == NBD_TLS_REQUIRE)
					abort();
				r->st = OUT_OTHER;
				break;
			}
			if (avail < 20)
				return;
			opt = nbd_get_be32(p + 8);
			type = nbd_get_be32(p + 12);
			len = nbd_get_be32(p + 16);
			if (avail < 20 + (size_t)len)
				return;
			if (r->mode == NBD_TLS_REQUIRE) {
				/* FORCEDTLS: nothing about the exports before TLS. */
				if (type != NBD_REP_ACK && !(type & NBD_REP_FLAG_ERROR))
					abort();
				if (contains(p + 20, len, EXPORT_DISK) ||
				    contains(p + 20, len, EXPORT_SECRET) ||
				    contains(p + 20, len, EXPORT_DESC))
					abort();
			}
			if (r->mode == NBD_TLS_OFF && type == NBD_REP_ERR_TLS_REQD)
				abort(); /* NOTLS never sends it (proto.md) */
			/* A plain LIST never shows the TLS-only export (TLS off: there is none). */
			if (r->mode != NBD_TLS_OFF && type == NBD_REP_SERVER &&
			    contains(p + 20, len, EXPORT_SECRET))
				abort();
			r->parsed += 20 + len;
			if (opt == NBD_OPT_STARTTLS && type == NBD_REP_ACK) {
				if (r->mode == NBD_TLS_OFF)
					abort();
				r->st = OUT_TLS;
				r->tls_start = r->parsed;
				r->plain_out = r->parsed;
				r->cli_pos = r->parsed;
			}
			break;
		}
		case OUT_TLS: {
			size_t len;

			/*
			 * From the ACK on: TLS records, nothing in plain. Version 3.x, except in an
			 * alert: refusing a ClientHello's bad version, mbedTLS 2.28 writes the
			 * client's own version bytes into the alert's record header.
			 */
			if (avail < 5)
				return;
			if (p[0] < 20 || p[0] > 23 || (p[1] != 3 && p[0] != 21)) {
				if (verbose)
					fprintf(stderr,
						"not a TLS record: %02x %02x %02x %02x %02x\n",
						p[0], p[1], p[2], p[3], p[4]);
				abort();
			}
			len = (size_t)p[3] << 8 | p[4];
			if (len > 16384 + 2048)
				abort();
			if (avail < 5 + len)
				return;
			r->parsed += 5 + len;
			break;
		}
		case OUT_OTHER:
			r->parsed = r->s2c.len;
			return;
		}
	}
}

/* Take the server's output into s2c and check it; drop what every reader is done with. */
static size_t drain(struct run *r)
{
	struct nbd_iov iov[8];
	unsigned n;
	size_t total, moved = 0;

	while ((total = nbd_conn_output(r->c, 0, iov, 8, &n)) != 0) {
		for (unsigned i = 0; i < n; i++)
			q_put(&r->s2c, iov[i].base, iov[i].len);
		nbd_conn_output_done(r->c, total);
		moved += total;
	}
	check_output(r);
	{
		size_t keep =
		    r->use_client && r->st == OUT_TLS ? MIN(r->parsed, r->cli_pos) : r->parsed;

		if (keep > 64 * 1024) {
			q_drop(&r->s2c, keep);
			r->parsed -= keep;
			r->cli_pos -= MIN(r->cli_pos, keep);
			r->tls_start -= MIN(r->tls_start, keep);
		}
	}
	return moved;
}

static size_t next_chunk(struct run *r)
{
	r->chunk_seed = r->chunk_seed * 1103515245u + 12345u;
	return 1 + (r->chunk_seed >> 16) % 1500;
}

/*
 * Feed what c2s holds, in chunks, polling and draining between them; with @tls_phase the
 * client's misbehaviour applies (cut, flip) and the bytes may be recorded. Bounded.
 */
static void pump(struct run *r, bool tls_phase)
{
	for (int round = 0; round < MAX_ROUNDS; round++) {
		size_t moved = 0;

		if (r->c2s.len && !nbd_conn_finished(r->c)) {
			size_t chunk = next_chunk(r), k;

			chunk =
			    MIN(chunk, r->c2s.len); /* MIN() evaluates twice: not next_chunk() */

			if (tls_phase) {
				if (r->fed >= r->cut) {
					r->c2s.len = 0; /* the rest never arrives */
					chunk = 0;
				} else {
					chunk = MIN(chunk, r->cut - r->fed);
				}
				if (r->flip >= r->fed && r->flip < r->fed + chunk) {
					r->c2s.b[r->flip - r->fed] ^= 0x40;
					r->flip = SIZE_MAX; /* once, even if the feed takes less */
				}
			}
			k = chunk ? nbd_conn_feed(r->c, r->c2s.b, chunk) : 0;
			if (tls_phase && r->record && k)
				fwrite(r->c2s.b, 1, k, r->record);
			if (tls_phase)
				r->fed += k;
			q_drop(&r->c2s, k);
			moved += k;
		}
		nbd_server_poll(r->srv);
		moved += drain(r);
		/* A transport polls again once it has written the output (room for more). */
		nbd_server_poll(r->srv);
		moved += drain(r);
		if (!moved && !nbd_server_busy(r->srv))
			return;
		if (nbd_conn_finished(r->c)) {
			r->c2s.len = 0;
			return;
		}
	}
	abort(); /* feeding must end */
}

static void put_opt(struct q *q, uint32_t opt, const void *data, uint32_t len)
{
	uint8_t h[16];

	nbd_put_be64(h, NBD_OPT_MAGIC);
	nbd_put_be32(h + 8, opt);
	nbd_put_be32(h + 12, len);
	q_put(q, h, 16);
	if (len)
		q_put(q, data, len);
}

/* ---- The client (c) -------------------------------------------------------------------- */

static int cli_send(void *ctx, const unsigned char *buf, size_t len)
{
	struct run *r = ctx;

	q_put(&r->c2s, buf, len);
	return (int)len;
}

static int cli_recv(void *ctx, unsigned char *buf, size_t len)
{
	struct run *r = ctx;
	size_t n;

	/* Only what the output check has passed as TLS records. */
	if (r->st != OUT_TLS || r->cli_pos >= r->parsed)
		return MBEDTLS_ERR_SSL_WANT_READ;
	n = MIN(len, r->parsed - r->cli_pos);
	memcpy(buf, r->s2c.b + r->cli_pos, n);
	r->cli_pos += n;
	return (int)n;
}

static const mbedtls_ecp_group_id CURVES_X25519[] = { MBEDTLS_ECP_DP_CURVE25519,
						      MBEDTLS_ECP_DP_SECP256R1,
						      MBEDTLS_ECP_DP_NONE };
static const mbedtls_ecp_group_id CURVES_P256[] = { MBEDTLS_ECP_DP_SECP256R1,
						    MBEDTLS_ECP_DP_CURVE25519,
						    MBEDTLS_ECP_DP_NONE };
static const int SUITES_PSK_GCM[] = { MBEDTLS_TLS_PSK_WITH_AES_128_GCM_SHA256, 0 };
static const int SUITES_PSK_CHACHA[] = { MBEDTLS_TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, 0 };
static const int SUITES_ECDHE_PSK_CBC[] = { MBEDTLS_TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256, 0 };
static const int SUITES_PSK_ALL[] = { MBEDTLS_TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256,
				      MBEDTLS_TLS_PSK_WITH_AES_256_GCM_SHA384, 0 };
static const int SUITES_ECDSA[] = { MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, 0 };

static int client_setup(struct run *r)
{
	static const unsigned char wrong[32] = { 1 };
	unsigned cred = r->d[3] & 3, suites = r->d[3] >> 2 & 3;
	int rc;

	r->cli_rng = r->d[7] ^ 0xc11e47ull;
	mbedtls_ssl_config_init(&r->conf);
	mbedtls_ssl_init(&r->ssl);
	rc = mbedtls_ssl_config_defaults(&r->conf, MBEDTLS_SSL_IS_CLIENT,
					 MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
	if (rc)
		return rc;
	mbedtls_ssl_conf_rng(&r->conf, fuzz_rng, &r->cli_rng);
	/*
	 * Curves the client offers: X25519 (and P-256, the certificates' curve), or P-256 then
	 * X25519. Not the library's default list: the server would pick P-521, its first
	 * preference, several times slower under the sanitizers.
	 */
	mbedtls_ssl_conf_curves(&r->conf, r->d[3] & 0x20 ? CURVES_P256 : CURVES_X25519);
	if (cred == 3) {
		mbedtls_ssl_conf_authmode(&r->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
		mbedtls_ssl_conf_ca_chain(&r->conf, &ca.crt, NULL);
		if ((r->d[3] & 0x10) &&
		    (rc = mbedtls_ssl_conf_own_cert(&r->conf, &client.crt, &client.key)) != 0)
			return rc;
		if (suites)
			mbedtls_ssl_conf_ciphersuites(&r->conf, SUITES_ECDSA);
	} else {
		const char *id = cred == 2 ? "mallory" : "alice";

		rc = mbedtls_ssl_conf_psk(&r->conf, cred == 1 ? wrong : ALICE_KEY, 32,
					  (const unsigned char *)id, strlen(id));
		if (rc)
			return rc;
		if (suites == 1)
			mbedtls_ssl_conf_ciphersuites(&r->conf, SUITES_PSK_GCM);
		else if (suites == 2)
			mbedtls_ssl_conf_ciphersuites(&r->conf, SUITES_PSK_CHACHA);
		else if (suites == 3)
			mbedtls_ssl_conf_ciphersuites(&r->conf, SUITES_ECDHE_PSK_CBC);
		else
			mbedtls_ssl_conf_ciphersuites(&r->conf, SUITES_PSK_ALL);
	}
	rc = mbedtls_ssl_setup(&r->ssl, &r->conf);
	if (!rc && cred == 3)
		rc = mbedtls_ssl_set_hostname(&r->ssl, SERVER_NAME);
	if (rc)
		return rc;
	mbedtls_ssl_set_bio(&r->ssl, r, cli_send, cli_recv, NULL);
	return 0;
}

/* Read what the server sent; false on a fatal error (an alert, a bad record). */
static bool client_read(struct run *r)
{
	unsigned char buf[4096];

	for (int i = 0; i < MAX_ROUNDS; i++) {
		int k = mbedtls_ssl_read(&r->ssl, buf, sizeof(buf));

		if (k > 0)
			continue;
		return k == MBEDTLS_ERR_SSL_WANT_READ || k == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY ||
		       k == 0;
	}
	return true;
}

/* c) after the ACK: handshake, then the body through the session. */
static void run_client(struct run *r, const uint8_t *body, size_t n)
{
	unsigned misbehave = r->d[4];
	size_t k_at = (size_t)r->d[5] << 8 | r->d[6], pos = 0;
	int rc = MBEDTLS_ERR_SSL_WANT_READ;
	/* Misbehaviour 1-3 may bring an alert; any other value is a well-behaved client. */
	bool clean = misbehave == 0 || misbehave > 3;

	for (int i = 0; i < 64 && rc == MBEDTLS_ERR_SSL_WANT_READ; i++) {
		rc = mbedtls_ssl_handshake(&r->ssl);
		pump(r, true);
		if (nbd_conn_finished(r->c))
			break;
	}
	if (rc)
		rc = mbedtls_ssl_handshake(&r->ssl); /* the server's last flight may be in */
	if (rc)
		return; /* refused (a wrong key, a cut or flipped flight): the server closed */
	if ((r->d[1] >> 2 & 7) == 4) {
		/* STARTTLS again over TLS: ERR_INVALID, the session goes on. */
		uint8_t h[16];

		nbd_put_be64(h, NBD_OPT_MAGIC);
		nbd_put_be32(h + 8, NBD_OPT_STARTTLS);
		nbd_put_be32(h + 12, 0);
		if (mbedtls_ssl_write(&r->ssl, h, 16) != 16)
			abort();
	}
	while (pos < n && !nbd_conn_finished(r->c)) {
		/* Some writes span records (up to 24000 bytes); some queue behind the next one. */
		size_t chunk = next_chunk(r) * (r->chunk_seed >> 28 ? 1 : 16);
		bool hold = r->chunk_seed >> 27 & 1;
		int w;

		chunk = MIN(chunk, n - pos);
		if (misbehave == 1 && pos + chunk > k_at) {
			chunk = k_at > pos ? k_at - pos : 0;
			if (chunk && mbedtls_ssl_write(&r->ssl, body + pos, chunk) != (int)chunk)
				abort();
			mbedtls_ssl_close_notify(&r->ssl);
			pump(r, true);
			break;
		}
		w = mbedtls_ssl_write(&r->ssl, body + pos, chunk);
		if (w <= 0) {
			if (clean)
				abort(); /* the client's writes only queue: they cannot fail */
			break;		 /* after the server's fatal alert, the session is over */
		}
		pos += (size_t)w;
		if (hold && pos < n)
			continue;
		pump(r, true);
		if (!client_read(r) && clean)
			abort(); /* a well-behaved client never gets a fatal alert */
	}
	pump(r, true);
	if (clean && !client_read(r))
		abort();
}

/* ---- One input -------------------------------------------------------------------------- */

static void setup_server(struct run *r, struct blkdev *disk, struct blkdev *secret)
{
	struct nbd_limits lim = { .max_payload = 65536,
				  .max_conn_bytes = 256 * 1024,
				  .max_requests = 16,
				  .max_options = 32 };
	struct nbd_export_config ec = { .name = EXPORT_DISK, .description = EXPORT_DESC };
	struct tls_server_opts to = { .entropy = fuzz_entropy, .log = server_log, .log_ctx = r };
	struct nbd_tls_config tc = { .mode = NBD_TLS_OFF };
	unsigned creds = r->d[0] >> 3 & 3;
	char err[256];

	if (nbd_server_create(&lim, &r->srv))
		abort();
	if (r->mode != NBD_TLS_OFF) {
		if (tls_server_create(&to, &r->ts, err, sizeof(err)))
			abort();
		if (creds != 1 && tls_server_load_psk(r->ts, KEYS, strlen(KEYS), err, sizeof(err)))
			abort();
		if (creds != 0 && tls_server_load_x509(
				      r->ts, ca.crt_pem, strlen((char *)ca.crt_pem), server.crt_pem,
				      strlen((char *)server.crt_pem), server.key_pem,
				      strlen((char *)server.key_pem), creds == 3, err, sizeof(err)))
			abort();
		if (tls_server_nbd_config(r->ts, r->mode, &tc))
			abort();
	}
	if (nbd_server_set_tls(r->srv, &tc))
		abort();
	ec.dev = disk;
	ec.tls_only = (r->d[0] & 4) && r->mode != NBD_TLS_OFF;
	if (nbd_server_add_export(r->srv, &ec))
		abort();
	ec.name = EXPORT_SECRET;
	ec.dev = secret;
	ec.tls_only = r->mode != NBD_TLS_OFF;
	if (nbd_server_add_export(r->srv, &ec))
		abort();
	if (nbd_conn_create(r->srv, &r->c))
		abort();
	/* From here on the entropy source may be dead: STARTTLS's reseed then fails. */
	entropy_dead = (r->d[0] & 0x20) != 0;
}

static void pattern(uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(i * 7 + (i >> 9));
}

static bool same(struct blkdev *d, const uint8_t *want, uint8_t *tmp)
{
	return !blkdev_read(d, 0, DISK_BLOCKS, tmp) && !memcmp(tmp, want, DISK_BLOCKS * 512);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t size)
{
	static uint8_t orig[DISK_BLOCKS * 512], tmp[DISK_BLOCKS * 512];
	struct blkdev *disk, *secret;
	struct run r;
	const uint8_t *body;
	size_t n, prefix;
	unsigned scenario, variant;
	uint8_t flags[4];
	const char *rec = getenv("FUZZ_TLS_RECORD");

	verbose = getenv("FUZZ_TLS_VERBOSE") != NULL;

	if (size < HDR)
		return 0;
	memset(&r, 0, sizeof(r));
	r.d = d;
	r.mode = (d[0] & 3) == 0 ? NBD_TLS_OFF : (d[0] & 3) == 1 ? NBD_TLS_ON : NBD_TLS_REQUIRE;
	scenario = (d[1] & 3) == 3 ? 2 : d[1] & 3;
	variant = d[1] >> 2 & 7;
	if (variant > 4)
		variant = 0;
	r.chunk_seed = d[7] | 1u;
	r.cut = d[4] == 2 ? (size_t)d[5] << 8 | d[6] : SIZE_MAX;
	r.flip = d[4] == 3 ? (size_t)d[5] << 8 | d[6] : SIZE_MAX;
	rng_state = d[7] * 0x100000001b3ull;
	entropy_dead = false;
	body = d + HDR;
	n = size - HDR;
	prefix = scenario == 0 ? n : MIN(n, (size_t)d[2]);

	pattern(orig, sizeof(orig));
	if (memdisk_create(DISK_BLOCKS, 512, &disk) || memdisk_create(DISK_BLOCKS, 512, &secret))
		abort();
	if (blkdev_write(disk, 0, DISK_BLOCKS, orig) || blkdev_write(secret, 0, DISK_BLOCKS, orig))
		abort();
	setup_server(&r, disk, secret);
	r.use_client = scenario == 2 && r.mode != NBD_TLS_OFF;
	if (r.use_client && client_setup(&r))
		abort();
	if (r.use_client && rec)
		r.record = fopen(rec, "wb");

	/* The client's flags, then the plain prefix. */
	if ((d[1] & 0x20) && prefix >= 4) {
		q_put(&r.c2s, body, 4);
		body += 4, n -= 4, prefix -= 4;
	} else {
		nbd_put_be32(flags, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
		q_put(&r.c2s, flags, 4);
	}
	q_put(&r.c2s, body, prefix);
	body += prefix, n -= prefix;
	if (scenario != 0) {
		if (variant == 1)
			put_opt(&r.c2s, NBD_OPT_STARTTLS, "data", 4);
		put_opt(&r.c2s, NBD_OPT_STARTTLS, NULL, 0);
		if (variant == 2)
			put_opt(&r.c2s, NBD_OPT_STARTTLS, NULL, 0); /* plain where TLS belongs */
		if (variant == 3) {
			/* The first flight right behind STARTTLS, before its ACK. */
			if (r.use_client)
				mbedtls_ssl_handshake(&r.ssl);
			else
				q_put(&r.c2s, body, n), n = 0;
		}
	}
	pump(&r, false);
	if (scenario == 1) {
		q_put(&r.c2s, body, n);
		pump(&r, true);
	} else if (r.use_client && r.st == OUT_TLS) {
		run_client(&r, body, n);
	}

	/* Whatever is left in flight must come back and be answered, then the input ends. */
	for (int i = 0; nbd_server_busy(r.srv); i++) {
		if (i > MAX_ROUNDS)
			abort();
		nbd_server_poll(r.srv);
		drain(&r);
	}
	nbd_conn_input_closed(r.c);
	drain(&r);
	if (!nbd_conn_finished(r.c))
		abort(); /* end of input with nothing in flight must end the connection */
	if (r.mode == NBD_TLS_REQUIRE && !r.handshake_done &&
	    (!same(disk, orig, tmp) || !same(secret, orig, tmp)))
		abort(); /* plaintext changed a device under require */
	if (verbose)
		fprintf(stderr,
			"mode %d scenario %u variant %u: TLS %s, handshake %s, %zu plaintext bytes "
			"out before TLS, devices %s\n",
			r.mode, scenario, variant, r.st == OUT_TLS ? "started" : "not started",
			r.handshake_done ? "completed" : "not completed",
			r.st == OUT_TLS ? r.plain_out : r.parsed,
			same(disk, orig, tmp) && same(secret, orig, tmp) ? "unchanged" : "written");
	if (r.record)
		fclose(r.record);
	if (r.use_client) {
		mbedtls_ssl_free(&r.ssl);
		mbedtls_ssl_config_free(&r.conf);
	}
	nbd_conn_destroy(r.c);
	nbd_server_destroy(r.srv);
	tls_server_destroy(r.ts);
	blkdev_destroy(disk);
	blkdev_destroy(secret);
	free(r.c2s.b);
	free(r.s2c.b);
	return 0;
}
