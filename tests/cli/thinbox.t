#!/usr/bin/env bash
# The host build's program: scripted shell sessions, options, and how it stops.
set -u
. tests/lib/tap.sh
bin=build/host/thinbox
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

out=$(printf 'version\nfrobnicate\nhelp pci\nversion extra\nmem\n' | timeout 20 $bin 2>&1)
rc=$?
check runs-a-script-and-stops-at-end-of-input [ $rc -eq 0 ]
check version-prints-the-name grep -q 'thinbox 0.1.0 on the Linux host build' <<<"$out"
check unknown-command-is-reported grep -q "error: unknown command 'frobnicate'" <<<"$out"
check help-explains-a-command grep -q 'list PCI functions' <<<"$out"
check bad-arguments-print-usage grep -q 'usage: version' <<<"$out"
check hardware-commands-say-so grep -q 'mem: needs the appliance hardware' <<<"$out"

out=$(printf 'poweroff\nversion\n' | timeout 20 $bin 2>&1)
rc=$?
check poweroff-exits-zero [ $rc -eq 0 ]
check poweroff-stops-before-the-next-command bash -c '! grep -q "on the Linux host build" <<<"$1"' _ "$out"

# With its input still open it keeps running; SIGTERM stops it cleanly.
mkfifo "$tmp/in"
$bin <"$tmp/in" >"$tmp/out" 2>&1 &
pid=$!
exec 3>"$tmp/in"
echo version >&3
sleep 1
check keeps-running-while-input-is-open kill -0 $pid
kill -TERM $pid
for _ in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then
	fail sigterm-stops-it "still running"
	kill -KILL $pid
else
	wait $pid
	check sigterm-stops-it-with-status-0 [ $? -eq 0 ]
fi
exec 3>&-
check answered-before-the-signal grep -q 'thinbox 0.1.0 on the Linux host build' "$tmp/out"

# With disks it serves NBD, so the end of input does not stop it: poweroff does.
truncate -s 8M "$tmp/meta"
truncate -s 16M "$tmp/data"
out=$(printf 'version\npoweroff\n' | timeout 20 $bin --meta "$tmp/meta" --data "$tmp/data" --listen 127.0.0.1:0 2>&1)
check takes-meta-and-data-disks [ $? -eq 0 ]
out=$(echo version | timeout 20 $bin --meta "$tmp/missing" --data "$tmp/data" --listen 127.0.0.1:0 2>&1)
rc=$?
check missing-disk-is-an-error [ $rc -ne 0 ]
check missing-disk-is-named grep -q "cannot open metadata disk '$tmp/missing'" <<<"$out"
out=$(echo version | timeout 20 $bin --meta "$tmp/meta" 2>&1)
check meta-without-data-is-an-error [ $? -ne 0 ]
check meta-without-data-says-so grep -q -- '--meta and --data go together' <<<"$out"
# A metadata disk below the minimum: a clear message, status 1, nothing leaked on the way out.
# (the LVM header and one 4 MiB extent: 5 MiB; a sector less here)
truncate -s $(((5 << 20) - 512)) "$tmp/small-meta"
truncate -s 64M "$tmp/small-data"
out=$(timeout 20 $bin --meta "$tmp/small-meta" --data "$tmp/small-data" --listen 127.0.0.1:0 </dev/null 2>&1)
check small-metadata-disk-is-an-error [ $? -eq 1 ]
check small-metadata-disk-says-the-minimum grep -q 'metadata disk is too small (at least 5 MiB)' <<<"$out"
check small-metadata-disk-leaks-nothing bash -c '! grep -q Sanitizer <<<"$1"' _ "$out"
out=$(timeout 20 $bin --bogus </dev/null 2>&1)
check unknown-option-is-an-error [ $? -eq 2 ]
check unknown-option-prints-usage grep -q 'usage: thinbox' <<<"$out"
finish
