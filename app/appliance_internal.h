/* SPDX-License-Identifier: MIT */
/*
 * The appliance's state and the helpers its parts share (app/appliance.c). Only app/ includes
 * this: the shell commands (config/cmd_*.c) see the appliance through app/appliance.h alone,
 * and scripts/lint keeps it so.
 */
#ifndef APP_APPLIANCE_INTERNAL_H
#define APP_APPLIANCE_INTERNAL_H

#include "app/appliance.h"
#include "core/lvm/lvm_disks.h"
#include "core/lvm/lvm_vg.h"

/* The names the appliance gives the pool's LVs in a VG it creates (lvm's conventions). */
#define APP_POOL_LV "pool"
/* On the pool LV from a first boot's format until its first volume exists. */
#define APP_TAG_FIRST_BOOT "thinbox_first_boot"
/* On the pool LV while `pool set-transaction-id` moves the pool from the id it names. */
#define APP_TAG_TXID_FROM "thinbox_transaction_from="

#define APP_VOL_BUCKETS 1024 /* a power of two */

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
	/* app_exp_bitmap_name()'s list (thin ids of the volume's line), made at idx 0. */
	uint32_t *line;
	size_t nline;
};

struct appliance {
	struct appliance_opts o;
	struct blkdev *disk[2];	  /* the metadata disk and the data disk (o's) */
	struct lvm_vg *vg;	  /* the VG as committed; NULL when the disks hold none */
	int disk_pv[2];		  /* each disk's index in vg->pvs */
	struct lvm_disk disks[2]; /* what lvm_disks_read() found on them */
	uint32_t seqno_used;	  /* the highest seqno written (or tried) */
	char pool_lv[LVM_NAME_MAX + 1];
	struct blkdev *meta; /* the pool's devices: its _tmeta and _tdata LVs */
	struct blkdev *data;
	uint64_t id_counter;	/* app_new_id() */
	struct thin_pool *pool; /* NULL when no pool is open */
	struct cfg cfg;		/* in force (empty unless READY) */
	enum appliance_state state;
	char problem[400];
	/* Open volumes by thin id (chains through next): 4,096 exports at boot must not each
	 * walk a list of those opened before them. */
	struct app_vol *vols[APP_VOL_BUCKETS];
	unsigned live_exports; /* exports in the server not yet released */
};

void app_log(struct appliance *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool app_volume_open(struct appliance *a, uint32_t id);
/*
 * A change of the configuration to @next (see app/appliance.h, "Consistency"). @pool_op
 * changes the pool: with a @msg (a thin device created or deleted) it runs between the
 * two VG commits, inside the transaction-id step; without one, before the VG commit.
 */
enum app_msg { APP_MSG_NONE, APP_MSG_CREATE, APP_MSG_DELETE };
struct app_change {
	enum app_msg msg;
	const char *name; /* APP_MSG_CREATE: the new LV */
	/* APP_MSG_CREATE of several LVs at once (a batch, @name unused): one message each,
	 * all in the one transaction-id step. */
	char *const *names;
	unsigned nnames;
	uint32_t id; /* APP_MSG_DELETE: the device id */
	int (*pool_op)(struct appliance *a, void *arg);
	void (*undo)(struct appliance *a, void *arg); /* after a failed pool_op */
	void *arg;
};
int app_transact(struct appliance *a, struct cfg *next, const struct app_change *ch);
/* Create volume @name (a snapshot of @origin when not NULL, sized like it) and, with
 * @export_name, export it read-write, in one transaction. */
int app_create_volume_tx(struct appliance *a, const char *name, uint64_t size, const char *origin,
			 const char *export_name);

/* app/app_diff.c: an export's nbd_export_config bitmap_name() and dirty() (@ctx: its app_exp). */
int app_exp_bitmap_name(void *ctx, unsigned idx, char *buf, size_t len);
int app_exp_dirty(void *ctx, const char *bitmap, uint64_t offset, uint64_t length,
		  struct nbd_extent *ext, unsigned max);
/* app/app_vg.c */
void app_new_id(struct appliance *a, char out[LVM_ID_LEN + 1]);
/* The VG on the two disks (newest copy); -ENODATA no label, -ENOMSG PVs without a VG. */
int app_vg_read(struct appliance *a, struct lvm_vg **out, char *why, size_t len);
int app_vg_pool(const struct lvm_vg *vg, struct lvm_lv **out, char *why, size_t len);
struct lvm_seg *app_pool_seg(struct appliance *a);
int app_vg_open_devices(struct appliance *a, char *why, size_t len);
void app_vg_close_devices(struct appliance *a);
void app_vg_settings(struct appliance *a, struct thin_pool_opts *po);
int app_vg_set_settings(struct appliance *a, struct lvm_vg *vg, const struct thin_pool_opts *po);
int app_vg_cfg(struct appliance *a, struct cfg *out, char *why, size_t len);
int app_vg_next(struct appliance *a, const struct cfg *next, uint64_t txid, struct lvm_vg **out);
/* Write @next (owned by the call) as seqno + 1 on both disks; it becomes a->vg. */
int app_vg_commit(struct appliance *a, struct lvm_vg *next);
int app_vg_format(struct appliance *a, const char *vg_name, const struct thin_pool_opts *po,
		  bool first_boot, char *why, size_t len);

#endif
