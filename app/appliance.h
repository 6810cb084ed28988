/* SPDX-License-Identifier: MIT */
/*
 * The appliance: one thin pool on a metadata disk and a data disk, the named volumes and
 * exports of its configuration, and the NBD exports that serve them. Both composition roots
 * (host/main.c and boot/efi_main.c) create one, poll it from their main loop and register
 * its shell commands (config/appliance_cmds.h), which use this header and nothing else of
 * app/.
 *
 * Disks (docs/appliance.md): the two disks are the physical volumes of an LVM2 volume group
 * (default name "thinbox"), as lvm2 would write it, so that Linux activates it by name:
 *   metadata disk   PV: LVM label, metadata area, then extents: pool_tmeta (the pool's
 *                   dm-thin metadata) and lvol0_pmspare (lvm's spare of the same size)
 *   data disk       PV: LVM label, metadata area, then extents: pool_tdata (pool data)
 * The VG metadata is the configuration, the one source of truth: each volume is a thin LV
 * of pool "pool" (device_id = thin id, snapshots with origin), exports are LV tags
 * (thinbox_export=NAME, thinbox_export_ro=NAME), a size that is not a whole number of
 * extents is kept in a tag (thinbox_size=BYTES; lvm sees it rounded up), pool options are
 * lvm's keys (zero_new_blocks, discards, ERROR_WHEN_FULL) and a tag for the no-space
 * timeout. The pool's LVs are followed through their segments wherever lvm put them.
 *
 * Consistency, lvm's own protocol around the pool's transaction id T: a change that creates
 * or deletes a thin device commits the VG with the change, T + 1 and a pending message
 * (create = NAME / delete = ID) on both PVs, then changes the pool and moves it to T + 1 in
 * one commit, then commits the VG again without the message. Other changes are one VG
 * commit (a shrink unmaps and commits the pool first). Every VG commit is lvm's: precommit
 * on both PVs, then commit on both, seqno + 1.
 *
 * Boot (appliance_create):
 *   - both disks without an LVM label and the metadata disk blank: first boot (when enabled)
 *     creates the VG and the pool, then volume "vol0" as big as the data disk (thin: it may
 *     be overcommitted later), exported as "vol0", the default NBD export;
 *   - a VG: the newest copy on the two PVs is read, the pool opened on its LVs' segments,
 *     then pool and VG brought into step as lvm's activation does: equal transaction ids
 *     (pending messages are done: cleared), the VG one ahead (its messages are sent to the
 *     pool and the id moved: a change cut short is finished), anything else is STALE;
 *   - STALE: say so; the pool commands work, volume and export changes are refused and
 *     nothing is exported until `pool set-transaction-id` makes the ids agree;
 *   - the pool or the VG does not open: say why and that nothing was changed (never advice
 *     that would destroy it); only the status commands and an explicit `pool format`
 *     naming the VG work.
 * Disks with anything on them are never formatted without an explicit force, and disks
 * holding a VG only when the format names it.
 *
 * Messages (what happened at boot, errors found while polling) go to the log callback, one
 * line each, without the newline.
 *
 * Every function returning int gives 0 or a negative errno; the messages the shell prints
 * for them come from appliance_strerror().
 *
 * Blocking: nothing here runs on its own; the main loop calls appliance_poll(). But the
 * administration calls (and appliance_create/destroy) do the pool's I/O synchronously, each
 * wait bounded by the pool (core/thin/thin_pool.h), and three of them wait for the NBD
 * clients by polling the server and the pool from inside the call, in nested loops, for at
 * most the limit named below:
 *   - appliance_destroy() and appliance_format(): until every export's connections are gone,
 *     up to APPLIANCE_EXPORTS_RELEASE_MS (then the pool stays open: a warning, -EBUSY from
 *     format);
 *   - appliance_delete_volume(): until connections to a volume whose export was removed
 *     have finished their requests, up to APPLIANCE_VOLUME_RELEASE_MS (then -EBUSY);
 *   - appliance_resize_volume(): until the volume has no request in flight, at most
 *     APPLIANCE_RESIZE_POLLS rounds of polling (then -EBUSY).
 * While they wait, NBD requests and pool I/O make progress and their callbacks (the log, an
 * export's release) run; the console does not. So call these from the main loop only, never
 * from an NBD, pool or block-device callback.
 */
#ifndef APP_APPLIANCE_H
#define APP_APPLIANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/blkdev.h"
#include "core/thin/thin_pool.h"
#include "net/nbd/nbd_server.h"

struct appliance;

/* The smallest metadata disk: the LVM header (1 MiB) and one 4 MiB extent for pool_tmeta. */
#define APPLIANCE_MIN_META_BYTES (5u * 1024u * 1024u)
/* The volume group a first boot creates (and pool format without --vg). */
#define APPLIANCE_DEFAULT_VG "thinbox"
/* Volume sizes: a multiple of 512 bytes, at most 1 PiB. */
#define APPLIANCE_MAX_VOLUME_BYTES (1ull << 50)
/* The volume and export made at first boot. */
#define APPLIANCE_DEFAULT_VOLUME "vol0"
/* The limits of the waits for NBD clients described under "Blocking" above. */
#define APPLIANCE_EXPORTS_RELEASE_MS 10000u
#define APPLIANCE_VOLUME_RELEASE_MS  200u
#define APPLIANCE_RESIZE_POLLS	     1000u

struct appliance_opts {
	struct blkdev *meta_disk;	 /* the whole metadata disk; not owned */
	struct blkdev *data_disk;	 /* not owned */
	struct nbd_server *srv;		 /* where exports are served (optional); not owned */
	bool first_boot;		 /* format blank disks and create the default volume */
	struct thin_pool_opts pool_opts; /* used to open (and to format at first boot) */
	void (*log)(void *ctx, const char *line);
	void *log_ctx;
	/* Optional: update @data->nr_blocks after the disk grew, for `pool resize-data` (the
	 * platform knows how to ask the disk; without it the size given at start is used). */
	int (*data_size_changed)(void *ctx, struct blkdev *data);
	void *data_size_ctx;
};

/* Fill @o with the defaults: first boot on, thin_pool_default_opts(), no server, no log. */
void appliance_default_opts(struct appliance_opts *o);

/*
 * Bring the appliance up as described above. It is created even when the pool cannot be
 * opened or the configuration does not match (the shell is how an administrator repairs
 * that); only -EINVAL (no disks, a metadata disk smaller than APPLIANCE_MIN_META_BYTES or
 * with a block size that does not divide 4096) and -ENOMEM fail.
 */
int appliance_create(const struct appliance_opts *o, struct appliance **out);
/*
 * Remove the exports (connections to them are closed), close the volumes, commit and close
 * the pool. The disks and the server stay with the caller.
 */
void appliance_destroy(struct appliance *a);

/* Make progress (the pool's I/O and periodic commit); call every main-loop iteration. */
int appliance_poll(struct appliance *a);
/* True while the pool has I/O in flight: poll again without sleeping. */
bool appliance_busy(const struct appliance *a);
/* The pool has work for the CPU, not only I/O to wait for (thin_pool_needs_cpu()). */
bool appliance_needs_cpu(const struct appliance *a);

/* ---- State, for the commands and the tests ------------------------------------------------ */

enum appliance_state {
	APPLIANCE_READY,     /* pool open, configuration loaded, exports started */
	APPLIANCE_STALE,     /* pool open, configuration for another transaction id */
	APPLIANCE_NO_POOL,   /* the pool did not open (or was never formatted) */
	APPLIANCE_BAD_CONFIG /* pool open, the configuration does not parse */
};

enum appliance_state appliance_state(const struct appliance *a);
/* Why the state is not READY (a sentence), "" when it is. */
const char *appliance_problem(const struct appliance *a);
/* The pool (NULL unless open). */
struct thin_pool *appliance_pool(struct appliance *a);
/* The configuration in force (empty unless READY). */
const struct cfg *appliance_config(const struct appliance *a);
struct nbd_server *appliance_server(struct appliance *a);
/* The volume group (for `pool status` and the tests); -ENODEV when the disks hold none. */
struct appliance_vg_info {
	char vg[128], pool[128];
	uint32_t seqno;
	uint64_t extent_bytes;
	unsigned lvs;		 /* all LVs, hidden ones included */
	uint64_t transaction_id; /* the pool's, as the VG says */
	unsigned messages;	 /* pending messages (0 but while a change is made) */
	uint64_t meta_bytes;	 /* pool_tmeta and pool_tdata, as open */
	uint64_t data_bytes;
};
int appliance_vg_info(const struct appliance *a, struct appliance_vg_info *out);
/* The name of the VG the disks hold (also one the appliance cannot serve), or NULL. */
const char *appliance_disks_vg(const struct appliance *a);
/* The pool's transaction id; -ENODEV without an open pool. */
int appliance_transaction_id(struct appliance *a, uint64_t *out);
/*
 * 0 when the pool is open and its mode allows a change (@change) or reading metadata; else
 * -ENODEV (no pool), -EROFS (read-only, @change) or -EIO (failed).
 */
int appliance_pool_usable(struct appliance *a, bool change);
/* A readable sentence for an error code of the calls below. */
const char *appliance_strerror(int rc);

/* ---- Administration: each follows the transaction protocol above --------------------------- */

struct appliance_format_opts {
	uint32_t data_block_sectors; /* 0: the default (128 = 64 KiB) */
	bool no_zero;		     /* don't zero new blocks */
	bool force;		     /* format over anything */
	const char *confirm;	     /* with force: the name of the VG the disks hold */
	const char *vg_name;	     /* the new VG's name; NULL: APPLIANCE_DEFAULT_VG */
};

/*
 * Format anew: exports removed, volumes closed, new PV labels on both disks, an empty pool
 * in pool_tmeta and a new VG (seqno 1, no volumes). -ENOTEMPTY when the disks hold a VG
 * (one the appliance cannot serve too: a third PV, an unknown segment type) and the call
 * does not both force and name it (@confirm); -EEXIST when the metadata disk
 * holds anything else and !force; -EINVAL for a bad block size or VG name.
 */
int appliance_format(struct appliance *a, const struct appliance_format_opts *fo);

/* Flush the data disk and commit. */
int appliance_commit(struct appliance *a);
/*
 * Grow the pool to the data disk's size (`pool resize-data`): ask the platform for the
 * disk's size again (appliance_opts' data_size_changed), grow the data PV and pool_tdata
 * over the new extents in the VG (lvm's pvresize + lvextend), then the pool. -EINVAL when
 * the disk is smaller than the PV; 0 when there is no new whole extent.
 */
int appliance_resize_data(struct appliance *a);
/*
 * The out-of-data-space policy (thin_pool_opts' error_if_no_space and no_space_timeout_ms):
 * saved in the settings block (kept across reboots and pool format), then applied to the
 * open pool at once. -ENODEV without an open pool; after a disk error (returned) the
 * running pool keeps its policy.
 */
int appliance_set_no_space(struct appliance *a, bool error_if_no_space, uint32_t timeout_ms);
/*
 * Move the pool's transaction id from @old to @new_id (-EINVAL when @old is wrong or
 * @new_id equals it). READY: the configuration is saved for @new_id first. STALE: if a
 * configuration exists for @new_id it is adopted and the exports start (the way to recover
 * from a mismatch).
 */
int appliance_set_transaction_id(struct appliance *a, uint64_t old, uint64_t new_id);

/*
 * Volumes. -EINVAL for a bad name or size (@err gets why), -EEXIST for a taken name,
 * -ENOENT for an unknown one, -EBUSY for a volume that is exported (delete) or still in use
 * by a connection, -ENOSPC when the pool metadata or the configuration store is full,
 * -EROFS when the pool is read-only, -ESTALE unless READY.
 */
int appliance_create_volume(struct appliance *a, const char *name, uint64_t size);
/*
 * Many volumes at once (`thin create PREFIX SIZE --count N`): @count volumes named @prefix
 * followed by the decimal numbers @first .. @first + @count - 1, each of @size bytes, or,
 * with @origin, snapshots of that volume. Made in transactions of up to
 * APPLIANCE_BATCH_CHUNK volumes: each is lvm's protocol once (two VG commits and one pool
 * commit) for all its volumes, one create message each, where single creates would
 * rewrite the whole VG twice per volume. *@done: how many exist when it returns (whole
 * transactions: a failure leaves the earlier chunks made and none of the failing one).
 * Errors as appliance_create_volume(); -EINVAL also for a @count of 0 or a prefix too
 * long for the numbers.
 */
#define APPLIANCE_BATCH_CHUNK 256u /* lvm's bound on a pool's pending messages */
int appliance_create_volumes(struct appliance *a, const char *prefix, uint64_t first,
			     unsigned count, uint64_t size, const char *origin, unsigned *done);
int appliance_snapshot_volume(struct appliance *a, const char *origin, const char *name);
int appliance_delete_volume(struct appliance *a, const char *name);
/* The thin LV is renamed; its exports keep their names and follow it. */
int appliance_rename_volume(struct appliance *a, const char *name, const char *new_name);
/* Shrinking unmaps everything past the new end. */
int appliance_resize_volume(struct appliance *a, const char *name, uint64_t size);

/*
 * Exports: @export_name NULL means the volume's name. -ENOENT (no such volume / export),
 * -EEXIST (name taken), -ENOSPC (too many exports), -ESTALE unless READY. Removing an
 * export closes its connections once their requests in flight are answered.
 */
int appliance_add_export(struct appliance *a, const char *volume, const char *export_name,
			 bool read_only);
int appliance_remove_export(struct appliance *a, const char *export_name);
/*
 * Export volumes @prefix<@first> .. <@first + @count - 1> (decimal numbers), each under its
 * own name, everyone allowed, in one VG commit (`export add PREFIX --count N`). All or
 * nothing: -ENOENT (a volume missing), -EEXIST (an export name taken), -ENOSPC (more than
 * NBD_DEFAULT_MAX_EXPORTS exports in all), -EINVAL, -ESTALE. *@done: @count, or 0.
 */
int appliance_add_exports(struct appliance *a, const char *prefix, uint64_t first, unsigned count,
			  bool read_only, unsigned *done);
/*
 * appliance_add_export() with an allow list (@nallow prefixes, at most CFG_MAX_ALLOW; 0:
 * everyone), kept with the export in the VG (docs/appliance.md). Also -EINVAL for a prefix
 * with bits set past its length; nothing is saved then.
 */
int appliance_add_export_allow(struct appliance *a, const char *volume, const char *export_name,
			       bool read_only, const struct net_prefix *allow, unsigned nallow);
/*
 * appliance_add_export_allow() that can mark the export TLS-only (@tls_only): kept as an LV
 * tag like the allow list; the NBD server then serves it only over TLS (under TLS off it is
 * refused to everyone with NBD_REP_ERR_POLICY; docs/nbd.md "TLS").
 */
int appliance_add_export_tls(struct appliance *a, const char *volume, const char *export_name,
			     bool read_only, bool tls_only, const struct net_prefix *allow,
			     unsigned nallow);
/*
 * Add (@allow) or remove the @n prefixes @p to or from export @export_name's allow list;
 * !@allow with @n 0 clears it (everyone may connect). One VG commit, then the running export
 * follows at once: connections from addresses no longer allowed are closed. -ENOENT (no such
 * export; removing a prefix not in the list), -ENOSPC (more than CFG_MAX_ALLOW), -EINVAL,
 * -ESTALE unless READY; on these nothing is saved. -ENOMEM can also come after the save,
 * when the server could not take the new list: the export is then stopped (logged).
 */
int appliance_export_allow(struct appliance *a, const char *export_name, bool allow,
			   const struct net_prefix *p, unsigned n);

/* A volume name the appliance accepts: cfg_name_valid() and a valid, unreserved LV name. */
bool appliance_volume_name_valid(const char *name);

/* Per-volume figures for `thin list` / `thin info`. */
struct appliance_volume_info {
	uint64_t mapped_bytes;
	uint32_t creation_time, snapshotted_time; /* the pool's time counter */
	uint64_t created;			  /* the LV's creation_time: Unix seconds */
	char created_host[64];			  /* its creation_host */
	bool open;	  /* open as a volume (exported, or in use by a connection) */
	bool in_pool;	  /* the thin device exists (false would be a bug) */
	unsigned exports; /* exports that name it */
};
int appliance_volume_info(struct appliance *a, const char *name, struct appliance_volume_info *out);

/* ---- What changed (incremental backup, docs/backup.md) ------------------------------------- */

/* A run of bytes of one kind (thin_delta's: core/thin/thin_metadata.h's enum thin_diff_kind). */
struct appliance_diff_range {
	enum thin_diff_kind kind;
	uint64_t offset, length;
};
/*
 * Compare volume @to with volume @from (any two; usually a volume and an earlier snapshot
 * of it) on the live pool, from byte @offset on (rounded down to a data block): @fn gets the
 * runs that differ in ascending order, in whole data blocks (appliance_diff_grain()):
 * LEFT_ONLY (mapped in @from only: discarded since), RIGHT_ONLY (written since, where @from
 * had nothing), DIFFERENT (overwritten). What is not reported reads the same in both. Cost:
 * the change, not the volumes' size (shared subtrees are skipped). A non-zero return from
 * @fn stops it and is returned; @st (optional) gets the figures.
 * -ENOENT (no such volume), -ESTALE unless READY, -ENODEV/-EIO (no usable pool), metadata
 * errors.
 */
int appliance_diff(struct appliance *a, const char *from, const char *to, uint64_t offset,
		   int (*fn)(void *ctx, const struct appliance_diff_range *r), void *ctx,
		   struct thin_diff_stats *st);
/* The granularity of the ranges above: the pool's data block size in bytes (0: no pool). */
uint64_t appliance_diff_grain(struct appliance *a);

#endif
