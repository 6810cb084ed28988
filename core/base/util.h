/* SPDX-License-Identifier: MIT */
/* Small helpers every layer may use: sizes, time units, container_of, min/max, alignment. */
#ifndef CORE_BASE_UTIL_H
#define CORE_BASE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Round @x up / down to a multiple of @a, a power of two. */
#define ALIGN_UP(x, a)	 (((x) + ((a)-1)) & ~((__typeof__(x))(a)-1))
#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a)-1))

#define KiB (1024ull)
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)

/* Time units for plat_now_ns() arithmetic: uint64_t like it, so products do not overflow
 * and PRIu64 prints them. */
#define NSEC_PER_USEC ((uint64_t)1000)
#define NSEC_PER_MSEC (1000 * NSEC_PER_USEC)
#define NSEC_PER_SEC  (1000 * NSEC_PER_MSEC)
#define USEC_PER_SEC  ((uint64_t)1000000)

/* Format @bytes for people, as "1.5 GiB" (binary units, one decimal below 100), into @buf. */
void format_size(unsigned long long bytes, char *buf, size_t len);

#endif
