# SPDX-License-Identifier: MIT
"""One fio job on a booted appliance, for the developer's profilers (scripts/tbprof,
scripts/hostprof): the machine (its data disk of random data exported whole, or the pool's
vol0), the fill a read job on vol0 needs, and the job itself through user networking."""
import os
import subprocess
import sys

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "qemu"))
import qemu_harness as qh  # noqa: E402

# name: (fio's rw, block size, queue depth)
JOBS = {"r16": ("randread", "4k", 16), "seqr": ("read", "256k", 8),
        "seqw": ("write", "256k", 8), "prov": ("randwrite", "4k", 16)}


def add_arguments(ap):
    """The options both profilers take."""
    ap.add_argument("--job", choices=sorted(JOBS), default="r16")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--size", type=int, default=256, help="data disk MiB")
    ap.add_argument("--volume", action="store_true", help="serve the pool's vol0")


def machine(name, a, extra_args):
    """The appliance for job @a (parsed options): the whole data disk of random data, or with
    --volume a fresh pool (data disk twice the job's size) serving vol0."""
    size = a.size << 20
    disks = (("meta", 16 << 20), ("data", 2 * size if a.volume else size))
    return qh.Machine(name, disks=disks, random_disks=() if a.volume else ("data",),
                      fw_cfg=None if a.volume else {"test-export-disk": "data"},
                      extra_args=extra_args)


def export(a):
    return "vol0" if a.volume else "disk"


def prepare(m, a):
    """After the boot: waits for the network, fills vol0 when the job reads it; the NBD URI."""
    m.expect("thinbox: net ", 60)
    uri = "nbd://127.0.0.1:%d/%s" % (m.port, export(a))
    if a.volume and a.job in ("r16", "seqr"):  # something to read
        subprocess.run(["fio", "--name=fill", "--ioengine=nbd", "--uri=" + uri, "--rw=write",
                        "--bs=256k", "--iodepth=8", "--size=%d" % (a.size << 20)],
                       capture_output=True, check=True)
    return uri


def run(uri, a):
    """The job, for --seconds; fio's finished process (its report in stdout)."""
    rw, bs, qd = JOBS[a.job]
    return subprocess.run(["fio", "--name=" + a.job, "--ioengine=nbd", "--uri=" + uri,
                           "--rw=" + rw, "--bs=" + bs, "--iodepth=%d" % qd,
                           "--size=%d" % (a.size << 20), "--time_based",
                           "--runtime=%d" % a.seconds],
                          capture_output=True, text=True, timeout=a.seconds + 120)


def describe(a):
    """The job as the profilers' first line names it, such as: randread 4k QD16."""
    rw, bs, qd = JOBS[a.job]
    return "%s %s QD%d" % (rw, bs, qd)


def iops_lines(r):
    """fio's result lines (IOPS, bandwidth)."""
    return [l.strip() for l in r.stdout.splitlines() if "IOPS=" in l]
