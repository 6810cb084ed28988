#!/usr/bin/env bash
# Unaligned WRITE / WRITE_ZEROES from real clients (docs/nbd.md "Unaligned writes"), on a
# file export (the server's read-modify-write) and on the appliance's thin volume (the
# pool's, under its cells): nbdinfo shows a minimum block size of 1; qemu-io's byte writes
# and zeroes read back; libnbd (nbdsh) pieces at every small offset around sector and
# pool-block edges, with FUA, and pipelined pieces of one sector from two connections.
set -u
. tests/lib/tap.sh
. tests/nbd/lib.sh
need_tool nbdinfo nbdsh qemu-io

# qemu-io: `write -P 0x5a 1 3`, `write -z 513 1000`, read back, neighbours untouched.
qio_checks() {
	local what=$1 uri=$2 out
	out=$(timeout 30 qemu-io -f raw -c 'write -P 0x33 0 4096' -c 'write -P 0x5a 1 3' \
		-c 'write -z 513 1000' -c 'read -P 0x33 0 1' -c 'read -P 0x5a 1 3' \
		-c 'read -P 0x33 4 509' -c 'read -P 0 513 1000' -c 'read -P 0x33 1513 2583' "$uri" 2>&1)
	check "$what-qemu-io" bash -c '! grep -Eqi "error|fail|mismatch|pattern verification|invalid" <<<"$1"' _ "$out"
	check "$what-qemu-io-ran" bash -c '[ "$(grep -c "^read " <<<"$1")" -eq 5 ]' _ "$out"
}

run_nbdsh() {
	local what=$1 uri=$2
	NBD_URI=$uri NBD_WHAT=$what timeout 120 nbdsh -c "exec(open('tests/nbd/unaligned.py').read())" 2>"$tmp/err"
	local rc=$?
	[ $rc -eq 0 ] || fail "$what-nbdsh" "exit $rc: $(tail -n 5 "$tmp/err")"
}

# A file export.
truncate -s 64M "$tmp/disk.img"
start_server --export disk="$tmp/disk.img"
out=$(timeout 20 nbdinfo "$base/disk" 2>&1)
check file-block-size-minimum-1 grep -q 'block_size_minimum: 1$' <<<"$out"
qio_checks file "$base/disk"
truncate -s 0 "$tmp/disk.img"
truncate -s 64M "$tmp/disk.img"
run_nbdsh file "$base/disk"
check file-server-log-clean bash -c '! grep -Eq "ERROR|runtime error" "$1"' _ "$tmp/server.log"
stop_server
check file-server-stops [ "$srv_rc" = 0 ]

# The appliance's thin volume (first boot makes vol0 on blank disks).
truncate -s 64M "$tmp/meta.img"
truncate -s 256M "$tmp/data.img"
start_server --meta "$tmp/meta.img" --data "$tmp/data.img"
out=$(timeout 20 nbdinfo "$base/vol0" 2>&1)
check thin-block-size-minimum-1 grep -q 'block_size_minimum: 1$' <<<"$out"
qio_checks thin "$base/vol0"
# A fresh volume for the model: zero everywhere but what qemu-io wrote (its first 4 KiB).
timeout 30 nbdsh -u "$base/vol0" -c 'h.zero(4096, 0)' -c 'h.flush()' || fail thin-reset
run_nbdsh thin "$base/vol0"
check thin-server-log-clean bash -c '! grep -Eq "ERROR|runtime error" "$1"' _ "$tmp/server.log"
stop_server
check thin-server-stops [ "$srv_rc" = 0 ]
finish
