/* SPDX-License-Identifier: MIT */
/*
 * PMBASE discovery, PM timer, S5 and reset, and the FADT's century index. The SLP_TYP value for S5 is 0 in QEMU's DSDT
 * (both q35 and i440fx), so no AML needs to be read: PM1a_CNT = SLP_EN | (0 << 10).
 */
#include "boot/acpi.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "boot/io.h"
#include "drivers/bus/pci.h"
#include "core/base/plat.h"

#define PM1_CNT_OFF  4
#define PM_TMR_OFF   8
#define PM1_SLP_EN   (1u << 13)
#define PM1_SLP_TYP5 (0u << 10)

#define ICH9_LPC_ACPI_CNTL 0x44 /* bit 7: ACPI I/O decoding enabled */
#define PIIX4_PM_DEVACTB   0x80 /* bit 0: PM I/O space enabled */

/* How long to wait for S5 or a reset to take effect before reporting failure. */
#define POWER_WAIT_US 500000u

/* The FADT's CENTURY byte (ACPI 6.x, table 5.9); present since ACPI 1.0. */
#define FADT_CENTURY_OFF 108
#define SDT_HEADER_LEN	 36
#define RSDP_V1_LEN	 20
#define RSDP_V2_LEN	 36
/* No table we read is anywhere near this long: a larger length is a broken table. */
#define SDT_MAX_LEN (1u << 20)

static uint16_t pmbase;
static uint8_t rtc_century;

int acpi_init(void)
{
	uint32_t id = pci_cfg_read32(0, 0x1f, 0, 0);

	if (id == 0x29188086) { /* ICH9 LPC: q35 */
		if (!(pci_cfg_read32(0, 0x1f, 0, ICH9_LPC_ACPI_CNTL) & 0x80))
			return -ENODEV;
		pmbase = pci_cfg_read32(0, 0x1f, 0, 0x40) & 0xff80;
	} else if (pci_cfg_read32(0, 1, 3, 0) == 0x71138086) { /* PIIX4 PM: i440fx */
		if (!(pci_cfg_read32(0, 1, 3, PIIX4_PM_DEVACTB) & 1))
			return -ENODEV;
		pmbase = pci_cfg_read32(0, 1, 3, 0x40) & 0xffc0;
	} else {
		return -ENODEV;
	}
	return pmbase ? 0 : -ENODEV;
}

uint16_t acpi_pmbase(void)
{
	return pmbase;
}

uint32_t acpi_pm_timer(void)
{
	return pmbase ? inl(pmbase + PM_TMR_OFF) : 0;
}

static bool checksum_ok(const uint8_t *p, uint32_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum += *p++;
	return sum == 0;
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v)); /* tables are byte-packed: no alignment promised */
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* The table at physical address @addr (identity-mapped) if it is a sane @sig table. */
static const uint8_t *sdt_at(uint64_t addr, const char *sig)
{
	const uint8_t *t = (const uint8_t *)(uintptr_t)addr;
	uint32_t len;

	if (!addr || memcmp(t, sig, 4) != 0)
		return NULL;
	len = get32(t + 4);
	if (len < SDT_HEADER_LEN || len > SDT_MAX_LEN || !checksum_ok(t, len))
		return NULL;
	return t;
}

int acpi_tables_init(const void *rsdp)
{
	const uint8_t *r = rsdp, *root, *t;
	bool xsdt = false;
	uint32_t entries, width;

	if (!r || memcmp(r, "RSD PTR ", 8) != 0 || !checksum_ok(r, RSDP_V1_LEN))
		return -ENOENT;
	root = NULL;
	/* ACPI 2.0+: the XSDT's 64-bit pointers, if its extended checksum holds. */
	if (r[15] >= 2 && get32(r + 20) >= RSDP_V2_LEN && checksum_ok(r, RSDP_V2_LEN)) {
		root = sdt_at(get64(r + 24), "XSDT");
		xsdt = root != NULL;
	}
	if (!root)
		root = sdt_at(get32(r + 16), "RSDT");
	if (!root)
		return -ENOENT;
	width = xsdt ? 8 : 4;
	entries = (get32(root + 4) - SDT_HEADER_LEN) / width;
	for (uint32_t i = 0; i < entries; i++) {
		const uint8_t *e = root + SDT_HEADER_LEN + i * width;

		t = sdt_at(xsdt ? get64(e) : get32(e), "FACP");
		if (!t)
			continue;
		if (get32(t + 4) <= FADT_CENTURY_OFF)
			return -ENOENT;
		rtc_century = t[FADT_CENTURY_OFF];
		return 0;
	}
	return -ENOENT;
}

uint8_t acpi_rtc_century(void)
{
	return rtc_century;
}

static void wait_a_while(void)
{
	plat_udelay(POWER_WAIT_US);
}

int acpi_poweroff(void)
{
	if (!pmbase)
		return -EIO;
	outw(pmbase + PM1_CNT_OFF, PM1_SLP_TYP5 | PM1_SLP_EN);
	wait_a_while();
	return -EIO;
}

int machine_reset(void)
{
	/* 0xcf9 (ICH9 and PIIX3/4): system reset first armed (0x02), then triggered (0x06). */
	outb(0xcf9, 0x02);
	outb(0xcf9, 0x06);
	wait_a_while();
	/* The 8042's pulse-reset command, for chipsets without 0xcf9. */
	for (int i = 0; i < 100000 && (inb(0x64) & 0x02); i++)
		cpu_relax();
	outb(0x64, 0xfe);
	wait_a_while();
	return -EIO;
}
