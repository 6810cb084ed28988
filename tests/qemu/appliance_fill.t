#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Fill the pool in QEMU: 32 MiB of data disk, an overcommitted volume written until the pool
is full. The writer's write queues for the no-space timeout (set to 2 s), then gets ENOSPC;
reads keep working, deleting the volume frees its space, vol0's data is intact, and
thin_check passes after poweroff. One boot."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import appliance_lib as ap  # noqa: E402

qh, al = ap.qh, ap.al
c = qh.Checks("qemu/appliance_fill")
qh.require_image(c)
tmp = al.scratch()
MiB = 1 << 20
try:
    m = ap.DiskMachine("qemu-appliance-fill", tmp, disks=(("meta", 16 << 20), ("data", 32 << 20)))
    with m:
        m.boot_appliance()
        h = al.connect(m.uri("vol0"))
        keep = al.pattern("keep", 4 * MiB)
        ap.pwrite(h, keep, 0)
        h.flush()
        h.shutdown()
        m.sh("pool set no-space-timeout 2")  # dm's default would queue the writer 60 s
        m.sh("thin create big 64M")
        m.sh("export add big")
        h = al.connect(m.uri("big"))
        written, err = 0, None
        try:
            for i in range(64):
                h.pwrite(al.pattern("big%d" % i, MiB), i * MiB)
                written += 1
            h.flush()
        except al.nbd.Error as e:
            err = e
        c.check("writer-gets-enospc", err is not None and 28 in err.args, "%d MiB, %r" % (written, err))
        c.check("reads-work-when-full", all(h.pread(MiB, i * MiB) == al.pattern("big%d" % i, MiB)
                                            for i in range(written)))
        h.shutdown()
        st = m.sh("pool status")
        c.check("status-out-of-data-space", "out_of_data_space" in st, st)
        m.sh("export remove big")
        out = m.sh("thin delete big")
        c.check("delete-frees-space", "deleted big" in out, out)
        c.check("writable-again", "rw (write)" in m.sh("pool status"))
        h = al.connect(m.uri("vol0"))
        ap.pwrite(h, al.pattern("after", 8 * MiB), 8 * MiB)
        h.flush()
        c.check("nothing-lost", ap.pread(h, 4 * MiB, 0) == keep)
        h.shutdown()
        m.send("poweroff\r")
        c.check("poweroff", m.wait_exit(60) == qh.RC_POWEROFF)
    rc, text = al.thin_check(m.disk("meta"))
    c.check("thin-check-clean", rc == 0, text)
except (qh.BootFailure, al.Failure) as e:
    c.check("no-boot-failure", False, str(e))
c.finish()
