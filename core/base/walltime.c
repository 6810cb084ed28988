/* SPDX-License-Identifier: MIT */
/*
 * Calendar arithmetic without libc (the firmware has no timegm): days are counted in years
 * that start on March 1st, so the leap day is the last day of its year and every month
 * length but February's follows one formula. 400 Gregorian years are exactly 146097 days.
 */
#include "core/base/walltime.h"

#include <errno.h>
#include <stddef.h>

#define DAYS_PER_400Y	  146097
#define DAYS_0000_TO_1970 719468 /* from 0000-03-01 to 1970-01-01 */

static bool leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
	static const unsigned char len[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	return m == 2 && leap(y) ? 29 : len[m - 1];
}

static bool civil_valid(const struct civil_time *t)
{
	return t->year >= 1970 && t->year <= 9999 && t->month >= 1 && t->month <= 12 &&
	       t->day >= 1 && t->day <= days_in_month(t->year, t->month) && t->hour >= 0 &&
	       t->hour <= 23 && t->min >= 0 && t->min <= 59 && t->sec >= 0 && t->sec <= 59;
}

/* Days since 1970-01-01 of a valid date (all terms stay non-negative from 1970 on). */
static uint64_t days_from_civil(int year, int month, int day)
{
	uint64_t y = (uint64_t)(year - (month <= 2)); /* the March-based year */
	uint64_t era = y / 400, yoe = y % 400;	      /* 400-year cycle, year in it */
	uint64_t mp = (uint64_t)(month > 2 ? month - 3 : month + 9); /* March = 0 */
	uint64_t doy = (153 * mp + 2) / 5 + (uint64_t)day - 1; /* day of the March-based year */
	uint64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;  /* day of the cycle */

	return era * DAYS_PER_400Y + doe - DAYS_0000_TO_1970;
}

int civil_to_unix(const struct civil_time *t, uint64_t *unix_seconds)
{
	if (!civil_valid(t))
		return -EINVAL;
	*unix_seconds = days_from_civil(t->year, t->month, t->day) * 86400 +
			(uint64_t)(t->hour * 3600 + t->min * 60 + t->sec);
	return 0;
}

int unix_to_civil(uint64_t unix_seconds, struct civil_time *t)
{
	uint64_t z, era, doe, yoe, doy, mp, secs;

	if (unix_seconds > CIVIL_UNIX_MAX)
		return -EINVAL;
	z = unix_seconds / 86400 + DAYS_0000_TO_1970;
	secs = unix_seconds % 86400;
	era = z / DAYS_PER_400Y;
	doe = z % DAYS_PER_400Y;
	/* Years of the cycle: remove the leap days before dividing by 365. */
	yoe = (doe - doe / 1460 + doe / 36524 - doe / (DAYS_PER_400Y - 1)) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	t->day = (int)(doy - (153 * mp + 2) / 5 + 1);
	t->month = (int)(mp < 10 ? mp + 3 : mp - 9);
	t->year = (int)(era * 400 + yoe) + (t->month <= 2);
	t->hour = (int)(secs / 3600);
	t->min = (int)(secs / 60 % 60);
	t->sec = (int)(secs % 60);
	return 0;
}

/* A register value as a number: binary as is, BCD two digits (-1 for a digit above 9). */
static int rtc_value(uint8_t v, bool binary)
{
	if (binary)
		return v;
	if ((v >> 4) > 9 || (v & 0xf) > 9)
		return -1;
	return (v >> 4) * 10 + (v & 0xf);
}

int rtc_decode(const struct rtc_regs *r, struct civil_time *t)
{
	bool bin = r->status_b & RTC_STATUS_B_BIN;
	struct civil_time c;
	int hour = r->hour, yy = rtc_value(r->year, bin), cc = 20;

	if (!(r->status_b & RTC_STATUS_B_24H)) {
		/* 12-hour mode: 12 AM is midnight, 12 PM noon; the PM flag is not part of the
		 * number in either encoding. */
		bool pm = hour & RTC_HOUR_PM;

		hour = rtc_value((uint8_t)(hour & ~RTC_HOUR_PM), bin);
		if (hour < 1 || hour > 12)
			return -EIO;
		hour = hour % 12 + (pm ? 12 : 0);
	} else {
		hour = rtc_value((uint8_t)hour, bin);
	}
	if (r->has_century)
		cc = rtc_value(r->century, bin);
	c = (struct civil_time){
		.year = cc * 100 + yy,
		.month = rtc_value(r->month, bin),
		.day = rtc_value(r->day, bin),
		.hour = hour,
		.min = rtc_value(r->min, bin),
		.sec = rtc_value(r->sec, bin),
	};
	/* A BCD digit above 9 made its field -1, which civil_valid() refuses too. */
	if (yy < 0 || yy > 99 || cc < 0 || cc > 99 || !civil_valid(&c))
		return -EIO;
	*t = c;
	return 0;
}

bool hostname_valid(const char *name)
{
	size_t n = 0;

	for (; name[n]; n++) {
		char ch = name[n];

		if (n >= HOSTNAME_MAX)
			return false;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'))
			return false;
	}
	return n > 0;
}
