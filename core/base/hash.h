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

/*
 * The lookup tables themselves: open addressing with linear probing, each slot an element's
 * index + 1 (0: empty), a power of two of them. A probe starts at hash & (slots - 1) and stops
 * at an empty slot; the table's owner compares its keys.
 */

/* Slots for @n elements: a power of two, at least 64 and 2n + 2 (at most half full). */
static inline size_t hash_ix_slots(size_t n)
{
	size_t s = 64;

	while (s < 2 * n + 2)
		s *= 2;
	return s;
}

/* Put element @i with hash @h into @slot (@nslots of them, not full), after the elements
 * already there with the same key: a probe meets the earliest first. */
static inline void hash_ix_put(uint32_t *slot, size_t nslots, uint32_t h, size_t i)
{
	size_t m = nslots - 1;

	for (h &= (uint32_t)m; slot[h]; h = (h + 1) & (uint32_t)m)
		;
	slot[h] = (uint32_t)i + 1;
}

#endif
