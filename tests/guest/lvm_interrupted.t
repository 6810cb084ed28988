#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Interrupted changes on the appliance's VG, from both sides (docs/linux-lvm.md).

The appliance makes keep1 and keep2 with data and keep2's snapshot keep2-snap, exported, and
stops. A change is a sequence of commands; each command takes the set of thin volumes
(name -> origin) from one state to the next, and after an interruption the volumes must be
the state before or after the command that was running (the commands that answered are
counted; the next may or may not have happened).

(a) lvm interrupted in Linux, once per KILL_A: a guest activates the VG and runs lvcreate -V /
    lvcreate -s / lvremove in a loop, printing "begin J" and "end J RC" around each; the
    host kills QEMU by its PID a different delay after the loop starts. The appliance then
    starts on the disks: READY, its volumes are the state before or after the interrupted
    command (origins too), keep1, keep2 and keep2-snap read their digests, `pool check` is
    clean; it stops and thin_check of the pool_tmeta extents is clean. The next round runs
    on what the appliance left.
(b) the appliance interrupted, once per KILL_B: it gets a batch of thin create / snapshot /
    delete commands at once and is SIGKILLed by PID a few ms after its Nth answer; a copy of the
    disks is kept, and the appliance restarts on the originals for the next round. One
    guest boot then looks at every copy in turn (lvm's --devices names the pair): vgchange
    -ay -K activates every LV but one whose `create` message was pending (lvm 2.03.16 does
    not send pending messages before loading that LV: tests/guest/lvm_pending.t), thin_check
    run by lvm is clean, the names are a before-or-after state, the kept volumes read their
    digests, vgchange -an."""
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "appliance"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import applib as al  # noqa: E402
import guest  # noqa: E402
import lvmguest as lg  # noqa: E402
from lvmguest import md5  # noqa: E402

MiB = 1 << 20
META_SIZE, DATA_SIZE = 32 * MiB, 128 * MiB
KILL_A = [0.15, 2.6, 1.1, 3.5, 1.7]  # seconds after the guest's loop starts
# (answers, seconds): the appliance is killed this long after it answered that many commands
# of its batch (a command takes 5-100 ms here, depending on the machine's load).
KILL_B = [(0, 0.0), (2, 0.003), (5, 0.001), (8, 0.008), (12, 0.02)]
KEEP = ("keep1", "keep2", "keep2-snap")

c = al.Checks("guest/lvm_interrupted")
c.need_tools("qemu-system-x86_64", "thin_check", "thin_dump")
tmp = al.scratch()


# ---- The state model: {name: origin} ----------------------------------------------------
def create(name, origin=""):
    return lambda s: dict(s, **{name: origin})


def remove(name):
    # A removed origin leaves its snapshots without one (lvm and the appliance alike).
    return lambda s: {n: ("" if o == name else o) for n, o in s.items() if n != name}


def states(start, ops):
    """[S0, S1, ...]: the state before each command and after the last."""
    out = [dict(start)]
    for _, f in ops:
        out.append(f(out[-1]))
    return out


def show(s):
    return " ".join("%s%s" % (n, "<" + o if o else "") for n, o in sorted(s.items()))


def appliance_state(h):
    return {n: ("" if v["origin"] == "-" else v["origin"])
            for n, v in al.parse_thin_list(h.command("thin list")).items()}


def check_appliance(h, what, allowed, keep_md5):
    """READY, a before-or-after state, the kept volumes intact, pool check clean."""
    bad = re.search(r"error|stale|refus|problem|warn", h.boot_log, re.I)
    st = h.command("pool status")
    c.check(what + "-appliance-ready",
            not bad and re.search(r"^\s*configuration\s+in step", st, re.M), h.boot_log + st)
    got = appliance_state(h)
    c.check(what + "-volumes-before-or-after", got in allowed,
            "appliance: %s\nallowed: %s" % (show(got), " | ".join(show(s) for s in allowed)))
    for n in KEEP:
        try:
            d = md5(al.read_export(h, n))
        except al.nbd.Error as e:
            d = "nbd: %s" % e
        c.check("%s-%s-intact" % (what, n), d == keep_md5[n], (d, keep_md5[n]))
    chk = h.command("pool check")
    c.check(what + "-pool-check-clean", "pool check: clean" in chk, chk)
    return got


def tmeta_check(what, meta, data):
    rc, text = al.thin_check(meta)  # on the pool_tmeta extents (applib.tmeta_image)
    c.check(what + "-thin-check-of-pool-tmeta", rc == 0, text)


# ---- (a) the guest's loop ---------------------------------------------------------------
def guest_ops(rnd, pool, state):
    """lvm commands for round @rnd: create, snapshot (of the new LV or of keep1), remove."""
    ops = []
    for k in range(5):
        a, b = "r%d%da" % (rnd, k), "r%d%db" % (rnd, k)
        origin = a if k % 2 == 0 else "keep1"
        ops.append(("lvcreate -V 4M -T thinbox/%s -n %s" % (pool, a), create(a)))
        ops.append(("lvcreate -s thinbox/%s -n %s" % (origin, b), create(b, origin)))
        ops.append(("lvremove -y thinbox/%s" % a, remove(a)))
        if k % 2 == 1:
            prev = "r%d%db" % (rnd, k - 1)
            ops.append(("lvremove -y thinbox/%s" % prev, remove(prev)))
    # One of an earlier round's snapshots, when there is one.
    old = sorted(n for n in state if n.startswith("r") and n.endswith("b"))
    if old:
        ops.insert(2, ("lvremove -y thinbox/%s" % old[0], remove(old[0])))
    return ops


def guest_loop_script(ops):
    lines = [lg.PRELUDE, "run vgchange -ay thinbox", "tcdone", "echo LOOP-START"]
    for j, (line, _) in enumerate(ops):
        lines.append('echo "begin %d $(cut -d" " -f1 /proc/uptime)"; %s >/tmp/o%d 2>&1; '
                     'echo "end %d $? $(cut -d" " -f1 /proc/uptime)"' % (j, line, j, j))
    lines += ["echo LOOP-END", "run vgchange -an thinbox", "echo done"]
    return "\n".join(lines) + "\n"


# ---- (b) the appliance's batch ----------------------------------------------------------
def appliance_ops(rnd, state):
    ops = []
    for k in range(6):
        x, y = "b%d%dx" % (rnd, k), "b%d%dy" % (rnd, k)
        ops.append(("thin create %s 4M" % x, create(x)))
        ops.append(("thin snapshot %s %s" % ("keep1" if k % 2 else x, y),
                    create(y, "keep1" if k % 2 else x)))
        ops.append(("thin delete %s" % x, remove(x)))
    old = sorted(n for n in state if n.startswith("b") and n.endswith("y"))
    if old:
        ops.insert(1, ("thin delete %s" % old[0], remove(old[0])))
    return ops


GUEST_B = lg.PRELUDE + r"""
for i in %(pairs)s; do
	m=$(disk meta$i); d=$(disk data$i)
	echo "pair $i $m $d"
	run vgchange --devices $m,$d -ay -K thinbox  # -K: Linux's snapshots of (a) too
	lvsall b$i --devices $m,$d
	for v in %(keep)s; do echo "md5b$i $v $(md5sum </dev/thinbox/$v | cut -d' ' -f1)"; done
	run vgchange --devices $m,$d -an thinbox
	echo "active after pair $i: $(ls /dev/mapper | grep -c thinbox)"
	tcdone | sed "s/^/b$i /"
done
echo done
"""

try:
    meta, data = al.blank_disks(tmp, META_SIZE, DATA_SIZE)
    h = al.Host(meta, data).start()
    for line in ("thin create keep1 8M", "thin create keep2 8M", "export add keep1",
                 "export add keep2"):
        al.cmd(h, line)
    al.write(h, "keep1", [(0, al.pattern("keep1", 3 * MiB))])
    al.write(h, "keep2", [(MiB, al.pattern("keep2", 2 * MiB))])
    al.cmd(h, "thin snapshot keep2 keep2-snap")
    al.cmd(h, "export add keep2-snap")
    al.write(h, "keep2", [(MiB, al.pattern("keep2-after", MiB))])
    keep_md5 = {n: md5(al.read_export(h, n)) for n in KEEP}
    state = appliance_state(h)
    c.check("appliance-stops", h.stop() == 0)
    rc, vg, lvs, text = lg.vg_show(meta, data)
    pool = lg.pool_name(lvs)
    c.check("disks-are-vg-thinbox-with-a-pool", rc == 0 and pool, text)
    if not pool:
        raise al.Failure("the appliance left no VG thinbox with a thin pool: nothing for Linux")

    # ---- (a) ---------------------------------------------------------------------------
    for rnd, delay in enumerate(KILL_A):
        what = "a%d" % rnd
        ops = guest_ops(rnd, pool, state)
        seq = states(state, ops)
        r = guest.run(guest_loop_script(ops), name="guest_lvm_interrupted_" + what,
                      timeout=180, disks=[("meta", meta), ("data", data)],
                      kill=("LOOP-START", delay))
        begun = [int(w[0]) for w in r.lines("begin ")]
        ended = [w for w in r.lines("end ")]
        c.check(what + "-guest-activated", "rc 0 vgchange -ay thinbox" in r.output,
                r.output[-3000:])
        c.check(what + "-lvm-checked-the-pool-clean",
                all(w[:2] == ["rc", "0"] for w in r.lines("thin_check-ran ")) and
                r.lines("thin_check-ran "), r.output[-2000:])
        c.check(what + "-killed-in-the-loop", r.killed and "LOOP-END" not in r.output and
                begun, r.output[-2000:])
        c.check(what + "-commands-that-ended-succeeded", all(w[1] == "0" for w in ended),
                ended)
        k = len(ended)
        c.note("%s: killed %.1f s after the loop started, %d commands done, in %s; %.1f s"
               % (what, delay, k, ops[k][0] if k < len(ops) else "-", r.seconds))
        allowed = seq[k:k + 2]
        h = al.Host(meta, data).start()
        c.note("%s appliance: %s" % (what, " | ".join(h.boot_log.splitlines())))
        state = check_appliance(h, what, allowed, keep_md5)
        c.check(what + "-appliance-stops", h.stop() == 0)
        tmeta_check(what, meta, data)

    # ---- (b) ---------------------------------------------------------------------------
    pairs = []
    for rnd, (answers, delay) in enumerate(KILL_B):
        what = "b%d" % rnd
        ops = appliance_ops(rnd, state)
        seq = states(state, ops)
        h = al.Host(meta, data).start()
        h.send("".join(line + "\n" for line, _ in ops))
        deadline = time.monotonic() + 30
        while (len(re.findall(r"^(?:created|deleted) ", h.output, re.M)) < answers and
               time.monotonic() < deadline):
            time.sleep(0.0005)
        time.sleep(delay)
        os.kill(h.proc.pid, signal.SIGKILL)  # the power cut (Host.kill() below reaps it)
        h.proc.wait(30)
        with h._cond:  # every byte it printed before it died
            h._cond.wait_for(lambda: h._eof, 30)
        out = h.output
        h.kill()
        typed = out.split(al.PROMPT, 1)[1] if al.PROMPT in out else ""
        done = re.findall(r"^(created|deleted) ", typed, re.M)
        errors = [ln for ln in typed.splitlines() if "error" in ln.lower()]
        c.check(what + "-no-error-before-the-kill", not errors, errors)
        k = len(done)
        c.note("%s: killed %.3f s after answer %d, %d of %d commands answered"
               % (what, delay, answers, k, len(ops)))
        c.check(what + "-killed-mid-batch", answers <= k < len(ops), (answers, k, len(ops)))
        allowed = seq[k:k + 2]
        m2, d2 = os.path.join(tmp, "meta%d.img" % rnd), os.path.join(tmp, "data%d.img" % rnd)
        for src, dst in ((meta, m2), (data, d2)):
            subprocess.run(["cp", "--sparse=always", src, dst], check=True, timeout=60)
        pairs.append((rnd, m2, d2, allowed))
        h = al.Host(meta, data).start()
        state = check_appliance(h, what, allowed, keep_md5)
        c.check(what + "-appliance-stops", h.stop() == 0)

    disks = []
    for rnd, m2, d2, _ in pairs:
        disks += [("meta%d" % rnd, m2), ("data%d" % rnd, d2)]
    r = guest.run(GUEST_B % dict(pairs=" ".join(str(p[0]) for p in pairs),
                                 keep=" ".join(KEEP)),
                  name="guest_lvm_interrupted_b", timeout=240, disks=disks)
    c.note("guest boot for (b): %.1f s" % r.seconds)
    c.check("b-guest-script-runs", r.rc == 0 and "\ndone" in r.output, r.output[-3000:])
    # A power cut between the appliance's writes to the two PVs leaves one copy a seqno
    # behind: lvm uses the newer, says so, and rewrites the older at its next change
    # (docs/lvm2-format.md §11.1). Any other warning fails.
    other = [w for w in lg.warnings(r.output)
             if not re.match(r"WARNING: (ignoring metadata seqno (\d+) on \S+ for seqno (\d+) "
                             r"on \S+ for VG thinbox\.|Inconsistent metadata found for VG "
                             r"thinbox\.)$", w)]
    c.check("b-lvm-warned-of-nothing-else", not other, other)
    for rnd, m2, d2, allowed in pairs:
        what = "b%d-linux" % rnd
        # A thin LV whose `create` message was still pending when the power went: lvm
        # 2.03.16's vgchange -ay does not send pending messages before it loads the LV's
        # table, so that one LV fails to activate ("reload ioctl ... No data available",
        # exit status 5) until the appliance's next start sends the message
        # (docs/linux-lvm.md). Every other LV must activate.
        pend = set(re.findall(r'create = "([^"]+)"', al.vg_text(m2) + al.vg_text(d2)))
        act = re.search(r"^rc (\d+) vgchange --devices \S+ -ay -K thinbox$",
                        r.output.split("pair %d " % rnd)[1], re.M) if \
            ("pair %d " % rnd) in r.output else None
        c.check(what + "-activates", act and (act.group(1) == "0" or
                                              (act.group(1) == "5" and pend)),
                r.output[-3000:])
        if pend:
            c.note("%s: pending create of %s left by the cut" % (what, " ".join(sorted(pend))))
        lvs = lg.parse_lvs(r.output, "b%d" % rnd)
        th = lg.thin_lvs(lvs)
        got = {n: v["origin"] for n, v in th.items()}
        c.check(what + "-every-lv-active",
                th and all(v["attr"][4:5] == "a" for n, v in th.items() if n not in pend), th)
        c.check(what + "-names-before-or-after", got in allowed,
                "linux: %s\nallowed: %s" % (show(got), " | ".join(show(s) for s in allowed)))
        tc = [w for w in r.lines("b%d thin_check-ran " % rnd)]
        c.check(what + "-thin-check-by-lvm-clean", tc and all(w[:2] == ["rc", "0"] for w in tc),
                tc)
        dg = {w[0]: w[1] for w in r.lines("md5b%d " % rnd) if len(w) == 2}
        c.check(what + "-kept-volumes-intact", all(dg.get(n) == keep_md5[n] for n in KEEP),
                (dg, keep_md5))
        c.check(what + "-deactivates", "active after pair %d: 0" % rnd in r.output)
except (al.Failure, guest.GuestError, KeyError, ValueError, IndexError, TypeError) as e:
    c.check("no-failure", False, "%s: %s" % (type(e).__name__, e))
c.finish()
