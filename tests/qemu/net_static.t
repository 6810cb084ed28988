#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A static address from the configuration, and the stack's answers on the wire (one boot).

The NIC is connected to this script by QEMU's dgram netdev (Ethernet frames in UDP datagrams
on 127.0.0.1), so the test sees and sends raw frames:

- ip=192.0.2.10/24 comes from fw_cfg, gateway=192.0.2.1 from a "gateway = ..." line of
  \\thinbox.cfg on the ESP; the address is announced and `net` shows it, with DHCP off;
- an ARP request for 192.0.2.10 gets a reply with the NIC's MAC;
- an ICMP echo request gets its echo reply (same id, sequence and payload, valid sums);
- a TCP SYN to port 10809 gets a SYN-ACK whose TCP checksum is correct. The test switch
  test-csum-offload=1 makes lwIP leave TCP sums to the layer below (the driver here: QEMU
  offers VIRTIO_NET_F_CSUM only to backends that take virtio headers), so this checks the
  pseudo-header path end to end; net_nbd.t covers lwIP's own sums.
"""
import os
import re
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_harness as qh  # noqa: E402

GUEST_IP, GW = "192.0.2.10", "192.0.2.1"
MY_IP, MY_MAC = "192.0.2.99", bytes.fromhex("020000000001")
GUEST_MAC = bytes.fromhex("525400123456")
BCAST = b"\xff" * 6

c = qh.Checks("qemu/net_static")
qh.require_image(c)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip4(proto, payload, src=MY_IP, dst=GUEST_IP):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0x1234, 0, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload


def eth(dst, etype, payload):
    return dst + MY_MAC + struct.pack("!H", etype) + payload


def tcp_sum_ok(ip):
    ihl = (ip[0] & 0xF) * 4
    seg = ip[ihl:struct.unpack("!H", ip[2:4])[0]]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(seg))
    return csum(pseudo + seg) == 0


class Wire:
    """Our end of the dgram netdev."""

    def __init__(self):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.port = self.s.getsockname()[1]
        self.peer = None

    def send(self, frame):
        self.s.sendto(frame, ("127.0.0.1", self.peer))

    def wait(self, match, timeout=10.0):
        """The first received frame for which match(frame) is true, or None (bounded)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.s.settimeout(max(0.05, end - time.monotonic()))
            try:
                f, _ = self.s.recvfrom(65536)
            except socket.timeout:
                return None
            if match(f):
                return f
        return None


class StaticMachine(qh.Machine):
    def __init__(self, wire, **kw):
        super().__init__(net=False, **kw)
        self.wire = wire

    def _args(self):
        self.wire.peer = qh.free_port()
        return super()._args() + [
            "-netdev", "dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=%d,"
            "remote.type=inet,remote.host=127.0.0.1,remote.port=%d"
            % (self.wire.peer, self.wire.port),
            "-device", "virtio-net-pci,netdev=n0,disable-legacy=on,addr=0x6,romfile="]


w = Wire()
m = StaticMachine(w, name="qemu-net-static", fw_cfg={"ip": GUEST_IP + "/24", "test-csum-offload": "1"},
                  esp_cfg="# written by tests/qemu/net_static.t\ngateway = %s\n" % GW)
try:
    with m:
        m.boot()
        # A static address is set before the prompt, so the line is already in the log.
        c.check("static-address-announced",
                "thinbox: net %s/24 gw %s (static)" % (GUEST_IP, GW) in m.output,
                "no announcement")
        out = m.command("net")
        c.check("net-shows-static", "address %s/24  netmask 255.255.255.0  gateway %s"
                % (GUEST_IP, GW) in out and "dhcp off (static)" in out, repr(out))
        c.check("net-shows-offload", "tcp checksums by driver (test switch)" in out, repr(out))

        # ARP
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, MY_MAC,
                          socket.inet_aton(MY_IP), bytes(6), socket.inet_aton(GUEST_IP))
        w.send(eth(BCAST, 0x0806, arp))
        f = w.wait(lambda f: f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02")
        c.check("arp-reply", f is not None and f[22:28] == GUEST_MAC and
                f[28:32] == socket.inet_aton(GUEST_IP) and f[0:6] == MY_MAC,
                f.hex() if f else "no ARP reply")

        # ICMP echo
        payload = os.urandom(56)
        icmp = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 7) + payload
        icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
        w.send(eth(GUEST_MAC, 0x0800, ip4(1, icmp)))
        f = w.wait(lambda f: f[12:14] == b"\x08\x00" and f[23] == 1 and f[34] == 0)
        ok = False
        if f:
            ip = f[14:]
            ic = ip[20:struct.unpack("!H", ip[2:4])[0]]
            ok = (csum(ip[:20]) == 0 and csum(ic) == 0 and ic[4:8] == icmp[4:8] and
                  ic[8:] == payload and ip[12:16] == socket.inet_aton(GUEST_IP))
        c.check("icmp-echo-reply", ok, f.hex() if f else "no echo reply")

        # TCP SYN -> SYN-ACK with a correct checksum (finished by the driver or the device)
        syn = struct.pack("!HHIIBBHHH", 40000, 10809, 1000, 0, 5 << 4, 0x02, 65535, 0, 0)
        pseudo = socket.inet_aton(MY_IP) + socket.inet_aton(GUEST_IP) + \
            struct.pack("!BBH", 0, 6, len(syn))
        syn = syn[:16] + struct.pack("!H", csum(pseudo + syn)) + syn[18:]
        w.send(eth(GUEST_MAC, 0x0800, ip4(6, syn)))
        f = w.wait(lambda f: f[12:14] == b"\x08\x00" and f[23] == 6)
        ok = False
        if f:
            ip = f[14:]
            t = ip[20:]
            ok = (t[13] & 0x12) == 0x12 and struct.unpack("!I", t[8:12])[0] == 1001 and \
                tcp_sum_ok(ip) and csum(ip[:20]) == 0
        c.check("tcp-synack-checksum", ok, f.hex() if f else "no SYN-ACK")
        if f:
            seq = struct.unpack("!I", f[14 + 20 + 4:14 + 20 + 8])[0]
            rst = struct.pack("!HHIIBBHHH", 40000, 10809, 1001, seq + 1, 5 << 4, 0x04, 0, 0, 0)
            rst = rst[:16] + struct.pack("!H", csum(pseudo[:10] + struct.pack("!H", len(rst)) +
                                                   rst)) + rst[18:]
            w.send(eth(GUEST_MAC, 0x0800, ip4(6, rst)))

        out = m.command("net")
        rx = re.search(r"rx (\d+) packets", out)
        c.check("net-counts-frames", rx and int(rx.group(1)) >= 3, repr(out))
        m.send("poweroff\r")
        rc = m.wait_exit(30)
        c.check("poweroff-rc0", rc == qh.RC_POWEROFF, "QEMU status %s" % rc)
        c.check("no-exception", qh.EXCEPTION not in m.output and "PANIC" not in m.output)
        c.note("boot to poweroff %.1fs" % m.elapsed())
except qh.BootFailure as e:
    c.check("no-boot-failure", False, str(e))
c.finish()
