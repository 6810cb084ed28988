/* SPDX-License-Identifier: MIT */
/*
 * x86 port I/O: the I/O address space below every bus access that is not memory-mapped (PCI
 * configuration mechanism #1, and in boot/ the UART, fw_cfg, ACPI and reset ports). Here,
 * below the drivers, so that drivers/bus/pci.c needs nothing from boot/; boot/io.h passes it
 * on together with the few CPU instructions the firmware itself needs.
 */
#ifndef DRIVERS_BUS_PORTIO_H
#define DRIVERS_BUS_PORTIO_H

#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint16_t inw(uint16_t port)
{
	uint16_t v;

	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;

	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

#endif
