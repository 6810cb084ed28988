#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A terabyte pool in 256 MiB (issue 16): the firmware in QEMU with -m 256 on a 1 TiB sparse data
disk and a metadata disk sized by thin_metadata_size's advice (docs/appliance.md "Sizing the
metadata disk": 1 MiB + twice the advice rounded up to 4 MiB extents, pool_tmeta and lvm's
spare).

Boot 1 (first boot formats the 1 TiB pool): random 4 KiB writes over the whole of vol0, each
into a 64 KiB block never written before, four connections with 16 in flight each, in rounds
with a snapshot after each; then copy-on-write rewrites of blocks the first snapshot shares.
`mem` after the second round and at the end: the heap stays under HEAP_LIMIT and does not grow
between the two (everything the pool keeps per block lives on the metadata disk). At least
200,000 data blocks mapped (pool status, thin list); `pool check` clean (time printed); poweroff.
Between the boots: thin_check on pool_tmeta is clean; the data disk holds little more than what
was written (zeroing by WRITE_ZEROES keeps it sparse).
Boot 2: the reopen time (OVMF's hand-off, the banner, to `thinbox: ready` and to the first
NBD answer, probed as linux-vm.bench does) printed and bounded, and the firmware's boot
breakdown (`thinbox: boot:` lines, docs/firmware.md "Boot breakdown") printed; sampled
blocks read back with their contents, the copied ones new in vol0 and old in the first
snapshot. The disks (in /dev/shm when it has room: terabyte_lib.scratch()) are
removed at the end, and on failure.

TERABYTE_ROUNDS / TERABYTE_PER_ROUND change the load (default 4 x 52,000 writes)."""
import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import appliance_lib as ap  # noqa: E402
import linuxvm  # noqa: E402
import terabyte_lib as tl  # noqa: E402

qh, al = ap.qh, ap.al
c = qh.Checks("qemu/terabyte")
qh.require_image(c)
tmp = tl.scratch()

DATA_DISK = 1 << 40
BS = 64 << 10
MAX_THINS = 16
MAPPED_MIN = 200_000
ROUNDS = int(os.environ.get("TERABYTE_ROUNDS", "4"))
PER_ROUND = int(os.environ.get("TERABYTE_PER_ROUND", "52000"))
COW = 1000
SAMPLES = 2000
SEED = 16
# The C heap's pages (`mem`, a high-water mark): 28 MiB through the load (mostly the 26.6 MiB
# metadata cache), 82 MiB after `pool check` (its two bytes per data block, 32 MiB at 1 TiB,
# are freed again but stay in the mark); the checker's old four bytes per block took it to
# 156 MiB. docs/firmware.md "Memory at 1 TiB".
HEAP_LIMIT = 96 << 20
HEAP_GROWTH = 2 << 20
REOPEN_LIMIT = 60.0
# Hand-off to the first NBD answer: 0.2-0.8 s at 1 TiB under TCG on the shared machine
# (docs/scale-out.md); the bound only catches a reopen that reads the whole pool.
ANSWER_LIMIT = 30.0


def load():
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def heap(m):
    out = m.sh("mem")
    h = re.search(r"free, ([\d.]+ \w+) heap", out)
    c.note(out.strip())
    return tl.parse_size(h.group(1)) if h else None


def data_used(out):
    s = re.search(r"status: \d+ (\d+)/(\d+) (\d+)/(\d+)", out)
    return int(s.group(3)) if s else None


meta_size, advice = tl.meta_disk_size(DATA_DISK, BS, MAX_THINS)
c.note("disks in %s" % tmp)
c.note("thin_metadata_size for 1 TiB, 64 KiB blocks, %d thins: %.1f MiB; metadata disk %d MiB"
       % (MAX_THINS, advice / 2**20, meta_size >> 20))
disks = (("meta", meta_size), ("data", DATA_DISK))
rounds = []
try:
    m = tl.TibMachine("qemu-terabyte", tmp, disks=disks, mem="256M")
    with m:
        m.boot_appliance(timeout=180)
        c.note("first boot (formats 1 TiB): QEMU start to first NBD answer %.1fs" % m.elapsed())
        c.check("first-boot-formats", "first boot: blank disks" in m.output)
        vols = al.parse_thin_list(m.sh("thin list"))
        vsize = tl.parse_size(vols.get("vol0", {}).get("size", ""))
        c.check("vol0-is-the-terabyte", vsize is not None and vsize > (1 << 40) - (16 << 30),
                str(vols))
        vsize = vsize or (1 << 40) - (8 << 20)
        offsets = tl.spread_offsets(vsize, BS, ROUNDS * PER_ROUND, SEED)
        heap0 = heap(m)
        heap_mid = None
        for r in range(ROUNDS):
            part = offsets[r * PER_ROUND:(r + 1) * PER_ROUND]
            dt, iops, err = tl.spread_io(m.uri("vol0"), part, "write", seed=r + 1, conns=4,
                                         qd=16, timeout=300)
            c.note("round %d: %d random 4 KiB writes (new blocks) in %.1fs, %.0f IOPS "
                   "(load %s)" % (r + 1, len(part), dt, iops, load()))
            c.check("round-%d-writes" % (r + 1), not err, "\n".join(err[:5]))
            out = m.sh("thin snapshot vol0 s%d" % (r + 1), timeout=120)
            c.check("snapshot-%d" % (r + 1), "created s%d" % (r + 1) in out, out)
            if r == ROUNDS // 2 - 1:
                heap_mid = heap(m)
        heap_end = heap(m)
        # Copy-on-write: blocks of round 1 are shared with s1 (and later snapshots).
        cow = offsets[:COW]
        dt, iops, err = tl.spread_io(m.uri("vol0"), cow, "write", seed=100, conns=4, qd=16)
        c.note("%d copy-on-write 4 KiB writes in %.1fs, %.0f IOPS" % (COW, dt, iops))
        c.check("cow-writes", not err, "\n".join(err[:5]))
        m.sh("pool commit", timeout=120)
        heap_cow = heap(m)
        c.note("heap: %.1f MiB at start, %.1f MiB after round %d, %.1f MiB after round %d, "
               "%.1f MiB after the copies (limit %d MiB)"
               % (heap0 / 2**20, (heap_mid or 0) / 2**20, ROUNDS // 2, (heap_end or 0) / 2**20,
                  ROUNDS, (heap_cow or 0) / 2**20, HEAP_LIMIT >> 20))
        cache = re.search(r"pool: metadata cache of at most (\d+) blocks \(([^)]*)\)", m.output)
        c.note("metadata cache: %s" % (cache.group(0) if cache else "not printed"))
        c.check("metadata-cache-printed", cache is not None)
        c.check("heap-bounded", heap_cow is not None and heap_cow <= HEAP_LIMIT)
        # Twice the mappings, the same heap: nothing kept per block or per mapping.
        c.check("heap-not-growing", heap_mid is not None and heap_end is not None
                and heap_end - heap_mid <= HEAP_GROWTH, "%s -> %s" % (heap_mid, heap_end))
        status = m.sh("pool status")
        used = data_used(status)
        c.note("data blocks mapped: %s" % used)
        c.check("mapped-200k-blocks", used is not None and used >= MAPPED_MIN, status)
        vols = al.parse_thin_list(m.sh("thin list"))
        mapped = tl.parse_size(vols.get("vol0", {}).get("mapped", ""))
        c.check("thin-list-vol0-mapped", mapped is not None and mapped >= MAPPED_MIN * BS * 0.99,
                str(vols.get("vol0")))
        c.check("snapshots-listed", all("s%d" % (r + 1) in vols for r in range(ROUNDS)),
                str(sorted(vols)))
        t0 = time.monotonic()
        out = m.sh("pool check", timeout=600)
        c.note("pool check: %.1fs" % (time.monotonic() - t0))
        c.check("pool-check-clean", "pool check: clean" in out, out[-2000:])
        heap_check = heap(m)
        c.check("heap-bounded-after-check", heap_check is not None and heap_check <= HEAP_LIMIT)
        m.send("poweroff\r")
        c.check("poweroff", m.wait_exit(120) == qh.RC_POWEROFF)

    rc, text = al.thin_check(m.disk("meta"))
    c.check("thin-check-clean", rc == 0, text)
    os.unlink(m.disk("meta") + ".tmeta")
    st = os.stat(m.disk("data"))
    c.note("data disk: %.0f MiB allocated for %d blocks written (%.0f MiB of payload)"
           % (st.st_blocks * 512 / 2**20, len(offsets) + COW,
              (len(offsets) * 4096 + COW * BS) / 2**20))
    c.check("data-disk-stays-sparse",
            st.st_blocks * 512 < 4 * (len(offsets) * 4096 + COW * BS))

    m = tl.TibMachine("qemu-terabyte2", tmp, disks=disks, mem="256M")
    with m:
        m.expect(qh.BANNER, 60)
        t_banner = m.elapsed()
        handoff = time.monotonic()
        answer = linuxvm.first_answer(m.port, 180)
        m.expect("thinbox: ready", 180)
        t_ready = m.elapsed()
        m.expect(qh.PROMPT, 30)
        c.note("reopen: banner to ready %.2fs, hand-off to first NBD answer %s (QEMU start to "
               "banner %.1fs; load %s)"
               % (t_ready - t_banner, "%.2fs" % (answer - handoff) if answer else "none",
                  t_banner, load()))
        lines = [ln.strip() for ln in m.output.replace("\r", "").splitlines()
                 if ln.startswith("thinbox: boot:")]
        for ln in lines:
            c.note(ln)
        c.check("boot-breakdown-printed",
                any("pool open" in ln and "recount" in ln for ln in lines)
                and any("banner to ready" in ln for ln in lines), "\n".join(lines))
        c.check("reopen-bounded", t_ready - t_banner < REOPEN_LIMIT,
                "%.1fs" % (t_ready - t_banner))
        c.check("first-answer-bounded", answer is not None and answer - handoff < ANSWER_LIMIT,
                "%s" % (answer and answer - handoff))
        c.check("no-format-on-reopen", "first boot" not in m.output)
        rng = random.Random(SEED)
        errs = []
        for r in range(ROUNDS):
            part = offsets[r * PER_ROUND:(r + 1) * PER_ROUND]
            if r == 0:
                part = part[COW:]
            sample = rng.sample(part, min(SAMPLES // ROUNDS, len(part)))
            errs += tl.spread_io(m.uri("vol0"), sample, "read", seed=r + 1)[2]
        errs += tl.spread_io(m.uri("vol0"), cow[:500], "read", seed=100)[2]
        c.check("sampled-blocks-read-back", not errs, "\n".join(errs[:5]))
        out = m.sh("export add s1 --read-only")
        c.check("export-s1", "exported s1" in out, out)
        err = tl.spread_io(m.uri("s1"), cow[:500], "read", seed=1)[2]
        c.check("snapshot-keeps-old-data", not err, "\n".join(err[:5]))
        m.send("poweroff\r")
        c.check("poweroff-again", m.wait_exit(120) == qh.RC_POWEROFF)
except (qh.BootFailure, al.Failure) as e:
    c.check("no-boot-failure", False, str(e))
finally:
    for d in ("meta", "data"):
        p = os.path.join(tmp, d + ".img")
        for f in (p, p + ".tmeta"):
            if os.path.exists(f):
                os.unlink(f)
c.finish()
