#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A VG made by our code activates in Linux with every name and identical data (issue 12).

1. `thinbox-lvm vg` makes VG "thinbox" on two files the way the appliance will: both PVs
   labelled (core/lvm), the pool formatted by our pool code inside the extents of
   pool0_tmeta (metadata file) and pool0_tdata (data file), thin volumes vol0, vol1 and the
   snapshot snap1 written through the pool (patterns, some blocks unmapped), then the VG
   metadata. It prints md5 of each volume as our pool reads it. On the host, before Linux:
   thin_check of the tmeta extents is clean, and each volume rebuilt from thin_dump's
   mappings and the data file (no thinbox code) has the tool's digest.
2. One guest boot: vgscan, vgchange -ay thinbox, lvchange -ay -K for the snapshot; lvs
   shows every name, size, origin, tag, thin id, the pool's transaction id and chunk size;
   md5sum of every /dev/thinbox/NAME. Negative control: one byte of snap1 overwritten reads
   as a different digest (the one the host expects for that change), restored reads equal
   again. vgchange -an. Then lvm changes the VG: lvcreate -V 8M -T thinbox/pool0 -n
   fromlinux, a pattern written into it, lvrename vol1 -> renamed, vgchange -an.
3. Back on the host: thin_check of the tmeta extents is clean; `thinbox-lvm show` reads the
   metadata lvm wrote (both PVs the same copy) and finds fromlinux with its thin id and
   renamed; `thinbox-lvm pool` opens the pool on the slices the VG names: transaction id and
   chunk size agree with the superblock, thin_pool_check is clean, fromlinux reads the
   pattern's digest, the other volumes read as before."""
import hashlib
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "appliance"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import applib as al  # noqa: E402
import guest  # noqa: E402

TOOL = os.path.join(al.TOP, "build", "host", "thinbox-lvm")
SECTOR = 512
VOLS = ("vol0:16", "vol1:8", "snap1@vol1")
FROM_LINUX_TEXT = "thinbox-fromlinux"  # `yes thinbox-fromlinux` in the guest
FROM_LINUX_BYTES = 8 << 20
FLIP = 100  # the byte of snap1 the negative control overwrites

c = al.Checks("guest/lvm_activate")
c.need_tools("qemu-system-x86_64", "thin_check", "thin_dump")
tmp = al.scratch()


def md5(b):
    return hashlib.md5(b).hexdigest()


def tool(*args):
    r = al.run([TOOL] + list(args), cwd=tmp)
    return r.returncode, r.stdout, r.stderr


def parse_md5(out):
    """'md5 NAME HEX device_id D sectors S [origin O]' lines -> {NAME: {...}}."""
    vols = {}
    for line in out.splitlines():
        w = line.split()
        if len(w) >= 7 and w[0] == "md5":
            vols[w[1]] = {"md5": w[2], "id": int(w[4]), "sectors": int(w[6]),
                          "origin": w[8] if len(w) >= 9 else ""}
    return vols


def tmeta_copy(meta, sector, sectors, name):
    """The pool0_tmeta extents as a file of their own, for thin_check and thin_dump."""
    path = os.path.join(tmp, name)
    with open(meta, "rb") as f:
        f.seek(sector * SECTOR)
        data = f.read(sectors * SECTOR)
    with open(path, "wb") as f:
        f.write(data)
    return path


def rebuild(dump, dev_id, sectors, data, tdata_sector):
    """A volume's bytes from thin_dump's mappings and the data file, without our code."""
    bs = dump["data_block_size"] * SECTOR
    out = bytearray(sectors * SECTOR)
    with open(data, "rb") as f:
        for vb, db in dump["devices"][dev_id]["map"].items():
            f.seek(tdata_sector * SECTOR + db * bs)
            out[vb * bs:(vb + 1) * bs] = f.read(bs)
    return bytes(out)


def layout(out):
    """'lv NAME pv P pe E extents N sector S' lines of `thinbox-lvm pool` -> {NAME: (S, sectors)}."""
    lvs = {}
    for line in out.splitlines():
        w = line.split()
        if len(w) == 10 and w[0] == "lv":
            lvs[w[1]] = (int(w[9]), int(w[7]) * 8192)
    return lvs


GUEST = r"""
meta=$(disk meta); data=$(disk data)
run() { "$@" >/tmp/out 2>&1; rc=$?; sed 's/^/    /' /tmp/out; echo "rc $rc $*"; }
digest() { echo "md5 $1 $(md5sum </dev/thinbox/$1 | cut -d' ' -f1)"; }
echo "disks $meta $data"
# lvm runs thin_check on a pool's metadata before it activates the pool, from its built-in
# path /usr/sbin/thin_check (a link to pdata_tools in the guest). This wrapper takes the
# link's place (removed first: writing through it would overwrite pdata_tools), runs the real
# one and records each run, so the test sees that lvm checked the pool.
rm -f /usr/sbin/thin_check
printf '#!/bin/sh\n/sbin/thin_check "$@"; rc=$?\necho "thin_check-ran rc $rc $*" >>/tmp/tc.log\nexit $rc\n' \
	>/usr/sbin/thin_check
chmod 755 /usr/sbin/thin_check
run vgscan
run vgchange -ay thinbox
run lvchange -ay -K thinbox/%(snap)s
lvs -a --noheadings --units s --nosuffix --separator '|' \
	-o lv_name,lv_attr,lv_size,pool_lv,origin,lv_tags,thin_id,transaction_id,chunk_size,devices \
	thinbox | sed 's/^ */lvs|/'
for v in %(names)s; do digest $v; done
# Negative control: one byte of the snapshot changed, then restored.
printf 'X' | dd of=/dev/thinbox/%(snap)s bs=1 seek=%(flip)d conv=notrunc,fsync 2>/dev/null
echo "md5 flipped $(md5sum </dev/thinbox/%(snap)s | cut -d' ' -f1)"
printf '\%(orig)03o' | dd of=/dev/thinbox/%(snap)s bs=1 seek=%(flip)d conv=notrunc,fsync 2>/dev/null
echo "md5 restored $(md5sum </dev/thinbox/%(snap)s | cut -d' ' -f1)"
run vgchange -an thinbox
echo "active after -an: $(ls /dev/mapper | grep -c thinbox)"

# lvm changes the VG.
run lvcreate -V 8M -T thinbox/pool0 -n fromlinux
yes %(text)s | head -c %(bytes)d | dd of=/dev/thinbox/fromlinux bs=65536 conv=fsync 2>/dev/null
echo "md5 fromlinux-written $(md5sum </dev/thinbox/fromlinux | cut -d' ' -f1)"
run lvm lvrename thinbox vol1 renamed
lvs -a --noheadings --separator '|' -o lv_name,origin,thin_id thinbox | sed 's/^ */lvs2|/'
run vgchange -an thinbox
echo "active at the end: $(ls /dev/mapper | grep -c thinbox)"
cat /tmp/tc.log
echo done
"""

try:
    # ---- 1. Our code makes the VG --------------------------------------------------------
    meta, data = os.path.join(tmp, "meta.img"), os.path.join(tmp, "data.img")
    rc, out, err = tool("vg", meta, data, *VOLS)
    c.check("tool-makes-the-vg", rc == 0, out + err)
    made = parse_md5(out)
    names = [v.split(":")[0].split("@")[0] for v in VOLS]
    c.check("tool-prints-every-digest", sorted(made) == sorted(names), out)
    c.check("digests-distinct-and-not-zero",
            len({v["md5"] for v in made.values()}) == len(made) and
            all(v["md5"] != md5(bytes(v["sectors"] * SECTOR)) for v in made.values()), out)
    txid = int(out.split("transaction_id ")[1].split()[0])

    rc, pout, err = tool("pool", meta, data)
    c.check("tool-reads-its-own-vg", rc == 0 and "check pool0 clean" in pout and
            parse_md5(pout) == made, pout + err)
    lay = layout(pout)
    tm_sector, tm_sectors = lay["pool0_tmeta"]
    td_sector = lay["pool0_tdata"][0]
    tmeta = tmeta_copy(meta, tm_sector, tm_sectors, "tmeta-before")
    rc, text = al.thin_check_image(tmeta)
    c.check("thin-check-of-tmeta-extents", rc == 0, text)
    dump = al.thin_dump_image(tmeta)
    c.check("superblock-transaction-id-is-the-vgs", dump["transaction"] == txid,
            "%s vs %s" % (dump["transaction"], txid))
    content = {n: rebuild(dump, made[n]["id"], made[n]["sectors"], data, td_sector)
               for n in names}
    c.check("volumes-rebuilt-from-thin-dump-have-the-tools-digests",
            all(md5(content[n]) == made[n]["md5"] for n in names),
            {n: (md5(content[n]), made[n]["md5"]) for n in names})
    c.check("some-blocks-unmapped", all(
        len(dump["devices"][made[n]["id"]]["map"]) * dump["data_block_size"] < made[n]["sectors"]
        for n in names))

    snap = "snap1"
    orig = content[snap][FLIP]
    if orig == ord("X"):
        raise al.Failure("pick another FLIP offset: the byte is already 'X'")
    flipped = bytearray(content[snap])
    flipped[FLIP] = ord("X")

    # ---- 2. Linux ------------------------------------------------------------------------
    script = GUEST % dict(names=" ".join(names), snap=snap, flip=FLIP, orig=orig,
                          text=FROM_LINUX_TEXT, bytes=FROM_LINUX_BYTES)
    r = guest.run(script, name="guest_lvm_activate", timeout=240,
                  disks=[("meta", meta), ("data", data)])
    c.note("guest boot, lvm work and poweroff: %.1f s" % r.seconds)
    ok = r.rc == 0 and "\ndone" in r.output
    c.check("guest-script-runs", ok, r.output[-3000:])
    rcs = {" ".join(w[1:]): w[0] for w in r.lines("rc ")}
    for cmd in ("vgscan", "vgchange -ay thinbox", "lvchange -ay -K thinbox/" + snap,
                "vgchange -an thinbox", "lvcreate -V 8M -T thinbox/pool0 -n fromlinux",
                "lvm lvrename thinbox vol1 renamed"):
        c.check("lvm-" + cmd.replace(" ", "_").replace("/", "_"), rcs.get(cmd) == "0",
                "%s: rc %s\n%s" % (cmd, rcs.get(cmd), r.output[-3000:]))
    tc = r.lines("thin_check-ran ")
    c.check("lvm-ran-thin-check-on-pool0-tmeta-clean",
            len(tc) >= 2 and all(w[:2] == ["rc", "0"] and "thinbox-pool0_tmeta" in w[-1]
                                 for w in tc), tc)
    c.check("lvm-warned-of-nothing", "WARNING" not in r.output, r.output[-3000:])
    lvs = {}
    for ln in r.output.splitlines():
        if ln.startswith("lvs|"):
            w = ln.split("|")[1:]
            lvs[w[0].strip("[]")] = w
    c.note("lvs: " + "; ".join("|".join(w) for w in lvs.values()))
    for n in names:
        w = lvs.get(n, [""] * 10)
        want_origin = made[n]["origin"]
        c.check("lvs-%s" % n, w[1][:1] == "V" and w[1][4:5] == "a" and
                int(w[2] or 0) == made[n]["sectors"] and w[3] == "pool0" and
                w[4] == want_origin and w[5] == "thinbox_export=" + n and
                w[6] == str(made[n]["id"]), w)
    w = lvs.get("pool0", [""] * 10)
    c.check("lvs-pool0", w[1][:1] == "t" and int(w[2] or 0) == lay["pool0_tdata"][1] and
            w[7] == str(txid) and w[8] == str(dump["data_block_size"]), w)
    c.check("lvs-hidden-tmeta-tdata",
            lvs.get("pool0_tmeta", [""] * 10)[1][:1] == "e" and
            lvs.get("pool0_tdata", [""] * 10)[1][:1] == "T" and
            int(lvs.get("pool0_tmeta", [""] * 10)[2] or 0) == tm_sectors,
            [lvs.get("pool0_tmeta"), lvs.get("pool0_tdata")])
    got = {w[0]: w[1] for w in r.lines("md5 ") if len(w) == 2}
    for n in names:
        c.check("linux-reads-%s-with-the-tools-digest" % n, got.get(n) == made[n]["md5"],
                "linux %s, tool %s" % (got.get(n), made[n]["md5"]))
    c.check("negative-control-one-byte-changes-the-digest",
            got.get("flipped") not in (None, made[snap]["md5"]) and
            got.get("flipped") == md5(flipped),
            "linux %s, tool %s, expected with the byte %s"
            % (got.get("flipped"), made[snap]["md5"], md5(flipped)))
    c.check("negative-control-restored", got.get("restored") == made[snap]["md5"],
            got.get("restored"))
    c.check("vgchange-an-deactivates", "active after -an: 0" in r.output and
            "active at the end: 0" in r.output, r.output[-1500:])
    pat = (FROM_LINUX_TEXT + "\n").encode()
    pat = (pat * (FROM_LINUX_BYTES // len(pat) + 1))[:FROM_LINUX_BYTES]
    c.check("linux-wrote-the-pattern", got.get("fromlinux-written") == md5(pat),
            "%s vs %s" % (got.get("fromlinux-written"), md5(pat)))

    # ---- 3. Back on the host -------------------------------------------------------------
    tmeta = tmeta_copy(meta, tm_sector, tm_sectors, "tmeta-after")
    rc, text = al.thin_check_image(tmeta)
    c.check("thin-check-after-linux", rc == 0, text)
    rc, sout, err = tool("show", meta, data)
    c.note("after linux: " + "; ".join(sout.splitlines()))
    c.check("tool-reads-lvms-metadata", rc == 0, sout + err)
    shown = {ln.split()[1]: ln for ln in sout.splitlines() if ln.startswith("lv ")}
    c.check("lvm-metadata-has-fromlinux", "fromlinux" in shown and
            " pool pool0 device_id " in shown["fromlinux"], shown)
    c.check("lvm-metadata-has-renamed", "renamed" in shown and "vol1" not in shown and
            " device_id %d " % made["vol1"]["id"] in shown["renamed"] + " " and
            "origin renamed" in shown.get(snap, ""), shown)
    c.check("both-pvs-hold-the-same-copy",
            subprocess.run([TOOL, "text", meta], capture_output=True).stdout ==
            subprocess.run([TOOL, "text", data], capture_output=True).stdout)
    rc, pout, err = tool("pool", meta, data)
    c.note("pool after linux: " + "; ".join(pout.splitlines()))
    after = parse_md5(pout)
    c.check("pool-after-linux-clean-and-transaction-ids-agree", rc == 0 and
            "check pool0 clean" in pout and "problem" not in pout, pout + err)
    c.check("fromlinux-device-id-in-the-pool", "fromlinux" in after and
            after["fromlinux"]["id"] not in [made[n]["id"] for n in names] and
            after["fromlinux"]["id"] in al.thin_dump_image(tmeta)["devices"], pout)
    c.check("our-pool-reads-fromlinux-as-written",
            after.get("fromlinux", {}).get("md5") == md5(pat), pout)
    c.check("our-pool-reads-the-others-unchanged",
            after.get("renamed", {}).get("md5") == made["vol1"]["md5"] and
            all(after.get(n, {}).get("md5") == made[n]["md5"] for n in names if n != "vol1"),
            pout)
except (al.Failure, guest.GuestError, KeyError, ValueError, IndexError) as e:
    c.check("no-failure", False, "%s: %s" % (type(e).__name__, e))
c.finish()
