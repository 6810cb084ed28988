# Queue depth 1 against the host build (run by spin.t inside nbdsh): NBD_N 4 KiB READs one
# after another on one connection, and how often the server's main thread slept meanwhile
# (voluntary context switches of /proc/PID/task/PID/status). Prints "SLEEPS_PER_REQUEST x".
import os

import nbd

base, pid, n = os.environ["NBD_BASE"], os.environ["NBD_PID"], int(os.environ["NBD_N"])


def sleeps():
    with open("/proc/%s/task/%s/status" % (pid, pid)) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise RuntimeError("no voluntary_ctxt_switches for %s" % pid)


h = nbd.NBD()
h.connect_uri(base + "/disk")
for i in range(200):  # warm up: connection set-up and first page faults are not counted
    h.pread(4096, (i * 7919 % 16384) * 4096)
s0 = sleeps()
for i in range(n):
    h.pread(4096, (i * 7919 % 16384) * 4096)
s1 = sleeps()
h.shutdown()
print("SLEEPS_PER_REQUEST %.3f" % ((s1 - s0) / n))
