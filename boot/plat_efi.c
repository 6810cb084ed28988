/* SPDX-License-Identifier: MIT */
/*
 * core/base/plat.h for the firmware. Runs after ExitBootServices on the machine directly:
 * time from the TSC (calibrated against the ACPI PM timer), the date from the CMOS clock read
 * once at boot, memory from boot/page_alloc, the
 * console on COM1, power through ACPI and the reset register, PCI from drivers/bus/pci.
 */
#include "core/base/plat.h"
#include "core/base/util.h"
#include "core/base/walltime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot/acpi.h"
#include "boot/exceptions.h"
#include "boot/io.h"
#include "boot/page_alloc.h"
#include "drivers/bus/pci.h"
#include "boot/plat_efi.h"
#include "boot/serial.h"

#define PM_TIMER_MASK 0xffffffu /* 24-bit counter */

static uint64_t tsc_rate = TSC_HZ_GUESS;

/* ---- Time --------------------------------------------------------------------------- */

int tsc_calibrate_pm(unsigned ms)
{
	uint64_t ticks = (uint64_t)ACPI_PM_TIMER_HZ * ms / 1000, elapsed = 0, t0, t1;
	/* A timer that does not advance ends the wait after 20x the window at the guessed
	 * rate (1 s for 50 ms at 2 GHz). */
	uint64_t limit = TSC_HZ_GUESS / 1000 * ms * 20;
	uint32_t last, now;

	if (!acpi_pmbase())
		return -ENODEV;
	last = acpi_pm_timer() & PM_TIMER_MASK;
	t0 = rdtsc();
	while (elapsed < ticks) {
		if (rdtsc() - t0 > limit)
			return -EIO;
		now = acpi_pm_timer() & PM_TIMER_MASK;
		elapsed += (now - last) & PM_TIMER_MASK;
		last = now;
	}
	t1 = rdtsc();
	/* dTSC * 3579545 / dPM: the PM timer's real elapsed ticks, not the nominal @ms. */
	tsc_rate = (t1 - t0) * ACPI_PM_TIMER_HZ / elapsed;
	return 0;
}

void tsc_set_hz(uint64_t hz)
{
	if (hz)
		tsc_rate = hz;
}

uint64_t tsc_hz(void)
{
	return tsc_rate;
}

uint64_t plat_now_ns(void)
{
	uint64_t t = rdtsc();

	/* Split to stay in 64 bits: t % rate < 2^32 here, times 1e9 < 2^63. */
	return t / tsc_rate * NSEC_PER_SEC + t % tsc_rate * NSEC_PER_SEC / tsc_rate;
}

uint64_t plat_cycles(void)
{
	return rdtsc();
}

uint64_t plat_cycles_hz(void)
{
	return tsc_hz(); /* the cycle counter is the TSC */
}

void plat_udelay(uint32_t us)
{
	uint64_t start = rdtsc(), ticks = tsc_rate / USEC_PER_SEC * us;

	while (rdtsc() - start < ticks)
		cpu_relax();
}

/* ---- Wall clock ---------------------------------------------------------------------- */

#define CMOS_INDEX 0x70
#define CMOS_DATA  0x71
/* The update cycle holds UIP for at most 2 ms (244 us warning + 1984 us update). */
#define RTC_UIP_WAIT_NS (10 * NSEC_PER_MSEC)
/* Two reads in a row must agree; a second boundary spoils at most one pair. */
#define RTC_READ_TRIES 5

static int wall_rc = -ENOTSUP; /* until rtc_boot_read() */
static uint64_t wall_base_s;   /* the RTC's reading ... */
static uint64_t wall_base_ns;  /* ... at this plat_now_ns() */

static uint8_t cmos_read(uint8_t reg)
{
	/* Bit 7 of the index is the NMI mask: left clear (NMIs enabled), as found. */
	outb(CMOS_INDEX, reg & 0x7f);
	return inb(CMOS_DATA);
}

/* One reading of every register, taken outside an update cycle (bounded wait). */
static int rtc_snapshot(struct rtc_regs *r, uint8_t century_reg)
{
	uint64_t t0 = plat_now_ns();

	while (cmos_read(RTC_REG_STATUS_A) & RTC_STATUS_A_UIP)
		if (plat_now_ns() - t0 > RTC_UIP_WAIT_NS)
			return -EIO;
	memset(r, 0, sizeof(*r)); /* compared with memcmp() */
	r->sec = cmos_read(RTC_REG_SEC);
	r->min = cmos_read(RTC_REG_MIN);
	r->hour = cmos_read(RTC_REG_HOUR);
	r->day = cmos_read(RTC_REG_DAY);
	r->month = cmos_read(RTC_REG_MONTH);
	r->year = cmos_read(RTC_REG_YEAR);
	r->status_b = cmos_read(RTC_REG_STATUS_B);
	r->has_century = century_reg != 0;
	if (century_reg)
		r->century = cmos_read(century_reg);
	return 0;
}

int rtc_boot_read(struct civil_time *t)
{
	uint8_t century_reg = acpi_rtc_century();
	struct rtc_regs a, b;
	uint64_t now;
	int rc;

	/* A century index among the clock's own registers (0x00-0x0d) or past the 128 bytes
	 * of standard CMOS is a broken FADT: fall back to 20xx. */
	if (century_reg < 0x0e || century_reg > 0x7f)
		century_reg = 0;
	/* Nothing answers at the ports: the bus floats to all ones. */
	if (cmos_read(RTC_REG_STATUS_A) == 0xff && cmos_read(RTC_REG_STATUS_B) == 0xff)
		return wall_rc = -ENOTSUP;
	rc = rtc_snapshot(&a, century_reg);
	for (int i = 0; !rc && i < RTC_READ_TRIES; i++) {
		rc = rtc_snapshot(&b, century_reg);
		if (rc)
			break;
		if (memcmp(&a, &b, sizeof(a)) == 0) {
			now = plat_now_ns();
			rc = rtc_decode(&b, t);
			if (!rc)
				rc = civil_to_unix(t, &wall_base_s) ? -EIO : 0;
			wall_base_ns = now;
			return wall_rc = rc;
		}
		a = b;
	}
	return wall_rc = rc ? rc : -EIO;
}

int plat_wall_time(uint64_t *unix_seconds)
{
	if (wall_rc)
		return wall_rc;
	*unix_seconds = wall_base_s + (plat_now_ns() - wall_base_ns) / NSEC_PER_SEC;
	return 0;
}

/* ---- Host name ---------------------------------------------------------------------- */

static char hostname[HOSTNAME_MAX + 1] = HOSTNAME_DEFAULT;

int plat_set_hostname(const char *name)
{
	if (!name)
		return 0;
	if (!hostname_valid(name))
		return -EINVAL;
	snprintf(hostname, sizeof(hostname), "%s", name);
	return 0;
}

const char *plat_hostname(void)
{
	return hostname;
}

/* ---- Memory for devices ------------------------------------------------------------ */

int plat_dma_alloc(size_t npages, void **va, uint64_t *bus)
{
	void *p = page_alloc(npages);

	if (!p)
		return -ENOMEM;
	*va = p;
	*bus = (uint64_t)(uintptr_t)p; /* identity-mapped, no IOMMU */
	return 0;
}

void plat_dma_free(void *va, size_t npages)
{
	page_free(va, npages);
}

int plat_mem_info(struct plat_mem_info *out)
{
	struct page_stats s;

	page_alloc_stats(&s);
	out->total_bytes = s.total_pages * PAGE_SIZE;
	out->free_bytes = s.free_pages * PAGE_SIZE;
	out->heap_bytes = s.heap_pages * PAGE_SIZE;
	out->regions = s.regions;
	return 0;
}

/* ---- Console ------------------------------------------------------------------------ */

void plat_console_write(const char *buf, size_t len)
{
	serial_write(buf, len);
}

int plat_console_getc(void)
{
	return serial_getc();
}

static int vprint(const char *prefix, const char *fmt, va_list ap)
{
	char small[256], *buf = small;
	int n, p = 0;
	va_list ap2;

	va_copy(ap2, ap);
	if (prefix)
		p = snprintf(small, sizeof(small), "%s", prefix);
	n = vsnprintf(small + p, sizeof(small) - p, fmt, ap);
	if (n >= 0 && (size_t)(p + n) >= sizeof(small)) {
		/* Too long for the stack buffer: format again into the heap. */
		buf = malloc(p + n + 1);
		if (buf) {
			snprintf(buf, p + 1, "%s", prefix ? prefix : "");
			vsnprintf(buf + p, n + 1, fmt, ap2);
		} else {
			buf = small;
			n = sizeof(small) - 1 - p;
		}
	}
	va_end(ap2);
	if (n < 0)
		return n;
	serial_write(buf, p + n);
	if (buf != small)
		free(buf);
	return p + n;
}

int plat_vprintf(const char *fmt, va_list ap)
{
	return vprint(NULL, fmt, ap);
}

void plat_panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprint("\nthinbox: PANIC: ", fmt, ap);
	va_end(ap);
	serial_puts("\n");
	fail_stop();
}

/* ---- Machine ------------------------------------------------------------------------ */

static void (*power_hook)(void);

void plat_set_power_hook(void (*fn)(void))
{
	power_hook = fn;
}

static void run_power_hook(void)
{
	void (*fn)(void) = power_hook;

	power_hook = NULL; /* once, even if the power-off itself fails and is retried */
	if (fn)
		fn();
}

int plat_poweroff(void)
{
	run_power_hook();
	return acpi_poweroff();
}

int plat_reboot(void)
{
	run_power_hook();
	return machine_reset();
}

int plat_pci_get(unsigned idx, struct plat_pci_info *out)
{
	const struct pci_dev *d = pci_get(idx);

	if (!d)
		return -ENOENT;
	*out = (struct plat_pci_info){
		.bus = d->bus,
		.dev = d->dev,
		.fn = d->fn,
		.vendor = d->vendor,
		.device = d->device,
		.class_code = d->class_code,
		.subclass = d->subclass,
		.prog_if = d->prog_if,
	};
	for (int i = 0; i < 6; i++) {
		out->bar[i].addr = d->bar[i].addr;
		out->bar[i].size = d->bar[i].size;
		out->bar[i].is_io = d->bar[i].is_io;
		out->bar[i].is_64 = d->bar[i].is_64;
		out->bar[i].prefetch = d->bar[i].prefetch;
	}
	return 0;
}

const char *plat_name(void)
{
	static char name[64];

	if (!name[0])
		snprintf(name, sizeof(name), "UEFI x86_64 (TSC %llu MHz)",
			 (unsigned long long)(tsc_rate / 1000000));
	return name;
}
