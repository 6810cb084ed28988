#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The main loop halts while it only waits on the disks (docs/firmware.md, "Idle": the wait
spell), and the data stays right.

One boot on blank disks (the appliance formats the pool and exports vol0). `perf reset`, then
a libnbd client writes SIZE bytes of a pattern to vol0 in 64 KiB requests, QD in flight
(provisioning: each first write to a block allocates and zeroes it), flushes, and reads it all
back the same way. `perf` after it must count halts while waiting on the disks (the loop spun
through every disk wait before: none), a wait-poll row, and the read-back must equal what was
written. The halts, their time and the throughput are printed. The firmware boots with
wait-spell-us = 20 (see MIN_HALTS); WAIT_SPELL_US in the environment replaces it (0: the loop
spins while it waits, and the test must fail)."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import appliance_lib as ap  # noqa: E402

qh, al = ap.qh, ap.al
c = qh.Checks("qemu/wait_halt")
qh.require_image(c)
tmp = al.scratch()
SIZE = 16 << 20
CHUNK = 64 << 10
QD = 8
# 34-42 seen on a quiet machine, 9 in a CI run (the page cache answers most writes within the
# default 200 us spell, more so on a busy host); 0 while the loop spins. The test boots with a
# 20 us spell (unless WAIT_SPELL_US says otherwise) so that the mechanism, not the default's
# tuning, decides, and wants a few halts: any at all tells it from the spinning loop.
MIN_HALTS = 3


def run(h, op, data):
    """@op ("w" or "r") over SIZE bytes, QD requests in flight; the bytes read for "r"."""
    cookies, bufs = [], []
    for off in range(0, SIZE, CHUNK):
        while h.aio_in_flight() >= QD:
            h.poll(1000)
        if op == "w":
            cookies.append(h.aio_pwrite(data[off:off + CHUNK], off))
        else:
            b = al.nbd.Buffer(CHUNK)
            bufs.append(b)  # kept until the read completed
            cookies.append(h.aio_pread(b, off))
    while h.aio_in_flight() > 0:
        h.poll(1000)
    for ck in cookies:
        h.aio_command_completed(ck)
    return b"".join(b.to_bytearray() for b in bufs)


try:
    cfg = {"wait-spell-us": os.environ.get("WAIT_SPELL_US", "20")}
    m = ap.DiskMachine("qemu-wait-halt", tmp, fw_cfg=cfg)
    with m:
        m.boot_appliance()
        h = al.nbd.NBD()
        h.connect_uri(m.uri("vol0"))
        data = al.pattern("wait-halt", SIZE)
        m.sh("perf reset", timeout=20)
        t0 = time.monotonic()
        run(h, "w", data)
        h.flush()
        t1 = time.monotonic()
        back = run(h, "r", None)
        t2 = time.monotonic()
        out = m.sh("perf", timeout=20)
        h.shutdown()
        c.note("write %.1f MiB/s, read %.1f MiB/s (load %.2f)"
               % (SIZE / (1 << 20) / (t1 - t0), SIZE / (1 << 20) / (t2 - t1), os.getloadavg()[0]))
        c.check("data-read-back", back == data, "the read-back differs from what was written")
        mw = re.search(r"(\d+) halts \((\d+) ms\) while waiting on the disks", out)
        c.check("perf-shows-wait-halts", mw is not None, out[-600:])
        row = re.search(r"^wait-poll\s+(\d+)", out, re.M)
        c.check("perf-shows-wait-poll", row is not None, out[-600:])
        if mw:
            c.note("%s halts, %s ms halted while waiting on the disks; %s wait-poll passes"
                   % (mw.group(1), mw.group(2), row.group(1) if row else "?"))
            c.check("halts-while-waiting", int(mw.group(1)) >= MIN_HALTS,
                    "%s halts while waiting (want >= %d)" % (mw.group(1), MIN_HALTS))
        m.send("poweroff\r")
        c.check("poweroff", m.wait_exit(60) == qh.RC_POWEROFF)
except (qh.BootFailure, al.Failure, al.nbd.Error) as e:
    c.check("no-failure", False, str(e))
c.finish()
