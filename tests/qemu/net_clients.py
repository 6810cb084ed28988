# SPDX-License-Identifier: MIT
"""Many NBD clients at once against the appliance (run by net_nbd.t with Debian's python3,
which has libnbd's bindings).

Usage: net_clients.py PORT BASE NCLIENTS REGION SEED
  - a slow client (tiny receive buffer) asks for more than the server buffers per connection
    and does not read; two clients vanish (RST) in the middle of a WRITE and of a READ;
  - then NCLIENTS libnbd handles connect (all at once: the script prints "connected N" and
    waits for a line on stdin, so the caller can look at the appliance meanwhile), each
    writes its own REGION bytes at BASE + i * REGION with 16 requests in flight, flushes, and
    reads them back the same way;
  - the slow client then reads everything it asked for (in whatever order the server answers).
Prints "ok NAME" / "not ok NAME: detail" lines; every wait is bounded.
"""
import socket
import struct
import sys
import threading
import time

import nbd

PORT, BASE, N, REGION, SEED = (int(a) for a in sys.argv[1:6])
CHUNK = 16 << 10
QD = 16
DEADLINE = time.monotonic() + 240


def say(ok, name, detail=""):
    print(("ok " if ok else "not ok ") + name + ("" if ok else ": " + detail), flush=True)


def pattern(i):
    """REGION bytes unique to client @i (a cheap LCG over 32-bit words)."""
    words = []
    x = (SEED * 1000003 + i * 7919 + 1) & 0xFFFFFFFF
    for _ in range(REGION // 4):
        x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
        words.append(x)
    return struct.pack("<%dI" % len(words), *words)


class Raw:
    """The NBD handshake by hand (EXPORT_NAME, no zeroes), for clients libnbd will not be."""

    def __init__(self, rcvbuf=None):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(30)
        self.s.connect(("127.0.0.1", PORT))
        magic, opt, flags = struct.unpack(">QQH", self.recv(18))
        assert magic == 0x4E42444D41474943 and opt == 0x49484156454F5054, "greeting"
        self.s.sendall(struct.pack(">I", 3))
        self.s.sendall(struct.pack(">QII", 0x49484156454F5054, 1, 4) + b"disk")
        self.size, self.tflags = struct.unpack(">QH", self.recv(10))

    def recv(self, n):
        b = bytearray()
        while len(b) < n:
            k = self.s.recv(min(n - len(b), 1 << 20))
            if not k:
                raise EOFError("closed after %d of %d bytes" % (len(b), n))
            b += k
        return bytes(b)

    def request(self, cmd, cookie, offset, length, payload=b""):
        self.s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, cmd, cookie, offset, length)
                       + payload)

    def reset(self):
        """Vanish: close with a RST instead of a FIN."""
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.s.close()


def run_worker(i, h, errors):
    try:
        data = pattern(i)
        off0 = BASE + i * REGION
        cookies = []
        for k in range(0, REGION, CHUNK):
            while h.aio_in_flight() >= QD:
                h.poll(1000)
            cookies.append(h.aio_pwrite(data[k:k + CHUNK], off0 + k))
        while h.aio_in_flight() > 0:
            if time.monotonic() > DEADLINE:
                raise TimeoutError("writes")
            h.poll(1000)
        for c in cookies:
            h.aio_command_completed(c)
        h.flush()
        bufs = []
        for k in range(0, REGION, CHUNK):
            while h.aio_in_flight() >= QD:
                h.poll(1000)
            b = nbd.Buffer(CHUNK)
            bufs.append((k, b, h.aio_pread(b, off0 + k)))
        while h.aio_in_flight() > 0:
            if time.monotonic() > DEADLINE:
                raise TimeoutError("reads")
            h.poll(1000)
        for k, b, c in bufs:
            h.aio_command_completed(c)
            if b.to_bytearray() != data[k:k + CHUNK]:
                raise ValueError("client %d: data differs at +%d" % (i, k))
    except Exception as e:  # reported, not raised: the other threads go on
        errors.append("client %d: %s" % (i, e))


def main():
    # A slow client: asks for 12 MiB (more than the 8 MiB the server buffers per connection)
    # through a tiny receive buffer and does not read yet.
    slow = Raw(rcvbuf=4096)
    for k in range(6):
        slow.request(0, 100 + k, k << 21, 2 << 20)
    # Two clients that vanish mid-request.
    v1 = Raw()
    v1.request(1, 1, 0, 1 << 20, bytes(100 << 10))
    v1.reset()
    v2 = Raw()
    v2.request(0, 2, 0, 2 << 20)
    v2.reset()
    say(True, "slow-and-vanishing-clients-started")

    handles = []
    for i in range(N):
        h = nbd.NBD()
        h.set_export_name("disk")
        h.connect_tcp("127.0.0.1", str(PORT))
        handles.append(h)
    say(len(handles) == N, "all-connected-at-once")
    print("connected %d" % N, flush=True)
    sys.stdin.readline()  # the caller looked at `net` while all of them are open

    errors = []
    t0 = time.monotonic()
    threads = [threading.Thread(target=run_worker, args=(i, h, errors), daemon=True)
               for i, h in enumerate(handles)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1, DEADLINE - time.monotonic()))
    alive = [t for t in threads if t.is_alive()]
    secs = time.monotonic() - t0
    say(not errors and not alive, "clients-wrote-and-read-back",
        "; ".join(errors) or "%d still running" % len(alive))
    print("# %d clients x %d KiB written and read back in %.1fs" % (N, REGION >> 10, secs),
          flush=True)
    for h in handles:
        try:
            h.shutdown()
        except nbd.Error:
            pass

    # The slow client was stalled the whole time; now it reads everything. The server may
    # answer in any order (the disk completes requests out of order and NBD allows it), so
    # each of the six cookies must come back exactly once, without an error.
    try:
        seen = []
        for k in range(6):
            magic, err, cookie = struct.unpack(">IIQ", slow.recv(16))
            if magic == 0x668E33EF:  # structured replies were not negotiated
                raise ValueError("structured reply")
            if err or not 100 <= cookie < 106 or cookie in seen:
                raise ValueError("reply %d: error %d cookie %d" % (k, err, cookie))
            slow.recv(2 << 20)
            seen.append(cookie)
        say(sorted(seen) == list(range(100, 106)), "slow-client-served-afterwards")
    except Exception as e:
        say(False, "slow-client-served-afterwards", str(e))
    slow.s.close()


main()
