/* SPDX-License-Identifier: MIT */
/*
 * The NBD server's TLS over mbedTLS (contract: tls_server.h). One mbedtls_ssl_config for
 * every connection; a session per STARTTLS whose BIO callbacks are the NBD connection's
 * buffers (nbd_tls_bio), so nothing here blocks or touches a socket.
 */
#include "net/tls/tls_server.h"
#include "net/tls/tls_psk.h"
#include "core/base/plat.h"

#include "mbedtls/ctr_drbg.h"
#include "mbedtls/entropy.h"
#include "mbedtls/error.h"
#include "mbedtls/pk.h"
#include "mbedtls/ssl.h"
#include "mbedtls/x509_crt.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tls_server {
	struct tls_server_opts opts;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_ssl_config conf;
	bool conf_ready;
	struct tls_psk_keys psk;
	bool have_x509, verify_peer;
	mbedtls_x509_crt ca, cert;
	mbedtls_pk_context key;
	struct tls_server_stats stats;
};

struct tls_sess {
	struct tls_server *srv;
	mbedtls_ssl_context ssl;
	struct nbd_tls_bio bio;
	bool done; /* handshake finished */
	char psk_identity[TLS_PSK_MAX_IDENTITY + 1];
	char desc[384];
};

static int default_entropy(void *buf, size_t len)
{
	return plat_random(buf, len);
}

/* mbedTLS's entropy source over opts.entropy: a strong source, or a failure (never weak). */
static int entropy_poll(void *data, unsigned char *out, size_t len, size_t *olen)
{
	struct tls_server *s = data;

	*olen = 0;
	if (s->opts.entropy(out, len))
		return MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
	*olen = len;
	return 0;
}

static void logf_line(struct tls_server *s, const char *fmt, const char *a, const char *b)
{
	char line[512];

	if (!s->opts.log)
		return;
	snprintf(line, sizeof(line), fmt, a, b);
	s->opts.log(s->opts.log_ctx, line);
}

int tls_server_create(const struct tls_server_opts *opts, struct tls_server **out, char *err,
		      size_t errlen)
{
	static const char pers[] = "thinbox nbd tls";
	struct tls_server *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return -ENOMEM;
	if (opts)
		s->opts = *opts;
	if (!s->opts.entropy)
		s->opts.entropy = default_entropy;
	mbedtls_entropy_init(&s->entropy);
	mbedtls_ctr_drbg_init(&s->drbg);
	mbedtls_ssl_config_init(&s->conf);
	mbedtls_x509_crt_init(&s->ca);
	mbedtls_x509_crt_init(&s->cert);
	mbedtls_pk_init(&s->key);
	r = mbedtls_entropy_add_source(&s->entropy, entropy_poll, s, 32,
				       MBEDTLS_ENTROPY_SOURCE_STRONG);
	if (!r)
		r = mbedtls_ctr_drbg_seed(&s->drbg, mbedtls_entropy_func, &s->entropy,
					  (const unsigned char *)pers, sizeof(pers) - 1);
	if (r) {
		snprintf(err, errlen,
			 "no entropy source (the random number source failed): TLS refused");
		tls_server_destroy(s);
		return -EIO;
	}
	*out = s;
	return 0;
}

int tls_server_load_psk(struct tls_server *s, const char *text, size_t len, char *err,
			size_t errlen)
{
	if (s->psk.n) {
		snprintf(err, errlen, "PSK keys are loaded already");
		return -EEXIST;
	}
	return tls_psk_parse(text, len, &s->psk, err, errlen);
}

/* PEM needs a terminating NUL inside the length mbedTLS is given; DER does not mind one. */
static unsigned char *with_nul(const void *p, size_t len)
{
	unsigned char *b = malloc(len + 1);

	if (b) {
		memcpy(b, p, len);
		b[len] = 0;
	}
	return b;
}

static int x509_fail(char *err, size_t errlen, const char *what, int code)
{
	char why[128];

	mbedtls_strerror(code, why, sizeof(why));
	snprintf(err, errlen, "%s: %s", what, why);
	return code == MBEDTLS_ERR_PK_ALLOC_FAILED || code == MBEDTLS_ERR_X509_ALLOC_FAILED
		   ? -ENOMEM
		   : -EINVAL;
}

int tls_server_load_x509(struct tls_server *s, const void *ca, size_t ca_len, const void *cert,
			 size_t cert_len, const void *key, size_t key_len, bool verify_peer,
			 char *err, size_t errlen)
{
	unsigned char *b;
	int r;

	if (s->have_x509) {
		snprintf(err, errlen, "certificates are loaded already");
		return -EEXIST;
	}
	if (verify_peer && !ca) {
		snprintf(err, errlen, "ca-cert.pem: needed to verify client certificates");
		return -EINVAL;
	}
	if (!(b = with_nul(cert, cert_len)))
		return -ENOMEM;
	r = mbedtls_x509_crt_parse(&s->cert, b, cert_len + 1);
	free(b);
	if (r)
		return x509_fail(err, errlen, "server-cert.pem", r);
	if (!(b = with_nul(key, key_len)))
		return -ENOMEM;
	r = mbedtls_pk_parse_key(&s->key, b, key_len + 1, NULL, 0);
	memset(b, 0, key_len + 1); /* the private key: not left in freed memory */
	free(b);
	if (r)
		return x509_fail(err, errlen, "server-key.pem", r);
	if (mbedtls_pk_check_pair(&s->cert.pk, &s->key)) {
		snprintf(err, errlen, "server-key.pem: not the key of server-cert.pem");
		return -EINVAL;
	}
	if (ca) {
		if (!(b = with_nul(ca, ca_len)))
			return -ENOMEM;
		r = mbedtls_x509_crt_parse(&s->ca, b, ca_len + 1);
		free(b);
		if (r)
			return x509_fail(err, errlen, "ca-cert.pem", r);
	}
	s->have_x509 = true;
	s->verify_peer = verify_peer;
	return 0;
}

const char *tls_server_psk_identity(const struct tls_server *s, unsigned idx)
{
	return idx < s->psk.n ? s->psk.keys[idx].identity : NULL;
}

static void x509_time_str(char *buf, size_t len, const mbedtls_x509_time *t)
{
	snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d", t->year, t->mon, t->day, t->hour,
		 t->min, t->sec);
}

int tls_server_cert_info(const struct tls_server *s, unsigned idx, struct tls_cert_info *out)
{
	static const char *const files[2] = { "server-cert.pem", "ca-cert.pem" };
	const mbedtls_x509_crt *lists[2] = { &s->cert, &s->ca }, *c = NULL;
	unsigned pos = 0, l;

	if (!s->have_x509)
		return -ENOENT;
	/* The server's chain, then the CA list; an empty list has version 0. */
	for (l = 0; l < 2 && !c; l++) {
		const mbedtls_x509_crt *p;

		for (p = lists[l], pos = 0; p && p->version; p = p->next, pos++) {
			if (idx-- == 0) {
				c = p;
				break;
			}
		}
	}
	if (!c)
		return -ENOENT;
	l--;
	memset(out, 0, sizeof(*out));
	out->file = files[l];
	out->pos = pos;
	if (mbedtls_x509_dn_gets(out->subject, sizeof(out->subject), &c->subject) < 0)
		snprintf(out->subject, sizeof(out->subject), "?");
	if (mbedtls_x509_dn_gets(out->issuer, sizeof(out->issuer), &c->issuer) < 0)
		snprintf(out->issuer, sizeof(out->issuer), "?");
	x509_time_str(out->not_before, sizeof(out->not_before), &c->valid_from);
	x509_time_str(out->not_after, sizeof(out->not_after), &c->valid_to);
	out->expired = mbedtls_x509_time_is_past(&c->valid_to);
	out->not_yet_valid = mbedtls_x509_time_is_future(&c->valid_from);
	return 0;
}

void tls_server_get_stats(const struct tls_server *s, struct tls_server_stats *out)
{
	*out = s->stats;
}

/* ---- Sessions ------------------------------------------------------------------------------ */

static struct tls_sess *sess_of(mbedtls_ssl_context *ssl)
{
	return (struct tls_sess *)((char *)ssl - offsetof(struct tls_sess, ssl));
}

/* The client's PSK identity: its key from the keys file, or the handshake fails. */
static int psk_lookup(void *arg, mbedtls_ssl_context *ssl, const unsigned char *id, size_t len)
{
	struct tls_server *s = arg;
	struct tls_sess *t = sess_of(ssl);
	const struct tls_psk_key *k = tls_psk_find(&s->psk, id, len);
	size_t n = len < TLS_PSK_MAX_IDENTITY ? len : TLS_PSK_MAX_IDENTITY;

	/* Kept printable for the log: what the client claimed, even when unknown. */
	for (size_t i = 0; i < n; i++)
		t->psk_identity[i] = id[i] > ' ' && id[i] <= '~' ? (char)id[i] : '?';
	t->psk_identity[n] = '\0';
	if (!k)
		return -1;
	return mbedtls_ssl_set_hs_psk(ssl, k->key, k->key_len);
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
	struct tls_sess *t = ctx;

	if (t->bio.send(t->bio.conn, buf, len))
		return MBEDTLS_ERR_SSL_ALLOC_FAILED;
	return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
	struct tls_sess *t = ctx;
	size_t n = t->bio.recv(t->bio.conn, buf, len);

	return n ? (int)n : MBEDTLS_ERR_SSL_WANT_READ;
}

static bool want(int r)
{
	return r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE;
}

static void describe(struct tls_sess *t)
{
	const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&t->ssl);
	int n = snprintf(t->desc, sizeof(t->desc), "%s %s", mbedtls_ssl_get_version(&t->ssl),
			 mbedtls_ssl_get_ciphersuite(&t->ssl));
	size_t used = n > 0 && (size_t)n < sizeof(t->desc) ? (size_t)n : 0;

	if (t->psk_identity[0]) {
		snprintf(t->desc + used, sizeof(t->desc) - used, ", PSK identity '%s'",
			 t->psk_identity);
	} else if (peer) {
		char dn[256];

		if (mbedtls_x509_dn_gets(dn, sizeof(dn), &peer->subject) < 0)
			snprintf(dn, sizeof(dn), "?");
		snprintf(t->desc + used, sizeof(t->desc) - used, ", client certificate %s", dn);
	} else {
		snprintf(t->desc + used, sizeof(t->desc) - used, ", no client certificate");
	}
}

static void fail_log(struct tls_sess *t, int code)
{
	char why[128];

	mbedtls_strerror(code, why, sizeof(why));
	if (t->psk_identity[0])
		logf_line(t->srv, "tls: handshake failed (PSK identity '%s'): %s", t->psk_identity,
			  why);
	else
		logf_line(t->srv, "tls: %s%s",
			  t->done ? "session failed: " : "handshake failed: ", why);
}

static int sess_read(void *p, void *buf, size_t len)
{
	struct tls_sess *t = p;
	int r;

	if (!t->done) {
		r = mbedtls_ssl_handshake(&t->ssl);
		if (want(r))
			return 0;
		if (r) {
			t->srv->stats.handshakes_failed++;
			fail_log(t, r);
			return -EPROTO;
		}
		t->srv->stats.handshakes_ok++;
		t->done = true;
		describe(t);
		logf_line(t->srv, "tls: %s%s", t->desc, "");
	}
	r = mbedtls_ssl_read(&t->ssl, buf, len);
	if (r > 0)
		return r;
	if (want(r))
		return 0;
	if (r == 0 || r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
		return -ECONNRESET;
	fail_log(t, r);
	return -EPROTO;
}

static int sess_write(void *p, const void *buf, size_t len)
{
	struct tls_sess *t = p;
	int r;

	if (!t->done)
		return 0;
	r = mbedtls_ssl_write(&t->ssl, buf, len);
	if (r >= 0)
		return r;
	if (want(r))
		return 0;
	fail_log(t, r);
	return -EPROTO;
}

static void sess_close(void *p)
{
	struct tls_sess *t = p;

	if (t->done)
		mbedtls_ssl_close_notify(&t->ssl);
}

static const char *sess_describe(void *p)
{
	struct tls_sess *t = p;

	return t->done ? t->desc : "TLS handshake in progress";
}

static void sess_free(void *p)
{
	struct tls_sess *t = p;

	mbedtls_ssl_free(&t->ssl);
	free(t);
}

static int sess_open(void *ctx, const struct nbd_tls_bio *bio, void **out, const char **why)
{
	struct tls_server *s = ctx;
	struct tls_sess *t;

	/*
	 * Fresh entropy for every session: if the source has failed since start-up, TLS is
	 * refused rather than run on a DRBG nobody can reseed.
	 */
	if (mbedtls_ctr_drbg_reseed(&s->drbg, NULL, 0)) {
		s->stats.handshakes_failed++;
		*why = "no entropy source (the random number source failed): TLS refused";
		logf_line(s, "%s%s", *why, "");
		return -EIO;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		*why = "out of memory";
		return -ENOMEM;
	}
	t->srv = s;
	t->bio = *bio;
	mbedtls_ssl_init(&t->ssl);
	if (mbedtls_ssl_setup(&t->ssl, &s->conf)) {
		mbedtls_ssl_free(&t->ssl);
		free(t);
		*why = "out of memory";
		return -ENOMEM;
	}
	mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
	*out = t;
	return 0;
}

static const struct nbd_tls_ops sess_ops = {
	.open = sess_open,
	.read = sess_read,
	.write = sess_write,
	.close = sess_close,
	.describe = sess_describe,
	.free = sess_free,
};

static const mbedtls_ecp_group_id server_curves[] = {
	MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP256R1, MBEDTLS_ECP_DP_SECP384R1,
	MBEDTLS_ECP_DP_SECP521R1,  MBEDTLS_ECP_DP_NONE,
};

int tls_server_nbd_config(struct tls_server *s, enum nbd_tls_mode mode, struct nbd_tls_config *out)
{
	int r;

	if (!s->psk.n && !s->have_x509)
		return -EINVAL;
	if (!s->conf_ready) {
		r = mbedtls_ssl_config_defaults(&s->conf, MBEDTLS_SSL_IS_SERVER,
						MBEDTLS_SSL_TRANSPORT_STREAM,
						MBEDTLS_SSL_PRESET_DEFAULT);
		if (r)
			return -ENOMEM;
		mbedtls_ssl_conf_rng(&s->conf, mbedtls_ctr_drbg_random, &s->drbg);
		/*
		 * mbedTLS's own order puts P-521 first, so a client offering it (GnuTLS does)
		 * pays the slowest key exchange; the fast curves are as strong as TLS 1.2 needs.
		 */
		mbedtls_ssl_conf_curves(&s->conf, server_curves);
		if (s->psk.n)
			mbedtls_ssl_conf_psk_cb(&s->conf, psk_lookup, s);
		if (s->have_x509) {
			if (mbedtls_ssl_conf_own_cert(&s->conf, &s->cert, &s->key))
				return -ENOMEM;
			if (s->ca.version)
				mbedtls_ssl_conf_ca_chain(&s->conf, &s->ca, NULL);
		}
		mbedtls_ssl_conf_authmode(&s->conf, s->verify_peer ? MBEDTLS_SSL_VERIFY_REQUIRED
								   : MBEDTLS_SSL_VERIFY_NONE);
		s->conf_ready = true;
	}
	out->mode = mode;
	out->ops = &sess_ops;
	out->ctx = s;
	return 0;
}

void tls_server_destroy(struct tls_server *s)
{
	if (!s)
		return;
	mbedtls_ssl_config_free(&s->conf);
	mbedtls_ctr_drbg_free(&s->drbg);
	mbedtls_entropy_free(&s->entropy);
	mbedtls_x509_crt_free(&s->ca);
	mbedtls_x509_crt_free(&s->cert);
	mbedtls_pk_free(&s->key);
	tls_psk_free(&s->psk);
	free(s);
}
