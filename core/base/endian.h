/* SPDX-License-Identifier: MIT */
/*
 * Little-endian load/store helpers for on-disk structures. Every on-disk integer in the
 * dm-thin format is little-endian; these go through bytes so they work on any host and
 * need no alignment (a packed struct member may be misaligned).
 */
#ifndef CORE_BASE_ENDIAN_H
#define CORE_BASE_ENDIAN_H

#include <stdint.h>

/* The on-disk integer types: a plain integer that holds little-endian bytes. */
typedef uint16_t le16;
typedef uint32_t le32;
typedef uint64_t le64;

static inline uint16_t get_le16(const void *p)
{
	const uint8_t *b = p;

	return (uint16_t)(b[0] | (b[1] << 8));
}

static inline uint32_t get_le32(const void *p)
{
	const uint8_t *b = p;

	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline uint64_t get_le64(const void *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32((const uint8_t *)p + 4) << 32;
}

static inline void put_le16(void *p, uint16_t v)
{
	uint8_t *b = p;

	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
}

static inline void put_le32(void *p, uint32_t v)
{
	uint8_t *b = p;

	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
	b[2] = (uint8_t)(v >> 16);
	b[3] = (uint8_t)(v >> 24);
}

static inline void put_le64(void *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32((uint8_t *)p + 4, (uint32_t)(v >> 32));
}

/* Value conversions for struct fields of type le16/le32/le64. */
static inline uint16_t le16_to_cpu(le16 v)
{
	return get_le16(&v);
}

static inline uint32_t le32_to_cpu(le32 v)
{
	return get_le32(&v);
}

static inline uint64_t le64_to_cpu(le64 v)
{
	return get_le64(&v);
}

static inline le16 cpu_to_le16(uint16_t v)
{
	le16 r;

	put_le16(&r, v);
	return r;
}

static inline le32 cpu_to_le32(uint32_t v)
{
	le32 r;

	put_le32(&r, v);
	return r;
}

static inline le64 cpu_to_le64(uint64_t v)
{
	le64 r;

	put_le64(&r, v);
	return r;
}

#endif
