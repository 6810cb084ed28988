/* SPDX-License-Identifier: MIT */
/* The stage counters and their report (perf.h). */
#include "core/base/perf.h"

#include <stdio.h>
#include <string.h>

struct perf_counter perf_ctr[PERF_NR];
struct perf_frame perf_stack[PERF_MAX_DEPTH];
unsigned perf_depth;
bool perf_detail;
bool perf_timing;
struct perf_payload perf_payload;
struct perf_tcp perf_tcp;

static uint64_t reset_at;
static int reset_done;
static enum perf_span span;

static const char *const names[PERF_NR] = {
	[PERF_NBD_PARSE] = "nbd-parse",
	[PERF_NBD_RUN] = "nbd-run",
	[PERF_POOL_LOOKUP] = "pool-lookup",
	[PERF_DISK_WAIT] = "disk-wait",
	[PERF_COPY] = "copy",
	[PERF_ZERO_SCAN] = "zero-scan",
	[PERF_LWIP_OUTPUT] = "lwip-output",
	[PERF_CHECKSUM] = "checksum",
	[PERF_NET_RX] = "net-rx",
	[PERF_NET_TX] = "net-tx",
	[PERF_DOORBELL] = "doorbell",
	[PERF_CONSOLE] = "console",
	[PERF_DEV_POLL] = "dev-poll",
	[PERF_NBD_POLL] = "nbd-poll",
	[PERF_POOL_POLL] = "pool-poll",
	[PERF_LWIP_TIMERS] = "lwip-timers",
	[PERF_WAIT_POLL] = "wait-poll",
	[PERF_IDLE_POLL] = "idle-poll",
	[PERF_HALT] = "halt",
};

const char *perf_stage_name(unsigned s)
{
	return s < PERF_NR ? names[s] : NULL;
}

void perf_reset(void)
{
	/* The stack is left alone: a reset from inside a measured piece (the shell runs from
	 * the main loop, outside every stage) would otherwise unbalance it. */
	memset(perf_ctr, 0, sizeof(perf_ctr));
	memset(&perf_payload, 0, sizeof(perf_payload));
	memset(&perf_tcp, 0, sizeof(perf_tcp));
	reset_at = plat_cycles();
	reset_done = 1;
	span = perf_timing ? PERF_SPAN_TIMED : PERF_SPAN_UNTIMED;
}

void perf_set_timing(bool on)
{
	if (on != perf_timing)
		span = PERF_SPAN_MIXED;
	perf_timing = on;
}

enum perf_span perf_span_kind(void)
{
	return span;
}

void perf_snapshot(struct perf_counter out[PERF_NR], uint64_t *wall_cycles)
{
	if (!reset_done)
		perf_reset();
	memcpy(out, perf_ctr, sizeof(perf_ctr));
	*wall_cycles = plat_cycles() - reset_at;
}

static double pct(uint64_t part, uint64_t whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

/* The untimed table: what every piece counts without the clock. */
static void report_untimed(const struct perf_counter c[PERF_NR],
			   void (*out)(void *ctx, const char *line), void *ctx)
{
	uint64_t reqs = c[PERF_NBD_PARSE].events;
	char line[200];

	out(ctx, "stages not timed (perf on, then perf reset): events and bytes only");
	snprintf(line, sizeof(line), "%-12s %12s %16s %12s", "stage", "events", "bytes",
		 "events/req");
	out(ctx, line);
	for (unsigned s = 0; s < PERF_NR; s++) {
		snprintf(line, sizeof(line), "%-12s %12llu %16llu %12.2f", names[s],
			 (unsigned long long)c[s].events, (unsigned long long)c[s].bytes,
			 reqs ? (double)c[s].events / (double)reqs : 0.0);
		out(ctx, line);
	}
}

/* The timed table, the rest of the loop, the busy share and the mean disk wait. */
static void report_timed(const struct perf_counter c[PERF_NR], uint64_t wall, uint64_t hz,
			 void (*out)(void *ctx, const char *line), void *ctx)
{
	const struct perf_counter *nbd = &c[PERF_NBD_PARSE];
	double gib = (double)nbd->bytes / (double)(1u << 30);
	uint64_t accounted = 0, idle, busy;
	char line[200];

	snprintf(line, sizeof(line), "%-12s %10s %10s %10s %6s %6s %10s %9s %10s", "stage",
		 "events", "Mcycles", "self Mcyc", "self%", "whole%", "cyc/event", "ms/GiB",
		 "cyc/req");
	out(ctx, line);
	for (unsigned s = 0; s < PERF_NR; s++) {
		const struct perf_counter *k = &c[s];
		bool wait = s == PERF_DISK_WAIT;
		uint64_t self = wait ? 0 : k->self;
		double ms_gib = gib > 0 ? (double)self * 1000.0 / (double)hz / gib : 0.0;

		/* Waits have no CPU time; idle passes and halts are not work for the requests:
		 * no per-GiB or per-request figures for them. */
		bool work = !wait && s != PERF_IDLE_POLL && s != PERF_HALT;
		char self_m[16] = "-", self_p[16] = "-", per_gib[16] = "-", per_req[24] = "-";

		accounted += self;
		if (!wait) {
			snprintf(self_m, sizeof(self_m), "%.1f", (double)self / 1e6);
			snprintf(self_p, sizeof(self_p), "%.2f", pct(self, wall));
		}
		if (work) {
			snprintf(per_gib, sizeof(per_gib), "%.1f", ms_gib);
			snprintf(per_req, sizeof(per_req), "%llu",
				 (unsigned long long)(nbd->events ? self / nbd->events : 0));
		}
		snprintf(line, sizeof(line), "%-12s %10llu %10.1f %10s %6s %6.2f %10llu %9s %10s",
			 names[s], (unsigned long long)k->events, (double)k->cycles / 1e6, self_m,
			 self_p, pct(k->cycles, wall),
			 (unsigned long long)(k->events ? k->cycles / k->events : 0), per_gib,
			 per_req);
		out(ctx, line);
	}
	if (accounted <= wall) {
		uint64_t rest = wall - accounted;

		snprintf(line, sizeof(line), "%-12s %10s %10.1f %10.1f %6.2f %6s %10s %9.1f %10llu",
			 "rest", "-", (double)rest / 1e6, (double)rest / 1e6, pct(rest, wall), "-",
			 "-", gib > 0 ? (double)rest * 1000.0 / (double)hz / gib : 0.0,
			 (unsigned long long)(nbd->events ? rest / nbd->events : 0));
		out(ctx, line);
	}
	idle = c[PERF_IDLE_POLL].self + c[PERF_HALT].self;
	busy = wall > idle ? wall - idle : 0;
	snprintf(line, sizeof(line),
		 "busy (all but idle-poll and halt): %.2f%% of the wall, %.1f ms per GiB, %llu "
		 "cycles per request",
		 pct(busy, wall), gib > 0 ? (double)busy * 1000.0 / (double)hz / gib : 0.0,
		 (unsigned long long)(nbd->events ? busy / nbd->events : 0));
	out(ctx, line);
	snprintf(line, sizeof(line),
		 "disk-wait: a wait, in no sum: mean %.1f us over %llu data-disk requests",
		 c[PERF_DISK_WAIT].events ? (double)c[PERF_DISK_WAIT].cycles * 1e6 / (double)hz /
						(double)c[PERF_DISK_WAIT].events
					  : 0.0,
		 (unsigned long long)c[PERF_DISK_WAIT].events);
	out(ctx, line);
}

void perf_report(const struct perf_counter c[PERF_NR], uint64_t wall, uint64_t hz,
		 enum perf_span kind, void (*out)(void *ctx, const char *line), void *ctx)
{
	const struct perf_counter *nbd = &c[PERF_NBD_PARSE];
	char line[200];

	if (!hz)
		hz = 1;
	snprintf(line, sizeof(line),
		 "%.3f s since reset (%.0f MHz counter); NBD: %llu requests, %.3f GiB of payload",
		 (double)wall / (double)hz, (double)hz / 1e6, (unsigned long long)nbd->events,
		 (double)nbd->bytes / (double)(1u << 30));
	out(ctx, line);
	if (kind == PERF_SPAN_UNTIMED) {
		report_untimed(c, out, ctx);
	} else {
		if (kind == PERF_SPAN_MIXED)
			out(ctx,
			    "timing was switched during this span: the cycles cover part of it "
			    "(perf reset starts a new span)");
		report_timed(c, wall, hz, out, ctx);
	}
	snprintf(line, sizeof(line),
		 "write payload: %llu bytes borrowed (no copy), %llu bytes copied; received "
		 "frames copied: %llu bytes",
		 (unsigned long long)perf_payload.write_borrowed,
		 (unsigned long long)perf_payload.write_copied,
		 (unsigned long long)perf_payload.rx_frames_copied);
	out(ctx, line);
	snprintf(line, sizeof(line),
		 "tcp output: %llu bytes in flight at most, peer window up to %llu; %llu batches "
		 "stopped by",
		 (unsigned long long)perf_tcp.max_flight, (unsigned long long)perf_tcp.max_peer_wnd,
		 (unsigned long long)perf_tcp.batches);
	out(ctx, line);
	snprintf(line, sizeof(line),
		 "  peer window %llu, cwnd %llu, nic %llu, send buffer %llu, nothing queued %llu; "
		 "all answered %llu; ran dry %llu times",
		 (unsigned long long)perf_tcp.stop_peer_wnd, (unsigned long long)perf_tcp.stop_cwnd,
		 (unsigned long long)perf_tcp.stop_netif, (unsigned long long)perf_tcp.stop_sndbuf,
		 (unsigned long long)perf_tcp.stop_starved, (unsigned long long)perf_tcp.drained,
		 (unsigned long long)perf_tcp.dry);
	out(ctx, line);
}
