#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The appliance in QEMU, end to end, in two boots on the same disks.

Boot 1 (blank disks, as `make run` creates them): first boot formats the pool and exports
vol0; nbdinfo --list through the port forward; nbdcopy an image in; snapshot; export the
snapshot read-only; overwrite the origin with qemu-img; the snapshot has the old data, the
origin the new; a 100-deep snapshot chain with every level verified (also on the host build,
tests/appliance/chain.t); poweroff.
Between the boots: both disks are the PVs of LVM2 VG thinbox, vol0's LV is stamped with the
RTC's time; thin_check and thin_dump on pool_tmeta agree with the shell.
Boot 2: no first boot, everything still there, the data reads back; pool check is clean.
Also printed: the time from QEMU start to the first NBD answer."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import appliance_lib as ap  # noqa: E402

qh, al = ap.qh, ap.al
c = qh.Checks("qemu/appliance_session")
qh.require_image(c)
tmp = al.scratch()
started = int(time.time())
BS = 64 << 10
DEPTH = 100
# Each level writes (and each check reads) one 4 KiB piece at the start of its 64 KiB block:
# enough to tell every level apart, small enough for 100 levels under TCG.
PIECE = 4096
img = os.path.join(tmp, "image.raw")
with open(img, "wb") as f:
    f.write(al.pattern("qemu-first", 8 << 20))
    f.seek(12 << 20)
    f.write(al.pattern("qemu-tail", 4 << 20))
img2 = os.path.join(tmp, "image2.raw")
with open(img2, "wb") as f:
    f.write(al.pattern("qemu-second", 16 << 20))

try:
    m = ap.DiskMachine("qemu-appliance-session", tmp)
    with m:
        boot = m.boot_appliance()
        c.note("QEMU start to first NBD answer: %.1fs" % m.elapsed())
        c.check("first-boot-formats", "first boot: blank disks; creating volume group thinbox"
                in m.output, boot)
        c.check("first-boot-exports-vol0", "exported it as vol0" in m.output)
        r = al.run(["nbdinfo", "--list", m.uri()], timeout=60)
        c.check("nbdinfo-list", r.returncode == 0 and 'export="vol0"' in r.stdout, r.stdout + r.stderr)
        r = al.run(["nbdcopy", img, m.uri("vol0")], timeout=300)
        c.check("nbdcopy-in", r.returncode == 0, r.stderr)
        out = m.sh("thin snapshot vol0 snap1")
        c.check("snapshot", "created snap1" in out, out)
        out = m.sh("export add snap1 --read-only")
        c.check("export-snapshot-ro", "exported snap1" in out, out)
        r = al.run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", img2, m.uri("vol0")],
                   timeout=300)
        c.check("overwrite-origin", r.returncode == 0, r.stderr)
        out_snap = os.path.join(tmp, "snap.out")
        r = al.run(["nbdcopy", m.uri("snap1"), out_snap], timeout=300)
        with open(out_snap, "rb") as f, open(img, "rb") as g:
            c.check("snapshot-old-data", r.returncode == 0 and f.read(16 << 20) == g.read())
        h = al.connect(m.uri("vol0"))
        c.check("origin-new-data", ap.pread(h, 16 << 20, 0) == al.pattern("qemu-second", 16 << 20))
        h.shutdown()

        # A light chain: level i = snapshot of level i-1 after writing block i into it.
        m.sh("thin create chain 16M")
        for lv in range(1, DEPTH + 1):
            prev = "chain" if lv == 1 else "c%d" % (lv - 1)
            m.sh("export add %s --name w" % prev)
            h = al.connect(m.uri("w"))
            h.pwrite(al.pattern("lvl%d" % lv, PIECE), lv * BS)
            h.flush()
            h.shutdown()
            m.sh("export remove w")
            m.sh("thin snapshot %s c%d" % (prev, lv))
        bad = []
        for lv in range(1, DEPTH + 1):
            m.sh("export add c%d --read-only --name r" % lv)
            h = al.connect(m.uri("r"))
            for b in range(1, DEPTH + 1):
                # Block b was written into level b-1 before level b was taken from it.
                want = al.pattern("lvl%d" % b, PIECE) if b <= lv + 1 else bytes(PIECE)
                if h.pread(PIECE, b * BS) != want:
                    bad.append((lv, b))
            h.shutdown()
            m.sh("export remove r")
        c.check("chain-every-level", not bad, str(bad[:10]))

        listing = m.sh("thin list")
        vols = al.parse_thin_list(listing)
        c.check("thin-list", len(vols) == DEPTH + 3, listing)
        t = ap.txid(m.sh("pool status"))
        m.send("poweroff\r")
        rc = m.wait_exit(60)
        c.check("poweroff", rc == qh.RC_POWEROFF, "QEMU status %s" % rc)

    # Both disks are the PVs of VG thinbox (64 MiB and 256 MiB: 15 and 63 extents of 4 MiB
    # after the 1 MiB header), and the LVs were stamped by the firmware's wall clock (the
    # RTC, which QEMU sets to the host's time) and host name, as lvm stamps them.
    bad = al.vg_layout_problems(m.disk("meta"), m.disk("data"), 15, 63)
    c.check("disks-are-the-pvs-of-vg-thinbox", not bad, "\n".join(bad))
    text = al.vg_text(m.disk("meta"))
    stamp = re.search(r'^vol0 \{.*?^creation_time = (\d+)\s+^creation_host = "([^"]*)"',
                      text, re.M | re.S)
    c.check("vol0-creation-time-from-the-rtc",
            stamp and started - 60 <= int(stamp.group(1)) <= time.time() + 60,
            "%s (test started at %d)" % (stamp and stamp.groups(), started))
    c.check("vol0-creation-host", stamp and stamp.group(2) != "", text[:2000])

    rc, text = al.thin_check(m.disk("meta"))
    c.check("thin-check-clean", rc == 0, text)
    d = al.thin_dump(m.disk("meta"))
    c.check("thin-dump-transaction-matches-shell", d["transaction"] == t, "%s vs %s" % (d["transaction"], t))
    c.check("thin-dump-devices-match-shell", set(d["devices"]) == {v["id"] for v in vols.values()})
    c.check("thin-dump-chain-mapped", all(d["devices"][vols["c%d" % lv]["id"]]["mapped"] == min(lv + 1, DEPTH)
                                          for lv in range(1, DEPTH + 1)))

    m = ap.DiskMachine("qemu-appliance-session2", tmp)
    with m:
        m.boot_appliance()
        c.check("second-boot-no-format", "first boot" not in m.output)
        c.check("volumes-after-reboot", al.parse_thin_list(m.sh("thin list")).keys() == vols.keys())
        c.check("transaction-after-reboot", ap.txid(m.sh("pool status")) == t)
        r = al.run(["nbdcopy", m.uri("snap1"), out_snap], timeout=300)
        with open(out_snap, "rb") as f, open(img, "rb") as g:
            c.check("snapshot-data-after-reboot", r.returncode == 0 and f.read(16 << 20) == g.read())
        out = m.sh("pool check", timeout=300)
        c.check("pool-check-clean", "pool check: clean" in out, out)
        m.send("poweroff\r")
        c.check("poweroff-again", m.wait_exit(60) == qh.RC_POWEROFF)
except (qh.BootFailure, al.Failure) as e:
    c.check("no-boot-failure", False, str(e))
c.finish()
