/* SPDX-License-Identifier: MIT */
/*
 * Received acknowledgements that a later one makes redundant (netif_vnet.c, docs/network.md
 * "Acknowledgements merged on receive"): bytes in, a decision out; no lwIP, no driver.
 *
 * A peer that acknowledges every segment (QEMU's user networking does: libslirp never delays
 * an ACK) sends a stream of frames that carry nothing but a cumulative acknowledgement number
 * and a window. When several of one connection arrive in one receive batch with nothing else
 * of that connection between them, only the last says anything the stack needs: TCP's
 * acknowledgements are cumulative and the last window is the current one. Equal numbers are
 * never merged (duplicate ACKs are fast retransmit's signal), nor are segments with options
 * (SACK blocks, timestamps), data, or any flag but ACK.
 */
#ifndef NET_LWIP_ACK_MERGE_H
#define NET_LWIP_ACK_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pure_ack {
	uint8_t flow[12]; /* IPv4 source and destination, TCP source and destination port */
	uint32_t ack;	  /* acknowledgement number, host order */
};

/*
 * True when @frame (@len bytes from its Ethernet header; trailing padding allowed) is an
 * unfragmented IPv4 TCP segment with a 20-byte header, no payload and only the ACK flag set;
 * then @a is filled. Anything else, malformed or truncated, is false. Checksums are not
 * checked: the frame that is kept goes through the stack's own checks.
 */
bool pure_ack_parse(const uint8_t *frame, size_t len, struct pure_ack *a);

/* True when @newer, received after @older with nothing of its connection between them,
 * makes @older redundant: the same connection and a later acknowledgement number (modulo
 * 2^32, as TCP compares sequence numbers). */
bool pure_ack_supersedes(const struct pure_ack *newer, const struct pure_ack *older);

#endif
