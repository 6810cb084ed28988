#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The appliance on disks that live elsewhere (docs/scale-out.md): both of its disks are NBD
exports of another server (qemu-nbd on 127.0.0.1, standing in for any remote store QEMU's
block layer reaches: NBD, iSCSI, Ceph RBD), attached through QEMU's `nbd://` driver to the same
virtio-blk slots. Nothing changes in the firmware: it formats them at first boot, serves vol0,
keeps what was written across a restart on a fresh QEMU, and the disks, read back as files
afterwards, hold a valid VG and pool (thin_check)."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import appliance_lib as ap  # noqa: E402

qh, al = ap.qh, ap.al
c = qh.Checks("qemu/remote_disks")
qh.require_image(c)
tmp = al.scratch()
ENV = dict(os.environ, PATH="/usr/bin:" + os.environ.get("PATH", ""))


class RemoteMachine(qh.Machine):
    """The harness's machine with its meta and data drives read from NBD URIs."""

    def __init__(self, name, uris, **kw):
        super().__init__(name, **kw)
        self.uris = uris

    def _args(self):
        args = super()._args()
        for i, a in enumerate(args):
            for dname, uri in self.uris.items():
                if a.startswith("if=none,id=%s,format=raw,file=" % dname):
                    args[i] = "if=none,id=%s,format=raw,file=%s,cache=none" % (dname, uri)
        return args

    def uri(self, export=""):
        return "nbd://127.0.0.1:%d/%s" % (self.port, export)


def serve(name, path):
    """qemu-nbd serving @path as export @name on a free 127.0.0.1 port: (process, URI)."""
    port = qh.free_port()
    p = subprocess.Popen(["qemu-nbd", "-f", "raw", "-b", "127.0.0.1", "-p", str(port), "-t",
                          "-x", name, path], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=ENV)
    return p, "nbd://127.0.0.1:%d/%s" % (port, name)


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


meta, data = os.path.join(tmp, "meta.img"), os.path.join(tmp, "data.img")
for path, size in ((meta, 64 << 20), (data, 256 << 20)):
    with open(path, "wb") as f:
        f.truncate(size)
servers = []
try:
    pm, um = serve("meta", meta)
    pd, ud = serve("data", data)
    servers = [pm, pd]
    for u in (um, ud):
        for _ in range(100):  # qemu-nbd listens a moment after it starts: up to 20 s
            if al.run(["nbdinfo", "--size", u], timeout=30, env=ENV).returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise al.Failure("qemu-nbd does not answer at " + u)
    payload = al.pattern("remote", 4 << 20)
    for boot in (1, 2):
        m = RemoteMachine("qemu-remote-disks-%d" % boot, {"meta": um, "data": ud},
                          disks=(("meta", 1), ("data", 1)))
        with m:
            m.boot()
            ap.DiskMachine.nbd_wait(m)
            out = qh.strip_ansi(m.command("disks")).replace("\r", "")
            c.check("boot%d-disks-in-their-roles" % boot,
                    "67108864 bytes (64.0 MiB)  block 512  role metadata" in out and
                    "268435456 bytes (256 MiB)  block 512  role data" in out, out)
            h = al.connect(m.uri("vol0"))
            if boot == 1:
                ap.pwrite(h, payload, 8 << 20)
                h.flush()
                c.check("boot1-vol0-served", h.get_size() > (8 << 20) + len(payload))
            else:
                got = ap.pread(h, len(payload), 8 << 20)
                c.check("boot2-data-kept-on-the-remote-disks", got == payload)
            h.shutdown()
            out = qh.strip_ansi(m.command("pool check", 120)).replace("\r", "")
            c.check("boot%d-pool-check-clean" % boot, "clean" in out.lower() and "error" not in out.lower(), out)
            m.send("poweroff\r")
            c.check("boot%d-poweroff" % boot, m.wait_exit(60) == qh.RC_POWEROFF)
    for p in servers:
        stop(p)
    servers = []
    rc, out, err = al.vg_show(meta, data)
    c.check("disks-hold-the-vg", rc == 0 and "lv pool_tmeta" in out and "lv vol0" in out, out + err)
    rc, out = al.thin_check(meta)
    c.check("thin-check-clean", rc == 0, out)
except (qh.BootFailure, al.Failure) as e:
    c.check("no-boot-failure", False, str(e))
finally:
    for p in servers:
        stop(p)
c.finish()
