#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""virtio-net offloads on a tap backend (one boot, test-export-disk=data).

QEMU's user networking offers no offload (no virtio-net header), so the other network tests
never use them. Here the NIC is on a tap device with vnet_hdr=on in a private network
namespace (tests/qemu/netns.py): nothing outside the test is touched or reachable, and the
clients (nbdinfo, nbdcopy, fio) run in the namespace too.

- `nic` lists the negotiated features: csum and guest-csum at least;
- `net` says the TCP checksums are left to the device;
- nbdcopy writes 8 MiB of random data and reads the whole disk back: the data compares equal
  (md5 and the first difference) and the rest of the disk is zero;
- the driver's counters show the offloads were used: transmitted frames went to the device
  with NEEDS_CSUM (tx csum by device > 0, software checksums 0) and received frames came with
  a checksum the device vouched for (rx csum valid + partial > 0: the host's stack marks its
  own frames NEEDS_CSUM, frames from elsewhere come DATA_VALID); received segments far
  above the MTU (GUEST_TSO4) arrived over several buffers (MRG_RXBUF) and lwIP kept the
  buffers themselves (zero copy); transmitted segments left merged into GSO frames
  (HOST_TSO4: gso frames, and the segments in them); large frames went by reference (the
  device read lwIP's pbufs through indirect descriptor chains, no copy): INDIRECT_DESC
  negotiated, frames by reference at least as many as the GSO frames, and the references
  came back (returned >= frames by reference: each frame holds one or more);
- window scaling: a client's TCP_INFO after the greeting shows the guest offered a window scale
  and advertises a receive window above 64 KiB (lwIP's LWIP_WND_SCALE and TCP_WND, which QEMU's
  user networking cannot use: docs/performance.md);
- the pipe stays full: fio reads the pattern in 256 KiB requests at QD8, then QD16 (2 s each,
  `perf reset` before, `perf` after); its TCP output counters show more than 65,535 bytes in
  flight at once (window scaling both ways) and our send buffer stopping at most 1% of the
  output batches while the window had room (TCP_SND_BUF: 512 KiB stopped 95%; without window
  scaling at most 65,535 bytes fly); the figures are printed with the load average;
- a second boot with mrg_rxbuf=off: GUEST_TSO4 is negotiated away (it needs MRG_RXBUF here),
  a 1 MiB round trip compares equal, every frame in one buffer.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_harness as qh  # noqa: E402
import netns  # noqa: E402

ENV = dict(os.environ, PATH="/usr/bin:" + os.environ.get("PATH", ""))
DATA_SIZE = 64 << 20
PATTERN = 8 << 20
PIPE_SECONDS = 2

c = qh.Checks("qemu/offload")
qh.require_image(c)
c.need_tools("nbdinfo", "nbdcopy", "fio")


# Run in the namespace: connect, read the greeting, print what Linux's TCP_INFO says of the
# guest's side: the options it took (TCPI_OPT_WSCALE is 4), the guest's window scale (the low
# four bits of byte 6) and the guest's advertised window after scaling (tcpi_snd_wnd, offset
# 228, present in newer kernels; -1 when the kernel's tcp_info is shorter).
TCPINFO_CLIENT = r'''
import socket, struct, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
got = b""
while len(got) < 18:
    d = s.recv(18 - len(got))
    if not d:
        break
    got += d
info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
wnd = struct.unpack_from("=I", info, 228)[0] if len(info) >= 232 else -1
print(int(got[:8] == b"NBDMAGIC"), info[5], info[6] & 15, wnd)
'''


def pipe_counters(perf):
    """`perf`'s TCP output lines as (max in flight, max peer window, batches, stopped by peer
    window, cwnd, nic, send buffer, nothing queued, all answered, ran dry), None when
    absent."""
    m = re.search(r"tcp output: (\d+) bytes in flight at most, peer window up to (\d+); "
                  r"(\d+) batches stopped by\s+peer window (\d+), cwnd (\d+), nic (\d+), "
                  r"send buffer (\d+), nothing queued (\d+); all answered (\d+); "
                  r"ran dry (\d+) times", perf)
    return tuple(int(x) for x in m.groups()) if m else None


def counter(text, pattern):
    m = re.search(pattern, text)
    return int(m.group(1)) if m else None


ns = netns.start_checked(c)

m = netns.TapMachine("qemu-offload", ns, disks=(("meta", 16 << 20), ("data", DATA_SIZE)),
                     fw_cfg={"test-export-disk": "data"})
try:
    with m:
        m.boot()
        out = qh.strip_ansi(m.command("nic"))
        feat = re.search(r"features: ([^\r\n]*)", out)
        feat = feat.group(1).split() if feat else []
        c.note("negotiated: %s" % " ".join(feat))
        c.check("features-csum", "csum" in feat and "guest-csum" in feat, repr(out))
        c.check("features-mrg-rxbuf-guest-tso4", "mrg-rxbuf" in feat and "guest-tso4" in feat,
                repr(out))
        c.check("features-host-tso4", "host-tso4" in feat, repr(out))
        out = m.command("net")
        c.check("net-csum-by-device", "tcp checksums by device" in out, repr(out))

        rc, out = ns.run(["nbdinfo", "--size", m.uri("disk")], 60, env=ENV)
        c.check("nbdinfo-size", rc == 0 and out.strip() == str(DATA_SIZE), out[-300:])

        client = os.path.join(m.tmp, "tcpinfo_client.py")
        with open(client, "w") as f:
            f.write(TCPINFO_CLIENT)
        rc, out = ns.run(["/usr/bin/python3", client, m.addr, str(m.port)], 60)
        f = out.split()
        ok = rc == 0 and len(f) == 4 and f[0] == "1"
        c.note("guest's TCP: window scale %s, window %s bytes" % (f[2:3], f[3:4]))
        c.check("tcp-window-scaling", ok and int(f[1]) & 4 and int(f[2]) >= 1 and
                (int(f[3]) == -1 or int(f[3]) > 65535), "%s %s" % (rc, out[-300:]))

        pat = os.urandom(PATTERN)
        src = os.path.join(m.tmp, "pattern.bin")
        back = os.path.join(m.tmp, "back.bin")
        with open(src, "wb") as f:
            f.write(pat)
        t0 = time.monotonic()
        rc, out = ns.run(["nbdcopy", src, m.uri("disk")], 120, env=ENV)
        c.check("nbdcopy-write", rc == 0, out[-300:])
        t1 = time.monotonic()
        rc, out = ns.run(["nbdcopy", m.uri("disk"), back], 120, env=ENV)
        t2 = time.monotonic()
        c.check("nbdcopy-read", rc == 0, out[-300:])
        got = open(back, "rb").read() if os.path.exists(back) else b""
        same = hashlib.md5(got[:PATTERN]).hexdigest() == hashlib.md5(pat).hexdigest()
        diff = next((o for o in range(0, min(len(got), PATTERN), 4096)
                     if got[o:o + 4096] != pat[o:o + 4096]), None)
        c.check("data-compares", len(got) == DATA_SIZE and same and
                got[PATTERN:] == bytes(DATA_SIZE - PATTERN),
                "length %d, md5 equal %s, first difference at %s" % (len(got), same, diff))
        c.note("nbdcopy: %d MiB written in %.2fs, %d MiB read in %.2fs (load %.2f)"
               % (PATTERN >> 20, t1 - t0, DATA_SIZE >> 20, t2 - t1, os.getloadavg()[0]))

        out = qh.strip_ansi(m.command("nic"))
        c.note(" | ".join(ln.strip() for ln in out.splitlines() if ln.strip()))
        tx_dev = counter(out, r"tx csum by device (\d+)")
        tx_sw = counter(out, r"sw checksums (\d+)")
        rx_valid = counter(out, r"rx csum valid (\d+)")
        rx_partial = counter(out, r"partial (\d+)")
        c.check("tx-csum-by-device", tx_dev is not None and tx_dev > 1000, repr(out))
        c.check("tx-csum-software-0", tx_sw == 0, repr(out))
        rx_pkts = counter(out, r"rx (\d+) packets")
        # All but the odd ARP frame: the host's TCP segments come NEEDS_CSUM.
        c.check("rx-csum-trusted", rx_valid is not None and rx_partial is not None and
                rx_valid + rx_partial > 100 and rx_valid + rx_partial >= rx_pkts - 10,
                repr(out))
        merged = counter(out, r"rx merged (\d+)")
        large = counter(out, r"large (\d+)")
        kept = counter(out, r"kept (\d+)")
        # 8 MiB written: the host coalesces them into segments far above the MTU.
        c.check("rx-large-segments", large is not None and large > 20 and
                rx_pkts < (PATTERN // 1460) // 2, repr(out))
        # Most large segments span buffers (a small coalesced one may fit in one).
        c.check("rx-merged-buffers", merged is not None and merged > large // 2, repr(out))
        c.check("rx-zero-copy", kept is not None and kept > rx_pkts // 2, repr(out))
        gso = counter(out, r"gso frames (\d+)")
        gso_segs = counter(out, r"\((\d+) segments\)")
        # 64 MiB read: lwIP's segments leave merged into GSO frames of many segments.
        c.check("tx-gso-frames", gso is not None and gso > 100 and gso_segs > 4 * gso,
                repr(out))
        by_ref = counter(out, r"by reference (\d+)")
        copied = counter(out, r"copied (\d+)")
        returned = counter(out, r"references returned (\d+)")
        feat = re.search(r"features: ([^\r\n]*)", out)
        c.check("tx-by-reference", by_ref is not None and gso is not None and
                by_ref >= gso > 100 and returned >= by_ref and
                feat is not None and "indirect" in feat.group(1).split(), repr(out))
        out = m.command("net")
        c.note("net: " + " | ".join(ln.strip() for ln in out.splitlines()[2:4]))

        # The pipe stays full at QD8 and QD16: fio reads the pattern's 8 MiB (random data,
        # so no reply shrinks to a hole) over and over in 256 KiB requests, `perf`'s TCP
        # output counters over each job.
        for qd in (8, 16):
            m.command("perf reset")
            load = os.getloadavg()[0]
            rc, out = ns.run(["fio", "--name=pipe%d" % qd, "--ioengine=nbd",
                              "--uri=" + m.uri("disk"), "--rw=read", "--bs=256k",
                              "--iodepth=%d" % qd, "--size=%d" % PATTERN, "--time_based",
                              "--runtime=%d" % PIPE_SECONDS, "--output-format=json"],
                             PIPE_SECONDS + 60, env=ENV)
            mib = None
            if rc == 0 and "{" in out:
                job = json.loads(out[out.index("{"):])["jobs"][0]["read"]
                mib = job["bw"] / 1024.0
            perf = qh.strip_ansi(m.command("perf"))
            t = pipe_counters(perf)
            c.check("pipe-qd%d-fio" % qd, mib is not None and t is not None, out[-300:] +
                    perf[-600:])
            if t is None:
                continue
            c.note("QD%d 256 KiB reads: %.0f MiB/s (load %.2f); %d bytes in flight at most, "
                   "peer window up to %d; %d batches stopped by peer window %d, cwnd %d, "
                   "nic %d, send buffer %d, nothing queued %d; all answered %d; ran dry %d times"
                   % ((qd, mib or 0, load) + t))
            flight, batches, sndbuf = t[0], t[2], t[6]
            c.check("pipe-qd%d-flight-above-64k" % qd, flight > 65535, str(t))
            # Our buffer, with the window open, stopped at most 1% of the batches: the
            # network (or the data path) sets the pace, never TCP_SND_BUF.
            c.check("pipe-qd%d-not-send-buffer" % qd,
                    batches > 20 and sndbuf * 100 <= batches, str(t))

        m.send("poweroff\r")
        rc = m.wait_exit(30)
        c.check("poweroff-rc0", rc == qh.RC_POWEROFF, "QEMU status %s" % rc)
        c.check("no-exception", qh.EXCEPTION not in m.output and "PANIC" not in m.output)
except qh.BootFailure as e:
    c.check("no-boot-failure", False, str(e))

# The same device without mergeable buffers: large received segments need them here, so
# GUEST_TSO4 is negotiated away again (a second negotiation); frames still go both ways.
m = netns.TapMachine("qemu-offload-nomrg", ns, disks=(("meta", 16 << 20), ("data", DATA_SIZE)),
                     fw_cfg={"test-export-disk": "data"}, nic_opts="mrg_rxbuf=off")
try:
    with m:
        m.boot()
        out = qh.strip_ansi(m.command("nic"))
        feat = re.search(r"features: ([^\r\n]*)", out)
        feat = feat.group(1).split() if feat else []
        c.check("no-mrg-no-guest-tso4", "guest-csum" in feat and "mrg-rxbuf" not in feat and
                "guest-tso4" not in feat and "host-tso4" in feat, repr(out))
        small = os.urandom(1 << 20)
        src = os.path.join(m.tmp, "small.bin")
        back = os.path.join(m.tmp, "small-back.bin")
        with open(src, "wb") as f:
            f.write(small)
        rc1, out1 = ns.run(["nbdcopy", src, m.uri("disk")], 120, env=ENV)
        rc2, out2 = ns.run(["nbdcopy", "--no-extents", m.uri("disk"), back], 120, env=ENV)
        got = open(back, "rb").read(1 << 20) if os.path.exists(back) else b""
        c.check("no-mrg-data-compares", rc1 == 0 and rc2 == 0 and got == small,
                (out1 + out2)[-300:])
        out = qh.strip_ansi(m.command("nic"))
        c.check("no-mrg-single-buffers", counter(out, r"rx merged (\d+)") == 0 and
                counter(out, r"kept (\d+)") > 0, repr(out))
        m.send("poweroff\r")
        c.check("no-mrg-poweroff-rc0", m.wait_exit(30) == qh.RC_POWEROFF)
except qh.BootFailure as e:
    c.check("no-mrg-no-boot-failure", False, str(e))
finally:
    holder = ns.holder.pid if ns.holder else None
    ns.stop()
# Nothing outside the test was touched: the host-side address never existed out here, and
# the namespace's holder is gone (the kernel then frees the namespace and its tap).
r = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True)
c.check("host-namespace-untouched", r.returncode == 0 and netns.HOST_IP not in r.stdout,
        r.stdout[-300:])
c.check("namespace-holder-stopped", holder is not None and
        not os.path.exists("/proc/%d" % holder), "holder %s" % holder)
c.finish()
