/* SPDX-License-Identifier: MIT */
/*
 * POSIX-socket glue for the NBD server (net/nbd/nbd_server.h): a non-blocking TCP listener
 * and one non-blocking socket per client, driven by the host main loop's poll().
 *
 *   nbd_sock_listen()        bind and listen (port 0: the kernel picks one)
 *   each loop:  n = nbd_sock_pollfds(s, fds, max)   add our descriptors to the poll set
 *               poll(..., nbd_sock_timeout_ms(s))
 *               nbd_sock_process(s, fds, n)         accept, read, feed, poll, send, close
 *   nbd_sock_close()         close every socket (connections are destroyed)
 *
 * Only bytes move here; the protocol is entirely in the server.
 */
#ifndef HOST_NBD_SOCK_H
#define HOST_NBD_SOCK_H

#include <poll.h>

#include "net/nbd/nbd_server.h"

struct nbd_sock;

/*
 * Listen on @addr, "HOST:PORT" (an IPv4 address or name, or [IPv6]:PORT). -EINVAL for a
 * malformed address, or the socket error (-EADDRINUSE, -EACCES, ...).
 */
int nbd_sock_listen(struct nbd_server *srv, const char *addr, struct nbd_sock **out);

/* The address actually bound, e.g. "127.0.0.1:40123". */
const char *nbd_sock_address(const struct nbd_sock *s);

/* The most descriptors nbd_sock_pollfds() may add. */
unsigned nbd_sock_max_fds(const struct nbd_sock *s);
/*
 * WRITE payloads spliced from a socket into a pipe and handed to the device so (docs/nbd.md
 * "Payloads spliced into the file"), and those whose pipe filled before the payload was in
 * (its bytes then read into the request's buffer), process-wide since start.
 */
void nbd_sock_splice_stats(uint64_t *spliced, uint64_t *fallbacks);
/*
 * Test seam: pipes made from now on hold just their payload (not twice it), idle ones are
 * closed: a payload arriving in many pieces smaller than a page then fills its pipe first.
 */
void nbd_sock_pipes_exact(bool exact);

/* Fill @fds (room for @max) with our descriptors and events; returns how many. */
unsigned nbd_sock_pollfds(struct nbd_sock *s, struct pollfd *fds, unsigned max);

/* The poll() timeout we can tolerate: 0 when work is pending, otherwise @idle_ms. */
int nbd_sock_timeout_ms(const struct nbd_sock *s, int idle_ms);

/* Handle what poll() reported for the @n descriptors nbd_sock_pollfds() added. */
void nbd_sock_process(struct nbd_sock *s, const struct pollfd *fds, unsigned n);

/* Close the listener and every connection. */
void nbd_sock_close(struct nbd_sock *s);

#endif
