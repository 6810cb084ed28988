# SPDX-License-Identifier: MIT
"""The firmware's NIC on a tap device inside a private network namespace.

QEMU's user networking (slirp) takes no virtio-net header, so QEMU withdraws checksum and
segmentation offloads from the device; a tap backend opened with vnet_hdr=on offers them
(CSUM, GUEST_CSUM, HOST_TSO4/6, GUEST_TSO4/6, MRG_RXBUF). A tap device needs an address on the
host side, which must not be reachable from anywhere else: the network tests touch nothing
outside the test. So:

  - NetNS.start() runs a holder process under `unshare --net`: a new, empty network namespace
    with loopback up and a tap device (vnet_hdr) carrying HOST_IP/24. The holder only sleeps
    (bounded); it dies with the test (PR_SET_PDEATHSIG) or at stop(), by its PID.
  - TapMachine is a qemu_harness.Machine whose QEMU runs inside that namespace (`nsenter
    --net`, which execs QEMU: the Machine's PID is QEMU's) with its NIC on the tap and a
    static address (fw_cfg ip=GUEST_IP/24). ns.run()/ns.popen() run clients (nbdcopy, nbdinfo,
    python with libnbd) in the namespace too.
  - Nothing else is in the namespace; it has no route out and nothing outside can reach it.
    When QEMU and the clients are stopped (by PID) and the holder is killed, the kernel
    removes the namespace and the tap device with it: no name is left behind (unlike
    `ip netns add`), even if the test is killed.

Missing prerequisites (root, /dev/net/tun, unshare/nsenter from util-linux, ip from iproute2:
both in scripts/setup's list) raise NetNSError with the reason: tests fail loudly, never skip
(start_checked() turns it into a failed check and ends the test).
"""
import ctypes
import os
import select
import shutil
import subprocess
import time

import qemu_harness as qh

HOST_IP = "192.168.77.1"
GUEST_IP = "192.168.77.2"
TAP = "tap0"
HOLDER_LIFETIME = 3600  # seconds: the holder's sleep, so even a lost holder ends
PR_SET_PDEATHSIG = 1


class NetNSError(Exception):
    """The namespace could not be made (a prerequisite is missing)."""


def _die_with_parent():
    # In the child between fork and exec: SIGKILL when the test process dies.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)


class NetNS:
    def __init__(self, host_ip=HOST_IP, tap=TAP):
        self.host_ip = host_ip
        self.tap = tap
        self.holder = None
        self.procs = []  # clients started by popen(), stopped by PID at stop()

    def check_prerequisites(self):
        why = []
        if os.geteuid() != 0:
            why.append("not root (a network namespace and a tap device need CAP_NET_ADMIN)")
        if not os.path.exists("/dev/net/tun"):
            why.append("/dev/net/tun missing (tun module)")
        for tool, pkg in (("unshare", "util-linux"), ("nsenter", "util-linux"),
                          ("ip", "iproute2")):
            if not shutil.which(tool):
                why.append("%s missing (Debian package %s: run scripts/setup)" % (tool, pkg))
        if why:
            raise NetNSError("; ".join(why))

    def start(self, timeout=10.0):
        self.check_prerequisites()
        script = ("set -e; ip link set lo up; ip tuntap add dev {t} mode tap vnet_hdr; "
                  "ip addr add {a}/24 dev {t}; ip link set {t} up; echo ready; "
                  "exec sleep {s}").format(t=self.tap, a=self.host_ip, s=HOLDER_LIFETIME)
        self.holder = subprocess.Popen(["unshare", "--net", "--", "sh", "-c", script],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       preexec_fn=_die_with_parent)
        end = time.monotonic() + timeout
        line = b""
        while time.monotonic() < end and not line.endswith(b"\n"):
            r, _, _ = select.select([self.holder.stdout], [], [], 0.2)
            if r:
                c = os.read(self.holder.stdout.fileno(), 64)
                if not c:
                    break
                line += c
        if line.strip() != b"ready":
            err = b""
            if self.holder.poll() is not None:
                err = self.holder.stderr.read()
            self.stop()
            raise NetNSError("namespace set-up failed: %r %r" % (line, err[-500:]))
        return self

    @property
    def nsenter(self):
        """The command prefix that runs a program in the namespace (execs it: same PID)."""
        return ["nsenter", "--net=/proc/%d/ns/net" % self.holder.pid, "--"]

    def run(self, args, timeout=60, env=None):
        """(status, stdout+stderr) of @args run in the namespace; status None on timeout
        (the process is killed by its PID)."""
        p = subprocess.Popen(self.nsenter + list(args), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env)
        try:
            out, _ = p.communicate(timeout=timeout)
            return p.returncode, out
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            return None, (out or "") + "\ntimed out after %ds" % timeout

    def popen(self, args, **kw):
        p = subprocess.Popen(self.nsenter + list(args), **kw)
        self.procs.append(p)
        return p

    def stop(self):
        """Stop the clients and the holder by PID; the kernel then frees the namespace."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.procs = []
        if self.holder:
            if self.holder.poll() is None:
                self.holder.kill()
            self.holder.wait()
            for f in (self.holder.stdout, self.holder.stderr):
                f.close()
            self.holder = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def start_checked(checks):
    """A started NetNS for a test; when it cannot be made, the failed check
    "network-namespace" with the reason, and the test ends there (checks.finish())."""
    ns = NetNS()
    try:
        ns.start()
    except NetNSError as e:
        checks.check("network-namespace", False, str(e))
        checks.finish()
    return ns


class TapMachine(qh.Machine):
    """A Machine in @ns: virtio-net on the tap (vnet_hdr=on), static address @guest_ip.

    @nic_opts: extra virtio-net-pci properties ("mrg_rxbuf=off,host_tso4=off", ...).
    self.addr is the address clients connect to (port 10809)."""

    def __init__(self, name, ns, guest_ip=GUEST_IP, nic_opts="", **kw):
        fw_cfg = dict(kw.pop("fw_cfg", None) or {})
        fw_cfg.setdefault("ip", guest_ip + "/24")
        super().__init__(name, net=False, fw_cfg=fw_cfg, **kw)
        self.ns = ns
        self.addr = guest_ip
        self.nic_opts = nic_opts

    def _args(self):
        args = super()._args()
        slot = 4 + len(self.disks)
        dev = "virtio-net-pci,netdev=n0,disable-legacy=on,addr=%#x,romfile=" % slot
        if self.nic_opts:
            dev += "," + self.nic_opts
        self.port = 10809
        return self.ns.nsenter + args + [
            "-netdev", "tap,id=n0,ifname=%s,script=no,downscript=no,vnet_hdr=on" % self.ns.tap,
            "-device", dev]

    def uri(self, export=""):
        return "nbd://%s:%d/%s" % (self.addr, self.port, export)
