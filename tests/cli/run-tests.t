#!/usr/bin/env bash
# The test runner itself: failures, crashes, timeouts and empty programs are all counted.
set -u
. tests/lib/tap.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mk() { printf '#!/usr/bin/env bash\n%s\n' "$2" >"$tmp/$1"; chmod +x "$tmp/$1"; }
mk good 'echo "PASS good/a"; echo "PASS good/b"'
mk bad 'echo "PASS bad/a"; echo "FAIL bad/b"; exit 1'
mk crash 'echo "PASS crash/a"; kill -SEGV $$'
mk empty 'exit 0'
mk slow 'sleep 30'
mk liar 'echo "FAIL liar/a"; exit 0'

out=$(tests/run-tests "$tmp/good" 2>&1)
check all-good-exits-zero [ $? -eq 0 ]
check all-good-summary grep -qx '2 passed, 0 failed' <<<"$out"

out=$(tests/run-tests --timeout 2 "$tmp/good" "$tmp/bad" "$tmp/crash" "$tmp/empty" "$tmp/slow" "$tmp/liar" 2>&1)
check failures-exit-nonzero [ $? -ne 0 ]
check counts-every-kind-of-failure grep -qx '4 passed, 5 failed' <<<"$out"
check names-a-crash grep -q 'FAIL .*crash: exited with status' <<<"$out"
check names-a-timeout grep -q 'FAIL .*slow: timed out' <<<"$out"
check names-an-empty-program grep -q 'FAIL .*empty: ran no test case' <<<"$out"
finish
