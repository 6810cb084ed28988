/* SPDX-License-Identifier: MIT */
/*
 * A caching allocator under lwIP's heap (MEM_LIBC_MALLOC): lwIP allocates every pbuf, TCP
 * segment and pool element with mem_malloc() (MEMP_MEM_MALLOC), about four per 1460-byte
 * segment sent or frame received; these keep freed blocks of up to 2 KiB in size classes
 * of 64 bytes and hand them out again, so a connection in steady state calls newlib's
 * malloc not at all (docs/performance.md, "Copies and allocations").
 *
 * net/lwip/lwipopts.h includes this header and routes lwIP's heap here (mem_clib_malloc/_free/
 * _calloc); it includes nothing itself (sizes as unsigned long), so lwIP's configuration pulls
 * in no system header.
 *
 * Blocks come from malloc() and are never given back (lwIP's peak stays cached: a few MiB
 * with the window and pool sizes of lwipopts.h); larger requests go straight to malloc().
 * Results are 8-byte aligned (MEM_ALIGNMENT). One thread, no interrupt handler allocates.
 */
#ifndef NET_LWIP_LWIP_ALLOC_H
#define NET_LWIP_LWIP_ALLOC_H

/* @n bytes, or NULL when out of memory. */
void *lwip_alloc_malloc(unsigned long n);
/* Give back a block from lwip_alloc_malloc()/lwip_alloc_calloc(); NULL is ignored. */
void lwip_alloc_free(void *p);
/* @c * @n zeroed bytes, or NULL (also when the product overflows). */
void *lwip_alloc_calloc(unsigned long c, unsigned long n);

#endif
