/* SPDX-License-Identifier: MIT */
/*
 * The appliance's state and the helpers its parts share (app/appliance.c). Only app/ includes
 * this: the shell commands (config/cmd_*.c) see the appliance through app/appliance.h alone,
 * and scripts/lint keeps it so.
 */
#ifndef APP_APPLIANCE_INTERNAL_H
#define APP_APPLIANCE_INTERNAL_H

#include "app/appliance.h"

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
};

void app_log(struct appliance *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool app_volume_open(struct appliance *a, uint32_t id);
int app_transact(struct appliance *a, struct cfg *next, int (*before)(struct appliance *, void *),
		 void (*undo)(struct appliance *, void *), int (*after)(struct appliance *, void *),
		 void *arg);
/* Create volume @name (a snapshot of @origin when not NULL, sized like it) and, with
 * @export_name, export it read-write, in one transaction. */
int app_create_volume_tx(struct appliance *a, const char *name, uint64_t size, const char *origin,
			 const char *export_name);

#endif
