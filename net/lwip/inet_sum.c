/* SPDX-License-Identifier: MIT */
/*
 * The Internet checksum's sum, fast under TCG (inet_sum.h). With user networking the guest
 * sums every byte it sends and receives (QEMU offers no checksum offload there), and under TCG
 * every guest load goes through QEMU's software TLB and every conditional branch ends a
 * translated block. So: one 8-byte load per 8 bytes, its two 32-bit halves added into two
 * 64-bit accumulators (room for 2^32 additions: no carry to handle inside the loop), 32 bytes
 * per iteration with no branch but the loop's; the end-around carries are added once, when the
 * accumulators are folded. lwIP's 32-bit algorithm (LWIP_CHKSUM_ALGORITHM 3) loads 4 bytes at a
 * time and branches on each carry.
 *
 * Folding is exact: 2^16 is 1 modulo 0xffff, so the one's-complement sum of the 16-bit words
 * equals that of any wider words folded down, whatever the byte order of the lanes, as long
 * as the lanes keep their order (RFC 1071, "byte order independence").
 */
#include "net/lwip/inet_sum.h"

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t x;

	/* Unaligned loads are fine on x86; the builtin says so portably and is inlined even in
	 * the firmware's -ffreestanding build, where a plain memcpy() would be a call. */
	__builtin_memcpy(&x, p, sizeof(x));
	return x;
}

uint16_t inet_sum(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t lo = 0, hi = 0, sum;

	for (; len >= 32; p += 32, len -= 32) {
		uint64_t x0 = load64(p), x1 = load64(p + 8), x2 = load64(p + 16),
			 x3 = load64(p + 24);

		lo += (uint32_t)x0 + (uint64_t)(uint32_t)x1 + (uint32_t)x2 + (uint32_t)x3;
		hi += (x0 >> 32) + (x1 >> 32) + (x2 >> 32) + (x3 >> 32);
	}
	for (; len >= 8; p += 8, len -= 8) {
		uint64_t x = load64(p);

		lo += (uint32_t)x;
		hi += x >> 32;
	}
	if (len >= 4) {
		uint32_t w;

		__builtin_memcpy(&w, p, 4);
		lo += w;
		p += 4;
		len -= 4;
	}
	if (len >= 2) {
		uint16_t h;

		__builtin_memcpy(&h, p, 2);
		lo += h;
		p += 2;
		len -= 2;
	}
	if (len) {
		/* The last odd byte: a word's first byte, its second zero. */
		uint16_t h = 0;

		__builtin_memcpy(&h, p, 1);
		lo += h;
	}
	sum = (lo & 0xffffffffu) + (lo >> 32) + (hi & 0xffffffffu) + (hi >> 32);
	sum = (sum & 0xffffffffu) + (sum >> 32);
	sum = (sum & 0xffffffffu) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}
