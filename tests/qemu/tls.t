#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""NBD over TLS in the firmware (docs/tls.md "The firmware"), with real clients on the host
through the port forward. Keys and certificates are made at run time (the PSK from
os.urandom, the CA and certificates with openssl, as tests/nbd/tls.t does) and copied onto the
ESP copy next to thinbox.cfg. Two machines, booted side by side:

tls: `tls = require`, `tls-psk = \\keys.psk` (alice, bob), `tls-certificates = \\tls`,
  `tls-verify-peer = on`; the appliance's first boot exports vol0.
  - nbdinfo over PSK (nbds://alice@...?tls-psk-file=) sees vol0; nbdcopy writes 4 MiB of
    random data and reads the volume back: cmp;
  - qemu-img with a tls-creds-x509 object and a client certificate reads the volume; without
    a client certificate it is refused (verify-peer);
  - a wrong PSK key is refused and logged; plain nbdinfo is refused and `nbdinfo --list`
    discloses nothing;
  - `tls` shows the mode, the identities (names only), each certificate's subject, issuer and
    validity (an expired one in ca-cert.pem marked EXPIRED), client certificates verified,
    and the handshake counters; `net` shows the mode in one line;
  - neither the serial log nor the shell output holds key bytes (the PSK keys in hex, the
    server key's PEM body).
on: `tls = on` with the keys file: `export add vol0 --name secret --tls-only`; plain clients
  read vol0 but are refused secret and do not see it listed; over TLS it is listed and read.
bad: `tls = require`, a keys file whose line 2 is not hex, `tls-verify-peer = maybe` and a
  server-cert.pem over 64 KiB: each reason printed (the line number, never the key on line 1),
  NBD not listening.
noentropy: no virtio-rng and `-cpu qemu64,-rdrand`, `tls = require` with a good keys file and
  a missing certificate directory: both problems are printed, TLS is refused, NBD does not
  listen (a plain client gets nothing, `--list` discloses nothing); `tls` and `net` say so.
"""
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_harness as qh  # noqa: E402

c = qh.Checks("qemu/tls")
qh.require_image(c)
for tool in ("nbdinfo", "nbdcopy", "qemu-img", "openssl", "mcopy", "mmd"):
    if not shutil.which(tool):
        c.check("tool-" + tool, False, "%s missing (scripts/setup)" % tool)
        c.finish()

tmp = os.path.join(qh.TMP_DIR, "qemu-tls-keys-%d" % os.getpid())
shutil.rmtree(tmp, ignore_errors=True)
os.makedirs(tmp)


def run(args, timeout=60, **kw):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(args, 124, e.stdout or "", "timed out")


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


# ---- Keys ----------------------------------------------------------------------------------
keys = {"alice": os.urandom(32).hex(), "bob": os.urandom(16).hex()}
psk = write(os.path.join(tmp, "psk", "keys.psk"),
            "".join("%s:%s\n" % kv for kv in keys.items()))
wrong = write(os.path.join(tmp, "wrong", "keys.psk"), "alice:%s\n" % os.urandom(32).hex())

ca = os.path.join(tmp, "ca")
TESTCA = os.path.join(qh.TOP, "tests", "lib", "testca")


def testca(*args):
    """tests/lib/testca (openssl's output in ca/openssl.log): True when it worked."""
    return subprocess.run([TESTCA] + list(args), timeout=60).returncode == 0


made = (testca("init", ca, "thinbox test CA") and
        testca("cert", ca, os.path.join(tmp, "srv"), "server", "localhost", "srv") and
        testca("cert", ca, os.path.join(tmp, "cli"), "client", "alice client", "cli") and
        testca("cert", ca, os.path.join(tmp, "old"), "old", "old expired", "cli",
               "20200101000000Z", "20210101000000Z"))
c.check("openssl-made-certificates", made, open(os.path.join(ca, "openssl.log")).read()[-500:])
if not made:
    c.finish()
ca_pem = open(os.path.join(ca, "ca-cert.pem")).read()
# The server's ca-cert.pem: the CA, then an expired certificate (`tls` must mark it EXPIRED).
srv_ca = write(os.path.join(tmp, "srv", "ca-cert.pem"),
               ca_pem + open(os.path.join(tmp, "old", "old-cert.pem")).read())
write(os.path.join(tmp, "cli", "ca-cert.pem"), ca_pem)
nocert = write(os.path.join(tmp, "cli-nocert", "ca-cert.pem"), ca_pem)
server_key = open(os.path.join(tmp, "srv", "server-key.pem")).read()
key_body = [ln for ln in server_key.splitlines() if ln and not ln.startswith("-----")]

ESP_FILES = [(psk, "keys.psk"), (srv_ca, "tls/ca-cert.pem"),
             (os.path.join(tmp, "srv", "server-cert.pem"), "tls/server-cert.pem"),
             (os.path.join(tmp, "srv", "server-key.pem"), "tls/server-key.pem")]
CFG = ("tls = require\ntls-psk = \\keys.psk\ntls-certificates = \\tls\n"
       "tls-verify-peer = on\n")
NOENT_CFG = "tls = require\ntls-psk = \\keys.psk\ntls-certificates = \\missing\n"

m = qh.Machine("qemu-tls", esp_cfg=CFG, esp_files=ESP_FILES)
bad_psk = write(os.path.join(tmp, "bad", "keys.psk"),
                "carol:%s\ndave:12zz\n" % os.urandom(32).hex())
big = write(os.path.join(tmp, "big", "server-cert.pem"), "x" * (70 * 1024))
keys["carol"] = open(bad_psk).read().split("\n")[0].split(":")[1]
bad = qh.Machine("qemu-tls-bad", esp_cfg="tls = require\ntls-psk = \\bad.psk\n"
                 "tls-certificates = \\big\ntls-verify-peer = maybe\n",
                 esp_files=[(bad_psk, "bad.psk"), (big, "big/server-cert.pem")])
on = qh.Machine("qemu-tls-on", esp_cfg="tls = on\ntls-psk = /keys.psk\n",
                esp_files=ESP_FILES[:1])
ne = qh.Machine("qemu-tls-noentropy", esp_cfg=NOENT_CFG, esp_files=ESP_FILES[:1], rng=False,
                extra_args=["-cpu", "qemu64,-rdrand"])


def no_key_bytes(name, text):
    low = text.lower()
    leaked = [i for i, k in keys.items() if k in low]
    leaked += ["server-key.pem"] if any(b in text for b in key_body) else []
    c.check(name, not leaked, "key bytes of %s in the text" % leaked)


def sh(mach, line, timeout=60):
    return qh.strip_ansi(mach.command(line, timeout)).replace("\r", "")


try:
    m.start()
    ne.start()
    try:
        m.boot()
        log = qh.strip_ansi(m.output).replace("\r", "")
        c.check("boot-tls-set-up", "thinbox: tls: require, PSK, X.509, client certificates "
                "verified\n" in log, "\n".join(ln for ln in log.split("\n") if "tls" in ln))
        c.check("boot-nbd-listening", "thinbox: nbd listening on port 10809" in log)
        port = m.port
        tls = "nbds://alice@127.0.0.1:%d/vol0?tls-psk-file=%s" % (port, psk)

        # ---- PSK: nbdinfo, nbdcopy write and read back
        r = run(["nbdinfo", "--size", tls])
        c.check("psk-nbdinfo-size", r.returncode == 0 and r.stdout.strip().isdigit(),
                r.stdout + r.stderr)
        size = int(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip().isdigit() else 0
        r = run(["nbdinfo", "--size",
                 "nbds://bob@127.0.0.1:%d/vol0?tls-psk-file=%s" % (port, psk)])
        c.check("psk-second-identity", r.returncode == 0 and r.stdout.strip() == str(size),
                r.stdout + r.stderr)
        data = os.urandom(4 << 20)
        src = os.path.join(tmp, "src.img")
        with open(src, "wb") as f:
            f.write(data)
        r = run(["nbdcopy", src, tls], timeout=120)
        c.check("psk-nbdcopy-write", r.returncode == 0, r.stderr)
        back = os.path.join(tmp, "back.img")
        r = run(["nbdcopy", tls, back], timeout=120)
        got = open(back, "rb").read(len(data)) if os.path.exists(back) else b""
        c.check("psk-nbdcopy-read", r.returncode == 0 and os.path.getsize(back) == size,
                r.stderr)
        c.check("psk-round-trip-cmp", got == data, "data differs")

        # ---- X.509 with a client certificate (tls-verify-peer = on), qemu-img
        qopts = "driver=nbd,host=127.0.0.1,port=%d,export=vol0,tls-creds=tls0" % port
        obj = "tls-creds-x509,id=tls0,endpoint=client,dir=%s" % os.path.join(tmp, "cli")
        r = run(["qemu-img", "info", "--object", obj, "--image-opts", qopts], timeout=60)
        c.check("x509-qemu-img-info", r.returncode == 0 and "virtual size:" in r.stdout,
                r.stdout + r.stderr)
        q = os.path.join(tmp, "q.img")
        r = run(["qemu-img", "convert", "--object", obj, "-O", "raw", "--image-opts", qopts, q],
                timeout=120)
        got = open(q, "rb").read(len(data)) if os.path.exists(q) else b""
        c.check("x509-qemu-img-convert-data", r.returncode == 0 and got == data, r.stderr)
        obj_nc = "tls-creds-x509,id=tls0,endpoint=client,dir=%s" % os.path.dirname(nocert)
        r = run(["qemu-img", "info", "--object", obj_nc, "--image-opts", qopts], timeout=60)
        c.check("x509-no-client-cert-refused", r.returncode != 0, r.stdout + r.stderr)

        # ---- Refusals: a wrong key, plaintext under require
        r = run(["nbdinfo", "nbds://alice@127.0.0.1:%d/vol0?tls-psk-file=%s" % (port, wrong)])
        c.check("psk-wrong-key-refused", r.returncode != 0, r.stdout)
        r = run(["nbdinfo", "nbd://127.0.0.1:%d/vol0" % port])
        c.check("plain-refused", r.returncode != 0, r.stdout)
        r = run(["nbdinfo", "--list", "nbd://127.0.0.1:%d" % port])
        c.check("plain-list-discloses-nothing", "vol0" not in r.stdout + r.stderr,
                r.stdout + r.stderr)
        time.sleep(0.5)
        log = qh.strip_ansi(m.output).replace("\r", "")
        c.check("wrong-key-logged", "thinbox: tls: handshake failed (PSK identity 'alice')"
                in log, "\n".join(ln for ln in log.split("\n") if "tls" in ln))
        c.check("psk-handshake-logged",
                re.search(r"thinbox: tls: TLSv1\.2 TLS-\S*PSK\S*, PSK identity 'alice'", log))
        c.check("x509-handshake-logged", re.search(
            r"thinbox: tls: TLSv1\.2 TLS-ECDHE-ECDSA-\S*, client certificate CN=alice client",
            log))

        # ---- The shell
        out = sh(m, "tls")
        for ln in out.strip().split("\n"):
            c.note(ln)
        c.check("tls-mode", re.search(r"^mode: require ", out, re.M), out)
        c.check("tls-certificates-dir", re.search(r"^certificates: \\tls$", out, re.M), out)
        c.check("tls-identities", re.search(r"^psk: \\keys\.psk, identities: alice, bob$",
                                            out, re.M), out)
        c.check("tls-server-cert", re.search(
            r"server-cert\.pem #0: subject CN=localhost\n\s+issuer CN=thinbox test CA\n"
            r"\s+valid \d{4}-\d\d-\d\d \d\d:\d\d:\d\d to \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\n",
            out), out)
        c.check("tls-ca-cert", re.search(r"ca-cert\.pem #0: subject CN=thinbox test CA\n", out),
                out)
        c.check("tls-expired-marked", re.search(
            r"ca-cert\.pem #1: subject CN=old expired\n.*\n\s+valid 2020-01-01 00:00:00 to "
            r"2021-01-01 00:00:00 UTC  EXPIRED\n", out), out)
        c.check("tls-valid-not-marked", out.count("EXPIRED") == 1, out)
        c.check("tls-verify-peer", "client certificates: required, verified" in out, out)
        hs = re.search(r"^handshakes: (\d+) ok, (\d+) failed$", out, re.M)
        c.check("tls-counters", hs and int(hs.group(1)) >= 5 and int(hs.group(2)) >= 2, out)
        net = sh(m, "net")
        c.check("net-tls-line", "nbd tls: require (PSK, X.509)\n" in net, net)
        no_key_bytes("serial-log-no-keys", m.output)
        m.send("poweroff\r")
        c.check("poweroff", m.wait_exit(30) == qh.RC_POWEROFF)

        # ---- No entropy: TLS refused, nothing served
        ne.boot()
        log = qh.strip_ansi(ne.output).replace("\r", "")
        c.check("noentropy-message", "thinbox: tls: no entropy source (the random number "
                "source failed): TLS refused" in log,
                "\n".join(ln for ln in log.split("\n") if "tls" in ln or "entropy" in ln))
        c.check("noentropy-missing-file", "thinbox: tls: tls-certificates "
                "\\missing\\server-cert.pem: not found on the ESP" in log)
        c.check("noentropy-nothing-served", "NBD is NOT served" in log and
                "thinbox: nbd: not listening" in log and "nbd listening" not in log)
        r = run(["nbdinfo", "nbd://127.0.0.1:%d/vol0" % ne.port], timeout=20)
        c.check("noentropy-plain-refused", r.returncode != 0, r.stdout)
        r = run(["nbdinfo", "--list", "nbd://127.0.0.1:%d" % ne.port], timeout=20)
        c.check("noentropy-list-nothing", r.returncode != 0 and "vol0" not in r.stdout,
                r.stdout)
        out = sh(ne, "tls")
        c.check("noentropy-tls-refused", re.search(r"^mode: REFUSED \(tls = require\)$", out,
                                                   re.M) and "NBD is not served" in out, out)
        c.check("noentropy-tls-says-why", "no entropy source" in out and
                "\\missing\\server-cert.pem: not found" in out, out)
        out = sh(ne, "net")
        c.check("noentropy-net-line", "nbd tls: REFUSED (tls = require): NBD not served" in out,
                out)
        no_key_bytes("noentropy-log-no-keys", ne.output)
        ne.send("poweroff\r")
        c.check("noentropy-poweroff", ne.wait_exit(30) == qh.RC_POWEROFF)

        # ---- tls = on: a TLS-only export beside a plain one; bad values and files
        on.start()
        bad.start()
        on.boot()
        out = sh(on, "export add vol0 --name secret --tls-only")
        c.check("on-export-tls-only", "exported vol0 as 'secret' (TLS only)" in out, out)
        plain = "nbd://127.0.0.1:%d" % on.port
        tlsu = "nbds://alice@127.0.0.1:%d/%%s?tls-psk-file=%s" % (on.port, psk)
        r = run(["nbdinfo", "--size", plain + "/vol0"])
        c.check("on-plain-export-over-plain", r.returncode == 0 and r.stdout.strip() == str(size),
                r.stdout + r.stderr)
        r = run(["nbdinfo", "--size", plain + "/secret"])
        c.check("on-tls-only-over-plain-refused", r.returncode != 0, r.stdout)
        r = run(["nbdinfo", "--list", plain])
        c.check("on-plain-list-omits-tls-only", 'export="vol0"' in r.stdout and
                "secret" not in r.stdout, r.stdout + r.stderr)
        r = run(["nbdinfo", "--list", tlsu % ""])
        c.check("on-tls-list-shows-both", 'export="vol0"' in r.stdout and
                'export="secret"' in r.stdout, r.stdout + r.stderr)
        r = run(["nbdcopy", tlsu % "secret", os.path.join(tmp, "s.img")], timeout=120)
        got = open(os.path.join(tmp, "s.img"), "rb").read(16) if r.returncode == 0 else b""
        c.check("on-tls-only-over-tls-read", r.returncode == 0 and len(got) == 16, r.stderr)
        out = sh(on, "tls")
        c.check("on-tls-mode", re.search(r"^mode: on \(plain and TLS clients\)$", out, re.M) and
                "certificates: none" in out, out)
        out = sh(on, "net")
        c.check("on-net-line", "nbd tls: on (PSK)\n" in out, out)
        out = sh(on, "export list")
        c.check("on-export-list-marks", "(TLS only)" in out, out)
        no_key_bytes("on-log-no-keys", on.output)
        on.send("poweroff\r")
        c.check("on-poweroff", on.wait_exit(30) == qh.RC_POWEROFF)

        bad.boot()
        log = qh.strip_ansi(bad.output).replace("\r", "")
        tls_lines = "\n".join(ln for ln in log.split("\n") if "tls" in ln)
        c.check("bad-verify-value", "thinbox: tls: tls-verify-peer = maybe: want on or off\n"
                in log, tls_lines)
        c.check("bad-file-too-big", "thinbox: tls: tls-certificates \\big\\server-cert.pem: "
                "larger than 65536 bytes: refused\n" in log, tls_lines)
        c.check("bad-cert-key-missing", "thinbox: tls: tls-certificates \\big\\server-key.pem: "
                "not found on the ESP\n" in log, tls_lines)
        c.check("bad-psk-line", "thinbox: tls: tls-psk \\bad.psk: line 2: " in log, tls_lines)
        c.check("bad-nothing-served", "NBD is NOT served" in log and
                "thinbox: nbd: not listening" in log and "nbd listening" not in log, tls_lines)
        r = run(["nbdinfo", "--list", "nbd://127.0.0.1:%d" % bad.port], timeout=20)
        c.check("bad-list-nothing", r.returncode != 0 and "vol0" not in r.stdout, r.stdout)
        out = sh(bad, "tls")
        c.check("bad-tls-refused", "mode: REFUSED (tls = require)" in out and
                "tls-verify-peer = maybe" in out, out)
        no_key_bytes("bad-log-no-keys", bad.output)
        bad.send("poweroff\r")
        c.check("bad-poweroff", bad.wait_exit(30) == qh.RC_POWEROFF)
    except qh.BootFailure as e:
        c.check("no-boot-failure", False, str(e))
finally:
    m.stop()
    ne.stop()
    on.stop()
    bad.stop()
    shutil.rmtree(tmp, ignore_errors=True)
c.finish()
