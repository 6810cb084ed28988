/* SPDX-License-Identifier: MIT */
/*
 * Interrupts as wake-ups only (docs/firmware.md, "Idle"): the firmware runs with interrupts
 * off (cli) and polls; when the main loop has found nothing to do for a while it halts until
 * a virtio device (MSI-X), the local APIC timer (the next deadline) or nothing at all wakes it.
 * The handlers do nothing but acknowledge the local APIC (EOI) and return, so no code runs
 * behind the main loop's back: interrupts are enabled only for the one HLT instruction
 * (`sti; hlt; cli`; the STI shadow means an interrupt already pending is taken after the HLT
 * starts, so a wake-up cannot be lost between the last poll and the halt).
 */
#ifndef BOOT_IRQ_H
#define BOOT_IRQ_H

#include <stdbool.h>
#include <stdint.h>

#define IRQ_VEC_DEVICE	 0x40 /* every virtio MSI-X message */
#define IRQ_VEC_TIMER	 0x41 /* the local APIC timer's one-shot */
#define IRQ_VEC_SPURIOUS 0xff /* the local APIC's spurious vector: no EOI */

struct irq_stats {
	uint64_t sleeps;      /* HLTs */
	uint64_t timer_wakes; /* of which the timer had run out when the CPU woke */
	uint64_t slept_ns;    /* time spent halted */
	uint64_t late_wakes;  /* timer wakes that found a device with work: a missed interrupt */
	uint64_t long_spells; /* work resumed after 10 ms or more without any (halts or not) */
	uint64_t wait_sleeps; /* of the HLTs, those while requests were inside the disks */
	uint64_t wait_ns;     /* time spent in them */
};

/*
 * Set the machine up for wake-ups: the 8259 PICs and every IOAPIC input masked (nothing but
 * our own sources may interrupt), the local APIC (xAPIC mode) enabled with its LINT0, error
 * and timer entries masked, IDT gates 32-255 pointing at the EOI-and-return stub, and the
 * timer's rate measured against the TSC (about 10 ms). Interrupts stay disabled. 0, or
 * -ENOTSUP without a local APIC in xAPIC mode (the firmware then keeps polling: irq_sleep()
 * returns at once).
 */
int irq_init(void);
/* True after irq_init() succeeded. */
bool irq_ready(void);
/* The MSI address and data that deliver IRQ_VEC_DEVICE to this CPU (edge, fixed). */
uint64_t irq_msi_addr(void);
uint32_t irq_msi_data(void);
/*
 * Halt until an interrupt arrives or @max_ns has passed (the timer's one-shot; capped at what
 * the 32-bit counter holds), then return with interrupts disabled again. The caller must have
 * checked, after arming its devices' notifications, that no work is pending.
 */
bool irq_sleep(uint64_t max_ns); /* true when the timer ended it */
/* Count a timer wake that found work waiting (irq_stats.late_wakes). */
void irq_count_late_wake(void);
/* Count work resuming after a quiet spell of 10 ms or more (irq_stats.long_spells). */
void irq_count_long_spell(void);
/* Count a halt of @ns while the loop only waited on the disks (irq_stats.wait_sleeps). */
void irq_count_wait_sleep(uint64_t ns);
void irq_get_stats(struct irq_stats *st);
/* Local APIC timer ticks per millisecond (0 before irq_init()). */
uint64_t irq_timer_per_ms(void);

#endif
