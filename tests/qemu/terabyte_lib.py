# SPDX-License-Identifier: MIT
"""Random 4 KiB I/O spread over a whole volume, pipelined on several NBD connections (libnbd's
asynchronous calls, one thread per connection): what tests/qemu/terabyte.t and
tests/bench/terabyte.bench drive against the appliance. Each written 4 KiB unit holds its own
byte offset and a seed, so any of them can be checked later without keeping the data. Also:
the metadata disk's size rule (meta_disk_size) and the machine whose data disk stays sparse
(TibMachine)."""
import atexit
import os
import random
import re
import shutil
import subprocess
import struct
import tempfile
import threading
import time

import nbd

import appliance_lib as ap

UNIT = 4096


def unit(offset, seed):
    """The 4 KiB a write at @offset with @seed leaves."""
    return struct.pack("<QQ", offset, seed) * (UNIT // 16)


def spread_offsets(size, block, count, seed):
    """@count offsets of 4 KiB units in distinct @block-sized blocks spread at random over
    @size bytes (each at a random 4 KiB place inside its block)."""
    rng = random.Random(seed)
    blocks = rng.sample(range(size // block), count)
    return [b * block + rng.randrange(block // UNIT) * UNIT for b in blocks]


def _run(uri, jobs, qd, op, seed, errors, deadline):
    """One connection: @op ("write" or "read") every offset of @jobs, @qd in flight."""
    h = nbd.NBD()
    bad = []

    def done(off, buf, err):
        if err.value:
            bad.append("offset %d: error %d" % (off, err.value))
        elif op == "read" and seed is not None and buf.to_bytearray() != unit(off, seed):
            bad.append("offset %d reads back wrong" % off)
        return 1  # retire the command

    try:
        h.connect_uri(uri)
        i = 0
        while i < len(jobs) or h.aio_in_flight() > 0:
            while i < len(jobs) and h.aio_in_flight() < qd:
                off = jobs[i]
                if op == "write":
                    buf = nbd.Buffer.from_bytearray(bytearray(unit(off, seed)))
                    h.aio_pwrite(buf, off, lambda err, o=off, b=buf: done(o, b, err))
                else:
                    buf = nbd.Buffer(UNIT)
                    h.aio_pread(buf, off, lambda err, o=off, b=buf: done(o, b, err))
                i += 1
            h.poll(1000)
            if time.monotonic() > deadline:
                errors.append("%s: not done in time (%d of %d issued)" % (uri, i, len(jobs)))
                return
        h.shutdown()
    except nbd.Error as e:
        errors.append("%s: %s" % (uri, e))
    errors.extend(bad[:10])


def spread_io(uri, offsets, op, seed=None, conns=4, qd=16, timeout=600):
    """@op ("write" / "read") a 4 KiB unit at each of @offsets over @conns connections with @qd
    requests in flight on each. Reads are compared with unit(offset, @seed) unless @seed is
    None. Returns (seconds, IOPS, errors)."""
    errors = []
    parts = [offsets[k::conns] for k in range(conns)]
    deadline = time.monotonic() + timeout
    ts = [threading.Thread(target=_run, args=(uri, p, qd, op, seed, errors, deadline))
          for p in parts]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.monotonic() - t0
    return dt, len(offsets) / dt if dt > 0 else 0.0, errors


def meta_disk_size(data_disk, block, max_thins):
    """The metadata disk for @data_disk: thin_metadata_size's advice for pool_tdata (the disk
    less the 1 MiB LVM header, in 4 MiB extents), rounded up to extents, twice (pool_tmeta and
    lvm's spare of the same size), plus the header; at least the appliance's 5 MiB."""
    ext = 4 << 20
    pool = (data_disk - (1 << 20)) // ext * ext
    r = subprocess.run(["thin_metadata_size", "-b", "%db" % block, "-s", "%db" % pool,
                        "-m", str(max_thins), "-u", "b", "-n"], capture_output=True, text=True)
    advice = int(r.stdout.split()[0])
    return max(5 << 20, (1 << 20) + 2 * (-(-advice // ext) * ext)), advice


def parse_size(text):
    m = re.match(r"([\d.]+)\s*(B|KiB|MiB|GiB|TiB)", text)
    mult = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
    return int(float(m.group(1)) * mult[m.group(2)]) if m else None


class TibMachine(ap.DiskMachine):
    """The appliance's machine with the data disk given discard=unmap: WRITE_ZEROES may punch
    holes (virtio-blk's write_zeroes_may_unmap), so zeroing new blocks keeps it sparse."""

    def _args(self):
        return [a.replace("id=data,format=raw,", "id=data,format=raw,discard=unmap,")
                for a in super()._args()]


def scratch(need=4 << 30):
    """A directory for the sparse disks, removed at exit: in /dev/shm when it has @need bytes
    free (a tmpfs: QEMU's scattered 4 KiB writes cost no disk, and removing a file of 200,000
    extents takes no time, where an ext4 mounted with discard takes half a minute), else where
    applib's scratch() puts them. TERABYTE_DIR names another parent."""
    parent = os.environ.get("TERABYTE_DIR", "/dev/shm")
    try:
        st = os.statvfs(parent)
        if st.f_bavail * st.f_frsize >= need:
            d = tempfile.mkdtemp(prefix="thinbox-tib-", dir=parent)
            atexit.register(lambda: shutil.rmtree(d, ignore_errors=True))
            return d
    except OSError:
        pass
    return ap.al.scratch()
