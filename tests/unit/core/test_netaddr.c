/* SPDX-License-Identifier: MIT */
/* core/base/netaddr: strict parsing, canonical text, matching. */
#include <errno.h>
#include <string.h>

#include "core/base/netaddr.h"
#include "tests/support/harness.h"

static bool round_trip(const char *in, const char *want)
{
	struct net_prefix p;
	char t[NET_PREFIX_TEXT_MAX];

	if (net_prefix_parse(in, &p, NULL))
		return false;
	net_prefix_format(&p, t, sizeof(t));
	return !strcmp(t, want);
}

TEST(parse_and_format)
{
	struct net_addr a;
	char t[NET_ADDR_TEXT_MAX];

	ok_eq(net_addr_parse("10.0.2.15", &a), 0);
	ok_eq(a.family, NET_AF_INET);
	/* Network byte order: the first byte is the first number. */
	ok(a.bytes[0] == 10 && a.bytes[1] == 0 && a.bytes[2] == 2 && a.bytes[3] == 15);
	ok(round_trip("10.0.2.0/24", "10.0.2.0/24"));
	ok(round_trip("127.0.0.2", "127.0.0.2/32"));
	ok(round_trip("0.0.0.0/0", "0.0.0.0/0"));
	ok(round_trip("::/0", "::/0"));
	ok(round_trip("::1", "::1/128"));
	ok(round_trip("FD00:0:0:0::/8", "fd00::/8"));
	ok(round_trip("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1/128"));    /* first longest run */
	ok(round_trip("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1/128")); /* one zero: no :: */
	ok(round_trip("1::", "1::/128"));
	ok(round_trip("::ffff:10.0.2.1", "::ffff:a00:201/128"));
	ok(round_trip("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8/128"));
	ok(round_trip("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304/128"));
	ok_eq(net_addr_parse("fe80::1", &a), 0);
	net_addr_format(&a, t, sizeof(t));
	ok(!strcmp(t, "fe80::1"));
}

TEST(parse_is_strict)
{
	static const char *const bad[] = {
		"",
		"10.0.2",
		"10.0.2.0.1",
		"10.0.2.256",
		"010.0.2.1",
		"10.0.2.-1",
		"10.0.2.1/",
		"10.0.2.1/33",
		"10.0.2.1/024",
		"10.0.2.1/+8",
		"10.0.2.1 ",
		" 10.0.2.1",
		"10.0.2.5/24",
		"a.b.c.d",
		"1:2:3:4:5:6:7:8:9",
		"1::2::3",
		":1::",
		"1:",
		"12345::",
		"fe80::1%eth0",
		"[::1]",
		"::/129",
		"fd00::1/8",
		"1.2.3.4:5",
		"::g",
		"1:2:3:4:5:6:7::8",
		"10.0.2.1/8/8",
	};
	struct net_prefix p;
	const char *why;

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		if (!ok_eq(net_prefix_parse(bad[i], &p, &why), -EINVAL))
			fail("accepted '%s'", bad[i]);
		ok(why && *why);
	}
	why = NULL;
	net_prefix_parse("10.0.2.5/24", &p, &why);
	ok(why && strstr(why, "past the prefix length"));
	net_prefix_parse("10.0.2.1/33", &p, &why);
	ok(strstr(why, "0..32") != NULL);
}

TEST(match_mask_unmap)
{
	struct net_prefix p;
	struct net_addr a;

	ok_eq(net_prefix_parse("10.0.2.0/23", &p, NULL), 0);
	net_addr_parse("10.0.3.255", &a);
	ok(net_prefix_match(&p, &a));
	net_addr_parse("10.0.4.0", &a);
	ok(!net_prefix_match(&p, &a));
	/* Families never mix: an IPv4 prefix does not match a mapped address until unmapped. */
	net_addr_parse("::ffff:10.0.2.7", &a);
	ok(!net_prefix_match(&p, &a));
	net_addr_unmap(&a);
	ok_eq(a.family, NET_AF_INET);
	ok(net_prefix_match(&p, &a));
	ok_eq(net_prefix_parse("0.0.0.0/0", &p, NULL), 0);
	ok(net_prefix_match(&p, &a));
	a.family = NET_AF_NONE;
	ok(!net_prefix_match(&p, &a));
	ok_eq(net_prefix_parse("fc00::/7", &p, NULL), 0);
	net_addr_parse("fdff::1", &a);
	ok(net_prefix_match(&p, &a));
	net_addr_parse("fe00::1", &a);
	ok(!net_prefix_match(&p, &a));
	/* Masking: the network of a host address. */
	ok_eq(net_addr_parse("10.0.2.5", &p.addr), 0);
	p.len = 24;
	net_prefix_mask(&p);
	ok(p.addr.bytes[3] == 0 && p.addr.bytes[2] == 2);
}
