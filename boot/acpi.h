/* SPDX-License-Identifier: MIT */
/*
 * The few ACPI hardware registers the firmware uses, found without parsing ACPI tables:
 * the PM1 block's base (PMBASE) comes from the chipset's PCI config space (q35: LPC 00:1f.0
 * register 0x40; i440fx: PIIX4 PM 00:01.3 register 0x40). From it: the 3.579545 MHz PM
 * timer (TSC calibration) and PM1a_CNT (S5 power-off). The tables themselves are read for
 * one byte only: the FADT's CMOS index of the real-time clock's century register.
 */
#ifndef BOOT_ACPI_H
#define BOOT_ACPI_H

#include <stdint.h>

#define ACPI_PM_TIMER_HZ 3579545u

/* Find PMBASE. 0, or -ENODEV on an unknown chipset or with ACPI I/O decoding off. */
int acpi_init(void);
/* The PM1 I/O base, 0 before a successful acpi_init(). */
uint16_t acpi_pmbase(void);
/* The PM timer's counter (24 bits on ICH9/PIIX4: callers mask differences with 0xffffff). */
uint32_t acpi_pm_timer(void);
/*
 * Find the FADT from the RSDP @rsdp (the EFI configuration table's ACPI entry; NULL: none)
 * through the XSDT (or the RSDT of ACPI 1.0) and keep its century field. Checksums and
 * lengths are checked on the way. 0, or -ENOENT (no usable RSDP or FADT: no century).
 */
int acpi_tables_init(const void *rsdp);
/* The CMOS index of the RTC's century register from the FADT; 0 when there is none. */
uint8_t acpi_rtc_century(void);
/* Enter S5 (QEMU exits with status 0). Returns -EIO only if the machine is still running. */
int acpi_poweroff(void);
/* Reset through the 0xcf9 reset register, then the keyboard controller; -EIO if alive. */
int machine_reset(void);

#endif
