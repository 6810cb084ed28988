#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Incremental backup over NBD with libnbd: copy onto BACKUP only the extents of the export at
URI that the meta context qemu:dirty-bitmap:BITMAP says are dirty (changed since snapshot
BITMAP), reading them from the export. BACKUP must hold the export as it was at BITMAP (a
full copy of that snapshot, e.g. by nbdcopy); afterwards it holds the export as it is now.

usage: incr_backup.py URI BITMAP BACKUP
Prints "copied N bytes in M extents of SIZE"; exits 1 with libnbd's message on an error
(e.g. the snapshot BITMAP was deleted: the server refuses BLOCK_STATUS)."""
import os
import sys

sys.path.insert(0, "/usr/lib/python3/dist-packages")
import nbd  # noqa: E402

CHUNK = 32 << 20  # one BLOCK_STATUS request at a time, and the largest read


def main(uri, bitmap, backup):
    ctx = "qemu:dirty-bitmap:" + bitmap
    h = nbd.NBD()
    h.add_meta_context(ctx)
    h.connect_uri(uri)
    if not h.can_meta_context(ctx):
        raise SystemExit("%s: the server does not offer %s" % (uri, ctx))
    size = h.get_size()
    copied = extents = 0
    with open(backup, "r+b") as out:
        if os.fstat(out.fileno()).st_size != size:
            out.truncate(size)
        off = 0
        while off < size:
            got = []

            def cb(metacontext, offset, entries, err):
                if metacontext == ctx:
                    got.append((offset, entries))
                return 0

            h.block_status(min(CHUNK, size - off), off, cb)
            pos, ents = got[0]
            for i in range(0, len(ents), 2):
                length, flags = ents[i], ents[i + 1]
                length = min(length, size - pos)
                if flags & 1:  # NBD_STATE_DIRTY
                    for o in range(pos, pos + length, CHUNK):
                        n = min(CHUNK, pos + length - o)
                        out.seek(o)
                        out.write(h.pread(n, o))
                    copied += length
                    extents += 1
                pos += length
            if pos <= off:
                raise SystemExit("no progress at offset %d" % off)
            off = pos
    h.shutdown()
    print("copied %d bytes in %d extents of %d" % (copied, extents, size))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    try:
        main(*sys.argv[1:])
    except nbd.Error as e:
        print("incr_backup: %s" % e, file=sys.stderr)
        sys.exit(1)
