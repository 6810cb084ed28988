#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The Linux storage VM of the bench (scripts/linux-guest --vm, tests/lib/linuxvm.py;
docs/performance.md): one boot on blank 16 MiB metadata and 64 MiB data disks.

1. The VM is built (or found cached) from the test guest and the host's nbdkit; a missing
   package fails here, naming it. /init says it serves vol0 with 64 KiB blocks, and the
   host's port forward gives an NBD greeting within 60 s of QEMU's start.
2. Over NBD (libnbd, one connection): the export is the data disk's size; 64 KiB of random
   data written at 10 MiB (block 160) and flushed, then 256 KiB at an unaligned offset and
   4 KiB near the end; all three read back equal, and a range never written reads as zeros.
3. Behind nbdkit is dm-thin: after the flush the first data block of the data disk holds the
   first 64 KiB written (a fresh pool allocates from block 0, whatever the volume offset),
   and thin_dump of the metadata disk shows one thin device, 128-sector (64 KiB) blocks,
   volume block 160 mapped to data block 0."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import linuxvm  # noqa: E402
import tap  # noqa: E402

c = tap.Checks("guest/linux_vm")
c.need_tools("qemu-system-x86_64", "nbdkit", "dmsetup", "thin_dump")
try:
    import nbd
except ImportError:
    c.check("needs-python3-libnbd", False, "python3-libnbd is not installed (run scripts/setup)")
    c.finish()

MiB = 1 << 20
DATA = 64 * MiB
BLOCK = 64 << 10

try:
    t0 = time.monotonic()
    d = linuxvm.vm_dir()
    c.note("VM ready in %.1f s: %s" % (time.monotonic() - t0, d))
except linuxvm.VMError as e:
    c.check("vm-built", False, e)
    c.finish()

with linuxvm.LinuxVM("guest-linux-vm", meta=16 * MiB, data=DATA) as vm:
    try:
        out = vm.ready(60)
    except linuxvm.qh.BootFailure as e:
        c.check("vm-serves", False, e)
        c.finish()
    c.check("vm-serves-vol0-64k-blocks", "64 KiB blocks" in out, out)
    t = linuxvm.first_answer(vm.port, 60)
    c.check("nbd-greeting", t is not None, vm.output[-2000:])
    if t is None:
        c.finish()
    c.note("QEMU start -> first NBD answer: %.2f s" % (t - vm.start_time))

    h = nbd.NBD()
    h.connect_uri("nbd://127.0.0.1:%d/" % vm.port)
    c.check("export-size-is-the-data-disk", h.get_size() == DATA, h.get_size())
    first = os.urandom(BLOCK)
    h.pwrite(first, 10 * MiB)
    h.flush()
    writes = [(first, 10 * MiB), (os.urandom(256 << 10), 20 * MiB + 4096 + 512),
              (os.urandom(4096), DATA - 8192)]
    for buf, off in writes[1:]:
        h.pwrite(buf, off)
    h.flush()
    back = [h.pread(len(buf), off) for buf, off in writes]
    c.check("written-data-reads-back", all(b == w[0] for b, w in zip(back, writes)),
            [b == w[0] for b, w in zip(back, writes)])
    c.check("unwritten-range-reads-zeros", h.pread(1 * MiB, 30 * MiB) == bytes(1 * MiB))
    h.shutdown()

    with open(vm.image("data"), "rb") as f:
        c.check("first-data-block-holds-first-write", f.read(BLOCK) == first,
                "the data disk's first 64 KiB are not the first write")
    r = subprocess.run(["thin_dump", vm.image("meta")], capture_output=True, text=True,
                       timeout=60)
    dump = r.stdout
    c.check("thin-dump-one-device-64k-blocks",
            r.returncode == 0 and 'data_block_size="128"' in dump and dump.count("<device ") == 1,
            r.stderr + dump[:1500])
    c.check("thin-dump-maps-volume-block-160-to-data-block-0",
            'origin_block="160" data_block="0"' in dump
            or 'origin_begin="160" data_begin="0"' in dump, dump[:1500])
c.finish()
