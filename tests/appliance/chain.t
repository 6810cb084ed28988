#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A 100-deep snapshot chain on the host build, every level verified over NBD.

Level 0 is vol0. For level i = 1..100: write block i (64 KiB, a pattern naming level i) and
overwrite block 0 (shared by every earlier level) in level i-1, then snapshot level i-1 as
level i. Level k must then read: block 0 as written at level k, blocks 1..k as written at
their levels, block k+1 as written at level k (it was written into level k before level k+1
was taken from it) except for the last level, everything else zero. Checked for all 101
levels, after a restart again, and thin_check / thin_dump agree (101 devices)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import applib as al  # noqa: E402

DEPTH = int(os.environ.get("CHAIN_DEPTH", "100"))
BS = 64 << 10

c = al.Checks("appliance/chain")
c.need_tools("thin_check", "thin_dump")
tmp = al.scratch()
meta, data = al.blank_disks(tmp, 64 << 20, 256 << 20)


def name(level):
    return "vol0" if level == 0 else "l%d" % level


def write_level(h, level):
    """Into level-1 (exported rw while written): block `level` and block 0."""
    target = name(level - 1)
    if level > 1:
        out = h.command("export add %s --name w" % target)
        if "exported" not in out:
            raise al.Failure(out)
    hh = al.connect(h.uri("vol0" if level == 1 else "w"))
    hh.pwrite(al.pattern("block%d" % level, BS), level * BS)
    hh.pwrite(al.pattern("zero-at%d" % (level - 1), BS), 0)
    hh.flush()
    hh.shutdown()
    if level > 1:
        h.command("export remove w")
    out = h.command("thin snapshot %s %s" % (target, name(level)))
    if "created" not in out:
        raise al.Failure(out)


def verify(h, levels):
    """Export each level read-only (in batches under the export limit) and read it."""
    bad = []
    for start in range(0, len(levels), 50):
        batch = levels[start:start + 50]
        for lv in batch:
            if lv:
                h.command("export add %s --read-only --name r%d" % (name(lv), lv))
        for lv in batch:
            hh = al.connect(h.uri("vol0" if lv == 0 else "r%d" % lv))
            top = min(DEPTH + 1, lv + 2)
            # Block 0 was last written into level lv when level lv+1 was made; the last
            # level was never written itself and holds what level DEPTH-1 had then.
            want0 = al.pattern("zero-at%d" % min(lv, DEPTH - 1), BS)
            if hh.pread(BS, 0) != want0:
                bad.append((lv, 0))
            for b in range(1, top + 1):
                if b > DEPTH:
                    break
                got = hh.pread(BS, b * BS)
                visible = b <= lv or (b == lv + 1 and lv < DEPTH)
                want = al.pattern("block%d" % b, BS) if visible else bytes(BS)
                if got != want:
                    bad.append((lv, b))
            hh.shutdown()
        for lv in batch:
            if lv:
                h.command("export remove r%d" % lv)
    return bad


try:
    h = al.Host(meta, data).start()
    t0 = time.monotonic()
    for lv in range(1, DEPTH + 1):
        write_level(h, lv)
    c.note("built %d levels in %.1fs" % (DEPTH, time.monotonic() - t0))
    vols = al.parse_thin_list(h.command("thin list"))
    c.check("all-levels-listed", len(vols) == DEPTH + 1, "%d volumes" % len(vols))
    c.check("origins-form-a-chain", all(vols[name(i)]["origin"] == name(i - 1) for i in range(1, DEPTH + 1)))
    t0 = time.monotonic()
    bad = verify(h, list(range(0, DEPTH + 1)))
    c.note("verified %d levels in %.1fs" % (DEPTH + 1, time.monotonic() - t0))
    c.check("every-level-reads-its-own-data", not bad, "wrong (level, block): %s" % bad[:20])
    txid = al.shell_txid(h.command("pool status"))
    c.check("stops-cleanly", h.stop() == 0)

    rc, text = al.thin_check(meta)
    c.check("thin-check-clean", rc == 0, text)
    d = al.thin_dump(meta)
    c.check("thin-dump-has-every-level", len(d["devices"]) == DEPTH + 1 and d["transaction"] == txid,
            "%d devices, transaction %s (shell %s)" % (len(d["devices"]), d["transaction"], txid))
    # Level k maps blocks 0..k+1 (block 0 of its own, the others shared up the chain).
    want_mapped = {vols[name(k)]["id"]: min(k + 2, DEPTH + 1) for k in range(DEPTH + 1)}
    got_mapped = {i: v["mapped"] for i, v in d["devices"].items()}
    c.check("thin-dump-mapped-counts", got_mapped == want_mapped,
            str([(i, got_mapped.get(i), m) for i, m in want_mapped.items() if got_mapped.get(i) != m][:10]))

    h = al.Host(meta, data).start()
    bad = verify(h, [0, 1, 2, DEPTH // 2, DEPTH - 1, DEPTH])
    c.check("levels-read-back-after-restart", not bad, str(bad[:20]))
    c.check("stops-cleanly-again", h.stop() == 0)
except al.Failure as e:
    c.check("no-failure", False, str(e))
c.finish()
