/* SPDX-License-Identifier: MIT */
/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table driven, freestanding.
 *
 * crc32c_raw() is the Linux kernel's crc32c(): the caller gives the seed and no final
 * inversion is applied, so dm-persistent-data's checksum is crc32c_raw(~0, data, len) ^ salt.
 * crc32c() is the standard form (seed ~0, final inversion; "123456789" -> 0xE3069283).
 */
#ifndef CORE_BASE_CRC32C_H
#define CORE_BASE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c_raw(uint32_t seed, const void *data, size_t len);

static inline uint32_t crc32c(const void *data, size_t len)
{
	return ~crc32c_raw(~0u, data, len);
}

#endif
