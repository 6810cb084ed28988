#!/usr/bin/env bash
# make reads our dependency files only: a directory named *.d inside a third-party tree in
# build/cache (mbedTLS ships ChangeLog.d/) must not be read as a makefile. The cache is a real
# directory on a fresh machine, so the check makes one of its own in a real cache path.
set -u
. tests/lib/tap.sh
probe=build/cache/depfiles-probe
mkdir -p "$probe/ChangeLog.d"
out=$(make -n host 2>&1)
rc=$?
rm -rf "$probe"
check cache-dirs-named-d-are-not-makefiles [ $rc -eq 0 ]
[ $rc -eq 0 ] || printf '%s\n' "$out" | tail -n 3
finish
