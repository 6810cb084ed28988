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
# mbedTLS's tree is named after the Debian source version apt offers (mbedtls-2.28.3-1).
v=$(apt-cache showsrc --only-source mbedtls 2>/dev/null | sed -n 's/^Version: //p' | sort -V |
	tail -n 1)
mkdir -p "$tmp/tree/scripts" "$tmp/tree/build/cache/lwip/src/core" \
	"$tmp/tree/build/cache/mbedtls-$v/library" "$tmp/tree/build/cache/nbd-0/tests/run"
cp scripts/setup "$tmp/tree/scripts/"
touch "$tmp/tree/build/cache/lwip/src/core/tcp.c" \
	"$tmp/tree/build/cache/mbedtls-$v/library/ssl_tls.c" \
	"$tmp/tree/build/cache/nbd-0/tests/run/nbd-tester-client.c"
chmod -R a+rX "$tmp/tree"
out=$(THINBOX_SETUP_EXTRA_PACKAGES=thinbox-no-such-package runuser -u nobody -- \
	env THINBOX_SETUP_EXTRA_PACKAGES=thinbox-no-such-package "$tmp/tree/scripts/setup" 2>&1)
rc=$?
check non-root-fails [ $rc -ne 0 ]
check non-root-prints-the-command grep -q 'apt-get install -y thinbox-no-such-package' <<<"$out"

# A fresh clone's cache without mbedTLS (as root, like CI): setup fetches it with
# apt-get source into build/cache/mbedtls-VERSION/ and says so on one line; then it is
# silent again.
if [ "$(id -u)" -eq 0 ]; then
	rm -rf "$tmp/tree/build/cache/mbedtls-$v"
	out=$("$tmp/tree/scripts/setup" 2>&1)
	rc=$?
	check fetch-exits-zero [ $rc -eq 0 ]
	[ $rc -eq 0 ] || echo "$out" | tail -n 20
	check fetch-says-so grep -qx 'setup: fetching mbedtls with apt-get source mbedtls' <<<"$out"
	check fetch-has-the-tree [ -f "$tmp/tree/build/cache/mbedtls-$v/library/ssl_tls.c" ]
	check fetch-leaves-no-scratch-dir [ -z "$(compgen -G "$tmp/tree/build/cache/mbedtls-src.*")" ]
	out=$("$tmp/tree/scripts/setup" 2>&1)
	rc=$?
	check fetched-then-silent [ $rc -eq 0 -a -z "$out" ]
fi
finish
