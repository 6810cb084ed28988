/* SPDX-License-Identifier: MIT */
/* The `export` and `nbd` shell commands: which volumes are served, and to whom. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "config/cmd_internal.h"
#include "core/base/util.h"

static const char export_usage[] = "usage: export add VOLUME [--read-only] [--name EXPORT]\n"
				   "       export remove EXPORT\n"
				   "       export list\n";

static int bad_usage(struct shell *sh)
{
	shell_puts(sh, export_usage);
	return -EINVAL;
}

static int export_add(struct shell *sh, int argc, char **argv)
{
	const char *volume = NULL, *name = NULL;
	bool ro = false;
	struct appliance *a;
	int rc;

	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--read-only") || !strcmp(argv[i], "--ro"))
			ro = true;
		else if (!strcmp(argv[i], "--name") && i + 1 < argc)
			name = argv[++i];
		else if (argv[i][0] != '-' && !volume)
			volume = argv[i];
		else
			return bad_usage(sh);
	}
	if (!volume)
		return bad_usage(sh);
	if (!name)
		name = volume;
	a = app_need_pool(sh, true);
	if (!a)
		return -ENODEV;
	if (!cfg_name_valid(name)) {
		shell_printf(
		    sh,
		    "error: bad export name '%s': 1 to %d characters of A-Z a-z 0-9 _ . : + "
		    "-, not starting with . or -\n",
		    name, CFG_NAME_MAX);
		return -EINVAL;
	}
	rc = appliance_add_export(a, volume, name, ro);
	switch (rc) {
	case 0:
		shell_printf(sh, "exported %s as '%s'%s\n", volume, name, ro ? " (read-only)" : "");
		return 0;
	case -ENOENT:
		shell_printf(sh, "error: no volume named '%s' (thin list shows them)\n", volume);
		return rc;
	case -EEXIST:
		shell_printf(sh, "error: an export named '%s' exists already\n", name);
		return rc;
	case -ENOSPC:
		shell_printf(sh,
			     "error: too many exports (at most %d) or the configuration store "
			     "is full\n",
			     NBD_DEFAULT_MAX_EXPORTS);
		return rc;
	default:
		return app_error(sh, rc, "export add %s", volume);
	}
}

static int export_list(struct shell *sh, struct appliance *a)
{
	const struct cfg *c = appliance_config(a);
	struct nbd_server *srv = appliance_server(a);
	size_t w = 6, wv = 6;

	for (size_t i = 0; i < c->nexps; i++) {
		w = MAX(w, strlen(c->exps[i].name));
		wv = MAX(wv, strlen(c->exps[i].volume));
	}
	shell_printf(sh, "%-*s %-*s %-4s %11s %s\n", (int)w, "EXPORT", (int)wv, "VOLUME", "MODE",
		     "SIZE", "CLIENTS");
	for (size_t i = 0; i < c->nexps; i++) {
		const struct cfg_export *e = &c->exps[i];
		const struct cfg_volume *v = cfg_find_volume(c, e->volume);
		struct nbd_export_info info;
		char size[32], clients[16] = "-";

		format_size(v ? v->size : 0, size, sizeof(size));
		for (unsigned k = 0; srv && !nbd_server_export_info(srv, k, &info); k++) {
			if (!strcmp(info.name, e->name)) {
				snprintf(clients, sizeof(clients), "%u", info.clients);
				break;
			}
		}
		shell_printf(sh, "%-*s %-*s %-4s %11s %s%s\n", (int)w, e->name, (int)wv, e->volume,
			     e->read_only ? "ro" : "rw", size, clients,
			     i == 0 ? "  (default export)" : "");
	}
	shell_printf(sh, "%zu export(s)\n", c->nexps);
	return 0;
}

static int cmd_export(struct shell *sh, int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "";
	struct appliance *a;
	int rc;

	if (!strcmp(sub, "add"))
		return export_add(sh, argc, argv);
	if (!strcmp(sub, "remove")) {
		if (argc != 3)
			return bad_usage(sh);
		a = app_need_pool(sh, true);
		if (!a)
			return -ENODEV;
		rc = appliance_remove_export(a, argv[2]);
		if (rc == -ENOENT) {
			shell_printf(sh, "error: no export named '%s' (export list shows them)\n",
				     argv[2]);
			return rc;
		}
		if (rc)
			return app_error(sh, rc, "export remove %s", argv[2]);
		shell_printf(sh, "export '%s' removed; its connections close\n", argv[2]);
		return 0;
	}
	if (!strcmp(sub, "list")) {
		if (argc != 2)
			return bad_usage(sh);
		a = app_need_pool(sh, true);
		return a ? export_list(sh, a) : -ENODEV;
	}
	if (sub[0])
		shell_printf(sh, "error: unknown export command '%s'\n", sub);
	return bad_usage(sh);
}

static int cmd_nbd(struct shell *sh, int argc, char **argv)
{
	struct appliance *a = appliance_of(sh);
	struct nbd_server *srv = a ? appliance_server(a) : NULL;
	struct nbd_conn_info ci;
	unsigned i;

	if (argc != 2 || strcmp(argv[1], "clients")) {
		shell_puts(sh, "usage: nbd clients\n");
		return -EINVAL;
	}
	if (!srv) {
		shell_puts(sh, "error: no NBD server is running\n");
		return -ENODEV;
	}
	shell_printf(sh, "%-3s %-20s %-10s %8s %14s %14s\n", "#", "EXPORT", "REPLIES", "INFLIGHT",
		     "READ", "WRITTEN");
	for (i = 0; !nbd_server_conn_info(srv, i, &ci); i++)
		shell_printf(sh, "%-3u %-20s %-10s %8u %14" PRIu64 " %14" PRIu64 "\n", i,
			     ci.export_name ? ci.export_name : "(negotiating)",
			     ci.structured ? "structured" : "simple", ci.requests, ci.bytes_read,
			     ci.bytes_written);
	shell_printf(sh, "%u connection(s)\n", i);
	return 0;
}

const struct shell_cmd app_export_cmds[] = {
	{ "export", "add|remove|list ...",
	  "NBD exports of volumes: add VOLUME [--read-only] [--name EXPORT], remove, list",
	  cmd_export },
	{ "nbd", "clients", "list the NBD connections", cmd_nbd },
};
const size_t app_export_ncmds = ARRAY_SIZE(app_export_cmds);
