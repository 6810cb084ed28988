#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Fill the pool (host build): an overcommitted pool runs out of data space.

32 MiB of data disk (pool_tdata: its 7 whole extents of 4 MiB after the 1 MiB LVM header,
28 MiB = 448 blocks of 64 KiB), vol0 written with 8 MiB that must survive, then
volume "big" (64 MiB) written until the pool is full: the write queues for the no-space
timeout (`pool set no-space-timeout 2`), then the writer gets ENOSPC, reads keep working
(vol0's data and big's written part), pool status says out_of_data_space; deleting
"big" frees its space, the pool is writable again, a new volume takes the space; nothing
else was lost and thin_check passes."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import applib as al  # noqa: E402

c = al.Checks("appliance/fill")
c.need_tools("nbdcopy", "thin_check")
tmp = al.scratch()
meta, data = al.blank_disks(tmp, 16 << 20, 32 << 20)
MiB = 1 << 20

try:
    h = al.Host(meta, data).start()
    hh = al.connect(h.uri("vol0"))
    keep = al.pattern("keep", 8 * MiB)
    hh.pwrite(keep, 0)
    hh.flush()
    hh.shutdown()
    # dm's default queues writes for 60 s when full: make the writer's wait short.
    out = h.command("pool set no-space-timeout 2")
    c.check("no-space-timeout-set", "queue writes for 2 s" in out, out)
    out = h.command("thin create big 64M")
    c.check("overcommit-allowed", "created big" in out, out)
    h.command("export add big")
    hh = al.connect(h.uri("big"))
    written, err = 0, None
    try:
        for i in range(64):
            hh.pwrite(al.pattern("big%d" % i, MiB), i * MiB)
            written += 1
        hh.flush()
    except al.nbd.Error as e:
        err = e
    c.check("writer-gets-enospc", err is not None and 28 in err.args,
            "written %d MiB, error %r" % (written, err))
    c.note("%d MiB written before the pool was full" % written)
    # 28 MiB of pool data less vol0's 8 MiB.
    c.check("filled-about-the-free-space", 16 <= written <= 20, "%d MiB" % written)
    # Reads keep working on both volumes.
    ok = all(hh.pread(MiB, i * MiB) == al.pattern("big%d" % i, MiB) for i in range(written))
    c.check("reads-work-when-full", ok)
    hh2 = al.connect(h.uri("vol0"))
    c.check("other-volume-intact-when-full", hh2.pread(8 * MiB, 0) == keep)
    # A write to a block already provisioned still works.
    try:
        hh2.pwrite(keep[:MiB], 0)
        hh2.flush()
        overwrite_ok = True
    except al.nbd.Error:
        overwrite_ok = False
    c.check("overwrite-of-mapped-block-works-when-full", overwrite_ok)
    hh2.shutdown()
    hh.shutdown()
    st = h.command("pool status")
    c.check("status-says-out-of-data-space", "out_of_data_space" in st, st)
    out = h.command("thin snapshot vol0 s1")
    c.check("admin-still-works-when-full", "created s1" in out, out)

    out = h.command("thin delete big")
    c.check("delete-refused-while-exported", "export remove big" in out, out)
    h.command("export remove big")
    out = h.command("thin delete big")
    c.check("delete-frees-space", "deleted big" in out, out)
    st = h.command("pool status")
    c.check("pool-writable-again", "rw (write)" in st, st)
    h.command("thin create again 16M")
    h.command("export add again")
    r = al.run(["nbdcopy", "--", "[", "nbdkit", "-s", "pattern", "size=16M", "]",
                h.uri("again")], timeout=120)
    if r.returncode:  # without nbdkit's pattern plugin, a file
        src = os.path.join(tmp, "p16")
        with open(src, "wb") as f:
            f.write(al.pattern("again", 16 * MiB))
        r = al.run(["nbdcopy", src, h.uri("again")], timeout=120)
    c.check("freed-space-is-usable", r.returncode == 0, r.stderr)
    hh = al.connect(h.uri("vol0"))
    c.check("nothing-else-lost", hh.pread(8 * MiB, 0) == keep)
    hh.shutdown()
    out = h.command("pool check")
    c.check("pool-check-clean", "pool check: clean" in out, out)
    c.check("stops-cleanly", h.stop() == 0)
    rc, text = al.thin_check(meta)
    c.check("thin-check-clean", rc == 0, text)
except al.Failure as e:
    c.check("no-failure", False, str(e))
c.finish()
