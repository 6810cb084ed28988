/* SPDX-License-Identifier: MIT */
/*
 * core/base/perf: nested stages (self = whole minus the stages inside, exactly), dropped
 * passes, waits, unpaired and too-deep calls that must not corrupt anything, reset, timing
 * off (events and bytes only, the clock never read) and on, and the report's arithmetic (% of
 * the wall, ms per GiB, cycles per request, the rest of the loop); untimed spans report no
 * cycle figures, and a span in which timing changed says so.
 */
#include <stdio.h>
#include <string.h>

#include "core/base/perf.h"
#include "tests/support/harness.h"

/* Let the cycle counter (nanoseconds here) move by at least @n. */
static void spin(uint64_t n)
{
	uint64_t t0 = plat_cycles();

	while (plat_cycles() - t0 < n)
		;
}

TEST(nested_self_is_whole_minus_children)
{
	struct perf_counter c[PERF_NR];
	uint64_t wall;

	perf_timing = true;
	perf_reset();
	perf_begin(); /* net-rx */
	spin(100000);
	perf_begin(); /* checksum */
	spin(200000);
	perf_end(PERF_CHECKSUM, 1500);
	perf_begin(); /* copy */
	spin(50000);
	perf_end(PERF_COPY, 1500);
	perf_end(PERF_NET_RX, 1514);
	perf_snapshot(c, &wall);

	ok_eq(perf_depth, 0u);
	ok_eq(c[PERF_NET_RX].events, 1u);
	ok_eq(c[PERF_NET_RX].bytes, 1514u);
	ok(c[PERF_CHECKSUM].cycles >= 200000);
	ok(c[PERF_NET_RX].cycles >= 350000);
	/* Exact: the children's whole times come off the parent's self time. */
	ok_eq(c[PERF_NET_RX].self,
	      c[PERF_NET_RX].cycles - c[PERF_CHECKSUM].cycles - c[PERF_COPY].cycles);
	ok_eq(c[PERF_CHECKSUM].self, c[PERF_CHECKSUM].cycles);
	ok(wall >= c[PERF_NET_RX].cycles);
}

/* A counted piece (perf_count()): an event and its bytes, no time; its time stays in the
 * enclosing stage's self time. */
TEST(counted_piece_has_no_time_of_its_own)
{
	struct perf_counter c[PERF_NR];
	uint64_t wall;

	perf_timing = true;
	perf_reset();
	perf_begin(); /* net-rx */
	spin(50000);
	perf_count(PERF_CHECKSUM, 40);
	perf_count(PERF_CHECKSUM, 20);
	perf_end(PERF_NET_RX, 60);
	perf_snapshot(c, &wall);

	ok_eq(perf_depth, 0u);
	ok_eq(c[PERF_CHECKSUM].events, 2u);
	ok_eq(c[PERF_CHECKSUM].bytes, 60u);
	ok_eq(c[PERF_CHECKSUM].cycles, 0u);
	ok_eq(c[PERF_CHECKSUM].self, 0u);
	ok_eq(c[PERF_NET_RX].self, c[PERF_NET_RX].cycles);
}

TEST(dropped_pass_keeps_its_children)
{
	struct perf_counter c[PERF_NR];
	uint64_t wall;

	perf_timing = true;
	perf_reset();
	perf_begin(); /* a main-loop pass */
	perf_begin();
	spin(10000);
	perf_end(PERF_POOL_LOOKUP, 0);
	perf_drop();  /* it did work: not idle */
	perf_begin(); /* an idle pass with a halt inside */
	perf_begin();
	spin(10000);
	perf_end(PERF_HALT, 0);
	perf_end(PERF_IDLE_POLL, 0);
	perf_snapshot(c, &wall);

	ok_eq(perf_depth, 0u);
	ok_eq(c[PERF_POOL_LOOKUP].events, 1u);
	ok_eq(c[PERF_IDLE_POLL].events, 1u);
	ok_eq(c[PERF_IDLE_POLL].self, c[PERF_IDLE_POLL].cycles - c[PERF_HALT].cycles);
}

TEST(idle_pass_counts_its_polls_as_idle)
{
	struct perf_counter c[PERF_NR];
	struct perf_pass pass;
	uint64_t wall;

	perf_timing = true;
	perf_reset();
	/* Detail off: the polls are not measured, and an idle pass is one piece. */
	perf_detail = false;
	perf_pass_begin(&pass);
	perf_poll_begin();
	spin(1000);
	perf_poll_end(PERF_DEV_POLL);
	perf_pass_idle(&pass);
	perf_snapshot(c, &wall);
	ok_eq(perf_depth, 0u);
	ok_eq(c[PERF_DEV_POLL].events, 0u);
	ok_eq(c[PERF_IDLE_POLL].events, 1u);
	ok_eq(c[PERF_IDLE_POLL].self, c[PERF_IDLE_POLL].cycles);

	perf_reset();
	perf_detail = true;
	/* A pass that did work: the poll counts in its own stage. */
	perf_pass_begin(&pass);
	perf_poll_begin();
	spin(10000);
	perf_poll_end(PERF_DEV_POLL);
	perf_pass_work();
	perf_snapshot(c, &wall);
	ok_eq(c[PERF_DEV_POLL].events, 1u);
	ok_eq(c[PERF_IDLE_POLL].events, 0u);

	/* An idle pass: a poll with a checksum inside it, then a halt. */
	perf_pass_begin(&pass);
	perf_poll_begin();
	spin(10000);
	perf_begin();
	spin(10000);
	perf_end(PERF_CHECKSUM, 20);
	perf_poll_end(PERF_DEV_POLL);
	perf_begin();
	spin(10000);
	perf_end(PERF_HALT, 0);
	perf_pass_idle(&pass);
	ok_eq(perf_depth, 0u);
	{
		struct perf_counter d[PERF_NR];

		perf_snapshot(d, &wall);
		/* The poll is as before the idle pass; the nested stages keep theirs. */
		ok(memcmp(&d[PERF_DEV_POLL], &c[PERF_DEV_POLL], sizeof(d[0])) == 0);
		ok_eq(d[PERF_CHECKSUM].events, 1u);
		ok_eq(d[PERF_HALT].events, 1u);
		ok_eq(d[PERF_IDLE_POLL].events, 1u);
		/* The whole pass minus the checksum and the halt is idle-poll's own. */
		ok_eq(d[PERF_IDLE_POLL].self,
		      d[PERF_IDLE_POLL].cycles - d[PERF_CHECKSUM].cycles - d[PERF_HALT].cycles);
		ok(d[PERF_IDLE_POLL].self >= 10000);
	}
	perf_detail = false;
}

/* A pass that found nothing while disk I/O was in flight: wait-poll, not idle-poll, with its
 * polls put back and a halt inside keeping its own. */
TEST(wait_pass_counts_in_wait_poll)
{
	struct perf_counter c[PERF_NR];
	struct perf_pass pass;
	uint64_t wall;

	perf_reset();
	perf_detail = true;
	perf_pass_begin(&pass);
	perf_poll_begin();
	spin(10000);
	perf_poll_end(PERF_POOL_POLL);
	perf_begin();
	spin(10000);
	perf_end(PERF_HALT, 0);
	perf_pass_wait(&pass);
	perf_snapshot(c, &wall);
	ok_eq(perf_depth, 0u);
	ok_eq(c[PERF_POOL_POLL].events, 0u);
	ok_eq(c[PERF_IDLE_POLL].events, 0u);
	ok_eq(c[PERF_WAIT_POLL].events, 1u);
	ok_eq(c[PERF_HALT].events, 1u);
	ok_eq(c[PERF_WAIT_POLL].self, c[PERF_WAIT_POLL].cycles - c[PERF_HALT].cycles);
	ok(c[PERF_WAIT_POLL].self >= 10000);
	ok_eq(strcmp(perf_stage_name(PERF_WAIT_POLL), "wait-poll"), 0);
	perf_detail = false;
}

TEST(waits_unpaired_and_deep_calls)
{
	struct perf_counter c[PERF_NR];
	uint64_t wall;

	perf_timing = true;
	perf_reset();
	for (unsigned i = 0; i < 2; i++) {
		uint64_t t0 = perf_wait_begin();

		spin(2000);
		perf_wait_end(PERF_DISK_WAIT, t0, 4096);
	}
	perf_end(PERF_COPY, 1); /* no begin: ignored, the depth stays 0 */
	ok_eq(perf_depth, 0u);
	for (unsigned i = 0; i < PERF_MAX_DEPTH + 4; i++)
		perf_begin();
	for (unsigned i = 0; i < PERF_MAX_DEPTH + 4; i++)
		perf_end(PERF_COPY, 1);
	perf_snapshot(c, &wall);
	ok_eq(perf_depth, 0u);
	ok(c[PERF_DISK_WAIT].cycles >= 4000u);
	ok_eq(c[PERF_DISK_WAIT].events, 2u);
	ok_eq(c[PERF_DISK_WAIT].self, 0u);
	/* Every piece counted; only the ones inside the stack's depth have times. */
	ok_eq(c[PERF_COPY].events, (uint64_t)PERF_MAX_DEPTH + 4);
	ok(c[PERF_COPY].self <= c[PERF_COPY].cycles);

	perf_reset();
	perf_snapshot(c, &wall);
	ok_eq(c[PERF_DISK_WAIT].events, 0u);
	ok_eq(c[PERF_COPY].events, 0u);
}

/* The clock is read only while timing is on: this test links with --wrap=plat_cycles
 * (Makefile), so every read from the counters or the test comes here and is counted. */
static unsigned clock_reads;
uint64_t __real_plat_cycles(void);
uint64_t __wrap_plat_cycles(void);

uint64_t __wrap_plat_cycles(void)
{
	clock_reads++;
	return __real_plat_cycles();
}

/* Timing off (the firmware's default): every piece still counts its event and bytes, no
 * cycles anywhere, and the clock is never read (under TCG a read is a call into QEMU). */
TEST(timing_off_counts_without_reading_the_clock)
{
	struct perf_counter c[PERF_NR];
	struct perf_pass pass;
	uint64_t wall, t0;
	unsigned reads;

	perf_timing = false;
	perf_detail = false;
	perf_reset();
	reads = clock_reads;
	perf_pass_begin(&pass);
	perf_begin(); /* net-rx */
	perf_begin(); /* checksum */
	perf_end(PERF_CHECKSUM, 1460);
	perf_count(PERF_CHECKSUM, 20);
	perf_end(PERF_NET_RX, 1514);
	t0 = perf_wait_begin();
	perf_wait_end(PERF_DISK_WAIT, t0, 4096);
	perf_pass_idle(&pass);
	ok_eq(clock_reads - reads, 0u);
	perf_snapshot(c, &wall);
	ok_eq(perf_depth, 0u);
	ok_eq(t0, 0u);
	ok_eq(c[PERF_CHECKSUM].events, 2u);
	ok_eq(c[PERF_CHECKSUM].bytes, 1480u);
	ok_eq(c[PERF_NET_RX].events, 1u);
	ok_eq(c[PERF_DISK_WAIT].events, 1u);
	ok_eq(c[PERF_IDLE_POLL].events, 1u);
	for (unsigned s = 0; s < PERF_NR; s++)
		if (!ok_eq(c[s].cycles + c[s].self, 0u))
			fail("stage %s", perf_stage_name(s));

	/* Timing on: two reads per piece, two per wait. */
	perf_timing = true;
	reads = clock_reads;
	perf_begin();
	perf_end(PERF_CHECKSUM, 1460);
	t0 = perf_wait_begin();
	perf_wait_end(PERF_DISK_WAIT, t0, 4096);
	ok_eq(clock_reads - reads, 4u);
	ok(t0 != 0);
	perf_timing = false;
}

/* A piece keeps the setting it began with: switched on or off inside it (the shell runs
 * inside a main-loop pass), nothing is unbalanced and no time is made up. */
TEST(a_piece_keeps_the_setting_it_began_with)
{
	struct perf_counter c[PERF_NR];
	uint64_t wall;

	perf_timing = false;
	perf_reset();
	perf_begin(); /* a pass begun untimed */
	perf_timing = true;
	perf_begin(); /* a timed piece inside it */
	spin(5000);
	perf_end(PERF_COPY, 1);
	perf_end(PERF_IDLE_POLL, 0);
	perf_begin(); /* begun timed, ended after timing went off */
	spin(5000);
	perf_timing = false;
	perf_end(PERF_ZERO_SCAN, 1);
	perf_snapshot(c, &wall);
	ok_eq(perf_depth, 0u);
	ok(c[PERF_COPY].cycles >= 5000);
	ok_eq(c[PERF_IDLE_POLL].events, 1u);
	ok_eq(c[PERF_IDLE_POLL].cycles, 0u);
	ok(c[PERF_ZERO_SCAN].cycles >= 5000);
	ok_eq(c[PERF_ZERO_SCAN].events, 1u);
}

static char report[4096];

static void collect(void *ctx, const char *line)
{
	(void)ctx;
	strncat(report, line, sizeof(report) - strlen(report) - 2);
	strcat(report, "\n");
}

TEST(report_arithmetic)
{
	struct perf_counter c[PERF_NR];
	const uint64_t hz = 1000000000, wall = 4000000000; /* 4 s of a 1 GHz counter */

	memset(c, 0, sizeof(c));
	report[0] = '\0';
	c[PERF_NBD_PARSE] = (struct perf_counter){ 2000000, 2000000, 1000, 1ull << 30 };
	c[PERF_CHECKSUM] = (struct perf_counter){ 1000000000, 1000000000, 5000, 0 };
	c[PERF_HALT] = (struct perf_counter){ 2000000000, 2000000000, 10, 0 };
	c[PERF_DISK_WAIT] = (struct perf_counter){ 50000000, 0, 1000, 1ull << 30 };
	perf_report(c, wall, hz, PERF_SPAN_TIMED, collect, NULL);

	ok(strstr(report, "4.000 s since reset (1000 MHz counter); NBD: 1000 requests, "
			  "1.000 GiB of payload") != NULL);
	/* 1e9 of 4e9 cycles: 25 %; 1 s per GiB; 1e6 cycles per request. */
	ok(strstr(report, "checksum           5000     1000.0     1000.0  25.00  25.00     "
			  "200000    1000.0    1000000") != NULL);
	/* The halt has no per-GiB figure; the disk wait no self time. */
	ok(strstr(report, "halt                 10     2000.0     2000.0  50.00  50.00  200000000"
			  "         -          -") != NULL);
	ok(strstr(report, "disk-wait          1000       50.0          -      -   1.25      "
			  "50000") != NULL);
	/* Rest: 4e9 - 2e6 - 1e9 - 2e9 = 998e6. */
	ok(strstr(report, "rest                  -      998.0      998.0  24.95") != NULL);
	ok(strstr(report, "busy (all but idle-poll and halt): 50.00% of the wall, 2000.0 ms per "
			  "GiB, 2000000 cycles per request") != NULL);
	ok(strstr(report, "mean 50.0 us over 1000 data-disk requests") != NULL);
	if (!ok(!strstr(report, "nan")))
		fail("%s", report);
}

TEST(span_kind_follows_reset_and_switches)
{
	perf_set_timing(false);
	perf_reset();
	ok_eq(perf_span_kind(), PERF_SPAN_UNTIMED);
	perf_set_timing(false); /* no change: still untimed */
	ok_eq(perf_span_kind(), PERF_SPAN_UNTIMED);
	perf_set_timing(true);
	ok(perf_timing);
	ok_eq(perf_span_kind(), PERF_SPAN_MIXED);
	perf_reset();
	ok_eq(perf_span_kind(), PERF_SPAN_TIMED);
	perf_set_timing(false);
	ok(!perf_timing);
	ok_eq(perf_span_kind(), PERF_SPAN_MIXED);
	perf_reset();
	ok_eq(perf_span_kind(), PERF_SPAN_UNTIMED);
}

TEST(untimed_report_has_no_cycle_figures)
{
	struct perf_counter c[PERF_NR];
	const uint64_t hz = 1000000000, wall = 4000000000;

	memset(c, 0, sizeof(c));
	report[0] = '\0';
	c[PERF_NBD_PARSE] = (struct perf_counter){ 0, 0, 1000, 1ull << 30 };
	c[PERF_NET_RX] = (struct perf_counter){ 0, 0, 2500, 3000000 };
	c[PERF_DISK_WAIT] = (struct perf_counter){ 0, 0, 1000, 1ull << 30 };
	c[PERF_IDLE_POLL] = (struct perf_counter){ 0, 0, 77, 0 };
	perf_report(c, wall, hz, PERF_SPAN_UNTIMED, collect, NULL);

	ok(strstr(report, "4.000 s since reset (1000 MHz counter); NBD: 1000 requests, "
			  "1.000 GiB of payload") != NULL);
	ok(strstr(report, "stages not timed (perf on, then perf reset)") != NULL);
	ok(strstr(report, "net-rx               2500          3000000         2.50") != NULL);
	ok(strstr(report, "idle-poll              77                0         0.08") != NULL);
	ok(strstr(report, "disk-wait            1000       1073741824         1.00") != NULL);
	/* None of the timed report's cycle figures: no rest of the wall, no busy share. */
	ok(strstr(report, "Mcycles") == NULL);
	ok(strstr(report, "rest") == NULL);
	ok(strstr(report, "busy") == NULL);
	ok(strstr(report, "mean") == NULL);
	/* The counters every span has are still there. */
	ok(strstr(report, "write payload:") != NULL);
	if (!ok(strstr(report, "tcp output:") != NULL))
		fail("%s", report);
}

TEST(mixed_report_says_so)
{
	struct perf_counter c[PERF_NR];

	memset(c, 0, sizeof(c));
	report[0] = '\0';
	c[PERF_NBD_PARSE] = (struct perf_counter){ 2000000, 2000000, 1000, 1ull << 30 };
	perf_report(c, 4000000000, 1000000000, PERF_SPAN_MIXED, collect, NULL);
	ok(strstr(report, "timing was switched during this span") != NULL);
	ok(strstr(report, "Mcycles") != NULL);
	ok(strstr(report, "not timed") == NULL);
	report[0] = '\0';
	perf_report(c, 4000000000, 1000000000, PERF_SPAN_TIMED, collect, NULL);
	ok(strstr(report, "timing was switched") == NULL);
}
