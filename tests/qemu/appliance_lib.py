# SPDX-License-Identifier: MIT
"""Helpers for the appliance QEMU tests: machines whose disks outlive them (reboots, power
cuts), and the appliance shell over serial. Builds on qemu_harness.Machine; the NBD, thin_check
and thin_dump helpers come from tests/appliance/applib.py."""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "appliance"))
import qemu_harness as qh  # noqa: E402
import applib as al  # noqa: E402


class DiskMachine(qh.Machine):
    """A Machine whose disks are files in @disk_dir, created sparse once and kept."""

    def __init__(self, name, disk_dir, disks=(("meta", 64 << 20), ("data", 256 << 20)), **kw):
        super().__init__(name, disks=disks, **kw)
        self.disk_dir = disk_dir

    def disk(self, dname):
        return os.path.join(self.disk_dir, dname + ".img")

    def _args(self):
        for dname, size in self.disks:
            p = self.disk(dname)
            if not os.path.exists(p):
                with open(p, "wb") as f:
                    f.truncate(size)
            # The harness puts disks in its scratch directory; a link there keeps ours
            # (removing the scratch directory removes the link only).
            os.symlink(p, os.path.join(self.tmp, dname + ".img"))
        saved = qh.sparse_file
        qh.sparse_file = lambda path, size: None
        try:
            return super()._args()
        finally:
            qh.sparse_file = saved

    def boot_appliance(self, timeout=qh.BOOT_TIMEOUT):
        """Boot and wait for the appliance to be up (its NBD port answers)."""
        out = self.boot(timeout)
        self.nbd_wait()
        return out

    def uri(self, export=""):
        return "nbd://127.0.0.1:%d/%s" % (self.port, export)

    def nbd_wait(self, timeout=60):
        """Wait until an NBD handshake through the port forward works; seconds since start."""
        import time
        deadline = time.monotonic() + timeout
        while True:
            try:
                h = al.nbd.NBD()
                h.connect_uri(self.uri())
                h.shutdown()
                return self.elapsed()
            except al.nbd.Error:
                if time.monotonic() > deadline:
                    raise qh.BootFailure("no NBD answer after %ds" % timeout)
                time.sleep(0.2)

    def sh(self, line, timeout=60):
        return qh.strip_ansi(self.command(line, timeout)).replace("\r", "")


def pread(h, length, offset, chunk=1 << 20):
    """Read in pieces: the firmware's largest request is smaller than a host build's."""
    return b"".join(h.pread(min(chunk, length - i), offset + i) for i in range(0, length, chunk))


def pwrite(h, buf, offset, chunk=1 << 20):
    for i in range(0, len(buf), chunk):
        h.pwrite(buf[i:i + chunk], offset + i)


def txid(out):
    m = re.search(r"transaction id\s+(\d+)", out)
    return int(m.group(1)) if m else None
