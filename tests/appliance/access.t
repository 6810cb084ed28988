#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Who may connect, on the host build with real clients (docs/nbd.md, "Who may connect").

The appliance listens on 127.0.0.1 only; clients reach it from other loopback addresses by
binding their socket first (all of 127/8 is this machine): libnbd's connect_socket() on a
socket bound to 127.0.0.2, nbdinfo (which cannot bind) from 127.0.0.1.

 - `export allow vol0 127.0.0.2/32`: from 127.0.0.1 nbdinfo --list does not show vol0 and
   opening it fails with NBD_REP_ERR_POLICY ("server policy prevents NBD_OPT_GO"); the refusal is on the console and counted
   (`export list`, `nbd clients`); from 127.0.0.2 libnbd opens it and reads;
 - the list survives a restart (it is in the VG);
 - --max-per-client 3: three connections from 127.0.0.2 are served, the fourth is closed
   at once, logged and counted, while 127.0.0.3 still gets in; `nbd set max-per-client 4`
   lets one more in.
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import applib as al  # noqa: E402

c = al.Checks("appliance/access")
c.need_tools("nbdinfo")
tmp = al.scratch()
meta, data = al.blank_disks(tmp, 64 << 20, 256 << 20)


def from_addr(h, src, export="vol0"):
    """A libnbd handle connected to the appliance from source address @src."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((src, 0))
    s.connect(("127.0.0.1", h.port))
    s.settimeout(None)
    n = al.nbd.NBD()
    n.set_export_name(export)
    n.connect_socket(s.detach())
    return n


def refused_from(h, src):
    """True when a connection from @src is closed before the greeting (the per-client cap)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((src, 0))
    s.connect(("127.0.0.1", h.port))
    try:
        return s.recv(18) == b""
    except (ConnectionResetError, socket.timeout):
        return True
    finally:
        s.close()


try:
    h = al.Host(meta, data, extra=["--max-per-client", "3"]).start()
    out = h.command("export allow vol0 127.0.0.2/32")
    c.check("export-allow", "export 'vol0' may be used by 127.0.0.2/32" in out, out)
    out = h.command("export allow vol0 127.0.0.2/24")
    c.check("bad-prefix-refused", "address bits are set past the prefix length" in out and
            "(the network is 127.0.0.0/24)" in out, out)

    # From 127.0.0.1: not listed, not opened, and the console says so.
    r = al.run(["nbdinfo", "--list", h.uri()], timeout=30)
    c.check("list-hides-export-from-outside", 'export="vol0"' not in r.stdout,
            r.stdout + r.stderr)
    r = al.run(["nbdinfo", "--size", h.uri("vol0")], timeout=30)
    c.check("open-refused-from-outside", r.returncode != 0 and
            "server policy prevents NBD_OPT_GO" in r.stderr, r.stdout + r.stderr)
    time.sleep(0.2)
    c.check("refusal-logged", "nbd: refused 127.0.0.1:" in h.output and
            "export 'vol0': the address is not in its allow list" in h.output, h.output[-2000:])
    out = h.command("export list")
    row = [line for line in out.splitlines() if line.startswith("vol0 ")]
    c.check("export-list-counts-refusals", row and row[0].split()[6] != "0" and
            "127.0.0.2/32" in row[0], out)

    # From 127.0.0.2: a real client opens and reads it.
    n = from_addr(h, "127.0.0.2")
    c.check("served-inside", n.get_size() == 252 << 20 and len(n.pread(4096, 0)) == 4096)
    out = h.command("nbd clients")
    c.check("nbd-clients-shows-address", "127.0.0.2:" in out and "vol0" in out, out)
    n.shutdown()

    c.check("stops", h.stop() == 0)
    h = al.Host(meta, data, extra=["--max-per-client", "3"]).start()
    r = al.run(["nbdinfo", "--size", h.uri("vol0")], timeout=30)
    c.check("allow-list-kept-across-restart", r.returncode != 0, r.stdout + r.stderr)
    n = from_addr(h, "127.0.0.2")
    c.check("served-inside-after-restart", n.get_size() == 252 << 20)

    # The per-client cap: 3 from 127.0.0.2 (n is one), the 4th closed at once.
    more = [from_addr(h, "127.0.0.2"), from_addr(h, "127.0.0.2")]
    c.check("cap-fourth-refused", refused_from(h, "127.0.0.2"))
    time.sleep(0.2)
    c.check("cap-refusal-logged", "connections from this address already (max-per-client 3)"
            in h.output, h.output[-2000:])
    c.check("cap-served-ones-work", all(len(x.pread(512, 0)) == 512 for x in [n] + more))
    c.check("cap-is-per-address", not refused_from(h, "127.0.0.3"))
    out = h.command("nbd clients")
    c.check("nbd-clients-counts-cap", "at most 3 per client address" in out and
            "1 over the per-client cap" in out, out)
    out = h.command("nbd set max-per-client 4")
    c.check("cap-raised", "at most 4 connection(s) per client address" in out, out)
    more.append(from_addr(h, "127.0.0.2"))
    c.check("cap-raised-lets-one-more-in", len(more[-1].pread(512, 0)) == 512)
    for x in [n] + more:
        x.shutdown()
    c.check("stops-cleanly", h.stop() == 0)
except (al.Failure, al.nbd.Error, OSError) as e:
    c.check("no-failure", False, str(e))
c.finish()
