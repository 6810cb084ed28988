/* SPDX-License-Identifier: MIT */
/*
 * Two mbedTLS endpoints joined by in-memory pipes: a client and a server context in one
 * address space, each reading what the other wrote. No socket and no clock: the handshake
 * and the data exchange are driven by turns until both ends are done or stuck, so the same
 * code runs in a host unit test and in the firmware (tls_selftest.c, tests/unit/tls/).
 *
 * This header shows mbedTLS's types: only net/tls/ and the TLS unit tests include it (its
 * users need mk/mbedtls.mk's include path). Every call returns 0 or a negative errno; the
 * mbedTLS code behind a failure is left in *ret where a call takes one.
 */
#ifndef NET_TLS_TLS_PAIR_H
#define NET_TLS_TLS_PAIR_H

#include <stddef.h>
#include <stdint.h>

#include "mbedtls/ssl.h"

/* Bytes each pipe holds: more than a full record (16 KiB + overhead) and a certificate
 * flight, so neither end waits on the pipe's size for long. */
#define TLS_PIPE_BYTES (64u * 1024u)

/* One direction: a ring of TLS_PIPE_BYTES. */
struct tls_pipe {
	unsigned char *buf;
	size_t head;  /* first unread byte */
	size_t len;   /* bytes unread */
	size_t moved; /* bytes written plus bytes read, ever: the turns' progress */
};

/* One end's two directions, handed to mbedTLS as its BIO context. */
struct tls_end {
	struct tls_pipe *in, *out;
};

struct tls_pair {
	mbedtls_ssl_context client, server;
	struct tls_pipe c2s, s2c;
	struct tls_end cli_end, srv_end;
};

/*
 * Set up both contexts on their configurations (which must outlive the pair) and join
 * them. 0; -ENOMEM; -EINVAL when mbedtls_ssl_setup() refuses a configuration (*ret: its
 * code). Call tls_pair_free() afterwards in every case, even on failure.
 */
int tls_pair_init(struct tls_pair *p, const mbedtls_ssl_config *client,
		  const mbedtls_ssl_config *server, int *ret);
void tls_pair_free(struct tls_pair *p);

/*
 * Run both handshakes to the end, by turns. 0 when both finished. -EPROTO when either end
 * failed: *client_ret and *server_ret hold each end's last mbedTLS code (0 for an end that
 * finished, MBEDTLS_ERR_SSL_WANT_READ for one still waiting when the other gave up).
 * -ETIMEDOUT when neither end moves any more without failing (a bug; bounded, never hangs).
 */
int tls_pair_handshake(struct tls_pair *p, int *client_ret, int *server_ret);

/*
 * After a handshake: the client sends @len bytes (a pattern from @seed), the server reads
 * them and sends them back, the client reads them and compares. 0 when every byte came back
 * unchanged; -EIO when one differs; -EPROTO on an mbedTLS error (*ret: its code);
 * -ETIMEDOUT when nothing moves; -ENOMEM.
 */
int tls_pair_echo(struct tls_pair *p, size_t len, uint32_t seed, int *ret);

#endif
