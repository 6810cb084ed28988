# Unaligned WRITE / WRITE_ZEROES through libnbd (run by unaligned.t inside nbdsh, which
# provides the nbd module), against the export at NBD_URI (all zero at the start): the
# minimum block size is 1, writes and zeroes at any byte offset land exactly, with FUA, and
# pipelined pieces of one sector from two connections all land (docs/nbd.md "Unaligned
# writes").
import os
import sys

import nbd

sys.path.insert(0, os.path.abspath("tests/lib"))
import tap  # noqa: E402

URI = os.environ["NBD_URI"]
T = tap.Checks("unaligned/" + os.environ["NBD_WHAT"])
SIZE = 4 << 20  # the part of the export the checks use


def connect():
    h = nbd.NBD()
    h.connect_uri(URI)
    return h


a, b = connect(), connect()
model = bytearray(SIZE)
T.check("block-size-minimum-1", a.get_block_size(nbd.SIZE_MINIMUM) == 1,
        "minimum %d" % a.get_block_size(nbd.SIZE_MINIMUM))
T.check("block-size-preferred-4096", a.get_block_size(nbd.SIZE_PREFERRED) == 4096)

# Pieces around sector and 64 KiB (pool block) edges, some with FUA.
n = 0
for base in (0, 512, 4096, 65536, 3 << 20):
    for delta in (-3, -1, 1, 2, 511):
        for length in (1, 3, 513, 1000, 65537):
            off = base + delta
            if off < 0:
                continue
            n += 1
            flags = nbd.CMD_FLAG_FUA if n % 3 == 0 else 0
            if n % 4 == 0:
                a.zero(length, off, flags)
                model[off:off + length] = bytes(length)
            else:
                data = bytes((n + i) & 0xFF or 1 for i in range(length))
                a.pwrite(data, off, flags)
                model[off:off + length] = data
got = a.pread(SIZE, 0)
bad = next((i for i in range(SIZE) if got[i] != model[i]), None)
T.check("pieces-match-model", bad is None, "first difference at byte %s" % bad)

# Two connections, every 3-byte cell of two sectors, all in flight before any reply.
region, cells = 8 << 20 >> 1, 341
cmds = []
for i in range(cells):
    h = a if i % 2 == 0 else b
    cmds.append((h, h.aio_pwrite(bytes([0x20 + i % 200]) * 3, region - 512 + 3 * i)))
for h, c in cmds:
    while not h.aio_command_completed(c):
        h.poll(1)
want = b"".join(bytes([0x20 + i % 200]) * 3 for i in range(cells))
T.check("pipelined-pieces-all-land", a.pread(len(want), region - 512) == want)
b.flush()
a.shutdown()
b.shutdown()
T.finish()
