#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""nbd-tester-client (the NBD project's own test client, scripts/nbd-tester-client) against
the firmware in QEMU, in one boot (test-export-disk=data: the 64 MiB data disk exported as
`disk`, through the user network's port forward): its plain cases, one line each, as
tests/nbd/tester.t runs them against the host build (docs/nbd.md "Tests").

integrity runs first, on the fresh (zeroed) disk, since the client expects blocks it has not
written to read as zeroes; the throughput cases then write the whole disk. Not run here:
integrityhuge (requests of up to 47 MiB; the firmware's maximum payload is 4 MiB by design,
docs/nbd.md "Limits", so it answers them EINVAL), rowrite and cfgmulti (the switch exports
one writable disk), TLS (not in the firmware yet), and the cases tester.t leaves out.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_harness as qh  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
c = qh.Checks("qemu/tester")
qh.require_image(c)
b = subprocess.run([os.path.join(ROOT, "scripts", "nbd-tester-client")], capture_output=True,
                   text=True, timeout=300)
if b.returncode:
    c.check("builds-nbd-tester-client", False, b.stderr[-300:])
    c.finish()
client = b.stdout.strip()
traces = os.path.dirname(client)
ENV = dict(os.environ, NBD_TEST_SILENT="1")


def case(name, args, timeout=90):
    t0 = time.monotonic()
    try:
        r = subprocess.run([client] + args, capture_output=True, text=True, timeout=timeout,
                           env=ENV)
        ok, out = r.returncode == 0, r.stdout + r.stderr
    except subprocess.TimeoutExpired:
        ok, out = False, "timed out after %ds" % timeout
    c.check(name, ok, " ".join(out.split("\n")[-4:]))
    c.note("%s: %.1fs" % (name, time.monotonic() - t0))


m = qh.Machine("qemu-tester", disks=(("meta", 16 << 20), ("data", 64 << 20)),
               fw_cfg={"test-export-disk": "data"})
try:
    with m:
        m.boot()
        m.expect("thinbox: net ", 30)
        port = str(m.port)
        case("integrity", ["-N", "disk", "-i", "-t", os.path.join(traces, "integrity-test.tr"),
                           "127.0.0.1", port], 180)
        case("cfg1", ["-N", "disk", "127.0.0.1", port])
        case("write", ["-N", "disk", "-w", "127.0.0.1", port])
        case("flush", ["-N", "disk", "-w", "-f", "127.0.0.1", port], 180)
        case("cfgsize", ["-o", "-N", "disk", "127.0.0.1", port])
        case("handshake", ["-h", "-N", "disk", "127.0.0.1", port])
        m.send("poweroff\r")
        rc = m.wait_exit(30)
        c.check("poweroff-rc0", rc == qh.RC_POWEROFF, "QEMU status %s" % rc)
        c.check("no-exception", qh.EXCEPTION not in m.output and "PANIC" not in m.output)
        c.note("boot to poweroff %.1fs" % m.elapsed())
except qh.BootFailure as e:
    c.check("no-boot-failure", False, str(e))
c.finish()
