#!/usr/bin/env python3
# Write the seed corpus of tests/fuzz/fuzz_tls.c (header layout: the top of that file) into
# DIR: plain option streams, STARTTLS variants, raw records, real-client sessions, and b)
# seeds replaying recorded client sessions (recorded by running FUZZER on c) seeds with
# FUZZ_TLS_RECORD). The replays complete only while the server's handshake is what it was
# when they were recorded (suites, DRBG use): re-run this after changing net/tls/.
#
#   tests/fuzz/fuzz_tls_seeds.py build/fuzz/fuzz_tls tests/fuzz/corpus/fuzz_tls
import os
import struct
import subprocess
import sys
import tempfile

fuzzer, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)


def opt(o, data=b''):
    return struct.pack('>QII', 0x49484156454f5054, o, len(data)) + data


def go(name):
    n = name.encode()
    return opt(7, struct.pack('>I', len(n)) + n + struct.pack('>H', 0))


def req(typ, handle, off, length, data=b'', flags=0):
    return struct.pack('>IHHQQI', 0x25609513, flags, typ, handle, off, length) + data


def hdr(d0, d1, d2=0, d3=0, d4=0, k=0, seed=1):
    return bytes([d0, d1, d2, d3, d4, k >> 8, k & 255, seed, 0])


session = (go('fzdisk') + req(1, 1, 0, 512, b'\xab' * 512) + req(0, 2, 0, 4096) +
           req(3, 3, 0, 0) + req(2, 4, 0, 0))
plain_probe = (opt(3) + go('fzdisk') + opt(6, struct.pack('>I', 8) + b'fzsecret' + b'\0\0') +
               opt(8) + opt(9, struct.pack('>I', 0) + struct.pack('>I', 0)) + opt(5, b'data'))
reads = b''.join(req(0, 10 + i, 0, 65536) for i in range(8))
partial = (go('fzdisk') + b''.join(req(0, 10 + i, 0, 65536) for i in range(12)) +
           b''.join(req(1, 40 + i, 512 * i, 512, b'\xcd' * 512) for i in range(8)) +
           req(2, 99, 0, 0))
seeds = {
    'c-require-psk-session': hdr(2, 2) + session,
    'c-require-psk-gcm': hdr(2, 2, d3=1 << 2) + session,
    'c-require-ecdhe-psk-cbc': hdr(2, 2, d3=3 << 2) + session,
    'c-require-x509': hdr(2 | 1 << 3, 2, d3=3) + session,
    'c-require-x509-client-cert': hdr(2 | 3 << 3, 2, d3=3 | 0x10) + session,
    'c-require-x509-no-client-cert': hdr(2 | 3 << 3, 2, d3=3) + session,
    'c-on-secret-over-tls': hdr(1 | 2 << 3, 2) + go('fzsecret') + req(0, 1, 0, 512) +
    req(2, 2, 0, 0),
    'c-wrong-key': hdr(2, 2, d3=1) + session,
    'c-unknown-identity': hdr(2, 2, d3=2) + session,
    'c-close-notify-early': hdr(2, 2, d4=1, k=40) + session,
    'c-cut-mid-handshake': hdr(2, 2, d4=2, k=100) + session,
    'c-flip-finished': hdr(2, 2, d4=3, k=200) + session,
    'c-pipelined-client-hello': hdr(2, 2 | 3 << 2) + session,
    'c-starttls-with-data-first': hdr(2, 2 | 1 << 2) + session,
    'c-starttls-twice': hdr(2, 2 | 2 << 2) + session,
    'c-starttls-again-over-tls': hdr(2, 2 | 4 << 2) + session,
    'c-plain-options-first': hdr(2, 2, d2=len(plain_probe)) + plain_probe + session,
    'c-entropy-dead': hdr(2 | 0x20, 2) + session,
    'c-eight-64k-reads-pipelined': hdr(2, 2) + go('fzdisk') + reads +
    req(1, 30, 0, 512, b'\xcd' * 512) + req(2, 31, 0, 0),
    # Found by the fuzzer's harness: a poll after a partly taken feed (nbd_server.c).
    'c-poll-after-partial-feed': hdr(2, 2, seed=6) + partial,
    'a-require-plain-probe': hdr(2, 0) + plain_probe + opt(5) + b'\x16\x03\x01\x00\x05hello',
    'a-on-plain-list-go': hdr(1 | 4, 0) + opt(3) + go('fzsecret') + go('fzdisk') +
    req(0, 1, 0, 512) + req(2, 2, 0, 0),
    'a-off-starttls': hdr(0, 0) + opt(5) + opt(3) + opt(2),
    'a-require-export-name': hdr(2, 0) + opt(1, b'fzdisk'),
    'b-garbage-records': hdr(2, 1) + b'\x16\x03\x03\x00\x10' + bytes(range(16)) +
    b'\x17\x03\x03\x40\x00' + b'\0' * 20,
    'b-bad-version': hdr(2, 1) + b'\x16\x02\x00\x00\x04\x01\x00\x00\x00',
    'b-plain-after-starttls': hdr(2, 1) + opt(3),
}
for name, data in seeds.items():
    with open(os.path.join(out, name), 'wb') as f:
        f.write(data)


def record(name):
    """The client's ciphertext after the ACK when FUZZER runs seed NAME."""
    with tempfile.NamedTemporaryFile() as rec:
        env = dict(os.environ, FUZZ_TLS_RECORD=rec.name)
        subprocess.run([fuzzer, os.path.join(out, name)], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return open(rec.name, 'rb').read()


# b) replays: the same header as the recorded c) seed, scenario b, the ciphertext as body.
for src, name in [('c-require-psk-gcm', 'b-replay-psk-gcm-session'),
                  ('c-require-psk-session', 'b-replay-ecdhe-psk-session'),
                  ('c-require-x509-client-cert', 'b-replay-x509-client-cert-session')]:
    h = bytearray(seeds[src][:9])
    h[1] = (h[1] & ~3) | 1
    with open(os.path.join(out, name), 'wb') as f:
        f.write(bytes(h) + record(src))
b = open(os.path.join(out, 'b-replay-psk-gcm-session'), 'rb').read()
i = b.index(b'alice')
variants = {
    'b-wrong-psk-identity': b[:i] + b'alicf' + b[i + 5:],
    'b-truncated-client-hello': b[:9 + 60],
    # The ClientHello record's version 3.1; the ClientHello asking for 3.4 (TLS 1.3) only.
    'b-client-hello-record-version-3.1': b[:9 + 1] + b'\x03\x01' + b[9 + 3:9 + 200],
    'b-client-hello-version-1.3': b[:9 + 9] + b'\x03\x04' + b[9 + 11:9 + 200],
}
for name, data in variants.items():
    with open(os.path.join(out, name), 'wb') as f:
        f.write(data)
