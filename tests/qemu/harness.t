#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The harness itself fails fast: an ESP without \\EFI\\BOOT\\BOOTX64.EFI makes OVMF start its
EFI shell, which waits forever, and a machine with no ESP at all makes OVMF try a network boot
(a minute or more per attempt); the harness must report each as a failure within seconds (an
early-fail marker), not after its boot timeout, and must have killed QEMU."""
import os
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

# No ESP: OVMF falls back to PXE over the NIC.
expect_early_failure("network-boot", qh.Machine("qemu-harness-pxe", esp=None, net=True, disks=()),
                     "PXE")
c.finish()
