#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Linux's kernel NBD client with ext4 on a thin volume of the host build (docs/linux-guest.md,
issue 16's first point).

1. The host build on two files (64 MiB metadata, 256 MiB data: vol0 is 252 MiB). Guest 1
   (user network, the appliance at 10.0.2.2:PORT): Debian's nbd-client connects vol0 to
   /dev/nbd0, mkfs.ext4, mount, a file tree with sha256sums, `fsfreeze -f`, then FROZEN.
   The host takes `thin snapshot vol0 snap1` and `export add snap1 --read-only`; the guest
   polls `nbd-client -l` until snap1 is listed, unfreezes and writes more.
2. TRIM: the guest writes a 48 MiB file and syncs (BIG); the host reads the pool's used data
   blocks; the guest deletes the file and runs fstrim (TRIMMED); the host reads them again:
   they must fall by at least half the file's 768 blocks of 64 KiB (a run: 642; pieces of
   the file share 64 KiB blocks with data written before the snapshot, and ext4's lazy
   inode table init writes meanwhile; without discards passed through they do not fall). The guest waits for the host's reading each time
   by polling the export list for an export the host adds after it (ack1, ack2).
3. The guest writes files, syncs, prints their sums (SYNCED), then writes on and QEMU is
   killed by its PID mid-write.
4. Guest 2: snap1 (read-only export): `e2fsck -fn` clean, mounted `-o ro,noload`, the sums
   of the tree at freeze time match. vol0: mounted (the kernel replays the journal), the
   tree and the synced files match, unmounted, `e2fsck -fn` clean.
5. The appliance: `pool check` clean, stops; thin_check clean."""
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "appliance"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import applib as al  # noqa: E402
import guest  # noqa: E402

MiB = 1 << 20
BIG_BLOCKS = 48 * MiB // (64 << 10)  # the big file in the pool's 64 KiB blocks

c = al.Checks("guest/kernel_nbd")
c.need_tools("qemu-system-x86_64", "thin_check", "nbd-client")
tmp = al.scratch()

GUEST1 = guest.NBD_SH + r"""
conn /dev/nbd0 vol0
mkfs.ext4 -q -F /dev/nbd0 || exit 20
mount /dev/nbd0 /mnt || exit 21
mkdir -p /mnt/tree/a/b /mnt/tree/c
n=0
for d in tree tree/a tree/a/b tree/c; do
	for k in 1 2 3 4 5; do
		n=$((n + 1))
		dd if=/dev/urandom of=/mnt/$d/f$k bs=4k count=$((n * 7)) 2>/dev/null
	done
done
echo "file $n" >/mnt/tree/small.txt
sums /mnt/tree | sed 's/^/FROZEN /'
/sbin/fsfreeze -f /mnt || exit 22
echo KNBD-FROZEN
wait_export snap1
/sbin/fsfreeze -u /mnt || exit 23
echo KNBD-THAWED
mkdir /mnt/after
dd if=/dev/urandom of=/mnt/after/one bs=64k count=20 2>/dev/null
dd if=/dev/urandom of=/mnt/big bs=1M count=48 2>/dev/null
sync
echo KNBD-BIG
wait_export ack1
rm /mnt/big
sync
/sbin/fstrim -v /mnt || echo "fstrim failed"
echo KNBD-TRIMMED
wait_export ack2
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

GUEST2 = guest.NBD_SH + r"""
conn /dev/nbd0 snap1
e2fsck -fn /dev/nbd0 >/tmp/fsck.log 2>&1; echo "FSCK-SNAP $?"; cat /tmp/fsck.log
mount -o ro,noload /dev/nbd0 /mnt || exit 30
(cd /mnt/tree && sha256sum -c /t/frozen.sums >/tmp/c.log 2>&1); echo "SNAP-SUMS $?"
tail -n 3 /tmp/c.log
sums /mnt/tree | wc -l | sed 's/^/SNAP-FILES /'
[ -e /mnt/after ] && echo "SNAP-HAS-AFTER"
umount /mnt
/sbin/nbd-client -d /dev/nbd0 >/dev/null 2>&1
conn /dev/nbd1 vol0
mount /dev/nbd1 /mnt || exit 31
dmesg | grep -q "EXT4-fs (nbd1): recovery complete" && echo "VOL-JOURNAL-REPLAYED"
(cd /mnt/tree && sha256sum -c /t/frozen.sums >/tmp/c.log 2>&1); echo "VOL-TREE-SUMS $?"
(cd /mnt/after && sha256sum -c /t/synced.sums >/tmp/c.log 2>&1); echo "VOL-SYNCED-SUMS $?"
tail -n 3 /tmp/c.log
umount /mnt || exit 32
e2fsck -fn /dev/nbd1 >/tmp/fsck.log 2>&1; echo "FSCK-VOL $?"; cat /tmp/fsck.log
/sbin/nbd-client -d /dev/nbd1 >/dev/null 2>&1
exit 0
"""


def used_blocks(h):
    """The pool's used data blocks (the `status:` line: TXID META/METATOTAL DATA/DATATOTAL),
    after a commit: blocks unmapped since the last commit still count as used until then
    (they cannot be reused before it), and fstrim sends no FLUSH after its discards."""
    al.cmd(h, "pool commit")
    out = h.command("pool status")
    m = re.search(r"^status: \d+ \d+/\d+ (\d+)/\d+", out, re.M)
    if not m:
        raise al.Failure("pool status: " + out)
    return int(m.group(1))


def sums_of(output, prefix):
    """The sha256sum lines the guest printed after @prefix, as a file sha256sum -c reads."""
    return "".join(ln[len(prefix):] + "\n" for ln in output.splitlines() if ln.startswith(prefix))


try:
    meta, data = al.blank_disks(tmp, 64 * MiB, 256 * MiB)
    h = al.Host(meta, data).start()
    seen = {}

    def on_frozen():
        al.cmd(h, "thin snapshot vol0 snap1")
        al.cmd(h, "export add snap1 --read-only")

    def on_big():
        seen["before"] = used_blocks(h)
        al.cmd(h, "export add snap1 --read-only --name ack1")

    def on_trimmed():
        # An unmapped block is freed once the commit made the unmap durable and the data
        # disk's discard of it (passdown) completed, then counted free by the commit after
        # that, as in dm-thin; the host build's discards complete asynchronously, so read
        # after commits until the count falls (at most ~10 s).
        for _ in range(20):
            seen["after"] = used_blocks(h)
            if seen["before"] - seen["after"] >= BIG_BLOCKS // 2:
                break
            time.sleep(0.5)
        al.cmd(h, "export add snap1 --read-only --name ack2")

    # ---- 1.-3. Guest 1 ------------------------------------------------------------------
    r = guest.run(GUEST1 % {"port": h.port}, name="kernel_nbd-1", timeout=180, net=True,
                  watch=[("KNBD-FROZEN", on_frozen), ("KNBD-BIG", on_big),
                         ("KNBD-TRIMMED", on_trimmed)],
                  kill=("KNBD-WRITING", 1.0))
    frozen, synced = sums_of(r.output, "FROZEN "), sums_of(r.output, "SYNCED ")
    c.check("guest1-killed-mid-write", r.killed and "KNBD-WRITING" in r.output,
            "rc %s, output ends with:\n%s" % (r.rc, r.output[-1500:]))
    c.check("guest1-tree-written-and-frozen", frozen.count("\n") == 21 and "KNBD-THAWED" in r.output,
            r.output[-1500:])
    c.check("snapshot-taken-while-frozen", "snap1" in al.parse_thin_list(h.command("thin list")))
    before, after = seen.get("before"), seen.get("after")
    c.note("pool data blocks used: %s with the 48 MiB file, %s after rm and fstrim" % (before, after))
    c.check("fstrim-passed-through-mapped-size-falls",
            before is not None and after is not None and before - after >= BIG_BLOCKS // 2,
            "before %s, after %s, the file is %d blocks; guest: %s"
            % (before, after, BIG_BLOCKS, [ln for ln in r.output.splitlines() if "trim" in ln]))

    # ---- 4. Guest 2 ---------------------------------------------------------------------
    r2 = guest.run(GUEST2 % {"port": h.port}, name="kernel_nbd-2", timeout=180, net=True,
                   files={"frozen.sums": frozen, "synced.sums": synced})
    got = {w[0]: w[1] for w in (ln.split() for ln in r2.output.splitlines()) if len(w) == 2}
    c.check("guest2-ran", r2.rc == 0, "rc %s:\n%s" % (r2.rc, r2.output[-1500:]))
    # A snapshot of a frozen ext4 needs no journal recovery (without the freeze it does).
    c.check("snapshot-e2fsck-fn-clean", got.get("FSCK-SNAP") == "0" and
            "skipping journal recovery" not in r2.output, r2.output[-2000:])
    c.check("snapshot-sums-match-the-frozen-tree",
            got.get("SNAP-SUMS") == "0" and got.get("SNAP-FILES") == "21", r2.output[-1500:])
    c.check("snapshot-has-nothing-written-after-the-freeze", "SNAP-HAS-AFTER" not in r2.output)
    c.check("origin-journal-replayed-at-mount", "VOL-JOURNAL-REPLAYED" in r2.output, r2.output[-1500:])
    c.check("origin-after-journal-replay-tree-matches", got.get("VOL-TREE-SUMS") == "0", r2.output[-1500:])
    c.check("origin-after-journal-replay-synced-files-match",
            synced.count("\n") == 2 and got.get("VOL-SYNCED-SUMS") == "0", r2.output[-1500:])
    c.check("origin-e2fsck-fn-clean-after-replay", got.get("FSCK-VOL") == "0", r2.output[-2000:])

    # ---- 5. The appliance -----------------------------------------------------------------
    out = h.command("pool check", timeout=120)
    c.check("pool-check-clean", "pool check: clean" in out, out)
    c.check("appliance-stops", h.stop() == 0)
    rc, text = al.thin_check(meta)
    c.check("thin-check-at-the-end", rc == 0, text)
except (al.Failure, guest.GuestError) as e:
    c.check("no-failure", False, str(e))
c.finish()
