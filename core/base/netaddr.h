/* SPDX-License-Identifier: MIT */
/*
 * IP addresses and prefixes (CIDR) as plain data: strict text parsing, canonical text,
 * matching. Shared by the NBD server (a client's address against an export's allow list),
 * the configuration model (allow lists kept in the VG) and the transports that fill a
 * client's address in (host/nbd_sock.c, net/lwip/nbd_lwip.c). No I/O, no sockets: both
 * builds run the same code and the host tests cover it.
 *
 * Byte order: addresses are kept as the bytes that travel in an IP header (network order,
 * most significant first), whatever the machine's order: an IPv4 address a.b.c.d is
 * bytes[0..3] = a, b, c, d, the rest zero. Ports elsewhere are host-order integers.
 */
#ifndef CORE_BASE_NETADDR_H
#define CORE_BASE_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum net_family {
	NET_AF_NONE = 0, /* unknown (a transport that cannot tell) */
	NET_AF_INET = 4,
	NET_AF_INET6 = 6,
};

struct net_addr {
	uint8_t family;	   /* enum net_family */
	uint8_t bytes[16]; /* network byte order; IPv4 uses bytes[0..3], the rest are zero */
};

struct net_prefix {
	struct net_addr addr; /* bits past @len are zero */
	uint8_t len;	      /* 0..32 (IPv4), 0..128 (IPv6) */
};

/* Room for any net_addr_format() text ("ffff:...:255.255.255.255" is 45) and its NUL. */
#define NET_ADDR_TEXT_MAX 48
/* Room for net_prefix_format(): an address, "/128" and the NUL. */
#define NET_PREFIX_TEXT_MAX 52

/*
 * Parse an address, strictly: IPv4 as four decimal numbers 0..255 without leading zeros
 * ("010" is refused: some parsers read it as octal); IPv6 as RFC 4291 text (1..4 hex digits
 * per group, at most one "::", an optional dotted IPv4 tail), without a zone ("%eth0") or
 * brackets. 0, or -EINVAL (nothing written).
 */
int net_addr_parse(const char *text, struct net_addr *out);

/*
 * Parse a prefix "ADDR/LEN" or "ADDR" (a single host: /32 or /128). LEN is decimal without
 * sign or leading zeros. Bits past LEN must be zero: "10.0.2.5/24" is refused rather than
 * silently widened (the message names 10.0.2.0/24). 0, or -EINVAL with *@why (when not NULL)
 * set to a static sentence saying what is wrong.
 */
int net_prefix_parse(const char *text, struct net_prefix *out, const char **why);

/* Canonical text: dotted quad; IPv6 as RFC 5952 (lower case, longest zero run as "::"). */
void net_addr_format(const struct net_addr *a, char *buf, size_t size);
/* "ADDR/LEN", always with the length. */
void net_prefix_format(const struct net_prefix *p, char *buf, size_t size);

/* Clear the bits of p->addr past p->len (p->len must fit the family). */
void net_prefix_mask(struct net_prefix *p);

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it carries; others as is. */
void net_addr_unmap(struct net_addr *a);

/* Same family and same bytes. */
bool net_addr_equal(const struct net_addr *a, const struct net_addr *b);
/* True when @a is inside @p (same family, the first p->len bits equal). */
bool net_prefix_match(const struct net_prefix *p, const struct net_addr *a);
bool net_prefix_equal(const struct net_prefix *a, const struct net_prefix *b);

#endif
