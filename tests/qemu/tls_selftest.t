#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""mbedTLS in the firmware (docs/tls.md): `tls selftest` runs, inside the EFI image, the in-memory
PSK handshake and 64 KiB echo that tests/unit/tls/test_mbedtls_build.c runs on the host, with
the configuration's default suites, ECDHE-PSK with ChaCha20-Poly1305 and plain PSK with
AES-256-GCM; a wrong key is refused. The command prints the date mbedTLS checks certificates
against (newlib's time() over the CMOS clock): QEMU's RTC follows the host's UTC clock, so it
must be within a minute of the host's time. The DRBG is seeded from plat_random() (virtio-rng
here); on a machine with no entropy source (no virtio-rng, `-cpu qemu64,-rdrand`) the selftest
refuses to run. `tls bogus` prints the usage and fails.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_harness as qh  # noqa: E402

c = qh.Checks("qemu/tls_selftest")
qh.require_image(c)

SUITES = {
    "psk default": "TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256",
    "ecdhe-psk": "TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256",
    "psk": "TLS-PSK-WITH-AES-256-GCM-SHA384",
}

m = qh.Machine("qemu-tls-selftest", disks=(), net=False)
none = qh.Machine("qemu-tls-selftest-noentropy", disks=(), net=False, rng=False,
                  extra_args=["-cpu", "qemu64,-rdrand"])
try:
    m.start()
    none.start()
    try:
        m.boot()
        host_before = time.time()
        out = qh.strip_ansi(m.command("tls selftest", timeout=120)).replace("\r", "")
        host_after = time.time()
        for line in out.strip().split("\n"):
            c.note(line)
        c.check("version", re.search(r"^tls: mbedTLS 2\.28\.\d+: TLS 1\.2", out, re.M), out)
        c.check("seeded-from-plat-random", "tls: randomness: plat_random()" in out and
                "NOT an entropy source" not in out, out)
        for label, suite in SUITES.items():
            line = re.search(r"^tls: %s: (.*)$" % re.escape(label), out, re.M)
            c.check("handshake-" + label.replace(" ", "-"),
                    line and line.group(1).startswith("TLSv1.2 %s, 65536 bytes echoed" % suite)
                    and line.group(1).endswith(": ok"), line.group(0) if line else out)
        c.check("wrong-key-refused", re.search(r"^tls: wrong key: refused \(", out, re.M), out)
        clock = re.search(r"^tls: certificate clock (-?\d+) ", out, re.M)
        c.check("certificate-clock-is-host-time",
                clock and host_before - 60 <= int(clock.group(1)) <= host_after + 60,
                "guest %s, host %.0f" % (clock.group(1) if clock else None, host_before))
        c.check("passed", "tls selftest: passed" in out, out)
        c.check("exit-status-0", "FAILED" not in out)

        out = m.command("tls bogus")
        c.check("usage", "usage: tls [selftest]" in out, repr(out))

        m.send("poweroff\r")
        rc = m.wait_exit(30)
        c.check("poweroff", rc == qh.RC_POWEROFF, "QEMU status %s" % rc)
        c.check("no-exception", qh.EXCEPTION not in m.output and "PANIC" not in m.output)

        none.boot()
        out = qh.strip_ansi(none.command("tls selftest", timeout=60)).replace("\r", "")
        c.check("no-entropy-refused", "tls: randomness: no entropy source" in out and
                "tls selftest: FAILED" in out and "bytes echoed" not in out, out)
        out = qh.strip_ansi(none.command("tls")).replace("\r", "")
        c.check("no-network-tls-not-set-up", "tls: not set up" in out, out)
        none.send("poweroff\r")
        c.check("no-entropy-poweroff", none.wait_exit(30) == qh.RC_POWEROFF)
    except qh.BootFailure as e:
        c.check("no-boot-failure", False, str(e))
finally:
    m.stop()
    none.stop()
c.finish()
