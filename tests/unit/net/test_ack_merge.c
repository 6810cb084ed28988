/* SPDX-License-Identifier: MIT */
/*
 * net/lwip/ack_merge.c: which received frames are pure acknowledgements, and when a later
 * one supersedes an earlier one. A pure ACK as QEMU's user networking sends it (54 bytes,
 * and padded to the Ethernet minimum of 60) is one; a change to any field that makes the
 * frame carry more than a cumulative acknowledgement (data, an option, another flag, an IP
 * option or fragment, another protocol or version, a VLAN tag) or makes it malformed
 * (truncated, lengths that disagree) makes it not one. Supersedes: the same connection
 * and a later number (also across the 2^32 wrap); never an equal number (a duplicate ACK),
 * an earlier one, or another connection (each of the four addresses and ports in turn).
 */
#include "tests/support/harness.h"
#include "net/lwip/ack_merge.h"

#include <string.h>

static const uint8_t ack_frame[54] = {
	/* Ethernet: destination, source, IPv4 */
	0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02, 0x08, 0x00,
	/* IPv4: 45, tos, len 40, id, DF, ttl 64, TCP, sum, 10.0.2.2 -> 10.0.2.15 */
	0x45, 0x00, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 10, 0, 2, 2, 10, 0,
	2, 15,
	/* TCP: 43210 -> 10809, seq, ack 0x01020304, offset 5, ACK, window 65535, sum, urg */
	0xa8, 0xca, 0x2a, 0x39, 0x00, 0x00, 0x10, 0x00, 0x01, 0x02, 0x03, 0x04, 0x50, 0x10, 0xff,
	0xff, 0x00, 0x00, 0x00, 0x00
};

#define IP  14
#define TCP 34

static uint8_t f[128];

/* A fresh copy of the pure ACK in f; its length. */
static size_t fresh(void)
{
	memset(f, 0, sizeof(f));
	memcpy(f, ack_frame, sizeof(ack_frame));
	return sizeof(ack_frame);
}

static bool parses(size_t len)
{
	struct pure_ack a;

	return pure_ack_parse(f, len, &a);
}

static void set_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

TEST(pure_acks_recognised)
{
	struct pure_ack a;
	size_t len = fresh();

	ok(pure_ack_parse(f, len, &a));
	ok_eq(a.ack, 0x01020304u);
	ok(!memcmp(a.flow, ack_frame + IP + 12, 8) && !memcmp(a.flow + 8, ack_frame + TCP, 4));
	/* Padded to the Ethernet minimum: the IP length says where the segment ends. */
	ok(parses(60));
}

TEST(anything_more_than_an_ack_is_not_one)
{
	static const uint8_t flags[] = { 0x11, 0x12, 0x14, 0x18, 0x30, 0x50, 0x90, 0x00 };
	size_t len = fresh();

	/* Truncated anywhere. */
	for (size_t n = 0; n < len; n++)
		ok(!parses(n));
	/* Data: the IP length covers a payload byte (the frame holds it). */
	set_be16(f + IP + 2, 41);
	ok(!parses(len + 1));
	/* Options: data offset 6 (and the IP length that goes with it). */
	fresh();
	f[TCP + 12] = 0x60;
	set_be16(f + IP + 2, 44);
	ok(!parses(len + 4));
	/* Any flag besides ACK (FIN, SYN, RST, PSH, URG, ECE, CWR), or none. */
	for (unsigned i = 0; i < sizeof(flags); i++) {
		fresh();
		f[TCP + 13] = flags[i];
		ok(!parses(len));
	}
	/* A reserved or NS bit. */
	fresh();
	f[TCP + 12] = 0x51;
	ok(!parses(len));
	/* IP options, another version, a fragment (more fragments; an offset), UDP. */
	fresh();
	f[IP] = 0x46;
	ok(!parses(len));
	fresh();
	f[IP] = 0x65;
	ok(!parses(len));
	fresh();
	f[IP + 6] = 0x20; /* MF */
	ok(!parses(len));
	fresh();
	set_be16(f + IP + 6, 0x4001); /* DF, offset 8 bytes */
	ok(!parses(len));
	fresh();
	f[IP + 9] = 17;
	ok(!parses(len));
	/* An IP length that disagrees with a 40-byte segment either way. */
	fresh();
	set_be16(f + IP + 2, 39);
	ok(!parses(len));
	set_be16(f + IP + 2, 400);
	ok(!parses(len));
	/* Not IPv4: IPv6's type, a VLAN tag. */
	fresh();
	set_be16(f + 12, 0x86dd);
	ok(!parses(len));
	set_be16(f + 12, 0x8100);
	ok(!parses(len));
	/* And the unchanged frame still is one (the edits above were each undone). */
	fresh();
	ok(parses(len));
}

TEST(later_ack_of_same_connection_supersedes)
{
	struct pure_ack older, newer;

	fresh();
	ok(pure_ack_parse(f, sizeof(ack_frame), &older));
	newer = older;
	newer.ack = older.ack + 1460;
	ok(pure_ack_supersedes(&newer, &older));
	ok(!pure_ack_supersedes(&older, &newer)); /* earlier */
	ok(!pure_ack_supersedes(&older, &older)); /* a duplicate ACK */
	/* Across the wrap. */
	older.ack = 0xffffff00u;
	newer.ack = 0x00000100u;
	ok(pure_ack_supersedes(&newer, &older));
	ok(!pure_ack_supersedes(&older, &newer));
	/* Another connection: any byte of the addresses or ports. */
	for (unsigned i = 0; i < sizeof(newer.flow); i++) {
		struct pure_ack other = newer;

		other.flow[i] ^= 1;
		ok(!pure_ack_supersedes(&other, &older));
	}
}
