/* SPDX-License-Identifier: MIT */
#include "tests/support/alloc_count.h"

#include <stddef.h>

int __sanitizer_install_malloc_and_free_hooks(void (*m)(const volatile void *, size_t),
					      void (*f)(const volatile void *));

size_t __sanitizer_get_allocated_size(const volatile void *p);

static volatile unsigned long n_allocs, n_frees;
static volatile long live_bytes; /* allocated and not yet freed */

static void on_malloc(const volatile void *p, size_t size)
{
	(void)p;
	n_allocs++;
	live_bytes += (long)size;
}

static void on_free(const volatile void *p)
{
	if (p) {
		n_frees++;
		live_bytes -= (long)__sanitizer_get_allocated_size(p);
	}
}

__attribute__((constructor)) static void install_hooks(void)
{
	__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}

unsigned long alloc_count(void)
{
	return n_allocs;
}

unsigned long free_count(void)
{
	return n_frees;
}

long alloc_live_bytes(void)
{
	return live_bytes;
}
