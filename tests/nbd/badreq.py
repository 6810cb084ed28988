# Bad requests through libnbd (run by badreq.t inside nbdsh, which provides the nbd module).
# libnbd's strict mode is turned off so it sends what it would normally refuse. Each check
# prints PASS/FAIL lines through tests/lib/tap.py; the connection must survive every
# well-framed bad request (docs/nbd.md, protocol rules 3 and 4).
import errno
import os
import sys

import nbd

# exec()'d by nbdsh from the top of the tree: no __file__, but the working directory is known.
sys.path.insert(0, os.path.abspath("tests/lib"))
import tap  # noqa: E402

BASE = os.environ["NBD_BASE"]
SIZE = 64 << 20
T = tap.Checks("badreq")


def connect(export, meta=True, strict=0):
    h = nbd.NBD()
    if meta:
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_uri(BASE + "/" + export)
    h.set_strict_mode(strict)
    return h


def expect_err(name, want, fn):
    try:
        fn()
    except nbd.Error as e:
        # libnbd 1.14 gives the errno as its name ("EINVAL"), newer ones as a number.
        got = e.errno if isinstance(e.errno, int) else getattr(errno, str(e.errno), e.errno)
        T.check(name, got == want, "%s, wanted %s" % (e, errno.errorcode[want]))
        return
    T.check(name, False, "succeeded, wanted errno %d" % want)


def expect_ok(name, fn):
    try:
        fn()
        T.check(name, True)
    except nbd.Error as e:
        T.check(name, False, str(e))


rw = connect("disk")
ro = connect("ro")
nometa = connect("disk", meta=False)
BIG = 1 << 63

# READ
expect_err("read-crossing-end", errno.EINVAL, lambda: rw.pread(4096, SIZE - 512))
expect_err("read-past-end", errno.EINVAL, lambda: rw.pread(512, SIZE + 4096))
expect_err("read-offset-wraps", errno.EINVAL, lambda: rw.pread(4096, (1 << 64) - 512))
expect_err("read-length-0", errno.EINVAL, lambda: rw.pread(0, 0))
# Requests above the maximum payload (64 MiB) are raw.py's: libnbd 1.14 refuses to send more
# than 64 MiB even with strict mode off (ERANGE, "maximum request size is 67108864").
expect_err("read-unknown-flag", errno.EINVAL, lambda: rw.pread(512, 0, 1 << 15))
expect_err("read-inapplicable-flag", errno.EINVAL, lambda: rw.pread(512, 0, nbd.CMD_FLAG_REQ_ONE))
expect_ok("read-with-fua", lambda: rw.pread(512, 0, nbd.CMD_FLAG_FUA))
expect_ok("read-with-df", lambda: rw.pread(65536, 0, nbd.CMD_FLAG_DF))
try:
    whole = rw.pread(4096, 0)
    part = rw.pread(511, 1)
    T.check("read-unaligned", part == whole[1:512], "data differs")
except nbd.Error as e:
    T.check("read-unaligned", False, str(e))

# WRITE
expect_err("write-crossing-end", errno.ENOSPC, lambda: rw.pwrite(b"\1" * 4096, SIZE - 512))
expect_err("write-past-end", errno.ENOSPC, lambda: rw.pwrite(b"\1" * 512, SIZE))
expect_err("write-offset-wraps", errno.ENOSPC, lambda: rw.pwrite(b"\1" * 4096, (1 << 64) - 512))
# Unaligned writes are read-modify-writes (minimum block size 1, docs/nbd.md).
T.check("block-size-minimum-1", rw.get_block_size(nbd.SIZE_MINIMUM) == 1,
        "minimum %d" % rw.get_block_size(nbd.SIZE_MINIMUM))
rw.pwrite(b"\2" * 1024, 0)
expect_ok("write-unaligned", lambda: rw.pwrite(b"\1" * 100, 1))
T.check("write-unaligned-data", rw.pread(1024, 0) == b"\2" + b"\1" * 100 + b"\2" * 923,
        "data differs")
expect_err("write-unaligned-past-end", errno.ENOSPC, lambda: rw.pwrite(b"\1" * 3, SIZE - 1))
expect_err("write-unaligned-read-only", errno.EPERM, lambda: ro.pwrite(b"\1" * 3, 1))
expect_err("write-inapplicable-flag", errno.EINVAL,
           lambda: rw.pwrite(b"\1" * 512, 0, nbd.CMD_FLAG_NO_HOLE))
expect_err("write-read-only", errno.EPERM, lambda: ro.pwrite(b"\1" * 512, 0))
expect_err("write-read-only-past-end", errno.EPERM, lambda: ro.pwrite(b"\1" * 512, SIZE))
expect_ok("write-fua", lambda: rw.pwrite(b"\7" * 4096, 8192, nbd.CMD_FLAG_FUA))
T.check("write-fua-data", rw.pread(4096, 8192) == b"\7" * 4096, "data differs")

# TRIM
expect_ok("trim", lambda: rw.trim(65536, 1 << 20))
expect_ok("trim-unaligned-is-a-hint", lambda: rw.trim(1000, 1 << 20))
expect_err("trim-past-end", errno.EINVAL, lambda: rw.trim(4096, SIZE))
expect_err("trim-read-only", errno.EPERM, lambda: ro.trim(4096, 0))
expect_err("trim-unknown-flag", errno.EINVAL, lambda: rw.trim(4096, 0, nbd.CMD_FLAG_DF))

# WRITE_ZEROES
expect_err("zero-past-end", errno.ENOSPC, lambda: rw.zero(4096, SIZE))
expect_err("zero-read-only", errno.EPERM, lambda: ro.zero(4096, 0))
expect_ok("zero-unaligned", lambda: rw.zero(100, 3))
# zero(count, offset): bytes 3..102, over the write above (1..100) and past it.
T.check("zero-unaligned-data", rw.pread(1024, 0) == b"\2\1\1" + bytes(100) + b"\2" * 921,
        "data differs")
expect_err("zero-unaligned-fast-is-enotsup", errno.ENOTSUP, lambda: rw.zero(100, 3, nbd.CMD_FLAG_FAST_ZERO))
expect_err("zero-unaligned-past-end", errno.ENOSPC, lambda: rw.zero(3, SIZE - 1))
expect_err("zero-fast-no-hole-is-enotsup", errno.ENOTSUP,
           lambda: rw.zero(1 << 20, 0, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE))
rw.pwrite(b"\3" * (1 << 20), 2 << 20)
expect_ok("zero-no-hole", lambda: rw.zero(1 << 20, 2 << 20, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA))
T.check("zero-no-hole-data", rw.pread(1 << 20, 2 << 20) == bytes(1 << 20), "not zero")
rw.pwrite(b"\3" * (1 << 20), 2 << 20)
expect_ok("zero-fast", lambda: rw.zero(1 << 20, 2 << 20, nbd.CMD_FLAG_FAST_ZERO))
T.check("zero-fast-data", rw.pread(1 << 20, 2 << 20) == bytes(1 << 20), "not zero")
expect_ok("zero-larger-than-max-payload", lambda: rw.zero(SIZE - (1 << 20), 1 << 20))
T.check("zero-large-data", rw.pread(1 << 20, 20 << 20) == bytes(1 << 20), "not zero")

# FLUSH, CACHE
expect_ok("flush", lambda: rw.flush())
expect_ok("flush-read-only", lambda: ro.flush())
expect_ok("cache", lambda: rw.cache(1 << 20, 0))
expect_err("cache-past-end", errno.EINVAL, lambda: rw.cache(4096, SIZE))
expect_err("cache-unknown-flag", errno.EINVAL, lambda: rw.cache(4096, 0, nbd.CMD_FLAG_NO_HOLE))

# BLOCK_STATUS
seen = []


def extents(meta, off, ents, err):
    seen.append((meta, off, list(ents)))
    return 0


expect_ok("block-status", lambda: rw.block_status(SIZE, 0, extents))
T.check("block-status-covers", bool(seen) and sum(seen[0][2][0::2]) == SIZE, repr(seen)[:200])
seen.clear()
expect_ok("block-status-req-one", lambda: rw.block_status(SIZE, 0, extents, nbd.CMD_FLAG_REQ_ONE))
T.check("block-status-req-one-single", bool(seen) and len(seen[0][2]) == 2, repr(seen)[:200])
expect_err("block-status-past-end", errno.EINVAL, lambda: rw.block_status(4096, SIZE, extents))
expect_err("block-status-without-context", errno.EINVAL,
           lambda: nometa.block_status(4096, 0, extents))
expect_err("block-status-bad-flag", errno.EINVAL,
           lambda: rw.block_status(4096, 0, extents, nbd.CMD_FLAG_DF))

# After all that, every connection still works.
for name, h in (("rw", rw), ("ro", ro), ("nometa", nometa)):
    expect_ok("still-connected-" + name, lambda: h.pread(4096, 0))
for h in (rw, ro, nometa):
    h.shutdown()  # NBD_CMD_DISC
T.check("disc-accepted", True)
T.finish()
