#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A thin create cut short after its first VG commit, seen from Linux (docs/linux-lvm.md).

The appliance makes volume keep; `thinbox-lvm pending` then leaves the VG exactly as the
first commit of a create leaves it (a snapshot x of keep, the pool's transaction_id + 1, a
pending `create` message; the pool untouched). Guest boot 1: lvm 2.03.16's vgchange -ay
activates every other LV but not x (it loads x's table before any pending message is sent:
"No data available", exit status 5). The appliance then starts on the disks: it sends the
message (x appears as a snapshot of keep, the transaction id moves), clears it, and `pool
check` is clean. Guest boot 2: vgchange -ay activates every LV, x included, with keep's data
in x, and lvm's thin_check is clean."""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "appliance"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import applib as al  # noqa: E402
import guest  # noqa: E402

c = al.Checks("guest/lvm_pending")
c.need_tools("qemu-system-x86_64", "thin_check")
tmp = al.scratch()
GUEST = r"""
vgchange -ay -K thinbox; echo "rc activate $?"
lvs --noheadings --separator '|' -o lv_name,lv_attr,origin thinbox | sed 's/^ */lv|/'
for v in keep x; do
	[ -e /dev/thinbox/$v ] && echo "md5 $v $(md5sum </dev/thinbox/$v | cut -d' ' -f1)"
done
vgchange -an thinbox; echo "rc deactivate $?"
echo done
"""


def lvs(out):
    return {w[1]: w[2] for w in (l.split("|") for l in out.splitlines()) if w[0] == "lv"}


try:
    meta, data = al.blank_disks(tmp, 16 << 20, 64 << 20)
    h = al.Host(meta, data).start()
    out = h.command("thin create keep 4M") + h.command("export add keep")
    hh = al.connect(h.uri("keep"))
    hh.pwrite(al.pattern("keep", 4 << 20), 0)
    hh.flush()
    hh.shutdown()
    c.check("appliance-stops", h.stop() == 0, out)
    r = al.run([al.LVM_TOOL, "pending", meta, data, "x", "7", "keep"])
    c.check("pending-create-written", r.returncode == 0 and 'create = "x"' in al.vg_text(meta),
            r.stderr)

    g1 = guest.run(GUEST, name="guest_lvm_pending_1", timeout=180,
                   disks=[("meta", meta), ("data", data)])
    c.check("guest-1-runs", g1.rc == 0 and "\ndone" in g1.output, g1.output[-2000:])
    l1 = lvs(g1.output)
    c.check("lvm-cannot-activate-the-pending-lv", "rc activate 5" in g1.output and
            l1.get("x", "")[4:5] != "a" and "No data available" in g1.output, g1.output[-2000:])
    c.check("lvm-activates-the-others", l1.get("keep", "")[4:5] == "a" and
            l1.get("vol0", "")[4:5] == "a", str(l1))

    h = al.Host(meta, data).start()
    c.check("appliance-finishes-the-create", "1 message(s) applied" in h.boot_log, h.boot_log)
    tl = al.parse_thin_list(h.command("thin list"))
    c.check("x-is-a-snapshot-of-keep", tl.get("x", {}).get("origin") == "keep", str(tl))
    out = h.command("pool check", timeout=120)
    c.check("pool-check-clean", "pool check: clean" in out, out)
    c.check("appliance-stops-again", h.stop() == 0)
    c.check("message-cleared", "create = " not in al.vg_text(meta) and
            "create = " not in al.vg_text(data))

    g2 = guest.run(GUEST, name="guest_lvm_pending_2", timeout=180,
                   disks=[("meta", meta), ("data", data)])
    l2 = lvs(g2.output)
    c.check("lvm-activates-everything-after-the-appliance", "rc activate 0" in g2.output and
            all(v[4:5] == "a" for v in l2.values()) and "x" in l2, g2.output[-2000:])
    md = dict(re.findall(r"^md5 (\S+) (\S+)$", g2.output, re.M))
    c.check("x-holds-keeps-data", md.get("x") and md.get("x") == md.get("keep"), str(md))
except (al.Failure, guest.GuestError, KeyError, ValueError) as e:
    c.check("no-failure", False, "%s: %s" % (type(e).__name__, e))
c.finish()
