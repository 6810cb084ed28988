/* SPDX-License-Identifier: MIT */
/*
 * Two mbedTLS endpoints over in-memory pipes (contract: tls_pair.h).
 */
#include "net/tls/tls_pair.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Turns without any byte moving before a run counts as stuck. A handshake needs a few
 * dozen turns; one turn that moves nothing is normal (an end waiting for the other). */
#define STUCK_TURNS 8
/* Upper bound on turns in any case, so a bug cannot loop for ever. */
#define MAX_TURNS 100000

static size_t pipe_space(const struct tls_pipe *q)
{
	return TLS_PIPE_BYTES - q->len;
}

/* mbedTLS's send callback: as much as fits, or WANT_WRITE when the pipe is full. */
static int pipe_send(void *ctx, const unsigned char *buf, size_t len)
{
	struct tls_pipe *q = ((struct tls_end *)ctx)->out;
	size_t n = len < pipe_space(q) ? len : pipe_space(q);

	if (n == 0)
		return MBEDTLS_ERR_SSL_WANT_WRITE;
	for (size_t i = 0; i < n; i++)
		q->buf[(q->head + q->len + i) % TLS_PIPE_BYTES] = buf[i];
	q->len += n;
	q->moved += n;
	return (int)n;
}

/* mbedTLS's receive callback: what is there, or WANT_READ when the pipe is empty. */
static int pipe_recv(void *ctx, unsigned char *buf, size_t len)
{
	struct tls_pipe *q = ((struct tls_end *)ctx)->in;
	size_t n = len < q->len ? len : q->len;

	if (n == 0)
		return MBEDTLS_ERR_SSL_WANT_READ;
	for (size_t i = 0; i < n; i++)
		buf[i] = q->buf[(q->head + i) % TLS_PIPE_BYTES];
	q->head = (q->head + n) % TLS_PIPE_BYTES;
	q->len -= n;
	q->moved += n;
	return (int)n;
}

int tls_pair_init(struct tls_pair *p, const mbedtls_ssl_config *client,
		  const mbedtls_ssl_config *server, int *ret)
{
	int r;

	memset(p, 0, sizeof(*p));
	mbedtls_ssl_init(&p->client);
	mbedtls_ssl_init(&p->server);
	*ret = 0;
	p->c2s.buf = malloc(TLS_PIPE_BYTES);
	p->s2c.buf = malloc(TLS_PIPE_BYTES);
	if (!p->c2s.buf || !p->s2c.buf)
		return -ENOMEM;
	p->cli_end = (struct tls_end){ .in = &p->s2c, .out = &p->c2s };
	p->srv_end = (struct tls_end){ .in = &p->c2s, .out = &p->s2c };
	r = mbedtls_ssl_setup(&p->client, client);
	if (r == 0)
		r = mbedtls_ssl_setup(&p->server, server);
	if (r) {
		*ret = r;
		return r == MBEDTLS_ERR_SSL_ALLOC_FAILED ? -ENOMEM : -EINVAL;
	}
	mbedtls_ssl_set_bio(&p->client, &p->cli_end, pipe_send, pipe_recv, NULL);
	mbedtls_ssl_set_bio(&p->server, &p->srv_end, pipe_send, pipe_recv, NULL);
	return 0;
}

void tls_pair_free(struct tls_pair *p)
{
	mbedtls_ssl_free(&p->client);
	mbedtls_ssl_free(&p->server);
	free(p->c2s.buf);
	free(p->s2c.buf);
	p->c2s.buf = p->s2c.buf = NULL;
}

static bool want(int r)
{
	return r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE;
}

static size_t moved(const struct tls_pair *p)
{
	return p->c2s.moved + p->s2c.moved;
}

int tls_pair_handshake(struct tls_pair *p, int *client_ret, int *server_ret)
{
	int rc = MBEDTLS_ERR_SSL_WANT_READ, rs = MBEDTLS_ERR_SSL_WANT_READ;
	unsigned still = 0;
	bool failed;

	for (unsigned turn = 0; turn < MAX_TURNS; turn++) {
		size_t before = moved(p);

		if (want(rc))
			rc = mbedtls_ssl_handshake(&p->client);
		if (want(rs))
			rs = mbedtls_ssl_handshake(&p->server);
		*client_ret = rc;
		*server_ret = rs;
		if (rc == 0 && rs == 0)
			return 0;
		failed = (rc != 0 && !want(rc)) || (rs != 0 && !want(rs));
		/* One end failed: the other may still read the alert it sent, so it runs on until
		 * it stops too, or stops moving. */
		if (failed && !want(rc) && !want(rs))
			return -EPROTO;
		still = moved(p) == before ? still + 1 : 0;
		if (still >= STUCK_TURNS)
			return failed ? -EPROTO : -ETIMEDOUT;
	}
	return -ETIMEDOUT;
}

static unsigned char pattern_byte(uint32_t seed, size_t i)
{
	uint32_t x = seed ^ (uint32_t)(i / 4) * 0x9e3779b9u;

	x ^= x >> 15;
	x *= 0x85ebca6bu;
	x ^= x >> 13;
	return (unsigned char)(x >> (8 * (i % 4)));
}

int tls_pair_echo(struct tls_pair *p, size_t len, uint32_t seed, int *ret)
{
	/* The client's bytes out, the server's buffer, the client's bytes back. */
	size_t sent = 0, srv_in = 0, srv_out = 0, back = 0;
	unsigned char *out = malloc(len ? len : 1), *mid = malloc(len ? len : 1);
	unsigned char *in = malloc(len ? len : 1);
	unsigned still = 0;
	int rc = -ETIMEDOUT, r;

	*ret = 0;
	if (!out || !mid || !in) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < len; i++)
		out[i] = pattern_byte(seed, i);
	for (unsigned turn = 0; turn < MAX_TURNS && back < len; turn++) {
		size_t before = sent + srv_in + srv_out + back;

		if (sent < len) {
			r = mbedtls_ssl_write(&p->client, out + sent, len - sent);
			if (r > 0)
				sent += (size_t)r;
			else if (!want(r))
				goto tls_error;
		}
		if (srv_in < len) {
			r = mbedtls_ssl_read(&p->server, mid + srv_in, len - srv_in);
			if (r > 0)
				srv_in += (size_t)r;
			else if (!want(r))
				goto tls_error;
		}
		if (srv_out < srv_in) {
			r = mbedtls_ssl_write(&p->server, mid + srv_out, srv_in - srv_out);
			if (r > 0)
				srv_out += (size_t)r;
			else if (!want(r))
				goto tls_error;
		}
		r = mbedtls_ssl_read(&p->client, in + back, len - back);
		if (r > 0)
			back += (size_t)r;
		else if (!want(r))
			goto tls_error;
		still = sent + srv_in + srv_out + back == before ? still + 1 : 0;
		if (still >= STUCK_TURNS)
			break;
	}
	if (back == len)
		rc = memcmp(out, in, len) ? -EIO : 0;
	goto out;
tls_error:
	/* 0 from a read is the peer's close_notify: unexpected in the middle of the data. */
	*ret = r;
	rc = -EPROTO;
out:
	free(out);
	free(mid);
	free(in);
	return rc;
}
