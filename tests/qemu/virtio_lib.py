# SPDX-License-Identifier: MIT
"""Helpers shared by the virtio QEMU tests: a Machine whose virtio devices get extra options,
and the self-test's data pattern (the same function as pat_word() in boot/virtio_selftest.c)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_harness as qh  # noqa: E402

MASK = (1 << 64) - 1
REGION = 10 << 20  # bytes of each disk the self-test covers


class VirtioMachine(qh.Machine):
    """qh.Machine with ',OPTS' appended to every -drive of a virtio disk (drive_opts) and to
    every virtio -device (device_opts)."""

    def __init__(self, name, drive_opts="", device_opts="", **kw):
        super().__init__(name, **kw)
        self.drive_opts = drive_opts
        self.device_opts = device_opts

    def _args(self):
        args = super()._args()
        out = []
        for i, a in enumerate(args):
            prev = args[i - 1] if i else ""
            if prev == "-drive" and "id=esp" not in a and self.drive_opts:
                a += "," + self.drive_opts
            if prev == "-device" and a.startswith("virtio-") and self.device_opts:
                a += "," + self.device_opts
            out.append(a)
        return out

    def image(self, dname):
        return os.path.join(self.tmp, dname + ".img")


def pat_word(tag, sector, w):
    x = ((tag << 56) ^ (sector << 6) ^ w) & MASK
    x = (x * 0x9E3779B97F4A7C15) & MASK
    return x ^ (x >> 29)


def expected_image(tag, size):
    """What a disk in PCI slot @tag holds after `vselftest`: the pattern over the first 8 MiB,
    zeroes elsewhere (8-9 MiB discarded with discard=unmap, 9-10 MiB write-zeroes)."""
    words = [pat_word(tag, s, w) for s in range((8 << 20) // 512) for w in range(64)]
    import struct
    data = struct.pack("<%dQ" % len(words), *words)
    return data + bytes(size - len(data))


def first_difference(a, b):
    if len(a) != len(b):
        return "size %d, expected %d" % (len(a), len(b))
    for off in range(0, len(a), 1 << 16):
        if a[off:off + (1 << 16)] != b[off:off + (1 << 16)]:
            for i in range(off, min(len(a), off + (1 << 16))):
                if a[i] != b[i]:
                    return "first difference at byte %d (sector %d)" % (i, i // 512)
    return None
