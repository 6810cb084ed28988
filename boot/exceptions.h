/* SPDX-License-Identifier: MIT */
/*
 * CPU exception handling after ExitBootServices: our own IDT for vectors 0-31 whose handler
 * prints one line on the serial port,
 *   thinbox: EXCEPTION vec=N (#XX) err=0x.. rip=0x.. cr2=0x.. rsp=0x.. image=0x..
 * and stops the machine as a failure (fail_stop()). `rip - image` is the address in
 * build/efi/thinbox.so (objdump -d).
 */
#ifndef BOOT_EXCEPTIONS_H
#define BOOT_EXCEPTIONS_H

#include <stdint.h>

/* Load the IDT. @image_base is where OVMF loaded us, printed to map RIPs to the binary. */
void exceptions_init(uint64_t image_base);
/*
 * Point interrupt vector @vec (32-255; others are ignored) at @stub, an interrupt gate in our
 * code segment. Vectors never set stay absent: an unexpected interrupt is a #NP exception,
 * reported like any other.
 */
void exceptions_set_gate(unsigned vec, void (*stub)(void));

/*
 * Stop after a failure: tell QEMU through isa-debug-exit (exit status 35). Without that
 * device, say so on the console and halt with interrupts off, forever.
 */
__attribute__((noreturn)) void fail_stop(void);

/*
 * Raise an exception on purpose (the test-only fw_cfg switch opt/thinbox/test-fault):
 * "gp" (#GP, 13), "pf" (#PF, 14), "ud" (#UD, 6), "de" (#DE, 0). Returns -EINVAL for any
 * other name; does not return otherwise.
 */
int exceptions_trigger(const char *kind);

#endif
