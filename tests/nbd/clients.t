#!/usr/bin/env bash
# The NBD server against real clients from Debian: nbdinfo, nbdcopy, qemu-img, qemu-io.
set -u
. tests/lib/tap.sh
. tests/nbd/lib.sh
need_tool nbdinfo nbdcopy qemu-img qemu-io python3

# A 32 MiB file: 8 MiB of random data, a hole, then 4 MiB of random data at 24 MiB.
img=$tmp/disk.img
head -c 8M /dev/urandom >"$img"
truncate -s 32M "$img"
head -c 4M /dev/urandom | dd of="$img" bs=1M seek=24 conv=notrunc status=none
cp "$img" "$tmp/orig.img"
cp "$img" "$tmp/ro.img"
start_server --export disk="$img" --export ro="$tmp/ro.img",ro

out=$(timeout 20 nbdinfo --list "$base" 2>&1)
check list-names-both-exports bash -c 'grep -q "export=\"disk\"" <<<"$1" && grep -q "export=\"ro\"" <<<"$1"' _ "$out"
check list-shows-description grep -q "description: $img" <<<"$out"
check list-shows-block-size grep -q 'block_size_minimum: 1$' <<<"$out"

json=$(timeout 20 nbdinfo --json "$base/ro" 2>&1)
check json-size-and-flags python3 -c '
import json, sys
d = json.loads(sys.argv[1])
e = d["exports"][0]
assert e["export-size"] == 32 << 20, e
assert e["is_read_only"] is True and e["can_trim"] is False, e
assert e["can_multi_conn"] is True and e["can_flush"] is True and e["can_fua"] is True, e
assert d["protocol"] == "newstyle-fixed" and d["TLS"] is False, d
' "$json"
json=$(timeout 20 nbdinfo --json "$base/disk" 2>&1)
check json-rw-flags python3 -c '
import json, sys
e = json.loads(sys.argv[1])["exports"][0]
assert e["is_read_only"] is False and e["can_trim"] and e["can_zero"] and e["can_fast_zero"], e
assert e["can_cache"] and e["can_df"] and "base:allocation" in e["contexts"], e
' "$json"
check default-export-is-the-first bash -c 'timeout 20 nbdinfo --size "$1/" | grep -qx 33554432' _ "$base"

map=$(timeout 20 nbdinfo --map "$base/disk" 2>&1)
check map-shows-data-and-hole bash -c '
grep -Eq "^ +0 +8388608 +0 +data$" <<<"$1" &&
grep -Eq "^ +8388608 +16777216 +3 +hole,zero$" <<<"$1" &&
grep -Eq "^ +25165824 +4194304 +0 +data$" <<<"$1"' _ "$map"
check map-totals-the-size bash -c '[ "$(timeout 20 nbdinfo --map --totals "$1" | awk "{s+=\$1} END {print s}")" = 33554432 ]' _ "$base/disk"

# nbdcopy both ways, data verified.
check nbdcopy-read timeout 60 nbdcopy "$base/disk" "$tmp/copy.img"
check nbdcopy-read-data cmp "$tmp/copy.img" "$img"
head -c 32M /dev/urandom >"$tmp/new.img"
check nbdcopy-write timeout 60 nbdcopy "$tmp/new.img" "$base/disk"
check nbdcopy-write-data cmp "$tmp/new.img" "$img"
check nbdcopy-write-one-conn-flush timeout 60 nbdcopy --connections=1 --flush "$tmp/orig.img" "$base/disk"
check nbdcopy-write-one-conn-data cmp "$tmp/orig.img" "$img"
check nbdcopy-to-ro-export-fails bash -c '! timeout 60 nbdcopy "$1" "$2" 2>/dev/null' _ "$tmp/new.img" "$base/ro"
check ro-export-unchanged cmp "$tmp/ro.img" "$tmp/orig.img"

# qemu-img over nbd://
check qemu-img-convert-from timeout 60 qemu-img convert -f raw -O raw "$base/disk" "$tmp/q.img"
check qemu-img-convert-from-data cmp "$tmp/q.img" "$img"
check qemu-img-compare bash -c 'timeout 60 qemu-img compare -q -f raw -F raw "$1" "$2"' _ "$tmp/orig.img" "$base/ro"
check qemu-img-convert-to timeout 60 qemu-img convert -n -f raw -O raw "$tmp/new.img" "$base/disk"
check qemu-img-convert-to-data cmp "$tmp/new.img" "$img"
cp "$tmp/orig.img" "$tmp/back.img"
check qemu-img-convert-sparse timeout 60 qemu-img convert -n -f raw -O raw "$tmp/orig.img" "$base/disk"
check qemu-img-convert-sparse-data cmp "$tmp/orig.img" "$img"
qmap=$(timeout 20 qemu-img map -f raw --output=json "$base/disk" 2>&1)
check qemu-img-map-sees-the-hole python3 -c '
import json, sys
m = json.loads(sys.argv[1])
z = [e for e in m if e["zero"] and not e["data"]]
assert any(e["start"] <= 8 << 20 and e["start"] + e["length"] >= 24 << 20 for e in z), m
assert sum(e["length"] for e in m) == 32 << 20, m
' "$qmap"

# qemu-io read/write patterns, including unaligned requests (sent as they are: minimum block 1).
qio() { timeout 30 qemu-io -f raw "$@" "$base/disk" 2>&1; }
out=$(qio -c 'write -P 0xab 4096 65536' -c 'read -P 0xab 4096 65536' \
	-c 'write -P 0x11 1000 3000' -c 'read -P 0x11 1000 3000' -c 'read -P 0xab 4096 65536' \
	-c 'write -z 1M 1M' -c 'read -P 0 1M 1M' \
	-c 'write -z -u 2M 1M' -c 'read -P 0 2M 1M' \
	-c 'write -P 0x5a -f 3M 64k' -c 'read -P 0x5a 3M 64k' \
	-c 'discard 4M 1M' -c 'flush' \
	-c 'aio_write -P 0x21 5M 64k' -c 'aio_write -P 0x22 6M 64k' -c 'aio_flush' \
	-c 'read -P 0x21 5M 64k' -c 'read -P 0x22 6M 64k')
check qemu-io-patterns bash -c '! grep -Eqi "error|fail|mismatch|pattern verification" <<<"$1"' _ "$out"
check qemu-io-patterns-ran bash -c '[ "$(grep -c "^read " <<<"$1")" -eq 8 ]' _ "$out"
out=$(timeout 30 qemu-io -f raw -r -c 'read -P 0 8M 1M' -c 'read -v 0 16' "$base/ro" 2>&1)
check qemu-io-ro-read bash -c '! grep -Eqi "error|fail|mismatch" <<<"$1"' _ "$out"
out=$(timeout 30 qemu-io -f raw -c 'write -P 1 0 4096' "$base/ro" 2>&1)
check qemu-io-ro-refuses-write bash -c 'grep -qi "permission denied\|read-only\|read only" <<<"$1"' _ "$out"

check survives-end-of-input server_alive
stop_server
check sigterm-stops-with-status-0 [ "$srv_rc" = 0 ]
finish
