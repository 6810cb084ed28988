#!/usr/bin/env bash
# NBD over TLS (STARTTLS) against real clients from Debian: nbdinfo and nbdcopy (libnbd,
# nbds:// URIs with tls-psk-file / tls-certificates) and qemu-img (tls-creds-psk and
# tls-creds-x509 objects). Keys and certificates are made here, at run time: the PSK with
# /dev/urandom, the X.509 CA and certificates with openssl (an expired one with `openssl ca
# -startdate/-enddate`).
set -u
. tests/lib/tap.sh
. tests/nbd/lib.sh
need_tool nbdinfo nbdcopy qemu-img openssl python3 od

# A 16 MiB file: 4 MiB of random data, then a hole.
img=$tmp/disk.img
head -c 4M /dev/urandom >"$img"
truncate -s 16M "$img"
cp "$img" "$tmp/secret.img"
hexkey() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
mkdir -p "$tmp/psk" "$tmp/psk-wrong"
echo "alice:$(hexkey 32)" >"$tmp/psk/keys.psk"
echo "bob:$(hexkey 16)" >>"$tmp/psk/keys.psk"
# alice again, with another key; and an identity the server does not know.
echo "alice:$(hexkey 32)" >"$tmp/psk-wrong/keys.psk"
echo "carol:$(hexkey 32)" >"$tmp/carol.psk"
psk=$tmp/psk/keys.psk

# ---- PSK, --tls=require --------------------------------------------------------------------
start_server --export disk="$img" --tls=require --tls-psk="$psk"
check psk-server-announces grep -q "^nbd: tls require: PSK identity 'alice', PSK identity 'bob'" "$tmp/server.log"
check psk-log-has-no-key bash -c '! grep -qi "$(cut -d: -f2 "$1" | head -1)" "$2"' _ "$psk" "$tmp/server.log"
tls=nbds://alice@127.0.0.1:$port
json=$(timeout 20 nbdinfo --json "$tls/disk?tls-psk-file=$psk" 2>&1)
check psk-nbdinfo python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert d["TLS"] is True, d
assert d["exports"][0]["export-size"] == 16 << 20, d
' "$json"
check psk-second-identity bash -c 'timeout 20 nbdinfo --size "nbds://bob@127.0.0.1:$1/disk?tls-psk-file=$2" | grep -qx 16777216' _ "$port" "$psk"
check psk-nbdcopy-read timeout 60 nbdcopy "$tls/disk?tls-psk-file=$psk" "$tmp/copy.img"
check psk-nbdcopy-read-data cmp "$tmp/copy.img" "$img"
head -c 16M /dev/urandom >"$tmp/new.img"
check psk-nbdcopy-write timeout 60 nbdcopy "$tmp/new.img" "$tls/disk?tls-psk-file=$psk"
check psk-nbdcopy-write-data cmp "$tmp/new.img" "$img"
qpsk=(--object "tls-creds-psk,id=tls0,endpoint=client,dir=$tmp/psk,username=alice")
qopts="driver=nbd,host=127.0.0.1,port=$port,export=disk,tls-creds=tls0"
out=$(timeout 30 qemu-img info "${qpsk[@]}" --image-opts "$qopts" 2>&1)
check psk-qemu-img-info grep -q 'virtual size: 16 MiB' <<<"$out"
check psk-qemu-img-convert timeout 60 qemu-img convert "${qpsk[@]}" -O raw --image-opts "$qopts" "$tmp/q.img"
check psk-qemu-img-convert-data cmp "$tmp/q.img" "$img"
check psk-server-logged-suite grep -q "^tls: TLSv1.2 TLS-.*PSK.*, PSK identity 'alice'" "$tmp/server.log"

# Refusals: a wrong key, an unknown identity, plaintext.
check psk-wrong-key-refused bash -c '! timeout 20 nbdinfo "$1/disk?tls-psk-file=$2" >/dev/null 2>&1' _ "$tls" "$tmp/psk-wrong/keys.psk"
check psk-wrong-key-logged grep -q "^tls: handshake failed (PSK identity 'alice')" "$tmp/server.log"
check psk-unknown-identity-refused bash -c '! timeout 20 nbdinfo "nbds://carol@127.0.0.1:$1/disk?tls-psk-file=$2" >/dev/null 2>&1' _ "$port" "$tmp/carol.psk"
check psk-unknown-identity-logged grep -q "^tls: handshake failed (PSK identity 'carol')" "$tmp/server.log"
check require-plain-go-refused bash -c '! timeout 20 nbdinfo "$1" >/dev/null 2>&1' _ "nbd://127.0.0.1:$port/disk"
out=$(timeout 20 nbdinfo --list "nbd://127.0.0.1:$port" 2>&1)
check require-plain-list-discloses-nothing bash -c '! grep -q "disk" <<<"$1"' _ "$out"
# The NBD error itself, with a raw plain client: every option but STARTTLS/ABORT.
check require-plain-raw-tls-reqd python3 - "$port" <<'PY'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
def recv(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        assert c, "closed"
        b += c
    return b
assert recv(18)[:8] == b"NBDMAGIC"
s.sendall(struct.pack(">I", 1))
def opt(o, data=b""):
    s.sendall(struct.pack(">QII", 0x49484156454F5054, o, len(data)) + data)
    magic, ro, rtype, rlen = struct.unpack(">QIII", recv(20))
    return rtype, recv(rlen)
TLS_REQD = (1 << 31) | 5
for o, d in ((3, b""), (6, struct.pack(">I", 4) + b"disk" + struct.pack(">H", 0)),
             (7, struct.pack(">I", 0) + struct.pack(">H", 0)), (8, b""),
             (9, struct.pack(">II", 4, 0) + b"disk" if False else struct.pack(">I", 4) + b"disk" + struct.pack(">I", 0))):
    t, body = opt(o, d)
    assert t == TLS_REQD, (o, hex(t))
    assert b"disk" not in body, body
t, _ = opt(5, b"x")
assert t == (1 << 31) | 3, hex(t)   # STARTTLS with data: ERR_INVALID
t, _ = opt(2)
assert t == 1, hex(t)                # ABORT is still served
PY
check psk-server-survives server_alive
stop_server
check psk-stop-status-0 [ "$srv_rc" = 0 ]

# ---- Certificates (openssl) -----------------------------------------------------------------
ca=$tmp/ca
mkdir -p "$tmp/cli-nocert"
tests/lib/testca init "$ca" "thinbox test CA"
tests/lib/testca cert "$ca" "$tmp/srv" server localhost srv
tests/lib/testca cert "$ca" "$tmp/srv-expired" server localhost srv 20200101000000Z 20210101000000Z
tests/lib/testca cert "$ca" "$tmp/cli" client "alice client" cli
tests/lib/testca cert "$ca" "$tmp/cli-expired" client "old client" cli 20200101000000Z 20210101000000Z
for d in srv srv-expired cli cli-nocert cli-expired; do cp "$ca/ca-cert.pem" "$tmp/$d/"; done
check openssl-made-certificates bash -c 'for f in "$@"; do [ -s "$f" ] || exit 1; done' _ \
	"$tmp/srv/server-cert.pem" "$tmp/srv-expired/server-cert.pem" "$tmp/cli/client-cert.pem" \
	"$tmp/cli-expired/client-cert.pem"

# --tls=on: plain and TLS clients; "secret" is TLS-only.
start_server --export disk="$img" --export secret="$tmp/secret.img",tls --tls=on \
	--tls-certificates="$tmp/srv"
x509=nbds://127.0.0.1:$port
check x509-nbdinfo bash -c 'timeout 20 nbdinfo --json "$1/secret?tls-certificates=$2" | python3 -c "
import json, sys; d = json.load(sys.stdin); assert d[\"TLS\"] is True, d"' _ "$x509" "$tmp/cli-nocert"
check x509-nbdcopy-read timeout 60 nbdcopy "$x509/secret?tls-certificates=$tmp/cli-nocert" "$tmp/copy2.img"
check x509-nbdcopy-read-data cmp "$tmp/copy2.img" "$tmp/secret.img"
qx509=(--object "tls-creds-x509,id=tls0,endpoint=client,dir=$tmp/cli-nocert")
out=$(timeout 30 qemu-img info "${qx509[@]}" --image-opts "driver=nbd,host=127.0.0.1,port=$port,export=secret,tls-creds=tls0" 2>&1)
check x509-qemu-img-info grep -q 'virtual size: 16 MiB' <<<"$out"
check x509-server-logged grep -q "^tls: TLSv1.2 TLS-ECDHE-ECDSA-.*, no client certificate" "$tmp/server.log"
check on-plain-export-over-plain bash -c 'timeout 20 nbdinfo --size "$1" | grep -qx 16777216' _ "nbd://127.0.0.1:$port/disk"
check on-tls-only-export-over-plain-refused bash -c '! timeout 20 nbdinfo "$1" >/dev/null 2>&1' _ "nbd://127.0.0.1:$port/secret"
out=$(timeout 20 nbdinfo --list "nbd://127.0.0.1:$port" 2>&1)
check on-plain-list-omits-tls-only bash -c 'grep -q "export=\"disk\"" <<<"$1" && ! grep -q secret <<<"$1"' _ "$out"
out=$(timeout 20 nbdinfo --list "$x509/?tls-certificates=$tmp/cli-nocert" 2>&1)
check on-tls-list-shows-both bash -c 'grep -q "export=\"disk\"" <<<"$1" && grep -q "export=\"secret\"" <<<"$1"' _ "$out"
stop_server

# An expired server certificate: the client refuses it.
start_server --export disk="$img" --tls=require --tls-certificates="$tmp/srv-expired"
x509=nbds://127.0.0.1:$port
check x509-expired-server-refused bash -c '! timeout 20 nbdinfo "$1/disk?tls-certificates=$2" >/dev/null 2>&1' _ "$x509" "$tmp/cli-nocert"
stop_server

# --tls-verify-peer: client certificates verified against ca-cert.pem.
start_server --export disk="$img" --tls=require --tls-certificates="$tmp/srv" --tls-verify-peer
x509=nbds://127.0.0.1:$port
check verify-peer-client-cert timeout 60 nbdcopy "$x509/disk?tls-certificates=$tmp/cli" "$tmp/copy3.img"
check verify-peer-client-cert-data cmp "$tmp/copy3.img" "$img"
check verify-peer-logged-subject grep -q "^tls: TLSv1.2 .*, client certificate CN=alice client" "$tmp/server.log"
qx509=(--object "tls-creds-x509,id=tls0,endpoint=client,dir=$tmp/cli")
out=$(timeout 30 qemu-img info "${qx509[@]}" --image-opts "driver=nbd,host=127.0.0.1,port=$port,export=disk,tls-creds=tls0" 2>&1)
check verify-peer-qemu-img-info grep -q 'virtual size: 16 MiB' <<<"$out"
check verify-peer-no-cert-refused bash -c '! timeout 20 nbdinfo "$1/disk?tls-certificates=$2" >/dev/null 2>&1' _ "$x509" "$tmp/cli-nocert"
check verify-peer-expired-cert-refused bash -c '! timeout 20 nbdinfo "$1/disk?tls-certificates=$2" >/dev/null 2>&1' _ "$x509" "$tmp/cli-expired"
check verify-peer-expired-logged grep -q "^tls: handshake failed: .*[Cc]ertificate" "$tmp/server.log"
check x509-server-survives server_alive
stop_server

# ---- Start-up refusals ----------------------------------------------------------------------
printf 'alice:%s\nbob:12zz\n' "$(hexkey 32)" >"$tmp/bad.psk"
out=$(timeout 10 "$bin" --listen 127.0.0.1:0 --export disk="$img" --tls=require --tls-psk="$tmp/bad.psk" </dev/null 2>&1)
check bad-psk-file-refused-with-line bash -c '[ $? -ne 0 ]; grep -q "bad.psk: line 2: key" <<<"$1"' _ "$out"
check bad-psk-file-key-not-printed bash -c '! grep -q "$(head -1 "$2" | cut -d: -f2)" <<<"$1"' _ "$out" "$tmp/bad.psk"
out=$(timeout 10 "$bin" --listen 127.0.0.1:0 --export disk="$img" --tls=require </dev/null 2>&1)
check require-without-credentials-refused grep -q "needs --tls-psk=FILE or --tls-certificates=DIR" <<<"$out"
out=$(timeout 10 "$bin" --listen 127.0.0.1:0 --export disk="$img" --tls-psk="$psk" </dev/null 2>&1)
check credentials-without-tls-refused grep -q "need --tls=on or --tls=require" <<<"$out"
out=$(timeout 10 "$bin" --listen 127.0.0.1:0 --export disk="$img",tls </dev/null 2>&1)
check tls-only-export-without-tls-refused grep -q "TLS-only export needs --tls" <<<"$out"
out=$(timeout 10 "$bin" --listen 127.0.0.1:0 --export disk="$img" --tls=on --tls-certificates="$tmp/cli-nocert" --tls-verify-peer </dev/null 2>&1)
check missing-server-cert-refused grep -q "cannot read '.*server-cert.pem'" <<<"$out"
finish
