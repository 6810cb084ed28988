#!/usr/bin/env bash
# The host build's main loop stays awake between the requests of a queue-depth-1 client
# (host/main.c, loop_poll(); docs/host.md "The main loop"): over 2,000 back-to-back 4 KiB
# READs its thread sleeps on fewer than a quarter of them (a few in a thousand on a quiet
# machine). With --spin-us 0 it sleeps after most replies on a quiet machine and after fewer on a
# loaded one (client and server then share a core): printed, not checked;
# tests/unit/host/test_plat_host.c checks the spin itself.
set -u
. tests/lib/tap.sh
. tests/nbd/lib.sh
need_tool nbdsh
truncate -s 64M "$tmp/disk.img"

# sleeps_per_request SERVER-ARGS...: start a server, run the client, stop it.
sleeps_per_request() {
	start_server --export disk="$tmp/disk.img" "$@"
	NBD_BASE=$base NBD_PID=$srv_pid NBD_N=2000 timeout 120 \
		nbdsh -c "exec(open('tests/nbd/spin.py').read())" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	stop_server
	[ $rc -eq 0 ] || { echo "client exit $rc: $(tail -n 3 "$tmp/err")"; return; }
	sed -n 's/^SLEEPS_PER_REQUEST //p' "$tmp/out"
}

spin=$(sleeps_per_request)
nospin=$(sleeps_per_request --spin-us 0)
echo "# server thread sleeps per QD1 request: $spin with the default spin, $nospin with --spin-us 0 (load $(cut -d' ' -f1-3 /proc/loadavg))"
check default-spin-stays-awake python3 -c 'import sys; sys.exit(not float(sys.argv[1]) < 0.25)' "$spin"
check no-spin-measured python3 -c 'import sys; float(sys.argv[1])' "$nospin"
check bad-spin-refused bash -c '! "$1" --spin-us 20000 --listen 127.0.0.1:0 --export d="$2" </dev/null >/dev/null 2>&1' _ "$bin" "$tmp/disk.img"
finish
