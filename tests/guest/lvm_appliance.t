#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The appliance's disks are VG thinbox: Linux's lvm uses them, the appliance takes them back
(docs/linux-lvm.md).

1. The host build's appliance on two blank files makes alpha (12 MiB) and beta (8 MiB),
   writes distinct data over NBD, snapshots both (alpha-snap, beta-snap), writes again so
   that origin and snapshot differ, exports alpha, beta, beta-snap and alpha-snap read-only
   (a write there is refused), reads every export (md5) and stops.
2. Linux (one boot): `vgscan`, `vgchange -ay thinbox` activates every volume and snapshot
   (no -K: the appliance's snapshots carry no activation skip), lvm ran thin_check on the
   pool clean, `lvs` has every volume with its size, origin, export tag, creation time and
   host; md5 of /dev/thinbox/NAME is the appliance's digest. Then lvm changes the VG:
   `lvcreate -V` linux1 (a pattern written), `lvcreate -s` linuxsnap of alpha (written),
   `lvrename` beta -> renamed, `lvremove` beta-snap (an exported appliance snapshot),
   `lvresize` alpha 12 -> 16 MiB (written across the old end); md5 of each; `vgchange -an`.
   Every digest is also computed on the host from what was written.
3. The appliance starts on the disks: READY, `thin list` has exactly Linux's names and
   sizes; the exports follow their tags (export beta serves renamed, beta-snap is gone);
   after `export add` linux1 and linuxsnap read Linux's digests; `pool check` clean. The
   appliance then changes the pool (snapshot of linux1, a write, alpha-snap deleted) and
   stops; thin_check of the pool_tmeta extents is clean and `thinbox-lvm pool` agrees.
4. Linux once more: `vgchange -ay` activates the appliance's result, the digests are the
   appliance's, `vgchange -an`; no lvm warning in either boot."""
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
META_SIZE, DATA_SIZE = 32 * MiB, 128 * MiB
GROW = 32 * MiB  # the data disk grows by this before the second boot; lvm extends the pool
GROW_AT = 12 * MiB - MiB // 2  # Linux writes 1 MiB across alpha's old end after lvresize
LSNAP_AT = 2 * MiB  # Linux writes 1 MiB into its snapshot of alpha here

c = al.Checks("guest/lvm_appliance")
c.need_tools("qemu-system-x86_64", "thin_check", "thin_dump")
tmp = al.scratch()


def replaced(b, off, data):
    out = bytearray(b)
    if len(out) < off + len(data):
        out += bytes(off + len(data) - len(out))
    out[off:off + len(data)] = data
    return bytes(out)


def sizes(h, names):
    """{name: bytes} from `thin info NAME`."""
    res = {}
    for n in names:
        m = re.search(r"^size\s.*\((\d+) bytes\)", h.command("thin info " + n), re.M)
        res[n] = int(m.group(1)) if m else None
    return res


def exports(h):
    """`export list` -> {export: (volume, mode)}."""
    res = {}
    for ln in h.command("export list").splitlines():
        w = ln.split()
        if len(w) >= 3 and w[2] in ("rw", "ro"):
            res[w[0]] = (w[1], w[2])
    return res


def ready(h, what):
    """The appliance came up READY: nothing stale or refused at boot, in step."""
    log = h.boot_log
    st = h.command("pool status")
    c.check("appliance-ready-" + what,
            not re.search(r"error|stale|refus|problem|warn", log, re.I) and
            re.search(r"^\s*configuration\s+in step", st, re.M), log + st)


def lvm_ok(r, what, cmds):
    """Each of @cmds (the start of a command line) ran with status 0, lvm warned of nothing
    but over-provisioning, and its thin_check runs were clean."""
    rcs = [(" ".join(w[1:]), w[0]) for w in r.lines("rc ")]
    for x in cmds:
        st = [rc for line, rc in rcs if line.startswith(x)]
        c.check("lvm-%s-%s" % (what, re.sub(r"[^a-z0-9]+", "_", x.lower()).strip("_")),
                st == ["0"], "%s: rc %s\n%s" % (x, st, r.output[-3000:]))
    c.check("lvm-%s-warned-of-nothing" % what, not lg.warnings(r.output), lg.warnings(r.output))
    tc = r.lines("thin_check-ran ")
    c.check("lvm-%s-ran-thin-check-clean" % what,
            tc and all(w[:2] == ["rc", "0"] and w[-1].endswith("_tmeta") for w in tc),
            r.output[-3000:])


GUEST1 = lg.PRELUDE + r"""
run vgscan
run vgchange -ay thinbox
lvsall 1
for v in %(names)s; do digest $v; done
tcdone

run lvcreate -V 8M -T thinbox/%(pool)s -n linux1
yes thinbox-linux1 | head -c 8388608 | dd of=/dev/thinbox/linux1 bs=65536 conv=fsync 2>/dev/null
run lvcreate -s -kn thinbox/alpha -n linuxsnap
yes thinbox-linuxsnap | head -c 1048576 | \
	dd of=/dev/thinbox/linuxsnap bs=65536 seek=%(lsnap_seek)d conv=notrunc,fsync 2>/dev/null
run lvchange --addtag thinbox_export_ro=lsnap thinbox/linuxsnap
run lvrename thinbox beta renamed
run lvremove -y thinbox/beta-snap
run lvresize -L 16M thinbox/alpha
yes thinbox-grown | head -c 1048576 | \
	dd of=/dev/thinbox/alpha bs=65536 seek=%(grow_seek)d conv=notrunc,fsync 2>/dev/null
lvsall 2
for v in linux1 linuxsnap renamed alpha alpha-snap; do echo "after $(digest $v)"; done
run vgchange -an thinbox
echo "active at the end: $(ls /dev/mapper | grep -c thinbox)"
tcdone
echo done
"""

GUEST2 = lg.PRELUDE + r"""
run vgscan
run vgchange -ay thinbox
lvsall 3
for v in %(names)s; do digest $v; done
# The data disk grew by GROW (on the host): the PV, then the pool's data on that disk.
data=$(disk data)
run lvm pvresize $data
run lvextend -L +%(grow)dM thinbox/%(pool)s $data
lvsall 4
run vgchange -an thinbox
echo "active at the end: $(ls /dev/mapper | grep -c thinbox)"
tcdone
echo done
"""

try:
    # ---- 1. The appliance makes the VG ---------------------------------------------------
    meta, data = al.blank_disks(tmp, META_SIZE, DATA_SIZE)
    h = al.Host(meta, data).start()
    for line in ("thin create alpha 12M", "thin create beta 8M", "export add alpha",
                 "export add beta"):
        al.cmd(h, line)
    al.write(h, "alpha", [(0, al.pattern("alpha-a", 3 * MiB)), (8 * MiB, al.pattern("alpha-b", MiB))])
    al.write(h, "beta", [(0, al.pattern("beta-a", 2 * MiB))])
    for line in ("thin snapshot alpha alpha-snap", "thin snapshot beta beta-snap",
                 "export add alpha-snap --read-only", "export add beta-snap"):
        al.cmd(h, line)
    al.write(h, "alpha", [(2 * MiB, al.pattern("alpha-c", MiB))])
    al.write(h, "beta-snap", [(4 * MiB, al.pattern("beta-snap", MiB))])
    ro = al.connect(h.uri("alpha-snap"))
    try:
        ro.pwrite(b"x" * 4096, 0)
        refused = False
    except al.nbd.Error:
        refused = True
    ro.shutdown()
    c.check("read-only-export-refuses-a-write", ro.is_read_only() and refused)
    names1 = sorted(al.parse_thin_list(h.command("thin list")))
    content = {n: al.read_export(h, n) for n in ("alpha", "beta", "alpha-snap", "beta-snap")}
    app1 = {n: md5(b) for n, b in content.items()}
    c.check("appliance-data-distinct", len(set(app1.values())) == 4, app1)
    c.check("appliance-stops", h.stop() == 0)

    rc, vg, lvs, text = lg.vg_show(meta, data)
    c.check("disks-are-vg-thinbox", rc == 0 and vg.get("name") == "thinbox", text)
    pool = lg.pool_name(lvs)
    c.check("vg-has-one-thin-pool", pool is not None, text)
    c.check("vg-layout", pool and lvs.get(pool + "_tmeta", {}).get("type") == "linear" and
            lvs.get(pool + "_tdata", {}).get("type") == "linear", text)
    c.note("VG after the appliance: " + "; ".join(text.splitlines()))
    if not pool:
        raise al.Failure("the appliance left no VG thinbox with a thin pool: nothing for Linux")

    # ---- 2. Linux ------------------------------------------------------------------------
    r = guest.run(GUEST1 % dict(names=" ".join(names1), pool=pool,
                                lsnap_seek=LSNAP_AT // 65536, grow_seek=GROW_AT // 65536),
                  name="guest_lvm_appliance1", timeout=240,
                  disks=[("meta", meta), ("data", data)])
    c.note("guest boot 1: %.1f s" % r.seconds)
    c.check("guest1-script-runs", r.rc == 0 and "\ndone" in r.output, r.output[-3000:])
    lvm_ok(r, "boot1", ["vgscan", "vgchange -ay thinbox", "vgchange -an thinbox",
                        "lvcreate -V 8M -T thinbox/%s -n linux1" % pool,
                        "lvcreate -s -kn thinbox/alpha -n linuxsnap",
                        "lvchange --addtag thinbox_export_ro=lsnap thinbox/linuxsnap",
                        "lvrename thinbox beta renamed", "lvremove -y thinbox/beta-snap",
                        "lvresize -L 16M thinbox/alpha"])
    c.check("guest1-deactivates", "active at the end: 0" in r.output, r.output[-1000:])
    lv1 = lg.parse_lvs(r.output, "1")
    th1 = lg.thin_lvs(lv1)
    c.note("lvs: " + "; ".join("%s %s" % (n, v) for n, v in lv1.items()))
    c.check("lvs-has-the-appliances-volumes", sorted(th1) == names1, (sorted(th1), names1))
    for n in ("alpha", "beta", "alpha-snap", "beta-snap"):
        v = th1.get(n, {})
        c.check("lvs-%s" % n, v.get("attr", "")[4:5] == "a" and v.get("pool") == pool and
                v.get("sectors") * 512 == len(content[n]) and
                v.get("origin") == (n[:-5] if n.endswith("-snap") else "") and
                v.get("tags") == ["thinbox_export_ro=" + n if n == "alpha-snap"
                                  else "thinbox_export=" + n], v)
    c.check("lvs-creation-time-and-host-set",
            all(th1.get(n, {}).get("time") and th1.get(n, {}).get("host") for n in names1),
            th1)
    got1 = {w[0]: w[1] for w in r.lines("md5 ") if len(w) == 2}
    for n in ("alpha", "beta", "alpha-snap", "beta-snap"):
        c.check("linux-reads-%s-as-the-appliance" % n, got1.get(n) == app1[n],
                (got1.get(n), app1[n]))

    # What Linux's changes made, computed here.
    want = {
        "linux1": lg.yes_bytes("thinbox-linux1", 8 * MiB),
        "linuxsnap": replaced(content["alpha"], LSNAP_AT, lg.yes_bytes("thinbox-linuxsnap", MiB)),
        "renamed": content["beta"],
        "alpha": replaced(content["alpha"] + bytes(4 * MiB), GROW_AT,
                          lg.yes_bytes("thinbox-grown", MiB)),
        "alpha-snap": content["alpha-snap"],
    }
    got2 = {w[0]: w[1] for w in r.lines("after md5 ") if len(w) == 2}
    for n, b in want.items():
        c.check("linux-changes-%s" % n, got2.get(n) == md5(b), (got2.get(n), md5(b)))
    lv2 = lg.thin_lvs(lg.parse_lvs(r.output, "2"))
    names2 = sorted(lv2)
    c.check("lvs-after-linux", names2 == sorted(set(names1) - {"beta", "beta-snap"} |
                                                {"linux1", "linuxsnap", "renamed"}) and
            lv2["alpha"]["sectors"] == 16 * MiB // 512 and
            lv2["renamed"]["tags"] == ["thinbox_export=beta"] and
            lv2["linuxsnap"]["origin"] == "alpha" and lv2["linux1"]["tags"] == [] and
            lv2["linuxsnap"]["tags"] == ["thinbox_export_ro=lsnap"], lv2)

    # ---- 3. The appliance takes the disks back -------------------------------------------
    h = al.Host(meta, data).start()
    c.note("appliance boot 2: " + " | ".join(h.boot_log.splitlines()))
    ready(h, "after-linux")
    listed = al.parse_thin_list(h.command("thin list"))
    c.check("thin-list-is-linuxs-names", sorted(listed) == names2, (sorted(listed), names2))
    sz = sizes(h, names2)
    c.check("thin-sizes-are-linuxs", all(sz[n] == lv2[n]["sectors"] * 512 for n in names2),
            (sz, {n: lv2[n]["sectors"] * 512 for n in names2}))
    c.check("thin-ids-are-linuxs", all(str(listed[n]["id"]) == lv2[n]["thin_id"]
                                       for n in names2), (listed, lv2))
    ex = exports(h)
    c.check("exports-follow-their-tags",
            ex.get("alpha") == ("alpha", "rw") and ex.get("beta") == ("renamed", "rw") and
            ex.get("alpha-snap") == ("alpha-snap", "ro") and "beta-snap" not in ex and
            ex.get("lsnap") == ("linuxsnap", "ro") and
            not any(v[0] == "linux1" for v in ex.values()), ex)
    for e, n in (("alpha", "alpha"), ("beta", "renamed"), ("alpha-snap", "alpha-snap"),
                 ("lsnap", "linuxsnap")):
        c.check("appliance-export-%s-reads-linuxs-%s" % (e, n),
                md5(al.read_export(h, e)) == md5(want[n]))
    for n in ("linux1", "linuxsnap"):
        al.cmd(h, "export add " + n)
        c.check("appliance-reads-linux-made-%s" % n, md5(al.read_export(h, n)) == md5(want[n]))
    chk = h.command("pool check")
    c.check("pool-check-clean-after-linux", "pool check: clean" in chk, chk)
    # The appliance changes the pool in turn.
    al.cmd(h, "thin snapshot linux1 app-snap")
    al.cmd(h, "export add app-snap")
    al.write(h, "linux1", [(0, al.pattern("linux1-app", MiB))])
    want["linux1-app"] = replaced(want["linux1"], 0, al.pattern("linux1-app", MiB))
    al.cmd(h, "export remove alpha-snap")
    al.cmd(h, "thin delete alpha-snap")
    names3 = sorted(al.parse_thin_list(h.command("thin list")))
    app3 = {n: md5(al.read_export(h, n)) for n in ("alpha", "beta", "linux1", "linuxsnap",
                                                 "app-snap")}
    c.check("appliance-writes-after-linux", app3["linux1"] == md5(want["linux1-app"]) and
            app3["app-snap"] == md5(want["linux1"]), app3)
    c.check("appliance-stops-again", h.stop() == 0)
    rc, text = al.thin_check(meta)  # on the pool_tmeta extents (applib.tmeta_image)
    c.check("thin-check-of-pool-tmeta-clean", rc == 0, text)
    rc, res, text = lg.vg_pool(meta, data)
    c.check("thinbox-lvm-pool-agrees", rc == 0 and res["clean"] and
            res["txid"] and res["txid"][0] == res["txid"][1], text)

    # ---- 4. Linux once more ----------------------------------------------------------------
    with open(data, "r+b") as f:
        f.truncate(DATA_SIZE + GROW)
    r = guest.run(GUEST2 % dict(names=" ".join(names3), pool=pool, grow=GROW // MiB),
                  name="guest_lvm_appliance2",
                  timeout=240, disks=[("meta", meta), ("data", data)])
    c.note("guest boot 2: %.1f s" % r.seconds)
    c.check("guest2-script-runs", r.rc == 0 and "\ndone" in r.output, r.output[-3000:])
    lvm_ok(r, "boot2", ["vgscan", "vgchange -ay thinbox", "vgchange -an thinbox",
                        "lvm pvresize", "lvextend -L +%dM thinbox/%s" % (GROW // MiB, pool)])
    c.check("guest2-deactivates", "active at the end: 0" in r.output, r.output[-1000:])
    lv3 = lg.thin_lvs(lg.parse_lvs(r.output, "3"))
    c.check("lvs-is-the-appliances-list", sorted(lv3) == names3, (sorted(lv3), names3))
    c.check("lvs-active-every-volume", all(v["attr"][4:5] == "a" for v in lv3.values()), lv3)
    c.check("lvs-app-snap", lv3.get("app-snap", {}).get("origin") == "linux1" and
            lv3.get("app-snap", {}).get("tags") == ["thinbox_export=app-snap"],
            lv3.get("app-snap"))
    got3 = {w[0]: w[1] for w in r.lines("md5 ") if len(w) == 2}
    exp3 = dict(app3, renamed=app3["beta"])
    del exp3["beta"]
    for n, d in exp3.items():
        c.check("linux-reads-%s-as-the-appliance-again" % n, got3.get(n) == d, (got3.get(n), d))
    pool_sectors = lg.parse_lvs(r.output, "4").get(pool, {}).get("sectors", 0)
    c.check("linux-grew-the-pool", pool_sectors * 512 >= DATA_SIZE + GROW - 8 * MiB and
            lg.parse_lvs(r.output, "4").get(pool + "_tdata", {}).get("sectors") == pool_sectors,
            r.output[-2000:])

    # ---- 5. The appliance on the grown pool ----------------------------------------------
    h = al.Host(meta, data).start()
    c.note("appliance boot 3: " + " | ".join(h.boot_log.splitlines()))
    ready(h, "after-the-pool-grew")
    st = h.command("pool status")
    m = re.search(r"^\s*data\s.* of ([\d.]+) MiB", st, re.M)
    c.check("appliance-pool-has-the-grown-size",
            m and float(m.group(1)) * MiB == pool_sectors * 512, st)
    c.check("appliance-volumes-after-the-pool-grew",
            sorted(al.parse_thin_list(h.command("thin list"))) == names3 and
            md5(al.read_export(h, "alpha")) == app3["alpha"])
    chk = h.command("pool check")
    c.check("pool-check-clean-after-the-pool-grew", "pool check: clean" in chk, chk)
    c.check("appliance-stops-after-the-pool-grew", h.stop() == 0)
except (al.Failure, guest.GuestError, KeyError, ValueError, IndexError, TypeError) as e:
    c.check("no-failure", False, "%s: %s" % (type(e).__name__, e))
c.finish()
