#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""An idle appliance costs (almost) no host CPU, and wakes up right (docs/firmware.md, "Idle").

Boot 1 (blank disks): the appliance formats and exports vol0; after it settles, the QEMU
process's CPU time (utime + stime of /proc/PID/stat) over IDLE_S seconds of idleness stays
below BOUND of one core (the polling loop took a whole core; the target on a quiet machine is
3%, the bound is generous for a loaded CI machine), and the firmware halted fewer than
MAX_WAKES_PER_S times a second (`perf reset` before the spell, `perf` after it: after a second
without work the halt's tick is 50 ms, not the console's 10 ms, so about 25 wake-ups a second
with lwIP's timers, against some 100 before). Right after the idle spell: nbdinfo --list
answers, a shell command answers, and an NBD write to a block never written before (no FLUSH,
so only the pool's periodic commit makes its mapping durable) is left for 3 s, after which
QEMU is killed by its PID (a power cut: nothing is committed on the way down).
Boot 2 on the same disks: the write reads back, so the commit timer ran while the CPU idled.
Then the shell's `idle`: `idle poll` makes the loop poll for ever (no halt over POLL_S quiet
seconds, `perf reset` before), `idle` says so, `idle halt` halts again (halts over the next
POLL_S seconds), and a bad argument gets the usage line.
Printed: the idle CPU share, the sleeps the `perf` command counted and `perf cost` (what one
measured piece of the counters costs)."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import appliance_lib as ap  # noqa: E402

qh, al = ap.qh, ap.al
c = qh.Checks("qemu/idle")
qh.require_image(c)
tmp = al.scratch()
IDLE_S = 10.0
BOUND = 0.15
SETTLE_S = 3.0
MAX_WAKES_PER_S = 50
POLL_S = 1.5
OFFSET = 5 << 20  # inside vol0, never written before this test
DATA = al.pattern("idle-commit", 64 << 10)
TICK = os.sysconf("SC_CLK_TCK")


HALTS = re.compile(r"halted\s+(\d+) sleeps \((\d+) ended by the timer")


def halts(out):
    """`perf`'s halt line in @out: (halts, ended by the timer), or None."""
    sl = HALTS.search(out)
    return (int(sl.group(1)), int(sl.group(2))) if sl else None


def cpu_seconds(pid):
    """utime + stime of @pid in seconds (fields 14 and 15 of /proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


try:
    m = ap.DiskMachine("qemu-idle", tmp)
    with m:
        m.boot_appliance()
        m.sh("perf reset", timeout=20)
        t_reset = time.monotonic()
        time.sleep(SETTLE_S)
        c0, t0 = cpu_seconds(m.proc.pid), time.monotonic()
        time.sleep(IDLE_S)
        share = (cpu_seconds(m.proc.pid) - c0) / (time.monotonic() - t0)
        c.note("idle: QEMU used %.1f%% of a core over %.0f s" % (100 * share, IDLE_S))
        c.check("idle-cpu-below-%d%%" % int(100 * BOUND), share < BOUND,
                "%.1f%% of a core" % (100 * share))
        out = m.sh("perf", timeout=20)
        span = time.monotonic() - t_reset
        hl = halts(out)
        c.check("idle-wakes-below-%d-per-s" % MAX_WAKES_PER_S,
                hl is not None and hl[0] < MAX_WAKES_PER_S * span,
                "%s over %.1f s" % ("%d halts" % hl[0] if hl else out[-400:], span))
        if hl:
            c.note("idle: %d halts (%d ended by the timer) over %.1f s: %.0f a second"
                   % (hl[0], hl[1], span, hl[0] / span))

        r = al.run(["nbdinfo", "--list", m.uri()], timeout=30)
        c.check("nbdinfo-after-idle", r.returncode == 0 and 'export="vol0"' in r.stdout,
                r.stdout + r.stderr)
        out = m.sh("pool status", timeout=20)
        c.check("shell-after-idle", "transaction id" in out, out)
        h = al.nbd.NBD()
        h.connect_uri(m.uri("vol0"))
        ap.pwrite(h, DATA, OFFSET)
        # No flush: the mapping is durable only once the pool's 1 s commit timer has run.
        time.sleep(3.0)
        out = m.sh("perf", timeout=20)
        hl = halts(out)
        c.note("perf after the idle spell: %s" % ("%d halts" % hl[0] if hl else "no halt line"))
        out = m.sh("perf cost", timeout=20)
        c.check("perf-cost", "cycles per measured piece" in out, out)
        c.note(out.strip())
        m.stop()  # SIGKILL by PID: a power cut, nothing committed on the way down
    m = ap.DiskMachine("qemu-idle-2", tmp)
    with m:
        m.boot_appliance()
        h = al.nbd.NBD()
        h.connect_uri(m.uri("vol0"))
        back = ap.pread(h, len(DATA), OFFSET)
        h.shutdown()
        c.check("commit-timer-while-idle", back == DATA,
                "the write did not survive the cut: the commit timer did not run")

        def halts_over(seconds):
            """The halts `perf` counts over @seconds of quiet after `perf reset`."""
            m.sh("perf reset", timeout=20)
            time.sleep(seconds)
            out = m.sh("perf", timeout=20)
            hl = halts(out)
            return hl[0] if hl else None, out[-300:]

        out = m.sh("idle poll", timeout=20)
        c.check("idle-poll-says-so", "the loop polls, never halts" in out, out)
        n, out = halts_over(POLL_S)
        c.check("idle-poll-never-halts", n == 0, out)
        out = m.sh("idle", timeout=20)
        c.check("idle-shows-poll", "never halts" in out, out)
        out = m.sh("idle halt", timeout=20)
        c.check("idle-halt-says-so", "halt after 2 ms without work" in out, out)
        n, out = halts_over(POLL_S)
        c.check("idle-halt-halts-again", n is not None and n > 0, out)
        c.note("idle halt: %s halts over %.1f quiet seconds" % (n, POLL_S))
        out = m.sh("idle sometimes", timeout=20)
        c.check("idle-bad-argument-usage", "usage: idle [poll|halt]" in out, out)
        m.send("poweroff\r")
        c.check("poweroff", m.wait_exit(60) == qh.RC_POWEROFF)
except (qh.BootFailure, al.Failure) as e:
    c.check("no-boot-failure", False, str(e))
c.finish()
