#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Incremental backup from the firmware in QEMU (the host build's full test is
tests/appliance/backup.t): the same NBD server over lwIP offers qemu:dirty-bitmap:s1 on
snapshot s2's read-only export; nbdinfo --map gives exactly the blocks changed between the
snapshots (overwrites, a partial write, new data, a discard); a full nbdcopy of s1 plus the
dirty extents copied by tests/appliance/incr_backup.py equals s2 byte for byte; `thin diff
--summary` on the serial console agrees."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import appliance_lib as ap  # noqa: E402

qh, al = ap.qh, ap.al
c = qh.Checks("qemu/appliance_backup")
qh.require_image(c)
tmp = al.scratch()
BS = 64 << 10
INCR = os.path.join(al.TOP, "tests", "appliance", "incr_backup.py")

try:
    m = ap.DiskMachine("qemu-appliance-backup", tmp)
    with m:
        m.boot_appliance()
        h = al.connect(m.uri("vol0"))
        ap.pwrite(h, al.pattern("base", 24 * BS), 0)
        h.flush()
        h.shutdown()
        c.check("snapshot-s1", "created s1" in m.sh("thin snapshot vol0 s1"))
        m.sh("export add s1 --read-only")
        full = os.path.join(tmp, "backup.img")
        r = al.run(["nbdcopy", m.uri("s1"), full], timeout=300)
        c.check("full-copy-of-s1", r.returncode == 0, r.stderr)
        h = al.connect(m.uri("vol0"))
        h.pwrite(al.pattern("over", 2 * BS), 2 * BS)
        h.pwrite(al.pattern("part", 4096), 9 * BS + 8192)
        h.pwrite(al.pattern("new", BS), 40 * BS)
        h.trim(2 * BS, 20 * BS)
        h.flush()
        h.shutdown()
        want = {2, 3, 9, 40, 20, 21}
        c.check("snapshot-s2", "created s2" in m.sh("thin snapshot vol0 s2"))
        m.sh("export add s2 --read-only")
        r = al.run(["nbdinfo", "--map=qemu:dirty-bitmap:s1", m.uri("s2")], timeout=60)
        got = set()
        for line in r.stdout.splitlines():
            off, ln, flags = (int(x) for x in line.split()[:3])
            if flags & 1:
                got.update(range(off // BS, (off + ln) // BS))
        c.check("nbdinfo-map-dirty-bitmap", r.returncode == 0 and got == want,
                "%s %s" % (sorted(got), r.stderr))
        out = m.sh("thin diff s1 s2 --summary")
        c.check("thin-diff-summary", "total: 384 KiB changed from s1 to s2 in 4 ranges" in out, out)
        r = al.run(["/usr/bin/python3", INCR, m.uri("s2"), "s1", full], timeout=300)
        c.check("incremental-copy", r.returncode == 0 and "copied %d bytes" % (6 * BS) in r.stdout,
                r.stdout + r.stderr)
        s2 = os.path.join(tmp, "s2.img")
        r = al.run(["nbdcopy", m.uri("s2"), s2], timeout=300)
        c.check("backup-equals-s2", r.returncode == 0 and al.run(["cmp", full, s2]).returncode == 0)
        m.send("poweroff\r")
        c.check("poweroff", m.wait_exit(60) == qh.RC_POWEROFF)
except (qh.BootFailure, al.Failure) as e:
    c.check("no-boot-failure", False, str(e))
c.finish()
