#!/usr/bin/env bash
# `make run` itself, as the README tells a user to run it: it creates the disks (sparse, at the
# paths given), boots to the shell prompt with the serial console on stdin/stdout, serves the
# default volume through the 127.0.0.1 port forward, and `poweroff` ends it with status 0. A
# second run keeps the disks (no new disks, no first boot).
set -u
. tests/lib/tap.sh
need_tool nbdinfo python3
tmp=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null
	exec 3>&- 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# wait_for PATTERN SECONDS: until the output file shows PATTERN.
wait_for() {
	local end=$((SECONDS + $2))
	while [ $SECONDS -lt $end ]; do
		grep -q "$1" "$tmp/out" 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

# run NAME: one `make run` session on the same disks, ending with poweroff.
run() {
	local n=$1
	: >"$tmp/out"
	rm -f "$tmp/in"
	mkfifo "$tmp/in"
	# Its own process group, so QEMU (make's child) can be stopped with it by PID.
	setsid make -s run DISKDIR="$tmp/disks" NBD_PORT="$port" <"$tmp/in" >"$tmp/out" 2>&1 &
	pid=$!
	exec 3>"$tmp/in"
	if ! wait_for 'thinbox> ' 90; then
		fail "$n/boots-to-prompt" "no prompt; last lines: $(tail -c 300 "$tmp/out" | tr -d '\033')"
		return 1
	fi
	pass "$n/boots-to-prompt"
	check "$n/default-volume-served" bash -c "nbdinfo --list nbd://127.0.0.1:$port | grep -q 'export=\"vol0\"'"
	printf 'poweroff\r' >&3
	local end=$((SECONDS + 60))
	while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.2; done
	if kill -0 "$pid" 2>/dev/null; then
		fail "$n/poweroff-ends-it" "still running"
		return 1
	fi
	wait "$pid"
	check "$n/poweroff-status-0" [ $? -eq 0 ]
	pid=
	exec 3>&-
}

run first
check first/disks-created grep -q "DISK .*$tmp/disks/meta.img" "$tmp/out"
check first/disks-sparse [ "$(du -k "$tmp/disks/data.img" | cut -f1)" -lt 65536 ]
check first/first-boot grep -q 'first boot: created volume vol0' "$tmp/out"
run second
check second/disks-kept bash -c "! grep -q 'DISK .*$tmp/disks/' '$tmp/out'"
check second/no-first-boot bash -c "! grep -q 'first boot' '$tmp/out'"
finish
