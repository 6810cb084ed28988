/* SPDX-License-Identifier: MIT */
/*
 * The IDT and the exception handler. The handler may run with the heap or newlib's state
 * corrupted, so it formats its line by hand and writes straight to the UART.
 */
#include "boot/exceptions.h"

#include <errno.h>
#include <string.h>

#include "boot/io.h"
#include "boot/serial.h"

#define NR_VECTORS  32	/* the exceptions */
#define IDT_ENTRIES 256 /* 32-255: interrupts, gates set by boot/irq.c (absent until then) */
#define STUB_SIZE   16

/* The frame exc_common builds, lowest address first. */
struct exc_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss; /* pushed by the CPU */
};

struct idt_entry {
	uint16_t off_lo;
	uint16_t sel;
	uint8_t ist;
	uint8_t type; /* 0x8e: present, DPL 0, 64-bit interrupt gate */
	uint16_t off_mid;
	uint32_t off_hi;
	uint32_t zero;
} __attribute__((packed));

struct idt_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

extern char exc_stubs[];
void exception_handler(struct exc_frame *f);

static struct idt_entry idt[IDT_ENTRIES];
static uint16_t code_sel;
static uint64_t image_base;

static const char *const vec_names[NR_VECTORS] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS",
	"#NP", "#SS", "#GP", "#PF", "?",   "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

void exceptions_init(uint64_t base)
{
	uint16_t cs;
	struct idt_ptr p;

	image_base = base;
	/* Keep OVMF's GDT: its code selector is whatever CS is now (0x38 on OVMF). */
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	code_sel = cs;
	for (int v = 0; v < NR_VECTORS; v++) {
		uint64_t a = (uint64_t)(uintptr_t)(exc_stubs + v * STUB_SIZE);

		idt[v] = (struct idt_entry){
			.off_lo = a & 0xffff,
			.sel = cs,
			.type = 0x8e,
			.off_mid = (a >> 16) & 0xffff,
			.off_hi = a >> 32,
		};
	}
	p.limit = sizeof(idt) - 1;
	p.base = (uint64_t)(uintptr_t)idt;
	__asm__ volatile("lidt %0" : : "m"(p));
}

void exceptions_set_gate(unsigned vec, void (*stub)(void))
{
	uint64_t a = (uint64_t)(uintptr_t)stub;

	if (vec < NR_VECTORS || vec >= IDT_ENTRIES)
		return;
	idt[vec] = (struct idt_entry){
		.off_lo = a & 0xffff,
		.sel = code_sel,
		.type = 0x8e,
		.off_mid = (a >> 16) & 0xffff,
		.off_hi = a >> 32,
	};
}

/* Append @v in hex (0x...) or decimal to @buf at *pos, bounded by @len. */
static void put_num(char *buf, size_t len, size_t *pos, uint64_t v, int hex)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = "0123456789abcdef"[hex ? v % 16 : v % 10];
		v = hex ? v / 16 : v / 10;
	} while (v);
	if (hex && *pos + 2 < len) {
		buf[(*pos)++] = '0';
		buf[(*pos)++] = 'x';
	}
	while (n > 0 && *pos + 1 < len)
		buf[(*pos)++] = tmp[--n];
	buf[*pos] = '\0';
}

static void put_str(char *buf, size_t len, size_t *pos, const char *s)
{
	while (*s && *pos + 1 < len)
		buf[(*pos)++] = *s++;
	buf[*pos] = '\0';
}

void exception_handler(struct exc_frame *f)
{
	char line[200];
	size_t pos = 0;
	const char *name =
	    f->vector < NR_VECTORS && vec_names[f->vector] ? vec_names[f->vector] : "?";

	/* The UART may not be set up yet if the fault came very early; try anyway. */
	if (!serial_present())
		serial_init();
	put_str(line, sizeof(line), &pos, "\nthinbox: EXCEPTION vec=");
	put_num(line, sizeof(line), &pos, f->vector, 0);
	put_str(line, sizeof(line), &pos, " (");
	put_str(line, sizeof(line), &pos, name);
	put_str(line, sizeof(line), &pos, ") err=");
	put_num(line, sizeof(line), &pos, f->error, 1);
	put_str(line, sizeof(line), &pos, " rip=");
	put_num(line, sizeof(line), &pos, f->rip, 1);
	put_str(line, sizeof(line), &pos, " cr2=");
	put_num(line, sizeof(line), &pos, read_cr2(), 1);
	put_str(line, sizeof(line), &pos, " rsp=");
	put_num(line, sizeof(line), &pos, f->rsp, 1);
	put_str(line, sizeof(line), &pos, " image=");
	put_num(line, sizeof(line), &pos, image_base, 1);
	put_str(line, sizeof(line), &pos, "\n");
	serial_write(line, pos);
	fail_stop();
}

void fail_stop(void)
{
	outl(DEBUG_EXIT_PORT, DEBUG_EXIT_FAIL);
	/* Still running: there is no isa-debug-exit device (a real machine, or plain `make run`
	 * without it). */
	serial_puts("thinbox: stopped after a failure (no isa-debug-exit device); "
		    "halting with interrupts off. Reset or power off the machine.\n");
	cpu_halt_forever();
}

int exceptions_trigger(const char *kind)
{
	if (strcmp(kind, "gp") == 0) {
		/* A non-canonical address: #GP, not #PF. */
		__asm__ volatile("movq $1, (%0)" : : "r"(0x8000000000000000ull) : "memory");
	} else if (strcmp(kind, "pf") == 0) {
		/* Canonical but far above anything OVMF maps (it maps the CPU's 40-bit space at
		 * most), so the page walk fails and CR2 holds this address. */
		__asm__ volatile("movq $1, (%0)" : : "r"(0x00007f0000000000ull) : "memory");
	} else if (strcmp(kind, "ud") == 0) {
		__asm__ volatile("ud2");
	} else if (strcmp(kind, "de") == 0) {
		uint32_t zero = 0;

		__asm__ volatile("divl %1" : : "a"(1), "r"(zero) : "rdx");
	} else {
		return -EINVAL;
	}
	return -EIO; /* the fault did not happen */
}
