/* SPDX-License-Identifier: MIT */
/*
 * PCI for the drivers: configuration space through ports 0xcf8/0xcfc, the list of functions
 * found at boot, and BAR addresses as OVMF assigned them. It sits below the drivers (as
 * iPXE's drivers/bus/pci.c) and includes nothing from boot/, so a driver needs no firmware
 * header; boot/ runs the scan and publishes the list (plat_pci_get(), the `pci` command).
 *
 * pci_scan() runs once after ExitBootServices (boot/efi_main.c); drivers then look their
 * devices up with pci_find() and must themselves enable what they use (pci_enable(): memory
 * decoding and bus mastering; QEMU does not enforce bus mastering for virtio, so a missing
 * enable would go unnoticed without an explicit call).
 *
 * Only the first 256 bytes of configuration space are reachable (no ECAM); virtio's
 * capabilities live there.
 */
#ifndef DRIVERS_BUS_PCI_H
#define DRIVERS_BUS_PCI_H

#include <stdbool.h>
#include <stdint.h>

#define PCI_VENDOR_ID	    0x00
#define PCI_DEVICE_ID	    0x02
#define PCI_COMMAND	    0x04
#define PCI_STATUS	    0x06
#define PCI_CLASS_REVISION  0x08
#define PCI_HEADER_TYPE	    0x0e
#define PCI_BAR0	    0x10
#define PCI_CAPABILITY_LIST 0x34

#define PCI_COMMAND_IO	    0x0001
#define PCI_COMMAND_MEMORY  0x0002
#define PCI_COMMAND_MASTER  0x0004
#define PCI_STATUS_CAP_LIST 0x0010

#define PCI_CAP_ID_VNDR 0x09 /* vendor-specific: virtio's capabilities */
#define PCI_CAP_ID_MSIX 0x11

#define PCI_VENDOR_VIRTIO 0x1af4

struct pci_bar {
	uint64_t addr; /* 0 when the BAR is not implemented */
	uint64_t size;
	bool is_io, is_64, prefetch;
};

struct pci_dev {
	uint8_t bus, dev, fn;
	uint16_t vendor, device;
	uint8_t class_code, subclass, prog_if, revision;
	uint8_t header_type; /* without the multi-function bit */
	/*
	 * Read through pci_bar(): a function's BARs are sized when first asked for. Sizing
	 * turns the function's decoding off and on again, and under QEMU each of those two
	 * writes rebuilds the guest's memory map (1.3-1.7 ms under TCG): functions no driver
	 * uses (q35's SATA and SMBus controllers) are left alone.
	 */
	struct pci_bar bar[6];
	bool bars_sized;
};

/* Enumerate every bus reachable from bus 0 (BARs unsized). 0, or -ENOMEM. */
int pci_scan(void);
/* Number of functions found by pci_scan(). */
unsigned pci_count(void);
/* The @idx'th function (0-based, in bus/device/function order), or NULL past the end. */
const struct pci_dev *pci_get(unsigned idx);
/* The @nth (0-based) function with this vendor and device id, or NULL. */
const struct pci_dev *pci_find(uint16_t vendor, uint16_t device, unsigned nth);

/* Configuration space of @d; @off below 256, aligned to the access size. */
uint8_t pci_read_config8(const struct pci_dev *d, uint8_t off);
uint16_t pci_read_config16(const struct pci_dev *d, uint8_t off);
uint32_t pci_read_config32(const struct pci_dev *d, uint8_t off);
void pci_write_config16(const struct pci_dev *d, uint8_t off, uint16_t v);
void pci_write_config32(const struct pci_dev *d, uint8_t off, uint32_t v);

/*
 * BAR @bar of @d (sized on the function's first call), or NULL for an index past 5 or a @d
 * that pci_get() / pci_find() did not return.
 */
const struct pci_bar *pci_bar(const struct pci_dev *d, unsigned bar);
/*
 * Address and size of BAR @bar (the lower index of a 64-bit pair). -EINVAL for a bad index,
 * -ENODEV when the BAR is not implemented or not assigned.
 */
int pci_bar_addr(const struct pci_dev *d, unsigned bar, uint64_t *addr, uint64_t *size);
/* Set @bits (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER ...) in the command register. */
void pci_enable(const struct pci_dev *d, uint16_t bits);
/*
 * Walk the capability list: the offset of the first capability with id @cap_id after offset
 * @after (0 to start at the head), or 0 when there is none. Bounded against looping lists.
 */
uint8_t pci_find_cap(const struct pci_dev *d, uint8_t cap_id, uint8_t after);

/* Raw access by bus/device/function, for code that has no struct pci_dev yet. */
uint32_t pci_cfg_read32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off);
void pci_cfg_write32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off, uint32_t v);

#endif
