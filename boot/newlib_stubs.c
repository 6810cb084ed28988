/* SPDX-License-Identifier: MIT */
/*
 * What newlib needs from the system, for the parts of libc the firmware uses (strings,
 * formatting, malloc). newlib was configured without syscalls (MISSING_SYSCALL_NAMES), so it
 * calls the plain POSIX names. The link uses --no-undefined, so anything missing here shows
 * up as a link error rather than a crash.
 *
 * __assert_func is replaced because newlib's own prints through stdio's FILE layer and
 * abort(), which would pull in write/read/kill/... stubs for nothing.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

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
