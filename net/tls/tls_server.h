/* SPDX-License-Identifier: MIT */
/*
 * The NBD server's TLS (docs/tls.md "NBD over TLS"): one mbedTLS server configuration with
 * its credentials (PSK keys, X.509 certificates) and DRBG, and the sessions NBD_OPT_STARTTLS
 * opens through nbd_tls_ops (net/nbd/nbd_server.h). No mbedTLS type shows here, so the
 * composition roots include it without the library's headers; no file or socket is opened:
 * credentials come in as bytes, ciphertext moves through the connection's buffers.
 *
 *   tls_server_create()                      seed the DRBG from the entropy source
 *   tls_server_load_psk() / _load_x509()     credentials (at least one of them)
 *   tls_server_nbd_config()                  ops for nbd_server_set_tls()
 *   tls_server_destroy()                     after the NBD server is destroyed
 *
 * Every call returns 0 or a negative errno; a message for the user goes to @err, and keys
 * never appear in one.
 */
#ifndef NET_TLS_TLS_SERVER_H
#define NET_TLS_TLS_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "net/nbd/nbd_server.h"

struct tls_server;

struct tls_server_opts {
	/*
	 * The entropy source that seeds the DRBG at creation and reseeds it at every STARTTLS:
	 * 0 or -errno. NULL: plat_random() (virtio-rng/RDRAND in the firmware, getrandom() on
	 * the host). There is no weaker fallback: when it fails, TLS is refused.
	 */
	int (*entropy)(void *buf, size_t len);
	/* Handshake results and failures, one line each (no keys); NULL: silent. */
	void (*log)(void *ctx, const char *line);
	void *log_ctx;
};

/*
 * Create the server and seed its DRBG. -EIO when the entropy source fails (@err says TLS is
 * refused for want of entropy); -ENOMEM.
 */
int tls_server_create(const struct tls_server_opts *opts, struct tls_server **out, char *err,
		      size_t errlen);

/*
 * PSK: a psktool keys file's bytes (net/tls/tls_psk.h for the format). Clients authenticate
 * with an identity in it and its key. -EINVAL (@err: the line and why), -EEXIST when keys
 * were loaded already, -ENOMEM.
 */
int tls_server_load_psk(struct tls_server *s, const char *text, size_t len, char *err,
			size_t errlen);

/*
 * X.509, nbdkit's files: the server's certificate (a chain, leaf first, may follow) and its
 * private key (PEM or DER), and the CA certificates (@ca may be NULL without @verify_peer).
 * With @verify_peer a client must present a certificate that verifies against @ca.
 * -EINVAL (@err: which file and the library's reason), -EEXIST when loaded already, -ENOMEM.
 */
int tls_server_load_x509(struct tls_server *s, const void *ca, size_t ca_len, const void *cert,
			 size_t cert_len, const void *key, size_t key_len, bool verify_peer,
			 char *err, size_t errlen);

/* PSK identities loaded (for the shell): the @idx'th, or NULL past the last. */
const char *tls_server_psk_identity(const struct tls_server *s, unsigned idx);

/* A loaded certificate, for the shell: names and dates only, never key material. */
struct tls_cert_info {
	const char *file;  /* "server-cert.pem" or "ca-cert.pem" */
	unsigned pos;	   /* its place in that file, 0 first */
	char subject[256]; /* distinguished names as mbedTLS prints them: "CN=localhost" */
	char issuer[256];
	char not_before[24]; /* "YYYY-MM-DD HH:MM:SS" (UTC) */
	char not_after[24];
	bool expired;	    /* not_after is past the library's clock (time(): the RTC's date) */
	bool not_yet_valid; /* not_before is still ahead of it */
};

/*
 * The @idx'th certificate loaded (the server's chain, then the CA certificates): 0, or
 * -ENOENT past the last one.
 */
int tls_server_cert_info(const struct tls_server *s, unsigned idx, struct tls_cert_info *out);

struct tls_server_stats {
	unsigned long long handshakes_ok;     /* sessions that finished their handshake */
	unsigned long long handshakes_failed; /* handshakes that failed, or STARTTLS refused for
					       * want of entropy */
};

/* The counters since creation. */
void tls_server_get_stats(const struct tls_server *s, struct tls_server_stats *out);

/*
 * The NBD server's TLS configuration in @mode over this server. -EINVAL when neither PSK
 * keys nor a certificate were loaded (TLS could never succeed), -ENOMEM.
 */
int tls_server_nbd_config(struct tls_server *s, enum nbd_tls_mode mode, struct nbd_tls_config *out);

/* Free; every session must have been freed (destroy the NBD server first). */
void tls_server_destroy(struct tls_server *s);

#endif
