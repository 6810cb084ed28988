# Helpers for the NBD script tests (sourced after tests/lib/tap.sh): start the host build as
# an NBD server on 127.0.0.1 with a kernel-chosen port, and always stop it by its PID.
#
#   start_server ARGS...   run build/host/thinbox --listen 127.0.0.1:0 ARGS... in the
#                          background; sets srv_pid, port and base (nbd://127.0.0.1:PORT)
#   stop_server            SIGTERM, wait (bounded), set srv_rc to its exit status
#   server_alive           true while it runs
# $tmp is a scratch directory removed at exit.

# python3-libnbd (nbdsh) is installed for Debian's python, which may not be first in PATH.
export PATH=/usr/bin:$PATH
bin=${THINBOX:-build/host/thinbox}
tmp=$(mktemp -d)
srv_pid=
srv_rc=

_nbd_cleanup() {
	if [ -n "$srv_pid" ] && kill -0 "$srv_pid" 2>/dev/null; then
		kill -TERM "$srv_pid" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$srv_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap _nbd_cleanup EXIT

start_server() {
	"$bin" --listen 127.0.0.1:0 "$@" </dev/null >"$tmp/server.log" 2>&1 &
	srv_pid=$!
	port=
	for _ in $(seq 100); do
		port=$(sed -n 's/^nbd: listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/server.log")
		[ -n "$port" ] && break
		kill -0 "$srv_pid" 2>/dev/null || break
		sleep 0.1
	done
	if [ -z "$port" ]; then
		fail server-starts "no port announced: $(cat "$tmp/server.log")"
		finish
	fi
	base=nbd://127.0.0.1:$port
}

server_alive() {
	kill -0 "$srv_pid" 2>/dev/null
}

stop_server() {
	kill -TERM "$srv_pid" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$srv_pid" 2>/dev/null; then
		kill -KILL "$srv_pid"
		srv_rc=timeout
	else
		wait "$srv_pid"
		srv_rc=$?
	fi
	srv_pid=
}
