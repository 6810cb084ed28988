/* SPDX-License-Identifier: MIT */
/*
 * net/lwip/lwip_alloc.c: lwIP's heap over size-class free lists. Sizes around the class
 * edges and the small/large limit keep their bytes and 8-byte alignment; a freed block is
 * handed out again for the same class (no malloc: the sanitizer's hook counts), a large one
 * is not cached; calloc zeroes and refuses an overflowing product.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/lwip/lwip_alloc.h"
#include "tests/support/alloc_count.h"
#include "tests/support/harness.h"

static const unsigned long sizes[] = { 0,    1,	   55,	 56,   57,   120,  1460,
				       1536, 1600, 2039, 2040, 2041, 4096, 65536 };

TEST(sizes_keep_bytes_and_alignment)
{
	void *p[sizeof(sizes) / sizeof(sizes[0])];

	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		p[i] = lwip_alloc_malloc(sizes[i]);
		if (!ok(p[i] != NULL))
			return;
		ok((uintptr_t)p[i] % 8 == 0);
		memset(p[i], (int)i + 1, sizes[i]);
	}
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (unsigned long k = 0; k < sizes[i]; k++)
			if (!ok(((uint8_t *)p[i])[k] == (uint8_t)(i + 1)))
				break;
		lwip_alloc_free(p[i]);
	}
}

TEST(freed_blocks_are_reused_without_malloc)
{
	void *a = lwip_alloc_malloc(1500), *b = lwip_alloc_malloc(100), *c, *d;
	unsigned long before;

	lwip_alloc_free(a);
	lwip_alloc_free(b);
	before = alloc_count();
	c = lwip_alloc_malloc(1480); /* same 64-byte class as 1500 */
	d = lwip_alloc_malloc(90);
	ok_eq(alloc_count() - before, 0);
	ok(c == a);
	ok(d == b);
	for (int i = 0; i < 1000; i++) {
		void *x = lwip_alloc_malloc(1700); /* a class no other case used */

		lwip_alloc_free(x);
	}
	ok_eq(alloc_count() - before, 1); /* the first 1700-byte block only */
	lwip_alloc_free(c);
	lwip_alloc_free(d);
	/* Large blocks are not cached: each is a malloc of its own. */
	before = alloc_count();
	for (int i = 0; i < 3; i++)
		lwip_alloc_free(lwip_alloc_malloc(8192));
	ok_eq(alloc_count() - before, 3);
}

TEST(calloc_zeroes_and_refuses_overflow)
{
	uint8_t *p = lwip_alloc_malloc(200);

	memset(p, 0xff, 200);
	lwip_alloc_free(p);
	p = lwip_alloc_calloc(10, 20); /* the same block again, dirty */
	if (ok(p != NULL)) {
		for (int i = 0; i < 200; i++)
			if (!ok(p[i] == 0))
				break;
		lwip_alloc_free(p);
	}
	ok(lwip_alloc_calloc(SIZE_MAX / 2, 3) == NULL);
}

TEST(free_of_null_is_ignored)
{
	unsigned long before = free_count();

	lwip_alloc_free(NULL);
	ok_eq(free_count() - before, 0);
}
