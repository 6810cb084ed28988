/* SPDX-License-Identifier: MIT */
/*
 * The interrupt stubs (boot/irq.c). They run only while the main loop's HLT has interrupts
 * enabled, so there is nothing to save but what they touch: irq_stub acknowledges the local
 * APIC (a 32-bit write of 0 to its EOI register, whose address irq.c stored in irq_eoi_reg)
 * and returns; irq_spurious_stub returns without an EOI, as the SDM wants for the spurious
 * vector. MOV does not change the flags, and IRETQ restores them anyway.
 */
	.text
	.globl	irq_stub
	.balign	16
irq_stub:
	pushq	%rax
	movq	irq_eoi_reg(%rip), %rax
	movl	$0, (%rax)
	popq	%rax
	iretq

	.globl	irq_spurious_stub
	.balign	16
irq_spurious_stub:
	iretq

	.section .note.GNU-stack,"",@progbits
