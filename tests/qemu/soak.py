#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""`make soak`: the firmware in QEMU under mixed NBD load for SOAK_MINUTES (default 30), with
snapshots taken and deleted from the serial shell all along; nothing lost, nothing leaked.

The machine is the tests' (tests/qemu/qemu_harness.py): -m 256M, user networking with the NBD
port forwarded on 127.0.0.1, blank disks (64 MiB metadata, 2 GiB data, sparse), first boot.
The shell makes vol1, vol2 and vol3 (256 MiB each) beside the first boot's vol0 and exports
them; 32 MiB of vol2 are filled by fio with crc32c-headed 64 KiB blocks. Then four fio
processes (one per volume, --thread, the nbd engine, started one after the other: each
volume's 4 connections up, as `nbd clients` shows, before the next starts) run 16 connections:

  vol0  4 x random 4 KiB writes, QD4, verify=crc32c (verify_backlog), a FLUSH every 64 writes
  vol1  4 x sequential 256 KiB writes, QD2, verify=crc32c (verify_backlog), a FLUSH every 8
  vol2  2 x random 64 KiB reads QD4 and 2 x random 4 KiB reads QD8 over the filled 32 MiB
  vol3  2 x random 64 KiB writes QD2 and 2 x random 64 KiB TRIMs (discards), rate-limited,
        over the same 32 MiB: blocks mapped and unmapped all along

each verifying writer on its own 16 MiB of its volume, so fio's verification holds.
Meanwhile a driver on the serial shell, every SOAK_SNAP_SECONDS (default 5), takes a snapshot
(`thin snapshot`: of vol2, vol0, vol3, vol1 in turn, every fifth of the newest snapshot),
deletes the oldest (but not the newest of vol2) once more than SOAK_KEEP (default 4) exist
(`thin delete`), runs `pool commit` every third round and `mem` every SOAK_INTERVAL seconds
(default: the run / 30, 5 s to 60 s).

At the end: vol2 and the newest snapshot taken of it (exported read-only) are read back whole
with fio's verify, `pool check`, `mem`, poweroff, thin_check on the pool's metadata (pool_tmeta
copied out of the metadata disk's VG). Printed: one row per interval (MiB/s read and written,
IOPS of reads, writes, trims and flushes, snapshots taken and deleted so far, the appliance's
free memory and heap, the host's load average), memory at the start, at every interval and at
the end, and the verdict.

It fails (exit status 1, each reason printed) on: a fio verify error or any fio job error, fio
not finishing in time, a shell command with no prompt back within SOAK_CMD_TIMEOUT (a lost
command: QEMU is killed), a reply with `error` or `usage` or without what the command answers,
`pool check` not clean, poweroff not ending QEMU with status 0, thin_check findings, or memory
growth past SOAK_MEM_TOLERANCE_MIB (default 2): the heap's highest reading of the load's last
quarter above that of its first quarter, or free memory's lowest below, by more than that.

SOAK_SECONDS overrides SOAK_MINUTES (the short run of tests/qemu/soak.t). Test-only switches,
to show that the checks fire: SOAK_CORRUPT=1 overwrites 512 bytes of one of vol2's data blocks
in the data disk file (found with thin_dump) before the load starts; SOAK_BAD_COMMAND=1 makes
the driver delete a volume that does not exist once. SOAK_NAME names the logs:
build/test-logs/NAME.serial.log (the console), NAME.fio.log (fio's output), NAME.report.
Every process (QEMU, fio) is stopped by its PID; every wait has a timeout.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import appliance_lib as ap  # noqa: E402

qh, al = ap.qh, ap.al

NAME = os.environ.get("SOAK_NAME", "soak")
if os.environ.get("SOAK_SECONDS"):
    TOTAL = float(os.environ["SOAK_SECONDS"])
else:
    TOTAL = 60 * float(os.environ.get("SOAK_MINUTES", "30"))
TOTAL = max(10, int(TOTAL))
INTERVAL = int(os.environ.get("SOAK_INTERVAL", "0")) or min(60, max(5, TOTAL // 30))
SNAP_SECS = float(os.environ.get("SOAK_SNAP_SECONDS", "5"))
KEEP = int(os.environ.get("SOAK_KEEP", "4"))
MEM_TOL = float(os.environ.get("SOAK_MEM_TOLERANCE_MIB", "2")) * (1 << 20)
CMD_TIMEOUT = float(os.environ.get("SOAK_CMD_TIMEOUT", "120"))
CORRUPT = os.environ.get("SOAK_CORRUPT") == "1"
BAD_COMMAND = os.environ.get("SOAK_BAD_COMMAND") == "1"
FIO_GRACE = 600  # past the runtime: connecting, the last verify backlog, the final report

MIB = 1 << 20
VOL_SIZE = "256M"
FILL = 32 * MIB  # vol2's filled region, read by the readers and verified at the end
BS_POOL = 64 << 10
LOG = os.path.join(qh.LOG_DIR, NAME + ".fio.log")
REPORT = os.path.join(qh.LOG_DIR, NAME + ".report")

failures = []
report_lines = []


def say(line=""):
    print(line, flush=True)
    report_lines.append(line)


def fail(reason):
    failures.append(reason)
    say("FAILURE: " + reason)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---- The shell -------------------------------------------------------------------------------

class LostCommand(Exception):
    pass


class Abort(Exception):
    """The run cannot go on (its message says why)."""


def sh(m, line, want=None, timeout=CMD_TIMEOUT):
    """Run @line on the serial shell; a timeout is a lost command (QEMU is killed by the
    harness), an `error`/`usage` reply or one without @want (a regex) a failure."""
    try:
        out = m.sh(line, timeout)
    except qh.BootFailure as e:
        raise LostCommand("%s: %s" % (line, e))
    if re.search(r"\berror\b|^usage", out, re.M) or (want and not re.search(want, out)):
        fail("error reply to `%s`: %s" % (line, out.strip()[:300]))
    return out


UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def connections(m):
    """The appliance's NBD connections (`nbd clients`)."""
    mt = re.search(r"^(\d+) connection\(s\)", sh(m, "nbd clients", r"connection\(s\)"), re.M)
    return int(mt.group(1)) if mt else -1


def parse_mem(out):
    """`memory: 224 MiB total, 190 MiB free, 13.4 MiB heap, 8 regions` -> (free, heap) bytes."""
    m = re.search(r"memory: ([\d.]+) (\w+) total, ([\d.]+) (\w+) free, ([\d.]+) (\w+) heap", out)
    if not m:
        return None
    return (float(m.group(3)) * UNITS[m.group(4)], float(m.group(5)) * UNITS[m.group(6)])


def fmt_mib(b):
    return "%.1f" % (b / MIB)


# ---- fio -------------------------------------------------------------------------------------

def job_files(port):
    """The 16 connections (module docstring): one fio job file per volume, 4 jobs in each.

    One fio process per volume, each started once the previous one's connections are up: a
    single fio 3.33 process with 16 nbd jobs got 4 to 6 of its connections through to the
    firmware and left the others waiting for the handshake for good (the guest's TCP never saw
    them: `net` counted only the served connections, nothing refused, no pbuf shortage; the
    same fio against qemu-nbd on the host gets all 16), and four fio processes started at once
    under load lost two processes' connections the same way. 16 libnbd handles connecting at
    once from one Python process all get through."""
    # verify_state_save=0: no *-verify.state files left in the working directory.
    g = ("[global]\nioengine=nbd\nthread=1\ntime_based=1\nruntime=%d\nrandrepeat=0\n"
         "verify_fatal=1\nverify_state_save=0\nuri=nbd://127.0.0.1:%d/%%s\n" % (TOTAL, port))
    jobs = {
        "vol0": [("vol0-randwrite4k", "rw=randwrite\nbs=4k\niodepth=4\nsize=16m\noffset=0\n"
                  "offset_increment=16m\nnumjobs=4\nverify=crc32c\nverify_backlog=256\n"
                  "fsync=64\n")],
        "vol1": [("vol1-seqwrite256k", "rw=write\nbs=256k\niodepth=2\nsize=16m\noffset=0\n"
                  "offset_increment=16m\nnumjobs=4\nverify=crc32c\nverify_backlog=16\n"
                  "fsync=8\n")],
        "vol2": [("vol2-randread64k", "rw=randread\nbs=64k\niodepth=4\nsize=%d\nnumjobs=2\n"
                  % FILL),
                 ("vol2-randread4k", "rw=randread\nbs=4k\niodepth=8\nsize=%d\nnumjobs=2\n"
                  % FILL)],
        "vol3": [("vol3-randwrite64k", "rw=randwrite\nbs=64k\niodepth=2\nsize=32m\n"
                  "numjobs=2\nrate_iops=40\n"),
                 ("vol3-randtrim64k", "rw=randtrim\nbs=64k\niodepth=2\nsize=32m\n"
                  "numjobs=2\nrate_iops=20\n")],
    }
    return {v: (g % v) + "".join("\n[%s]\n%s" % j for j in js) for v, js in jobs.items()}


def fio_once(args, timeout):
    """A short fio run (fill, final verify): (exit status, output)."""
    r = subprocess.run(["fio", "--output-format=json", "--verify_state_save=0"] + args,
                       capture_output=True, text=True, timeout=timeout)
    with open(LOG, "a") as f:
        f.write("# fio %s\n%s\n%s\n" % (" ".join(args), r.stdout, r.stderr))
    return r.returncode, r.stdout + r.stderr


def verify_lines(text):
    return [ln.strip() for ln in text.splitlines()
            if "verify failed" in ln or "bad magic" in ln or "bad header" in ln][:4]


class FioRun:
    """One volume's load: one fio process; its --status-interval JSON reports (cumulative)
    collected as they come."""

    def __init__(self, vol, jobfile):
        self.vol = vol
        self.reports = []  # (monotonic time, totals dict)
        self.final = None
        self.lock = threading.Lock()
        self.err_path = "%s.%s.stderr" % (LOG, vol)
        self._err = open(self.err_path, "w")
        self._log = open("%s.%s" % (LOG, vol), "w")
        self.proc = subprocess.Popen(["fio", "--output-format=json",
                                      "--status-interval=%d" % INTERVAL, jobfile],
                                     stdout=subprocess.PIPE, stderr=self._err, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        buf = []
        for line in self.proc.stdout:
            self._log.write(line)
            if not buf and not line.startswith("{"):
                continue  # the nbd engine's "connected" lines
            buf.append(line)
            if line.rstrip() == "}":  # the end of one report (fio indents everything inside)
                try:
                    obj = json.loads("".join(buf))
                except ValueError:
                    continue
                buf = []
                with self.lock:
                    self.reports.append((time.monotonic(), totals(obj)))
                    self.final = obj
        self._log.flush()

    def running(self):
        return self.proc.poll() is None

    def latest(self):
        with self.lock:
            return self.reports[-1][1] if self.reports else dict.fromkeys(TOTAL_KEYS, 0)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(10)
        self._err.close()
        self._log.close()

    def stderr(self):
        with open(self.err_path) as f:
            return f.read()


TOTAL_KEYS = ("rb", "wb", "rio", "wio", "tio", "sync")


def totals(obj):
    t = dict.fromkeys(TOTAL_KEYS, 0)
    for j in obj.get("jobs", []):
        t["rb"] += j["read"]["io_bytes"]
        t["wb"] += j["write"]["io_bytes"]
        t["rio"] += j["read"]["total_ios"]
        t["wio"] += j["write"]["total_ios"]
        t["tio"] += j["trim"]["total_ios"]
        t["sync"] += j.get("sync", {}).get("total_ios", 0)
    return t


# ---- The run ---------------------------------------------------------------------------------

def corrupt_vol2(m):
    """SOAK_CORRUPT: 512 bytes of garbage into the data block holding vol2's 4th 64 KiB, in the
    data disk file under the running QEMU (it opens the file with the host's page cache, so
    the guest reads what we wrote). The pool was just committed: its mappings are on disk."""
    vid = al.parse_thin_list(m.sh("thin list"))["vol2"]["id"]
    d = al.thin_dump(m.disk("meta"))
    vblock = 3
    dblock = d["devices"][vid]["map"][vblock]
    bs = d["data_block_size"] * 512
    # Where pool_tdata starts on the data disk, from the VG itself: the PV's first extent
    # (1 MiB, or 16 MiB on disks of 1 GiB or more: docs/appliance.md "Limits") plus the LV's.
    rc, show, err = al.vg_show(m.disk("meta"), m.disk("data"))
    lv = re.search(r"^lv pool_tdata .* type linear pv (\S+) pe (\d+)$", show, re.M)
    pv = lv and re.search(r"^pv %s id \S+ pe_start (\d+) " % lv.group(1), show, re.M)
    ext = re.search(r"extent_size (\d+)", show)
    if rc or not (lv and pv and ext):
        raise RuntimeError("SOAK_CORRUPT: no linear pool_tdata in the VG: %s%s" % (show, err))
    off = (int(pv.group(1)) + int(lv.group(2)) * int(ext.group(1))) * 512 + dblock * bs + 4096
    with open(m.disk("data"), "r+b") as f:
        f.seek(off)
        f.write(os.urandom(512))
        f.flush()
        os.fsync(f.fileno())
    say("SOAK_CORRUPT: overwrote 512 bytes of vol2's block %d (data block %d, disk offset %d)"
        % (vblock, dblock, off))


class Driver:
    """Snapshots and deletes on the shell, `pool commit`, `mem`: until @until (monotonic)."""

    def __init__(self, m):
        self.m = m
        self.snaps = []  # (name, root volume), oldest first
        self.taken = self.deleted = self.commits = 0
        self.n = 0
        self.mem = []  # (monotonic time, free, heap)

    def mem_now(self):
        out = sh(self.m, "mem", r"memory: ")
        v = parse_mem(out)
        if v:
            self.mem.append((time.monotonic(), v[0], v[1]))
        return v

    def round(self):
        self.n += 1
        vols = ["vol2", "vol0", "vol3", "vol1"]  # vol2 first: final_verify() wants one
        if self.n % 5 == 0 and self.snaps:
            origin, root = self.snaps[-1]
        else:
            origin = vols[(self.n - 1) % 4]
            root = origin
        name = "s%05d" % self.n
        sh(self.m, "thin snapshot %s %s" % (origin, name), r"created %s: snapshot of %s"
           % (name, origin))
        self.snaps.append((name, root))
        self.taken += 1
        while len(self.snaps) > KEEP:
            # The oldest, but never the newest of vol2 (final_verify() reads it).
            keep = [i for i, (_, r) in enumerate(self.snaps) if r == "vol2"][-1:]
            old, _ = self.snaps.pop(0 if keep != [0] else 1)
            sh(self.m, "thin delete %s" % old, r"deleted %s" % old)
            self.deleted += 1
        if BAD_COMMAND and self.n == 1:
            sh(self.m, "thin delete no-such-volume", r"deleted no-such-volume")
        if self.n % 3 == 0:
            sh(self.m, "pool commit", r"^committed")
            self.commits += 1


def summed(runs):
    """The sum of each fio's latest (cumulative) report."""
    cur = dict.fromkeys(TOTAL_KEYS, 0)
    for r in runs:
        for k, v in r.latest().items():
            cur[k] += v
    return cur


def report_row(prev, runs, drv, mem):
    """One row: rates from @prev (time, totals) to now (the sum of each fio's latest report),
    the appliance's memory @mem, the host's load. Returns the new (time, totals)."""
    t1 = time.monotonic()
    cur = summed(runs)
    t0, a = prev
    dt = max(t1 - t0, 1e-3)
    d = {k: (cur[k] - a[k]) / dt for k in TOTAL_KEYS}
    free, heap = mem if mem else (0, 0)
    say("%6s %9.2f %9.2f %8.0f %8.0f %7.0f %7.0f %6d %6d %8s %8s  %s"
        % ("%.0f" % (t1 - START_LOAD), d["rb"] / MIB, d["wb"] / MIB, d["rio"],
           d["wio"], d["tio"], d["sync"], drv.taken, drv.deleted, fmt_mib(free), fmt_mib(heap),
           loadavg()))
    return t1, cur


def main():
    global START_LOAD, LOAD_END
    for tool in ("fio", "thin_check", "thin_dump"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            sys.exit("soak: %s is missing (run scripts/setup)" % tool)
    for f in (qh.ESP_IMG, al.LVM_TOOL):
        if not os.path.exists(f):
            sys.exit("soak: %s is missing (make all)" % f)
    os.makedirs(qh.LOG_DIR, exist_ok=True)
    open(LOG, "w").close()
    tmp = al.scratch()
    mem_start = mem_end = None
    drv = None
    say("soak %s: %d s of mixed NBD load on the firmware in QEMU (TCG, -m 256M), 16 connections,"
        % (NAME, TOTAL))
    say("a snapshot every %.0f s (at most %d kept), rows every %d s; host load average %s"
        % (SNAP_SECS, KEEP, INTERVAL, loadavg()))
    m = ap.DiskMachine(NAME, tmp, disks=(("meta", 64 * MIB), ("data", 2048 * MIB)))
    runs = []
    try:
        with m:
            m.boot_appliance()
            say("booted, NBD answers %.1f s after QEMU started" % m.elapsed())
            for v in ("vol1", "vol2", "vol3"):
                sh(m, "thin create %s %s" % (v, VOL_SIZE), r"created %s" % v)
                sh(m, "export add %s" % v, r"exported %s" % v)
            rc, out = fio_once(["--name=fill", "--ioengine=nbd", "--uri=" + m.uri("vol2"),
                                "--rw=write", "--bs=64k", "--iodepth=8", "--size=%d" % FILL,
                                "--verify=crc32c", "--do_verify=0"], 600)
            if rc:
                raise Abort("filling vol2 failed: %s" % out[-500:])
            sh(m, "pool commit", r"^committed")
            if CORRUPT:
                corrupt_vol2(m)
            drv = Driver(m)
            mem_start = drv.mem_now()
            say("memory at the start (after boot, volumes and fill): %s MiB free, %s MiB heap"
                % (fmt_mib(mem_start[0]), fmt_mib(mem_start[1])) if mem_start else
                "memory at the start: `mem` printed no figures")
            # The fill's connection must be gone: 16 is the per-client cap (all of QEMU's
            # user-net connections come from one address).
            deadline = time.monotonic() + 30
            while connections(m):
                if time.monotonic() > deadline:
                    raise Abort("the fill's connection is still open after 30 s")
                time.sleep(0.5)
            runs = []
            for vol, text in job_files(m.port).items():
                jf = os.path.join(tmp, vol + ".fio")
                with open(jf, "w") as f:
                    f.write(text)
                runs.append(FioRun(vol, jf))
                # One volume's connections up before the next fio starts: all 16 started at
                # once, some stayed in the handshake for good (job_files()).
                want = 4 * len(runs)
                deadline = time.monotonic() + 60
                while connections(m) < want:
                    if time.monotonic() > deadline:
                        raise Abort("%d of %d NBD connections up 60 s after fio on %s "
                                          "started" % (connections(m), want, vol))
                    time.sleep(0.5)
            # The load is on from here: rows, snapshots and the memory quarters count from
            # the moment all 16 connections are up (fio's runtimes from their own starts).
            START_LOAD = time.monotonic()
            say()
            say("One row per interval: t = seconds since all 16 connections were up; rates over")
            say("the interval, all four fio processes together (reads include fio's verify reads")
            say("of what it wrote); snaps/dels = snapshots taken/deleted so far; free/heap = the")
            say("appliance's `mem`; host load = the host's 1/5/15-minute load average.")
            say("%6s %9s %9s %8s %8s %7s %7s %6s %6s %8s %8s  %s"
                % ("t(s)", "rd MiB/s", "wr MiB/s", "rd IOPS", "wr IOPS", "trim/s", "flush/s",
                   "snaps", "dels", "free MiB", "heap MiB", "host load"))
            next_snap = START_LOAD + SNAP_SECS
            next_row = START_LOAD + INTERVAL + 1  # just after fio's reports of that interval
            prev = (START_LOAD, summed(runs))
            hard_end = START_LOAD + TOTAL + FIO_GRACE
            while any(r.running() for r in runs):
                now = time.monotonic()
                if now > hard_end:
                    fail("fio still running %d s past its runtime: killed" % FIO_GRACE)
                    break
                if now >= next_snap and now < START_LOAD + TOTAL:
                    drv.round()
                    next_snap = max(next_snap + SNAP_SECS, time.monotonic())
                if now >= next_row:
                    prev = report_row(prev, runs, drv, drv.mem_now())
                    next_row += INTERVAL
                time.sleep(0.2)
            for r in runs:
                r.stop()
            LOAD_END = time.monotonic()
            # No row for the stretch after the last one: fio's final report would be spread
            # over a second or two. The totals below have all of it.
            say()
            check_fio(runs)
            final_verify(m, drv)
            out = sh(m, "pool check", r"pool check: clean", timeout=900)
            say("pool check: " + ("clean" if "pool check: clean" in out else out.strip()[-300:]))
            mem_end = drv.mem_now()
            say("memory at the end: %s MiB free, %s MiB heap" % (fmt_mib(mem_end[0]),
                                                                 fmt_mib(mem_end[1]))
                if mem_end else "memory at the end: `mem` printed no figures")
            say("snapshots: %d taken, %d deleted, %d pool commits from the shell"
                % (drv.taken, drv.deleted, drv.commits))
            m.send("poweroff\r")
            rc = m.wait_exit(120)
            if rc != qh.RC_POWEROFF:
                fail("poweroff: QEMU exited with status %s" % rc)
        rc, text = al.thin_check(m.disk("meta"))
        if rc:
            fail("thin_check on pool_tmeta: status %d: %s" % (rc, text.strip()[-500:]))
        else:
            say("thin_check on pool_tmeta: clean")
    except LostCommand as e:
        fail("lost command: %s" % e)
    except Abort as e:
        fail(str(e))
    except (qh.BootFailure, al.Failure) as e:
        fail("appliance: %s" % e)
    except subprocess.TimeoutExpired as e:
        fail("timed out: %s" % e)
    finally:
        for r in runs:
            r.stop()
        m.stop()
    if drv:
        check_memory(drv)
    say("serial console: %s; fio: %s" % (m.log_path, LOG))
    if failures:
        say("soak %s: FAIL (%d reason(s)):" % (NAME, len(failures)))
        for f in failures:
            say("  - " + f)
    else:
        say("soak %s: PASS" % NAME)
    with open(REPORT, "w") as f:
        f.write("\n".join(report_lines) + "\n")
    return 1 if failures else 0


def check_fio(runs):
    jobs, bad = [], []
    for r in runs:
        err = r.stderr()
        found = verify_lines(err)
        bad += found
        if found:
            fail("fio verify on %s: %s" % (r.vol, " | ".join(found)))
        if r.proc.returncode:
            fail("fio on %s exited with status %d: %s" % (r.vol, r.proc.returncode,
                                                         err.strip()[-300:]))
        jobs += (r.final or {}).get("jobs", [])
    if len(jobs) != 16:
        fail("fio reported %d jobs, not 16" % len(jobs))
    for j in jobs:
        if j.get("error"):
            fail("fio job %s: error %d (%s)" % (j["jobname"], j["error"],
                                                 os.strerror(j["error"])))
    if jobs:
        tot = totals({"jobs": jobs})
        el = max(1, max(j.get("elapsed", 0) for j in jobs))
        say("fio over the whole run (%d s): %.2f MiB/s read, %.2f MiB/s written, %.0f read IOPS,"
            " %.0f write IOPS, %d trims, %d flushes; verify errors: %d"
            % (el, tot["rb"] / MIB / el, tot["wb"] / MIB / el, tot["rio"] / el,
               tot["wio"] / el, tot["tio"], tot["sync"], len(bad)))


def final_verify(m, drv):
    """vol2 and the newest snapshot of it read back whole with fio's verify."""
    targets = [("vol2", "vol2")]
    snaps = [s for s, root in drv.snaps if root == "vol2"]
    if snaps:
        sh(m, "export add %s --read-only" % snaps[-1], r"exported %s" % snaps[-1])
        targets.append((snaps[-1], snaps[-1]))
    else:
        fail("no snapshot of vol2 left to verify")
    for vol, export in targets:
        rc, out = fio_once(["--name=verify-" + vol, "--ioengine=nbd", "--uri=" + m.uri(export),
                            "--rw=read", "--bs=64k", "--iodepth=8", "--size=%d" % FILL,
                            "--verify=crc32c", "--verify_fatal=1"], 600)
        bad = verify_lines(out)
        if rc or bad:
            fail("final verify of %s: %s" % (vol, " | ".join(bad) or out.strip()[-300:]))
        else:
            say("final verify of %s (%d MiB, crc32c): clean" % (vol, FILL // MIB))
    if len(targets) > 1:
        sh(m, "export remove %s" % targets[1][1], r"removed")


def check_memory(drv):
    """Growth between the load's first and last quarter (module docstring)."""
    load = [x for x in drv.mem if START_LOAD <= x[0] <= (LOAD_END or x[0])]
    if len(load) < 2:
        fail("too few memory readings during the load (%d)" % len(load))
        return
    span = load[-1][0] - START_LOAD
    first = [x for x in load if x[0] - START_LOAD <= span / 4] or load[:1]
    last = [x for x in load if x[0] - START_LOAD >= 3 * span / 4] or load[-1:]
    heap_growth = max(x[2] for x in last) - max(x[2] for x in first)
    free_drop = min(x[1] for x in first) - min(x[1] for x in last)
    say("memory, first vs last quarter of the load (%d and %d readings): heap %+.1f MiB, "
        "free %+.1f MiB (tolerance %.1f MiB)" % (len(first), len(last), heap_growth / MIB,
                                                 -free_drop / MIB, MEM_TOL / MIB))
    if heap_growth > MEM_TOL:
        fail("heap grew by %.1f MiB from the first to the last quarter" % (heap_growth / MIB))
    if free_drop > MEM_TOL:
        fail("free memory fell by %.1f MiB from the first to the last quarter"
             % (free_drop / MIB))


START_LOAD = LOAD_END = 0.0
if __name__ == "__main__":
    # SIGTERM (a timeout around us) unwinds like an exception: QEMU and fio are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("soak: terminated"))
    sys.exit(main())
