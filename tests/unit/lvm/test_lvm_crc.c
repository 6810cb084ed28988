/* SPDX-License-Identifier: MIT */
/*
 * lvm_crc() (core/lvm/lvm_crc.c, eight bytes a step) against lvm2's definition of the same
 * checksum (lib/misc/crc.c's calc_crc(): two 4-bit table steps per byte), written here from
 * the polynomial: random buffers at every alignment and length up to a few KiB, random seeds,
 * and a buffer checked in random pieces, each piece's result seeding the next. The fixed
 * vectors are in test_lvm_text.c (crc_vectors).
 */
#include "core/lvm/lvm_format.h"
#include "tests/support/harness.h"

#include <stdlib.h>

/* lvm2's nibble table: entry i is i shifted through the reflected polynomial four times. */
static uint32_t nibble_table[16];

static void nibble_init(void)
{
	for (uint32_t i = 0; i < 16; i++) {
		uint32_t c = i;

		for (int k = 0; k < 4; k++)
			c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
		nibble_table[i] = c;
	}
}

static uint32_t crc_lvm2(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--) {
		crc ^= *p++;
		crc = (crc >> 4) ^ nibble_table[crc & 0xf];
		crc = (crc >> 4) ^ nibble_table[crc & 0xf];
	}
	return crc;
}

TEST(reference_vectors)
{
	nibble_init();
	/* The reference itself gives lvm's published values. */
	ok_eq(crc_lvm2(LVM_CRC_INITIAL, (const uint8_t *)"123456789", 9), 0x4991CF02u);
	ok_eq(crc_lvm2(LVM_CRC_INITIAL, (const uint8_t *)"", 0), 0xF597A6CFu);
}

TEST(random_buffers_every_alignment)
{
	uint64_t s = test_seed();
	size_t cap = 4096 + 16;
	uint8_t *buf = malloc(cap);

	if (!ok(buf))
		return;
	nibble_init();
	for (unsigned round = 0; round < 2000 && !test_failed(); round++) {
		size_t off = round % 8, len = (size_t)(test_rand(&s) % 4097);
		uint32_t seed = round % 3 ? (uint32_t)test_rand(&s) : LVM_CRC_INITIAL;

		if (round < 64)
			len = round; /* every short length: the byte tail alone and with steps */
		for (size_t i = 0; i < off + len; i++)
			buf[i] = (uint8_t)test_rand(&s);
		ok_eq(lvm_crc(seed, buf + off, len), crc_lvm2(seed, buf + off, len));
	}
	free(buf);
}

TEST(pieces_chain)
{
	uint64_t s = test_seed();
	enum { N = 100000 };
	uint8_t *buf = malloc(N);
	uint32_t whole, crc = LVM_CRC_INITIAL;
	size_t at = 0;

	if (!ok(buf))
		return;
	nibble_init();
	for (size_t i = 0; i < N; i++)
		buf[i] = (uint8_t)test_rand(&s);
	whole = crc_lvm2(LVM_CRC_INITIAL, buf, N);
	ok_eq(lvm_crc(LVM_CRC_INITIAL, buf, N), whole);
	while (at < N) {
		size_t n = (size_t)(test_rand(&s) % 777);

		n = n > N - at ? N - at : n;
		crc = lvm_crc(crc, buf + at, n);
		at += n;
	}
	ok_eq(crc, whole);
	free(buf);
}
