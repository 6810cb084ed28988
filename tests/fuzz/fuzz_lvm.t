#!/usr/bin/env bash
# run-tests: shares the machine
# Run the LVM metadata fuzzer (tests/fuzz/fuzz_lvm.c) for a bounded time from its seed corpus;
# passes when it finds nothing. FUZZ_SECONDS overrides the 60 s default.
set -u
. tests/lib/tap.sh
fuzzer=build/fuzz/fuzz_lvm
secs=${FUZZ_SECONDS:-60}
if [ ! -x "$fuzzer" ]; then
	fail built "$fuzzer is missing (make check builds it)"
	finish
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp tests/fuzz/corpus/fuzz_lvm/* "$tmp/"
timeout $((secs + 60)) "$fuzzer" -max_total_time="$secs" -timeout=10 -artifact_prefix="$tmp/" \
	"$tmp" >"$tmp/log" 2>&1
rc=$?
if [ $rc -eq 0 ] && ! ls "$tmp"/crash-* "$tmp"/leak-* "$tmp"/timeout-* >/dev/null 2>&1; then
	pass "no-findings-in-${secs}s ($(grep -o 'Done [0-9]* runs' "$tmp/log"))"
else
	fail "no-findings-in-${secs}s" "exit $rc"
	tail -n 40 "$tmp/log"
	mkdir -p build/fuzz-findings && cp "$tmp"/crash-* "$tmp"/leak-* "$tmp"/timeout-* build/fuzz-findings/ 2>/dev/null
fi
finish
