/* SPDX-License-Identifier: MIT */
/*
 * Wall-clock arithmetic shared by both builds: calendar time (UTC) <-> Unix seconds, the
 * decoding of a PC CMOS real-time clock's raw registers, and host names fit for LVM's
 * creation_host. Pure functions (no I/O), so the host tests cover what the firmware runs.
 */
#ifndef CORE_BASE_WALLTIME_H
#define CORE_BASE_WALLTIME_H

#include <stdbool.h>
#include <stdint.h>

/* A proleptic Gregorian date and time of day, UTC. */
struct civil_time {
	int year;  /* 1970..9999 */
	int month; /* 1..12 */
	int day;   /* 1..days in that month */
	int hour;  /* 0..23 */
	int min;   /* 0..59 */
	int sec;   /* 0..59 (no leap seconds: Unix time has none) */
};

/* The last second civil_to_unix() accepts: 9999-12-31 23:59:59 UTC. */
#define CIVIL_UNIX_MAX 253402300799ull

/*
 * @t as seconds since 1970-01-01 00:00:00 UTC. 0, or -EINVAL (nothing written) when a field
 * is out of its range above, including a day past the end of its month (2023-02-29).
 */
int civil_to_unix(const struct civil_time *t, uint64_t *unix_seconds);
/* The inverse: 0, or -EINVAL past CIVIL_UNIX_MAX. */
int unix_to_civil(uint64_t unix_seconds, struct civil_time *t);

/*
 * The raw registers of an MC146818-compatible CMOS clock, as read from ports 0x70/0x71:
 * 0x00 seconds, 0x02 minutes, 0x04 hours, 0x07 day of month, 0x08 month, 0x09 year in the
 * century, 0x0b status B, and the century register named by ACPI's FADT.
 */
struct rtc_regs {
	uint8_t sec, min, hour, day, month, year;
	uint8_t status_b;
	uint8_t century; /* the century register's value; ignored unless has_century */
	bool has_century;
};

#define RTC_REG_SEC	 0x00
#define RTC_REG_MIN	 0x02
#define RTC_REG_HOUR	 0x04
#define RTC_REG_DAY	 0x07
#define RTC_REG_MONTH	 0x08
#define RTC_REG_YEAR	 0x09
#define RTC_REG_STATUS_A 0x0a
#define RTC_REG_STATUS_B 0x0b
#define RTC_STATUS_A_UIP 0x80 /* update in progress: the time registers are changing */
#define RTC_STATUS_B_24H 0x02 /* hours 0..23 (else 1..12 with RTC_HOUR_PM) */
#define RTC_STATUS_B_BIN 0x04 /* binary values (else BCD) */
#define RTC_HOUR_PM	 0x80 /* in 12-hour mode: afternoon */

/*
 * Decode @r (BCD or binary, 12- or 24-hour, as status B says) into @t. Without a century
 * register the year is 20YY. 0, or -EIO (nothing written) on anything a working clock cannot
 * show: a BCD digit above 9, an hour 0 or above 12 in 12-hour mode, a field out of range,
 * a year before 1970 or a day the month does not have.
 */
int rtc_decode(const struct rtc_regs *r, struct civil_time *t);

/* Host names recorded as LVM's creation_host: [A-Za-z0-9.-], 1..HOSTNAME_MAX characters. */
#define HOSTNAME_MAX	 63
#define HOSTNAME_DEFAULT "thinbox"
/* Whether @name (NUL-terminated; NULL is not) is such a host name. */
bool hostname_valid(const char *name);

#endif
