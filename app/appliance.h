/* SPDX-License-Identifier: MIT */
/*
 * The appliance: one thin pool on a metadata disk and a data disk, the named volumes and
 * exports of its configuration, and the NBD exports that serve them. Both composition roots
 * (host/main.c and boot/efi_main.c) create one, poll it from their main loop and register
 * its shell commands (config/appliance_cmds.h), which use this header and nothing else of
 * app/.
 *
 * Metadata disk layout (docs/appliance.md):
 *   [0, meta_bytes)                     pool metadata, through a core/blkdev_slice.h slice:
 *                                       the superblock records that size, so thin_check and
 *                                       thin_dump on the whole disk image see a normal pool
 *   [meta_bytes, +4 KiB)                the settings block: pool options dm-thin keeps
 *                                       outside its metadata (zeroing, chosen at format
 *                                       time; the out-of-data-space policy, `pool set`)
 *   [store offset, disk size)           the configuration store (config/store.h): two slots
 *                                       of APPLIANCE_SLOT_BYTES, in the last
 *                                       APPLIANCE_STORE_BYTES of the disk (4 KiB aligned)
 *
 * Consistency: every change of names, sizes or exports follows config/store.h's protocol,
 * the pool's transaction id being the link: the new configuration is saved for T + 1, the
 * pool changed, the transaction id moved from T to T + 1 and committed, then the slot marked
 * committed. Devices are added to the pool before the transaction id moves and removed after
 * it, so a crash can leave at most a thin device that no configuration names (an orphan);
 * appliance_create() deletes such orphans. The configuration never names a device the pool
 * lacks.
 *
 * Boot (appliance_create):
 *   - metadata block 0 all zeroes and no configuration: first boot (when enabled) formats
 *     the pool with the defaults, creates volume "vol0" as big as the data disk (thin: it
 *     may be overcommitted later) and exports it as "vol0", the default NBD export;
 *   - a formatted pool: open it, load the configuration for its transaction id, delete
 *     orphans, start the exports;
 *   - the configuration belongs to another transaction id (-ESTALE): say so; the pool
 *     commands work, volume and export changes are refused and nothing is exported until
 *     `pool set-transaction-id` reaches an id a configuration exists for, or `pool format`;
 *   - the pool does not open (corrupt metadata, not a dm-thin superblock): say why; only
 *     `pool format --force` and the status commands work.
 * A disk with anything in block 0 is never formatted without an explicit force.
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
#include "config/store.h"
#include "core/blkdev.h"
#include "core/thin/thin_pool.h"
#include "net/nbd/nbd_server.h"

struct appliance;

/* The configuration store: two slots of 512 KiB at the end of the metadata disk. */
#define APPLIANCE_SLOT_BYTES	 (512u * 1024u)
#define APPLIANCE_STORE_BYTES	 (2u * APPLIANCE_SLOT_BYTES)
#define APPLIANCE_SETTINGS_BYTES 4096u
/* The smallest metadata disk: store, settings and 2 MiB of pool metadata (dm-thin's minimum). */
#define APPLIANCE_MIN_META_BYTES                                                                   \
	(APPLIANCE_STORE_BYTES + APPLIANCE_SETTINGS_BYTES + 2u * 1024u * 1024u)
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
/* The pool metadata slice's size and the store's offset on the metadata disk, in bytes. */
uint64_t appliance_meta_bytes(const struct appliance *a);
uint64_t appliance_store_offset(const struct appliance *a);
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
};

/*
 * Format the pool anew: exports removed, volumes closed, the configuration wiped, an empty
 * pool written and an empty configuration saved for its transaction id 0. -EEXIST when the
 * metadata disk's block 0 is not all zeroes and !force; -EINVAL for a bad block size.
 */
int appliance_format(struct appliance *a, const struct appliance_format_opts *fo);

/* Flush the data disk and commit. */
int appliance_commit(struct appliance *a);
/*
 * Ask the platform for the data disk's size again (appliance_opts' data_size_changed; 0
 * without one), before thin_pool_resize_data() grows the pool to it (`pool resize-data`).
 */
int appliance_update_data_size(struct appliance *a);
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
int appliance_snapshot_volume(struct appliance *a, const char *origin, const char *name);
int appliance_delete_volume(struct appliance *a, const char *name);
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

/* Per-volume figures for `thin list` / `thin info`. */
struct appliance_volume_info {
	uint64_t mapped_bytes;
	uint32_t creation_time, snapshotted_time;
	bool open;	  /* open as a volume (exported, or in use by a connection) */
	bool in_pool;	  /* the thin device exists (false would be a bug) */
	unsigned exports; /* exports that name it */
};
int appliance_volume_info(struct appliance *a, const char *name, struct appliance_volume_info *out);

#endif
