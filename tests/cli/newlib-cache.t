#!/usr/bin/env bash
# newlib's cache: keyed on flags and compiler, so a change rebuilds into a new directory and
# an unchanged setup is a no-op (mk/newlib.mk).
set -u
. tests/lib/tap.sh
d1=$(make -s newlib-dir)
d2=$(make -s newlib-dir)
check same-setup-same-cache [ -n "$d1" -a "$d1" = "$d2" ]
check cache-is-under-build [ "${d1#build/cache/newlib-}" != "$d1" ]
d3=$(make -s newlib-dir NEWLIB_CFLAGS="-O2 -DTHINBOX_CACHE_TEST")
check changed-flags-new-cache [ -n "$d3" -a "$d3" != "$d1" ]
cc=$(command -v gcc-12 || true)
if [ -n "$cc" ]; then
	d4=$(make -s newlib-dir EFI_CC="$cc")
	check changed-compiler-new-cache [ -n "$d4" -a "$d4" != "$d1" ]
else
	fail changed-compiler-new-cache "gcc-12 not found to stand for another compiler"
fi
# After `make all` the current cache is built: asking again builds nothing.
check built-cache-is-complete [ -f "$d1/.done" -a -f "$d1/x86_64-elf/lib/libc.a" ]
check unchanged-setup-is-a-no-op make -q "$d1/.done"
finish
