/* SPDX-License-Identifier: MIT */
/*
 * The heap's counters (heap_count.h): the linker sends every reference to malloc, calloc,
 * realloc and free to the __wrap_ functions here (mk/efi.mk), which count and call newlib's
 * (__real_). A handful of instructions per call, no lock: the firmware has one thread and its
 * interrupt handlers only return (docs/firmware.md, "Idle").
 */
#include "boot/heap_count.h"

#include <stddef.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);

static struct heap_counts counts;

void *__wrap_malloc(size_t n)
{
	counts.allocs++;
	counts.bytes += n;
	return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	counts.allocs++;
	counts.bytes += n * size;
	return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	if (n) {
		counts.allocs++;
		counts.bytes += n;
	}
	return __real_realloc(p, n);
}

void __wrap_free(void *p)
{
	if (p)
		counts.frees++;
	__real_free(p);
}

void heap_counts(struct heap_counts *out)
{
	*out = counts;
}
