/* SPDX-License-Identifier: MIT */
/* IP addresses and prefixes; see netaddr.h. */
#include "core/base/netaddr.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A decimal number without sign or leading zero, at most @max, ending at @end. */
static bool parse_dec(const char *s, const char *end, unsigned max, unsigned *out)
{
	unsigned v = 0;

	if (s == end || (s[0] == '0' && end - s > 1))
		return false;
	for (; s < end; s++) {
		if (!is_digit(*s))
			return false;
		v = v * 10 + (unsigned)(*s - '0');
		if (v > max)
			return false;
	}
	*out = v;
	return true;
}

/* Dotted quad in [s, end) into b[0..3]. */
static bool parse_v4(const char *s, const char *end, uint8_t b[4])
{
	for (unsigned i = 0; i < 4; i++) {
		const char *dot = s;
		unsigned v;

		while (dot < end && *dot != '.')
			dot++;
		if ((i < 3) != (dot < end) || !parse_dec(s, dot, 255, &v))
			return false;
		b[i] = (uint8_t)v;
		s = dot + 1;
	}
	return true;
}

/* RFC 4291 text in [s, end) into b[0..15]. */
static bool parse_v6(const char *s, const char *end, uint8_t b[16])
{
	uint16_t head[8], tail[8];
	unsigned nh = 0, nt = 0, groups;
	bool gap = false;
	uint8_t v4[4];
	bool has_v4 = false;

	if (end - s >= 2 && s[0] == ':' && s[1] == ':') {
		gap = true;
		s += 2;
	} else if (s < end && s[0] == ':') {
		return false; /* a lone leading colon */
	}
	while (s < end) {
		const char *p = s;
		unsigned v = 0, nd = 0;

		/* A dotted IPv4 tail takes the last 32 bits. */
		for (const char *q = s; q < end && *q != ':'; q++) {
			if (*q == '.') {
				if (!parse_v4(s, end, v4))
					return false;
				has_v4 = true;
				s = end;
				break;
			}
		}
		if (has_v4)
			break;
		while (p < end && hex_val(*p) >= 0) {
			if (++nd > 4)
				return false;
			v = v * 16 + (unsigned)hex_val(*p);
			p++;
		}
		if (!nd || nh + nt == 8)
			return false;
		if (gap)
			tail[nt++] = (uint16_t)v;
		else
			head[nh++] = (uint16_t)v;
		s = p;
		if (s == end)
			break;
		if (*s != ':')
			return false;
		s++;
		if (s < end && *s == ':') {
			if (gap)
				return false; /* a second "::" */
			gap = true;
			s++;
		} else if (s == end) {
			return false; /* a trailing single colon */
		}
	}
	groups = nh + nt + (has_v4 ? 2 : 0);
	if (groups > 8 || (!gap && groups != 8) || (gap && groups == 8))
		return false;
	memset(b, 0, 16);
	for (unsigned i = 0; i < nh; i++) {
		b[2 * i] = (uint8_t)(head[i] >> 8);
		b[2 * i + 1] = (uint8_t)head[i];
	}
	{
		unsigned at = 16 - (has_v4 ? 4 : 0) - 2 * nt;

		for (unsigned i = 0; i < nt; i++) {
			b[at + 2 * i] = (uint8_t)(tail[i] >> 8);
			b[at + 2 * i + 1] = (uint8_t)tail[i];
		}
	}
	if (has_v4)
		memcpy(b + 12, v4, 4);
	return true;
}

static int parse_range(const char *s, const char *end, struct net_addr *out)
{
	struct net_addr a;

	memset(&a, 0, sizeof(a));
	if (memchr(s, ':', (size_t)(end - s))) {
		if (!parse_v6(s, end, a.bytes))
			return -EINVAL;
		a.family = NET_AF_INET6;
	} else {
		if (!parse_v4(s, end, a.bytes))
			return -EINVAL;
		a.family = NET_AF_INET;
	}
	*out = a;
	return 0;
}

int net_addr_parse(const char *text, struct net_addr *out)
{
	if (!text || !*text)
		return -EINVAL;
	return parse_range(text, text + strlen(text), out);
}

static unsigned family_bits(uint8_t family)
{
	return family == NET_AF_INET ? 32 : family == NET_AF_INET6 ? 128 : 0;
}

int net_prefix_parse(const char *text, struct net_prefix *out, const char **why)
{
	const char *slash, *end;
	struct net_prefix p;
	unsigned len, bits;
	const char *dummy;

	if (!why)
		why = &dummy;
	if (!text || !*text) {
		*why = "empty";
		return -EINVAL;
	}
	end = text + strlen(text);
	slash = strchr(text, '/');
	memset(&p, 0, sizeof(p));
	if (parse_range(text, slash ? slash : end, &p.addr)) {
		*why = "not an IPv4 (a.b.c.d) or IPv6 address";
		return -EINVAL;
	}
	bits = family_bits(p.addr.family);
	len = bits;
	if (slash && !parse_dec(slash + 1, end, bits, &len)) {
		*why = p.addr.family == NET_AF_INET ? "the prefix length must be 0..32"
						    : "the prefix length must be 0..128";
		return -EINVAL;
	}
	p.len = (uint8_t)len;
	for (unsigned i = len; i < bits; i++) {
		if (p.addr.bytes[i / 8] & (0x80u >> (i % 8))) {
			*why = "address bits are set past the prefix length";
			return -EINVAL;
		}
	}
	*out = p;
	return 0;
}

void net_addr_format(const struct net_addr *a, char *buf, size_t size)
{
	const uint8_t *b = a->bytes;
	unsigned best = 0, best_len = 0, pos = 0;
	size_t n = 0;

	if (!size)
		return;
	if (a->family == NET_AF_INET) {
		snprintf(buf, size, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
		return;
	}
	if (a->family != NET_AF_INET6) {
		snprintf(buf, size, "unknown");
		return;
	}
	/* RFC 5952: the longest run of two or more zero groups (the first of equals) is "::". */
	while (pos < 8) {
		unsigned run = 0;

		while (pos + run < 8 && !b[2 * (pos + run)] && !b[2 * (pos + run) + 1])
			run++;
		if (run > best_len) {
			best = pos;
			best_len = run;
		}
		pos += run ? run : 1;
	}
	if (best_len < 2)
		best_len = 0;
	buf[0] = '\0';
	for (pos = 0; pos < 8 && n < size; pos++) {
		int k;

		if (best_len && pos == best) {
			k = snprintf(buf + n, size - n, "%s", pos == 0 ? "::" : ":");
			pos += best_len - 1;
		} else {
			k = snprintf(buf + n, size - n, "%x%s",
				     (unsigned)(b[2 * pos] << 8 | b[2 * pos + 1]),
				     pos < 7 ? ":" : "");
		}
		if (k < 0)
			return;
		n += (size_t)k;
	}
}

void net_prefix_format(const struct net_prefix *p, char *buf, size_t size)
{
	char a[NET_ADDR_TEXT_MAX];

	net_addr_format(&p->addr, a, sizeof(a));
	snprintf(buf, size, "%s/%u", a, p->len);
}

void net_prefix_mask(struct net_prefix *p)
{
	for (unsigned i = p->len; i < 128; i++)
		p->addr.bytes[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
}

void net_addr_unmap(struct net_addr *a)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (a->family != NET_AF_INET6 || memcmp(a->bytes, mapped, sizeof(mapped)))
		return;
	memmove(a->bytes, a->bytes + 12, 4);
	memset(a->bytes + 4, 0, 12);
	a->family = NET_AF_INET;
}

bool net_addr_equal(const struct net_addr *a, const struct net_addr *b)
{
	return a->family == b->family && !memcmp(a->bytes, b->bytes, sizeof(a->bytes));
}

bool net_prefix_match(const struct net_prefix *p, const struct net_addr *a)
{
	unsigned full = p->len / 8, rest = p->len % 8;

	if (a->family == NET_AF_NONE || a->family != p->addr.family ||
	    p->len > family_bits(a->family))
		return false;
	if (memcmp(p->addr.bytes, a->bytes, full))
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xffu << (8 - rest));

		return (p->addr.bytes[full] & mask) == (a->bytes[full] & mask);
	}
	return true;
}

bool net_prefix_equal(const struct net_prefix *a, const struct net_prefix *b)
{
	return a->len == b->len && net_addr_equal(&a->addr, &b->addr);
}
