#!/usr/bin/env bash
# The NBD project's own test client, nbd-tester-client (Debian's nbd source, built by
# scripts/nbd-tester-client), against the host build: every case of its suite
# (tests/run/Makefile.am TESTS, run by tests/run/simple_test against nbd-server) that applies
# to our server, with simple_test's arguments and export sizes. One PASS/FAIL line per case.
#
#   case           nbd-tester-client               what it checks
#   cfg1, cfgnew   -N NAME                         read throughput, 1 KiB READs (4 MiB export)
#   cfgmulti       -N export1, -N export2          two exports, the second read-only
#   write          -N NAME -w                      write throughput, 1 KiB WRITEs
#   flush          -w -f                           writes with FUA every 16th and FLUSH
#   rowrite        -w -F (read-only export)        every WRITE answered with an error
#   list           -N export2 (read-only export)   simple_test's client part (below)
#   cfgsize        -o                              READs of 1 MiB, 1 MiB + 14, 2 MiB + 28
#   handshake      -h                              unknown option -> ERR_UNSUP, then ABORT
#   integrity      -i -t integrity-test.tr         a replayed trace of 68 990 requests with
#                                                  data checked block by block (50 MiB export)
#   integrityhuge  -i -t integrityhuge-test.tr     251 requests of up to 47 MiB (5.7 GB)
#   tls            -i -C -K -A -H localhost        integrity over STARTTLS with a client
#                                                  certificate, the server's checked against
#                                                  the CA and the name localhost (the trace's
#                                                  first 20 000 requests: below)
#   tlshuge        -i (huge trace) -C -K -A -H     integrityhuge over TLS (first 16 requests
#                                                  in the ASan build; whole: release build)
#   tlswrongcert   -C/-K self-signed -F            a client certificate the CA did not sign
#                                                  must be refused
#
# TLS: nbd-tester-client speaks X.509 only (GnuTLS; no PSK option) and starts TLS only when
# given a key (-K). simple_test's nbd-server has a CA configured, i.e. it verifies client
# certificates: our --tls-verify-peer. So tls, tlshuge and tlswrongcert run against
# `--tls=require --tls-certificates=DIR --tls-verify-peer`. Against plain `--tls=require` (no
# client certificate asked: the client's is never sent) the read and write throughput cases
# run over TLS (tls-require-read, tls-require-write). tlswrongcert
# does not apply without --tls-verify-peer: a server that asks for no client certificate
# has nothing to refuse. Under --tls=require, the plain client (no -K) must be refused: its
# EXPORT_NAME is answered by closing the connection (plain-refused-under-require, with -F).
#
# Left out, because they test nbd-server rather than the protocol:
#   dirconfig   nbd-server's config.d parsing; its client part is cfg1's
#   tree/rotree nbd-server's "treefiles" storage; their client parts are write and rowrite
#   unix        a Unix-domain socket: the host build listens on TCP only
#   inetd       nbd-server -d started by the client on a socketpair (-I, which also needs a
#               syslog build of the client): the host build has no inetd mode
#   list        its first half is `nbd-client -l` (the kernel client's tool, which is not
#               built here; NBD_OPT_LIST is checked with nbdinfo --list in clients.t); its
#               second half, the tester on a read-only export, runs as "list"
# Certificates are made at run time with openssl, as tls.t does.
set -u
. tests/lib/tap.sh
. tests/nbd/lib.sh
need_tool openssl truncate python3
if ! client=$(scripts/nbd-tester-client 2>"$tmp/build.log"); then
	fail builds-nbd-tester-client "$(tail -n 5 "$tmp/build.log")"
	finish
fi
traces=$(dirname "$client")
# No progress lines (they are \r-terminated counters).
export NBD_TEST_SILENT=1

# tcase NAME SECONDS ARGS...: run the client (bounded), one PASS/FAIL line; its output is
# kept in the log for a failure.
tcase() {
	local name=$1 secs=$2 rc t0=$SECONDS
	shift 2
	timeout "$secs" "$client" "$@" >"$tmp/$name.out" 2>&1
	rc=$?
	echo "# $name: $((SECONDS - t0)) s"
	if [ $rc -eq 0 ]; then
		pass "$name"
	else
		fail "$name" "exit $rc: $(grep -v '^$' "$tmp/$name.out" | tail -n 3 | tr '\n' ' ')"
	fi
}

# simple_test's exports: 4 MiB for the throughput cases, 50 MiB of zeroes for each replayed
# trace (the client expects blocks it has not written to read as zeroes: one fresh file each).
small() { rm -f "$1"; truncate -s 4M "$1"; }
zeroed() { rm -f "$1"; truncate -s 50M "$1"; }
small "$tmp/a.img"
small "$tmp/b.img"
small "$tmp/ro.img"
zeroed "$tmp/integrity.img"
zeroed "$tmp/huge.img"

# ---- Plain -----------------------------------------------------------------------------------
start_server --export export="$tmp/a.img" --export export1="$tmp/b.img" \
	--export export2="$tmp/ro.img",ro --export integrity="$tmp/integrity.img" \
	--export huge="$tmp/huge.img"
tcase cfg1 30 -N export 127.0.0.1 "$port"
tcase cfgnew 30 -N export1 127.0.0.1 "$port"
tcase cfgmulti-export1 30 -N export1 127.0.0.1 "$port"
tcase cfgmulti-export2-read-only 30 -N export2 127.0.0.1 "$port"
tcase write 30 -N export1 -w 127.0.0.1 "$port"
tcase flush 60 -N export1 -w -f 127.0.0.1 "$port"
tcase rowrite 30 -N export2 -w -F 127.0.0.1 "$port"
tcase list 30 -N export2 127.0.0.1 "$port"
tcase cfgsize 30 -o -N export 127.0.0.1 "$port"
tcase handshake 30 -h -N export1 127.0.0.1 "$port"
tcase integrity 90 -N integrity -i -t "$traces/integrity-test.tr" 127.0.0.1 "$port"
tcase integrityhuge 90 -N huge -i -t "$traces/integrityhuge-test.tr" 127.0.0.1 "$port"
check plain-server-survives server_alive
stop_server
check plain-stop-status-0 [ "$srv_rc" = 0 ]

# ---- Certificates (openssl) -------------------------------------------------------------------
ca=$tmp/ca
mkdir -p "$tmp/self"
tests/lib/testca init "$ca" "thinbox tester CA"
tests/lib/testca cert "$ca" "$tmp/srv" server localhost srv
tests/lib/testca cert "$ca" "$tmp/cli" client "tester client" cli
cp "$ca/ca-cert.pem" "$tmp/srv/"
# tlswrongcert's client: a certificate that signs itself.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
	-subj "/CN=self-signed client" -keyout "$tmp/self/client-key.pem" \
	-out "$tmp/self/client-cert.pem" >>"$tmp/openssl.log" 2>&1
check openssl-made-certificates bash -c 'for f in "$@"; do [ -s "$f" ] || exit 1; done' _ \
	"$tmp/srv/server-cert.pem" "$tmp/cli/client-cert.pem" "$tmp/self/client-cert.pem"
good=(-C "$tmp/cli/client-cert.pem" -K "$tmp/cli/client-key.pem" -A "$ca/ca-cert.pem"
	-H localhost)

# ---- --tls=require -----------------------------------------------------------------------------
start_server --export export="$tmp/a.img" --tls=require --tls-certificates="$tmp/srv"
tcase tls-require-read 30 -N export "${good[@]}" 127.0.0.1 "$port"
tcase tls-require-write 30 -N export -w "${good[@]}" 127.0.0.1 "$port"
tcase plain-refused-under-require 30 -N export -F 127.0.0.1 "$port"
check tls-require-logged-no-client-cert grep -q "tls: TLSv1.2 .*, no client certificate" "$tmp/server.log"
check tls-require-server-survives server_alive
stop_server

# ---- --tls=require --tls-verify-peer (simple_test's nbd-server: a CA configured) --------------
# Through TLS (the ASan build's mbedTLS, the client's GnuTLS in a proxy process) the traces
# are slow: the whole huge one moves 5.7 GB (2.5 GB read, 3.1 GB written), about four
# minutes. So the TLS cases replay the start of each trace, then a DISC: tls the first 20 000
# of integrity-test.tr's 68 990 requests, tlshuge the first 16 of integrityhuge-test.tr's 251
# (up to 40 MiB each, 327 MiB in all). Both whole traces run in plain above, and through TLS
# against the release build below.
prefix_trace() { # SRC DST REQUESTS
	python3 - "$@" <<'PY'
import struct, sys
src, dst, keep = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = open(src, "rb").read()
i = n = 0
while i < len(d) and n < keep:  # requests are 28 bytes, replies 16
    magic = struct.unpack(">I", d[i:i + 4])[0]
    n += magic == 0x25609513
    i += 28 if magic == 0x25609513 else 16
open(dst, "wb").write(d[:i] + struct.pack(">IIQQI", 0x25609513, 2, 0, 0, 0))  # + DISC
PY
}
prefix_trace "$traces/integrity-test.tr" "$tmp/integrity20000.tr" 20000
prefix_trace "$traces/integrityhuge-test.tr" "$tmp/huge16.tr" 16
zeroed "$tmp/integrity.img"
zeroed "$tmp/huge.img"
start_server --export integrity="$tmp/integrity.img" --export huge="$tmp/huge.img" \
	--tls=require --tls-certificates="$tmp/srv" --tls-verify-peer
tcase tls 90 -N integrity -i -t "$tmp/integrity20000.tr" "${good[@]}" 127.0.0.1 "$port"
check tls-logged-client-subject grep -q "tls: TLSv1.2 .*, client certificate CN=tester client" "$tmp/server.log"
tcase tlshuge 90 -N huge -i -t "$tmp/huge16.tr" "${good[@]}" 127.0.0.1 "$port"
tcase tlswrongcert 30 -N integrity -t "$traces/integrity-test.tr" \
	-C "$tmp/self/client-cert.pem" -K "$tmp/self/client-key.pem" -F 127.0.0.1 "$port"
check tlswrongcert-logged grep -q "tls: handshake failed" "$tmp/server.log"
check tls-server-survives server_alive
stop_server

# ---- the whole traces through TLS: the release build ------------------------------------------
# The same server code and mbedTLS built without the sanitizers (make test builds it): the
# whole huge trace through TLS takes under a minute here instead of four.
rel=build/host-release/thinbox
if [ ! -x "$rel" ]; then
	fail release-build-present "$rel is missing (make test builds it)"
	finish
fi
zeroed "$tmp/integrity.img"
zeroed "$tmp/huge.img"
asan_bin=$bin
bin=$rel
start_server --export integrity="$tmp/integrity.img" --export huge="$tmp/huge.img" \
	--tls=require --tls-certificates="$tmp/srv" --tls-verify-peer
tcase tls-whole-trace 120 -N integrity -i -t "$traces/integrity-test.tr" "${good[@]}" 127.0.0.1 "$port"
tcase tlshuge-whole-trace 300 -N huge -i -t "$traces/integrityhuge-test.tr" "${good[@]}" 127.0.0.1 "$port"
check tls-whole-traces-server-survives server_alive
stop_server
bin=$asan_bin
finish
