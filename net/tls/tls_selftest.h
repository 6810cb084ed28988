/* SPDX-License-Identifier: MIT */
/*
 * A TLS 1.2 PSK handshake between an mbedTLS client and server in memory (tls_pair.h), then
 * application data both ways: the proof that the library, as built for this platform, works.
 * The firmware's `tls selftest` command (boot/tls_cmd.c) and the host's unit test
 * (tests/unit/tls/test_mbedtls_build.c) run this same code.
 *
 * The header shows no mbedTLS type, so boot/ can call it without the library's headers.
 * Every call returns 0 or a negative errno.
 */
#ifndef NET_TLS_TLS_SELFTEST_H
#define NET_TLS_TLS_SELFTEST_H

#include <stddef.h>
#include <stdint.h>

/* Fill @buf with @len bytes of entropy: 0, or a negative errno (nothing usable then). */
typedef int (*tls_entropy_fn)(void *ctx, unsigned char *buf, size_t len);

struct tls_selftest_psk {
	tls_entropy_fn entropy; /* seeds the one CTR_DRBG both ends draw from */
	void *entropy_ctx;
	const char *identity;	     /* the client's PSK identity */
	const char *server_identity; /* the server's only known identity; NULL: @identity */
	const unsigned char *client_key, *server_key;
	size_t client_key_len, server_key_len; /* 1..MBEDTLS_PSK_MAX_LEN (32) bytes */
	/* The one suite the client offers, by IANA-style mbedTLS name
	 * ("TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256"); NULL: every suite of the
	 * configuration (net/tls/mbedtls_config.h). */
	const char *suite;
	size_t echo_bytes; /* application data sent to the server and back */
};

struct tls_selftest_result {
	char version[16];	    /* negotiated, e.g. "TLSv1.2"; "" when no handshake */
	char suite[64];		    /* negotiated suite's name; "" when no handshake */
	int client_ret, server_ret; /* each end's last mbedTLS code; 0 when all went well */
	char error[128];	    /* mbedtls_strerror() of the first failing code, or "" */
	size_t echoed;		    /* bytes that went to the server and came back unchanged */
};

/*
 * Run the handshake and the echo. 0 when both ends finished the handshake and every byte
 * came back; -EINVAL for a bad argument (unknown suite, key length) or a configuration the
 * library refuses; -EIO when the entropy source failed (the DRBG was not seeded); -EPROTO
 * when the handshake failed (a wrong key: the server's Finished check fails; an identity
 * the server does not know: it sends unknown_psk_identity) or a record failed later (*r says which end and why); -ENOMEM; -ETIMEDOUT
 * when the ends stopped moving without an error. *r is filled in every case.
 */
int tls_selftest_psk_run(const struct tls_selftest_psk *opt, struct tls_selftest_result *r);

/* The mbedTLS version the build uses, e.g. "2.28.3". */
const char *tls_library_version(void);

/*
 * The date mbedTLS checks certificate validity against: the C library's time() (in the
 * firmware newlib's, over plat_wall_time()), in seconds since 1970; -1 when there is no
 * clock, and then every certificate counts as not yet valid.
 */
long long tls_clock_now(void);

#endif
