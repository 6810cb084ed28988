/* SPDX-License-Identifier: MIT */
/*
 * Free lists under AddressSanitizer (the host's test and fuzz builds): what a free list holds
 * is poisoned, so a use of a record or buffer after its owner took it back is reported as a
 * use after free() would be, although the memory is not freed (the NBD server's and the thin
 * pool's free lists: docs/performance.md, "Copies and allocations"). Elsewhere both are
 * no-ops.
 *
 * POISON(p, n):   @n bytes at @p may not be touched until UNPOISON.
 * UNPOISON(p, n): @n bytes at @p are usable again.
 */
#ifndef CORE_BASE_POISON_H
#define CORE_BASE_POISON_H

#if defined(__SANITIZE_ADDRESS__)
#define THINBOX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define THINBOX_ASAN 1
#endif
#endif

#ifdef THINBOX_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#endif
