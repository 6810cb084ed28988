#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A deliberate CPU exception after ExitBootServices (fw_cfg switch opt/thinbox/test-fault)
is reported on serial with its vector, error code, RIP and CR2, and QEMU exits with the
failure status 35 (isa-debug-exit) in bounded time instead of hanging. Without the
isa-debug-exit device the firmware says so and halts (QEMU is then killed by the harness).
The machines boot in parallel."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_harness as qh  # noqa: E402

c = qh.Checks("qemu/fault")
qh.require_image(c)

CASES = (("gp", 13, None), ("pf", 14, "0x7f0000000000"))
machines = [qh.Machine("qemu-fault-" + kind, fw_cfg={"test-fault": kind}, net=False)
            for kind, _, _ in CASES]
try:
    for m in machines:
        m.start()
    for m, (kind, vec, cr2) in zip(machines, CASES):
        rc = m.wait_exit(qh.BOOT_TIMEOUT)
        line = re.search(r"thinbox: EXCEPTION vec=(\d+) \S+ err=(0x[0-9a-f]+) "
                         r"rip=(0x[0-9a-f]+) cr2=(0x[0-9a-f]+)", m.output)
        c.check(kind + "-rc35", rc == qh.RC_DEBUG_FAIL, "QEMU status %s" % rc)
        c.check(kind + "-vector", line and int(line.group(1)) == vec,
                line.group(0) if line else "no EXCEPTION line")
        if cr2:
            c.check(kind + "-cr2", line and line.group(4) == cr2,
                    line.group(0) if line else "no EXCEPTION line")
        c.check(kind + "-after-ebs", qh.EBS_OK in m.output)
        c.note("%s: QEMU exited after %.1fs" % (kind, m.elapsed()))

    # No isa-debug-exit: a clear message, then a halt (QEMU keeps running until killed).
    m = qh.Machine("qemu-fault-nodebugexit", fw_cfg={"test-fault": "ud"}, net=False,
                   debug_exit=False)
    machines.append(m)
    m.start()
    try:
        m.expect("thinbox: EXCEPTION vec=6 ", qh.BOOT_TIMEOUT, allow=(qh.EXCEPTION,))
        m.expect("no isa-debug-exit device", 10, allow=(qh.EXCEPTION,))
        halted = m.wait_exit(2) is None  # still running: halted, not exited
        c.check("no-debug-exit-halts", halted, "QEMU exited with %s" % m.rc)
    except qh.BootFailure as e:
        c.check("no-debug-exit-halts", False, str(e))
finally:
    for m in machines:
        m.stop()
c.finish()
