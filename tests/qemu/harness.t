#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The harness itself fails fast: an ESP without \\EFI\\BOOT\\BOOTX64.EFI makes OVMF start its
EFI shell, which waits forever, and a machine with no ESP at all makes OVMF try a network boot
(a minute or more per attempt); the harness must report each as a failure within seconds (an
early-fail marker), not after its boot timeout, and must have killed QEMU. Disks named in
random_disks (the benches' and scripts/tbprof's data disk) hold random data from the first to
the last byte; the others stay sparse zeros."""
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_harness as qh  # noqa: E402

c = qh.Checks("qemu/harness")



def expect_early_failure(prefix, machine, marker):
    """Boot @machine; the harness must fail it on an early-fail marker containing @marker,
    within seconds, and leave QEMU stopped."""
    t0 = time.monotonic()
    err = None
    try:
        with machine:
            machine.boot()
    except qh.BootFailure as e:
        err = str(e)
    took = time.monotonic() - t0
    c.check(prefix + "-detected", err is not None and "early-fail marker" in err and marker in err,
            str(err))
    c.check(prefix + "-fast", took < 30, "took %.1fs" % took)
    c.check(prefix + "-qemu-killed", machine.proc is not None and machine.proc.poll() is not None)
    c.note("%s (%.1fs)" % (err, took))


os.makedirs(qh.TMP_DIR, exist_ok=True)
empty_esp = os.path.join(qh.TMP_DIR, "empty-esp-%d.img" % os.getpid())
try:
    qh.sparse_file(empty_esp, 32 << 20)
    subprocess.run(["mkfs.vfat", "-n", "EMPTY", empty_esp], check=True,
                   stdout=subprocess.DEVNULL)
    # An ESP without BOOTX64.EFI: OVMF starts its EFI shell.
    expect_early_failure("efi-shell", qh.Machine("qemu-harness-noboot", esp=empty_esp, net=False,
                                                 disks=()), "EFI Internal Shell")
finally:
    os.unlink(empty_esp)

# random_disks: checked on the files _args() makes, without starting QEMU.
m = qh.Machine("qemu-harness-random", disks=(("meta", 1 << 20), ("data", (3 << 20) + 4096)),
               random_disks=("data",))
shutil.rmtree(m.tmp, ignore_errors=True)
os.makedirs(m.tmp)
try:
    m._args()
    with open(os.path.join(m.tmp, "data.img"), "rb") as f:
        data = f.read()
    with open(os.path.join(m.tmp, "meta.img"), "rb") as f:
        meta = f.read()
    zero = bytes(4096)
    blocks = [data[i:i + 4096] for i in range(0, len(data), 4096)]
    c.check("random-disk-size", len(data) == (3 << 20) + 4096, str(len(data)))
    c.check("random-disk-filled", all(b != zero for b in blocks) and len(set(blocks)) == len(blocks),
            "%d of %d blocks zero or repeated" % (len(blocks) - len(set(blocks) - {zero}), len(blocks)))
    c.check("other-disk-zero", meta == bytes(1 << 20))
finally:
    shutil.rmtree(m.tmp, ignore_errors=True)
try:
    qh.Machine("qemu-harness-random-bad", random_disks=("dta",))
    c.check("random-disk-unknown-name", False, "no error for a disk that does not exist")
except ValueError as e:
    c.check("random-disk-unknown-name", "dta" in str(e), str(e))

# No ESP: OVMF falls back to PXE over the NIC.
expect_early_failure("network-boot", qh.Machine("qemu-harness-pxe", esp=None, net=True, disks=()),
                     "PXE")
c.finish()
