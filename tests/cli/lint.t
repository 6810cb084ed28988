#!/usr/bin/env bash
# Formatting and include layering hold for the whole tree (scripts/lint).
set -u
. tests/lib/tap.sh
need_tool clang-format
out=$(scripts/lint 2>&1)
rc=$?
[ $rc -eq 0 ] || echo "$out"
check lint-clean [ $rc -eq 0 ]
finish
