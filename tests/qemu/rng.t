#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Entropy in the firmware: the virtio-rng driver, RDRAND, and plat_random() through `rng`.

- virtio-rng at 00:10.0, `-cpu qemu64,-rdrand`: the boot log says the pool was seeded from
  virtio-rng; `rng` shows the device, its features and the bytes it delivered, RDRAND
  absent, the pool seeded; `rng sample 32` twice gives two different 32-byte values (and the
  pool's output counter moves);
- no virtio-rng, `-cpu qemu64,-rdrand`: the boot log warns, and `rng` and `rng sample` say
  "no entropy source: no virtio-rng device and no RDRAND";
- no virtio-rng, `-cpu max` (TCG's RDRAND): seeded from RDRAND alone, samples differ.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_harness as qh  # noqa: E402

c = qh.Checks("qemu/rng")
qh.require_image(c)

NO_SOURCE = "no entropy source: no virtio-rng device and no RDRAND"
HEX32 = re.compile(r"^([0-9a-f]{64})\s*$", re.M)


def samples(m, name):
    """Two `rng sample 32` on @m: both 32 bytes of hex, different, not all zeros."""
    outs = [m.command("rng sample 32") for _ in range(2)]
    vals = [HEX32.search(o) for o in outs]
    c.check(name + "-sample-format", all(vals), repr(outs))
    if all(vals):
        a, b = (v.group(1) for v in vals)
        c.check(name + "-samples-differ", a != b, "%s %s" % (a, b))
        c.check(name + "-samples-not-zero", a != "0" * 64 and b != "0" * 64, a)


def pool_out(text):
    m = re.search(r"(\d+) requests, (\d+) bytes out", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def finish(m):
    m.send("poweroff\r")
    rc = m.wait_exit(30)
    c.check(m.name + "-poweroff", rc == qh.RC_POWEROFF, "QEMU status %s" % rc)
    c.check(m.name + "-no-exception", qh.EXCEPTION not in m.output and "PANIC" not in m.output)


vio = qh.Machine("qemu-rng-virtio", disks=(), net=False,
                 extra_args=["-cpu", "qemu64,-rdrand"])
none = qh.Machine("qemu-rng-none", disks=(), net=False, rng=False,
                  extra_args=["-cpu", "qemu64,-rdrand"])
rdrand = qh.Machine("qemu-rng-rdrand", disks=(), net=False, rng=False,
                    extra_args=["-cpu", "max"])
try:
    try:
        vio.start()
        none.start()
        # ---- virtio-rng only
        vio.boot()
        log = vio.output.replace("\r", "")
        c.check("virtio-probed", "thinbox: rng 00:10.0: virtio-rng\n" in log,
                "\n".join(ln for ln in log.split("\n") if "rng" in ln))
        c.check("virtio-seeded-at-boot", "thinbox: entropy: seeded from virtio-rng\n" in log,
                "\n".join(ln for ln in log.split("\n") if "entropy" in ln))
        st = vio.command("rng")
        c.check("virtio-rng-shows-device", "virtio-rng 00:10.0" in st, st)
        c.check("virtio-rng-features", re.search(r"features: version-1", st), st)
        by = re.search(r"requests (\d+), bytes (\d+), empty (\d+), timeouts (\d+)", st)
        c.check("virtio-bytes-delivered", by and int(by.group(2)) >= 48 and by.group(4) == "0",
                st)
        c.check("virtio-rdrand-absent", "RDRAND absent" in st, st)
        c.check("virtio-pool-seeded", "pool: seeded" in st and "48 counted bytes" in st, st)
        c.check("virtio-source-counted", re.search(r"virtio-rng\s+counted\s+(\d+) bytes", st),
                st)
        before = pool_out(st)
        samples(vio, "virtio")
        after = pool_out(vio.command("rng"))
        c.check("virtio-pool-output-counted",
                before and after and after[0] == before[0] + 2 and after[1] == before[1] + 64,
                "%s -> %s" % (before, after))
        c.check("virtio-sample-usage", "usage" in vio.command("rng sample 65").lower() or
                "1..64" in vio.command("rng sample 0"))
        finish(vio)

        # ---- no virtio-rng, no RDRAND
        none.boot()
        log = none.output.replace("\r", "")
        c.check("none-boot-warning", "thinbox: WARNING: " + NO_SOURCE in log,
                "\n".join(ln for ln in log.split("\n") if "entropy" in ln or "rng" in ln))
        st = none.command("rng")
        c.check("none-rng-says-why", NO_SOURCE in st and "no virtio-rng device" in st, st)
        c.check("none-rdrand-absent", "RDRAND absent" in st, st)
        out = none.command("rng sample")
        c.check("none-sample-refused", NO_SOURCE in out and "(-19)" in out and
                not HEX32.search(out), out)
        finish(none)

        # ---- RDRAND only
        rdrand.start()
        rdrand.boot()
        log = rdrand.output.replace("\r", "")
        c.check("rdrand-seeded-at-boot", "thinbox: entropy: seeded from rdrand\n" in log,
                "\n".join(ln for ln in log.split("\n") if "entropy" in ln or "RDRAND" in ln))
        st = rdrand.command("rng")
        c.check("rdrand-used", "no virtio-rng device" in st and "RDRAND present (used)" in st,
                st)
        c.check("rdrand-pool-seeded", "pool: seeded" in st and NO_SOURCE not in st, st)
        samples(rdrand, "rdrand")
        finish(rdrand)
    except qh.BootFailure as e:
        c.check("no-boot-failure", False, str(e))
finally:
    vio.stop()
    none.stop()
    rdrand.stop()
c.finish()
