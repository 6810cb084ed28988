#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""`make soak`'s machinery works (tests/qemu/soak.py), in two short runs.

1. SOAK_SECONDS=40, at most 3 snapshots kept (so deletes happen): exit status 0, and the
   report has what the long run reports: interval rows with load on all four volumes
   (reads, writes, trims, flushes), memory at the start and the end, snapshots taken and
   deleted, fio with no verify error, the final verify of vol2 and of a snapshot of it,
   `pool check` clean, thin_check clean, the memory comparison, PASS.
2. SOAK_SECONDS=10 with both test-only faults: SOAK_CORRUPT=1 (512 bytes of one of vol2's
   data blocks overwritten in the data disk file) and SOAK_BAD_COMMAND=1 (the driver deletes
   a volume that does not exist): exit status 1, and the reasons name the failed verify of
   vol2 and the error reply; so a soak that loses data or meets an error reply fails."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_harness as qh  # noqa: E402

c = qh.Checks("qemu/soak")
qh.require_image(c)
SOAK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "soak.py")


def run(name, **env):
    e = dict(os.environ, SOAK_NAME=name, **env)
    e.pop("SOAK_MINUTES", None)
    r = subprocess.run([SOAK], capture_output=True, text=True, timeout=600, env=e)
    print(r.stdout, end="")
    print(r.stderr, end="", file=sys.stderr)
    return r.returncode, r.stdout


# In 40 s the first quarter's readings are taken while the pool's metadata cache fills (up
# to an eighth of memory: 26.6 MiB with -m 256, docs/firmware.md): the short run allows
# that much growth; the 30-minute soak keeps its 2 MiB (the cache is full long before its
# first quarter ends).
rc, out = run("soak-selftest", SOAK_SECONDS="40", SOAK_KEEP="3", SOAK_MEM_TOLERANCE_MIB="30")
rows = [ln.split() for ln in out.splitlines() if re.match(r"^\s+\d+\s+\d+\.\d\d\s", ln)]
c.check("short-soak-passes", rc == 0 and out.rstrip().endswith("PASS"), "exit status %d" % rc)
c.check("interval-rows", len(rows) >= 5, "%d rows" % len(rows))
# Columns: t, MiB/s read, written, read IOPS, write IOPS, trims/s, flushes/s, snaps, dels, ...
for col, what in ((1, "reads"), (2, "writes"), (5, "trims"), (6, "flushes")):
    c.check("load-has-" + what, any(float(r[col]) > 0 for r in rows))
c.check("memory-at-start-and-end", "memory at the start" in out and "memory at the end" in out)
m = re.search(r"snapshots: (\d+) taken, (\d+) deleted", out)
c.check("snapshots-taken-and-deleted", m and int(m.group(1)) >= 5 and int(m.group(2)) >= 2,
        m and m.group(0))
c.check("fio-no-verify-error", "verify errors: 0" in out)
c.check("final-verify-vol2-and-snapshot",
        "final verify of vol2 (32 MiB, crc32c): clean" in out and
        re.search(r"final verify of s\d+ \(32 MiB, crc32c\): clean", out))
c.check("pool-check-clean", "pool check: clean" in out)
c.check("thin-check-clean", "thin_check on pool_tmeta: clean" in out)
c.check("memory-compared", re.search(r"memory, first vs last quarter .* heap [+-]", out))

rc, out = run("soak-selftest-faults", SOAK_SECONDS="10", SOAK_CORRUPT="1",
              SOAK_BAD_COMMAND="1")
c.check("faulty-soak-fails", rc == 1 and "soak soak-selftest-faults: FAIL" in out,
        "exit status %d" % rc)
c.check("corruption-found-by-verify",
        re.search(r"FAILURE: final verify of vol2: .*verify failed", out), out[-1500:])
c.check("error-reply-found",
        "FAILURE: error reply to `thin delete no-such-volume`" in out, out[-1500:])
c.finish()
