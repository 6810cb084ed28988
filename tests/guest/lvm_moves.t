#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Linux's lvm moves the pool's LVs and renames the VG; the appliance follows, and refuses
what it cannot serve without changing a byte (docs/linux-lvm.md).

0. The appliance on a 9 MiB metadata disk (pool_tmeta on extent 0, lvol0_pmspare on 1) and a
   17 MiB data disk (pool_tdata: 4 extents, 256 blocks) fills vol0 over NBD (the pool is
   full), snapshots it (vol0-snap, exported) and stops. The metadata disk file then grows
   by 8 MiB (two extents for lvm).
1. Linux (boot A): `vgchange -ay` reads both digests; `pvresize` of the metadata disk;
   `lvextend -l +1 thinbox/pool METADISK` gives pool_tdata a second segment on the metadata
   disk; `vgchange -ay` and a new thin LV `grown` gets 2 MiB that can only land in the new
   extent (the old ones are full); `lvconvert --repair thinbox/pool` (thin_repair into the
   spare: the spare's extent becomes pool_tmeta, the old tmeta the visible pool_meta0, a new
   spare lvol1_pmspare); `vgchange -ay`: the three digests; `vgrename thinbox other`.
   (Repair first and extend after does not work in Linux when the pool was full: thin_repair
   0.9 counts a partial last bitmap's free entries in range only, 0, and dm-thin then skips
   the grown part of that bitmap: the writes fail with no space.)
2. The appliance: READY on VG `other` (`pool status` says so, with the bigger pool),
   `thinbox-lvm show` has pool_tmeta on another extent than before, vol0, vol0-snap and
   grown read their digests over NBD (grown's blocks are past the old end of the data:
   thin_dump), `pool check` clean; `thin create` + a write work; thin_check clean.
3. Linux (boot B): `vgchange -ay other` activates the appliance's result (digests, lvm's
   thin_check clean), `vgrename other thinbox`, then a third disk joins the VG (`pvcreate`,
   `vgextend`).
4. The appliance: NO_POOL, saying the VG has 3 PVs and that nothing was changed; `thin list`
   and `pool status` say why; both disk files are byte-identical before and after.
5. Linux (boot C): `vgreduce` drops the third PV; the appliance is READY again on thinbox
   with every digest, and stops clean."""
import hashlib
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "appliance"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import applib as al  # noqa: E402
import guest  # noqa: E402
import lvmguest as lg  # noqa: E402
from lvmguest import md5  # noqa: E402

MiB = 1 << 20
META_SIZE, DATA_SIZE = 9 * MiB, 17 * MiB  # 2 extents (tmeta, spare) / 4 extents of data
META_GROW = 8 * MiB
THIRD_SIZE = 8 * MiB
BLOCK = 64 * 1024
OLD_BLOCKS = 256  # the data disk's 4 extents
GROWN_WRITE = 2 * MiB

c = al.Checks("guest/lvm_moves")
c.need_tools("qemu-system-x86_64", "thin_check", "thin_dump")
tmp = al.scratch()


def file_md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def ready(h, what):
    log = h.boot_log
    st = h.command("pool status")
    c.check("appliance-ready-" + what,
            not re.search(r"error|stale|refus|problem|warn", log, re.I) and
            re.search(r"^\s*configuration\s+in step", st, re.M), log + st)
    return st


def rcs(r):
    """{command line: [status, ...]} of the guest's `run` lines."""
    res = {}
    for w in r.lines("rc "):
        res.setdefault(" ".join(w[1:]), []).append(w[0])
    return res


def ran_ok(r, what, cmds):
    got = rcs(r)
    for x in cmds:
        st = [s for line, ss in got.items() if line.startswith(x) for s in ss]
        c.check("lvm-%s-%s" % (what, re.sub(r"[^a-z0-9]+", "_", x.lower()).strip("_")),
                st and all(s == "0" for s in st), "%s: rc %s\n%s" % (x, st, r.output[-3000:]))


def thin_checks_clean(r, what):
    tc = r.lines("thin_check-ran ")
    c.check("lvm-%s-ran-thin-check-clean" % what, tc and all(w[:2] == ["rc", "0"] for w in tc),
            r.output[-3000:])


def segments(r, tag, disks):
    """`segs TAG` lines -> {lv: [(disk role, first pe, last pe), ...]} in logical order."""
    dev_role = {dev: role for role, dev in disks.items()}
    res = {}
    for ln in r.output.splitlines():
        if not ln.startswith("segs%s|" % tag):
            continue
        w = [x.strip() for x in ln.split("|")[1:]]
        name, ranges = w[0].strip("[]"), w[1]
        for rg in ranges.split():
            m = re.match(r"(/dev/\w+):(\d+)-(\d+)$", rg)
            if m:
                res.setdefault(name, []).append((dev_role.get(m.group(1), m.group(1)),
                                                 int(m.group(2)), int(m.group(3))))
    return res


def guest_disks(r):
    return {w[0]: w[1] for w in r.lines("disk ") if len(w) == 2}


PRELUDE = lg.PRELUDE + r"""
# A write the pool has no room for fails after 5 s instead of dm-thin's 60.
echo 5 >/sys/module/dm_thin_pool/parameters/no_space_timeout
segs() {  # segs TAG VG: one line per segment of every LV, with its PV extents
	lvs -a --segments --noheadings --separator '|' -o lv_name,seg_pe_ranges $2 |
		sed "s/^ */segs$1|/"
}
vdigest() { echo "md5 $2 $(md5sum </dev/$1/$2 | cut -d' ' -f1)"; }
meta=$(disk meta); data=$(disk data)
echo "disk meta $meta"; echo "disk data $data"
"""

GUEST_A = PRELUDE + r"""
run vgscan
run vgchange -ay thinbox
for v in vol0 vol0-snap; do echo "before $(vdigest thinbox $v)"; done
run vgchange -an thinbox
segs 0 thinbox
run lvm pvresize $meta
run lvm lvextend -y -l +1 thinbox/pool $meta
segs 1 thinbox
run vgchange -ay thinbox
run lvcreate -V 4M -T thinbox/pool -n grown
yes thinbox-grown | head -c %(grown)d | dd of=/dev/thinbox/grown bs=65536 conv=notrunc,fsync 2>/dev/null
run vgchange -an thinbox
run lvm lvconvert -y --repair thinbox/pool
segs 2 thinbox
lvsall 2
run vgchange -ay thinbox
for v in vol0 vol0-snap grown; do echo "after $(vdigest thinbox $v)"; done
run vgchange -an thinbox
run lvm vgrename thinbox other
run vgs
echo "active at the end: $(ls /dev/mapper | grep -c -e thinbox -e other)"
tcdone
echo done
"""

GUEST_B = PRELUDE + r"""
third=$(disk third)
run vgscan
run vgchange -ay other
for v in %(names)s; do vdigest other $v; done
segs 3 other
run vgchange -an other
run lvm vgrename other thinbox
run lvm pvcreate $third
run lvm vgextend thinbox $third
run vgs
echo "active at the end: $(ls /dev/mapper | grep -c -e thinbox -e other)"
tcdone
echo done
"""

GUEST_C = PRELUDE + r"""
third=$(disk third)
run vgscan
run lvm vgreduce thinbox $third
run lvm pvremove $third
run vgs
run pvs
echo done
"""

try:
    # ---- 0. The appliance: a full pool -----------------------------------------------------
    meta, data = al.blank_disks(tmp, META_SIZE, DATA_SIZE)
    third = os.path.join(tmp, "third.img")
    with open(third, "wb") as f:
        f.truncate(THIRD_SIZE)
    h = al.Host(meta, data).start()
    vol0 = al.pattern("vol0", OLD_BLOCKS * BLOCK)
    al.write(h, "vol0", [(off, vol0[off:off + 4 * MiB]) for off in range(0, len(vol0), 4 * MiB)])
    al.cmd(h, "thin snapshot vol0 vol0-snap")
    al.cmd(h, "export add vol0-snap --read-only")
    st = h.command("pool status")
    c.check("appliance-pool-is-full", re.search(r"\(256 of 256 blocks", st), st)
    c.check("appliance-reads-vol0", md5(al.read_export(h, "vol0")) == md5(vol0))
    c.check("appliance-stops", h.stop() == 0)
    rc, vg, lvs, text = lg.vg_show(meta, data)
    c.check("vg-before", rc == 0 and vg.get("name") == "thinbox" and
            "lvol0_pmspare" in lvs and lvs.get("pool_tmeta", {}).get("type") == "linear", text)
    tmeta_before = re.search(r"^lv pool_tmeta .* pv (\w+) pe (\d+)", text, re.M)
    c.note("VG after the appliance: " + "; ".join(text.splitlines()))
    with open(meta, "r+b") as f:
        f.truncate(META_SIZE + META_GROW)

    # ---- 1. Linux: repair, extend onto the metadata disk, rename ---------------------------
    r = guest.run(GUEST_A % dict(grown=GROWN_WRITE), name="guest_lvm_moves_a", timeout=240,
                  disks=[("meta", meta), ("data", data)])
    c.note("guest boot A: %.1f s" % r.seconds)
    c.check("guestA-script-runs", r.rc == 0 and "\ndone" in r.output, r.output[-3000:])
    ran_ok(r, "A", ["vgscan", "vgchange -ay thinbox", "vgchange -an thinbox", "lvm pvresize",
                    "lvm lvextend -y -l +1", "lvm lvconvert -y --repair thinbox/pool",
                    "lvcreate -V 4M -T thinbox/pool -n grown", "lvm vgrename thinbox other"])
    thin_checks_clean(r, "A")
    c.check("guestA-deactivates", "active at the end: 0" in r.output, r.output[-1000:])
    c.note("lvm's warnings in boot A: %s" % lg.warnings(r.output))
    disks = guest_disks(r)
    s0, s1, s2 = (segments(r, t, disks) for t in "012")
    c.note("segments before: %s" % s0)
    c.note("segments after lvextend: %s" % s1)
    c.note("segments after lvconvert --repair: %s" % s2)
    c.check("lvm-extend-put-tdata-on-both-disks",
            len(s1.get("pool_tdata", [])) == 2 and s1["pool_tdata"][0] == s0["pool_tdata"][0] and
            s1["pool_tdata"][1][0] == "meta", s1)
    c.check("lvm-repair-moved-tmeta-to-the-spare",
            s2.get("pool_tmeta") == s0.get("lvol0_pmspare") and
            s2.get("pool_meta0") == s0.get("pool_tmeta") and
            s2.get("pool_tdata") == s1.get("pool_tdata"), (s0, s2))
    want = {"vol0": md5(vol0), "vol0-snap": md5(vol0),
            "grown": md5(lg.yes_bytes("thinbox-grown", GROWN_WRITE) + bytes(4 * MiB - GROWN_WRITE))}
    for w in r.lines("before md5 "):
        c.check("linux-reads-%s-before" % w[0], len(w) == 2 and w[1] == want[w[0]], w)
    after = {w[0]: w[1] for w in r.lines("after md5 ") if len(w) == 2}
    c.check("linux-reads-after-the-moves", after == want, (after, want))

    # ---- 2. The appliance on VG other, moved metadata, two-segment data --------------------
    rc, vg, lvs, text = lg.vg_show(meta, data)
    c.note("VG after Linux: " + "; ".join(text.splitlines()))
    tmeta_after = re.search(r"^lv pool_tmeta .* pv (\w+) pe (\d+)", text, re.M)
    c.check("thinbox-lvm-show-pool-tmeta-moved",
            rc == 0 and vg.get("name") == "other" and tmeta_before and tmeta_after and
            tmeta_after.group(1) == tmeta_before.group(1) and
            tmeta_after.group(2) != tmeta_before.group(2), text)
    h = al.Host(meta, data).start()
    c.note("appliance boot 2: " + " | ".join(h.boot_log.splitlines()))
    st = ready(h, "on-other")
    c.check("pool-status-names-vg-other", re.search(r"^\s*volume group\s+other,", st, re.M), st)
    m = re.search(r"^\s*data\s.* of ([\d.]+) MiB", st, re.M)
    c.check("pool-status-has-the-bigger-pool", m and float(m.group(1)) == 20.0, st)
    al.cmd(h, "export add grown")
    for n in ("vol0", "vol0-snap", "grown"):
        c.check("appliance-reads-%s-after-linux" % n, md5(al.read_export(h, n)) == want[n])
    chk = h.command("pool check")
    c.check("pool-check-clean-after-the-moves", "pool check: clean" in chk, chk)
    al.cmd(h, "thin create appvol 4M")
    al.cmd(h, "export add appvol")
    al.write(h, "appvol", [(0, al.pattern("appvol", MiB))])
    want["appvol"] = md5(al.pattern("appvol", MiB) + bytes(3 * MiB))
    c.check("appliance-writes-on-the-moved-pool", md5(al.read_export(h, "appvol")) == want["appvol"])
    c.check("appliance-stops-on-other", h.stop() == 0)
    rc, out = al.thin_check(meta)
    c.check("thin-check-clean-after-appliance-on-other", rc == 0, out)
    dump = al.thin_dump(meta)
    c.check("pool-grew-by-one-extent", dump["nr_data_blocks"] == OLD_BLOCKS + 64, dump["nr_data_blocks"])
    grown_blocks = [d for dev in dump["devices"].values() for d in dev["map"].values()
                    if d >= OLD_BLOCKS]
    c.check("linux-data-is-in-the-new-extent", len(grown_blocks) >= GROWN_WRITE // BLOCK,
            len(grown_blocks))

    # ---- 3. Linux: VG other activates, renamed back, a third PV ----------------------------
    names = ("vol0", "vol0-snap", "grown", "appvol")
    r = guest.run(GUEST_B % dict(names=" ".join(names)), name="guest_lvm_moves_b", timeout=240,
                  disks=[("meta", meta), ("data", data), ("third", third)])
    c.note("guest boot B: %.1f s" % r.seconds)
    c.check("guestB-script-runs", r.rc == 0 and "\ndone" in r.output, r.output[-3000:])
    ran_ok(r, "B", ["vgscan", "vgchange -ay other", "vgchange -an other",
                    "lvm vgrename other thinbox", "lvm pvcreate", "lvm vgextend thinbox"])
    thin_checks_clean(r, "B")
    c.check("guestB-deactivates", "active at the end: 0" in r.output, r.output[-1000:])
    got = {w[0]: w[1] for w in r.lines("md5 ") if len(w) == 2}
    c.check("linux-reads-the-appliances-result-on-other", got == want, (got, want))

    # ---- 4. The appliance refuses three PVs, changing nothing ------------------------------
    before = (file_md5(meta), file_md5(data))
    h = al.Host(meta, data).start()
    c.note("appliance boot 3: " + " | ".join(h.boot_log.splitlines()))
    why = "volume group thinbox has 3 physical volume(s)"
    c.check("appliance-refuses-three-pvs",
            why in h.boot_log and "nothing was changed" in h.boot_log, h.boot_log)
    st = h.command("pool status")
    tl = h.command("thin list")
    c.check("pool-status-says-why", why in st, st)
    c.check("thin-list-says-why", why in tl, tl)
    c.check("appliance-stops-refusing", h.stop() == 0)
    c.check("disks-unchanged-by-the-refusal", (file_md5(meta), file_md5(data)) == before)

    # ---- 5. Linux drops the third PV; the appliance serves again ---------------------------
    r = guest.run(GUEST_C, name="guest_lvm_moves_c", timeout=240,
                  disks=[("meta", meta), ("data", data), ("third", third)])
    c.note("guest boot C: %.1f s" % r.seconds)
    c.check("guestC-script-runs", r.rc == 0 and "\ndone" in r.output, r.output[-3000:])
    ran_ok(r, "C", ["vgscan", "lvm vgreduce thinbox", "lvm pvremove"])
    h = al.Host(meta, data).start()
    c.note("appliance boot 4: " + " | ".join(h.boot_log.splitlines()))
    st = ready(h, "after-vgreduce")
    c.check("pool-status-names-vg-thinbox", re.search(r"^\s*volume group\s+thinbox,", st, re.M),
            st)
    for n in names:
        c.check("appliance-reads-%s-at-the-end" % n, md5(al.read_export(h, n)) == want[n])
    chk = h.command("pool check")
    c.check("pool-check-clean-at-the-end", "pool check: clean" in chk, chk)
    c.check("appliance-stops-at-the-end", h.stop() == 0)
    rc, out = al.thin_check(meta)
    c.check("thin-check-clean-at-the-end", rc == 0, out)
except (al.Failure, guest.GuestError, KeyError, ValueError, IndexError, TypeError) as e:
    c.check("no-failure", False, "%s: %s" % (type(e).__name__, e))
c.finish()
