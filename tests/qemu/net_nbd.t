#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The appliance on the network (one boot, DHCP, test-export-disk=data):

- the address comes from QEMU's DHCP server and is announced on the console; `net` shows
  address, gateway, DHCP state, link, MAC and counters;
- from the host through the port forward: nbdinfo sees the export `disk` (size, list);
  nbdcopy writes a random pattern and reads it back; libnbd sees minimum block size 1 and
  writes 3 bytes at an odd offset and zeroes 1000 bytes at 513 (the server's
  read-modify-write over virtio-blk); during the read-back the pure ACKs of libslirp (one
  per segment) were merged on receive (`net`'s "acks merged" above 100);
- 16 libnbd clients connected at once (`net` counts them), each with 16 requests in flight,
  write and read back their own regions while a slow client that does not read and two
  clients that vanish mid-request (RST) are around; the slow one is served afterwards and
  every connection is freed;
- after poweroff the data disk's image file holds exactly what the clients wrote.
"""
import os
import re
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_harness as qh  # noqa: E402

# Debian's python3 has libnbd's bindings; nbdinfo/nbdcopy are in /usr/bin too.
PY = "/usr/bin/python3"
ENV = dict(os.environ, PATH="/usr/bin:" + os.environ.get("PATH", ""))
DATA_SIZE = 64 << 20
PATTERN = 4 << 20  # nbdcopy'd at offset 0
BASE, NCLIENTS, REGION, SEED = 16 << 20, 16, 256 << 10, 7

c = qh.Checks("qemu/net_nbd")
qh.require_image(c)
for tool in ("nbdinfo", "nbdcopy"):
    if subprocess.run(["which", tool], capture_output=True, env=ENV).returncode:
        c.check("tool-%s" % tool, False, "%s missing: run scripts/setup" % tool)
        c.finish()


# An unaligned write and write-zeroes through libnbd (argv: URI, offset of a zero area).
UNALIGNED = '''
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
at = int(sys.argv[2])
assert h.get_block_size(nbd.SIZE_MINIMUM) == 1, h.get_block_size(nbd.SIZE_MINIMUM)
h.pwrite(b"\\x5a" * 3, at + 1)
h.zero(1000, 513)
h.flush()
got = h.pread(1024, at)
assert got == b"\\0" + b"\\x5a" * 3 + bytes(1020), got[:8]
assert h.pread(1000, 513) == bytes(1000)
h.shutdown()
print("ok")
'''


def run(args, timeout=60):
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=ENV)
        return r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired:
        return None, "timed out after %ds" % timeout


def client_pattern(i):
    words = []
    x = (SEED * 1000003 + i * 7919 + 1) & 0xFFFFFFFF
    for _ in range(REGION // 4):
        x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
        words.append(x)
    return struct.pack("<%dI" % len(words), *words)


def net_tcp_count(m):
    out = m.command("net")
    mt = re.search(r"tcp (\d+) connections", out)
    return (int(mt.group(1)) if mt else -1), out


m = qh.Machine("qemu-net-nbd", disks=(("meta", 16 << 20), ("data", DATA_SIZE)),
               # Through QEMU's user network every host client comes from the same address
               # (10.0.2.2): the per-client cap must admit the 19 connections made below.
               fw_cfg={"test-export-disk": "data", "nbd-max-per-client": "32"})
pat = os.urandom(PATTERN)
try:
    with m:
        m.boot()
        c.check("export-switch", "thinbox: test-export-disk data: exported as disk" in m.output,
                "no export line")
        line = m.expect(re.compile(r"thinbox: net \S+ gw \S+ \((dhcp|static)\)"), 30)
        c.check("dhcp-address-announced",
                "thinbox: net 10.0.2.15/24 gw 10.0.2.2 (dhcp)" in line, line[-200:])
        c.note("address after %.1fs from QEMU start" % m.elapsed())
        out = m.command("net")
        c.check("net-shows-address", "address 10.0.2.15/24  netmask 255.255.255.0  gateway "
                "10.0.2.2" in out, repr(out))
        c.check("net-shows-dhcp-link-mac",
                "dhcp bound  link up  mtu 1500  mac 52:54:00:12:34:56" in out, repr(out))
        c.check("net-shows-counters", re.search(r"rx [1-9]\d* packets", out) and
                re.search(r"tx [1-9]\d* packets", out) and "1 listening" in out, repr(out))

        uri = "nbd://127.0.0.1:%d" % m.port
        rc, out = run(["nbdinfo", "--json", uri + "/disk"])
        c.check("nbdinfo-size", rc == 0 and '"export-size": %d' % DATA_SIZE in out, out[-300:])
        rc, out = run(["nbdinfo", "--list", uri])
        c.check("nbdinfo-list", rc == 0 and 'export="disk"' in out, out[-300:])
        rc, out = run(["nbdinfo", "--size", uri + "/"])
        c.check("default-export", rc == 0 and out.strip() == str(DATA_SIZE), out[-300:])

        src = os.path.join(m.tmp, "pattern.bin")
        back = os.path.join(m.tmp, "back.bin")
        with open(src, "wb") as f:
            f.write(pat)
        t0 = time.monotonic()
        rc, out = run(["nbdcopy", src, uri + "/disk"], 120)
        c.check("nbdcopy-write", rc == 0, out[-300:])
        t1 = time.monotonic()
        rc, out = run(["nbdcopy", uri + "/disk", back], 120)
        t2 = time.monotonic()
        with open(back, "rb") as f:
            got = f.read()
        c.check("nbdcopy-read-back", rc == 0 and got[:PATTERN] == pat and
                got[PATTERN:] == bytes(DATA_SIZE - PATTERN), out[-300:])
        c.note("nbdcopy: %d MiB written in %.2fs, %d MiB read in %.2fs"
               % (PATTERN >> 20, t1 - t0, DATA_SIZE >> 20, t2 - t1))
        # libslirp acknowledges every segment: in a bulk read several of one connection
        # arrive in one receive batch, and all but the last are merged away
        # (net/lwip/ack_merge.h); the read-back above is intact with it.
        out = m.command("net")
        ma = re.search(r"acks merged (\d+)", out)
        merged = int(ma.group(1)) if ma else -1
        c.check("acks-merged-on-read", merged > 100, repr(out))
        c.note("pure ACKs merged on receive so far: %d" % merged)
        rc, out = run([PY, "-c", UNALIGNED, uri + "/disk", str(PATTERN)])
        c.check("unaligned-write-and-zeroes", rc == 0 and out.strip() == "ok", out[-300:])

        # Many clients at once, a slow one and two that vanish.
        p = subprocess.Popen([PY, os.path.join(qh.TOP, "tests", "qemu", "net_clients.py"),
                              str(m.port), str(BASE), str(NCLIENTS), str(REGION), str(SEED)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=ENV)
        lines = []
        t_end = time.monotonic() + 60
        while time.monotonic() < t_end:
            ln = p.stdout.readline()
            if not ln:
                break
            lines.append(ln)
            if ln.startswith("connected"):
                break
        if lines and lines[-1].startswith("connected"):
            n, out = net_tcp_count(m)
            # 16 clients and the slow one; the vanished ones may still be closing.
            c.check("net-counts-16-connections", n >= NCLIENTS + 1, repr(out))
            p.stdin.write("go\n")
            p.stdin.flush()
        try:
            rest, _ = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()
            rest, _ = p.communicate()
            lines.append("not ok clients: timed out\n")
        lines += rest.splitlines(True)
        for ln in lines:
            if ln.startswith("ok "):
                c.check(ln[3:].strip(), True)
            elif ln.startswith("not ok "):
                name, _, why = ln[7:].strip().partition(": ")
                c.check(name, False, why)
            elif ln.startswith("# "):
                c.note(ln[2:].strip())
        c.check("clients-exit-0", p.returncode == 0, "".join(lines[-5:]))

        # Every connection freed (the vanished ones included), within a bounded wait.
        n, out = -1, ""
        t_end = time.monotonic() + 30
        while time.monotonic() < t_end:
            n, out = net_tcp_count(m)
            if n == 0:
                break
            time.sleep(1)
        c.check("connections-freed", n == 0, repr(out))

        # The heap's counters (docs/performance.md): counted since boot, shown by `perf`.
        out = m.command("perf")
        mh = re.search(r"heap (\d+) allocations \(\d+ KiB asked\), (\d+) frees since reset; "
                       r"(\d+\.\d\d) allocations per NBD request", out)
        c.check("perf-counts-heap", mh and int(mh.group(1)) > 0 and int(mh.group(2)) > 0,
                repr(out[-400:]))
        if mh:
            c.note("heap: %s allocations, %s frees, %s per NBD request (handshakes included)"
                   % mh.groups())

        m.send("poweroff\r")
        rc = m.wait_exit(30)
        c.check("poweroff-rc0", rc == qh.RC_POWEROFF, "QEMU status %s" % rc)
        expect = bytearray(DATA_SIZE)
        expect[:PATTERN] = pat
        expect[PATTERN + 1:PATTERN + 4] = b"\x5a" * 3
        expect[513:1513] = bytes(1000)
        for i in range(NCLIENTS):
            expect[BASE + i * REGION:BASE + (i + 1) * REGION] = client_pattern(i)
        with open(os.path.join(m.tmp, "data.img"), "rb") as f:
            img = f.read()
        diff = next((o for o in range(0, DATA_SIZE, 4096)
                     if img[o:o + 4096] != expect[o:o + 4096]), None)
        c.check("image-holds-what-was-written", len(img) == DATA_SIZE and diff is None,
                "first difference at %s" % diff)
        c.check("no-exception", qh.EXCEPTION not in m.output and "PANIC" not in m.output)
        c.note("boot to poweroff %.1fs" % m.elapsed())
except qh.BootFailure as e:
    c.check("no-boot-failure", False, str(e))
c.finish()
