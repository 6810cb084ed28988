/* SPDX-License-Identifier: MIT */
/*
 * lwIP's architecture header for the firmware: newlib supplies the C library; the port
 * functions (net/lwip/lwip_port.c) supply diagnostics, assertions and random numbers.
 *
 * lwIP 2.1.3's arch.h and newlib 3.3.0's headers disagree in two places, each met when a file
 * includes both (docs/network.md, "Building lwIP against newlib"): ssize_t (a type clash, an
 * error) and BYTE_ORDER (redefined, a warning, so an error under -Werror). The lines below say
 * how each is avoided.
 */
#ifndef NET_LWIP_ARCH_CC_H
#define NET_LWIP_ARCH_CC_H

#include <limits.h>
#include <stdint.h>
/* newlib's sys/types.h defines ssize_t (long) but no SSIZE_MAX; without this lwIP's arch.h
 * would typedef its own int ssize_t and clash. */
#include <sys/types.h>
#ifndef SSIZE_MAX
#define SSIZE_MAX LONG_MAX
#endif
/* With SSIZE_MAX defined, arch.h includes <unistd.h> only to get ssize_t: sys/types.h gave it. */
#define LWIP_NO_UNISTD_H 1
/* newlib's machine/endian.h (reached through sys/types.h and stdio.h) may already define it,
 * as _BYTE_ORDER; defining it again would be a redefinition. */
#ifndef BYTE_ORDER
#define BYTE_ORDER LITTLE_ENDIAN
#endif
/* lwIP's byte swaps are otherwise out-of-line functions (def.c), called for nearly every header
 * field of every segment sent and received; the compiler's builtins are one instruction. */
#define lwip_htons(x) __builtin_bswap16(x)
#define lwip_htonl(x) __builtin_bswap32(x)
/* lwIP defines its own errno values; ours come from newlib and must not be redefined. */
#define LWIP_ERRNO_STDINCLUDE 1

void lwip_port_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void lwip_port_assert(const char *msg, const char *file, int line);
uint32_t lwip_port_rand(void);

#define LWIP_PLATFORM_DIAG(x)                                                                      \
	do {                                                                                       \
		lwip_port_diag x;                                                                  \
	} while (0)
#define LWIP_PLATFORM_ASSERT(x) lwip_port_assert((x), __FILE__, __LINE__)
#define LWIP_RAND()		lwip_port_rand()

#endif
