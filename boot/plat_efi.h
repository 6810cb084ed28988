/* SPDX-License-Identifier: MIT */
/*
 * Firmware-only additions to core/base/plat.h, for boot/: setting up the clock that
 * plat_now_ns() and plat_udelay() run on.
 */
#ifndef BOOT_PLAT_EFI_H
#define BOOT_PLAT_EFI_H

#include <stdint.h>

/* Until calibrated, time runs on this guess (QEMU TCG's TSC runs at the host's rate). */
#define TSC_HZ_GUESS 2000000000ull

/*
 * Measure the TSC against the ACPI PM timer over @ms milliseconds (needs acpi_init()) and
 * use the result. 0, or -ENODEV without a PM timer, -EIO if the timer does not tick.
 */
int tsc_calibrate_pm(unsigned ms);
/* Use @hz as the TSC rate (a calibration by other means). */
void tsc_set_hz(uint64_t hz);
uint64_t tsc_hz(void);

#endif
