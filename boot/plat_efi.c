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
#define PM_TURN	      (PM_TIMER_MASK + 1ull)

static uint64_t tsc_rate = TSC_HZ_GUESS;
/* plat_now_ns() counts from here: rebased whenever the rate is refined, so it never steps. */
static uint64_t base_tsc, base_ns;

/* ---- Time --------------------------------------------------------------------------- */

/*
 * A TSC reading paired with a PM timer reading: the TSC read just before and just after
 * the port read, whose midpoint is the pair's TSC. A pair that took long (the vCPU
 * preempted, a slow exit) is read again: the calibration's error is the two pairs' widths
 * over the window (a few microseconds over 10 ms), and a preemption at an end cannot spoil
 * it, as it could the single readings of the 50 ms window this replaced.
 */
struct pm_pair {
	uint64_t tsc;
	uint32_t pm;
};

#define PM_PAIR_TRIES 16

static struct pm_pair pm_pair_read(void)
{
	/* 5 us at the rate known so far; the narrowest of PM_PAIR_TRIES otherwise. */
	uint64_t tight = tsc_rate / 200000, best = UINT64_MAX;
	struct pm_pair p = { 0, 0 };

	for (unsigned i = 0; i < PM_PAIR_TRIES && best > tight; i++) {
		uint64_t a = rdtsc();
		uint32_t pm = acpi_pm_timer() & PM_TIMER_MASK;
		uint64_t b = rdtsc();

		if (b - a < best) {
			best = b - a;
			p.tsc = a + (b - a) / 2;
			p.pm = pm;
		}
	}
	return p;
}

/* @a * @b / @c without overflow while @a / @c * @b and (@a % @c) * @b fit in 64 bits. */
static uint64_t mul_div(uint64_t a, uint64_t b, uint64_t c)
{
	return a / c * b + a % c * b / c;
}

/*
 * The calibration's first pair, and when to refine it: the rate is measured again over
 * ever longer spans from that same pair (tsc_refine()), a part in a few million at 1 s.
 */
static struct pm_pair cal_first;
static uint64_t refine_at; /* TSC; 0: no refinement (no PM timer, or done) */
static unsigned refine_step;
static unsigned cal_ms; /* the first measurement's window; 0: not against the PM timer */
static uint64_t cal_hz; /* its result */
/* Spans from the first pair: each lets the next unwrap the 24-bit timer (4.7 s a turn). */
static const unsigned refine_s[] = { 1, 8, 64, 512 };

/* Use the refined rate @hz from now on, plat_now_ns() carrying on from where it is. */
static void set_rate(uint64_t hz)
{
	uint64_t t = rdtsc();

	base_ns += mul_div(t - base_tsc, NSEC_PER_SEC, tsc_rate);
	base_tsc = t;
	tsc_rate = hz;
}

int tsc_calibrate_pm(unsigned ms)
{
	uint64_t ticks = (uint64_t)ACPI_PM_TIMER_HZ * ms / 1000, elapsed, t0;
	/* A timer that does not advance ends the wait after 20x the window at the guessed
	 * rate (0.2 s for 10 ms at 2 GHz). */
	uint64_t limit = TSC_HZ_GUESS / 1000 * ms * 20;
	struct pm_pair first, last;

	if (!acpi_pmbase())
		return -ENODEV;
	first = pm_pair_read();
	t0 = rdtsc();
	/* The window is far short of a turn of the timer (4.7 s): the difference is the
	 * elapsed ticks. */
	while (((acpi_pm_timer() - first.pm) & PM_TIMER_MASK) < ticks)
		if (rdtsc() - t0 > limit)
			return -EIO;
	last = pm_pair_read();
	elapsed = (last.pm - first.pm) & PM_TIMER_MASK;
	if (!elapsed || last.tsc <= first.tsc)
		return -EIO;
	tsc_set_hz(mul_div(last.tsc - first.tsc, ACPI_PM_TIMER_HZ, elapsed));
	cal_hz = tsc_rate;
	cal_ms = ms;
	cal_first = first;
	refine_step = 0;
	refine_at = first.tsc + tsc_rate * refine_s[0];
	return 0;
}

void tsc_refine(void)
{
	uint64_t span, expect, got, hz;
	struct pm_pair p;

	if (!refine_at || rdtsc() < refine_at)
		return;
	p = pm_pair_read();
	span = p.tsc - cal_first.tsc;
	/* The ticks the present rate expects, and the whole turns of the 24-bit timer that
	 * bring the reading nearest to them: the rate is far better than the half turn
	 * (2.3 s) this tolerates over each span. */
	expect = mul_div(span, ACPI_PM_TIMER_HZ, tsc_rate);
	got = (p.pm - cal_first.pm) & PM_TIMER_MASK;
	if (expect + PM_TURN / 2 >= got)
		got += (expect + PM_TURN / 2 - got) / PM_TURN * PM_TURN;
	/* Off by more than a quarter turn: not the timer we calibrated on; keep the rate. */
	if (got && (got > expect ? got - expect : expect - got) < PM_TURN / 4) {
		hz = mul_div(span, ACPI_PM_TIMER_HZ, got);
		if (hz)
			set_rate(hz);
	}
	if (++refine_step < ARRAY_SIZE(refine_s))
		refine_at = cal_first.tsc + tsc_rate * refine_s[refine_step];
	else
		refine_at = 0;
}

void tsc_set_hz(uint64_t hz)
{
	/* Counted from the TSC's reset (the machine's start, as `uptime` shows): nothing was
	 * timed before the calibration. */
	if (hz) {
		tsc_rate = hz;
		base_tsc = base_ns = 0;
	}
}

void tsc_describe(char *buf, size_t size)
{
	size_t n;

	if (!cal_ms) {
		snprintf(buf, size, "TSC %llu Hz, from boot services' Stall() (no PM timer)",
			 (unsigned long long)tsc_rate);
		return;
	}
	if (!refine_step)
		n = (size_t)snprintf(buf, size, "TSC %llu Hz, over %u ms against the ACPI PM timer",
				     (unsigned long long)tsc_rate, cal_ms);
	else
		n = (size_t)snprintf(
		    buf, size,
		    "TSC %llu Hz, over %u s against the ACPI PM timer (the first %u ms: %+lld ppm)",
		    (unsigned long long)tsc_rate, refine_s[refine_step - 1], cal_ms,
		    ((long long)cal_hz - (long long)tsc_rate) * 1000000 / (long long)tsc_rate);
	if (n < size && refine_at)
		snprintf(buf + n, size - n, "; again at %u s", refine_s[refine_step]);
}

uint64_t tsc_hz(void)
{
	return tsc_rate;
}

uint64_t plat_now_ns(void)
{
	/* Exact (mul_div()) for TSC rates below 18 GHz. */
	return base_ns + mul_div(rdtsc() - base_tsc, NSEC_PER_SEC, tsc_rate);
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
	for (unsigned i = 0; i < 6; i++) {
		const struct pci_bar *b = pci_bar(d, i); /* never NULL: d from pci_get() */

		out->bar[i].addr = b->addr;
		out->bar[i].size = b->size;
		out->bar[i].is_io = b->is_io;
		out->bar[i].is_64 = b->is_64;
		out->bar[i].prefetch = b->prefetch;
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
