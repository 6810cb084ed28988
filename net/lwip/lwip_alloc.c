/* SPDX-License-Identifier: MIT */
/*
 * lwIP's heap over size-class free lists (lwip_alloc.h). Each block starts with an 8-byte
 * header holding its class (0: a large block, straight from malloc()); a free block's first
 * payload bytes link it into its class's list.
 */
#include "net/lwip/lwip_alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GRAIN	  64u
#define SMALL_MAX 2048u /* header included */

struct hdr {
	uint32_t cls;
	uint32_t pad; /* keeps the payload 8-byte aligned */
};

static void *free_list[SMALL_MAX / GRAIN + 1];

void *lwip_alloc_malloc(unsigned long n)
{
	struct hdr *h;
	unsigned cls;

	if (n > SMALL_MAX - sizeof(*h)) {
		if (n > SIZE_MAX - sizeof(*h))
			return NULL;
		h = malloc(sizeof(*h) + n);
		if (!h)
			return NULL;
		h->cls = 0;
		return h + 1;
	}
	cls = (unsigned)((n + sizeof(*h) + GRAIN - 1) / GRAIN);
	h = free_list[cls];
	if (h) {
		memcpy(&free_list[cls], h + 1, sizeof(void *));
		return h + 1;
	}
	h = malloc(cls * GRAIN);
	if (!h)
		return NULL;
	h->cls = cls;
	return h + 1;
}

void lwip_alloc_free(void *p)
{
	struct hdr *h;

	/* lwIP's mem_free() only asserts against NULL (and LWIP_NOASSERT is ours to set). */
	if (!p)
		return;
	h = (struct hdr *)p - 1;
	if (!h->cls) {
		free(h);
		return;
	}
	memcpy(p, &free_list[h->cls], sizeof(void *));
	free_list[h->cls] = h;
}

void *lwip_alloc_calloc(unsigned long c, unsigned long n)
{
	void *p;

	if (n && c > SIZE_MAX / n)
		return NULL;
	p = lwip_alloc_malloc(c * n);
	if (p)
		memset(p, 0, c * n);
	return p;
}
