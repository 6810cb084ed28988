/* SPDX-License-Identifier: MIT */
/*
 * The client's messages, for the tests that play an NBD client against net/nbd's state
 * machine (bytes into nbd_conn_feed(), or a transport's receive path): each writes one
 * message at @b in wire byte order and returns its length. No checks: the caller's buffer
 * holds it. nbdc_drain() collects what the server sends back, nbdc_simple_reply() takes a
 * reply from that (with checks).
 */
#ifndef TESTS_SUPPORT_NBD_CLIENT_H
#define TESTS_SUPPORT_NBD_CLIENT_H

#include <stddef.h>
#include <stdint.h>

/* An option: its 16-byte header and @len bytes of @data (NULL when @len is 0). */
size_t nbdc_put_opt(uint8_t *b, uint32_t opt, const void *data, uint32_t len);

/* A request's 28-byte header (compact form); a WRITE's payload is the caller's to append. */
size_t nbdc_put_req(uint8_t *b, uint16_t type, uint16_t flags, uint64_t cookie, uint64_t off,
		    uint32_t len);

struct nbd_conn;

/*
 * Everything @c has to send, consumed from it and appended to *@out (grown by realloc();
 * *@len bytes so far): the client's side of nbd_conn_output() / nbd_conn_output_done().
 */
void nbdc_drain(struct nbd_conn *c, uint8_t **out, size_t *len);

/*
 * Drain @c as nbdc_drain() does, then take the simple reply at *@pos of *@out (*@pos moves past
 * it). Checks (harness ok()) that one is there, with the simple reply's magic and @cookie.
 * Returns its error field (0, or an NBD error), or -1 when fewer than 16 bytes are there.
 */
int64_t nbdc_simple_reply(struct nbd_conn *c, uint8_t **out, size_t *len, size_t *pos,
			  uint64_t cookie);

#endif
