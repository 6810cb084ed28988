#!/usr/bin/env bash
# Bad requests sent with libnbd (nbdsh, strict mode off): every one answered with the errno
# the spec asks for, none of them ends the session.
set -u
. tests/lib/tap.sh
. tests/nbd/lib.sh
need_tool nbdsh
truncate -s 64M "$tmp/disk.img" "$tmp/ro.img"
start_server --export disk="$tmp/disk.img" --export ro="$tmp/ro.img",ro
NBD_BASE=$base timeout 120 nbdsh -c "exec(open('tests/nbd/badreq.py').read())" 2>"$tmp/err"
rc=$?
[ $rc -eq 0 ] || fail nbdsh-script "exit $rc: $(tail -n 5 "$tmp/err")"
check server-still-running server_alive
check server-log-clean bash -c '! grep -Eq "ERROR|runtime error" "$1"' _ "$tmp/server.log"
finish
