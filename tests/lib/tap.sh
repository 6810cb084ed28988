# Helpers for script tests: each check prints "PASS name" or "FAIL name"; `finish` exits
# non-zero when any failed. Source this file; run tests from the top of the tree.
_t_failed=0
_t_prog=$(basename "$0" .t)

pass() { echo "PASS $_t_prog/$1"; }
fail() { echo "FAIL $_t_prog/$1${2:+: $2}"; _t_failed=1; }
# check NAME COMMAND...: PASS when the command succeeds.
check() { local n=$1; shift; if "$@"; then pass "$n"; else fail "$n"; fi; }
finish() { exit $_t_failed; }
# need_tool TOOL...: fail loudly (never skip) when a tool the test needs is missing.
need_tool() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null || { fail "needs-$t" "$t is not installed (run scripts/setup)"; finish; }
	done
}
