/* SPDX-License-Identifier: MIT */
/* `perf` and `perf reset` (perf_cmd.h). */
#include "boot/perf_cmd.h"

#include "boot/heap_count.h"
#include "boot/irq.h"
#include "config/shell.h"
#include "core/base/perf.h"
#include "core/base/plat.h"
#include "core/base/util.h"

#include <inttypes.h>
#include <string.h>

#define PERF_COST_PAIRS 100000u

/* The halt counters at the last reset, so `perf` shows the same span for both. */
static struct irq_stats irq_at_reset;
/* The heap's counters at the last reset. */
static struct heap_counts heap_at_reset;

static void line_out(void *ctx, const char *line)
{
	shell_printf(ctx, "%s\n", line);
}

static int cmd_perf(struct shell *sh, int argc, char **argv)
{
	struct perf_counter c[PERF_NR];
	struct irq_stats st;
	struct heap_counts hc;
	uint64_t wall, reqs, allocs;

	if (argc == 2 && strcmp(argv[1], "reset") == 0) {
		perf_reset();
		irq_get_stats(&irq_at_reset);
		heap_counts(&heap_at_reset);
		shell_printf(sh, "perf: counters reset\n");
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "detail") == 0 &&
	    (strcmp(argv[2], "on") == 0 || strcmp(argv[2], "off") == 0)) {
		perf_detail = strcmp(argv[2], "on") == 0;
		shell_printf(sh, "perf: the main loop's polls are %s\n",
			     perf_detail ? "measured" : "not measured (in rest)");
		return 0;
	}
	if (argc == 2 && (strcmp(argv[1], "on") == 0 || strcmp(argv[1], "off") == 0)) {
		perf_set_timing(strcmp(argv[1], "on") == 0);
		shell_printf(sh, "perf: stages %s\n",
			     perf_timing ? "timed (perf reset to start a span)"
					 : "not timed: events and bytes only");
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "cost") == 0) {
		/* What one measured piece costs: timed begin/end pairs on a scratch stage, which
		 * is reset after, so the counters' figures can be corrected by hand. */
		bool timing = perf_timing;
		uint64_t t0, t;
		struct perf_counter keep = perf_ctr[PERF_ZERO_SCAN];

		perf_timing = true;
		t0 = plat_cycles();

		for (unsigned i = 0; i < PERF_COST_PAIRS; i++) {
			perf_begin();
			perf_end(PERF_ZERO_SCAN, 0);
		}
		t = plat_cycles() - t0;
		perf_timing = timing;
		perf_ctr[PERF_ZERO_SCAN] = keep;
		shell_printf(sh, "perf: %" PRIu64 " cycles per measured piece (%u pairs)\n",
			     t / PERF_COST_PAIRS, PERF_COST_PAIRS);
		return 0;
	}
	if (argc != 1)
		return shell_usage(sh, argv[0]);
	perf_snapshot(c, &wall);
	perf_report(c, wall, plat_cycles_hz(), perf_span_kind(), line_out, sh);
	irq_get_stats(&st);
	shell_printf(sh,
		     "halted %" PRIu64 " sleeps (%" PRIu64 " ended by the timer, %" PRIu64
		     " of them with work waiting), %" PRIu64 " ms halted since reset%s; %" PRIu64
		     " quiet spells of 10 ms or more; %" PRIu64 " halts (%" PRIu64
		     " ms) while waiting on the disks\n",
		     st.sleeps - irq_at_reset.sleeps, st.timer_wakes - irq_at_reset.timer_wakes,
		     st.late_wakes - irq_at_reset.late_wakes,
		     (st.slept_ns - irq_at_reset.slept_ns) / NSEC_PER_MSEC,
		     irq_ready() ? "" : " (no wake-ups: the loop only polls)",
		     st.long_spells - irq_at_reset.long_spells,
		     st.wait_sleeps - irq_at_reset.wait_sleeps,
		     (st.wait_ns - irq_at_reset.wait_ns) / NSEC_PER_MSEC);
	/* Allocations per NBD request (request headers), in hundredths: no float formatting. */
	heap_counts(&hc);
	reqs = c[PERF_NBD_PARSE].events;
	allocs = hc.allocs - heap_at_reset.allocs;
	shell_printf(sh,
		     "heap %" PRIu64 " allocations (%" PRIu64 " KiB asked), %" PRIu64
		     " frees since reset; %" PRIu64 ".%02" PRIu64 " allocations per NBD request\n",
		     allocs, (hc.bytes - heap_at_reset.bytes) / 1024,
		     hc.frees - heap_at_reset.frees, reqs ? allocs / reqs : 0,
		     reqs ? allocs * 100 / reqs % 100 : 0);
	return 0;
}

static const struct shell_cmd perf_cmds[] = {
	{ "perf", "[on|off|reset|cost|detail on|off]",
	  "cycles per data-path stage since the last reset (on/off: time the stages, off at "
	  "boot; cost: of one timed piece; detail: measure the main loop's polls too)",
	  cmd_perf },
};

static struct shell_cmd_table perf_table = { perf_cmds, ARRAY_SIZE(perf_cmds), NULL };

void perf_cmd_init(struct shell *sh)
{
	shell_add_commands(sh, &perf_table);
}
