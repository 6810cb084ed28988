#!/usr/bin/env bash
# run-tests: shares the machine
# The STARTTLS/TLS fuzzer (tests/fuzz/fuzz_tls.c). First its seed corpus is run once with the
# server's TLS log on: the seeds must reach completed handshakes (PSK, ECDHE-PSK, X.509 with
# and without a client certificate, one replayed from recorded bytes) and each handshake
# failure path named below. Then it fuzzes for a bounded time from the corpus; passes when it
# finds nothing. FUZZ_TLS_SECONDS (else FUZZ_SECONDS, else 30) sets the time.
set -u
. tests/lib/tap.sh
fuzzer=build/fuzz/fuzz_tls
secs=${FUZZ_TLS_SECONDS:-${FUZZ_SECONDS:-30}}
if [ ! -x "$fuzzer" ]; then
	fail built "$fuzzer is missing (make check builds it)"
	finish
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp tests/fuzz/corpus/fuzz_tls/* "$tmp/"

# The seeds, once each (libFuzzer's -runs=0 runs the corpus and stops).
FUZZ_TLS_VERBOSE=1 timeout 120 "$fuzzer" -runs=0 "$tmp" >"$tmp/seeds.log" 2>&1
check seeds-run [ $? -eq 0 ]
seen() { # NAME PATTERN: the seeds' log has a line matching PATTERN
	if grep -qE "$2" "$tmp/seeds.log"; then pass "$1"; else fail "$1" "no line matching '$2'"; fi
}
seen psk-handshake "^server: tls: TLSv1.2 TLS-PSK-WITH-AES-128-GCM-SHA256, PSK identity 'alice'"
seen ecdhe-psk-handshake "^server: tls: TLSv1.2 TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256, PSK identity 'alice'"
seen x509-handshake "^server: tls: TLSv1.2 TLS-ECDHE-ECDSA-.*, no client certificate"
seen x509-client-cert "^server: tls: TLSv1.2 TLS-ECDHE-ECDSA-.*, client certificate CN=alice"
seen tls-session-wrote "^mode 2 scenario 1 .*handshake completed.*devices written"
seen unknown-identity "handshake failed \(PSK identity 'mallory'\): SSL - Unknown identity"
seen wrong-identity-replayed "handshake failed \(PSK identity 'alicf'\): SSL - Unknown identity"
seen wrong-key "handshake failed \(PSK identity 'alice'\): SSL - Verification of the message MAC failed"
seen bad-client-hello "handshake failed: SSL - Processing of the ClientHello handshake message failed"
seen no-client-cert "handshake failed: SSL - No client certification received"
seen no-entropy "no entropy source \(the random number source failed\): TLS refused"
seen require-unchanged "^mode 2 scenario 0 .*TLS started, handshake not completed.*devices unchanged"

timeout $((secs + 60)) "$fuzzer" -max_total_time="$secs" -timeout=10 -artifact_prefix="$tmp/" \
	"$tmp" >"$tmp/log" 2>&1
rc=$?
# The fuzz build's UBSan reports and goes on: a report in our code fails the test; one in
# mbedTLS's own source (build/cache/) is printed as a note (docs/tls.md "Fuzzing").
ub=$(grep -h 'runtime error' "$tmp/seeds.log" "$tmp/log" | sort -u)
check no-ubsan-report-in-our-code [ -z "$(grep -v '^build/cache/' <<<"$ub")" ]
grep '^build/cache/' <<<"$ub" | sed 's/^/# mbedTLS: /'
if [ $rc -eq 0 ] && ! ls "$tmp"/crash-* "$tmp"/leak-* "$tmp"/timeout-* >/dev/null 2>&1; then
	pass "no-findings-in-${secs}s ($(grep -o 'Done [0-9]* runs' "$tmp/log"))"
else
	fail "no-findings-in-${secs}s" "exit $rc"
	tail -n 40 "$tmp/log"
	mkdir -p build/fuzz-findings && cp "$tmp"/crash-* "$tmp"/leak-* "$tmp"/timeout-* build/fuzz-findings/ 2>/dev/null
fi
finish
