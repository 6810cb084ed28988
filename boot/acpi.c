/* SPDX-License-Identifier: MIT */
/*
 * PMBASE discovery, PM timer, S5 and reset. The SLP_TYP value for S5 is 0 in QEMU's DSDT
 * (both q35 and i440fx), so no AML needs to be read: PM1a_CNT = SLP_EN | (0 << 10).
 */
#include "boot/acpi.h"

#include <errno.h>

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

static uint16_t pmbase;

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
