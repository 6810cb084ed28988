#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The Linux test guest itself (scripts/linux-guest, tests/lib/guest.py), three boots:

1. A script that prints on stdout and stderr, reads an extra file, finds a disk by its
   serial, lists the modules and tools the guest promises (docs/linux-guest.md) and exits 7:
   run() returns status 7 and the output, the kernel is the cached version.
2. A script that never ends: run() raises GuestError at its timeout (QEMU killed).
3. run(kill=(MARKER, 0.5)): QEMU is killed half a second after the script printed MARKER;
   the Result says killed, has the output up to there and nothing after."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import guest  # noqa: E402

failed = 0


def check(name, cond, detail=""):
    global failed
    print("%s guest/harness/%s%s" % ("PASS" if cond else "FAIL", name,
                                      ": " + str(detail)[:3000] if detail and not cond else ""),
          flush=True)
    failed += not cond


MODULES = ("virtio_blk", "virtio_pci", "dm_mod", "dm_thin_pool", "dm_persistent_data",
           "dm_bio_prison", "dm_bufio", "libcrc32c", "crc32c_generic", "dm_snapshot", "nbd",
           "virtio_net", "net_failover", "failover")
TOOLS = ("dmsetup", "lvm", "mkfs.ext4", "e2fsck", "thin_check", "busybox")

try:
    t0 = time.monotonic()
    gdir = guest.guest_dir()
    print("     guest/harness: guest ready in %.1f s: %s" % (time.monotonic() - t0, gdir))
    tmp = os.path.join(guest.TOP, "build", "test-tmp")
    os.makedirs(tmp, exist_ok=True)
    disk = os.path.join(tmp, "guest-harness-%d.img" % os.getpid())
    with open(disk, "wb") as f:
        f.write(b"thinbox-disk-marker\n")
        f.truncate(1 << 20)
    try:
        r = guest.run(r"""
echo "to stdout"
echo "to stderr" >&2
echo "file: $(cat extra.txt)"
echo "disk: $(head -c 19 $(disk marked))"
echo "kernel: $(uname -r)"
echo "modules: $(cut -d' ' -f1 /proc/modules | sort | tr '\n' ' ')"
for t in %s; do command -v $t >/dev/null && echo "tool: $t"; done
echo "lvm: $(lvm version 2>&1 | head -n 1)"
echo "dmsetup: $(dmsetup version 2>&1 | tail -n 1)"
exit 7
""" % " ".join(TOOLS), disks=[("marked", disk)], files={"extra.txt": "from the host\n"},
                      name="guest_harness", timeout=120)
    finally:
        os.remove(disk)
    print("     guest/harness: boot, script and poweroff: %.1f s" % r.seconds)
    check("exit-status-is-the-scripts", r.rc == 7, r.rc)
    check("stdout-and-stderr-captured", "to stdout\nto stderr\n" in r.output, r.output)
    check("extra-file-in-working-directory", "file: from the host" in r.output, r.output)
    check("disk-found-by-serial", "disk: thinbox-disk-marker" in r.output, r.output)
    check("kernel-is-the-cached-one", "kernel: " + os.path.basename(gdir) in r.output, r.output)
    mods = next((ln.split()[1:] for ln in r.output.splitlines() if ln.startswith("modules:")), [])
    check("modules-loaded", all(m in mods for m in MODULES),
          "missing: %s" % [m for m in MODULES if m not in mods])
    check("tools-present", all("tool: " + t in r.output for t in TOOLS), r.output)
    check("lvm-and-dmsetup-run", "LVM version:" in r.output and "Driver version:" in r.output,
          r.output)
    check("console-has-no-panic", "Kernel panic" not in r.console and "Oops" not in r.console,
          r.console[-2000:])

    t0 = time.monotonic()
    try:
        guest.run("echo started; sleep 1000", name="guest_harness_hang", timeout=5)
        check("timeout-raises", False, "run() returned")
    except guest.GuestError as e:
        check("timeout-raises", "timed out" in str(e) and time.monotonic() - t0 < 30, e)

    # The power cut: QEMU killed by its PID half a second after the marker.
    t0 = time.monotonic()
    r = guest.run("echo before; echo KILL-ME; sleep 1000; echo after", name="guest_harness_kill",
                  timeout=60, kill=("KILL-ME", 0.5))
    check("kill-after-marker", r.killed and r.rc is None and "before\nKILL-ME" in r.output and
          "after" not in r.output and time.monotonic() - t0 < 30,
          (r.killed, r.rc, r.output, time.monotonic() - t0))
except guest.GuestError as e:
    check("no-failure", False, e)
sys.exit(1 if failed else 0)
