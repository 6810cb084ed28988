# The NBD protocol spoken by hand (plain sockets), for what libnbd will not send: unknown
# options and commands, bad magic, oversized options and payloads, option floods, and
# clients that stall or vanish. Usage: raw.py PORT (exports "disk" rw, "ro" read-only,
# 128 MiB: room for a request just above the 64 MiB maximum payload). Prints PASS/FAIL lines through tests/lib/tap.py.
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import tap  # noqa: E402

PORT = int(sys.argv[1])
SIZE = 128 << 20
T = tap.Checks("raw")

IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE = 0x67446698
STRUCT = 0x668E33EF
ERR = 1 << 31
ERR_UNSUP, ERR_INVALID, ERR_UNKNOWN, ERR_TOO_BIG = ERR | 1, ERR | 3, ERR | 6, ERR | 9
EINVAL, ENOSPC, EPERM = 22, 28, 1


class Conn:
    def __init__(self, cflags=3):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        magic, opt, gflags = struct.unpack(">QQH", self.recv(18))
        assert magic == 0x4E42444D41474943 and opt == IHAVEOPT and gflags == 3
        self.s.sendall(struct.pack(">I", cflags))

    def recv(self, n):
        b = b""
        while len(b) < n:
            k = self.s.recv(n - len(b))
            if not k:
                raise EOFError("closed after %d of %d bytes" % (len(b), n))
            b += k
        return b

    def closed(self):
        """True when the server closed the connection (EOF within the timeout)."""
        try:
            while self.s.recv(65536):
                pass
            return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def opt(self, option, data=b""):
        self.s.sendall(struct.pack(">QII", IHAVEOPT, option, len(data)) + data)

    def reply(self):
        magic, opt, rtype, rlen = struct.unpack(">QIII", self.recv(20))
        assert magic == REP_MAGIC, hex(magic)
        return opt, rtype, self.recv(rlen)

    def replies(self):
        out = []
        while True:
            r = self.reply()
            out.append(r)
            if r[1] == 1 or r[1] & ERR:
                return out

    def go(self, name=b"disk", structured=True):
        if structured:
            self.opt(8)
            assert self.reply()[1] == 1
        self.opt(7, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
        reps = self.replies()
        assert reps[-1][1] == 1, reps
        self.structured = structured

    def req(self, cmd, off=0, length=0, flags=0, cookie=1, data=b""):
        self.s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, off, length) + data)

    def answer(self, readlen=0):
        """One complete reply: (cookie, error, data); @readlen: a simple READ reply's data."""
        magic = struct.unpack(">I", self.recv(4))[0]
        if magic == SIMPLE:
            err, cookie = struct.unpack(">IQ", self.recv(12))
            return cookie, err, self.recv(readlen) if readlen and not err else b""
        assert magic == STRUCT, hex(magic)
        data, err = b"", 0
        while True:
            flags, typ, cookie, ln = struct.unpack(">HHQI", self.recv(16))
            payload = self.recv(ln)
            if typ == 1:
                data += payload[8:]
            elif typ == 2:
                data += bytes(struct.unpack(">QI", payload)[1])
            elif typ & 0x8000:
                err = struct.unpack(">I", payload[:4])[0]
            if flags & 1:
                return cookie, err, data
            magic = struct.unpack(">I", self.recv(4))[0]
            assert magic == STRUCT


def check(name, fn):
    try:
        r = fn()
        T.check(name, r is None or r is True, repr(r)[:200])
    except Exception as e:  # noqa: BLE001 - any failure is this check's failure
        tb = e.__traceback__
        while tb.tb_next:
            tb = tb.tb_next
        T.check(name, False, "%s: %s (line %d)" % (type(e).__name__, e, tb.tb_lineno))


def unknown_options_continue():
    c = Conn()
    for option in (0x7777, 11, 5, 4, 0xFFFFFFFF):  # unknown, EXTENDED_HEADERS, STARTTLS, PEEK
        c.opt(option, b"abc" if option == 0x7777 else b"")
        r = c.reply()
        assert r[1] == ERR_UNSUP and r[0] == option, r
    c.go()
    c.req(0, 0, 512)
    assert c.answer()[1] == 0


def option_errors():
    c = Conn()
    c.opt(3, b"x")
    assert c.reply()[1] == ERR_INVALID, "LIST with data"
    c.opt(6, b"\0\0")
    assert c.reply()[1] == ERR_INVALID, "INFO too short"
    c.opt(6, struct.pack(">I", 100) + b"disk" + b"\0\0")
    assert c.reply()[1] == ERR_INVALID, "INFO name length beyond data"
    c.opt(6, struct.pack(">I", 4) + b"disk" + struct.pack(">H", 3) + b"\0\1")
    assert c.reply()[1] == ERR_INVALID, "INFO request count beyond data"
    c.opt(6, struct.pack(">I", 4) + b"nope" + b"\0\0")
    assert c.reply()[1] == ERR_UNKNOWN, "INFO unknown export"
    q = struct.pack(">I", 4) + b"disk" + struct.pack(">II", 1, 15) + b"base:allocation"
    c.opt(10, q)
    assert c.reply()[1] == ERR_INVALID, "SET_META_CONTEXT before STRUCTURED_REPLY"
    c.opt(8, b"x")
    assert c.reply()[1] == ERR_INVALID, "STRUCTURED_REPLY with data"
    c.opt(8)
    assert c.reply()[1] == 1
    c.opt(8)
    assert c.reply()[1] == ERR_INVALID, "STRUCTURED_REPLY twice"
    c.opt(10, q[:-3])
    assert c.reply()[1] == ERR_INVALID, "SET_META_CONTEXT truncated query"
    c.opt(9, struct.pack(">I", 4) + b"disk" + struct.pack(">I", 0))
    reps = c.replies()
    assert [r[1] for r in reps] == [4, 1] and reps[0][2][4:] == b"base:allocation", reps
    c.opt(9, struct.pack(">I", 4) + b"disk" + struct.pack(">II", 1, 5) + b"base:")
    assert [r[1] for r in c.replies()] == [4, 1], "LIST base: wildcard"
    c.opt(10, struct.pack(">I", 4) + b"disk" + struct.pack(">II", 1, 5) + b"base:")
    assert [r[1] for r in c.replies()] == [1], "SET base: selects nothing"
    c.opt(10, struct.pack(">I", 4) + b"disk" + struct.pack(">II", 1, 7) + b"x-other")
    assert [r[1] for r in c.replies()] == [1], "unknown namespace ignored"
    c.opt(10, q)
    reps = c.replies()
    assert [r[1] for r in reps] == [4, 1], reps
    c.opt(0x1234, b"y" * 100000)  # larger than we keep: drained, TOO_BIG
    assert c.reply()[1] == ERR_TOO_BIG
    c.go(structured=False)  # already negotiated above
    c.req(7, 0, 4096, cookie=77)
    cookie, err, _ = c.answer()
    assert cookie == 77 and err == 0, (cookie, err)


def option_flood_is_cut():
    c = Conn()
    try:
        for i in range(200):
            c.opt(0x7777)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server hung up mid-flood, as it should
    n = 0
    try:
        while True:
            c.reply()
            n += 1
    except EOFError:
        pass
    assert 0 < n < 200, n


def bad_client_flags_close():
    c = Conn(cflags=0x80000003)
    assert c.closed()


def export_name_paths():
    c = Conn(cflags=1)  # no NO_ZEROES: 124 zero bytes follow
    c.opt(1, b"")
    size, flags = struct.unpack(">QH", c.recv(10))
    assert size == SIZE and flags & 1 and c.recv(124) == bytes(124)
    c.req(0, 0, 512, cookie=5)
    cookie, err, data = c.answer()
    assert cookie == 5 and err == 0 and len(data) == 0  # simple reply header only
    c.recv(512)
    c = Conn()
    c.opt(1, b"ro")
    size, flags = struct.unpack(">QH", c.recv(10))
    assert flags & 2, "ro export flagged read-only"
    c.req(1, 0, 512, data=b"\1" * 512, cookie=6)
    assert c.answer()[:2] == (6, EPERM)
    c = Conn()
    c.opt(1, b"missing")
    assert c.closed(), "unknown EXPORT_NAME closes"


def abort_acks():
    c = Conn()
    c.opt(2)
    assert c.reply()[1] == 1
    assert c.closed()


def unknown_command_continues():
    c = Conn()
    c.go()
    c.req(42, 0, 512, cookie=9)
    assert c.answer()[:2] == (9, EINVAL)
    c.req(8, 1 << 20, 0, cookie=10)  # RESIZE: not negotiated
    assert c.answer()[:2] == (10, EINVAL)
    c.req(0, 0, 512, flags=1 << 5, cookie=11)  # PAYLOAD_LEN without extended headers
    assert c.answer()[:2] == (11, EINVAL)
    c.req(3, 1, 0, cookie=12)  # FLUSH with an offset
    assert c.answer()[:2] == (12, EINVAL)
    c.req(0, 0, 512, cookie=13)
    assert c.answer()[:2] == (13, 0)


def bad_magic_disconnects():
    c = Conn()
    c.go()
    c.s.sendall(struct.pack(">IHHQQI", 0x12345678, 0, 0, 1, 0, 512))
    assert c.closed()


MAX_PAYLOAD = 64 << 20  # advertised in NBD_INFO_BLOCK_SIZE (docs/nbd.md "Limits")


def block_size_advertised():
    c = Conn()
    c.opt(7, struct.pack(">I", 4) + b"disk" + struct.pack(">HH", 1, 3))  # GO, asks BLOCK_SIZE
    sizes = [struct.unpack(">III", d[2:]) for _, t, d in c.replies()
             if t == 3 and d[:2] == b"\0\3"]
    assert sizes == [(1, 4096, MAX_PAYLOAD)], sizes


def max_payload_write_and_read():
    """A WRITE and a READ of exactly the maximum (64 MiB) are served."""
    c = Conn()
    c.go(structured=False)
    data = os.urandom(1 << 20) * (MAX_PAYLOAD >> 20)
    c.req(1, 0, MAX_PAYLOAD, cookie=31, data=data)
    assert c.answer()[:2] == (31, 0)
    c.req(0, 0, MAX_PAYLOAD, cookie=32)
    magic, err, cookie = struct.unpack(">IIQ", c.recv(16))
    assert (magic, err, cookie) == (SIMPLE, 0, 32), (hex(magic), err, cookie)
    back = bytearray(MAX_PAYLOAD)
    view, got = memoryview(back), 0
    while got < MAX_PAYLOAD:
        k = c.s.recv_into(view[got:], MAX_PAYLOAD - got)
        assert k, "closed"
        got += k
    assert back == data


def oversize_read_is_refused():
    c = Conn()
    c.go(structured=False)
    c.req(0, 0, MAX_PAYLOAD + 512, cookie=41)
    assert c.answer()[:2] == (41, EINVAL)
    c.req(0, 0, 512, cookie=42)
    assert c.answer(512)[:2] == (42, 0)


def oversize_write_is_drained():
    """Just above the maximum: the payload is drained, EINVAL, and the stream stays framed."""
    c = Conn()
    c.go()
    n = MAX_PAYLOAD + 512
    c.req(1, 0, n, cookie=21)
    chunk = b"\0" * (1 << 20)
    for _ in range(n // len(chunk)):
        c.s.sendall(chunk)
    c.s.sendall(b"\0" * (n % len(chunk)))
    assert c.answer()[:2] == (21, EINVAL)
    c.req(0, 0, 512, cookie=22)
    assert c.answer()[:2] == (22, 0)


def oversize_write_then_vanish():
    c = Conn()
    c.go()
    c.req(1, 0, 0xFFFFFFFF, cookie=1)
    c.s.sendall(b"\1" * 1000)
    c.s.close()
    c = Conn()
    c.go()
    c.req(1, 0, 1 << 20, cookie=1)
    c.s.sendall(b"\1" * 1000)  # half a payload, then gone
    c.s.close()


def replies_carry_cookies_pipelined():
    c = Conn()
    c.go()
    cookies = list(range(1000, 1064))
    for i, k in enumerate(cookies):
        c.req(0, i * 4096, 4096, cookie=k)
    got = sorted(c.answer()[0] for _ in cookies)
    assert got == cookies, got[:5]


def many_connections():
    conns = [Conn() for _ in range(20)]
    for i, c in enumerate(conns):
        c.go(structured=bool(i % 2))
        for k in range(8):
            c.req(0, (i * 8 + k) * 65536, 65536, cookie=k)
    for c in conns:
        got = sorted(c.answer(65536)[0] for _ in range(8))
        assert got == list(range(8)), got
    for c in conns:
        c.req(2)
        assert c.closed()


def slow_client_does_not_stall_others():
    slow = Conn()
    slow.go()
    slow.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # 64 x 1 MiB READs it never reads the answers of: the server must stop reading from it
    # (back-pressure) instead of buffering without bound or blocking.
    for k in range(64):
        slow.req(0, k << 20, 1 << 20, cookie=k)
    half = Conn()
    half.s.sendall(struct.pack(">QI", IHAVEOPT, 7))  # half an option header, then silence
    t0 = time.time()
    fast = Conn()
    fast.go()
    for k in range(200):
        fast.req(0, (k % 64) << 20, 65536, cookie=k)
        assert fast.answer()[:2] == (k, 0)
    took = time.time() - t0
    slow.s.close()
    half.s.close()
    assert took < 5, took


for name, fn in [
    ("unknown-options-continue", unknown_options_continue),
    ("option-errors-continue", option_errors),
    ("option-flood-is-cut", option_flood_is_cut),
    ("bad-client-flags-close", bad_client_flags_close),
    ("export-name-paths", export_name_paths),
    ("abort-acks-and-closes", abort_acks),
    ("unknown-command-continues", unknown_command_continues),
    ("bad-magic-disconnects", bad_magic_disconnects),
    ("block-size-advertises-64-MiB", block_size_advertised),
    ("max-payload-write-and-read", max_payload_write_and_read),
    ("oversize-read-is-refused", oversize_read_is_refused),
    ("oversize-write-is-drained", oversize_write_is_drained),
    ("oversize-write-then-vanish", oversize_write_then_vanish),
    ("pipelined-cookies", replies_carry_cookies_pipelined),
    ("twenty-connections", many_connections),
    ("slow-client-does-not-stall-others", slow_client_does_not_stall_others),
]:
    check(name, fn)
# The server must still be answering after all of the above.
check("still-serving", lambda: Conn().go())
T.finish()
