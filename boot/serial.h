/* SPDX-License-Identifier: MIT */
/*
 * The 16550 UART on COM1 (port 0x3f8): the firmware's console, polled, no interrupts.
 */
#ifndef BOOT_SERIAL_H
#define BOOT_SERIAL_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Program COM1 for 115200 8N1 with FIFOs (the settings OVMF uses, so output before and after
 * ExitBootServices looks the same). Returns 0, or -ENODEV when no UART answers.
 */
int serial_init(void);
bool serial_present(void);
/* Write @len bytes, LF as CR LF. Bounded: a UART that never drains drops the bytes. */
void serial_write(const char *buf, size_t len);
void serial_puts(const char *s);
/* One received byte, or -EAGAIN when none is waiting. */
int serial_getc(void);

#endif
