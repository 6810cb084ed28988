/* SPDX-License-Identifier: MIT */
/*
 * What lwIP needs from the platform in NO_SYS mode: a millisecond clock, random numbers,
 * diagnostics and assertions. Everything goes through core/base/plat.h.
 */
#include <stdarg.h>

#include "core/base/perf.h"
#include "core/base/plat.h"
#include "core/base/util.h"
#include "lwip/arch.h"
#include "lwip/sys.h"
#include "net/lwip/inet_sum.h"

/*
 * Sums shorter than this (the pseudo-header, TCP and IP headers: most of the calls, about five
 * per segment) are counted, not timed: under TCG the two cycle-counter reads of a timed piece
 * (each a helper call into QEMU) cost several times such a sum. Their time stays in the
 * enclosing stage (net-rx, lwip-output).
 */
#define CHKSUM_TIMED_MIN 128

u16_t thinbox_lwip_chksum(const void *data, int len)
{
	u16_t sum;

	if (len < CHKSUM_TIMED_MIN) {
		perf_count(PERF_CHECKSUM, len > 0 ? (uint64_t)len : 0);
		return len > 0 ? inet_sum(data, (size_t)len) : 0;
	}
	perf_begin();
	sum = inet_sum(data, (size_t)len);
	perf_end(PERF_CHECKSUM, (uint64_t)len);
	return sum;
}

u32_t sys_now(void)
{
	/* Wraps after 49 days; lwIP's timeouts compare with wrap-around arithmetic. */
	return (u32_t)(plat_now_ns() / NSEC_PER_MSEC);
}

uint32_t lwip_port_rand(void)
{
	/* xorshift seeded from the clock: for TCP initial sequence numbers and DHCP xids, which
	 * need to differ between boots, not to resist an attacker on this private link. */
	static uint64_t s;

	if (!s)
		s = plat_now_ns() | 1;
	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return (uint32_t)(s >> 16);
}

void lwip_port_diag(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	plat_vprintf(fmt, ap);
	va_end(ap);
}

void lwip_port_assert(const char *msg, const char *file, int line)
{
	plat_panic("lwIP assertion \"%s\" failed at %s:%d", msg, file, line);
}
