/* SPDX-License-Identifier: MIT */
/*
 * lwIP raw-API glue for the NBD server (net/nbd/nbd_server.h), the firmware's counterpart of
 * host/nbd_sock.c. Only bytes move here; the protocol is entirely in the server.
 *
 *   nbd_lwip_listen(srv, port, &nl)   tcp_listen on @port (10809), accept clients
 *   nbd_lwip_poll(nl)                 every main-loop pass: feed held input, nbd_server_poll(),
 *                                     queue output with tcp_write, close finished connections,
 *                                     free vanished ones (one that died with output
 *                                     unacknowledged once the NIC returned every frame
 *                                     handed to it before then); never blocks
 *   nbd_lwip_close(nl)                abort every connection, free them all (waiting for
 *                                     nothing), close the listener
 *
 * Back-pressure: received pbufs the server did not consume are kept and offered again; the
 * window is reopened (tcp_recved) only for bytes consumed, so a slow device slows its own
 * client's sender and nobody else. Output is handed to lwIP without copying where that pays
 * (large pieces, PBUF_ROM) and released back to the server when lwIP reports it acknowledged.
 */
#ifndef NET_LWIP_NBD_LWIP_H
#define NET_LWIP_NBD_LWIP_H

#include <stdint.h>

#include "net/nbd/nbd_server.h"

#define NBD_LWIP_PORT 10809

struct nbd_lwip;

/* Listen on @port on every address. 0, -ENOMEM, -EADDRINUSE. */
int nbd_lwip_listen(struct nbd_server *srv, uint16_t port, struct nbd_lwip **out);
/* Make progress on every connection and the server. */
void nbd_lwip_poll(struct nbd_lwip *nl);
/* Abort every connection (RST) and stop listening. */
void nbd_lwip_close(struct nbd_lwip *nl);

#endif
