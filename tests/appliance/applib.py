# SPDX-License-Identifier: MIT
"""Drive the host build's appliance (build/host/thinbox --meta --data) end to end.

Host(...).start() runs the program on two image files with its shell on a pipe, waits for the
NBD port it announces (it listens on 127.0.0.1:0, so the kernel picks a free port) and the
first prompt. command() types a line and returns what it printed. stop() sends SIGTERM and
waits (bounded), kill() is the power cut: SIGKILL. Every process is stopped by its PID, also
when a test dies half way (atexit).

Also here: libnbd helpers, thin_check / thin_dump on the pool's metadata LV, the disks' LVM
VG as thinbox-lvm shows it, and Checks
(tests/lib/tap.py's PASS / FAIL lines, stopping our processes at the end).
"""

import atexit
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

# python3-libnbd is installed for Debian's python, which may not be first in PATH.
sys.path.insert(0, "/usr/lib/python3/dist-packages")
import nbd  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import tap  # noqa: E402

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("THINBOX", os.path.join(TOP, "build", "host", "thinbox"))
PROMPT = "thinbox> "
os.environ["PATH"] = "/usr/bin:/usr/sbin:/sbin:" + os.environ.get("PATH", "")

_live = []


def _kill_all():
    for h in list(_live):
        h.kill()


atexit.register(_kill_all)


class Failure(Exception):
    pass


class Host:
    def __init__(self, meta, data, listen="127.0.0.1:0", extra=()):
        self.meta, self.data, self.listen, self.extra = meta, data, listen, list(extra)
        self.proc = None
        self.port = None
        self._buf = ""
        self._pos = 0
        self._cond = threading.Condition()
        self._eof = False

    def start(self, timeout=60):
        args = [BIN, "--meta", self.meta, "--data", self.data, "--listen", self.listen]
        self.proc = subprocess.Popen(args + self.extra, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     cwd=TOP)
        _live.append(self)
        self._buf, self._pos, self._eof = "", 0, False
        threading.Thread(target=self._read_loop, daemon=True).start()
        out = self.expect(re.compile(r"nbd: listening on 127\.0\.0\.1:(\d+)\n"), timeout)
        self.port = int(re.search(r"127\.0\.0\.1:(\d+)", out.splitlines()[-1]).group(1))
        self.boot_log = out + self.expect(PROMPT, timeout)
        return self

    def _read_loop(self):
        fd = self.proc.stdout.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self._eof = True
                    self._cond.notify_all()
                    return
                self._buf += data.decode("latin-1")
                self._cond.notify_all()

    @property
    def output(self):
        with self._cond:
            return self._buf

    def expect(self, pattern, timeout=60):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if isinstance(pattern, str):
                    i = self._buf.find(pattern, self._pos)
                    end = i + len(pattern) if i >= 0 else -1
                else:
                    m = pattern.search(self._buf, self._pos)
                    end = m.end() if m else -1
                if end >= 0:
                    out = self._buf[self._pos:end]
                    self._pos = end
                    return out
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
        tail = self._buf[-2000:]
        self.kill()
        raise Failure("%s waiting for %r; output ends with:\n%s"
                      % ("exited" if self._eof else "timed out", getattr(pattern, "pattern", pattern), tail))

    def send(self, data):
        self.proc.stdin.write(data if isinstance(data, bytes) else data.encode())
        self.proc.stdin.flush()

    def command(self, line, timeout=120):
        """Type @line; return what it printed (without the echo and the prompt)."""
        self.send(line + "\n")
        out = self.expect(PROMPT, timeout)[:-len(PROMPT)]
        nl = out.find("\n")
        return out[nl + 1:] if nl >= 0 else ""

    def uri(self, export=""):
        return "nbd://127.0.0.1:%d/%s" % (self.port, export)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=60):
        """SIGTERM and wait; the exit status (None if it had to be killed)."""
        if not self.proc:
            return None
        rc = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        else:
            rc = self.proc.returncode
        self._close()
        return rc

    def kill(self):
        """The power cut of the host build: SIGKILL, nothing gets to run."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait()
            self._close()

    def _close(self):
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        if self in _live:
            _live.remove(self)


def connect(uri, timeout=30):
    h = nbd.NBD()
    deadline = time.monotonic() + timeout
    while True:
        try:
            h.connect_uri(uri)
            return h
        except nbd.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def run(args, timeout=300, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)


LVM_TOOL = os.path.join(TOP, "build", "host", "thinbox-lvm")


def tmeta_image(meta, pool="pool"):
    """The pool's metadata LV (POOL_tmeta) copied out of the metadata disk's VG into a file
    next to it: the plain dm-thin metadata image thin_check and thin_dump read."""
    out = meta + ".tmeta"
    r = run([LVM_TOOL, "extract", meta, pool + "_tmeta", out])
    if r.returncode:
        raise Failure("thinbox-lvm extract: " + r.stderr)
    return out


def pv_label_id(disk):
    """The PV id (32 characters) in the LVM label of DISK (sector 1), or None without one."""
    with open(disk, "rb") as f:
        f.seek(512)
        label = f.read(64)
    return label[32:64].decode("latin-1") if label[:8] == b"LABELONE" else None


def vg_show(*disks):
    """thinbox-lvm show DISK...: (exit status, its lines, stderr): "vg NAME seqno ...",
    "pv KEY id ID pe_start S pe_count N", "lv NAME sectors N ..." (host/tools/thinbox-lvm.c)."""
    r = run([LVM_TOOL, "show"] + list(disks))
    return r.returncode, r.stdout, r.stderr


def vg_text(disk):
    """The VG metadata text in use on DISK (thinbox-lvm text)."""
    r = run([LVM_TOOL, "text", disk])
    if r.returncode:
        raise Failure("thinbox-lvm text: " + r.stderr)
    return r.stdout


def vg_layout_problems(meta, data, meta_extents, data_extents, vg="thinbox"):
    """What is wrong with META and DATA as the appliance's VG: each disk an LVM PV (its label's
    PV id) of VG @vg with the pe_start and extent counts given (1 MiB, 4 MiB extents), pool_tmeta
    on the metadata PV and pool_tdata all of the data PV. [] when nothing is."""
    ids = [pv_label_id(meta), pv_label_id(data)]
    rc, show, err = vg_show(meta, data)
    bad = []
    if rc or not show.startswith("vg %s " % vg) or " pvs 2 " not in show:
        bad.append("not VG %s of 2 PVs: %s%s" % (vg, show[:200], err))
    for key, pid, n in (("pv0", ids[0], meta_extents), ("pv1", ids[1], data_extents)):
        if not pid or "pv %s id %s pe_start 2048 pe_count %d\n" % (key, pid, n) not in show:
            bad.append("%s is not the disk with label %s and %d extents" % (key, pid, n))
    if not re.search(r"^lv pool_tmeta .* type linear pv pv0 pe \d+$", show, re.M):
        bad.append("pool_tmeta is not on the metadata PV")
    if "lv pool_tdata sectors %d visible 0 type linear pv pv1 pe 0\n" % (data_extents * 8192) \
            not in show:
        bad.append("pool_tdata is not the whole data PV")
    if bad:
        bad.append(show)
    return bad


def thin_check(meta, raw=False):
    """thin_check on the pool metadata of the appliance's metadata disk META (raw: META is
    a plain metadata image already)."""
    return thin_check_image(meta if raw else tmeta_image(meta))


def thin_check_image(image):
    """thin_check on a plain dm-thin metadata image (a copy of a _tmeta LV)."""
    r = run(["thin_check", image])
    return r.returncode, r.stdout + r.stderr


def thin_dump(meta, raw=False):
    """thin_dump_image() of the pool metadata of the appliance's metadata disk META (raw: of
    META itself, a plain metadata image)."""
    return thin_dump_image(meta if raw else tmeta_image(meta))


def thin_dump_image(image):
    """{'transaction': int, 'devices': {id: {'mapped': n, 'map': {vblock: dblock}}}}"""
    r = run(["thin_dump", image])
    if r.returncode:
        raise Failure("thin_dump: " + r.stderr)
    root = ET.fromstring(r.stdout)
    devs = {}
    for d in root.findall("device"):
        m = {}
        for sm in d.findall("single_mapping"):
            m[int(sm.get("origin_block"))] = int(sm.get("data_block"))
        for rm in d.findall("range_mapping"):
            o, db, n = int(rm.get("origin_begin")), int(rm.get("data_begin")), int(rm.get("length"))
            for i in range(n):
                m[o + i] = db + i
        devs[int(d.get("dev_id"))] = {"mapped": int(d.get("mapped_blocks")), "map": m,
                                      "creation_time": int(d.get("creation_time"))}
    return {"transaction": int(root.get("transaction")), "devices": devs,
            "data_block_size": int(root.get("data_block_size")),
            "nr_data_blocks": int(root.get("nr_data_blocks"))}


def read_export(h, export):
    """All of EXPORT of host H, read over NBD in 4 MiB pieces."""
    hh = connect(h.uri(export))
    size = hh.get_size()
    buf = bytearray()
    for off in range(0, size, 4 << 20):
        buf += hh.pread(min(4 << 20, size - off), off)
    hh.shutdown()
    return bytes(buf)


def write(h, export, chunks):
    """Write [(offset, bytes)] to EXPORT of host H over NBD, then flush."""
    hh = connect(h.uri(export))
    for off, data in chunks:
        hh.pwrite(data, off)
    hh.flush()
    hh.shutdown()


def cmd(h, line):
    """A shell line that must succeed (no error or usage in its output)."""
    out = h.command(line)
    if "error" in out or "usage" in out:
        raise Failure("%s: %s" % (line, out))
    return out


def parse_thin_list(out):
    """`thin list` -> {name: {'id', 'size', 'mapped', 'origin'}} (sizes as printed)."""
    vols = {}
    for line in out.splitlines():
        w = line.split()
        if len(w) >= 7 and w[1].isdigit():
            # NAME ID SIZE UNIT MAPPED UNIT ORIGIN ...
            vols[w[0]] = {"id": int(w[1]), "size": w[2] + " " + w[3],
                          "mapped": w[4] + " " + w[5], "origin": w[6]}
    return vols


def shell_txid(out):
    m = re.search(r"transaction id\s+(\d+)", out)
    return int(m.group(1)) if m else None


def blank_disks(tmp, meta_size=64 << 20, data_size=512 << 20):
    meta, data = os.path.join(tmp, "meta.img"), os.path.join(tmp, "data.img")
    for p, s in ((meta, meta_size), (data, data_size)):
        with open(p, "wb") as f:
            f.truncate(s)
    return meta, data


def scratch():
    d = tempfile.mkdtemp(prefix="thinbox-app-")
    atexit.register(lambda: subprocess.run(["rm", "-rf", d]))
    return d


def pattern(tag, length):
    """Deterministic bytes for @tag (any string)."""
    import hashlib
    out = bytearray()
    seed = tag.encode()
    i = 0
    while len(out) < length:
        out += hashlib.sha256(seed + i.to_bytes(8, "little")).digest()
        i += 1
    return bytes(out[:length])


class Checks(tap.Checks):
    """tests/lib/tap.py's checks; finish() also stops every process this module started."""

    def finish(self):
        _kill_all()
        super().finish()
