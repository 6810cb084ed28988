/* SPDX-License-Identifier: MIT */
/* Sizes for people (core/base/util.h): below the shell, so every layer prints them alike. */
#include "core/base/util.h"

#include <stdio.h>

void format_size(unsigned long long bytes, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	unsigned u = 0;
	unsigned long long whole = bytes, rem = 0;

	while (whole >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		rem = whole % 1024;
		whole /= 1024;
		u++;
	}
	if (u == 0 || whole >= 100)
		snprintf(buf, len, "%llu %s", whole, units[u]);
	else
		snprintf(buf, len, "%llu.%llu %s", whole, rem * 10 / 1024, units[u]);
}
