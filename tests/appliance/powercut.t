#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The host build's power cut: SIGKILL during writes, several times at different moments.

A writer keeps rewriting 4 KiB blocks of vol0 (spread over 64 MiB, so new pool blocks are
provisioned and old ones overwritten) and sends FLUSH every few writes; each block carries
its number and a sequence number. While it writes, the shell takes snapshots. The process is
then killed at a chosen moment (nothing of the program runs after SIGKILL: what was not
committed by a completed FLUSH or admin command is lost). After each kill:
  - thin_check passes on the metadata image;
  - the appliance opens the pool with its configuration (not stale), pool check is clean;
  - every block reads back as a version written at or after the last version acknowledged
    before a completed FLUSH (never older, never a mix);
  - every snapshot whose command had answered exists, exported ones are served."""
import os
import random
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import applib as al  # noqa: E402

c = al.Checks("appliance/powercut")
c.need_tools("thin_check")
tmp = al.scratch()
meta, data = al.blank_disks(tmp, 64 << 20, 256 << 20)
BLK = 4096
NBLOCKS = 2048  # 4 KiB blocks touched: every 8th block of 64 MiB (one per 32 KiB)
SPREAD = 8
KILL_AFTER = [0.3, 0.8, 1.5, 0.1, 2.5]

rng = random.Random(20240601)
history = {}  # block -> list of sequence numbers written (in order)
durable = {}  # block -> the sequence number the last completed FLUSH covers (or 0: zeros)
seq = [0]


def content(block, s):
    head = struct.pack("<QQ", block, s)
    return head + al.pattern("b%d.%d" % (block, s), BLK - len(head))


def writer(h, stop, stats):
    try:
        hh = al.connect(h.uri("vol0"))
    except Exception:
        return
    pending = []  # (block, seq) written since the last completed flush
    try:
        while not stop.is_set():
            for _ in range(16):
                b = rng.randrange(NBLOCKS)
                seq[0] += 1
                s = seq[0]
                # Record before sending: a write in flight at the kill may or may not land.
                history.setdefault(b, []).append(s)
                hh.pwrite(content(b, s), b * SPREAD * BLK)
                pending.append((b, s))
                stats["writes"] += 1
            hh.flush()
            for b, s in pending:
                durable[b] = max(durable.get(b, 0), s)
            pending = []
            stats["flushes"] += 1
    except Exception:
        pass  # the kill


def verify(h):
    """Read every block written so far; list what is wrong."""
    bad = []
    hh = al.connect(h.uri("vol0"))
    for b, seqs in sorted(history.items()):
        got = hh.pread(BLK, b * SPREAD * BLK)
        d = durable.get(b, 0)
        if got == bytes(BLK):
            if d:
                bad.append((b, "zeros, but seq %d was flushed" % d))
            continue
        blk, s = struct.unpack("<QQ", got[:16])
        if blk != b or s not in seqs or got != content(b, s):
            bad.append((b, "not a version written to it (header %d/%d)" % (blk, s)))
        elif s < d:
            bad.append((b, "seq %d is older than the flushed %d" % (s, d)))
    hh.shutdown()
    return bad


def rebaseline(h):
    """After a restart what is read is committed: it becomes the durable version."""
    hh = al.connect(h.uri("vol0"))
    for b in list(history):
        got = hh.pread(BLK, b * SPREAD * BLK)
        if got == bytes(BLK):
            history[b] = []
            durable.pop(b, None)
        else:
            s = struct.unpack("<QQ", got[:16])[1]
            history[b] = [s]
            durable[b] = s
    hh.shutdown()


snaps = []  # snapshots whose command answered
try:
    h = al.Host(meta, data).start()
    # Snapshots and rewrites can run the pool full: writes then fail at once, as this test
    # expects (dm's default would queue them 60 s). Kept across the restarts.
    out = h.command("pool set error-if-no-space on")
    c.check("error-if-no-space-set", "error at once" in out, out)
    for rnd, delay in enumerate(KILL_AFTER):
        stop = threading.Event()
        stats = {"writes": 0, "flushes": 0}
        t = threading.Thread(target=writer, args=(h, stop, stats))
        t.start()
        t_end = time.monotonic() + delay
        k = 0
        # Admin changes while the writer runs: a snapshot, sometimes exported.
        while time.monotonic() < t_end:
            nm = "r%ds%d" % (rnd, k)
            out = h.command("thin snapshot vol0 " + nm)
            if "created" in out:
                snaps.append(nm)
            if k % 2 == 0 and "created" in out:
                h.command("export add %s --read-only" % nm)
            k += 1
            time.sleep(min(0.1, max(0, t_end - time.monotonic())))
        h.kill()
        stop.set()
        t.join(30)
        c.note("round %d: killed after %.1fs, %d writes, %d flushes, %d snapshots so far"
               % (rnd, delay, stats["writes"], stats["flushes"], len(snaps)))
        rc, text = al.thin_check(meta)
        c.check("round%d-thin-check" % rnd, rc == 0, text)

        h = al.Host(meta, data).start()
        c.check("round%d-config-in-step" % rnd,
                "configuration" not in h.boot_log or "does not match" not in h.boot_log,
                h.boot_log)
        status = h.command("pool status")
        c.check("round%d-pool-ready" % rnd, "in step with the pool" in status and "rw (write)" in status,
                status)
        bad = verify(h)
        c.check("round%d-flushed-writes-intact" % rnd, not bad,
                "%d bad blocks, e.g. %s" % (len(bad), bad[:5]))
        vols = al.parse_thin_list(h.command("thin list"))
        missing = [s for s in snaps if s not in vols]
        c.check("round%d-acknowledged-snapshots-exist" % rnd, not missing, str(missing))
        exports = h.command("export list")
        c.check("round%d-exports-served" % rnd,
                all(("r%ds0" % r) in exports for r in range(rnd + 1) if ("r%ds0" % r) in snaps),
                exports)
        out = h.command("pool check")
        c.check("round%d-pool-check" % rnd, "pool check: clean" in out, out)
        rebaseline(h)
    c.check("stops-cleanly", h.stop() == 0)
    rc, text = al.thin_check(meta)
    c.check("final-thin-check", rc == 0, text)
except al.Failure as e:
    c.check("no-failure", False, str(e))
c.finish()
