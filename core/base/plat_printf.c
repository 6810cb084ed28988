/* SPDX-License-Identifier: MIT */
/* plat_printf() for both platforms, on each platform's plat_vprintf(). */
#include "core/base/plat.h"

int plat_printf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = plat_vprintf(fmt, ap);
	va_end(ap);
	return n;
}
