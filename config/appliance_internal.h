/* SPDX-License-Identifier: MIT */
/*
 * What config/appliance.c shares with its shell commands (config/cmd_*.c), nothing else:
 * the appliance's state and a few helpers. Not a public interface.
 */
#ifndef CONFIG_APPLIANCE_INTERNAL_H
#define CONFIG_APPLIANCE_INTERNAL_H

#include "config/appliance.h"
#include "config/shell.h"

/* An open thin volume, shared by the exports that serve it. */
struct app_vol {
	struct app_vol *next;
	struct appliance *a;
	uint32_t id;
	struct thin_volume *vol;
	unsigned refs;
};

/* One NBD export of ours, alive until the server's release() callback. */
struct app_exp {
	struct appliance *a;
	struct app_vol *vol;
};

struct appliance {
	struct appliance_opts o;
	struct blkdev *meta; /* the pool's slice of the metadata disk */
	uint64_t meta_bytes; /* its size; the settings block starts there */
	uint64_t store_off;  /* where the configuration store starts */
	struct cfg_store store;
	struct thin_pool *pool; /* NULL when no pool is open */
	struct cfg cfg;		/* in force (empty unless READY) */
	enum appliance_state state;
	char problem[320];
	struct app_vol *vols;
	unsigned live_exports; /* exports in the server not yet released */
	/* The command groups; a command finds its appliance from its table (appliance_of). */
	struct shell_cmd_table pool_tab, thin_tab, export_tab;
};

void app_log(struct appliance *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int app_transaction_id(struct appliance *a, uint64_t *out);
/* 0 when the pool is open and its mode allows a change (@change) or reading metadata; else
 * -ENODEV, -EROFS or -EIO. */
int app_pool_usable(struct appliance *a, bool change);
bool app_volume_open(struct appliance *a, uint32_t id);
int app_transact(struct appliance *a, struct cfg *next, int (*before)(struct appliance *, void *),
		 void (*undo)(struct appliance *, void *), int (*after)(struct appliance *, void *),
		 void *arg);
/* Create volume @name (a snapshot of @origin when not NULL, sized like it) and, with
 * @export_name, export it read-write, in one transaction. */
int app_create_volume_tx(struct appliance *a, const char *name, uint64_t size, const char *origin,
			 const char *export_name);

/* The command tables (config/cmd_*.c). */
extern const struct shell_cmd app_pool_cmds[];
extern const size_t app_pool_ncmds;
extern const struct shell_cmd app_thin_cmds[];
extern const size_t app_thin_ncmds;
extern const struct shell_cmd app_export_cmds[];
extern const size_t app_export_ncmds;

/* The appliance whose commands @sh runs (registered with appliance_register_commands()). */
struct appliance *appliance_of(struct shell *sh);
/* Print "error: WHAT: <reason>" and return @rc. */
/*
 * The appliance behind @sh when it has a pool (and, with @need_config, a configuration in
 * step with it); otherwise prints why not and returns NULL.
 */
struct appliance *app_need_pool(struct shell *sh, bool need_config);
int app_error(struct shell *sh, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Parse a volume size argument, printing why it is bad. */
int app_parse_size(struct shell *sh, const char *arg, uint64_t *out);

#endif
