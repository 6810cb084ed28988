/* SPDX-License-Identifier: MIT */
/*
 * lvm's CRC (see lvm_format.h), eight bytes a step ("slicing-by-8"): table k maps a byte to
 * the CRC of that byte followed by k zero bytes, so the eight bytes of a step are looked up
 * independently and XORed, instead of eight dependent byte steps. At boot the firmware
 * checks both disks' metadata copies (~3.3 MB each at 10,000 volumes) and, under TCG, the
 * byte-wise loop took 38 ms of it (docs/performance.md, "Boot at 10,000 volumes").
 * tests/unit/lvm/test_lvm_crc.c compares it with lvm2's nibble-wise definition.
 */
#include "core/lvm/lvm_format.h"

#include <stdbool.h>

static uint32_t crc_table[8][256];
static bool crc_table_ready;

static void crc_table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
		crc_table[0][i] = c;
	}
	/* One more zero byte after what table k - 1 covers. */
	for (unsigned k = 1; k < 8; k++)
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = crc_table[k - 1][i];

			crc_table[k][i] = crc_table[0][c & 0xff] ^ (c >> 8);
		}
	crc_table_ready = true;
}

uint32_t lvm_crc(uint32_t seed, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint32_t crc = seed;

	/* Single-threaded everywhere this runs (the firmware and the host build's callers). */
	if (!crc_table_ready)
		crc_table_init();
	for (; len >= 8; p += 8, len -= 8) {
		/* The CRC is reflected: its low byte meets the first data byte (get_le32). */
		uint32_t lo = get_le32(p) ^ crc, hi = get_le32(p + 4);

		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
		      crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
		      crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
	}
	while (len--)
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}
