#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The README's first session on the host build, with real clients, then a restart:

blank disks -> first boot formats and exports vol0 -> nbdinfo --list -> nbdcopy an image in
-> thin snapshot -> export the snapshot read-only -> overwrite the origin while the snapshot
is being read -> snapshot has the old data, origin the new -> stop -> both disks are the PVs
of LVM2 VG thinbox (pool_tmeta on the metadata disk, pool_tdata on the data disk, the volumes
and exports in the VG) -> thin_check and thin_dump on pool_tmeta agree with what the shell
showed -> start again: everything is still there."""
import os
import re
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import applib as al  # noqa: E402

c = al.Checks("appliance/first_session")
c.need_tools("nbdinfo", "nbdcopy", "qemu-img", "thin_check", "thin_dump")
tmp = al.scratch()
meta, data = al.blank_disks(tmp, 64 << 20, 512 << 20)
EXTENT = 4 << 20
META_EXTENTS, DATA_EXTENTS = ((64 << 20) - (1 << 20)) // EXTENT, ((512 << 20) - (1 << 20)) // EXTENT
img, img2 = os.path.join(tmp, "image.raw"), os.path.join(tmp, "image2.raw")
# 24 MiB: 8 MiB of data, a hole, 4 MiB of data (sparse parts stay unmapped in the pool).
with open(img, "wb") as f:
    f.write(al.pattern("first", 8 << 20))
    f.seek(20 << 20)
    f.write(al.pattern("first-tail", 4 << 20))
with open(img2, "wb") as f:
    f.write(al.pattern("second", 24 << 20))

try:
    h = al.Host(meta, data).start()
    c.check("first-boot-formats", "first boot: blank disks; creating volume group thinbox"
            in h.boot_log, h.boot_log)
    c.check("first-boot-exports-vol0", "exported it as vol0" in h.boot_log, h.boot_log)

    r = al.run(["nbdinfo", "--list", h.uri()], timeout=30)
    c.check("nbdinfo-list-shows-vol0", r.returncode == 0 and 'export="vol0"' in r.stdout,
            r.stdout + r.stderr)
    # vol0 is as big as pool_tdata: the whole 4 MiB extents of the data PV after its 1 MiB
    # header (508 MiB of a 512 MiB disk).
    r = al.run(["nbdinfo", "--size", h.uri()], timeout=30)
    c.check("default-export-is-vol0-data-lv-sized", r.stdout.strip() == str(EXTENT * DATA_EXTENTS),
            r.stdout)

    r = al.run(["nbdcopy", img, h.uri("vol0")], timeout=120)
    c.check("nbdcopy-image-in", r.returncode == 0, r.stderr)
    out = h.command("thin snapshot vol0 snap1")
    c.check("thin-snapshot", "created snap1: snapshot of vol0" in out, out)
    out = h.command("export add snap1 --read-only")
    c.check("export-snapshot-read-only", "exported snap1" in out, out)

    # Overwrite the origin with qemu-img while the snapshot is read again and again.
    reads_ok, reads = [True], [0]
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            hh = al.connect(h.uri("snap1"))
            got = hh.pread(1 << 20, 0) + hh.pread(1 << 20, 21 << 20)
            hh.shutdown()
            want = al.pattern("first", 8 << 20)[:1 << 20] + al.pattern("first-tail", 4 << 20)[1 << 20:2 << 20]
            reads[0] += 1
            if got != want:
                reads_ok[0] = False

    t = threading.Thread(target=reader)
    t.start()
    r = al.run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", img2, h.uri("vol0")],
               timeout=120)
    stop.set()
    t.join(60)
    c.check("overwrite-origin-with-qemu-img", r.returncode == 0, r.stderr)
    c.check("snapshot-reads-during-origin-writes", reads_ok[0] and reads[0] > 0,
            "%d reads" % reads[0])

    snap_copy, vol_copy = os.path.join(tmp, "snap.out"), os.path.join(tmp, "vol.out")
    r1 = al.run(["nbdcopy", h.uri("snap1"), snap_copy], timeout=120)
    r2 = al.run(["nbdcopy", h.uri("vol0"), vol_copy], timeout=120)
    with open(snap_copy, "rb") as f:
        snap_bytes = f.read(24 << 20)
    with open(img, "rb") as f:
        c.check("snapshot-has-old-data", r1.returncode == 0 and snap_bytes == f.read(), r1.stderr)
    with open(vol_copy, "rb") as f:
        c.check("origin-has-new-data", r2.returncode == 0 and f.read(24 << 20) == al.pattern("second", 24 << 20),
                r2.stderr)
    r = al.run(["nbdcopy", img2, h.uri("snap1")], timeout=60)
    c.check("read-only-snapshot-refuses-writes", r.returncode != 0)

    listing = h.command("thin list")
    vols = al.parse_thin_list(listing)
    c.check("thin-list", set(vols) == {"vol0", "snap1"} and vols["snap1"]["origin"] == "vol0", listing)
    status = h.command("pool status")
    txid = al.shell_txid(status)
    info = {n: h.command("thin info " + n) for n in vols}
    out = h.command("export list")
    c.check("export-list", "snap1" in out and "ro" in out and "(default export)" in out, out)
    out = h.command("nbd clients")
    c.check("nbd-clients", "connection(s)" in out, out)

    rc = h.stop()
    c.check("sigterm-stops-cleanly", rc == 0, "status %s" % rc)

    # Both disks are PVs of VG thinbox: each has an LVM label whose PV id is one of the VG's,
    # the pool's metadata LV is on the metadata disk, its data LV is all of the data disk,
    # and the volumes and exports are the VG's thin LVs and tags.
    bad = al.vg_layout_problems(meta, data, META_EXTENTS, DATA_EXTENTS)
    c.check("disks-are-the-pvs-of-vg-thinbox", not bad, "\n".join(bad))
    show = al.vg_show(meta, data)[1]
    c.check("volumes-and-exports-in-the-vg",
            re.search(r"^lv vol0 .* type thin pool pool device_id 0 tags thinbox_export=vol0$",
                      show, re.M) and
            re.search(r"^lv snap1 .* type thin pool pool device_id \d+ origin vol0 "
                      r"tags thinbox_export_ro=snap1$", show, re.M), show)

    # thin_check / thin_dump on pool_tmeta, copied out of the metadata disk.
    rc, text = al.thin_check(meta)
    c.check("thin-check-clean", rc == 0, text)
    d = al.thin_dump(meta)
    c.check("thin-dump-transaction-matches-shell", d["transaction"] == txid,
            "%s vs %s" % (d["transaction"], txid))
    ids = {v["id"] for v in vols.values()}
    c.check("thin-dump-devices-match-thin-list", set(d["devices"]) == ids,
            "%s vs %s" % (sorted(d["devices"]), sorted(ids)))
    bs = d["data_block_size"] * 512
    ok = True
    for name, v in vols.items():
        m = re.search(r"mapped\s+\S+ \S+ \((\d+) bytes\)", info[name])
        dev = d["devices"].get(v["id"])
        if not m or not dev or int(m.group(1)) != dev["mapped"] * bs:
            ok = False
            c.note("%s: shell %s, thin_dump %s blocks" % (name, m and m.group(1), dev and dev["mapped"]))
    c.check("thin-dump-mapped-matches-thin-info", ok)
    # The snapshot and the origin share nothing in the overwritten range, all of snap1's
    # blocks are the image's (8 + 4 MiB of 64 KiB blocks).
    c.check("snapshot-maps-the-image-blocks", d["devices"][vols["snap1"]["id"]]["mapped"] == (12 << 20) // bs)

    # Start again: nothing is formatted, everything is there.
    h = al.Host(meta, data).start()
    c.check("second-boot-is-not-first-boot", "first boot" not in h.boot_log, h.boot_log)
    c.check("same-volumes-after-restart", al.parse_thin_list(h.command("thin list")).keys() == vols.keys())
    c.check("same-transaction-after-restart", al.shell_txid(h.command("pool status")) == txid)
    r1 = al.run(["nbdcopy", h.uri("snap1"), snap_copy], timeout=120)
    with open(snap_copy, "rb") as f, open(img, "rb") as g:
        c.check("snapshot-data-after-restart", r1.returncode == 0 and f.read(24 << 20) == g.read())
    hh = al.connect(h.uri("vol0"))
    c.check("origin-data-after-restart", hh.pread(1 << 20, 0) == al.pattern("second", 1 << 20))
    hh.shutdown()
    out = h.command("pool check")
    c.check("pool-check-clean", "pool check: clean" in out, out)
    c.check("stops-cleanly-again", h.stop() == 0)
except al.Failure as e:
    c.check("no-failure", False, str(e))
c.finish()
