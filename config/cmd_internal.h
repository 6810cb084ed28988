/* SPDX-License-Identifier: MIT */
/*
 * What the appliance's shell commands (config/cmd_*.c) share: their tables, finding the
 * appliance, and printing errors and sizes. Not a public interface: the composition roots use
 * config/appliance_cmds.h.
 */
#ifndef CONFIG_CMD_INTERNAL_H
#define CONFIG_CMD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app/appliance.h"
#include "config/appliance_cmds.h"
#include "config/shell.h"

/* The command tables (config/cmd_*.c). */
extern const struct shell_cmd app_pool_cmds[];
extern const size_t app_pool_ncmds;
extern const struct shell_cmd app_thin_cmds[];
extern const size_t app_thin_ncmds;
extern const struct shell_cmd app_export_cmds[];
extern const size_t app_export_ncmds;

/* The appliance whose commands @sh runs (registered with appliance_cmds_register()). */
struct appliance *appliance_of(struct shell *sh);
/*
 * The appliance behind @sh when it has a pool (and, with @need_config, a configuration in
 * step with it); otherwise prints why not and returns NULL.
 */
struct appliance *app_need_pool(struct shell *sh, bool need_config);
/* Print "error: WHAT: <reason>" and return @rc. */
int app_error(struct shell *sh, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Parse a volume size argument, printing why it is bad. */
int app_parse_size(struct shell *sh, const char *arg, uint64_t *out);
/* A decimal number, nothing else (no sign, space or empty string): 0, or -EINVAL (also when
 * it does not fit 64 bits). Prints nothing. */
int app_parse_u64(const char *s, uint64_t *out);

#endif
