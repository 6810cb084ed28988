/* SPDX-License-Identifier: MIT */
/*
 * The hashes of the lookup tables (volumes and LVs by name and id, exports by name):
 * FNV-1a for names, Knuth's multiplicative hash for 32-bit ids. Not for anything an attacker
 * could choose to collide on at scale: names come from the operator's own configuration.
 */
#ifndef CORE_BASE_HASH_H
#define CORE_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a of @len bytes at @p. */
static inline uint32_t hash_bytes(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

/* FNV-1a of the NUL-terminated string @s (the same value as hash_bytes() of its bytes). */
static inline uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

/* A 32-bit id spread over the table (multiplication by 2^32 / phi). */
static inline uint32_t hash_u32(uint32_t v)
{
	return v * 2654435761u;
}

#endif
