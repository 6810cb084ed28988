# SPDX-License-Identifier: MIT
"""The Linux storage VM (scripts/linux-guest --vm; docs/performance.md): what a user would run
instead of the appliance, booted on the appliance's virtual hardware.

    import linuxvm
    with linuxvm.LinuxVM("bench-linux-vm", meta=64 << 20, data=512 << 20) as vm:
        vm.ready()                    # /init says nbdkit runs (raises qh.BootFailure)
        t = linuxvm.first_answer(vm.port)   # time.monotonic() of the first NBD greeting
        ... nbd://127.0.0.1:%d/ % vm.port ...

The machine is tests/qemu/qemu_harness.py's Machine (the bench's appliance boots): q35,
256 MiB, one vCPU under TCG, -nodefaults, virtio-blk disks meta and data at 00:04.0 and
00:05.0 (sparse files in build/test-tmp/, removed at stop), virtio-net at 00:06.0 on user
networking with a hostfwd from a free 127.0.0.1 port to the guest's 10809; without OVMF, the
ESP, virtio-rng and isa-debug-exit: Debian's kernel boots directly (-kernel vmlinux, PVH, with
QEMU's default SeaBIOS) with the VM's initramfs. The disks carry serial=meta and serial=data,
which is how the VM's /init finds them. /init makes a thin pool with dmsetup (block size
@block sectors: 128, 64 KiB, the appliance's pool's), thin volume 0 as large as the data disk,
and serves it with `nbdkit file` (nbdkit's defaults: 16 threads, the guest's page cache).
QEMU is stopped by its PID (SIGKILL: the VM keeps nothing), its serial log is in
build/test-logs/<name>.serial.log.
"""

import os
import re
import selectors
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "qemu"))
import qemu_harness as qh  # noqa: E402

READY = "thinbox-vm: serving"
FAILED = "thinbox-vm: FAILED"
# QEMU names its threads ("CPU 0/TCG", "worker", ...) only when asked; the bench reads their CPU.
THREAD_NAMES = ["-name", "guest,debug-threads=on"]
NBD_GREETING = b"NBDMAGIC" + b"IHAVEOPT"  # a newstyle server's first 16 bytes
OPT_MAGIC = 0x49484156454F5054  # "IHAVEOPT"

_vm_dir = None


class VMError(Exception):
    pass


def vm_dir():
    """Build the VM if needed (scripts/linux-guest --vm, which builds the test guest first if
    the cache lacks it); its folder in build/cache/. VMError names what is missing."""
    global _vm_dir
    if _vm_dir is None:
        r = subprocess.run([os.path.join(qh.TOP, "scripts", "linux-guest"), "--vm", "--print-dir"],
                           cwd=qh.TOP, capture_output=True, text=True, timeout=900)
        if r.returncode:
            raise VMError("scripts/linux-guest --vm failed:\n" + r.stdout + r.stderr)
        _vm_dir = r.stdout.strip().splitlines()[-1]
    return _vm_dir


class LinuxVM(qh.Machine):
    def __init__(self, name, meta=64 << 20, data=512 << 20, block=128, mem="256M"):
        d = vm_dir()
        kernel = os.path.join(d, "vmlinux")
        if not os.path.exists(kernel):
            kernel = os.path.join(d, "vmlinuz")
        super().__init__(name, disks=(("meta", meta), ("data", data)), net=True, esp=None,
                         mem=mem, debug_exit=False, rng=False,
                         extra_args=["-kernel", kernel,
                                     "-initrd", os.path.join(d, "initramfs.cpio"),
                                     "-append", "console=ttyS0 panic=-1 quiet thinbox.block=%d"
                                     % block] + THREAD_NAMES)

    def _args(self):
        args = super()._args()
        # The harness's machine boots OVMF; this one boots the kernel directly (SeaBIOS).
        i = args.index("-bios")
        del args[i:i + 2]
        # Serials: /init finds the disks by them.
        return [a + ",serial=" + a.split("drive=")[1].split(",")[0]
                if a.startswith("virtio-blk-pci,drive=") else a for a in args]

    def image(self, disk):
        return os.path.join(self.tmp, disk + ".img")

    def ready(self, timeout=60):
        """Wait until /init started nbdkit; the lines /init printed. BootFailure when /init
        failed (a missing module or disk, dmsetup refusing), QEMU exited or time ran out."""
        out = self.expect(re.compile(r"(%s|%s).*\n" % (READY, FAILED)), timeout)
        if FAILED in out:
            time.sleep(0.5)
            self.stop()
            raise qh.BootFailure("the Linux VM's /init failed:\n" + self.output[-3000:])
        return out


def first_answer(port, timeout=60, interval=0.02):
    """The time.monotonic() at which an NBD server behind 127.0.0.1:@port first sent its
    greeting, or None after @timeout. QEMU's user-network port forward accepts a connection
    at once, before the guest listens, and passes it on when the guest answers a (retried)
    SYN, or closes it: so a new connection is opened every @interval seconds and each is kept
    for up to 5 s, the first greeting on any of them wins (its resolution is @interval, not
    the port forward's retry timer)."""
    end = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    conns = {}  # socket -> (opened at, bytes received)
    next_open = 0.0
    try:
        while True:
            now = time.monotonic()
            if now >= end:
                return None
            if now >= next_open:
                next_open = now + interval
                try:
                    s = socket.create_connection(("127.0.0.1", port), 1)
                    s.setblocking(False)
                    sel.register(s, selectors.EVENT_READ)
                    conns[s] = (now, b"")
                except OSError:
                    pass
            for key, _ in sel.select(max(0.0, min(next_open, end) - time.monotonic())):
                s = key.fileobj
                t = time.monotonic()
                try:
                    b = s.recv(len(NBD_GREETING) - len(conns[s][1]))
                except OSError:
                    b = b""
                got = conns[s][1] + b
                if got == NBD_GREETING:
                    # Leave politely (client flags FIXED_NEWSTYLE | NO_ZEROES, then
                    # NBD_OPT_ABORT), so the server logs no error for the probe.
                    try:
                        s.setblocking(True)
                        s.sendall(struct.pack(">IQII", 3, OPT_MAGIC, 2, 0))
                    except OSError:
                        pass
                    return t
                if not b or not NBD_GREETING.startswith(got):
                    sel.unregister(s)
                    s.close()
                    del conns[s]
                else:
                    conns[s] = (conns[s][0], got)
            for s in [s for s, (t0, _) in conns.items() if time.monotonic() - t0 > 5]:
                sel.unregister(s)
                s.close()
                del conns[s]
    finally:
        for s in conns:
            s.close()
        sel.close()
