#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The firmware boots a pool of 10,001 volumes (issue 14, "Boot"): OVMF's hand-off to the
first NBD answer, and the work the reopen does per volume.

The volumes are made by the host build on the same two disk files (1 GiB and 2 GiB, sparse:
first boot gives each PV a 16 MiB metadata area), as tests/appliance/many.t does: `thin
create v 1M --count 5000` and `thin snapshot v0 s --count 5000`, v7 exported and written
over NBD; then the host build stops. Making them in the firmware under TCG takes minutes
(tests/qemu/appliance_many.t does it for fewer). Then QEMU boots the firmware on those files
(TCG, -m 256) and the test checks:
  - boot-under-bound: OVMF's hand-off (the firmware's banner, its first serial line) to the
    first NBD answer (tests/lib/linuxvm.py's first_answer(): a new probe connection every
    20 ms, as tests/bench/linux-vm.bench measures it) under BOOT_MANY_BOUND_S, 3 s by
    default: the goal is 0.5 s on a quiet machine (0.31 s was seen at load 3.8), but a
    shared one stretches it (1.85 s at load 4.5 beside a Linux guest test), so the bound
    only catches a gross regression; the figure, the firmware's boot breakdown and the load
    average are printed;
  - allocations-per-volume: the heap allocations since boot (`perf`: counted by the
    firmware's malloc wrappers, the same on any load) are at most 20 per volume: 4 now,
    122 when the metadata parser allocated every node, key and token;
  - all volumes found (the boot log's count and `thin list`), v7's data read back over NBD,
    the poweroff.
"""
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import appliance_lib as ap  # noqa: E402
import linuxvm  # noqa: E402
import terabyte_lib as tl  # noqa: E402

qh, al = ap.qh, ap.al
c = qh.Checks("qemu/boot_many")
qh.require_image(c)
HALF = 5000
TOTAL = 2 * HALF + 1
BOUND_S = float(os.environ.get("BOOT_MANY_BOUND_S", "3"))
ALLOCS_PER_VOLUME = 20
DISKS = (("meta", 1 << 30), ("data", 2 << 30))


def load():
    return "load %s" % open("/proc/loadavg").read().split()[0]


def count_line(out):
    t = re.search(r"^(\d+) shown of (\d+) matching \((\d+) volume\(s\) in all\)$", out, re.M)
    return tuple(int(x) for x in t.groups()) if t else None


tmp = tl.scratch(need=1 << 30)
meta, data = al.blank_disks(tmp, DISKS[0][1], DISKS[1][1])
data7 = al.pattern("boot_many v7", 1 << 20)
try:
    t0 = time.monotonic()
    h = al.Host(meta, data).start()
    out = al.cmd(h, "thin create v 1M --count %d" % HALF)
    c.check("host-create", "created %d volume(s)" % HALF in out, out)
    out = al.cmd(h, "thin snapshot v0 s --count %d" % HALF)
    c.check("host-snapshot", "created %d volume(s)" % HALF in out, out)
    al.cmd(h, "export add v7")
    al.write(h, "v7", [(0, data7)])
    c.check("host-stop", h.stop() == 0)
    c.note("%d volumes made by the host build in %.1f s (%s)"
           % (TOTAL, time.monotonic() - t0, load()))

    m = ap.DiskMachine("qemu-boot-many", tmp, disks=DISKS)
    with m:
        m.expect(qh.BANNER, 60)
        handoff = time.monotonic()
        answer = linuxvm.first_answer(m.port, 60)
        m.expect("thinbox: ready", 60)
        m.expect(qh.PROMPT, 30)
        took = answer - handoff if answer else None
        c.note("OVMF hand-off to first NBD answer at %d volumes: %s (%s)"
               % (TOTAL, "%.3f s" % took if answer else "none in 60 s", load()))
        log = m.output.replace("\r", "")
        for ln in log.splitlines():
            if ln.startswith("thinbox: boot:"):
                c.note(ln[len("thinbox: "):])
        c.check("boot-under-bound", took is not None and took < BOUND_S,
                "%s s, bound %.1f s" % (took, BOUND_S))
        c.check("boot-found-all", "%d volume(s), 2 export(s)" % TOTAL in log, log[-800:])
        out = m.sh("perf")
        allocs = re.search(r"^heap (\d+) allocations", out, re.M)
        n = int(allocs.group(1)) if allocs else None
        c.note("heap allocations since boot: %s (%.1f per volume)"
               % (n, n / TOTAL if n else 0))
        c.check("allocations-per-volume", n is not None and n <= ALLOCS_PER_VOLUME * TOTAL,
                out[-600:])
        out = m.sh("thin list --limit 1")
        c.check("thin-list-count", count_line(out) == (1, TOTAL, TOTAL), out)
        hh = al.connect(m.uri("v7"))
        got = ap.pread(hh, len(data7), 0)
        hh.shutdown()
        c.check("v7-data", got == data7)
        m.send("poweroff\r")
        c.check("poweroff", m.wait_exit(120) == qh.RC_POWEROFF)
except (qh.BootFailure, al.Failure) as e:
    c.check("no-failure", False, str(e))
c.finish()
