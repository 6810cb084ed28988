/* SPDX-License-Identifier: MIT */
/*
 * A polled 16550 driver for COM1. Every wait is bounded: if the transmitter never becomes
 * ready (no UART, or a wedged one) the byte is dropped rather than hanging the machine, since
 * the console is also what reports errors.
 */
#include "boot/serial.h"

#include <errno.h>
#include <stdint.h>

#include "boot/io.h"

#define COM1 0x3f8

/* 16550 registers, offsets from the base port. */
#define UART_DATA 0 /* RBR/THR; DLL when DLAB=1 */
#define UART_IER  1 /* DLM when DLAB=1 */
#define UART_FCR  2
#define UART_LCR  3
#define UART_MCR  4
#define UART_LSR  5
#define UART_SCR  7

#define LSR_DATA_READY 0x01
#define LSR_THR_EMPTY  0x20

/* About 10 ms at 115200 baud under TCG is far fewer spins than this; it only stops a hang. */
#define TX_SPIN_MAX 200000

static bool uart_ok;

int serial_init(void)
{
	/* The scratch register exists on every 16450/16550; nothing there reads back as 0xff. */
	outb(COM1 + UART_SCR, 0x5a);
	if (inb(COM1 + UART_SCR) != 0x5a) {
		uart_ok = false;
		return -ENODEV;
	}
	outb(COM1 + UART_IER, 0x00);  /* polled: no interrupts */
	outb(COM1 + UART_LCR, 0x80);  /* DLAB on to set the divisor */
	outb(COM1 + UART_DATA, 0x01); /* 115200 = 115200 / 1 */
	outb(COM1 + UART_IER, 0x00);
	outb(COM1 + UART_LCR, 0x03); /* 8N1, DLAB off */
	outb(COM1 + UART_FCR, 0xc7); /* FIFOs on, cleared, 14-byte RX threshold */
	outb(COM1 + UART_MCR, 0x03); /* DTR, RTS */
	uart_ok = true;
	return 0;
}

bool serial_present(void)
{
	return uart_ok;
}

static void put_raw(char c)
{
	for (int i = 0; i < TX_SPIN_MAX; i++) {
		if (inb(COM1 + UART_LSR) & LSR_THR_EMPTY) {
			outb(COM1 + UART_DATA, (uint8_t)c);
			return;
		}
		cpu_relax();
	}
}

void serial_write(const char *buf, size_t len)
{
	if (!uart_ok)
		return;
	for (size_t i = 0; i < len; i++) {
		/* Terminals want CR LF; a CR already in the text is not doubled. */
		if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
			put_raw('\r');
		put_raw(buf[i]);
	}
}

void serial_puts(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	serial_write(s, n);
}

int serial_getc(void)
{
	if (!uart_ok || !(inb(COM1 + UART_LSR) & LSR_DATA_READY))
		return -EAGAIN;
	return inb(COM1 + UART_DATA);
}
