# SPDX-License-Identifier: MIT
"""Boot the thinbox firmware in QEMU and talk to its serial shell.

A test creates a Machine (chosen disks, NIC, fw_cfg switches, ESP), starts it, and then uses
expect()/send()/command() on the serial console and wait_exit() for QEMU's exit status.
The machine is the one `make run` boots (mk/qemu.mk): q35, OVMF as -bios, -nodefaults, the ESP
on AHCI with bootindex=0, virtio-blk at 00:04.0 and 00:05.0, virtio-net at 00:06.0,
virtio-rng at 00:10.0 (RNG_SLOT: past any disk and NIC slots a test may use), and
isa-debug-exit, so the firmware can stop QEMU with status 33 (pass) or 35 (failure).

Rules the harness enforces:
  - Every wait has a timeout; on timeout QEMU is killed by its PID and the test fails.
  - Markers that mean the boot went wrong fail at once instead of waiting for the timeout:
    firmware exceptions, the EFI shell (nothing bootable), a network-boot attempt.
  - Verdicts come from QEMU's exit status plus serial markers, never from one alone: with
    -no-reboot a triple fault also exits 0.
  - The serial log of every machine is kept in build/test-logs/<name>.serial.log, QEMU's
    stderr next to it; scratch files (disks, ESP copies) live in build/test-tmp/ and are
    removed when the machine is stopped.
  - Networking binds 127.0.0.1 only, on a port picked free for each machine.

Test scripts print "PASS <name>" / "FAIL <name>" lines through Checks and exit non-zero when
anything failed (tests/run-tests counts those lines).
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import tap  # noqa: E402

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ESP_IMG = os.path.join(TOP, "build", "efi", "esp.img")
LOG_DIR = os.path.join(TOP, "build", "test-logs")
TMP_DIR = os.path.join(TOP, "build", "test-tmp")
OVMF = "/usr/share/ovmf/OVMF.fd"
QEMU = os.environ.get("QEMU", "qemu-system-x86_64")

PROMPT = "thinbox> "
BANNER = "thinbox: BANNER"
EBS_OK = "thinbox: EBS OK"
EXCEPTION = "thinbox: EXCEPTION"

# Serial text that means the boot failed; matched as substrings of the raw stream (OVMF's
# lines come with ANSI escapes and sometimes without a newline).
EARLY_FAIL_MARKERS = (
    "!!!! X64 Exception Type",  # OVMF's own exception handler: it dead-loops
    EXCEPTION,  # ours: the firmware stops QEMU itself, but fail fast anyway
    "thinbox: PANIC",
    "EFI Internal Shell",  # nothing bootable on the ESP
    "Shell>",
    ">>Start PXE",  # OVMF fell back to network boot (about a minute per attempt)
    ">>Start HTTP",
)

# QEMU exit statuses.
RC_POWEROFF = 0  # ACPI S5 (also: reset or triple fault with -no-reboot)
RC_DEBUG_PASS = 33  # isa-debug-exit 0x10
RC_DEBUG_FAIL = 35  # isa-debug-exit 0x11

RNG_SLOT = 0x10  # virtio-rng's PCI slot, as in mk/qemu.mk

BOOT_TIMEOUT = float(os.environ.get("QEMU_BOOT_TIMEOUT", "90"))  # QEMU start -> prompt


class BootFailure(Exception):
    """The guest did something that ends the test early (marker, timeout, exit)."""


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sparse_file(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def random_fill(path, size):
    """Fill the first @size bytes of @path with random data, a MiB at a time."""
    with open(path, "r+b") as f:
        for off in range(0, size, 1 << 20):
            f.write(os.urandom(min(1 << 20, size - off)))


class Machine:
    """One QEMU instance.

    disks: list of (name, size_bytes) for virtio-blk disks at slots 4, 5, ... (default: meta
           and data); net: add virtio-net at the next slot; fw_cfg: {key: value} passed as
           opt/thinbox/<key>; esp_cfg: text put on a copy of the ESP as \\thinbox.cfg;
           esp_files: [(local path, ESP path like "tls/ca-cert.pem")] copied onto that ESP copy
           too (directories made as needed);
           esp: path of the ESP image (None: no ESP at all); no_reboot: QEMU exits on a guest reset;
           debug_exit: add isa-debug-exit (the firmware's way to stop QEMU with 33/35);
           rng: add virtio-rng at RNG_SLOT (the entropy source; rng=False: a machine without it);
           random_disks: names of disks filled with random data before QEMU opens them (benches
           and profiles that read data which is neither zeros nor compressible).
    """

    def __init__(self, name, disks=(("meta", 16 << 20), ("data", 64 << 20)), net=True,
                 fw_cfg=None, esp_cfg=None, esp=ESP_IMG, no_reboot=True, mem="256M",
                 debug_exit=True, rng=True, extra_args=(), esp_files=(), random_disks=()):
        self.name = name
        self.disks = list(disks)
        self.random_disks = set(random_disks)
        unknown = self.random_disks - {d for d, _ in self.disks}
        if unknown:
            raise ValueError("random_disks names no disk: %s" % sorted(unknown))
        self.net = net
        self.fw_cfg = dict(fw_cfg or {})
        self.esp_cfg = esp_cfg
        self.esp_files = list(esp_files)
        self.esp = esp
        self.no_reboot = no_reboot
        self.debug_exit = debug_exit
        self.rng = rng
        self.mem = mem
        self.extra_args = list(extra_args)
        self.port = None
        self.proc = None
        self.rc = None
        self.start_time = None
        self._buf = ""
        self._pos = 0  # expect() searches from here
        self._cond = threading.Condition()
        self._eof = False
        self._reader = None
        os.makedirs(LOG_DIR, exist_ok=True)
        self.log_path = os.path.join(LOG_DIR, name + ".serial.log")
        self.err_path = os.path.join(LOG_DIR, name + ".qemu-stderr.log")
        self.tmp = os.path.join(TMP_DIR, "%s-%d" % (name, os.getpid()))

    # ---- Lifecycle -------------------------------------------------------------------------

    def _args(self):
        esp = self.esp
        if self.esp_cfg is not None:
            esp = os.path.join(self.tmp, "esp.img")
            shutil.copyfile(self.esp, esp)
            cfg = os.path.join(self.tmp, "thinbox.cfg")
            with open(cfg, "w") as f:
                f.write(self.esp_cfg)
            subprocess.run(["mcopy", "-o", "-i", esp, cfg, "::/thinbox.cfg"], check=True)
            made = set()
            for local, path in self.esp_files:
                parts = path.strip("/").split("/")
                for i in range(1, len(parts)):
                    d = "/".join(parts[:i])
                    if d not in made:
                        subprocess.run(["mmd", "-D", "s", "-i", esp, "::/" + d], check=True)
                        made.add(d)
                subprocess.run(["mcopy", "-o", "-i", esp, local, "::/" + "/".join(parts)],
                               check=True)
        args = [QEMU, "-machine", "q35", "-m", self.mem, "-smp", "1", "-nodefaults",
                "-display", "none", "-monitor", "none", "-bios", OVMF]
        if esp is not None:
            # snapshot=on: the ESP is opened read-only, so parallel machines can share it.
            args += ["-drive", "if=none,id=esp,format=raw,file=%s,snapshot=on" % esp,
                     "-device", "ide-hd,drive=esp,bus=ide.0,bootindex=0"]
        slot = 4
        for dname, size in self.disks:
            path = os.path.join(self.tmp, dname + ".img")
            sparse_file(path, size)
            if dname in self.random_disks:
                random_fill(path, size)
            args += ["-drive", "if=none,id=%s,format=raw,file=%s" % (dname, path),
                     "-device", "virtio-blk-pci,drive=%s,disable-legacy=on,addr=%#x"
                     % (dname, slot)]
            slot += 1
        if self.net:
            self.port = free_port()
            args += ["-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:%d-:10809" % self.port,
                     "-device", "virtio-net-pci,netdev=n0,disable-legacy=on,addr=%#x,romfile="
                     % slot]
        if self.rng:
            args += ["-device", "virtio-rng-pci,disable-legacy=on,addr=%#x" % RNG_SLOT]
        if self.debug_exit:
            args += ["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
        for key, value in self.fw_cfg.items():
            args += ["-fw_cfg", "name=opt/thinbox/%s,string=%s" % (key, value)]
        if self.no_reboot:
            args.append("-no-reboot")
        args += ["-serial", "stdio"] + self.extra_args
        return args

    def start(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp)
        args = self._args()
        self._log = open(self.log_path, "w", encoding="latin-1", newline="")
        self._log.write("# " + " ".join(args) + "\n")
        self._err = open(self.err_path, "wb")
        self.start_time = time.monotonic()
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, cwd=TOP)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        return self

    def _read_loop(self):
        fd = self.proc.stdout.fileno()
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            text = data.decode("latin-1")
            with self._cond:
                if not data:
                    self._eof = True
                    self._cond.notify_all()
                    return
                self._buf += text
                self._log.write(text)
                self._log.flush()
                self._cond.notify_all()

    def stop(self):
        """Kill QEMU (by its PID) if it still runs, and remove the scratch files."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.rc = self.proc.wait()
            if self._reader:
                self._reader.join(5)
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
            self._log.close()
            self._err.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def elapsed(self):
        return time.monotonic() - self.start_time

    # ---- Serial console --------------------------------------------------------------------

    @property
    def output(self):
        with self._cond:
            return self._buf

    def _early_fail(self, allow):
        for m in EARLY_FAIL_MARKERS:
            if m in allow:
                continue
            i = self._buf.find(m)
            if i >= 0:
                line_end = self._buf.find("\n", i)
                return self._buf[i:line_end if line_end >= 0 else None].strip()
        return None

    def expect(self, pattern, timeout=30.0, allow=()):
        """Wait for @pattern (a string, or a compiled regex) after the last match.

        Returns the text from the last match up to and including this one (the output of
        the step), or raises BootFailure on an early-fail marker not in @allow, on timeout
        (QEMU is then killed) or when QEMU exits first.
        """
        deadline = time.monotonic() + timeout
        bad = None
        with self._cond:
            while True:
                bad = self._early_fail(allow)
                if bad:
                    break
                if isinstance(pattern, str):
                    i = self._buf.find(pattern, self._pos)
                    end = i + len(pattern) if i >= 0 else -1
                else:
                    m = pattern.search(self._buf, self._pos)
                    end = m.end() if m else -1
                if end >= 0:
                    out = self._buf[self._pos:end]
                    self._pos = end
                    return out
                if self._eof:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
        if bad:
            # Let the rest of the report reach the log, then stop QEMU.
            time.sleep(1)
            self.stop()
            raise BootFailure("early-fail marker after %.1fs: %s" % (self.elapsed(), bad))
        if self._eof:
            rc = self.wait_exit(10)
            raise BootFailure("QEMU exited (status %s) after %.1fs waiting for %r"
                              % (rc, self.elapsed(), pattern_text(pattern)))
        self.stop()
        raise BootFailure("timed out after %.0fs waiting for %r (QEMU killed)"
                          % (timeout, pattern_text(pattern)))

    def send(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def boot(self, timeout=BOOT_TIMEOUT):
        """Wait for the banner, ExitBootServices and the first prompt."""
        left = lambda: max(1.0, timeout - self.elapsed())
        self.expect(BANNER, left())
        self.expect(EBS_OK, left())
        return self.expect(PROMPT, left())

    def command(self, line, timeout=20.0):
        """Type @line, wait for the next prompt; returns what the command printed."""
        self.send(line + "\r")
        out = self.expect(PROMPT, timeout)
        out = out[:-len(PROMPT)]
        # Drop the echoed command line.
        first_nl = out.find("\n")
        return out[first_nl + 1:] if first_nl >= 0 else ""

    def wait_exit(self, timeout=30.0):
        """Wait for QEMU to exit; its status, or None after killing it on timeout."""
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return None
        if self._reader:
            self._reader.join(5)
        return self.rc


def pattern_text(p):
    return p if isinstance(p, str) else p.pattern


def strip_ansi(text):
    return re.sub(r"\x1b\[[0-9;?=]*[A-Za-z]", "", text)


# PASS/FAIL lines for tests/run-tests, and the exit status: tests/lib/tap.py's.
Checks = tap.Checks


def require_image(checks):
    if not os.path.exists(ESP_IMG):
        checks.check("image", False, "%s missing: run make efi first" % ESP_IMG)
        checks.finish()
