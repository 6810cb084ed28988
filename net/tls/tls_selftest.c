/* SPDX-License-Identifier: MIT */
/*
 * The in-memory PSK handshake (contract: tls_selftest.h). The server finds the key through
 * mbedtls_ssl_conf_psk_cb(), by identity, as the NBD server will look it up in a psktool
 * keys file; the client sets its key directly.
 */
#include "net/tls/tls_selftest.h"

#include "net/tls/tls_pair.h"

#include "mbedtls/ctr_drbg.h"
#include "mbedtls/entropy.h"
#include "mbedtls/error.h"
#include "mbedtls/ssl.h"
#include "mbedtls/version.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* mbedTLS's entropy-source callback over our tls_entropy_fn. */
struct entropy_src {
	tls_entropy_fn fn;
	void *ctx;
};

static int entropy_poll(void *data, unsigned char *out, size_t len, size_t *olen)
{
	struct entropy_src *src = data;

	*olen = 0;
	if (src->fn(src->ctx, out, len) != 0)
		return MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
	*olen = len;
	return 0;
}

/* The server's one identity and key. */
struct psk_table {
	const char *identity;
	const unsigned char *key;
	size_t key_len;
};

/* mbedTLS asks this for the identity the client sent; anything but 0 refuses it. */
static int psk_lookup(void *arg, mbedtls_ssl_context *ssl, const unsigned char *id, size_t id_len)
{
	const struct psk_table *t = arg;

	if (id_len != strlen(t->identity) || memcmp(id, t->identity, id_len) != 0)
		return -1;
	return mbedtls_ssl_set_hs_psk(ssl, t->key, t->key_len);
}

static void note_error(struct tls_selftest_result *r, int code)
{
	if (code && !r->error[0])
		mbedtls_strerror(code, r->error, sizeof(r->error));
}

int tls_selftest_psk_run(const struct tls_selftest_psk *opt, struct tls_selftest_result *r)
{
	static const char pers[] = "thinbox tls selftest";
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_ssl_config ccfg, scfg;
	struct entropy_src src = { opt->entropy, opt->entropy_ctx };
	struct psk_table table = { opt->server_identity ? opt->server_identity : opt->identity,
				   opt->server_key, opt->server_key_len };
	int suites[2] = { 0, 0 };
	struct tls_pair pair;
	int rc, ret = 0;

	memset(r, 0, sizeof(*r));
	if (!opt->entropy || !opt->identity || !opt->client_key || !opt->server_key ||
	    opt->client_key_len == 0 || opt->client_key_len > MBEDTLS_PSK_MAX_LEN ||
	    opt->server_key_len == 0 || opt->server_key_len > MBEDTLS_PSK_MAX_LEN)
		return -EINVAL;
	if (opt->suite) {
		suites[0] = mbedtls_ssl_get_ciphersuite_id(opt->suite);
		if (suites[0] == 0) {
			snprintf(r->error, sizeof(r->error), "unknown suite %s", opt->suite);
			return -EINVAL;
		}
	}

	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	mbedtls_ssl_config_init(&ccfg);
	mbedtls_ssl_config_init(&scfg);
	memset(&pair, 0, sizeof(pair));
	mbedtls_ssl_init(&pair.client);
	mbedtls_ssl_init(&pair.server);

	/* A strong source is required: without one mbedtls_entropy_func() fails and nothing is
	 * seeded (no fallback to a weak source). */
	ret = mbedtls_entropy_add_source(&entropy, entropy_poll, &src, 32,
					 MBEDTLS_ENTROPY_SOURCE_STRONG);
	if (ret == 0)
		ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
					    (const unsigned char *)pers, sizeof(pers) - 1);
	if (ret) {
		note_error(r, ret);
		rc = -EIO;
		goto out;
	}

	ret = mbedtls_ssl_config_defaults(&ccfg, MBEDTLS_SSL_IS_CLIENT,
					  MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
	if (ret == 0)
		ret = mbedtls_ssl_config_defaults(&scfg, MBEDTLS_SSL_IS_SERVER,
						  MBEDTLS_SSL_TRANSPORT_STREAM,
						  MBEDTLS_SSL_PRESET_DEFAULT);
	if (ret == 0)
		ret = mbedtls_ssl_conf_psk(&ccfg, opt->client_key, opt->client_key_len,
					   (const unsigned char *)opt->identity,
					   strlen(opt->identity));
	if (ret) {
		note_error(r, ret);
		rc = -EINVAL;
		goto out;
	}
	mbedtls_ssl_conf_rng(&ccfg, mbedtls_ctr_drbg_random, &drbg);
	mbedtls_ssl_conf_rng(&scfg, mbedtls_ctr_drbg_random, &drbg);
	mbedtls_ssl_conf_psk_cb(&scfg, psk_lookup, &table);
	/* TLS 1.2 is the only version the build has; say so, so that a configuration change
	 * cannot quietly negotiate anything older. */
	mbedtls_ssl_conf_min_version(&ccfg, MBEDTLS_SSL_MAJOR_VERSION_3,
				     MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_min_version(&scfg, MBEDTLS_SSL_MAJOR_VERSION_3,
				     MBEDTLS_SSL_MINOR_VERSION_3);
	if (suites[0])
		mbedtls_ssl_conf_ciphersuites(&ccfg, suites);

	mbedtls_ssl_free(&pair.client);
	mbedtls_ssl_free(&pair.server);
	rc = tls_pair_init(&pair, &ccfg, &scfg, &ret);
	if (rc) {
		note_error(r, ret);
		goto out;
	}
	rc = tls_pair_handshake(&pair, &r->client_ret, &r->server_ret);
	/* The server's error first: with a wrong key it is the one that notices. */
	note_error(r, r->server_ret);
	note_error(r, r->client_ret);
	if (rc)
		goto out;
	snprintf(r->version, sizeof(r->version), "%s", mbedtls_ssl_get_version(&pair.client));
	snprintf(r->suite, sizeof(r->suite), "%s", mbedtls_ssl_get_ciphersuite(&pair.client));
	rc = tls_pair_echo(&pair, opt->echo_bytes, 0x5eed, &ret);
	if (rc == 0)
		r->echoed = opt->echo_bytes;
	if (ret) {
		r->client_ret = ret;
		note_error(r, ret);
	}
out:
	tls_pair_free(&pair);
	mbedtls_ssl_config_free(&ccfg);
	mbedtls_ssl_config_free(&scfg);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
	return rc;
}

const char *tls_library_version(void)
{
	return MBEDTLS_VERSION_STRING;
}

long long tls_clock_now(void)
{
	return (long long)time(NULL);
}
