/* SPDX-License-Identifier: MIT */
/*
 * core/base/walltime: calendar time <-> Unix seconds (the firmware's timegm), the CMOS clock's
 * register decoding (BCD/binary, 12/24-hour, century), and host-name validation.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "core/base/walltime.h"
#include "tests/support/harness.h"

static const struct civil_time SENTINEL = { -1, -1, -1, -1, -1, -1 };

static struct civil_time ct(int y, int mo, int d, int h, int mi, int s)
{
	return (struct civil_time){ y, mo, d, h, mi, s };
}

static bool same(const struct civil_time *a, const struct civil_time *b)
{
	return a->year == b->year && a->month == b->month && a->day == b->day &&
	       a->hour == b->hour && a->min == b->min && a->sec == b->sec;
}

/* civil_to_unix(@t) must be @want, and unix_to_civil() must give @t back. */
static void check_pair(struct civil_time t, uint64_t want)
{
	uint64_t got = 0;
	struct civil_time back = SENTINEL;

	if (!ok_eq(civil_to_unix(&t, &got), 0) || !ok_eq(got, want))
		fail("%04d-%02d-%02d %02d:%02d:%02d", t.year, t.month, t.day, t.hour, t.min, t.sec);
	ok_eq(unix_to_civil(want, &back), 0);
	if (!ok(same(&back, &t)))
		fail("%llu came back as %04d-%02d-%02d %02d:%02d:%02d", (unsigned long long)want,
		     back.year, back.month, back.day, back.hour, back.min, back.sec);
}

TEST(known_dates)
{
	check_pair(ct(1970, 1, 1, 0, 0, 0), 0);
	check_pair(ct(1970, 1, 1, 0, 0, 1), 1);
	check_pair(ct(1970, 1, 2, 0, 0, 0), 86400);
	check_pair(ct(1972, 2, 29, 0, 0, 0), 68169600); /* the first leap day after the epoch */
	check_pair(ct(1999, 12, 31, 23, 59, 59), 946684799);
	check_pair(ct(2000, 1, 1, 0, 0, 0), 946684800);
	check_pair(ct(2000, 2, 29, 0, 0, 0), 951782400); /* 2000 divides by 400: leap */
	check_pair(ct(2000, 3, 1, 0, 0, 0), 951868800);
	check_pair(ct(2024, 2, 29, 0, 0, 0), 1709164800);
	check_pair(ct(2031, 5, 6, 7, 8, 9), 1935817689);
	check_pair(ct(2038, 1, 19, 3, 14, 7), 2147483647); /* the last 31-bit second */
	check_pair(ct(2038, 1, 19, 3, 14, 8), 2147483648);
	check_pair(ct(2106, 2, 7, 6, 28, 16), 4294967296ull); /* past 32 bits */
	check_pair(ct(2099, 12, 31, 23, 59, 59), 4102444799ull);
	check_pair(ct(2100, 3, 1, 0, 0, 0), 4107542400ull);
	check_pair(ct(2400, 2, 29, 12, 0, 0), 13574606400ull);
	check_pair(ct(9999, 12, 31, 23, 59, 59), CIVIL_UNIX_MAX);
}

TEST(bad_fields_are_refused)
{
	static const struct civil_time bad[] = {
		{ 1969, 12, 31, 23, 59, 59 }, /* before the epoch */
		{ 10000, 1, 1, 0, 0, 0 },     { 2024, 0, 1, 0, 0, 0 },	{ 2024, 13, 1, 0, 0, 0 },
		{ 2024, 1, 0, 0, 0, 0 },      { 2024, 1, 32, 0, 0, 0 }, { 2024, 4, 31, 0, 0, 0 },
		{ 2023, 2, 29, 0, 0, 0 }, /* not a leap year */
		{ 2100, 2, 29, 0, 0, 0 }, /* divides by 100, not by 400 */
		{ 2024, 2, 30, 0, 0, 0 },     { 2024, 1, 1, 24, 0, 0 }, { 2024, 1, 1, -1, 0, 0 },
		{ 2024, 1, 1, 0, 60, 0 },     { 2024, 1, 1, 0, 0, 60 }, { 2024, 1, 1, 0, 0, -1 },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t got = 12345;

		if (!ok_eq(civil_to_unix(&bad[i], &got), -EINVAL) || !ok_eq(got, 12345))
			fail("case %zu accepted", i);
	}
	struct civil_time t = SENTINEL;

	ok_eq(unix_to_civil(CIVIL_UNIX_MAX + 1, &t), -EINVAL);
	ok_eq(unix_to_civil(UINT64_MAX, &t), -EINVAL);
}

/* Every day from 1970 to 9999 round-trips and follows the previous one by 86400 s. */
TEST(every_day_round_trips)
{
	struct civil_time t = ct(1970, 1, 1, 23, 59, 59), back;
	uint64_t prev = 0, s;
	unsigned long days = 0;
	static const int mlen[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	for (t.year = 1970; t.year <= 9999; t.year++)
		for (t.month = 1; t.month <= 12; t.month++) {
			bool leap = (t.year % 4 == 0 && t.year % 100 != 0) || t.year % 400 == 0;
			int n = mlen[t.month - 1] + (t.month == 2 && leap);

			for (t.day = 1; t.day <= n; t.day++, days++) {
				if (civil_to_unix(&t, &s) || (days && s != prev + 86400) ||
				    unix_to_civil(s, &back) || !same(&back, &t)) {
					fail("%04d-%02d-%02d", t.year, t.month, t.day);
					return;
				}
				prev = s;
			}
		}
	ok_eq(prev, CIVIL_UNIX_MAX);
	ok_eq(days, 2932897); /* 8030 years */
}

/* Random seconds agree with the C library's gmtime() (the host has one; the firmware not). */
TEST(agrees_with_libc)
{
	uint64_t st = test_seed();

	for (int i = 0; i < 200000; i++) {
		time_t s = (time_t)(test_rand(&st) % (CIVIL_UNIX_MAX + 1));
		struct tm tm;
		struct civil_time t, want;
		uint64_t back;

		gmtime_r(&s, &tm);
		want = ct(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			  tm.tm_sec);
		if (unix_to_civil((uint64_t)s, &t) || !same(&t, &want) ||
		    civil_to_unix(&want, &back) || back != (uint64_t)s) {
			fail("%lld", (long long)s);
			return;
		}
	}
	ok(1);
}

static int decode(struct rtc_regs r, struct civil_time *t)
{
	*t = SENTINEL;
	return rtc_decode(&r, t);
}

#define BCD24 (RTC_STATUS_B_24H)
#define BIN24 (RTC_STATUS_B_24H | RTC_STATUS_B_BIN)

TEST(rtc_bcd_and_binary)
{
	struct civil_time t, want = ct(2031, 5, 6, 7, 8, 9);

	/* What QEMU's default (BCD, 24-hour) shows for -rtc base=2031-05-06T07:08:09. */
	ok_eq(
	    decode((struct rtc_regs){ 0x09, 0x08, 0x07, 0x06, 0x05, 0x31, BCD24, 0x20, true }, &t),
	    0);
	ok(same(&t, &want));
	ok_eq(decode((struct rtc_regs){ 9, 8, 7, 6, 5, 31, BIN24, 20, true }, &t), 0);
	ok(same(&t, &want));
	/* No century register: 20YY. */
	ok_eq(
	    decode((struct rtc_regs){ 0x09, 0x08, 0x07, 0x06, 0x05, 0x31, BCD24, 0x77, false }, &t),
	    0);
	ok(same(&t, &want));
	want = ct(2099, 12, 31, 23, 59, 59);
	ok_eq(decode((struct rtc_regs){ 0x59, 0x59, 0x23, 0x31, 0x12, 0x99, BCD24, 0, false }, &t),
	      0);
	ok(same(&t, &want));
	/* The century register counts: 19xx and 21xx. */
	want = ct(1999, 12, 31, 23, 59, 59);
	ok_eq(
	    decode((struct rtc_regs){ 0x59, 0x59, 0x23, 0x31, 0x12, 0x99, BCD24, 0x19, true }, &t),
	    0);
	ok(same(&t, &want));
	want = ct(2100, 3, 1, 0, 0, 0);
	ok_eq(decode((struct rtc_regs){ 0, 0, 0, 1, 3, 0, BIN24, 21, true }, &t), 0);
	ok(same(&t, &want));
	/* Leap days by the full year: 2000-02-29 exists, 2100-02-29 does not. */
	want = ct(2000, 2, 29, 12, 0, 0);
	ok_eq(decode((struct rtc_regs){ 0, 0, 0x12, 0x29, 0x02, 0x00, BCD24, 0x20, true }, &t), 0);
	ok(same(&t, &want));
	ok_eq(decode((struct rtc_regs){ 0, 0, 0x12, 0x29, 0x02, 0x00, BCD24, 0x21, true }, &t),
	      -EIO);
}

TEST(rtc_12_hour)
{
	static const struct {
		uint8_t raw, status_b;
		int hour; /* -1: refused */
	} cases[] = {
		{ 0x12, 0, 0 }, /* 12 AM BCD: midnight */
		{ 0x01, 0, 1 },
		{ 0x11, 0, 11 },
		{ 0x92, 0, 12 }, /* 12 PM: noon */
		{ 0x81, 0, 13 },
		{ 0x91, 0, 23 },
		{ 0x87, 0, 19 },
		{ 0x00, 0, -1 }, /* no hour 0 on a 12-hour clock */
		{ 0x80, 0, -1 },
		{ 0x13, 0, -1 },
		{ 0x93, 0, -1 },
		{ 0x1a, 0, -1 }, /* not BCD */
		{ 12, RTC_STATUS_B_BIN, 0 },
		{ 0x80 | 12, RTC_STATUS_B_BIN, 12 },
		{ 0x80 | 11, RTC_STATUS_B_BIN, 23 },
		{ 0x80 | 1, RTC_STATUS_B_BIN, 13 },
		{ 0, RTC_STATUS_B_BIN, -1 },
		{ 13, RTC_STATUS_B_BIN, -1 },
		/* 24-hour mode has no PM flag: bit 7 makes it nonsense. */
		{ 0x87, BCD24, -1 },
		{ 0x24, BCD24, -1 },
		{ 0x23, BCD24, 23 },
		{ 0x80 | 7, BIN24, -1 },
		{ 24, BIN24, -1 },
		{ 0, BIN24, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct civil_time t;
		bool bin = cases[i].status_b & RTC_STATUS_B_BIN;
		struct rtc_regs r = { bin ? 30 : 0x30,
				      bin ? 15 : 0x15,
				      cases[i].raw,
				      bin ? 6 : 0x06,
				      bin ? 5 : 0x05,
				      bin ? 31 : 0x31,
				      cases[i].status_b,
				      0,
				      false };
		int rc = decode(r, &t);

		if (cases[i].hour < 0) {
			if (!ok_eq(rc, -EIO) || !ok(same(&t, &SENTINEL)))
				fail("case %zu (0x%02x) accepted", i, cases[i].raw);
		} else if (!ok_eq(rc, 0) || !ok_eq(t.hour, cases[i].hour) || !ok_eq(t.min, 15) ||
			   !ok_eq(t.sec, 30)) {
			fail("case %zu (0x%02x)", i, cases[i].raw);
		}
	}
}

TEST(rtc_nonsense_is_refused)
{
	static const struct rtc_regs bad[] = {
		/* No clock at all: the bus floats to 0xff. */
		{ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, true },
		{ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, false },
		{ 0x5a, 0x08, 0x07, 0x06, 0x05, 0x31, BCD24, 0x20, true }, /* BCD digit a */
		{ 0x60, 0x08, 0x07, 0x06, 0x05, 0x31, BCD24, 0x20, true }, /* 60 seconds */
		{ 0x09, 0x60, 0x07, 0x06, 0x05, 0x31, BCD24, 0x20, true }, /* 60 minutes */
		{ 0x09, 0x08, 0x07, 0x00, 0x05, 0x31, BCD24, 0x20, true }, /* day 0 */
		{ 0x09, 0x08, 0x07, 0x31, 0x04, 0x31, BCD24, 0x20, true }, /* April 31st */
		{ 0x09, 0x08, 0x07, 0x29, 0x02, 0x23, BCD24, 0x20, true }, /* 2023-02-29 */
		{ 0x09, 0x08, 0x07, 0x06, 0x00, 0x31, BCD24, 0x20, true }, /* month 0 */
		{ 0x09, 0x08, 0x07, 0x06, 0x13, 0x31, BCD24, 0x20, true }, /* month 13 */
		{ 0x09, 0x08, 0x07, 0x06, 0x05, 0x3f, BCD24, 0x20, true }, /* year 3f */
		{ 0x09, 0x08, 0x07, 0x06, 0x05, 0x31, BCD24, 0x2a, true }, /* century 2a */
		{ 0x09, 0x08, 0x07, 0x06, 0x05, 0x69, BCD24, 0x19, true }, /* 1969 */
		{ 9, 8, 7, 6, 5, 100, BIN24, 20, true },		   /* year 100 */
		{ 9, 8, 7, 6, 5, 31, BIN24, 100, true },		   /* century 100 */
		{ 60, 8, 7, 6, 5, 31, BIN24, 20, true },
		{ 9, 8, 7, 32, 5, 31, BIN24, 20, true },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct civil_time t;

		if (!ok_eq(decode(bad[i], &t), -EIO) || !ok(same(&t, &SENTINEL)))
			fail("case %zu accepted", i);
	}
}

TEST(hostnames)
{
	char name[80];

	ok(hostname_valid("thinbox"));
	ok(hostname_valid("a"));
	ok(hostname_valid("node-7.example.org"));
	ok(hostname_valid("ABC-def.09"));
	ok(!hostname_valid(""));
	ok(!hostname_valid("under_score"));
	ok(!hostname_valid("with space"));
	ok(!hostname_valid("quote\"d"));
	ok(!hostname_valid("back\\slash"));
	ok(!hostname_valid("new\nline"));
	ok(!hostname_valid("caf\xc3\xa9"));
	memset(name, 'x', sizeof(name));
	name[HOSTNAME_MAX] = '\0';
	ok(hostname_valid(name));
	name[HOSTNAME_MAX] = 'x';
	name[HOSTNAME_MAX + 1] = '\0';
	ok(!hostname_valid(name));
	ok(hostname_valid(HOSTNAME_DEFAULT));
}
