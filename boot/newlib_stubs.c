/* SPDX-License-Identifier: MIT */
/*
 * What newlib needs from the system, for the parts of libc the firmware uses (strings,
 * formatting, malloc). newlib was configured without syscalls (MISSING_SYSCALL_NAMES), so it
 * calls the plain POSIX names. The link uses --no-undefined, so anything missing here shows
 * up as a link error rather than a crash.
 *
 * __assert_func is replaced because newlib's own prints through stdio's FILE layer and
 * abort(), which would pull in write/read/kill/... stubs for nothing.
 *
 * gettimeofday makes newlib's time() the platform's wall clock: mbedTLS reads the date with
 * time() to check certificate validity (docs/tls.md).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include "boot/page_alloc.h"
#include "core/base/plat.h"

void *sbrk(ptrdiff_t incr);
void __assert_func(const char *file, int line, const char *func, const char *expr);

void *sbrk(ptrdiff_t incr)
{
	void *old;

	/* malloc trims with a negative increment; keeping the pages is allowed (it re-reads the
	 * break and carries on). */
	if (incr < 0) {
		errno = ENOMEM;
		return (void *)-1;
	}
	old = page_heap_grow((size_t)incr);
	if (!old) {
		errno = ENOMEM;
		return (void *)-1;
	}
	return old;
}

void __assert_func(const char *file, int line, const char *func, const char *expr)
{
	plat_panic("assertion \"%s\" failed: %s:%d (%s)", expr, file, line, func ? func : "?");
}

/*
 * The wall clock in whole seconds (plat_wall_time() has no finer resolution; @tz is obsolete
 * and ignored). Without a clock, -1 with errno ENOTSUP or EIO: newlib's time() then returns
 * -1, a date in 1969, and every certificate counts as not yet valid, so verification fails
 * instead of passing without a date.
 */
int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
	uint64_t s;
	int rc;

	(void)tz;
	rc = plat_wall_time(&s);
	if (rc) {
		errno = -rc;
		return -1;
	}
	if (tv) {
		tv->tv_sec = (time_t)s;
		tv->tv_usec = 0;
	}
	return 0;
}
