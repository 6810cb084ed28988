#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Bus mastering, timeouts and missing disks (two boots):

1. iommu_platform=on on every virtio device, and bus mastering cleared on all of them before
   the drivers start (test-clear-bme): QEMU then really refuses DMA without it, so the
   self-test passing on 00:04.0 and the ARP round trip prove the drivers set it themselves.
   On 00:05.0 the driver is told to leave it off (test-nobme): its request never completes
   and ends in -ETIMEDOUT after the (shortened) 2 s timeout instead of hanging, and the dead
   device then refuses requests with -EIO.
2. Only an undersized disk at 00:04.0 and no disk at 00:05.0: both are reported clearly at
   boot, `disks` says which roles are missing, and the shell still works.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_harness as qh  # noqa: E402
import virtio_lib as vl  # noqa: E402

c = qh.Checks("qemu/virtio_errors")
qh.require_image(c)

m = vl.VirtioMachine("qemu-virtio-iommu", device_opts="iommu_platform=on",
                     fw_cfg={"test-selftest": "1", "test-clear-bme": "1",
                             "test-nobme": "00:05.0"})
try:
    with m:
        m.boot()
        c.check("bme-cleared-first", "test-clear-bme: bus mastering cleared" in m.output)
        out = m.command("disks")
        c.check("access-platform-negotiated", "access-platform" in out, repr(out))
        out = m.command("vselftest disk 00:04.0", timeout=120)
        c.check("iommu-selftest-passes", "vselftest: 00:04.0 PASS" in out, out)
        out = m.command("vselftest net", timeout=30)
        c.check("iommu-net-passes", "vselftest: net PASS" in out, out)
        out = m.command("vselftest timeout 00:05.0", timeout=60)
        t = re.search(r"timeout 00:05\.0 rc=-?\d+ \(ETIMEDOUT\) after (\d+) ms", out)
        c.check("never-completing-device-times-out",
                t and 1500 <= int(t.group(1)) <= 20000, repr(out))
        c.check("dead-device-refuses", re.search(r"timeout 00:05\.0 then rc=-\d+ \(EIO\)", out),
                repr(out))
        out = m.command("disks")
        c.check("disks-shows-dead", re.search(r"00:05\.0.*DEAD", out), repr(out))
        m.send("poweroff\r")
        c.check("poweroff-rc0", m.wait_exit(30) == qh.RC_POWEROFF)
except qh.BootFailure as e:
    c.check("iommu-boot", False, str(e))

m = vl.VirtioMachine("qemu-virtio-missing", disks=(("meta", 1 << 20),))
try:
    with m:
        m.boot()
        log = m.output
        c.check("undersized-reported",
                "WARNING: metadata disk: 00:04.0 is too small: 1048576 bytes, needs at least"
                in log, "boot log lacks the message")
        c.check("missing-reported",
                "WARNING: data disk: missing: no virtio-blk device at PCI 00:05.0" in log)
        c.check("pool-warning", "2 disk role(s) empty" in log)
        out = m.command("disks")
        c.check("disks-says-missing", "roles: metadata MISSING, data MISSING" in out, repr(out))
        out = m.command("help")
        c.check("shell-still-works", "disks" in out and "poweroff" in out, repr(out))
        m.send("poweroff\r")
        c.check("missing-poweroff-rc0", m.wait_exit(30) == qh.RC_POWEROFF)
except qh.BootFailure as e:
    c.check("missing-boot", False, str(e))
c.finish()
