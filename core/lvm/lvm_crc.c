/* SPDX-License-Identifier: MIT */
/* lvm's CRC (see lvm_format.h): byte-wise over a table built on first use. */
#include "core/lvm/lvm_format.h"

#include <stdbool.h>

static uint32_t crc_table[256];
static bool crc_table_ready;

static void crc_table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
		crc_table[i] = c;
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
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}
