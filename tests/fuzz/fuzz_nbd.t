#!/usr/bin/env bash
# run-tests: shares the machine
# Run the NBD protocol fuzzer (tests/fuzz/fuzz_nbd.c) for a bounded time from its seed corpus;
# passes when it finds nothing. FUZZ_SECONDS overrides the 30 s default (make test gives the
# other 30 s of what was this fuzzer's minute to tests/fuzz/fuzz_tls.t).
set -u
. tests/lib/tap.sh
fuzzer=build/fuzz/fuzz_nbd
secs=${FUZZ_SECONDS:-30}
if [ ! -x "$fuzzer" ]; then
	fail built "$fuzzer is missing (make check builds it)"
	finish
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp tests/fuzz/corpus/fuzz_nbd/* "$tmp/"
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
