/* SPDX-License-Identifier: MIT */
/* The `export` and `nbd` shell commands: which volumes are served, and to whom. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/cmd_internal.h"
#include "core/base/util.h"

static const char export_usage[] =
    "usage: export add VOLUME [--read-only] [--tls-only] [--name EXPORT] [--allow PREFIX]...\n"
    "       export add PREFIX --count N [--first K] [--read-only]\n"
    "       export allow EXPORT PREFIX...\n"
    "       export disallow EXPORT PREFIX...|--all\n"
    "       export remove EXPORT\n"
    "       export list\n"
    "PREFIX: an IPv4 or IPv6 address, or a network as ADDR/LEN (10.0.2.0/24, fd00::/8)\n";

static int bad_usage(struct shell *sh)
{
	shell_puts(sh, export_usage);
	return -EINVAL;
}

/* Parse an allow-list prefix, saying what is wrong with a bad one. */
static int parse_prefix(struct shell *sh, const char *arg, struct net_prefix *out)
{
	const char *why = NULL, *slash = strchr(arg, '/');
	char addr[NET_PREFIX_TEXT_MAX];
	struct net_prefix p;
	char *end;

	if (!net_prefix_parse(arg, out, &why))
		return 0;
	shell_printf(sh, "error: bad address prefix '%s': %s", arg, why);
	/* Host bits set: name the network the administrator probably meant. */
	if (slash && (size_t)(slash - arg) < sizeof(addr)) {
		memcpy(addr, arg, (size_t)(slash - arg));
		addr[slash - arg] = '\0';
		unsigned long len = strtoul(slash + 1, &end, 10);

		if (!net_addr_parse(addr, &p.addr) && !*end && slash[1] >= '0' && slash[1] <= '9' &&
		    len <= (p.addr.family == NET_AF_INET ? 32u : 128u)) {
			char t[NET_PREFIX_TEXT_MAX];

			p.len = (uint8_t)len;
			net_prefix_mask(&p);
			net_prefix_format(&p, t, sizeof(t));
			shell_printf(sh, " (the network is %s)", t);
		}
	}
	shell_puts(sh, "\n");
	return -EINVAL;
}

/* Print an export's allow list: "everyone", or its prefixes separated by commas. */
static void print_allow(struct shell *sh, const struct net_prefix *p, unsigned n)
{
	if (!n) {
		shell_puts(sh, "everyone");
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		char t[NET_PREFIX_TEXT_MAX];

		net_prefix_format(&p[i], t, sizeof(t));
		shell_printf(sh, "%s%s", i ? "," : "", t);
	}
}

/* export add PREFIX --count N [--first K] [--read-only]: one VG commit for all. */
static int export_add_many(struct shell *sh, const char *prefix, unsigned count, uint64_t first,
			   bool ro)
{
	struct appliance *a = app_need_pool(sh, true);
	unsigned done = 0;
	int rc;

	if (!a)
		return -ENODEV;
	rc = appliance_add_exports(a, prefix, first, count, ro, &done);
	switch (rc) {
	case 0:
		shell_printf(sh,
			     "exported %u volume(s) %s%" PRIu64 " .. %s%" PRIu64
			     " under their own names%s to everyone\n",
			     done, prefix, first, prefix, first + count - 1,
			     ro ? " (read-only)" : "");
		return 0;
	case -ENOENT:
		shell_printf(sh,
			     "error: not every volume %s%" PRIu64 " .. %s%" PRIu64
			     " exists (thin list shows them); nothing exported\n",
			     prefix, first, prefix, first + count - 1);
		return rc;
	case -EEXIST:
		shell_printf(sh, "error: an export named %s<N> exists already; nothing exported\n",
			     prefix);
		return rc;
	case -ENOSPC:
		shell_printf(sh,
			     "error: too many exports (at most %d; %zu exist); nothing exported\n",
			     NBD_DEFAULT_MAX_EXPORTS, appliance_config(a)->nexps);
		return rc;
	default:
		return app_error(sh, rc, "export add %s --count %u", prefix, count);
	}
}

static int export_add(struct shell *sh, int argc, char **argv)
{
	const char *volume = NULL, *name = NULL;
	struct net_prefix allow[CFG_MAX_ALLOW];
	unsigned nallow = 0;
	uint64_t count = 0, first = 0;
	bool ro = false, tls_only = false;
	struct appliance *a;
	int rc;

	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--read-only") || !strcmp(argv[i], "--ro"))
			ro = true;
		else if (!strcmp(argv[i], "--count") && i + 1 < argc) {
			if (app_parse_u64(argv[++i], &count) || !count ||
			    count > NBD_DEFAULT_MAX_EXPORTS)
				return bad_usage(sh);
		} else if (!strcmp(argv[i], "--first") && i + 1 < argc) {
			if (app_parse_u64(argv[++i], &first) || first > UINT32_MAX)
				return bad_usage(sh);
		} else if (!strcmp(argv[i], "--tls-only"))
			tls_only = true;
		else if (!strcmp(argv[i], "--name") && i + 1 < argc)
			name = argv[++i];
		else if (!strcmp(argv[i], "--allow") && i + 1 < argc) {
			if (nallow == CFG_MAX_ALLOW) {
				shell_printf(sh, "error: at most %d --allow prefixes per export\n",
					     CFG_MAX_ALLOW);
				return -EINVAL;
			}
			rc = parse_prefix(sh, argv[++i], &allow[nallow]);
			if (rc)
				return rc;
			nallow++;
		} else if (argv[i][0] != '-' && !volume)
			volume = argv[i];
		else
			return bad_usage(sh);
	}
	if (!volume || (count && (name || nallow || tls_only)))
		return bad_usage(sh);
	if (count)
		return export_add_many(sh, volume, (unsigned)count, first, ro);
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
	rc = appliance_add_export_tls(a, volume, name, ro, tls_only, allow, nallow);
	switch (rc) {
	case 0:
		shell_printf(sh, "exported %s as '%s'%s%s to ", volume, name,
			     ro ? " (read-only)" : "", tls_only ? " (TLS only)" : "");
		print_allow(sh, allow, nallow);
		shell_puts(sh, "\n");
		return 0;
	case -ENOENT:
		shell_printf(sh, "error: no volume named '%s' (thin list shows them)\n", volume);
		return rc;
	case -EEXIST:
		shell_printf(sh, "error: an export named '%s' exists already\n", name);
		return rc;
	case -ENOSPC:
		shell_printf(sh, "error: too many exports (at most %d)\n", NBD_DEFAULT_MAX_EXPORTS);
		return rc;
	default:
		return app_error(sh, rc, "export add %s", volume);
	}
}

/* export allow|disallow EXPORT PREFIX... (disallow EXPORT --all: everyone again) */
static int export_allow(struct shell *sh, int argc, char **argv, bool allow)
{
	struct net_prefix p[CFG_MAX_ALLOW];
	const struct cfg_export *ce;
	bool all = !allow && argc == 4 && !strcmp(argv[3], "--all");
	unsigned n = 0;
	struct appliance *a;
	int rc;

	if (argc < 4)
		return bad_usage(sh);
	for (int i = 3; i < argc && !all; i++) {
		if (n == CFG_MAX_ALLOW) {
			shell_printf(sh, "error: an export has at most %d prefixes\n",
				     CFG_MAX_ALLOW);
			return -EINVAL;
		}
		rc = parse_prefix(sh, argv[i], &p[n++]);
		if (rc)
			return rc;
	}
	a = app_need_pool(sh, true);
	if (!a)
		return -ENODEV;
	rc = appliance_export_allow(a, argv[2], allow, p, n);
	switch (rc) {
	case 0:
		break;
	case -ENOENT:
		if (!cfg_find_export(appliance_config(a), argv[2]))
			shell_printf(sh, "error: no export named '%s' (export list shows them)\n",
				     argv[2]);
		else
			shell_printf(sh,
				     "error: a prefix is not in the allow list of '%s'; "
				     "nothing changed\n",
				     argv[2]);
		return rc;
	case -ENOSPC:
		shell_printf(sh, "error: an export has at most %d prefixes; nothing changed\n",
			     CFG_MAX_ALLOW);
		return rc;
	default:
		return app_error(sh, rc, "export %s %s", argv[1], argv[2]);
	}
	ce = cfg_find_export(appliance_config(a), argv[2]);
	shell_printf(sh, "export '%s' may be used by ", argv[2]);
	if (ce)
		print_allow(sh, ce->allow, ce->nallow);
	shell_puts(sh, "\n");
	return 0;
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
	shell_printf(sh, "%-*s %-*s %-4s %11s %7s %7s %s\n", (int)w, "EXPORT", (int)wv, "VOLUME",
		     "MODE", "SIZE", "CLIENTS", "REFUSED", "ALLOW");
	for (size_t i = 0; i < c->nexps; i++) {
		const struct cfg_export *e = &c->exps[i];
		const struct cfg_volume *v = cfg_find_volume(c, e->volume);
		struct nbd_export_info info;
		char size[32], clients[16] = "-", refused[24] = "-";

		format_size(v ? v->size : 0, size, sizeof(size));
		for (unsigned k = 0; srv && !nbd_server_export_info(srv, k, &info); k++) {
			if (!strcmp(info.name, e->name)) {
				snprintf(clients, sizeof(clients), "%u", info.clients);
				snprintf(refused, sizeof(refused), "%" PRIu64, info.refused);
				break;
			}
		}
		shell_printf(sh, "%-*s %-*s %-4s %11s %7s %7s ", (int)w, e->name, (int)wv,
			     e->volume, e->read_only ? "ro" : "rw", size, clients, refused);
		print_allow(sh, e->allow, e->nallow);
		shell_printf(sh, "%s%s\n", e->tls_only ? "  (TLS only)" : "",
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
	if (!strcmp(sub, "allow") || !strcmp(sub, "disallow"))
		return export_allow(sh, argc, argv, !strcmp(sub, "allow"));
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

static const char nbd_usage[] = "usage: nbd clients\n"
				"       nbd set max-per-client N\n";

/* "ADDR:PORT" or "[ADDR]:PORT" for a peer ("unknown" when the transport could not tell). */
static void format_peer(const struct nbd_peer *p, char *buf, size_t size)
{
	char a[NET_ADDR_TEXT_MAX];

	if (p->addr.family == NET_AF_NONE) {
		snprintf(buf, size, "unknown");
		return;
	}
	net_addr_format(&p->addr, a, sizeof(a));
	snprintf(buf, size, p->addr.family == NET_AF_INET6 ? "[%s]:%u" : "%s:%u", a, p->port);
}

static int nbd_clients(struct shell *sh, struct nbd_server *srv)
{
	struct nbd_server_stats st;
	struct nbd_conn_info ci;
	unsigned i;

	shell_printf(sh, "%-3s %-24s %-20s %-10s %8s %14s %14s\n", "#", "CLIENT", "EXPORT",
		     "REPLIES", "INFLIGHT", "READ", "WRITTEN");
	for (i = 0; !nbd_server_conn_info(srv, i, &ci); i++) {
		char peer[NET_ADDR_TEXT_MAX + 8];

		format_peer(&ci.peer, peer, sizeof(peer));
		shell_printf(sh, "%-3u %-24s %-20s %-10s %8u %14" PRIu64 " %14" PRIu64 "\n", i,
			     peer, ci.export_name ? ci.export_name : "(negotiating)",
			     ci.structured ? "structured" : "simple", ci.requests, ci.bytes_read,
			     ci.bytes_written);
	}
	nbd_server_stats(srv, &st);
	shell_printf(sh, "%u connection(s); at most %u per client address\n", i, st.max_per_client);
	shell_printf(sh,
		     "refused: %" PRIu64 " by allow lists, %" PRIu64
		     " over the per-client cap, %" PRIu64 " with the server full\n",
		     st.refused_policy, st.refused_cap, st.refused_full);
	return 0;
}

static int cmd_nbd(struct shell *sh, int argc, char **argv)
{
	struct appliance *a = appliance_of(sh);
	struct nbd_server *srv = a ? appliance_server(a) : NULL;
	const char *sub = argc > 1 ? argv[1] : "";
	bool clients = argc == 2 && !strcmp(sub, "clients");
	bool set = argc == 4 && !strcmp(sub, "set") && !strcmp(argv[2], "max-per-client");
	unsigned long n;
	char *end;

	if (!clients && !set) {
		shell_puts(sh, nbd_usage);
		return -EINVAL;
	}
	if (!srv) {
		shell_puts(sh, "error: no NBD server is running\n");
		return -ENODEV;
	}
	if (clients)
		return nbd_clients(sh, srv);
	n = strtoul(argv[3], &end, 10);
	if (argv[3][0] < '0' || argv[3][0] > '9' || *end || n < 1 || n > NBD_DEFAULT_MAX_CONNS) {
		shell_printf(sh, "error: max-per-client wants a number from 1 to %d\n",
			     NBD_DEFAULT_MAX_CONNS);
		return -EINVAL;
	}
	nbd_server_set_max_per_client(srv, (unsigned)n);
	shell_printf(sh,
		     "at most %lu connection(s) per client address from now on (until the next "
		     "start; open ones stay)\n",
		     n);
	return 0;
}

const struct shell_cmd app_export_cmds[] = {
	{ "export", "add|allow|disallow|remove|list ...",
	  "NBD exports of volumes: add VOLUME [--read-only] [--tls-only] [--name EXPORT] "
	  "[--allow PREFIX]..., "
	  "allow/disallow EXPORT PREFIX..., remove, list",
	  cmd_export },
	{ "nbd", "clients|set max-per-client N",
	  "list the NBD connections and refusals; cap connections per client address", cmd_nbd },
};
const size_t app_export_ncmds = ARRAY_SIZE(app_export_cmds);
