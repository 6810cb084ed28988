#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Heap allocations per NBD request through the thin pool (issue 14, docs/performance.md
"Copies and allocations").

One boot on blank disks (the appliance formats the pool and exports vol0). A libnbd client
writes a 4 MiB region of vol0 (provisioning its blocks) and runs a warm-up of random 4 KiB
writes and reads at QD16; then `perf reset`, a steady run of the same (WRITES writes, READS
reads, random 4 KiB-aligned offsets in the region, 16 in flight), and `perf`: its heap
counters must show fewer than 1 allocation per NBD request (before the pool's free lists,
each request through the pool made about 3 of its own). The figure is printed."""
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import appliance_lib as ap  # noqa: E402

qh, al = ap.qh, ap.al
c = qh.Checks("qemu/pool_alloc")
qh.require_image(c)
tmp = al.scratch()
REGION = 4 << 20
QD = 16
WRITES = READS = 2000
BOUND = 1.0


def run(h, rng, writes, reads, data):
    """@writes random 4 KiB writes, then @reads reads, QD in flight; raises on a failure."""
    for op, n in (("w", writes), ("r", reads)):
        cookies, bufs = [], []
        for _ in range(n):
            while h.aio_in_flight() >= QD:
                h.poll(1000)
            off = rng.randrange(REGION // 4096) * 4096
            if op == "w":
                cookies.append(h.aio_pwrite(data, off))
            else:
                b = al.nbd.Buffer(4096)
                bufs.append(b)  # kept until the read completed
                cookies.append(h.aio_pread(b, off))
        while h.aio_in_flight() > 0:
            h.poll(1000)
        for ck in cookies:
            h.aio_command_completed(ck)


try:
    m = ap.DiskMachine("qemu-pool-alloc", tmp)
    with m:
        m.boot_appliance()
        h = al.nbd.NBD()
        h.connect_uri(m.uri("vol0"))
        rng = random.Random(14)
        data = al.pattern("pool-alloc", 4096)
        ap.pwrite(h, al.pattern("pool-alloc-region", REGION), 0)
        h.flush()
        run(h, rng, 500, 500, data)
        m.sh("perf reset", timeout=20)
        run(h, rng, WRITES, READS, data)
        out = m.sh("perf", timeout=20)
        h.shutdown()
        mh = re.search(r"heap (\d+) allocations \(\d+ KiB asked\), (\d+) frees since reset; "
                       r"(\d+\.\d\d) allocations per NBD request", out)
        c.check("perf-shows-heap", mh is not None, out[-400:])
        # The figure is allocations over the requests perf counted: with none counted it
        # would read 0.00 whatever the heap did.
        mr = re.search(r"NBD: (\d+) requests", out)
        c.check("perf-counted-the-requests", mr is not None and
                int(mr.group(1)) >= WRITES + READS, out[-400:])
        if mh:
            per = float(mh.group(3))
            c.note("vol0, %d random 4 KiB writes then %d reads at QD%d: %s allocations, "
                   "%s frees, %.2f per NBD request; load average %.2f"
                   % (WRITES, READS, QD, mh.group(1), mh.group(2), per, os.getloadavg()[0]))
            c.check("under-%g-allocation-per-request" % BOUND, per < BOUND, "%.2f" % per)
        m.send("poweroff\r")
        c.check("poweroff", m.wait_exit(60) == qh.RC_POWEROFF)
except (qh.BootFailure, al.Failure, al.nbd.Error) as e:
    c.check("no-failure", False, str(e))
c.finish()
