#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`reboot` really resets the machine: without -no-reboot the firmware must come up a second
time (a second banner and prompt), and `poweroff` then still ends QEMU with status 0."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_harness as qh  # noqa: E402

c = qh.Checks("qemu/reboot")
qh.require_image(c)

m = qh.Machine("qemu-reboot", no_reboot=False, net=False)
try:
    with m:
        m.boot()
        c.check("first-boot", True)
        m.send("reboot\r")
        m.boot(timeout=m.elapsed() + qh.BOOT_TIMEOUT)
        c.check("second-boot", m.output.count(qh.BANNER) == 2)
        c.note("second prompt after %.1fs" % m.elapsed())
        m.send("poweroff\r")
        rc = m.wait_exit(30)
        c.check("poweroff-rc0", rc == qh.RC_POWEROFF, "QEMU status %s" % rc)
except qh.BootFailure as e:
    c.check("no-boot-failure", False, str(e))
c.finish()
