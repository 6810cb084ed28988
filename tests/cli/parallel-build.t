#!/usr/bin/env bash
# The entry points build in parallel, one job per core (the Makefile's SUBMAKE): `make test`
# on CI's two cores spent some 4.5 minutes building serially. A -j given to make itself wins
# (its jobserver is shared, not reset), and BUILD_JOBS overrides the count.
set -u
. tests/lib/tap.sh
n=$(nproc)
sub() { make -n "$@" 2>&1 | grep -m1 -- '--no-print-directory'; }
for target in test check check-qemu bench; do
	line=$(sub "$target")
	check "$target-builds-with-j$n" grep -q -- " -j$n " <<<"$line"
done
line=$(sub -j3 test)
check given-j-is-kept bash -c '! grep -q -- " -j[0-9]" <<<"$1"' _ "$line"
line=$(sub BUILD_JOBS=1 test)
check build-jobs-overrides grep -q -- " -j1 " <<<"$line"
finish
