/* SPDX-License-Identifier: MIT */
/*
 * The Internet checksum's sum (RFC 1071) of a buffer, for lwIP (LWIP_CHKSUM, lwip_port.c):
 * the one's-complement sum of the buffer's 16-bit words taken in memory order from its first
 * byte (a last odd byte is the low-addressed half of a word whose other half is zero), folded
 * to 16 bits and not inverted: what lwIP's lwip_standard_chksum() returns ("host order"), so
 * lwIP combines the pieces of a pbuf chain as it does with its own. Any length and alignment.
 */
#ifndef NET_LWIP_INET_SUM_H
#define NET_LWIP_INET_SUM_H

#include <stddef.h>
#include <stdint.h>

uint16_t inet_sum(const void *data, size_t len);

#endif
