/* SPDX-License-Identifier: MIT */
/*
 * Heap allocation counters (firmware): every malloc/calloc/realloc/free call of the image
 * (our code, lwIP, mbedTLS; not newlib's own reentrant _malloc_r calls from inside libc),
 * counted by link-time wrappers (mk/efi.mk: --wrap=malloc,...), so `perf` can say how many
 * allocations the data path makes per NBD request (docs/performance.md).
 */
#ifndef BOOT_HEAP_COUNT_H
#define BOOT_HEAP_COUNT_H

#include <stdint.h>

struct heap_counts {
	uint64_t allocs; /* malloc, calloc, and realloc calls that asked for memory */
	uint64_t frees;	 /* free(non-NULL) calls */
	uint64_t bytes;	 /* bytes those allocation calls asked for */
};

/* The counts since boot (one thread, no interrupt handler allocates: plain reads). */
void heap_counts(struct heap_counts *out);

#endif
