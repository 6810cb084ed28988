#!/usr/bin/env bash
# scripts/setup: silent and quick when everything is there; without root it names the
# exact command instead of failing obscurely.
set -u
. tests/lib/tap.sh
start=$(date +%s%N)
out=$(scripts/setup 2>&1)
rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
check present-exits-zero [ $rc -eq 0 ]
check present-is-silent [ -z "$out" ]
check present-is-quick [ $ms -lt 5000 ]

# As an unprivileged user, with a package that is not installed: the exact apt-get line.
need_tool runuser
tmp=$(mktemp -d)
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/tree/scripts" "$tmp/tree/build/cache/lwip/src/core"
cp scripts/setup "$tmp/tree/scripts/"
touch "$tmp/tree/build/cache/lwip/src/core/tcp.c"
chmod -R a+rX "$tmp/tree"
out=$(THINBOX_SETUP_EXTRA_PACKAGES=thinbox-no-such-package runuser -u nobody -- \
	env THINBOX_SETUP_EXTRA_PACKAGES=thinbox-no-such-package "$tmp/tree/scripts/setup" 2>&1)
rc=$?
check non-root-fails [ $rc -ne 0 ]
check non-root-prints-the-command grep -q 'apt-get install -y thinbox-no-such-package' <<<"$out"
finish
