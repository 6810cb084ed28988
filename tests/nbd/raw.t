#!/usr/bin/env bash
# The protocol by hand (python3 sockets): what libnbd cannot send — unknown options and
# commands, bad magic, oversized options and payloads, option floods — and clients that
# stall, vanish, or come twenty at once.
set -u
. tests/lib/tap.sh
. tests/nbd/lib.sh
need_tool python3
truncate -s 128M "$tmp/disk.img" "$tmp/ro.img"
# Twenty clients at once from 127.0.0.1: above the default per-client cap of 16.
start_server --export disk="$tmp/disk.img" --export ro="$tmp/ro.img",ro --max-per-client 32
timeout 120 python3 tests/nbd/raw.py "$port" 2>"$tmp/err"
rc=$?
[ $rc -eq 0 ] || fail raw-script "exit $rc: $(tail -n 5 "$tmp/err")"
check server-still-running server_alive
check server-log-clean bash -c '! grep -Eq "ERROR|runtime error" "$1"' _ "$tmp/server.log"
stop_server
check sigterm-stops-with-status-0 [ "$srv_rc" = 0 ]
finish
