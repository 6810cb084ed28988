#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Many NBD connections at once (one boot on a tap, test-export-disk=data).

NBURST clients (16: the server's per-client cap, all come from one address) connect at the
same instant (a barrier between threads) and each must read the newstyle greeting within
BOUND seconds; three rounds, each after the previous round's clients have gone. A listen
path that dropped SYNs while connections were pending (an lwIP listen backlog, a full pcb
pool) shows as clients waiting for the 1 s and 3 s SYN retransmissions, past BOUND.

The NIC is on a tap in a private network namespace (tests/qemu/netns.py), not on QEMU's user
networking: libslirp's host forward listens with a backlog of 1, and a burst of connections
through it leaves some of them connected on the client's side but never accepted, waiting
for the greeting forever (docs/network.md, "Many connections at once through user
networking"). That is QEMU's, not the firmware's, and the tap is what a user would use.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_harness as qh  # noqa: E402
import netns  # noqa: E402

NBURST = 16
BOUND = 5.0  # seconds: far below a SYN retransmission chain (1 s, 3 s, 7 s), far above 0.1 s
ROUNDS = 3

# Run in the namespace by /usr/bin/python3: prints one JSON list, per client [status, seconds].
CLIENT = r'''
import json, socket, sys, threading, time
host, port, n, bound = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
res = [None] * n
bar = threading.Barrier(n)
def one(i):
    s = socket.socket()
    s.settimeout(bound + 5)
    bar.wait()
    t0 = time.monotonic()
    try:
        s.connect((host, port))
        got = b""
        while len(got) < 16:
            d = s.recv(16 - len(got))
            if not d:
                break
            got += d
        res[i] = ["ok" if got == b"NBDMAGICIHAVEOPT" else "bad %r" % got, time.monotonic() - t0]
    except Exception as e:
        res[i] = ["%s" % type(e).__name__, time.monotonic() - t0]
    finally:
        s.close()
ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(json.dumps(res))
'''

c = qh.Checks("qemu/net_burst")
qh.require_image(c)

ns = netns.start_checked(c)

m = netns.TapMachine("qemu-net-burst", ns, disks=(("meta", 16 << 20), ("data", 16 << 20)),
                     fw_cfg={"test-export-disk": "data"})
try:
    with m:
        m.boot()
        client = os.path.join(m.tmp, "burst_client.py")
        with open(client, "w") as f:
            f.write(CLIENT)
        for r in range(ROUNDS):
            rc, out = ns.run(["/usr/bin/python3", client, m.addr, str(m.port), str(NBURST),
                              str(BOUND)], timeout=BOUND + 30)
            try:
                res = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                res = []
            ok = [t for st, t in res if st == "ok"]
            late = [round(t, 2) for t in ok if t >= BOUND]
            c.note("round %d: %d/%d greeted, slowest %.3f s (load %.2f)"
                   % (r, len(ok), NBURST, max(ok) if ok else -1, os.getloadavg()[0]))
            c.check("round%d-all-greeted" % r, rc == 0 and len(ok) == NBURST,
                    "%s %s" % (rc, out[-500:]))
            c.check("round%d-within-bound" % r, len(ok) == NBURST and not late,
                    "greetings after %.1f s: %s" % (BOUND, late))
        m.send("poweroff\r")
        rc = m.wait_exit(30)
        c.check("poweroff-rc0", rc == qh.RC_POWEROFF, "QEMU status %s" % rc)
        c.check("no-exception", qh.EXCEPTION not in m.output and "PANIC" not in m.output)
except qh.BootFailure as e:
    c.check("no-boot-failure", False, str(e))
finally:
    ns.stop()
c.finish()
