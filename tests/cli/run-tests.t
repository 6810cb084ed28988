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

# --jobs: programs that say they share the machine run together; any other runs alone; the
# results come in the order given (s3 ends before s1), and are counted the same. A sharing
# program marks itself running for its 1 s; the lone one fails if it ever sees such a mark.
share='# run-tests: shares the machine'
mk s1 "$share"$'\n''touch "$(dirname "$0")/run.s1"; sleep 1; rm "$(dirname "$0")/run.s1"; echo "PASS s1/a"'
mk s2 "$share"$'\n''touch "$(dirname "$0")/run.s2"; sleep 1; rm "$(dirname "$0")/run.s2"; echo "PASS s2/a"'
mk s3 "$share"$'\n''echo "PASS s3/a"; echo "FAIL s3/b"; exit 1'
mk lone 'd=$(dirname "$0"); for i in 1 2 3 4 5; do ls "$d"/run.* >/dev/null 2>&1 && { echo "FAIL lone/alone"; exit 1; }; sleep 0.3; done; echo "PASS lone/alone"'
out=$(tests/run-tests --jobs 2 "$tmp/s1" "$tmp/s3" "$tmp/lone" "$tmp/s2" "$tmp/good" 2>&1)
rc=$?
check jobs-count-the-same test $rc -ne 0 -a "$(tail -n 1 <<<"$out")" = '6 passed, 1 failed'
check jobs-run-others-alone grep -qx 'PASS lone/alone' <<<"$out"
check jobs-show-results-in-order test "$(sed -n 's|^     (.*/\([a-z0-9]*\): [0-9]*s)$|\1|p' <<<"$out" |
	tr '\n' ' ')" = "s1 s3 lone s2 good "
# Two 1 s programs: together in under 1.8 s (one after the other, 2 s at least).
start=$(date +%s%N)
out=$(tests/run-tests --jobs 2 "$tmp/s1" "$tmp/s2" 2>&1)
ms=$((($(date +%s%N) - start) / 1000000))
check jobs-run-sharing-programs-together test "$ms" -lt 1800
start=$(date +%s%N)
out=$(tests/run-tests "$tmp/s1" "$tmp/s2" 2>&1)
ms=$((($(date +%s%N) - start) / 1000000))
check without-jobs-one-at-a-time test "$ms" -ge 2000

# A result that never comes (the runner's own job for a program killed) is a failure, not a
# hang: the program kills the subshell that runs it (its parent is timeout, whose parent that is).
mk orphan 'kill -9 "$(ps -o ppid= $PPID)"; sleep 1'
out=$(timeout 60 tests/run-tests "$tmp/orphan" "$tmp/good" 2>&1)
rc=$?
check lost-result-is-a-failure test $rc -eq 1 -a "$(tail -n 1 <<<"$out")" = '2 passed, 1 failed'
finish
