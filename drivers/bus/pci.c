/* SPDX-License-Identifier: MIT */
/*
 * PCI configuration mechanism #1 and enumeration.
 *
 * BAR sizing writes all-ones to a BAR and reads back the mask, which moves the BAR while it
 * is being sized. To keep a device that is decoding from answering at a bogus address (or
 * capturing cycles meant for something else), I/O and memory decoding are switched off in
 * the command register around the sizing, and the original BAR values and command register
 * are restored afterwards. The firmware is single-threaded with interrupts off, so nothing
 * else touches the device meanwhile.
 */
#include "drivers/bus/pci.h"

#include <errno.h>
#include <stdlib.h>

#include "drivers/bus/portio.h"

#define PCI_CONFIG_ADDR 0xcf8
#define PCI_CONFIG_DATA 0xcfc

#define PCI_HEADER_BRIDGE 0x01
#define PCI_SECONDARY_BUS 0x19
#define PCI_CAP_WALK_MAX  48 /* (256 - 64) / 4: more hops than this means a loop */

static struct pci_dev *devs;
static unsigned nr_devs, cap_devs;

static uint32_t cfg_addr(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off)
{
	return 0x80000000u | (uint32_t)bus << 16 | (uint32_t)dev << 11 | (uint32_t)fn << 8 |
	       (off & 0xfc);
}

uint32_t pci_cfg_read32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off)
{
	outl(PCI_CONFIG_ADDR, cfg_addr(bus, dev, fn, off));
	return inl(PCI_CONFIG_DATA);
}

void pci_cfg_write32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off, uint32_t v)
{
	outl(PCI_CONFIG_ADDR, cfg_addr(bus, dev, fn, off));
	outl(PCI_CONFIG_DATA, v);
}

uint32_t pci_read_config32(const struct pci_dev *d, uint8_t off)
{
	return pci_cfg_read32(d->bus, d->dev, d->fn, off);
}

uint16_t pci_read_config16(const struct pci_dev *d, uint8_t off)
{
	outl(PCI_CONFIG_ADDR, cfg_addr(d->bus, d->dev, d->fn, off));
	return inw(PCI_CONFIG_DATA + (off & 2));
}

uint8_t pci_read_config8(const struct pci_dev *d, uint8_t off)
{
	outl(PCI_CONFIG_ADDR, cfg_addr(d->bus, d->dev, d->fn, off));
	return inb(PCI_CONFIG_DATA + (off & 3));
}

void pci_write_config32(const struct pci_dev *d, uint8_t off, uint32_t v)
{
	pci_cfg_write32(d->bus, d->dev, d->fn, off, v);
}

void pci_write_config16(const struct pci_dev *d, uint8_t off, uint16_t v)
{
	outl(PCI_CONFIG_ADDR, cfg_addr(d->bus, d->dev, d->fn, off));
	outw(PCI_CONFIG_DATA + (off & 2), v);
}

/* Size the BARs of @d (6 on a normal function, 2 on a bridge), restoring everything. */
static void size_bars(struct pci_dev *d)
{
	unsigned nbars = d->header_type == PCI_HEADER_BRIDGE ? 2 : d->header_type == 0 ? 6 : 0;
	uint16_t cmd = pci_read_config16(d, PCI_COMMAND);

	pci_write_config16(d, PCI_COMMAND, cmd & ~(PCI_COMMAND_IO | PCI_COMMAND_MEMORY));
	for (unsigned i = 0; i < nbars; i++) {
		uint8_t off = PCI_BAR0 + 4 * i;
		uint32_t orig = pci_read_config32(d, off), mask;
		struct pci_bar *b = &d->bar[i];

		pci_write_config32(d, off, 0xffffffffu);
		mask = pci_read_config32(d, off);
		pci_write_config32(d, off, orig);
		if (mask == 0 || mask == 0xffffffffu)
			continue; /* not implemented */

		if (orig & 1) {
			b->is_io = true;
			b->addr = orig & ~3u;
			b->size = (uint16_t) ~(mask & ~3u) + 1u;
			continue;
		}
		b->prefetch = (orig >> 3) & 1;
		if (((orig >> 1) & 3) == 2 && i + 1 < nbars) {
			uint32_t orig_hi = pci_read_config32(d, off + 4), mask_hi;
			uint64_t m;

			pci_write_config32(d, off + 4, 0xffffffffu);
			mask_hi = pci_read_config32(d, off + 4);
			pci_write_config32(d, off + 4, orig_hi);
			m = (uint64_t)mask_hi << 32 | (mask & ~0xfu);
			b->is_64 = true;
			b->addr = (uint64_t)orig_hi << 32 | (orig & ~0xfu);
			b->size = ~m + 1;
			i++; /* the upper half is not a BAR of its own */
		} else {
			b->addr = orig & ~0xfu;
			b->size = (uint32_t)(~(mask & ~0xfu) + 1u);
		}
	}
	pci_write_config16(d, PCI_COMMAND, cmd);
}

static int add_dev(uint8_t bus, uint8_t dev, uint8_t fn, uint32_t id)
{
	struct pci_dev *d;
	uint32_t cls;

	if (nr_devs == cap_devs) {
		unsigned ncap = cap_devs ? cap_devs * 2 : 32;
		struct pci_dev *n = realloc(devs, ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		devs = n;
		cap_devs = ncap;
	}
	d = &devs[nr_devs];
	*d = (struct pci_dev){ .bus = bus, .dev = dev, .fn = fn };
	d->vendor = id & 0xffff;
	d->device = id >> 16;
	cls = pci_read_config32(d, PCI_CLASS_REVISION);
	d->revision = cls & 0xff;
	d->prog_if = (cls >> 8) & 0xff;
	d->subclass = (cls >> 16) & 0xff;
	d->class_code = cls >> 24;
	d->header_type = pci_read_config8(d, PCI_HEADER_TYPE) & 0x7f;
	nr_devs++;
	return 0;
}

/* Scan @bus, then recurse into the buses behind its bridges (each bus once). */
static int scan_bus(uint8_t bus, uint8_t *seen)
{
	if (seen[bus / 8] & (1u << (bus % 8)))
		return 0;
	seen[bus / 8] |= 1u << (bus % 8);

	for (uint8_t dev = 0; dev < 32; dev++) {
		for (uint8_t fn = 0; fn < 8; fn++) {
			uint32_t id = pci_cfg_read32(bus, dev, fn, PCI_VENDOR_ID);
			uint8_t ht;
			int rc;

			if ((id & 0xffff) == 0xffff) {
				if (fn == 0)
					break; /* no function 0: no device */
				continue;
			}
			rc = add_dev(bus, dev, fn, id);
			if (rc)
				return rc;
			ht = (pci_cfg_read32(bus, dev, fn, 0x0c) >> 16) & 0xff;
			if ((ht & 0x7f) == PCI_HEADER_BRIDGE) {
				uint8_t sec = (pci_cfg_read32(bus, dev, fn, 0x18) >> 8) & 0xff;

				if (sec != 0) {
					rc = scan_bus(sec, seen);
					if (rc)
						return rc;
				}
			}
			if (fn == 0 && !(ht & 0x80))
				break; /* single-function device */
		}
	}
	return 0;
}

int pci_scan(void)
{
	uint8_t seen[32] = { 0 };

	free(devs);
	devs = NULL;
	nr_devs = cap_devs = 0;
	return scan_bus(0, seen);
}

unsigned pci_count(void)
{
	return nr_devs;
}

const struct pci_dev *pci_get(unsigned idx)
{
	return idx < nr_devs ? &devs[idx] : NULL;
}

const struct pci_dev *pci_find(uint16_t vendor, uint16_t device, unsigned nth)
{
	for (unsigned i = 0; i < nr_devs; i++) {
		if (devs[i].vendor == vendor && devs[i].device == device && nth-- == 0)
			return &devs[i];
	}
	return NULL;
}

const struct pci_bar *pci_bar(const struct pci_dev *d, unsigned bar)
{
	struct pci_dev *m;

	/* @d is one of devs[] (pci_get(), pci_find()): the cache is ours to fill. */
	if (bar >= 6 || d < devs || d >= devs + nr_devs)
		return NULL;
	m = &devs[d - devs];
	if (!m->bars_sized) {
		/* Host bridges have no standard BARs, and turning their decoding off is asking
		 * for trouble on real chipsets: leave them alone. */
		if (!(m->class_code == 0x06 && m->subclass == 0x00))
			size_bars(m);
		m->bars_sized = true;
	}
	return &m->bar[bar];
}

int pci_bar_addr(const struct pci_dev *d, unsigned bar, uint64_t *addr, uint64_t *size)
{
	const struct pci_bar *b = pci_bar(d, bar);

	if (!b)
		return -EINVAL;
	if (b->size == 0 || b->addr == 0)
		return -ENODEV;
	*addr = b->addr;
	if (size)
		*size = b->size;
	return 0;
}

void pci_enable(const struct pci_dev *d, uint16_t bits)
{
	uint16_t cmd = pci_read_config16(d, PCI_COMMAND);

	if ((cmd & bits) != bits)
		pci_write_config16(d, PCI_COMMAND, cmd | bits);
}

uint8_t pci_find_cap(const struct pci_dev *d, uint8_t cap_id, uint8_t after)
{
	uint8_t off;

	if (!(pci_read_config16(d, PCI_STATUS) & PCI_STATUS_CAP_LIST))
		return 0;
	off = after ? pci_read_config8(d, after + 1) : pci_read_config8(d, PCI_CAPABILITY_LIST);
	for (int hops = 0; off >= 0x40 && hops < PCI_CAP_WALK_MAX; hops++) {
		off &= 0xfc;
		if (pci_read_config8(d, off) == cap_id)
			return off;
		off = pci_read_config8(d, off + 1);
	}
	return 0;
}
