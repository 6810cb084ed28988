#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""`poweroff` and `reboot` commit the pool first (boot/efi_main.c's power hook): writes a
client saw acknowledged, with no FLUSH, survive a clean shutdown. The pool's periodic commit
is stretched to 10 minutes (fw_cfg test-commit-interval-ms), so only the shutdown's commit can
have kept them: boot 1 writes and powers off, boot 2 reads that back, writes more and reboots
(QEMU exits at the reset: -no-reboot), boot 3 reads both."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import appliance_lib as ap  # noqa: E402

qh, al = ap.qh, ap.al
c = qh.Checks("qemu/shutdown_commit")
qh.require_image(c)
tmp = al.scratch()
SLOW = {"test-commit-interval-ms": "600000"}
one, two = al.pattern("before-poweroff", 1 << 20), al.pattern("before-reboot", 1 << 20)

try:
    m = ap.DiskMachine("qemu-shutdown-commit-1", tmp, fw_cfg=SLOW)
    with m:
        m.boot_appliance()
        h = al.connect(m.uri("vol0"))
        ap.pwrite(h, one, 0)  # acknowledged, never flushed
        h.shutdown()
        m.send("poweroff\r")
        c.check("poweroff-commits", m.expect("pool committed before power-off", 60) is not None)
        c.check("poweroff-status", m.wait_exit(60) == qh.RC_POWEROFF)
    m = ap.DiskMachine("qemu-shutdown-commit-2", tmp, fw_cfg=SLOW)
    with m:
        m.boot_appliance()
        h = al.connect(m.uri("vol0"))
        c.check("write-kept-across-poweroff", ap.pread(h, len(one), 0) == one)
        ap.pwrite(h, two, 4 << 20)
        h.shutdown()
        m.send("reboot\r")
        c.check("reboot-commits", m.expect("pool committed before power-off", 60) is not None)
        m.wait_exit(60)
    m = ap.DiskMachine("qemu-shutdown-commit-3", tmp)
    with m:
        m.boot_appliance()
        h = al.connect(m.uri("vol0"))
        c.check("write-kept-across-reboot", ap.pread(h, len(two), 4 << 20) == two)
        h.shutdown()
        m.send("poweroff\r")
        m.wait_exit(60)
    rc, out = al.thin_check(m.disk("meta"))
    c.check("thin-check-clean", rc == 0, out)
except (qh.BootFailure, al.Failure) as e:
    c.check("no-boot-failure", False, str(e))
c.finish()
