#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Power cuts in QEMU: QEMU is killed (SIGKILL by its PID) at 10 random moments of a mixed
workload, on the same disks, each followed by a reboot.

The workload, on 64 data blocks (4 MiB) of vol0 through the port forward, one NBD connection:
4 KiB writes, FUA writes, TRIM of whole 64 KiB blocks, WRITE_ZEROES of whole blocks (unmap) and
of a few 4 KiB units (zeroes written), FLUSH; at the same time, from the serial shell:
snapshots of vol0, deletes of snapshots, reserve and release of the metadata snapshot.

The model, per 4 KiB unit: its durable value (as of the last FLUSH that completed, or its last
FUA write) and every value issued since (a TRIM or WRITE_ZEROES issues zeroes). A kill stops
QEMU, not the host: what QEMU wrote to the image files stays, but requests still in the guest
may be lost. After each kill: thin_check passes on the metadata image; the next boot opens the
pool in step with its configuration; every unit reads back its durable value or one issued
after it (a discarded block reads zeroes once the unmap is committed, its old data if the cut
came first); a snapshot whose creation was acknowledged exists unless its delete was issued,
one whose delete was acknowledged does not. The values read become the new durable ones.
The seed is printed; SEED=n replays the same choices (the kill moments depend on timing too)."""
import os
import random
import re
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import appliance_lib as ap  # noqa: E402

qh, al = ap.qh, ap.al
nbd = al.nbd
c = qh.Checks("qemu/appliance_powercut")
qh.require_image(c)
tmp = al.scratch()
UNIT, UPB, NBLK = 4096, 16, 64  # 4 KiB units, units per 64 KiB data block, data blocks used
NUNITS = UPB * NBLK
KILLS = 10
SEED = int(os.environ.get("SEED", random.randrange(1 << 30)))
rng = random.Random(SEED)
c.note("seed %d" % SEED)

durable = [0] * NUNITS  # value per unit: 0 = zeroes, else the sequence number written
cur = [0] * NUNITS      # the last value issued
since = [set() for _ in range(NUNITS)]  # values issued since the durable one
seq = [0]
snaps = {}  # name -> "issued" | "acked" | "delete-issued" | "deleted"


def content(u, s):
    return struct.pack("<QQ", u, s) + al.pattern("p%d.%d" % (u, s), UNIT - 16)


def issue(u, v):
    since[u].add(v)
    cur[u] = v


def writer(m, stop, stats, wrng):
    try:
        h = al.connect(m.uri("vol0"))
    except Exception:
        return
    try:
        while not stop.is_set():
            k = wrng.randrange(100)
            if k < 62 or k >= 92:
                # A 4 KiB write; FUA for 1 in 8 of them.
                u = wrng.randrange(NUNITS)
                seq[0] += 1
                s = seq[0]
                issue(u, s)
                fua = k < 62 and wrng.randrange(8) == 0
                h.pwrite(content(u, s), u * UNIT, nbd.CMD_FLAG_FUA if fua else 0)
                stats["fua" if fua else "writes"] += 1
                if fua:
                    # FUA makes this write durable; no later one was issued to the unit.
                    durable[u] = s
                    since[u].clear()
            elif k < 70:
                b = wrng.randrange(NBLK)
                for u in range(b * UPB, (b + 1) * UPB):
                    issue(u, 0)
                h.trim(UPB * UNIT, b * UPB * UNIT)
                stats["trims"] += 1
            elif k < 76:
                b = wrng.randrange(NBLK)
                for u in range(b * UPB, (b + 1) * UPB):
                    issue(u, 0)
                h.zero(UPB * UNIT, b * UPB * UNIT)
                stats["zeroes"] += 1
            elif k < 82:
                n = 1 + wrng.randrange(4)
                u0 = wrng.randrange(NUNITS - n + 1)
                for u in range(u0, u0 + n):
                    issue(u, 0)
                h.zero(n * UNIT, u0 * UNIT)
                stats["zeroes"] += 1
            else:
                snap = list(cur)
                h.flush()
                for u in range(NUNITS):
                    if cur[u] == snap[u]:
                        durable[u] = snap[u]
                        since[u].clear()
                stats["flushes"] += 1
    except Exception:
        pass


def admin(m, stop, rnd, stats, arng):
    """Snapshots, deletes and the metadata snapshot from the shell while the writer runs."""
    k = 0
    held = None
    try:
        while not stop.is_set():
            time.sleep(arng.uniform(0.05, 0.4))
            live = sorted(n for n, st in snaps.items() if st == "acked")
            x = arng.randrange(10)
            if x < 4 and len(live) < 4:
                name = "s%d_%d" % (rnd, k)
                k += 1
                snaps[name] = "issued"
                out = m.sh("thin snapshot vol0 %s" % name)
                if "created %s" % name in out:
                    snaps[name] = "acked"
                    stats["snapshots"] += 1
            elif x < 7 and live:
                name = arng.choice(live)
                snaps[name] = "delete-issued"
                out = m.sh("thin delete %s" % name)
                if "deleted %s" % name in out:
                    snaps[name] = "deleted"
                    stats["deletes"] += 1
            elif x < 9:
                out = m.sh("pool %s-metadata-snap" % ("release" if held else "reserve"))
                if "error" not in out:
                    held = not held
                stats["metadata-snap"] += 1
    except Exception:
        pass


def verify_and_rebaseline(m):
    bad = []
    h = al.connect(m.uri("vol0"))
    data = ap.pread(h, NUNITS * UNIT, 0)
    h.shutdown()
    for u in range(NUNITS):
        got = data[u * UNIT:(u + 1) * UNIT]
        allowed = since[u] | {durable[u]}
        if got == bytes(UNIT):
            v = 0
        else:
            uu, v = struct.unpack("<QQ", got[:16])
            if uu != u or v not in allowed or got != content(u, v):
                bad.append((u, "not written here (%d/%d), durable %d" % (uu, v, durable[u])))
                continue
        if v not in allowed:
            bad.append((u, "zeroes, durable %d" % durable[u]))
            continue
        durable[u] = cur[u] = v
        since[u].clear()
    return bad


def check_snapshots(m, rnd):
    vols = al.parse_thin_list(m.sh("thin list"))
    for name, st in sorted(snaps.items()):
        if st == "acked":
            c.check("boot%d-snapshot-%s-exists" % (rnd, name), name in vols, sorted(vols))
        elif st == "deleted":
            c.check("boot%d-snapshot-%s-gone" % (rnd, name), name not in vols, sorted(vols))
        # Issued but not acknowledged: either. From now on what the pool says (and a deleted
        # name, checked once, is forgotten).
        if name in vols:
            snaps[name] = "acked"
        else:
            del snaps[name]


t0 = time.monotonic()
try:
    for rnd in range(KILLS + 1):
        m = ap.DiskMachine("qemu-appliance-powercut%d" % rnd, tmp)
        with m:
            m.boot_appliance()
            if not rnd:
                # If the workload runs the pool full, writes fail at once (dm's default would
                # queue them 60 s); the setting is kept across the kills.
                out = m.sh("pool set error-if-no-space on")
                c.check("error-if-no-space-set", "error at once" in out, out)
            if rnd:
                st = m.sh("pool status")
                c.check("boot%d-pool-in-step" % rnd, "in step with the pool" in st, st)
                c.check("boot%d-no-needs-check" % rnd, not re.search(r"needs_check\s+yes", st), st)
                bad = verify_and_rebaseline(m)
                c.check("boot%d-flushed-writes-intact" % rnd, not bad, "%d bad: %s" % (len(bad), bad[:5]))
                check_snapshots(m, rnd)
            if rnd == KILLS:
                out = m.sh("pool check", timeout=300)
                c.check("final-pool-check", "pool check: clean" in out, out)
                m.send("poweroff\r")
                c.check("final-poweroff", m.wait_exit(60) == qh.RC_POWEROFF)
                break
            stop = threading.Event()
            stats = {k: 0 for k in ("writes", "fua", "trims", "zeroes", "flushes", "snapshots",
                                    "deletes", "metadata-snap")}
            delay = rng.uniform(0.3, 4.0)
            tw = threading.Thread(target=writer, args=(m, stop, stats, random.Random(rng.random())))
            ta = threading.Thread(target=admin, args=(m, stop, rnd, stats, random.Random(rng.random())))
            tw.start()
            ta.start()
            time.sleep(delay)
            m.stop()  # SIGKILL by PID: the power cut
            stop.set()
            tw.join(60)
            ta.join(60)
            c.note("kill %d after %.1fs: %s" % (rnd, delay, stats))
        rc, text = al.thin_check(m.disk("meta"))
        c.check("kill%d-thin-check" % rnd, rc == 0, text)
except (qh.BootFailure, al.Failure) as e:
    c.check("no-boot-failure", False, str(e))
c.note("%d kills in %.0f s" % (KILLS, time.monotonic() - t0))
c.finish()
