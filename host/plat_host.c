/* SPDX-License-Identifier: MIT */
/*
 * core/base/plat.h for Linux: the host build runs the same core, shell and NBD code as the
 * firmware, with stdin/stdout as the console. Machine calls that need real hardware answer
 * -ENOTSUP, and the shell says so.
 */
#include "core/base/plat.h"
#include "core/base/util.h"
#include "core/base/walltime.h"
#include "host/plat_host.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;

bool plat_host_stop_requested(void)
{
	return stop_requested != 0;
}

void plat_host_request_stop(void)
{
	stop_requested = 1;
}

int plat_host_poll(struct pollfd *fds, unsigned nfds, int timeout_ms, uint64_t spin_ns)
{
	uint64_t until;
	int rc;

	if (timeout_ms == 0 || !spin_ns)
		return poll(fds, nfds, timeout_ms);
	until = plat_now_ns() + spin_ns;
	do {
		rc = poll(fds, nfds, 0);
		if (rc == 0)
			sched_yield();
	} while (rc == 0 && plat_now_ns() < until);
	return rc ? rc : poll(fds, nfds, timeout_ms);
}

int plat_dma_alloc(size_t npages, void **va, uint64_t *bus)
{
	void *p;

	if (!npages)
		return -EINVAL;
	p = mmap(NULL, npages * PLAT_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		 -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	*va = p;
	*bus = (uint64_t)(uintptr_t)p;
	return 0;
}

void plat_dma_free(void *va, size_t npages)
{
	if (va)
		munmap(va, npages * PLAT_PAGE_SIZE);
}

/* Added to the clock by plat_host_clock_advance(); only tests move it. */
static uint64_t clock_skew_ns;

void plat_host_clock_advance(uint64_t ns)
{
	clock_skew_ns += ns;
}

uint64_t plat_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec + clock_skew_ns;
}

uint64_t plat_cycles(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

uint64_t plat_cycles_hz(void)
{
	return NSEC_PER_SEC;
}

void plat_udelay(uint32_t us)
{
	struct timespec ts = { us / USEC_PER_SEC, (long)(us % USEC_PER_SEC * NSEC_PER_USEC) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

int plat_wall_time(uint64_t *unix_seconds)
{
	time_t t = time(NULL);

	if (t < 0)
		return -EIO; /* (time_t)-1: no clock, or one set before 1970 */
	*unix_seconds = (uint64_t)t;
	return 0;
}

void plat_console_write(const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(STDOUT_FILENO, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* stdout gone: nothing left to tell anyone */
		buf += n;
		len -= (size_t)n;
	}
}

int plat_random(void *buf, size_t len)
{
	uint8_t *p = buf;

	if (!buf && len)
		return -EINVAL;
	while (len) {
		/* Up to 32 MiB - 1 per call on Linux, fewer if a signal interrupts: loop. */
		ssize_t n = getrandom(p, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == ENOSYS ? -ENODEV : -EIO;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int plat_console_getc(void)
{
	unsigned char c;
	ssize_t n;

	/* stdin is non-blocking (host/main.c sets it), so this never waits. */
	n = read(STDIN_FILENO, &c, 1);
	if (n == 1)
		return c;
	if (n == 0)
		return -EPIPE;
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -EPIPE;
}

int plat_vprintf(const char *fmt, va_list ap)
{
	char buf[1024];
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);

	if (n < 0)
		return n;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	plat_console_write(buf, (size_t)n);
	return n;
}

void plat_panic(const char *fmt, ...)
{
	va_list ap;

	fputs("thinbox: PANIC: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

int plat_poweroff(void)
{
	plat_host_request_stop();
	return 0;
}

int plat_reboot(void)
{
	return -ENOTSUP;
}

int plat_mem_info(struct plat_mem_info *out)
{
	return -ENOTSUP;
}

int plat_pci_get(unsigned idx, struct plat_pci_info *out)
{
	return -ENOTSUP;
}

const char *plat_name(void)
{
	return "the Linux host build";
}

const char *plat_hostname(void)
{
	static char name[HOSTNAME_MAX + 2];
	char got[HOSTNAME_MAX + 2] = "";

	if (name[0])
		return name;
	/* One byte more than a valid name holds, so that a longer one is seen (and refused)
	 * whether or not gethostname() terminates what it truncates. */
	if (gethostname(got, sizeof(got) - 1) == 0 && hostname_valid(got)) {
		memcpy(name, got, sizeof(name));
	} else {
		/* stderr: stdout is the shell's console, which tests read. */
		fprintf(stderr, "thinbox: host name '%s' is not 1..%d of [A-Za-z0-9.-]: using %s\n",
			got, HOSTNAME_MAX, HOSTNAME_DEFAULT);
		snprintf(name, sizeof(name), "%s", HOSTNAME_DEFAULT);
	}
	return name;
}
