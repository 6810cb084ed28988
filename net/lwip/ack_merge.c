/* SPDX-License-Identifier: MIT */
/* Pure acknowledgements and when one supersedes another (see ack_merge.h). */
#include "net/lwip/ack_merge.h"

#include <string.h>

#define ETH_HLEN     14
#define ETHTYPE_IPV4 0x0800
#define IP_PROTO_TCP 6
#define IP_HLEN	     20 /* no options */
#define TCP_HLEN     20 /* no options */
#define TCP_ACK	     0x10

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

bool pure_ack_parse(const uint8_t *frame, size_t len, struct pure_ack *a)
{
	const uint8_t *ip = frame + ETH_HLEN, *tcp = ip + IP_HLEN;

	if (len < ETH_HLEN + IP_HLEN + TCP_HLEN || be16(frame + 12) != ETHTYPE_IPV4)
		return false;
	/* Version 4, no IP options, exactly the two headers (padding after them is the
	 * Ethernet minimum's), no fragment (offset 0, MF clear; DF may be set), TCP. */
	if (ip[0] != 0x45 || be16(ip + 2) != IP_HLEN + TCP_HLEN || (be16(ip + 6) & 0x3fff) ||
	    ip[9] != IP_PROTO_TCP)
		return false;
	/* Data offset 5 (no options), the reserved bits clear, and ACK the only flag (no ECN
	 * echo or window reduction either: those are news too). */
	if (tcp[12] != (TCP_HLEN / 4) << 4 || tcp[13] != TCP_ACK)
		return false;
	memcpy(a->flow, ip + 12, 8);
	memcpy(a->flow + 8, tcp, 4);
	a->ack = be32(tcp + 8);
	return true;
}

bool pure_ack_supersedes(const struct pure_ack *newer, const struct pure_ack *older)
{
	return !memcmp(newer->flow, older->flow, sizeof(newer->flow)) &&
	       (int32_t)(newer->ack - older->ack) > 0;
}
