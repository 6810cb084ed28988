#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Incremental backup with real clients on the host build (docs/backup.md).

vol0 gets data; snapshot s1 is copied whole with nbdcopy (the full backup); vol0 then gets
overwrites (whole and partial blocks), new writes and discards; snapshot s2. Then:
  - nbdinfo lists qemu:dirty-bitmap:s1 (and :vol0, the rest of the line) beside
    base:allocation on s2's read-only export and on vol0's read-write one;
  - nbdinfo --map=qemu:dirty-bitmap:s1, qemu-img map with x-dirty-bitmap and `thin diff s1
    s2` all give exactly the data blocks the workload changed (a discard of a block s1 had
    is a change, one of a block s1 lacked is not);
  - LIST_META_CONTEXT with the queries "qemu:", "qemu:dirty-bitmap:", an exact name and an
    unknown one, and a volume of another line offered nothing; SET with both contexts: one
    BLOCK_STATUS answers both, and REQ_ONE;
  - incr_backup.py (libnbd) copies only the dirty extents of s2 onto the full backup of s1,
    which then equals s2 byte for byte (cmp with nbdcopy's copy of s2);
  - the same map after a restart; after a SIGKILL in the middle of writes, a snapshot s3
    backed up incrementally from s2 equals s3;
  - s1 deleted while a client holds its context: BLOCK_STATUS fails with EINVAL, the
    appliance keeps serving, and s1 is no longer offered; `thin diff` names bad names."""
import os
import re
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import applib as al  # noqa: E402
import nbd  # noqa: E402

BS = 64 << 10
PY = "/usr/bin/python3"
INCR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "incr_backup.py")

c = al.Checks("appliance/backup")
c.need_tools("nbdinfo", "nbdcopy", "qemu-img", "cmp")
tmp = al.scratch()
meta, data = al.blank_disks(tmp, 64 << 20, 256 << 20)


def blocks_of(ranges):
    """{data block} covered by [(offset, length)]."""
    out = set()
    for off, ln in ranges:
        out.update(range(off // BS, (off + ln + BS - 1) // BS))
    return out


def nbdinfo_map(uri, ctx):
    r = al.run(["nbdinfo", "--map=" + ctx, uri], timeout=60)
    if r.returncode:
        raise al.Failure("nbdinfo --map=%s %s: %s" % (ctx, uri, r.stderr))
    dirty = []
    for line in r.stdout.splitlines():
        off, ln, flags = (int(x) for x in line.split()[:3])
        if flags & 1:
            dirty.append((off, ln))
    return dirty


def qemu_img_dirty(h, export, bitmap):
    opts = ("driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=%d,export=%s,"
            "x-dirty-bitmap=qemu:dirty-bitmap:%s" % (h.port, export, bitmap))
    r = al.run(["qemu-img", "map", "--output=json", "--image-opts", opts], timeout=60)
    if r.returncode:
        raise al.Failure("qemu-img map: " + r.stderr)
    import json
    # With x-dirty-bitmap qemu reads the dirty flag as base:allocation's HOLE: dirty = no data.
    return [(e["start"], e["length"]) for e in json.loads(r.stdout) if not e["data"]]


def thin_diff_ranges(out):
    return [(int(m.group(1)), int(m.group(2)))
            for m in re.finditer(r"offset (\d+) length (\d+)", out)]


def copy_full(h, export, path):
    r = al.run(["nbdcopy", h.uri(export), path], timeout=120)
    if r.returncode:
        raise al.Failure("nbdcopy: " + r.stderr)


def incr(h, export, bitmap, backup):
    r = al.run([PY, INCR, h.uri(export), bitmap, backup], timeout=120)
    return r.returncode, r.stdout + r.stderr


def same_file(a, b):
    return al.run(["cmp", a, b]).returncode == 0


def list_contexts(h, export, queries):
    """LIST_META_CONTEXT on EXPORT with QUERIES (libnbd's opt mode): the names offered."""
    hh = nbd.NBD()
    hh.set_opt_mode(True)
    for q in queries:
        hh.add_meta_context(q)
    hh.set_export_name(export)
    hh.connect_uri(h.uri(export))
    got = []
    hh.opt_list_meta_context(lambda name: got.append(name) or 0)
    hh.opt_abort()
    return sorted(got)


try:
    h = al.Host(meta, data).start()
    # Blocks 0..39: data; then s1 and its full backup.
    al.write(h, "vol0", [(0, al.pattern("base", 40 * BS))])
    al.cmd(h, "thin snapshot vol0 s1")
    al.cmd(h, "export add s1 --read-only")
    full1 = os.path.join(tmp, "backup.img")
    copy_full(h, "s1", full1)

    # The change: overwrite 3..5, 512 bytes in 20, new data in 100..101, discard 30..32
    # (s1 had them) and 200..201 (nobody had them).
    hh = al.connect(h.uri("vol0"))
    hh.pwrite(al.pattern("over", 3 * BS), 3 * BS)
    hh.pwrite(al.pattern("part", 512), 20 * BS + 4096)
    hh.pwrite(al.pattern("new", 2 * BS), 100 * BS)
    hh.trim(3 * BS, 30 * BS)
    hh.trim(2 * BS, 200 * BS)
    hh.flush()
    hh.shutdown()
    want = {3, 4, 5, 20, 100, 101, 30, 31, 32}
    al.cmd(h, "thin snapshot vol0 s2")
    al.cmd(h, "export add s2 --read-only")
    al.cmd(h, "thin create other 16M")  # another line: no bitmap of vol0's, nor it of theirs
    al.cmd(h, "export add other")

    info = al.run(["nbdinfo", h.uri("s2")]).stdout
    c.check("nbdinfo-lists-contexts", all(x in info for x in (
        "base:allocation", "qemu:dirty-bitmap:s1", "qemu:dirty-bitmap:vol0")), info)
    got = nbdinfo_map(h.uri("s2"), "qemu:dirty-bitmap:s1")
    c.check("nbdinfo-map-ro-export", blocks_of(got) == want, "%s != %s" % (sorted(blocks_of(got)), sorted(want)))
    got = nbdinfo_map(h.uri("vol0"), "qemu:dirty-bitmap:s1")
    c.check("nbdinfo-map-rw-export", blocks_of(got) == want, sorted(blocks_of(got)))
    got = nbdinfo_map(h.uri("s2"), "qemu:dirty-bitmap:vol0")
    c.check("nbdinfo-map-unchanged-is-clean", got == [], got)
    got = qemu_img_dirty(h, "s2", "s1")
    c.check("qemu-img-map-x-dirty-bitmap", blocks_of(got) == want, sorted(blocks_of(got)))
    out = al.cmd(h, "thin diff s1 s2")
    c.check("thin-diff-ranges", blocks_of(thin_diff_ranges(out)) == want, out)
    c.check("thin-diff-kinds", "left_only  offset %d length %d" % (30 * BS, 3 * BS) in out
            and "right_only offset %d length %d" % (100 * BS, 2 * BS) in out
            and "different  offset %d length %d" % (3 * BS, 3 * BS) in out, out)
    out = al.cmd(h, "thin diff s1 s2 --summary")
    c.check("thin-diff-summary", "offset" not in out and "total: 576 KiB changed" in out, out)
    out = h.command("thin diff s1 nope")
    c.check("thin-diff-bad-name", "error: no volume named 'nope'" in out, out)
    out = h.command("thin diff s1")
    c.check("thin-diff-usage", "usage:" in out, out)

    # LIST / SET details.
    lineage = ["qemu:dirty-bitmap:s1", "qemu:dirty-bitmap:vol0"]
    c.check("list-qemu-dirty-bitmap-prefix", list_contexts(h, "s2", ["qemu:dirty-bitmap:"]) == lineage)
    c.check("list-qemu-namespace", list_contexts(h, "s2", ["qemu:"]) == lineage)
    c.check("list-everything", list_contexts(h, "s2", []) == ["base:allocation"] + lineage)
    c.check("list-exact-name", list_contexts(h, "s2", ["qemu:dirty-bitmap:s1"]) == lineage[:1])
    c.check("list-unknown-name", list_contexts(h, "s2", ["qemu:dirty-bitmap:nope"]) == [])
    c.check("list-other-line", list_contexts(h, "other", ["qemu:"]) == []
            and list_contexts(h, "s2", ["qemu:dirty-bitmap:other"]) == [])
    hh = nbd.NBD()
    hh.add_meta_context("base:allocation")
    hh.add_meta_context("qemu:dirty-bitmap:s1")
    hh.connect_uri(h.uri("s2"))
    c.check("set-both-contexts", hh.can_meta_context("base:allocation")
            and hh.can_meta_context("qemu:dirty-bitmap:s1"))
    seen = {}
    hh.block_status(8 * BS, 0, lambda m, o, e, err: seen.setdefault(m, list(e)) and 0)
    c.check("block-status-both-contexts",
            seen.get("qemu:dirty-bitmap:s1") == [3 * BS, 0, 3 * BS, 1, 2 * BS, 0]
            and seen.get("base:allocation") == [8 * BS, 0], seen)
    seen = {}
    hh.block_status(8 * BS, 3 * BS, lambda m, o, e, err: seen.setdefault(m, list(e)) and 0,
                    nbd.CMD_FLAG_REQ_ONE)
    c.check("block-status-req-one", seen.get("qemu:dirty-bitmap:s1") == [3 * BS, 1], seen)
    holder = hh  # keeps qemu:dirty-bitmap:s1 for the deletion below

    # The backup cycle.
    rc, out = incr(h, "s2", "s1", full1)
    c.check("incremental-copies-only-dirty", rc == 0 and "copied %d bytes in 4 extents" % (9 * BS) in out, out)
    full2 = os.path.join(tmp, "s2.img")
    copy_full(h, "s2", full2)
    c.check("backup-equals-s2", same_file(full1, full2))

    # A restart: the same map.
    c.check("stops", h.stop() == 0)
    h = al.Host(meta, data).start()
    got = nbdinfo_map(h.uri("s2"), "qemu:dirty-bitmap:s1")
    c.check("map-after-restart", blocks_of(got) == want, sorted(blocks_of(got)))

    # A SIGKILL in the middle of writes: whatever survived, s3 backed up from s2 equals s3.
    hh = al.connect(h.uri("vol0"))
    hh.pwrite(al.pattern("flushed", 4 * BS), 50 * BS)
    hh.flush()
    stop = threading.Event()

    written = [0]

    def writer():
        while not stop.is_set():
            try:
                hh.pwrite(al.pattern("w%d" % written[0], BS), (60 + written[0] % 30) * BS)
            except nbd.Error:
                return
            written[0] += 1

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    import time
    time.sleep(0.5)
    h.kill()
    stop.set()
    t.join(10)
    c.check("killed-mid-write", written[0] > 0 and t.is_alive() is False, written[0])
    h = al.Host(meta, data).start()
    al.cmd(h, "thin snapshot vol0 s3")
    al.cmd(h, "export add s3 --read-only")
    got = blocks_of(nbdinfo_map(h.uri("s3"), "qemu:dirty-bitmap:s2"))
    c.check("crash-flushed-writes-dirty", {50, 51, 52, 53} <= got and got <= set(range(50, 90)), sorted(got))
    rc, out = incr(h, "s3", "s2", full1)
    full3 = os.path.join(tmp, "s3.img")
    copy_full(h, "s3", full3)
    c.check("backup-after-crash-equals-s3", rc == 0 and same_file(full1, full3), out)

    # s1 deleted while a client holds its context.
    hh = nbd.NBD()
    hh.add_meta_context("qemu:dirty-bitmap:s1")
    hh.connect_uri(h.uri("s2"))
    al.cmd(h, "export remove s1")
    al.cmd(h, "thin delete s1")
    try:
        hh.block_status(BS, 0, lambda *a: 0)
        c.check("deleted-snapshot-refused", False, "BLOCK_STATUS succeeded")
    except nbd.Error as e:
        c.check("deleted-snapshot-refused", e.errnum == 22, "%s (errno %s)" % (e, e.errnum))
    hh.pread(BS, 0)  # the connection stays usable for data
    c.check("appliance-still-serving", "s2" in h.command("thin list"))
    r = al.run(["nbdinfo", "--map=qemu:dirty-bitmap:s1", h.uri("s2")])
    c.check("deleted-snapshot-not-offered", r.returncode != 0, r.stdout + r.stderr)
    rc, out = incr(h, "s2", "s1", full1)
    c.check("incr-backup-names-the-problem", rc != 0 and "qemu:dirty-bitmap:s1" in out, out)
    c.check("stops-again", h.stop() == 0)
except (al.Failure, nbd.Error) as e:
    c.check("no-failure", False, str(e))
c.finish()
