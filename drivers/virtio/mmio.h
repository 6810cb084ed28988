/* SPDX-License-Identifier: MIT */
/*
 * Memory-mapped register access for the virtio PCI transport (firmware only).
 *
 * The firmware runs identity-mapped and OVMF's page tables map the whole 64-bit PCI aperture
 * (BAR4 sits at 0xE0_0000_0000 under QEMU 7.2), so a BAR address is directly a pointer.
 * Every access goes through volatile so the compiler emits exactly one load or store of
 * exactly the register's width, in program order with the other volatile accesses: the
 * device acts on each access (a status write resets it, a notify write rings the doorbell),
 * so none may be merged, split, repeated or dropped. Registers are little-endian (§4.1.3).
 */
#ifndef DRIVERS_VIRTIO_MMIO_H
#define DRIVERS_VIRTIO_MMIO_H

#include "drivers/virtio/virtio.h"

#include <stdint.h>

static inline uint8_t mmio_read8(uint64_t addr)
{
	return *(const volatile uint8_t *)(uintptr_t)addr;
}

static inline uint16_t mmio_read16(uint64_t addr)
{
	return le16_to_cpu(*(const volatile le16 *)(uintptr_t)addr);
}

static inline uint32_t mmio_read32(uint64_t addr)
{
	return le32_to_cpu(*(const volatile le32 *)(uintptr_t)addr);
}

static inline void mmio_write8(uint64_t addr, uint8_t v)
{
	*(volatile uint8_t *)(uintptr_t)addr = v;
}

static inline void mmio_write16(uint64_t addr, uint16_t v)
{
	*(volatile le16 *)(uintptr_t)addr = cpu_to_le16(v);
}

static inline void mmio_write32(uint64_t addr, uint32_t v)
{
	*(volatile le32 *)(uintptr_t)addr = cpu_to_le32(v);
}

/*
 * 64-bit common-config fields as two 32-bit writes, low half first: §4.1.3.1 only promises
 * that devices accept 32-bit accesses to them (Linux vp_iowrite64_twopart does the same).
 */
static inline void mmio_write64_split(uint64_t addr, uint64_t v)
{
	mmio_write32(addr, (uint32_t)v);
	mmio_write32(addr + 4, (uint32_t)(v >> 32));
}

#endif
