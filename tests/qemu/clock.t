#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The wall clock and the host name (LVM's creation_time and creation_host), two machines
booted in parallel:

- `-rtc base=2031-05-06T07:08:09` and fw_cfg opt/thinbox/hostname=node-7.example: the boot
  log and `date` show that date, at a time within a few seconds of the base plus the time
  QEMU has run; a second `date` 3 s later has advanced by about 3 s (the CMOS clock is read
  once at boot and the TSC counts on); `date` names the host node-7.example;
- `-rtc base=1999-12-31T12:00:00` (the century register from the FADT makes it 1999, not
  2099) and `hostname = bad_name` in \\thinbox.cfg: the boot log warns about the name and
  `date` names the host thinbox, the default.
"""
import calendar
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_harness as qh  # noqa: E402

c = qh.Checks("qemu/clock")
qh.require_image(c)

DATE = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) UTC")


def seconds(m):
    return calendar.timegm(tuple(int(g) for g in m.groups()))


def date(m):
    """`date` on @m: (guest Unix seconds or None, host name or None, the output, the QEMU
    run time before and after the command)."""
    before = m.elapsed()
    out = m.command("date")
    after = m.elapsed()
    d = DATE.search(out)
    h = re.search(r"hostname (\S+)", out)
    return (seconds(d) if d else None, h.group(1) if h else None, out, before, after)


BASE = calendar.timegm((2031, 5, 6, 7, 8, 9))
a = qh.Machine("qemu-clock-2031", disks=(), net=False,
               fw_cfg={"hostname": "node-7.example"},
               extra_args=["-rtc", "base=2031-05-06T07:08:09"])
b = qh.Machine("qemu-clock-1999", disks=(), net=False, esp_cfg="hostname = bad_name\n",
               extra_args=["-rtc", "base=1999-12-31T12:00:00"])
try:
    a.start()
    b.start()
    try:
        a.boot()
        log = a.output
        boot_line = re.search(r"thinbox: clock " + DATE.pattern + r".*", log)
        c.check("boot-log-2031", boot_line and boot_line.group(0).startswith(
            "thinbox: clock 2031-05-06 07:0"), boot_line.group(0) if boot_line else log[-2000:])
        c.check("boot-log-century-from-fadt",
                boot_line and "century register from the FADT" in boot_line.group(0),
                boot_line.group(0) if boot_line else "no clock line")
        c.check("boot-log-hostname", "thinbox: hostname node-7.example\n" in log.replace("\r", ""))

        t1, host, out, before, after = date(a)
        c.check("date-format", t1 is not None, repr(out))
        # QEMU's RTC starts at the base when QEMU sets up the machine, after we started it:
        # the guest is at most the whole run time past the base (+1 s for rounding), and at
        # least the run time before the command less QEMU's start-up and the RTC's unknown
        # sub-second phase.
        if t1 is not None:
            c.check("date-near-rtc-base", BASE + before - 5 <= t1 <= BASE + after + 1,
                    "guest %s, base + %.1f..%.1f s" % (out.strip(), before, after))
            c.note("date %s after %.1f s of QEMU" % (DATE.search(out).group(0), after))
        c.check("date-hostname", host == "node-7.example", repr(out))

        time.sleep(3)
        t2, _, out2, before2, after2 = date(a)
        step = (t2 - t1) if t1 is not None and t2 is not None else None
        c.check("date-advances", step is not None and
                (before2 - after) - 1 <= step <= (after2 - before) + 1,
                "%r then %r (host %.1f s apart)" % (out, out2, before2 - before))

        b.boot()
        log = b.output.replace("\r", "")
        c.check("century-1999-in-boot-log", "thinbox: clock 1999-12-31 12:0" in log,
                "\n".join(ln for ln in log.split("\n") if "clock" in ln))
        t3, host, out, _, _ = date(b)
        c.check("date-1999", t3 is not None and
                calendar.timegm((1999, 12, 31, 12, 0, 0)) <= t3 <= calendar.timegm(
                    (1999, 12, 31, 12, 5, 0)), repr(out))
        c.check("bad-hostname-warned",
                "thinbox: hostname 'bad_name' is not 1..63 of [A-Za-z0-9.-]: using thinbox"
                in log, "\n".join(ln for ln in log.split("\n") if "hostname" in ln))
        c.check("bad-hostname-default", host == "thinbox", repr(out))

        for m in (a, b):
            m.send("poweroff\r")
            rc = m.wait_exit(30)
            c.check("poweroff-" + m.name, rc == qh.RC_POWEROFF, "QEMU status %s" % rc)
            c.check("no-exception-" + m.name,
                    qh.EXCEPTION not in m.output and "PANIC" not in m.output)
    except qh.BootFailure as e:
        c.check("no-boot-failure", False, str(e))
finally:
    a.stop()
    b.stop()
c.finish()
