/* SPDX-License-Identifier: MIT */
/*
 * The platform interface: everything core/, config/ and net/nbd/ need from the machine.
 *
 * Implemented exactly twice: boot/plat_efi.c for the firmware (after ExitBootServices)
 * and host/plat_host.c for Linux. Both implementations include this header, so the
 * compiler checks that they match it. Heap memory is the C library's malloc/free on both
 * builds (newlib's malloc sits on our page allocator in the firmware), so it is not here.
 *
 * All calls returning int give 0 or a negative errno.
 */
#ifndef CORE_BASE_PLAT_H
#define CORE_BASE_PLAT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Memory for devices ------------------------------------------------------------ */

#define PLAT_PAGE_SIZE 4096u

/*
 * Allocate @npages zeroed, page-aligned pages usable for device DMA; *va is the CPU address
 * and *bus the address a device uses (identical on both builds: the firmware runs
 * identity-mapped, the host has no devices). -ENOMEM when none are left.
 */
int plat_dma_alloc(size_t npages, void **va, uint64_t *bus);
/* Give back pages from plat_dma_alloc(); @npages must match. */
void plat_dma_free(void *va, size_t npages);

/* ---- Time --------------------------------------------------------------------------- */

/* Monotonic nanoseconds since an arbitrary point before the platform started. */
uint64_t plat_now_ns(void);
/* Busy-wait (firmware) or sleep (host) for at least @us microseconds. */
void plat_udelay(uint32_t us);
/*
 * The cheapest monotonic counter there is, for core/base/perf.h: the TSC in the firmware (one
 * instruction), nanoseconds on the host. plat_cycles_hz() is its rate (counts per second).
 */
uint64_t plat_cycles(void);
uint64_t plat_cycles_hz(void);

/*
 * The wall clock: seconds since 1970-01-01 00:00:00 UTC into *unix_seconds. 0, -ENOTSUP when
 * the platform has no clock, or -EIO when it reads nonsense (nothing is invented then).
 * Host: time(). Firmware: the CMOS real-time clock, read once at boot and advanced with
 * plat_now_ns() since, so a call is cheap and does no port I/O (the RTC is read as UTC, which
 * is what QEMU's -rtc base=utc, its default, gives).
 */
int plat_wall_time(uint64_t *unix_seconds);

/* ---- Randomness ---------------------------------------------------------------------- */

/*
 * Fill @buf with @len cryptographic-quality random bytes: keys, nonces, the seed of a DRBG
 * (the TLS code seeds mbedTLS's CTR_DRBG from this; it fits mbedtls_entropy_add_source()'s
 * callback with *olen = len on success). All or nothing:
 *   0        @buf holds @len random bytes;
 *   -ENODEV  no entropy source: the firmware found neither a virtio-rng device nor RDRAND
 *            (nor RDSEED). The caller must refuse what needs secrets ("no entropy source: no
 *            virtio-rng device and no RDRAND"), never fall back to something weaker;
 *   -EIO     sources exist but did not deliver enough for the (re)seed that was due (a dead
 *            device, a stuck RDRAND); a later call may succeed;
 *   -EINVAL  @buf NULL with @len > 0.
 * On an error @buf is zeroed (firmware) or unspecified (host): never use it.
 *
 * Host: getrandom(2) (blocks only until the kernel's pool is initialised, early at boot).
 * Firmware (boot/entropy.c): an HMAC_DRBG (SP 800-90A, SHA-256) seeded from virtio-rng and
 * RDSEED/RDRAND together, TSC jitter mixed in but never counted, reseeded every 1024 calls
 * (core/base/entropy.h). Any length; not reentrant (both builds are single-threaded here).
 */
int plat_random(void *buf, size_t len);

/* ---- Console ------------------------------------------------------------------------ */

/* Write @len bytes to the console (serial port, or the host's stdout). Never fails. */
void plat_console_write(const char *buf, size_t len);
/*
 * Read one byte from the console without waiting: the byte (0..255), -EAGAIN when none is
 * pending, or -EPIPE at end of input (host stdin closed; the serial port never ends).
 */
int plat_console_getc(void);
/* printf to the console; returns the number of bytes written. */
int plat_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int plat_vprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Print the message on the console and stop the machine with a failure indication. */
__attribute__((noreturn, format(printf, 1, 2))) void plat_panic(const char *fmt, ...);

/* ---- Machine ------------------------------------------------------------------------ */

/*
 * Power the machine off (firmware: ACPI S5, QEMU exits 0). The host build asks its main loop
 * to stop and returns 0; the firmware does not return unless S5 failed (-EIO).
 */
int plat_poweroff(void);
/* Reset the machine; -ENOTSUP on the host build, -EIO if the reset did not happen. */
int plat_reboot(void);

struct plat_mem_info {
	uint64_t total_bytes; /* conventional memory handed to us at boot */
	uint64_t free_bytes;  /* pages not yet allocated */
	uint64_t heap_bytes;  /* bytes of pages given to the C heap */
	uint32_t regions;     /* usable memory-map regions */
};
/* Memory figures; -ENOTSUP on the host build. */
int plat_mem_info(struct plat_mem_info *out);

struct plat_pci_info {
	uint8_t bus, dev, fn;
	uint16_t vendor, device;
	uint8_t class_code, subclass, prog_if;
	struct {
		uint64_t addr; /* 0 when the BAR is not implemented */
		uint64_t size;
		uint8_t is_io, is_64, prefetch;
	} bar[6];
};
/*
 * The @idx'th PCI function found at boot (0-based): 0 and *out filled, -ENOENT past the
 * last one, -ENOTSUP on the host build (no PCI bus).
 */
int plat_pci_get(unsigned idx, struct plat_pci_info *out);

/* A one-line description of the platform, e.g. "UEFI x86_64 (TSC 2095 MHz)". */
const char *plat_name(void);
/*
 * This machine's name, as LVM records it in creation_host: 1..63 of [A-Za-z0-9.-], never
 * NULL. Host: gethostname(); firmware: the `hostname` configuration key (fw_cfg
 * opt/thinbox/hostname, else \thinbox.cfg). "thinbox" when unset or not such a name.
 */
const char *plat_hostname(void);

#endif
