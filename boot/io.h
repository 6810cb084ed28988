/* SPDX-License-Identifier: MIT */
/*
 * x86 port I/O (drivers/bus/portio.h, which drivers/bus/pci.c uses too) and a few CPU
 * instructions the firmware needs. Drivers reach memory-mapped registers through plain
 * volatile pointers (the firmware runs identity-mapped).
 */
#ifndef BOOT_IO_H
#define BOOT_IO_H

#include <stdint.h>

#include "drivers/bus/portio.h"

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

static inline uint64_t read_cr2(void)
{
	uint64_t v;

	__asm__ volatile("mov %%cr2, %0" : "=r"(v));
	return v;
}

/* Stop this CPU for good: interrupts off, then halt (again, should an NMI wake it). */
__attribute__((noreturn)) static inline void cpu_halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt" ::: "memory");
}

/*
 * QEMU's isa-debug-exit device (-device isa-debug-exit,iobase=0xf4,iosize=0x04): writing v
 * makes QEMU exit with status 2*v+1. Without the device the write is ignored.
 */
#define DEBUG_EXIT_PORT 0xf4
#define DEBUG_EXIT_PASS 0x10 /* QEMU exit status 33 */
#define DEBUG_EXIT_FAIL 0x11 /* QEMU exit status 35 */

#endif
