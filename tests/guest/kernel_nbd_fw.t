#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Linux's kernel NBD client with ext4 on a thin volume of the FIRMWARE in QEMU
(docs/linux-guest.md; tests/guest/kernel_nbd.t does the same against the host build).

The appliance boots in QEMU (tests/qemu/appliance_lib.py: 64 MiB metadata, 256 MiB data
disks, vol0 on first boot, its NBD port forwarded to 127.0.0.1:FWDPORT). Guest 1 (user
network: the firmware at 10.0.2.2:FWDPORT): nbd-client connects vol0, mkfs.ext4, mount, a
file tree with sha256sums, `fsfreeze -f`, FROZEN; the host takes `thin snapshot vol0 snap1`
and `export add snap1 --read-only` on the firmware's serial shell; the guest waits until
`nbd-client -l` lists snap1, unfreezes, writes more; a 32 MiB file deleted and `fstrim`
make the pool's used data blocks fall by at least half the file (read after `pool commit`,
as in kernel_nbd.t). Then it connects snap1 too: `e2fsck -fn` clean with no journal
recovery pending, mounted `-o ro,noload`, the tree's sums match and nothing written after
the freeze is there. It writes and syncs two files (their sums printed), writes on, and
QEMU is killed by its PID. Guest 2: vol0 mounts with a journal recovery, the tree and the
synced files match, `e2fsck -fn` is clean. The firmware's `pool check` is clean; it powers
off, and thin_check is clean."""
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "qemu"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import appliance_lib as ap  # noqa: E402
import guest  # noqa: E402

qh, al = ap.qh, ap.al
c = qh.Checks("guest/kernel_nbd_fw")
qh.require_image(c)
c.need_tools("qemu-system-x86_64", "thin_check", "nbd-client")
tmp = al.scratch()
BIG_BLOCKS = (32 << 20) // (64 << 10)  # the big file in the pool's 64 KiB blocks

GUEST = guest.NBD_SH + r"""
conn /dev/nbd0 vol0
mkfs.ext4 -q -F /dev/nbd0 || exit 20
mount /dev/nbd0 /mnt || exit 21
mkdir -p /mnt/tree/a/b
n=0
for d in tree tree/a tree/a/b; do
	for k in 1 2 3 4; do
		n=$((n + 1))
		dd if=/dev/urandom of=/mnt/$d/f$k bs=4k count=$((n * 5)) 2>/dev/null
	done
done
sums /mnt/tree >/tmp/frozen.sums
wc -l </tmp/frozen.sums | sed 's/^/FROZEN-FILES /'
sed 's/^/FROZEN /' /tmp/frozen.sums
/sbin/fsfreeze -f /mnt || exit 22
echo KNBD-FROZEN
wait_export snap1
/sbin/fsfreeze -u /mnt || exit 23
mkdir /mnt/after
dd if=/dev/urandom of=/mnt/after/one bs=64k count=32 2>/dev/null
dd if=/dev/urandom of=/mnt/big bs=1M count=32 2>/dev/null
sync
echo KNBD-BIG
wait_export ack1
rm /mnt/big
sync
/sbin/fstrim -v /mnt || echo "fstrim failed"
echo KNBD-TRIMMED
wait_export ack2
conn /dev/nbd1 snap1
e2fsck -fn /dev/nbd1 >/tmp/fsck.log 2>&1; echo "FSCK-SNAP $?"; cat /tmp/fsck.log
mkdir -p /tmp/snap
mount -o ro,noload /dev/nbd1 /tmp/snap || exit 30
(cd /tmp/snap/tree && sha256sum -c /tmp/frozen.sums >/tmp/c.log 2>&1); echo "SNAP-SUMS $?"
tail -n 3 /tmp/c.log
[ -e /tmp/snap/after ] && echo "SNAP-HAS-AFTER"
umount /tmp/snap
/sbin/nbd-client -d /dev/nbd1 >/dev/null 2>&1
dd if=/dev/urandom of=/mnt/after/two bs=64k count=30 2>/dev/null
sync
sums /mnt/after | sed 's/^/SYNCED /'
echo KNBD-WRITING
i=0
while [ $i -lt 100000 ]; do
	dd if=/dev/urandom of=/mnt/after/w$i bs=64k count=4 2>/dev/null
	i=$((i + 1))
done
echo "KNBD-NOT-KILLED"
"""

# After the power cut: vol0 mounted (journal replay), the tree and the synced files match,
# then e2fsck -fn is clean.
GUEST2 = guest.NBD_SH + r"""
conn /dev/nbd0 vol0
mount /dev/nbd0 /mnt || exit 31
dmesg | grep -q "EXT4-fs (nbd0): recovery complete" && echo "VOL-JOURNAL-REPLAYED"
(cd /mnt/tree && sha256sum -c /t/frozen.sums >/tmp/c.log 2>&1); echo "VOL-TREE-SUMS $?"
(cd /mnt/after && sha256sum -c /t/synced.sums >/tmp/c.log 2>&1); echo "VOL-SYNCED-SUMS $?"
tail -n 3 /tmp/c.log
umount /mnt || exit 32
e2fsck -fn /dev/nbd0 >/tmp/fsck.log 2>&1; echo "FSCK-VOL $?"; cat /tmp/fsck.log
/sbin/nbd-client -d /dev/nbd0 >/dev/null 2>&1
exit 0
"""

try:
    m = ap.DiskMachine("kernel-nbd-fw", tmp)
    with m:
        m.boot_appliance()

        def on_frozen():
            out = m.sh("thin snapshot vol0 snap1")
            if "created snap1" not in out:
                raise al.Failure("thin snapshot: " + out)
            out = m.sh("export add snap1 --read-only")
            if "exported snap1" not in out:
                raise al.Failure("export add: " + out)

        seen = {}

        def used_blocks():
            """Used data blocks after a commit (kernel_nbd.t says why the commit)."""
            m.sh("pool commit")
            out = m.sh("pool status")
            u = re.search(r"^status: \d+ \d+/\d+ (\d+)/\d+", out, re.M)
            if not u:
                raise al.Failure("pool status: " + out)
            return int(u.group(1))

        def on_big():
            seen["before"] = used_blocks()
            m.sh("export add snap1 --read-only --name ack1")

        def on_trimmed():
            # Freed blocks count free a commit after their passdown completes (kernel_nbd.t).
            for _ in range(20):
                seen["after"] = used_blocks()
                if seen["before"] - seen["after"] >= BIG_BLOCKS // 2:
                    break
                time.sleep(0.5)
            m.sh("export add snap1 --read-only --name ack2")

        r = guest.run(GUEST % {"port": m.port}, name="kernel_nbd_fw", timeout=240, net=True,
                      watch=[("KNBD-FROZEN", on_frozen), ("KNBD-BIG", on_big),
                             ("KNBD-TRIMMED", on_trimmed)], kill=("KNBD-WRITING", 1.0))
        got = {w[0]: w[1] for w in (ln.split() for ln in r.output.splitlines()) if len(w) == 2}
        c.check("guest1-killed-mid-write", r.killed and "KNBD-WRITING" in r.output,
                "rc %s, output ends with:\n%s" % (r.rc, r.output[-1500:]))
        c.check("tree-written", got.get("FROZEN-FILES") == "12", r.output[-1500:])
        before, after = seen.get("before"), seen.get("after")
        c.note("pool data blocks used: %s with the 32 MiB file, %s after rm and fstrim"
               % (before, after))
        c.check("fstrim-passed-through-mapped-size-falls",
                before is not None and after is not None and before - after >= BIG_BLOCKS // 2,
                "before %s, after %s, the file is %d blocks" % (before, after, BIG_BLOCKS))
        # A snapshot of a frozen ext4 needs no journal recovery (without the freeze it does).
        c.check("snapshot-e2fsck-fn-clean", got.get("FSCK-SNAP") == "0" and
                "skipping journal recovery" not in r.output, r.output[-2000:])
        c.check("snapshot-sums-match-the-frozen-tree", got.get("SNAP-SUMS") == "0", r.output[-1500:])
        c.check("snapshot-has-nothing-written-after-the-freeze",
                "SNAP-SUMS" in got and "SNAP-HAS-AFTER" not in r.output)
        frozen = "".join(ln[7:] + "\n" for ln in r.output.splitlines() if ln.startswith("FROZEN "))
        synced = "".join(ln[7:] + "\n" for ln in r.output.splitlines() if ln.startswith("SYNCED "))
        r2 = guest.run(GUEST2 % {"port": m.port}, name="kernel_nbd_fw-2", timeout=180, net=True,
                       files={"frozen.sums": frozen, "synced.sums": synced})
        got = {w[0]: w[1] for w in (ln.split() for ln in r2.output.splitlines()) if len(w) == 2}
        c.check("guest2-ran", r2.rc == 0, "rc %s:\n%s" % (r2.rc, r2.output[-1500:]))
        c.check("origin-journal-replayed-at-mount", "VOL-JOURNAL-REPLAYED" in r2.output, r2.output[-1500:])
        c.check("origin-after-journal-replay-tree-matches",
                frozen.count("\n") == 12 and got.get("VOL-TREE-SUMS") == "0", r2.output[-1500:])
        c.check("origin-after-journal-replay-synced-files-match",
                synced.count("\n") == 2 and got.get("VOL-SYNCED-SUMS") == "0", r2.output[-1500:])
        c.check("origin-e2fsck-fn-clean-after-replay", got.get("FSCK-VOL") == "0",
                r2.output[-2000:])
        out = m.sh("pool check", timeout=120)
        c.check("pool-check-clean", "pool check: clean" in out, out)
        m.send("poweroff\r")
        c.check("firmware-powers-off", m.wait_exit(60) == qh.RC_POWEROFF)
    rc, text = al.thin_check(m.disk("meta"))
    c.check("thin-check-at-the-end", rc == 0, text)
except (al.Failure, qh.BootFailure, guest.GuestError) as e:
    c.check("no-failure", False, str(e))
c.finish()
