#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Power cuts in QEMU: QEMU is killed (by its PID) during writes, three times at different
moments, on the same disks. The writer rewrites 4 KiB blocks of vol0 through the port forward
and sends FLUSH every 16 writes. After each kill: thin_check passes on the metadata image;
the next boot opens the pool with its configuration; every block reads back as a version
written at or after the last one acknowledged before a completed FLUSH."""
import os
import random
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import appliance_lib as ap  # noqa: E402

qh, al = ap.qh, ap.al
c = qh.Checks("qemu/appliance_powercut")
qh.require_image(c)
tmp = al.scratch()
BLK, NBLOCKS, SPREAD = 4096, 512, 16
KILL_AFTER = [1.0, 3.0, 0.3]
rng = random.Random(7)
history, durable, seq = {}, {}, [0]


def content(b, s):
    head = struct.pack("<QQ", b, s)
    return head + al.pattern("q%d.%d" % (b, s), BLK - 16)


def writer(m, stop, stats):
    try:
        h = al.connect(m.uri("vol0"))
    except Exception:
        return
    pending = []
    try:
        while not stop.is_set():
            for _ in range(16):
                b = rng.randrange(NBLOCKS)
                seq[0] += 1
                history.setdefault(b, []).append(seq[0])
                h.pwrite(content(b, seq[0]), b * SPREAD * BLK)
                pending.append((b, seq[0]))
                stats["writes"] += 1
            h.flush()
            for b, s in pending:
                durable[b] = max(durable.get(b, 0), s)
            pending = []
            stats["flushes"] += 1
    except Exception:
        pass


def verify_and_rebaseline(m):
    bad = []
    h = al.connect(m.uri("vol0"))
    for b in sorted(history):
        got = h.pread(BLK, b * SPREAD * BLK)
        d = durable.get(b, 0)
        if got == bytes(BLK):
            if d:
                bad.append((b, "zeros, flushed %d" % d))
            history[b], durable[b] = [], 0
            continue
        blk, s = struct.unpack("<QQ", got[:16])
        if blk != b or s not in history[b] or got != content(b, s):
            bad.append((b, "not written here (%d/%d)" % (blk, s)))
        elif s < d:
            bad.append((b, "seq %d older than flushed %d" % (s, d)))
        history[b], durable[b] = [s], s
    h.shutdown()
    return bad


try:
    for rnd, delay in enumerate(KILL_AFTER + [None]):
        m = ap.DiskMachine("qemu-appliance-powercut%d" % rnd, tmp)
        with m:
            m.boot_appliance()
            if rnd:
                st = m.sh("pool status")
                c.check("boot%d-pool-in-step" % rnd, "in step with the pool" in st, st)
                bad = verify_and_rebaseline(m)
                c.check("boot%d-flushed-writes-intact" % rnd, not bad, "%d bad: %s" % (len(bad), bad[:5]))
            if delay is None:
                out = m.sh("pool check", timeout=300)
                c.check("final-pool-check", "pool check: clean" in out, out)
                m.send("poweroff\r")
                c.check("final-poweroff", m.wait_exit(60) == qh.RC_POWEROFF)
                break
            stop, stats = threading.Event(), {"writes": 0, "flushes": 0}
            t = threading.Thread(target=writer, args=(m, stop, stats))
            t.start()
            time.sleep(delay)
            m.stop()  # SIGKILL by PID: the power cut
            stop.set()
            t.join(60)
            c.note("cut %d after %.1fs: %d writes, %d flushes" % (rnd, delay, stats["writes"], stats["flushes"]))
        rc, text = al.thin_check(m.disk("meta"))
        c.check("cut%d-thin-check" % rnd, rc == 0, text)
except (qh.BootFailure, al.Failure) as e:
    c.check("no-boot-failure", False, str(e))
c.finish()
