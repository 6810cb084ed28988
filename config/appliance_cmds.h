/* SPDX-License-Identifier: MIT */
/*
 * The appliance's shell commands: pool, thin, export and nbd (config/cmd_pool.c, cmd_thin.c,
 * cmd_export.c). They drive the appliance through app/appliance.h only.
 *
 * The composition root owns the command tables (struct appliance_cmds), as it owns the
 * shell: they are linked into the shell's list, so they live as long as the shell does. A
 * command finds its appliance from the table that holds it, so several appliances, each with
 * its own shell, can live side by side (the tests).
 */
#ifndef CONFIG_APPLIANCE_CMDS_H
#define CONFIG_APPLIANCE_CMDS_H

#include "config/shell.h"

struct appliance;

struct appliance_cmds {
	struct appliance *a;
	struct shell_cmd_table pool_tab, thin_tab, export_tab;
};

/* Add the pool, thin, export and nbd commands for @a to @sh (once per shell). */
void appliance_cmds_register(struct appliance_cmds *c, struct appliance *a, struct shell *sh);

#endif
