/* SPDX-License-Identifier: MIT */
/*
 * Wake-up interrupts: the local APIC, its timer, and the masking of everything else (irq.h).
 *
 * The machine (q35 under QEMU, one CPU): the local APIC in xAPIC mode at the address
 * IA32_APIC_BASE gives, the two 8259 PICs (OVMF leaves them in virtual-wire mode through
 * LINT0) and one IOAPIC at its fixed q35 address. We take nothing from the legacy sources:
 * the PICs and every IOAPIC input are masked and LINT0 is masked too, so the only interrupts
 * are the virtio devices' MSI-X messages (written straight to the local APIC) and its timer.
 */
#include "boot/irq.h"

#include "boot/exceptions.h"
#include "boot/io.h"
#include "boot/plat_efi.h"

#include <errno.h>

#define MSR_APIC_BASE	    0x1b
#define APIC_BASE_ENABLE    (1ull << 11)
#define APIC_BASE_X2APIC    (1ull << 10)
#define APIC_BASE_ADDR_MASK 0xffffff000ull
#define CPUID1_EDX_APIC	    (1u << 9)

/* xAPIC registers (Intel SDM vol. 3 §10.4.1, table 10-1): byte offsets from the base. */
#define APIC_ID		  0x20
#define APIC_TPR	  0x80
#define APIC_EOI	  0xb0
#define APIC_SVR	  0xf0
#define APIC_SVR_ENABLE	  0x100
#define APIC_LVT_TIMER	  0x320
#define APIC_LVT_LINT0	  0x350
#define APIC_LVT_ERROR	  0x370
#define APIC_LVT_MASKED	  0x10000
#define APIC_TIMER_INIT	  0x380
#define APIC_TIMER_CUR	  0x390
#define APIC_TIMER_DIV	  0x3e0
#define APIC_TIMER_DIV_16 0x3 /* the divide configuration's encoding of 16 */

#define IOAPIC_BASE	    0xfec00000ull /* q35's only IOAPIC */
#define IOAPIC_REGSEL	    0x00
#define IOAPIC_WIN	    0x10
#define IOAPIC_VER	    0x01
#define IOAPIC_REDIR(n)	    (0x10 + 2 * (n))
#define IOAPIC_REDIR_MASKED 0x10000

#define PIC1_DATA 0x21
#define PIC2_DATA 0xa1

#define MSI_ADDR_BASE 0xfee00000ull
#define CALIBRATE_US  2000
#define PAIR_TRIES    8

void irq_stub(void);
void irq_spurious_stub(void);
/* The EOI register's address, for irq_stub. */
uint64_t irq_eoi_reg;

static uint64_t apic;	      /* the local APIC's registers, 0 when not set up */
static uint32_t apic_id;      /* ours, for the MSI destination */
static uint64_t timer_per_ms; /* timer ticks (after the divider) per millisecond */
static struct irq_stats stats;

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;

	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

static uint32_t apic_read(uint32_t reg)
{
	return *(volatile uint32_t *)(uintptr_t)(apic + reg);
}

static void apic_write(uint32_t reg, uint32_t v)
{
	*(volatile uint32_t *)(uintptr_t)(apic + reg) = v;
}

static uint32_t ioapic_read(uint32_t reg)
{
	*(volatile uint32_t *)(uintptr_t)(IOAPIC_BASE + IOAPIC_REGSEL) = reg;
	return *(volatile uint32_t *)(uintptr_t)(IOAPIC_BASE + IOAPIC_WIN);
}

static void ioapic_write(uint32_t reg, uint32_t v)
{
	*(volatile uint32_t *)(uintptr_t)(IOAPIC_BASE + IOAPIC_REGSEL) = reg;
	*(volatile uint32_t *)(uintptr_t)(IOAPIC_BASE + IOAPIC_WIN) = v;
}

/* The legacy interrupt sources, silenced: OVMF may have left its timer tick routed. */
static void mask_legacy(void)
{
	unsigned n;

	outb(PIC1_DATA, 0xff);
	outb(PIC2_DATA, 0xff);
	n = ((ioapic_read(IOAPIC_VER) >> 16) & 0xff) + 1;
	for (unsigned i = 0; i < n && i < 240; i++)
		ioapic_write(IOAPIC_REDIR(i), ioapic_read(IOAPIC_REDIR(i)) | IOAPIC_REDIR_MASKED);
}

int irq_init(void)
{
	uint32_t eax = 1, ebx, ecx = 0, edx;
	uint64_t base, t0 = 0, t1 = 0, t2 = 0, left = 0, tight;

	__asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
	if (!(edx & CPUID1_EDX_APIC))
		return -ENOTSUP;
	base = rdmsr(MSR_APIC_BASE);
	if (base & APIC_BASE_X2APIC)
		return -ENOTSUP; /* OVMF leaves xAPIC mode on a one-CPU machine; x2APIC is MSRs */
	if (!(base & APIC_BASE_ENABLE))
		wrmsr(MSR_APIC_BASE, base | APIC_BASE_ENABLE);
	mask_legacy();
	apic = base & APIC_BASE_ADDR_MASK;
	irq_eoi_reg = apic + APIC_EOI;
	apic_id = apic_read(APIC_ID) >> 24;

	for (unsigned v = 32; v < 256; v++)
		exceptions_set_gate(v, v == IRQ_VEC_SPURIOUS ? irq_spurious_stub : irq_stub);
	apic_write(APIC_SVR, APIC_SVR_ENABLE | IRQ_VEC_SPURIOUS);
	apic_write(APIC_TPR, 0);
	apic_write(APIC_LVT_LINT0, APIC_LVT_MASKED);
	apic_write(APIC_LVT_ERROR, APIC_LVT_MASKED);

	/*
	 * The timer's rate against the TSC (already calibrated against the PM timer): counting
	 * down from the top for 2 ms. The entry stays masked, so nothing fires. The start and
	 * the end are each timed by the TSC on both sides of the register access (read again
	 * if that took over 5 us), so the error is a few microseconds in 2 ms; the timer only
	 * bounds halts, which the TSC then measures.
	 */
	apic_write(APIC_TIMER_DIV, APIC_TIMER_DIV_16);
	apic_write(APIC_LVT_TIMER, APIC_LVT_MASKED | IRQ_VEC_TIMER);
	tight = tsc_hz() / 200000;
	for (unsigned i = 0; i < PAIR_TRIES && (i == 0 || t1 - t0 > tight); i++) {
		t0 = rdtsc();
		apic_write(APIC_TIMER_INIT, 0xffffffffu); /* (re)starts the count */
		t1 = rdtsc();
	}
	t0 += (t1 - t0) / 2;
	while ((rdtsc() - t0) * 1000000 / tsc_hz() < CALIBRATE_US)
		cpu_relax();
	for (unsigned i = 0; i < PAIR_TRIES && (i == 0 || t2 - t1 > tight); i++) {
		t1 = rdtsc();
		left = apic_read(APIC_TIMER_CUR);
		t2 = rdtsc();
	}
	t0 = t1 + (t2 - t1) / 2 - t0;
	apic_write(APIC_TIMER_INIT, 0);
	timer_per_ms = (0xffffffffull - left) * tsc_hz() / t0 / 1000;
	if (timer_per_ms == 0) {
		apic = 0;
		return -EIO; /* a timer that does not count cannot wake us */
	}
	/* One-shot from now on, unmasked: it fires only when irq_sleep() arms it. */
	apic_write(APIC_LVT_TIMER, IRQ_VEC_TIMER);
	return 0;
}

bool irq_ready(void)
{
	return apic != 0;
}

uint64_t irq_msi_addr(void)
{
	return MSI_ADDR_BASE | ((uint64_t)(apic_id & 0xff) << 12);
}

uint32_t irq_msi_data(void)
{
	return IRQ_VEC_DEVICE; /* fixed delivery, edge */
}

uint64_t irq_timer_per_ms(void)
{
	return timer_per_ms;
}

bool irq_sleep(uint64_t max_ns)
{
	uint64_t ticks, t0;
	bool timer;

	if (!apic)
		return false;
	ticks = max_ns / 1000 * timer_per_ms / 1000;
	if (ticks == 0)
		ticks = 1;
	if (ticks > 0xffffffffull)
		ticks = 0xffffffffull;
	t0 = rdtsc();
	apic_write(APIC_TIMER_INIT, (uint32_t)ticks);
	__asm__ volatile("sti; hlt; cli" ::: "memory");
	timer = apic_read(APIC_TIMER_CUR) == 0;
	if (timer)
		stats.timer_wakes++;
	/* Stopped, so a late one-shot cannot interrupt the next sleep early. */
	apic_write(APIC_TIMER_INIT, 0);
	stats.sleeps++;
	stats.slept_ns += (rdtsc() - t0) * 1000000000ull / tsc_hz();
	return timer;
}

void irq_count_late_wake(void)
{
	stats.late_wakes++;
}

void irq_count_long_spell(void)
{
	stats.long_spells++;
}

void irq_count_wait_sleep(uint64_t ns)
{
	stats.wait_sleeps++;
	stats.wait_ns += ns;
}

void irq_get_stats(struct irq_stats *st)
{
	*st = stats;
}
