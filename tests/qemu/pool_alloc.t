#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Heap allocations per NBD request through the thin pool (issue 14, docs/performance.md
"Copies and allocations").

One boot on blank disks (the appliance formats the pool and exports vol0). A libnbd client
writes a 4 MiB region of vol0 (provisioning its blocks) and runs a warm-up of random 4 KiB
writes and reads at QD16; then `perf reset`, a steady run of the same (WRITES writes, READS
reads, random 4 KiB-aligned offsets in the region, 16 in flight), and `perf`: its heap
counters must show fewer than 1 allocation per NBD request (before the pool's free lists,
each request through the pool made about 3 of its own). Then the same for large requests, as
fio's sequential jobs send them: SEQ_WARM warm-up passes of 256 KiB writes and reads at QD8
over the region, `perf reset`, SEQ_PASSES more passes of the same (512 requests). Not zero
allocations: lwIP's size-class free lists (net/lwip/lwip_alloc.c) and the pool's metadata
cache keep what they take and go to the heap only past their high-water mark (more lwIP
blocks out at once than ever before, a metadata block not cached yet), which with 256 KiB
requests still creeps up now and then: 14 to 86 allocations in 256-1,024 requests (the
range seen so far, the most in CI runs), and never a free. So what marks work done per
request is the frees: under SEQ_FREE_BOUND per request, and under SEQ_BOUND allocations (a
block allocated per request and kept). A firmware that gives lwIP's blocks over 512 bytes
back to the heap at each free made 0.83-0.85 frees and 0.91-0.95 allocations per request
here (two runs), and failed both. The figures are printed."""
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
SEQ_SIZE, SEQ_QD, SEQ_WARM, SEQ_PASSES = 256 << 10, 8, 2, 16
SEQ_BOUND, SEQ_FREE_BOUND = 0.5, 0.1


def run(h, rng, writes, reads, data, qd=QD):
    """@writes writes of @data, then @reads reads of its size, @qd in flight; random offsets
    aligned to the size with @rng, or in order through the region without; raises on a
    failure."""
    size = len(data)
    for op, n in (("w", writes), ("r", reads)):
        cookies, bufs = [], []
        for i in range(n):
            while h.aio_in_flight() >= qd:
                h.poll(1000)
            if rng:
                off = rng.randrange(REGION // size) * size
            else:
                off = i * size % REGION
            if op == "w":
                cookies.append(h.aio_pwrite(data, off))
            else:
                b = al.nbd.Buffer(size)
                bufs.append(b)  # kept until the read completed
                cookies.append(h.aio_pread(b, off))
        while h.aio_in_flight() > 0:
            h.poll(1000)
        for ck in cookies:
            h.aio_command_completed(ck)


def heap_check(prefix, what, requests, bound, free_bound=None):
    """`perf`'s heap counters since the last reset: under @bound allocations per request, and
    with @free_bound under that many frees per request."""
    out = m.sh("perf", timeout=20)
    mh = re.search(r"heap (\d+) allocations \(\d+ KiB asked\), (\d+) frees since reset; "
                   r"(\d+\.\d\d) allocations per NBD request", out)
    c.check(prefix + "perf-shows-heap", mh is not None, out[-400:])
    # The figure is allocations over the requests perf counted: with none counted it would
    # read 0.00 whatever the heap did.
    mr = re.search(r"NBD: (\d+) requests", out)
    c.check(prefix + "perf-counted-the-requests", mr is not None and
            int(mr.group(1)) >= requests, out[-400:])
    if mh:
        per = float(mh.group(3))
        c.note("vol0, %s: %s allocations, %s frees, %.2f per NBD request; load average %.2f"
               % (what, mh.group(1), mh.group(2), per, os.getloadavg()[0]))
        c.check(prefix + "under-%g-allocation-per-request" % bound, per < bound, "%.2f" % per)
        if free_bound is not None and mr:
            frees = int(mh.group(2)) / int(mr.group(1))
            c.check(prefix + "under-%g-free-per-request" % free_bound, frees < free_bound,
                    "%.2f" % frees)


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
        heap_check("", "%d random 4 KiB writes then %d reads at QD%d" % (WRITES, READS, QD),
                   WRITES + READS, BOUND)
        # Large requests: warm-up passes, then the measured ones.
        big = al.pattern("pool-alloc-seq", SEQ_SIZE)
        n = REGION // SEQ_SIZE
        for _ in range(SEQ_WARM):
            run(h, None, n, n, big, SEQ_QD)
        m.sh("perf reset", timeout=20)
        for _ in range(SEQ_PASSES):
            run(h, None, n, n, big, SEQ_QD)
        heap_check("seq-", "%d passes of %d sequential 256 KiB writes then reads at QD%d"
                   % (SEQ_PASSES, n, SEQ_QD), 2 * n * SEQ_PASSES, SEQ_BOUND, SEQ_FREE_BOUND)
        h.shutdown()
        m.send("poweroff\r")
        c.check("poweroff", m.wait_exit(60) == qh.RC_POWEROFF)
except (qh.BootFailure, al.Failure, al.nbd.Error) as e:
    c.check("no-failure", False, str(e))
c.finish()
