/* SPDX-License-Identifier: MIT */
/*
 * mbedTLS as we build it (mk/mbedtls.mk, net/tls/mbedtls_config.h), under ASan/UBSan:
 *
 * - PSK: the selftest the firmware runs too (net/tls/tls_selftest.c), with every PSK and
 *   ECDHE-PSK suite of the configuration, 256 KiB echoed (many records); a wrong key, an
 *   unknown identity and a failing entropy source make it fail.
 * - X.509: a CA, server and client certificates made here with mbedTLS's own x509write (the
 *   server's certificate and key go through PEM, as nbdkit's files would), then ECDHE-ECDSA
 *   and ECDHE-RSA handshakes where each side verifies the other (the server requires a
 *   client certificate), data both ways; an expired server certificate (the clock is read),
 *   a client certificate from another CA and a missing one are refused.
 * - The configuration itself: TLS 1.2 only, no file system, sockets or platform entropy.
 *
 * Entropy comes from getrandom() here; the product will take it from plat_random().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "mbedtls/ctr_drbg.h"
#include "mbedtls/ecp.h"
#include "mbedtls/entropy.h"
#include "mbedtls/error.h"
#include "mbedtls/pk.h"
#include "mbedtls/rsa.h"
#include "mbedtls/ssl.h"
#include "mbedtls/version.h"
#include "mbedtls/x509_crt.h"
#include "net/tls/tls_pair.h"
#include "net/tls/tls_selftest.h"
#include "tests/support/harness.h"

#define ECHO_BYTES (256u * 1024u)

static int host_entropy(void *ctx, unsigned char *buf, size_t len)
{
	size_t done = 0;

	(void)ctx;
	while (done < len) {
		ssize_t n = getrandom(buf + done, len - done, 0);

		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			done += (size_t)n;
	}
	return 0;
}

static int no_entropy(void *ctx, unsigned char *buf, size_t len)
{
	(void)ctx;
	(void)buf;
	(void)len;
	return -EIO;
}

static const unsigned char key_a[16] = { 0x4a, 0x1f, 0x09, 0x77, 0xc2, 0x3e, 0x55, 0x10,
					 0x8b, 0xd4, 0x61, 0x2a, 0xf0, 0x93, 0x0c, 0xee };
static const unsigned char key_b[16] = { 0x4a, 0x1f, 0x09, 0x77, 0xc2, 0x3e, 0x55, 0x10,
					 0x8b, 0xd4, 0x61, 0x2a, 0xf0, 0x93, 0x0c, 0xef };

static struct tls_selftest_psk psk_opts(const char *suite)
{
	return (struct tls_selftest_psk){
		.entropy = host_entropy,
		.identity = "alice",
		.client_key = key_a,
		.client_key_len = sizeof(key_a),
		.server_key = key_a,
		.server_key_len = sizeof(key_a),
		.suite = suite,
		.echo_bytes = ECHO_BYTES,
	};
}

/* ---- PSK (the firmware's selftest) --------------------------------------------------------- */

TEST(psk_default_suites)
{
	struct tls_selftest_psk o = psk_opts(NULL);
	struct tls_selftest_result r;
	int rc = tls_selftest_psk_run(&o, &r);

	if (!ok_eq(rc, 0))
		fail("rc %d client %d server %d: %s", rc, r.client_ret, r.server_ret, r.error);
	ok(strcmp(r.version, "TLSv1.2") == 0);
	/* With only a PSK, the first PSK suite of the list: forward secrecy first. */
	ok(strcmp(r.suite, "TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256") == 0);
	ok_eq(r.echoed, ECHO_BYTES);
}

TEST(psk_every_suite)
{
	static const char *const suites[] = {
		"TLS-PSK-WITH-AES-128-GCM-SHA256",
		"TLS-PSK-WITH-AES-256-GCM-SHA384",
		"TLS-PSK-WITH-CHACHA20-POLY1305-SHA256",
		"TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256",
		"TLS-ECDHE-PSK-WITH-AES-128-CBC-SHA256",
		"TLS-ECDHE-PSK-WITH-AES-256-CBC-SHA384",
	};

	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
		struct tls_selftest_psk o = psk_opts(suites[i]);
		struct tls_selftest_result r;
		int rc = tls_selftest_psk_run(&o, &r);

		if (!ok_eq(rc, 0) || !ok(strcmp(r.suite, suites[i]) == 0))
			fail("%s: rc %d negotiated '%s': %s", suites[i], rc, r.suite, r.error);
		ok_eq(r.echoed, ECHO_BYTES);
	}
}

TEST(psk_wrong_key_fails)
{
	struct tls_selftest_psk o = psk_opts(NULL);
	struct tls_selftest_result r;
	int rc;

	o.server_key = key_b; /* one bit apart */
	rc = tls_selftest_psk_run(&o, &r);
	ok_eq(rc, -EPROTO);
	/* The server sees the client's Finished fail to verify and says so. */
	ok(r.server_ret != 0);
	ok_eq(r.echoed, 0);
	ok(r.version[0] == '\0');
	ok(r.error[0] != '\0');

	o = psk_opts("TLS-PSK-WITH-AES-128-GCM-SHA256");
	o.server_key = key_b;
	ok_eq(tls_selftest_psk_run(&o, &r), -EPROTO);
}

TEST(psk_unknown_identity_fails)
{
	struct tls_selftest_psk o = psk_opts(NULL);
	struct tls_selftest_result r;

	/* The right key under a name the server does not know. */
	o.identity = "mallory";
	o.server_identity = "alice";
	ok_eq(tls_selftest_psk_run(&o, &r), -EPROTO);
	ok(r.server_ret != 0);
	ok_eq(r.echoed, 0);
}

TEST(psk_bad_arguments)
{
	struct tls_selftest_psk o = psk_opts("TLS-NO-SUCH-SUITE");
	struct tls_selftest_result r;

	ok_eq(tls_selftest_psk_run(&o, &r), -EINVAL);
	o = psk_opts(NULL);
	o.client_key_len = 0;
	ok_eq(tls_selftest_psk_run(&o, &r), -EINVAL);
	o = psk_opts(NULL);
	o.server_key_len = 33;
	ok_eq(tls_selftest_psk_run(&o, &r), -EINVAL);
}

TEST(psk_no_entropy_refused)
{
	struct tls_selftest_psk o = psk_opts(NULL);
	struct tls_selftest_result r;

	o.entropy = no_entropy;
	ok_eq(tls_selftest_psk_run(&o, &r), -EIO);
	ok(r.error[0] != '\0');
}

/* ---- X.509 ------------------------------------------------------------------------------------ */

/* One DRBG for the certificate tests, seeded from getrandom(). */
struct rng {
	mbedtls_entropy_context ent;
	mbedtls_ctr_drbg_context drbg;
};

static int rng_poll(void *data, unsigned char *out, size_t len, size_t *olen)
{
	*olen = len;
	return host_entropy(data, out, len) ? MBEDTLS_ERR_ENTROPY_SOURCE_FAILED : 0;
}

static int rng_init(struct rng *g)
{
	mbedtls_entropy_init(&g->ent);
	mbedtls_ctr_drbg_init(&g->drbg);
	if (mbedtls_entropy_add_source(&g->ent, rng_poll, NULL, 32, MBEDTLS_ENTROPY_SOURCE_STRONG))
		return -EIO;
	return mbedtls_ctr_drbg_seed(&g->drbg, mbedtls_entropy_func, &g->ent,
				     (const unsigned char *)"x509", 4)
		   ? -EIO
		   : 0;
}

static void rng_free(struct rng *g)
{
	mbedtls_ctr_drbg_free(&g->drbg);
	mbedtls_entropy_free(&g->ent);
}

enum key_kind { KEY_EC, KEY_RSA };

/* A key and its certificate. */
struct ident {
	mbedtls_pk_context key;
	mbedtls_x509_crt crt;
	char name[64]; /* subject, "CN=...,O=..." */
};

static int make_key(mbedtls_pk_context *pk, enum key_kind kind, struct rng *g)
{
	int r;

	mbedtls_pk_init(pk);
	r = mbedtls_pk_setup(
	    pk, mbedtls_pk_info_from_type(kind == KEY_RSA ? MBEDTLS_PK_RSA : MBEDTLS_PK_ECKEY));
	if (r)
		return r;
	if (kind == KEY_RSA)
		return mbedtls_rsa_gen_key(mbedtls_pk_rsa(*pk), mbedtls_ctr_drbg_random, &g->drbg,
					   2048, 65537);
	return mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*pk),
				   mbedtls_ctr_drbg_random, &g->drbg);
}

/*
 * Make @id's key and a certificate for it, signed by @issuer (NULL: self-signed, a CA),
 * valid from @from to @to (YYYYMMDDhhmmss). With @pem, the certificate and key are written
 * as PEM and parsed back, as a server reads nbdkit's server-cert.pem and server-key.pem.
 */
static int make_ident(struct ident *id, const char *cn, enum key_kind kind, struct ident *issuer,
		      const char *from, const char *to, int serial, int pem, struct rng *g)
{
	static unsigned char buf[8192];
	mbedtls_x509write_cert w;
	mbedtls_mpi sn;
	int r;

	snprintf(id->name, sizeof(id->name), "CN=%s,O=thinbox test", cn);
	mbedtls_x509_crt_init(&id->crt);
	r = make_key(&id->key, kind, g);
	if (r)
		return r;
	mbedtls_x509write_crt_init(&w);
	mbedtls_mpi_init(&sn);
	mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
	mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
	mbedtls_x509write_crt_set_subject_key(&w, &id->key);
	mbedtls_x509write_crt_set_issuer_key(&w, issuer ? &issuer->key : &id->key);
	r = mbedtls_mpi_lset(&sn, serial);
	if (!r)
		r = mbedtls_x509write_crt_set_serial(&w, &sn);
	if (!r)
		r = mbedtls_x509write_crt_set_subject_name(&w, id->name);
	if (!r)
		r = mbedtls_x509write_crt_set_issuer_name(&w, issuer ? issuer->name : id->name);
	if (!r)
		r = mbedtls_x509write_crt_set_validity(&w, from, to);
	if (!r)
		r = mbedtls_x509write_crt_set_basic_constraints(&w, issuer == NULL, -1);
	if (!r && !issuer)
		r = mbedtls_x509write_crt_set_key_usage(&w, MBEDTLS_X509_KU_KEY_CERT_SIGN);
	if (r)
		goto out;
	if (pem) {
		r = mbedtls_x509write_crt_pem(&w, buf, sizeof(buf), mbedtls_ctr_drbg_random,
					      &g->drbg);
		if (!r)
			r = mbedtls_x509_crt_parse(&id->crt, buf, strlen((char *)buf) + 1);
		if (!r)
			r = mbedtls_pk_write_key_pem(&id->key, buf, sizeof(buf));
		if (!r) {
			/* Replace the key by what the PEM text gives back. */
			mbedtls_pk_free(&id->key);
			mbedtls_pk_init(&id->key);
			r = mbedtls_pk_parse_key(&id->key, buf, strlen((char *)buf) + 1, NULL, 0);
		}
	} else {
		r = mbedtls_x509write_crt_der(&w, buf, sizeof(buf), mbedtls_ctr_drbg_random,
					      &g->drbg);
		if (r > 0)
			r = mbedtls_x509_crt_parse_der(&id->crt, buf + sizeof(buf) - r, (size_t)r);
	}
out:
	mbedtls_mpi_free(&sn);
	mbedtls_x509write_crt_free(&w);
	return r;
}

static void ident_free(struct ident *id)
{
	mbedtls_x509_crt_free(&id->crt);
	mbedtls_pk_free(&id->key);
}

#define VALID_FROM "20200101000000"
#define VALID_TO   "20491231235959"

struct x509_case {
	struct ident *server, *client; /* client NULL: the client sends no certificate */
	mbedtls_x509_crt *server_trusts, *client_trusts;
};

struct x509_outcome {
	int handshake, echo; /* tls_pair_handshake(), tls_pair_echo() */
	int client_ret, server_ret;
	uint32_t client_flags, server_flags; /* verification results */
	char suite[64], peer[128];	     /* negotiated suite; client cert's subject */
};

static void run_x509(struct rng *g, const struct x509_case *c, struct x509_outcome *o)
{
	mbedtls_ssl_config ccfg, scfg;
	struct tls_pair pair;
	int ret = 0;

	memset(o, 0, sizeof(*o));
	o->handshake = o->echo = -1;
	mbedtls_ssl_config_init(&ccfg);
	mbedtls_ssl_config_init(&scfg);
	if (mbedtls_ssl_config_defaults(&ccfg, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
					MBEDTLS_SSL_PRESET_DEFAULT) ||
	    mbedtls_ssl_config_defaults(&scfg, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
					MBEDTLS_SSL_PRESET_DEFAULT)) {
		fail("config defaults");
		goto out_cfg;
	}
	mbedtls_ssl_conf_rng(&ccfg, mbedtls_ctr_drbg_random, &g->drbg);
	mbedtls_ssl_conf_rng(&scfg, mbedtls_ctr_drbg_random, &g->drbg);
	/* Both sides verify: the client the server's chain and name, the server the client's. */
	mbedtls_ssl_conf_authmode(&ccfg, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_authmode(&scfg, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&ccfg, c->client_trusts, NULL);
	mbedtls_ssl_conf_ca_chain(&scfg, c->server_trusts, NULL);
	if (mbedtls_ssl_conf_own_cert(&scfg, &c->server->crt, &c->server->key) ||
	    (c->client && mbedtls_ssl_conf_own_cert(&ccfg, &c->client->crt, &c->client->key))) {
		fail("own cert");
		goto out_cfg;
	}
	if (tls_pair_init(&pair, &ccfg, &scfg, &ret) ||
	    mbedtls_ssl_set_hostname(&pair.client, "server.thinbox.test")) {
		fail("pair init %d", ret);
		goto out;
	}
	o->handshake = tls_pair_handshake(&pair, &o->client_ret, &o->server_ret);
	o->client_flags = mbedtls_ssl_get_verify_result(&pair.client);
	o->server_flags = mbedtls_ssl_get_verify_result(&pair.server);
	if (o->handshake == 0) {
		const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&pair.server);

		snprintf(o->suite, sizeof(o->suite), "%s",
			 mbedtls_ssl_get_ciphersuite(&pair.client));
		if (peer)
			mbedtls_x509_dn_gets(o->peer, sizeof(o->peer), &peer->subject);
		o->echo = tls_pair_echo(&pair, ECHO_BYTES, 77, &ret);
		if (o->echo)
			fail("echo %d, mbedTLS %d", o->echo, ret);
	}
out:
	tls_pair_free(&pair);
out_cfg:
	mbedtls_ssl_config_free(&ccfg);
	mbedtls_ssl_config_free(&scfg);
}

static const char *errtext(int code)
{
	static char buf[128];

	mbedtls_strerror(code, buf, sizeof(buf));
	return buf;
}

/* The CA, the server (EC or RSA, through PEM) and the client; another CA and its client. */
struct pki {
	struct rng g;
	struct ident ca, server_ec, server_rsa, client, other_ca, stranger, expired;
};

static int pki_make(struct pki *k)
{
	int r = rng_init(&k->g);

	if (!r)
		r = make_ident(&k->ca, "thinbox test CA", KEY_EC, NULL, VALID_FROM, VALID_TO, 1, 0,
			       &k->g);
	if (!r)
		r = make_ident(&k->server_ec, "server.thinbox.test", KEY_EC, &k->ca, VALID_FROM,
			       VALID_TO, 2, 1, &k->g);
	if (!r)
		r = make_ident(&k->server_rsa, "server.thinbox.test", KEY_RSA, &k->ca, VALID_FROM,
			       VALID_TO, 3, 1, &k->g);
	if (!r)
		r = make_ident(&k->client, "client-1", KEY_EC, &k->ca, VALID_FROM, VALID_TO, 4, 0,
			       &k->g);
	if (!r)
		r = make_ident(&k->other_ca, "some other CA", KEY_EC, NULL, VALID_FROM, VALID_TO, 1,
			       0, &k->g);
	if (!r)
		r = make_ident(&k->stranger, "client-1", KEY_EC, &k->other_ca, VALID_FROM, VALID_TO,
			       2, 0, &k->g);
	/* Expired in 2011: only a clock that works tells it from a good one. */
	if (!r)
		r = make_ident(&k->expired, "server.thinbox.test", KEY_EC, &k->ca, "20100101000000",
			       "20110101000000", 5, 0, &k->g);
	if (r)
		fail("making the certificates: %d (%s)", r, errtext(r));
	return r;
}

static void pki_free(struct pki *k)
{
	ident_free(&k->ca);
	ident_free(&k->server_ec);
	ident_free(&k->server_rsa);
	ident_free(&k->client);
	ident_free(&k->other_ca);
	ident_free(&k->stranger);
	ident_free(&k->expired);
	rng_free(&k->g);
}

TEST(x509_ecdsa_and_rsa_mutual)
{
	static struct pki k;
	struct x509_outcome o;

	if (pki_make(&k))
		goto out;
	run_x509(&k.g, &(struct x509_case){ &k.server_ec, &k.client, &k.ca.crt, &k.ca.crt }, &o);
	if (!ok_eq(o.handshake, 0))
		fail("ECDSA: client %s / server %s, flags %#x %#x", errtext(o.client_ret),
		     errtext(o.server_ret), o.client_flags, o.server_flags);
	ok(strncmp(o.suite, "TLS-ECDHE-ECDSA-WITH-", 21) == 0);
	ok_eq(o.echo, 0);
	ok_eq(o.client_flags, 0);
	ok_eq(o.server_flags, 0);
	/* The server knows who connected: the client certificate's subject. */
	if (!ok(strcmp(o.peer, "CN=client-1, O=thinbox test") == 0))
		fail("peer '%s'", o.peer);

	run_x509(&k.g, &(struct x509_case){ &k.server_rsa, &k.client, &k.ca.crt, &k.ca.crt }, &o);
	if (!ok_eq(o.handshake, 0))
		fail("RSA: client %s / server %s", errtext(o.client_ret), errtext(o.server_ret));
	ok(strncmp(o.suite, "TLS-ECDHE-RSA-WITH-", 19) == 0);
	ok_eq(o.echo, 0);
out:
	pki_free(&k);
}

TEST(x509_refusals)
{
	static struct pki k;
	struct x509_outcome o;

	if (pki_make(&k))
		goto out;
	/* An expired server certificate: the client's clock says 2011 is past. */
	run_x509(&k.g, &(struct x509_case){ &k.expired, &k.client, &k.ca.crt, &k.ca.crt }, &o);
	ok(o.handshake != 0);
	ok(o.client_ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
	if (!ok(o.client_flags & MBEDTLS_X509_BADCERT_EXPIRED))
		fail("client flags %#x", o.client_flags);

	/* A client certificate from a CA the server does not trust. */
	run_x509(&k.g, &(struct x509_case){ &k.server_ec, &k.stranger, &k.ca.crt, &k.ca.crt }, &o);
	ok(o.handshake != 0);
	ok(o.server_ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
	if (!ok(o.server_flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED))
		fail("server flags %#x", o.server_flags);

	/* No client certificate where one is required. */
	run_x509(&k.g, &(struct x509_case){ &k.server_ec, NULL, &k.ca.crt, &k.ca.crt }, &o);
	ok(o.handshake != 0);
	ok(o.server_ret != 0);

	/* The client does not trust the server's CA. */
	run_x509(&k.g, &(struct x509_case){ &k.server_ec, &k.client, &k.ca.crt, &k.other_ca.crt },
		 &o);
	ok(o.handshake != 0);
	ok(o.client_flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED);
out:
	pki_free(&k);
}

/* ---- The configuration ------------------------------------------------------------------- */

TEST(configuration)
{
	char v[32];

	mbedtls_version_get_string(v);
	ok(strncmp(v, "2.28.", 5) == 0);
	ok(strcmp(tls_library_version(), v) == 0);
#if defined(MBEDTLS_SSL_PROTO_TLS1_3_EXPERIMENTAL) || defined(MBEDTLS_SSL_PROTO_TLS1_1) ||         \
    defined(MBEDTLS_SSL_PROTO_TLS1) || defined(MBEDTLS_SSL_PROTO_SSL3)
	fail("a protocol version other than TLS 1.2 is enabled");
#endif
#if defined(MBEDTLS_FS_IO) || defined(MBEDTLS_NET_C) || !defined(MBEDTLS_NO_PLATFORM_ENTROPY)
	fail("file, socket or platform entropy code is enabled");
#endif
#if !defined(MBEDTLS_HAVE_TIME_DATE)
	fail("no date: certificate validity would not be checked");
#endif
}
