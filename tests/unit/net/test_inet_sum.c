/* SPDX-License-Identifier: MIT */
/*
 * net/lwip/inet_sum.c against RFC 1071's definition summed a 16-bit word at a time: every
 * length up to 300 bytes at every start offset up to 7, buffers of all-ones (every addition
 * carries), large buffers, RFC 1071's worked example, and the checksum it makes verifying.
 */
#include "tests/support/harness.h"
#include "net/lwip/inet_sum.h"

#include <stdlib.h>
#include <string.h>

/* RFC 1071, one word at a time in memory order, a last odd byte as a word's first byte. */
static uint16_t ref_sum(const uint8_t *p, size_t len)
{
	uint32_t sum = 0;
	uint16_t w;

	for (; len >= 2; p += 2, len -= 2) {
		memcpy(&w, p, 2);
		sum += w;
	}
	if (len) {
		w = 0;
		memcpy(&w, p, 1);
		sum += w;
	}
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

static uint8_t buf[70000];

TEST(every_length_and_offset_matches_rfc1071)
{
	uint64_t s = test_seed();

	for (size_t i = 0; i < 512; i++)
		buf[i] = (uint8_t)test_rand(&s);
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len <= 300; len++)
			if (inet_sum(buf + off, len) != ref_sum(buf + off, len)) {
				fail("offset %zu length %zu: %#x, want %#x", off, len,
				     inet_sum(buf + off, len), ref_sum(buf + off, len));
				return;
			}
}

TEST(all_ones_and_large_buffers)
{
	uint64_t s = test_seed();

	memset(buf, 0xff, sizeof(buf));
	ok_eq(inet_sum(buf, sizeof(buf)), 0xffff);
	ok_eq(inet_sum(buf + 1, 65535), ref_sum(buf + 1, 65535));
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)test_rand(&s);
	ok_eq(inet_sum(buf, sizeof(buf)), ref_sum(buf, sizeof(buf)));
	ok_eq(inet_sum(buf + 3, 65521), ref_sum(buf + 3, 65521));
	memset(buf, 0, 64);
	ok_eq(inet_sum(buf, 64), 0);
}

/* RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2 as big-endian words, and
 * to the same bytes in memory whatever order the machine loads them in. */
TEST(rfc1071_example_and_verification)
{
	static const uint8_t ex[8] = { 0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7 };
	uint8_t pkt[40];
	uint16_t sum = inet_sum(ex, sizeof(ex)), csum;
	uint8_t b[2];

	memcpy(b, &sum, 2);
	ok_eq(b[0], 0xdd);
	ok_eq(b[1], 0xf2);
	/* A checksum stored in the data makes the whole sum 0xffff (it verifies). */
	for (int i = 0; i < 40; i++)
		pkt[i] = (uint8_t)(i * 37 + 5);
	pkt[10] = pkt[11] = 0;
	csum = (uint16_t)~inet_sum(pkt, sizeof(pkt));
	memcpy(pkt + 10, &csum, 2);
	ok_eq(inet_sum(pkt, sizeof(pkt)), 0xffff);
}
