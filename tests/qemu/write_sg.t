#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""WRITE payloads reach the data disk without a copy (issue 14; docs/performance.md "Copies
and allocations on the data path", docs/nbd.md "Borrowed input").

One boot on blank disks (the appliance formats the pool and exports vol0, 64 KiB blocks). A
libnbd client over QEMU's user networking writes SIZE bytes of vol0 sequentially in 256 KiB
WRITEs, QD in flight: first on unprovisioned blocks (provisioning), then the same region
again (in place). `perf reset` before, `perf` after each: its payload line must show every
payload byte borrowed (handed to virtio-blk as the received buffers) and none copied; the
frames the network glue copied because the driver ran short of spare receive buffers are
printed (and bounded). Then the region is read back and compared by md5."""
import hashlib
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import appliance_lib as ap  # noqa: E402

qh, al = ap.qh, ap.al
c = qh.Checks("qemu/write_sg")
qh.require_image(c)
tmp = al.scratch()
SIZE = 16 << 20
CHUNK = 256 << 10
QD = 4
# Frames copied for want of spare receive buffers: a share of the stream at most.
RX_COPY_BOUND = SIZE // 4


def seq_write(h, data):
    """SIZE bytes of @data at offset 0 in CHUNK writes, QD in flight."""
    cookies = []
    for off in range(0, SIZE, CHUNK):
        while h.aio_in_flight() >= QD:
            h.poll(1000)
        cookies.append(h.aio_pwrite(data[off:off + CHUNK], off))
    while h.aio_in_flight() > 0:
        h.poll(1000)
    for ck in cookies:
        h.aio_command_completed(ck)


def payload(out):
    m = re.search(r"write payload: (\d+) bytes borrowed \(no copy\), (\d+) bytes copied; "
                  r"received frames copied: (\d+) bytes", out)
    return tuple(int(x) for x in m.groups()) if m else None


try:
    m = ap.DiskMachine("qemu-write-sg", tmp)
    with m:
        m.boot_appliance()
        h = al.nbd.NBD()
        h.connect_uri(m.uri("vol0"))
        for phase in ("provisioning", "in-place"):
            data = al.pattern("write-sg-" + phase, SIZE)
            m.sh("perf reset", timeout=20)
            seq_write(h, data)
            out = m.sh("perf", timeout=20)
            p = payload(out)
            c.check(phase + "-perf-shows-payload", p is not None, out[-600:])
            if not p:
                continue
            borrowed, copied, rx_copied = p
            c.note("vol0 %s: %d MiB in 256 KiB WRITEs at QD%d: %d bytes borrowed, %d copied, "
                   "received frames copied %d bytes; load average %.2f"
                   % (phase, SIZE >> 20, QD, borrowed, copied, rx_copied,
                      os.getloadavg()[0]))
            c.check(phase + "-all-borrowed", borrowed >= SIZE, "%d < %d" % (borrowed, SIZE))
            c.check(phase + "-none-copied", copied == 0, "%d bytes copied" % copied)
            c.check(phase + "-rx-copies-bounded", rx_copied <= RX_COPY_BOUND,
                    "%d > %d" % (rx_copied, RX_COPY_BOUND))
            back = ap.pread(h, SIZE, 0)
            c.check(phase + "-md5", hashlib.md5(back).hexdigest() == hashlib.md5(data).hexdigest())
        h.shutdown()
        m.send("poweroff\r")
        c.check("poweroff", m.wait_exit(60) == qh.RC_POWEROFF)
except (qh.BootFailure, al.Failure, al.nbd.Error) as e:
    c.check("no-failure", False, str(e))
c.finish()
