#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The virtio drivers in the real machine (one boot):

- disks are found and their roles come from the configuration (fw_cfg meta-disk/data-disk
  swap the default slots here); `disks` shows address, capacity in bytes and units, features
  and role;
- `vselftest disks`: on both disks, a pattern written over 10 MiB with up to the queue size
  in flight, flushed, read back the same way and compared; DISCARD and WRITE_ZEROES; a request
  beyond the capacity refused;
- after poweroff, the image files on the host hold exactly the pattern and zeroes elsewhere
  (the drives use discard=unmap so a discarded range reads back as zeroes);
- `disks` and `nic` count doorbells: fewer than a quarter of the writes on each disk (one per
  batch);
- `vselftest net`: an ARP request to QEMU's gateway gets its reply; `nic` shows MAC, link and
  the counters that moved.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_harness as qh  # noqa: E402
import virtio_lib as vl  # noqa: E402

c = qh.Checks("qemu/virtio_selftest")
qh.require_image(c)

SIZES = {"meta": 16 << 20, "data": 64 << 20}
m = vl.VirtioMachine("qemu-virtio-selftest", drive_opts="discard=unmap",
                     disks=(("meta", SIZES["meta"]), ("data", SIZES["data"])),
                     fw_cfg={"test-selftest": "1", "meta-disk": "00:05.0",
                             "data-disk": "00:04.0"})
try:
    with m:
        m.boot()
        log = m.output
        c.check("roles-from-config", "thinbox: disks: metadata 00:05.0, data 00:04.0" in log,
                "boot log has no roles line")
        out = m.command("disks")
        c.check("disks-lists-both",
                re.search(r"00:04\.0\s+16777216 bytes \(16\.0 MiB\).*role data", out) and
                re.search(r"00:05\.0\s+67108864 bytes \(64\.0 MiB\).*role metadata", out),
                repr(out))
        c.check("disks-features", "flush discard write-zeroes" in out and "indirect" in out,
                repr(out))

        out = m.command("vselftest disks", timeout=180)
        for slot in ("00:04.0", "00:05.0"):
            c.check("selftest-%s" % slot, "vselftest: %s PASS" % slot in out, out)
            mx = re.search(r"vselftest: %s write 1030 requests, max in flight (\d+)" % slot, out)
            c.check("many-in-flight-%s" % slot, mx and int(mx.group(1)) >= 64,
                    mx.group(0) if mx else "no write line")
            c.check("beyond-capacity-refused-%s" % slot,
                    "vselftest: %s beyond capacity: refused" % slot in out)
            c.check("discard-unmapped-%s" % slot,
                    "vselftest: %s discarded range reads as zeroes: yes" % slot in out)

        # Doorbells: rung per batch, not per request (1030 writes each, many in flight).
        out = m.command("disks")
        bells = re.findall(r"writes (\d+), errors \d+; doorbells (\d+) \((\d+) not needed\)",
                           out)
        c.check("disks-doorbells-batched", len(bells) == 2 and
                all(1 <= int(d) < int(w) // 4 for w, d, _ in bells), repr(out))

        out = m.command("vselftest net", timeout=30)
        c.check("net-arp-roundtrip", "vselftest: net PASS" in out, out)
        out = m.command("nic")
        c.check("nic-shows-mac-link", "mac 52:54:00:12:34:56  link up" in out, repr(out))
        rx = re.search(r"rx (\d+) packets", out)
        tx = re.search(r"tx (\d+) packets", out)
        c.check("nic-counters", rx and tx and int(rx.group(1)) >= 1 and int(tx.group(1)) >= 1,
                repr(out))
        bell = re.search(r"doorbells: rx (\d+) \((\d+) not needed\), tx (\d+)", out)
        c.check("nic-doorbells", bell and int(bell.group(3)) >= 1, repr(out))

        m.send("poweroff\r")
        rc = m.wait_exit(30)
        c.check("poweroff-rc0", rc == qh.RC_POWEROFF, "QEMU status %s" % rc)
        # Host side: exactly what the self-test wrote, nothing else (disks in slots 4 and 5).
        for dname, tag in (("meta", 4), ("data", 5)):
            with open(m.image(dname), "rb") as f:
                got = f.read()
            diff = vl.first_difference(got, vl.expected_image(tag, SIZES[dname]))
            c.check("image-content-%s" % dname, diff is None, diff or "")
        c.check("no-exception", qh.EXCEPTION not in m.output and "PANIC" not in m.output)
except qh.BootFailure as e:
    c.check("no-boot-failure", False, str(e))
c.finish()
