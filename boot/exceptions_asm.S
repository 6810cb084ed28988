/* SPDX-License-Identifier: MIT */
/*
 * Entry stubs for vectors 0-31, 16 bytes apart so C can compute their addresses
 * (exc_stubs + 16 * vector) without a table of absolute addresses to relocate. Each stub
 * makes the frame uniform: a dummy error code where the CPU pushes none, then the vector.
 * exc_common saves the general registers and calls exception_handler(frame) with the stack
 * realigned to 16 bytes; the handler never returns.
 */
	.text
	.globl	exc_stubs
	.balign	16
exc_stubs:
	.irp	vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.balign	16
	/* Vectors with a CPU-pushed error code: 8, 10-14, 17, 21, 29, 30. */
	.if	(\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	.else
	pushq	$0
	.endif
	pushq	$\vec
	jmp	exc_common
	.endr

	.balign	16
exc_common:
	pushq	%rax
	pushq	%rbx
	pushq	%rcx
	pushq	%rdx
	pushq	%rsi
	pushq	%rdi
	pushq	%rbp
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	movq	%rsp, %rdi
	andq	$-16, %rsp
	call	exception_handler
1:	cli
	hlt
	jmp	1b

	.section .note.GNU-stack,"",@progbits
