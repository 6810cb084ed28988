#!/usr/bin/env bash
# fio's nbd engine (libnbd) with crc32c verification: 4 connections at queue depth 16,
# random writes then a verifying read pass, plus a mixed random read/write run. Short runs:
# this checks integrity under concurrency, not speed (make bench does that).
set -u
. tests/lib/tap.sh
. tests/nbd/lib.sh
need_tool fio
truncate -s 256M "$tmp/disk.img"
start_server --export disk="$tmp/disk.img"

# Each job owns a 64 MiB region (offset_increment) so verification never races another job.
common=(--ioengine=nbd --uri="$base/disk" --numjobs=4 --iodepth=16 --size=64M
	--offset_increment=64M --group_reporting --output-format=terse --terse-version=3)
out=$(timeout 120 fio --name=write-verify "${common[@]}" --rw=randwrite --bs=4k:64k \
	--verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0 --io_size=16M 2>&1)
rc=$?
check fio-randwrite-verify-qd16-4conn [ $rc -eq 0 ]
[ $rc -eq 0 ] || echo "$out" | tail -n 20
# Large writes (64 KiB and more) are received straight into their request buffers, their
# headers alone (host/nbd_sock.c): sizes from 4 KiB to 256 KiB mixed, then sequential 256 KiB.
out=$(timeout 120 fio --name=large-write-verify "${common[@]}" --rw=randwrite --bsrange=4k-256k \
	--verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0 --io_size=16M 2>&1)
rc=$?
check fio-large-randwrite-verify [ $rc -eq 0 ]
[ $rc -eq 0 ] || echo "$out" | tail -n 20
out=$(timeout 120 fio --name=seq-write-verify "${common[@]}" --rw=write --bs=256k --iodepth=8 \
	--verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0 --io_size=16M 2>&1)
rc=$?
check fio-seq-write-256k-verify [ $rc -eq 0 ]
[ $rc -eq 0 ] || echo "$out" | tail -n 20
out=$(timeout 120 fio --name=mixed-verify "${common[@]}" --rw=randrw --bs=4k \
	--verify=crc32c --verify_fatal=1 --verify_backlog=64 --verify_state_save=0 --io_size=8M 2>&1)
rc=$?
check fio-randrw-verify-backlog [ $rc -eq 0 ]
[ $rc -eq 0 ] || echo "$out" | tail -n 20
out=$(timeout 60 fio --name=seq-read "${common[@]}" --rw=read --bs=256k --iodepth=8 --io_size=32M 2>&1)
check fio-seq-read [ $? -eq 0 ]
check server-still-running server_alive
stop_server
check sigterm-stops-with-status-0 [ "$srv_rc" = 0 ]
finish
