/* SPDX-License-Identifier: MIT */
/*
 * The `perf` shell command (firmware): where the cycles went since `perf reset` (the stage
 * counters of core/base/perf.h, docs/performance.md) and the idle halts (boot/irq.h).
 */
#ifndef BOOT_PERF_CMD_H
#define BOOT_PERF_CMD_H

struct shell;

/* Register `perf` with @sh. */
void perf_cmd_init(struct shell *sh);

#endif
