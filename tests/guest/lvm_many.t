#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Linux's lvm reads a VG of 10,000 thin LVs written by the appliance (issue 16).

The host build on disks of 1 GiB and 2 GiB (sparse; first boot gives each PV a 16 MiB
metadata area): `thin create v 1M --count 5000`, `thin snapshot v0 s --count 5000`, 100
exports (LV tags). Then one guest boot (Debian's lvm2): vgscan, `vgs -o lv_count`, `lvs`
counted (thin LVs, snapshots with origin v0, export tags), `lvs` of one snapshot by name, each
timed; nothing is activated (no need: this is about the metadata text). Then the appliance
starts again on the same disks and finds all 10,001 volumes (lvm wrote nothing).
MANY_HALF=N makes it N volumes + N snapshots (default 5000)."""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "appliance"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import applib as al  # noqa: E402
import guest  # noqa: E402
import lvmguest as lg  # noqa: E402

c = al.Checks("guest/lvm_many")
c.need_tools("qemu-system-x86_64")
tmp = al.scratch()
HALF = int(os.environ.get("MANY_HALF", "5000"))
TOTAL = 2 * HALF + 1

GUEST = lg.PRELUDE + r"""
t() { # t CMD...: run it, then "took N ms: CMD" (busybox's date has no %%N: /proc/uptime)
	s=$(cut -d' ' -f1 /proc/uptime); "$@"; rc=$?; e=$(cut -d' ' -f1 /proc/uptime)
	echo "took $(awk "BEGIN { print ($e - $s) * 1000 }") ms: $1 $2"; return $rc
}
t run vgscan
t vgs --noheadings -o vg_name,lv_count,vg_mda_size,vg_mda_free --units b thinbox | sed 's/^ */vgs /'
t sh -c "lvs --noheadings --separator '|' -o lv_name,pool_lv,origin,lv_tags thinbox >/tmp/lvs"
echo "rc $? lvs"
echo "lvs-lines $(wc -l < /tmp/lvs)"
echo "lvs-thin $(grep -c '|pool|' /tmp/lvs)"
echo "lvs-snaps $(grep -c '|pool|v0|' /tmp/lvs)"
echo "lvs-exports $(grep -c 'thinbox_export=' /tmp/lvs)"
t lvs --noheadings -o lv_name,origin,thin_id thinbox/s%(last)d | sed 's/^ */one /'
echo done
"""

try:
    meta, data = al.blank_disks(tmp, 1 << 30, 2 << 30)
    h = al.Host(meta, data).start()
    for line in ("thin create v 1M --count %d" % HALF, "thin snapshot v0 s --count %d" % HALF,
                 "export add v --count 100 --first 1"):
        al.cmd(h, line)
    c.check("stop", h.stop() == 0)

    r = guest.run(GUEST % {"last": HALF - 1}, disks=[("meta", meta), ("data", data)],
                  name="lvm_many", timeout=600)
    for ln in r.lines("took "):
        c.note(" ".join(ln))
    c.note("guest run %.0f s (load %.2f)" % (r.seconds, os.getloadavg()[0]))
    vgs = r.lines("vgs ")
    c.check("vgs-lv-count", vgs and vgs[0][0] == "thinbox" and int(vgs[0][1]) >= TOTAL,
            r.output[-2000:])
    if vgs:
        c.note("lvm: metadata area %s, free %s" % (vgs[0][2], vgs[0][3]))
    got = {w[0]: int(w[1]) for w in (ln for ln in (x.split() for x in r.output.splitlines())
                                    if len(ln) == 2 and ln[0].startswith("lvs-"))}
    c.check("lvs-all", "rc 0 lvs" in r.output and got.get("lvs-thin") == TOTAL and
            got.get("lvs-snaps") == HALF and got.get("lvs-exports") == 101, "%s\n%s" %
            (got, r.output[-2000:]))
    one = r.lines("one ")
    c.check("lvs-one-snapshot", one and one[0][:2] == ["s%d" % (HALF - 1), "v0"], r.output[-800:])
    c.check("lvm-warned-of-nothing", not lg.warnings(r.output), lg.warnings(r.output))

    h = al.Host(meta, data).start()
    c.check("appliance-reads-it-again", "%d volume(s), 101 export(s)" % TOTAL in h.boot_log,
            h.boot_log[-400:])
    c.check("stop-2", h.stop() == 0)
except (al.Failure, guest.GuestError) as e:
    c.check("no-failure", False, str(e))
c.finish()
