# SPDX-License-Identifier: MIT
"""Run a shell script in a real Linux guest (docs/linux-guest.md) and get its output.

    import guest
    r = guest.run("dmsetup targets", disks=[("meta", "/tmp/meta.img")], name="dm_thin")
    r.rc, r.output, r.console, r.seconds

The guest is built (or found in build/cache/linux-guest/) by scripts/linux-guest. QEMU boots
its uncompressed vmlinux (PVH) with the initramfs, under TCG (KVM is not used: on some hosts
it aborts), with -nodefaults and -no-reboot. Each (serial, path) disk is a raw virtio-blk
disk the script finds with `disk SERIAL` (e.g. `dev=$(disk meta)`). The script and any
extra files go in a tar on one more disk (serial thinbox-t); the guest's /init unpacks it
into /t (the script's working directory) and runs `sh /t/script` with DM_DISABLE_UDEV=1.

The script's stdout and stderr go to the second serial port, a file; the kernel's console
is the first, kept in build/test-logs/<name>.guest-console.log. /init writes
"THINBOX-GUEST-EXIT <status>" to both and powers off. run() returns when QEMU exits; it
raises GuestError when the marker is missing (a panic, a hang) or the timeout passes, after
killing QEMU by its PID.

run(..., kill=(MARKER, DELAY)) is the guest's power cut: once the script's output holds
MARKER (a string), QEMU is killed by its PID DELAY seconds later (SIGKILL: the guest gets no
chance to flush or unmount; what QEMU had already written to the disk files stays there).
The Result then has rc None and killed True, unless the script ended first.

run(..., watch=[(MARKER, FN), ...]) calls FN() (on the caller's thread) once the script's
output holds MARKER, in the order given: the host acts while the guest runs (a snapshot once
the guest froze its filesystem). The guest waits for the host by a means of its own (e.g.
polling the appliance's export list over NBD); a kill marker is only looked for once every
watch marker was seen.

run(..., net=True) gives the guest a virtio NIC on QEMU's user network (nothing is bound on
the host: no port forwards); `net-up` in the guest configures it as 10.0.2.15/24, and the
host's 127.0.0.1:PORT is then 10.0.2.2:PORT.
"""

import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LOG_DIR = os.path.join(TOP, "build", "test-logs")
QEMU = os.environ.get("QEMU", "qemu-system-x86_64")
EXIT_RE = re.compile(r"THINBOX-GUEST-EXIT (\d+)")

_guest_dir = None

# The start of a script (run(..., net=True)) that uses the kernel NBD client against an
# appliance at 10.0.2.2:PORT (NBD_SH % {"port": PORT}): the NIC up, and shell functions:
# `conn DEV EXPORT` connects (bounded retries: the NIC needs a moment), `wait_export NAME`
# waits until the appliance lists NAME (at most 60 s: a host's signal to the guest), `sums
# DIR` the sha256sums of a tree in a stable order. Debian's busybox runs its own applets
# before PATH (fsfreeze, fstrim and nbd-client are applets too): the real tools are called
# by their paths in /sbin.
NBD_SH = r"""
net-up || exit 10
conn() { # conn DEV EXPORT
	i=0
	until /sbin/nbd-client 10.0.2.2 %(port)d $1 -N $2 -b 4096 >/tmp/conn.log 2>&1; do
		i=$((i + 1)); [ $i -lt 20 ] || { cat /tmp/conn.log; echo "conn $2 failed"; exit 11; }
		sleep 0.5
	done
}
wait_export() { # wait_export NAME: until the appliance lists it (at most 60 s)
	i=0
	until /sbin/nbd-client -l 10.0.2.2 %(port)d 2>/dev/null | grep -qx "$1.*"; do
		i=$((i + 1)); [ $i -lt 240 ] || { echo "no export $1"; exit 12; }
		sleep 0.25
	done
}
sums() { (cd $1 && find . -type f | sort | xargs sha256sum); }
"""


class GuestError(Exception):
    pass


class Result:
    def __init__(self, rc, output, console, seconds, killed=False):
        self.rc, self.output, self.console, self.seconds = rc, output, console, seconds
        self.killed = killed

    def lines(self, prefix):
        """The words after @prefix on every output line that starts with it."""
        return [ln[len(prefix):].split() for ln in self.output.splitlines() if ln.startswith(prefix)]


def guest_dir():
    """Build the guest if needed (scripts/linux-guest); its folder in build/cache/."""
    global _guest_dir
    if _guest_dir is None:
        r = subprocess.run([os.path.join(TOP, "scripts", "linux-guest"), "--print-dir"],
                           cwd=TOP, capture_output=True, text=True, timeout=900)
        if r.returncode:
            raise GuestError("scripts/linux-guest failed:\n" + r.stdout + r.stderr)
        _guest_dir = r.stdout.strip().splitlines()[-1]
    return _guest_dir


def _script_tar(path, script, files):
    members = {"script": script}
    members.update(files or {})
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for name, content in members.items():
            data = content.encode() if isinstance(content, str) else content
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o755
            tf.addfile(ti, io.BytesIO(data))
    # virtio-blk disks are whole 512-byte sectors.
    size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.truncate((size + 65535) // 65536 * 65536)


def _wait_for_marker(proc, path, marker, deadline, watch=()):
    """Poll the script's output, calling each @watch (MARKER, FN) in turn as its marker
    appears, until it holds @marker (None: until the watches are done); False if QEMU exits
    or time runs out."""
    pending = list(watch)
    while time.monotonic() < deadline:
        with open(path, "rb") as f:
            data = f.read()
        while pending and pending[0][0].encode() in data:
            pending.pop(0)[1]()
        if not pending and (marker is None or marker.encode() in data):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def run(script, disks=(), files=None, name="guest", timeout=120, mem="512M", cmdline="",
        kill=None, watch=(), net=False):
    """Boot the guest with @disks [(serial, path)], run @script; a Result.
    @kill (MARKER, DELAY): kill QEMU DELAY seconds after MARKER appears in the output.
    @watch [(MARKER, FN)]: call FN() when MARKER appears, in order. @net: a user-network NIC."""
    gdir = guest_dir()
    kernel = os.path.join(gdir, "vmlinux")
    if not os.path.exists(kernel):
        kernel = os.path.join(gdir, "vmlinuz")
    os.makedirs(LOG_DIR, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="thinbox-guest-")
    console_path = os.path.join(LOG_DIR, name + ".guest-console.log")
    out_path = os.path.join(tmp, "out.txt")
    try:
        tar = os.path.join(tmp, "t.tar")
        _script_tar(tar, script, files)
        args = [QEMU, "-machine", "pc", "-accel", "tcg", "-m", mem, "-smp", "1", "-nodefaults",
                "-display", "none", "-no-reboot",
                "-kernel", kernel, "-initrd", os.path.join(gdir, "initramfs.cpio"),
                "-append", "console=ttyS0 panic=-1 quiet " + cmdline,
                "-serial", "file:" + console_path, "-serial", "file:" + out_path,
                "-drive", "if=none,id=t,format=raw,file=" + tar,
                "-device", "virtio-blk-pci,drive=t,serial=thinbox-t"]
        for i, (serial, path) in enumerate(disks):
            args += ["-drive", "if=none,id=d%d,format=raw,file=%s" % (i, path),
                     "-device", "virtio-blk-pci,drive=d%d,serial=%s" % (i, serial)]
        if net:
            # romfile= : no option ROM (the guest boots by -kernel, not from the network).
            args += ["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile="]
        start = time.monotonic()
        err = open(os.path.join(LOG_DIR, name + ".guest-qemu-stderr.log"), "wb")
        open(out_path, "wb").close()
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=TOP)
        killed = False
        try:
            if watch and not kill:
                _wait_for_marker(proc, out_path, None, start + timeout, watch)
            if kill and _wait_for_marker(proc, out_path, kill[0], start + timeout, watch):
                time.sleep(kill[1])
                if proc.poll() is None:
                    proc.kill()
                    killed = True
            qrc = proc.wait(max(0.1, start + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            qrc = None
        except BaseException:
            # A watch's FN failed: stop QEMU by its PID before passing the error on.
            proc.kill()
            proc.wait()
            raise
        finally:
            err.close()
        seconds = time.monotonic() - start
        with open(out_path, encoding="latin-1") as f:
            output = f.read().replace("\r\n", "\n")
        with open(console_path, encoding="latin-1") as f:
            console = f.read()
        with open(os.path.join(LOG_DIR, name + ".guest-output.log"), "w") as f:
            f.write(output)
        m = EXIT_RE.search(output)
        if killed:
            return Result(None, output[:m.start()] if m else output, console, seconds, True)
        if qrc is None:
            raise GuestError("guest %s timed out after %ds (QEMU killed); console ends with:\n%s"
                             % (name, timeout, console[-2000:]))
        if not m:
            raise GuestError("guest %s: QEMU exited (%s) without the exit marker; console ends "
                             "with:\n%s\noutput ends with:\n%s"
                             % (name, qrc, console[-2000:], output[-1000:]))
        return Result(int(m.group(1)), output[:m.start()], console, seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
