/* SPDX-License-Identifier: MIT */
/*
 * Firmware-only additions to core/base/plat.h, for boot/: setting up the clocks that
 * plat_now_ns(), plat_udelay() and plat_wall_time() run on, and the host name.
 */
#ifndef BOOT_PLAT_EFI_H
#define BOOT_PLAT_EFI_H

#include <stddef.h>
#include <stdint.h>

/* Until calibrated, time runs on this guess (QEMU TCG's TSC runs at the host's rate). */
#define TSC_HZ_GUESS 2000000000ull

/*
 * Measure the TSC against the ACPI PM timer over @ms milliseconds (needs acpi_init()) and
 * use the result; tsc_refine() then improves it. 0, or -ENODEV without a PM timer, -EIO if
 * the timer does not tick.
 */
int tsc_calibrate_pm(unsigned ms);
/*
 * Measure the rate again over the span since tsc_calibrate_pm() began, once that span
 * reaches 1, 8, 64 and 512 s; between those times (and without a PM timer) it only reads
 * the TSC. plat_now_ns() never steps at a change. Call it every few milliseconds or less
 * often: any interval works.
 */
void tsc_refine(void);
/* One line on the TSC's rate and how it was measured (the `clock` command). */
void tsc_describe(char *buf, size_t size);
/* Use @hz as the TSC rate (a calibration by other means; no refinement). */
void tsc_set_hz(uint64_t hz);
uint64_t tsc_hz(void);

/*
 * Read the CMOS real-time clock (the century register from the FADT, acpi_tables_init())
 * and start plat_wall_time() from it; the TSC must be calibrated. Waits at most a few
 * milliseconds. 0, -ENOTSUP without a clock, -EIO when it keeps changing under the reads or
 * shows nonsense; plat_wall_time() then answers that error. *t is what was read.
 */
struct civil_time;
int rtc_boot_read(struct civil_time *t);
/*
 * Use @name (NULL: unset) as plat_hostname(): 0, or -EINVAL (and the default) when it is not
 * 1..63 of [A-Za-z0-9.-].
 */
int plat_set_hostname(const char *name);

/*
 * Run @fn once before plat_poweroff() or plat_reboot() turns the machine off (NULL: none).
 * The appliance's composition root commits the pool here, so `poweroff` and `reboot` keep
 * every acknowledged write, as closing the pool does in the host build.
 */
void plat_set_power_hook(void (*fn)(void));

#endif
