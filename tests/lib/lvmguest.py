# SPDX-License-Identifier: MIT
"""Helpers shared by the guest tests that hand the appliance's VG to Linux's lvm
(tests/guest/lvm_appliance.t, tests/guest/lvm_interrupted.t).

PRELUDE is the start of a guest script: shell functions `run CMD...` (runs it, prints its
output indented and "rc STATUS CMD..."), `digest NAME` ("md5 NAME HEX" of /dev/thinbox/NAME),
`lvsall TAG [OPTIONS]` (one "lvsTAG|name|attr|sectors|pool|origin|tags|thin_id|transaction_id|time|host"
line per LV of VG thinbox) and a wrapper in place of /usr/sbin/thin_check that records each
run lvm makes ("thin_check-ran rc STATUS ARGS", printed by `tcdone`).

On the host: `vg_show` / `vg_pool` run build/host/thinbox-lvm (show, pool) on the disk files,
(applib's thin_check / thin_dump find the pool's _tmeta extents themselves).
"""
import hashlib
import os
import subprocess

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOL = os.path.join(TOP, "build", "host", "thinbox-lvm")
SECTOR = 512

PRELUDE = r"""
run() { "$@" >/tmp/out 2>&1; rc=$?; sed 's/^/    /' /tmp/out; echo "rc $rc $*"; }
digest() { echo "md5 $1 $(md5sum </dev/thinbox/$1 | cut -d' ' -f1)"; }
lvsall() {  # lvsall TAG [lvs options]
	t=$1; shift
	lvs "$@" -a --noheadings --units s --nosuffix --separator '|' \
		-o lv_name,lv_attr,lv_size,pool_lv,origin,lv_tags,thin_id,transaction_id,lv_time,lv_host \
		thinbox | sed "s/^ */lvs$t|/"
}
# lvm runs /usr/sbin/thin_check (a link to pdata_tools) before it activates a pool: a
# wrapper in its place (the link removed first: writing through it would overwrite
# pdata_tools) records each run, so the test sees lvm checked the pool and what it said.
rm -f /usr/sbin/thin_check
printf '#!/bin/sh\n/sbin/thin_check "$@" >/tmp/tc.out 2>&1; rc=$?\necho "thin_check-ran rc $rc $*" >>/tmp/tc.log\nsed "s/^/thin_check-said /" /tmp/tc.out >>/tmp/tc.log\nexit $rc\n' \
	>/usr/sbin/thin_check
chmod 755 /usr/sbin/thin_check
tcdone() { cat /tmp/tc.log 2>/dev/null; rm -f /tmp/tc.log; }
"""


# lvm's warnings about over-provisioning (the sum of thin LV sizes above the pool's free
# space): advice, printed whenever the pool is over-committed, as thin pools are meant to be.
BENIGN_WARNINGS = ("WARNING: Sum of all thin volume sizes",
                   "WARNING: You have not turned on protection against thin pools",
                   "WARNING: Set activation/thin_pool_autoextend_threshold")


def warnings(output):
    """lvm's WARNING lines in @output other than BENIGN_WARNINGS."""
    return [ln.strip() for ln in output.splitlines() if "WARNING" in ln and
            not any(b in ln for b in BENIGN_WARNINGS)]


def md5(b):
    return hashlib.md5(b).hexdigest()


def tool(*args, cwd=None):
    r = subprocess.run([TOOL] + list(args), capture_output=True, text=True, timeout=120,
                       cwd=cwd)
    return r.returncode, r.stdout, r.stderr


def parse_lvs(output, tag=""):
    """`lvsall TAG` lines -> {name: {attr, sectors, pool, origin, tags, thin_id, txid, time, host}}
    (hidden LVs under their name without brackets)."""
    lvs = {}
    prefix = "lvs%s|" % tag
    for ln in output.splitlines():
        if not ln.startswith(prefix):
            continue
        w = [x.strip() for x in ln[len(prefix):].split("|")]
        w += [""] * (10 - len(w))
        lvs[w[0].strip("[]")] = {
            "attr": w[1], "sectors": int(w[2] or 0), "pool": w[3], "origin": w[4],
            "tags": sorted(t for t in w[5].split(",") if t), "thin_id": w[6], "txid": w[7],
            "time": w[8], "host": w[9]}
    return lvs


def thin_lvs(lvs):
    """The visible thin LVs (attr V...) of parse_lvs()."""
    return {n: v for n, v in lvs.items() if v["attr"][:1] == "V"}


def vg_show(meta, data):
    """`thinbox-lvm show`: (rc, {'extent_size': S, 'seqno': N}, {lv: words}, text)."""
    rc, out, err = tool("show", meta, data)
    vg, lvs = {}, {}
    for ln in out.splitlines():
        w = ln.split()
        if w and w[0] == "vg":
            vg = {"name": w[1], "seqno": int(w[3]), "extent_size": int(w[5])}
        elif w and w[0] == "lv":
            d = {"sectors": int(w[3]), "visible": w[5] == "1", "type": w[7]}
            for k in ("pool", "device_id", "origin", "tags"):
                if k in w:
                    d[k] = w[w.index(k) + 1]
            lvs[w[1]] = d
    return rc, vg, lvs, out + err


def pool_name(lvs):
    """The thin pool's LV name in vg_show()'s LVs."""
    pools = [n for n, d in lvs.items() if d["type"] == "thin-pool"]
    return pools[0] if len(pools) == 1 else None


def vg_pool(meta, data):
    """`thinbox-lvm pool`: (rc, {'layout': {lv: sector}, 'md5': {name: hex}, 'clean': bool,
    'txid': (vg, superblock)}, text)."""
    rc, out, err = tool("pool", meta, data)
    res = {"layout": {}, "md5": {}, "clean": False, "txid": None}
    for ln in out.splitlines():
        w = ln.split()
        if len(w) == 10 and w[0] == "lv":
            res["layout"][w[1]] = int(w[9])
        elif len(w) >= 3 and w[0] == "md5":
            res["md5"][w[1]] = w[2]
        elif len(w) >= 3 and w[0] == "check" and w[2] == "clean":
            res["clean"] = True
        elif w[:1] == ["pool"] and "transaction_id" in w and "superblock" in w:
            res["txid"] = (int(w[w.index("transaction_id") + 1]),
                           int(w[w.index("superblock") + 1]))
    return rc, res, out + err


def yes_bytes(text, length):
    """What `yes TEXT | head -c LENGTH` writes."""
    line = (text + "\n").encode()
    return (line * (length // len(line) + 1))[:length]
