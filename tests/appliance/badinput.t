#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Bad input to the host build's appliance shell, a full metadata device, and disks that are
not blank or hold part of a VG: clear errors, no crash, nothing changed that should not be."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import applib as al  # noqa: E402

c = al.Checks("appliance/badinput")
c.need_tools("thin_check")
tmp = al.scratch()

BAD = [
    ("thin create", "usage: thin"),
    ("thin create x", "usage: thin"),
    ("thin create .x 1M", "bad name"),
    ("thin create a/b 1M", "bad name"),
    ("thin create x 12Q", "bad size"),
    ("thin create x 0", "multiple of 512"),
    ("thin create x 1000", "multiple of 512"),
    ("thin create x 4096T", "1 PiB"),
    ("thin create x 99999999999999999999999999", "bad size"),
    ("thin create " + "n" * 128 + " 1M", "bad name"),
    ("thin create pool_tmeta 1M", "bad name"),
    ("thin create vol0 1M", "exists already"),
    ("thin snapshot nosuch s", "no volume named 'nosuch'"),
    ("thin delete nosuch", "no volume named"),
    ("thin delete vol0", "export remove vol0"),
    ("thin resize vol0 1K1", "bad size"),
    ("thin info", "usage: thin"),
    ("thin frobnicate", "unknown thin command"),
    ("export add nosuch", "no volume named"),
    ("export add vol0", "exists already"),
    ("export add vol0 --name bad/name", "bad export name"),
    ("export remove nosuch", "no export named"),
    ("pool set-transaction-id 0 9", "mismatched transaction id"),
    ("pool set-transaction-id x y", "decimal"),
    ("pool format", "pool format --force"),
    ("pool format --block-size 3K", "bad block size"),
    ("pool frobnicate", "unknown pool command"),
    ("nbd servers", "usage: nbd clients"),
    ("nosuchcommand", "unknown command"),
    ('thin create "unclosed 1M', "unclosed quote"),
    ("x" * 600, "longer than"),
]

try:
    meta, data = al.blank_disks(tmp, 16 << 20, 64 << 20)
    h = al.Host(meta, data).start()
    txid = al.shell_txid(h.command("pool status"))
    for line, want in BAD:
        out = h.command(line)
        c.check("rejects:%s" % line[:40].replace(" ", "_"), want in out and "error" in out or
                want in out and "usage" in out, out)
    # Bytes no keyboard sends: control characters, high bytes, a stray escape.
    h.send(b"\x01\x02\xff\xfe\x1b[Z\x1b\x00\n")
    out = h.expect(al.PROMPT, 30)
    c.check("garbage-bytes-are-refused", "unknown command" in out, out)
    out = h.command("thin list")
    c.check("command-after-garbage", "vol0" in out, out)
    c.check("nothing-changed", al.shell_txid(h.command("pool status")) == txid)
    c.check("still-running", h.alive() and "thinbox" in h.command("version"))
    c.check("stops-cleanly", h.stop() == 0)

    # A metadata disk of the minimum size fills up: snapshots that each own blocks. The
    # minimum is the LVM header (1 MiB) and one 4 MiB extent: pool_tmeta, no spare.
    meta2, data2 = os.path.join(tmp, "m2.img"), os.path.join(tmp, "d2.img")
    for p, s in ((meta2, 5 << 20), (data2, 256 << 20)):
        with open(p, "wb") as f:
            f.truncate(s)
    h = al.Host(meta2, data2).start()
    # vol0 maps 16 MiB at each of the four places the snapshots write: a write to a
    # snapshot then copies the shared mapping leaf it lands in, so each snapshot owns about
    # five metadata blocks for four data blocks and the 4 MiB fill up after a few hundred
    # snapshots (each one more LV in the VG, so fewer is faster), long before the data.
    hh = al.connect(h.uri("vol0"))
    for k in range(4):
        for off in range(0, 16 << 20, 1 << 20):
            hh.pwrite(al.pattern("v%d" % k, 1 << 20), k * (64 << 20) + off)
    hh.flush()
    hh.shutdown()
    last, n = "", 0
    for i in range(2000):
        out = h.command("thin snapshot vol0 s%d" % i)
        if "created" not in out:
            last = out
            break
        h.command("export add s%d --name w" % i)
        try:
            hh = al.connect(h.uri("w"))
            for k in range(4):
                hh.pwrite(al.pattern("m%d.%d" % (i, k), 4096), k * (64 << 20) + i * 4096)
            hh.flush()
            hh.shutdown()
        except al.nbd.Error as e:
            last = str(e)
            h.command("export remove w")
            break
        h.command("export remove w")
        n = i + 1
    c.note("%d snapshots with their own blocks before the metadata was full: %s" % (n, last.strip()))
    # dm-thin's answer to a metadata device that runs out: the failing I/O gets EIO (or
    # ENOSPC), the pool goes read-only and says so.
    c.check("metadata-full-is-reported", n > 5 and ("No space" in last or "no space" in last
                                                     or "Input/output" in last), last)
    st = h.command("pool status")
    c.check("status-after-metadata-full-says-read-only", "ro (read-only" in st or "out_of" in st, st)
    out = h.command("thin snapshot vol0 one-more")
    c.check("admin-after-metadata-full-errors-clearly", "created" in out or
            "error: thin snapshot one-more: the pool is read-only" in out or "no space" in out, out)
    c.check("shell-alive-after-metadata-full", "thinbox" in h.command("version"))
    c.check("stops-after-metadata-full", h.stop() in (0, None) and not h.alive())
    rc, text = al.thin_check(meta2)
    c.check("thin-check-after-metadata-full", rc == 0, text)

    # A metadata disk with something in block 0 (and a blank data disk) is not formatted at
    # boot; pool format erases it with --force.
    meta3, data3 = os.path.join(tmp, "m3.img"), os.path.join(tmp, "d3.img")
    with open(meta3, "wb") as f:
        f.write(b"not a pool" * 100)
        f.truncate(16 << 20)
    with open(data3, "wb") as f:
        f.truncate(64 << 20)
    h = al.Host(meta3, data3).start()
    c.check("non-blank-disk-not-formatted", "first boot" not in h.boot_log
            and "not blank" in h.boot_log and "nothing was changed" in h.boot_log, h.boot_log)
    out = h.command("thin list")
    c.check("thin-list-without-pool-says-why", "no pool" in out, out)
    out = h.command("pool format")
    c.check("format-needs-force", "--force" in out, out)
    with open(meta3, "rb") as f:
        c.check("block0-untouched", f.read(10) == b"not a pool")
    out = h.command("pool format --force")
    c.check("format-force-works", "pool formatted" in out, out)
    c.check("stops-after-format", h.stop() == 0)
    rc, text = al.thin_check(meta3)
    c.check("thin-check-after-format", rc == 0, text)

    # The same metadata disk with the first data disk, a PV of VG thinbox with its volumes:
    # the VG is not served (its metadata PV is gone), and --force alone does not erase it.
    with open(meta3, "wb") as f:
        f.write(b"not a pool" * 100)
        f.truncate(16 << 20)
    with open(data, "rb") as f:
        data_head = f.read(1 << 20)
    h = al.Host(meta3, data).start()
    c.check("half-a-vg-not-formatted", "first boot" not in h.boot_log and
            "not a PV of volume group thinbox" in h.boot_log and
            "nothing was changed" in h.boot_log, h.boot_log)
    out = h.command("pool format --force")
    c.check("half-a-vg-format-needs-its-name", "--confirm" in out and "error" in out, out)
    with open(data, "rb") as f, open(meta3, "rb") as g:
        c.check("half-a-vg-untouched", f.read(1 << 20) == data_head and
                g.read(10) == b"not a pool")
    out = h.command("pool format --force --confirm thinbox")
    c.check("half-a-vg-format-confirmed-works", "pool formatted" in out, out)
    c.check("stops-after-format-confirmed", h.stop() == 0)
    rc, text = al.thin_check(meta3)
    c.check("thin-check-after-format-confirmed", rc == 0, text)
except al.Failure as e:
    c.check("no-failure", False, str(e))
c.finish()
