/* SPDX-License-Identifier: MIT */
/*
 * The appliance: pool + configuration + volumes + exports; see app/appliance.h for the
 * layout, the transaction protocol and the boot rules.
 *
 * Ownership: struct app_vol is an open thin volume shared by the exports that serve it
 * (reference counted); struct app_exp is one NBD export, freed by the server's release()
 * callback once no connection uses it, which is also when it drops its volume reference.
 */
#include "app/appliance.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/crc32c.h"
#include "core/base/endian.h"
#include "core/base/plat.h"
#include "core/base/util.h"
#include "core/blkdev_slice.h"

#include "app/appliance_internal.h"

/* ---- Logging ------------------------------------------------------------------------------ */

void app_log(struct appliance *a, const char *fmt, ...)
{
	char line[320];
	va_list ap;

	if (!a->o.log)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	a->o.log(a->o.log_ctx, line);
}

static void set_problem(struct appliance *a, enum appliance_state st, const char *fmt, ...)
{
	va_list ap;

	a->state = st;
	va_start(ap, fmt);
	vsnprintf(a->problem, sizeof(a->problem), fmt, ap);
	va_end(ap);
}

const char *appliance_strerror(int rc)
{
	switch (rc) {
	case 0:
		return "ok";
	case -EINVAL:
		return "invalid argument";
	case -EEXIST:
		return "already exists";
	case -ENOENT:
		return "no such name";
	case -EBUSY:
		return "in use";
	case -ENOSPC:
		return "no space left (pool metadata, pool data or configuration store full)";
	case -EROFS:
		return "the pool is read-only (needs_check set or a metadata error): pool check "
		       "shows the damage; after repair, thinbox-check --clear-needs-check-flag on "
		       "the metadata image (offline) returns it to write mode";
	case -ESTALE:
		return "the configuration does not match the pool's transaction id (see pool "
		       "status)";
	case -ENODATA:
		return "the metadata disk holds no pool (pool format)";
	case -ENODEV:
		return "no pool is open";
	case -EIO:
		return "I/O error";
	case -ETIMEDOUT:
		return "a disk did not answer in time";
	case -EILSEQ:
	case -ENOTBLK:
		return "corrupt metadata";
	case -ENOMEM:
		return "out of memory";
	case -EOPNOTSUPP:
		return "not supported by the pool in its current mode";
	default:
		return "error";
	}
}

/* ---- Accessors ---------------------------------------------------------------------------- */

enum appliance_state appliance_state(const struct appliance *a)
{
	return a->state;
}

const char *appliance_problem(const struct appliance *a)
{
	return a->state == APPLIANCE_READY ? "" : a->problem;
}

struct thin_pool *appliance_pool(struct appliance *a)
{
	return a->pool;
}

const struct cfg *appliance_config(const struct appliance *a)
{
	return &a->cfg;
}

struct nbd_server *appliance_server(struct appliance *a)
{
	return a->o.srv;
}

uint64_t appliance_meta_bytes(const struct appliance *a)
{
	return a->meta_bytes;
}

uint64_t appliance_store_offset(const struct appliance *a)
{
	return a->store_off;
}

void appliance_default_opts(struct appliance_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->first_boot = true;
	thin_pool_default_opts(&o->pool_opts);
}

/* ---- Volumes and exports ------------------------------------------------------------------ */

static struct app_vol *find_open_vol(struct appliance *a, uint32_t id)
{
	for (struct app_vol *v = a->vols; v; v = v->next)
		if (v->id == id)
			return v;
	return NULL;
}

bool app_volume_open(struct appliance *a, uint32_t id)
{
	return find_open_vol(a, id) != NULL;
}

/* Take a reference to volume @cv, opening it on first use. */
static int vol_get(struct appliance *a, const struct cfg_volume *cv, struct app_vol **out)
{
	struct app_vol *v = find_open_vol(a, cv->id);
	int rc;

	if (v) {
		v->refs++;
		*out = v;
		return 0;
	}
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	rc = thin_volume_open(a->pool, cv->id, cv->size, false, &v->vol);
	if (rc) {
		free(v);
		return rc;
	}
	v->a = a;
	v->id = cv->id;
	v->refs = 1;
	v->next = a->vols;
	a->vols = v;
	*out = v;
	return 0;
}

static void vol_put(struct app_vol *v)
{
	struct appliance *a = v->a;

	if (--v->refs)
		return;
	for (struct app_vol **pp = &a->vols; *pp; pp = &(*pp)->next) {
		if (*pp == v) {
			*pp = v->next;
			break;
		}
	}
	thin_volume_close(v->vol);
	free(v);
}

static int exp_extents(void *ctx, uint64_t offset, uint64_t length, struct nbd_extent *ext,
		       unsigned max)
{
	struct app_exp *e = ctx;
	struct thin_extent te[64];
	int n;

	n = thin_volume_extents(e->vol->vol, offset, length, te, MIN(max, ARRAY_SIZE(te)));
	for (int i = 0; i < n; i++)
		ext[i] = (struct nbd_extent){ te[i].length, te[i].flags };
	return n;
}

/* The server no longer uses the export: drop its volume. */
static void exp_release(void *ctx, struct blkdev *dev)
{
	struct app_exp *e = ctx;

	e->a->live_exports--;
	vol_put(e->vol);
	free(e);
}

/* Serve export @ce (the configuration says it exists). */
static int export_start(struct appliance *a, const struct cfg_export *ce)
{
	const struct cfg_volume *cv = cfg_find_volume(&a->cfg, ce->volume);
	struct nbd_export_config nc;
	struct app_exp *e;
	char desc[NBD_MAX_DESCRIPTION + 1];
	int rc;

	if (!a->o.srv)
		return 0;
	if (!cv)
		return -ENOENT;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->a = a;
	rc = vol_get(a, cv, &e->vol);
	if (rc) {
		free(e);
		return rc;
	}
	snprintf(desc, sizeof(desc), "thin volume %s (id %" PRIu32 ")%s", cv->name, cv->id,
		 ce->read_only ? ", read-only" : "");
	memset(&nc, 0, sizeof(nc));
	nc.name = ce->name;
	nc.description = desc;
	nc.dev = thin_volume_blkdev(e->vol->vol);
	nc.read_only = ce->read_only;
	nc.extents = exp_extents;
	nc.release = exp_release;
	nc.ctx = e;
	rc = nbd_server_add_export(a->o.srv, &nc);
	if (rc) {
		vol_put(e->vol);
		free(e);
		return rc;
	}
	a->live_exports++;
	return 0;
}

/* Stop serving @name; the release may come later, when its last connection is gone. */
static void export_stop(struct appliance *a, const char *name)
{
	if (a->o.srv)
		nbd_server_remove_export(a->o.srv, name, true);
}

static void start_exports(struct appliance *a)
{
	for (size_t i = 0; i < a->cfg.nexps; i++) {
		int rc = export_start(a, &a->cfg.exps[i]);

		if (rc)
			app_log(a, "export %s: not started: %s", a->cfg.exps[i].name,
				appliance_strerror(rc));
	}
}

static void stop_exports(struct appliance *a)
{
	for (size_t i = 0; i < a->cfg.nexps; i++)
		export_stop(a, a->cfg.exps[i].name);
}

/*
 * Poll until no export of ours is left in the server (they are released when their
 * connections are gone) or @ms pass. True when all are gone.
 */
static bool wait_exports_released(struct appliance *a, unsigned ms)
{
	uint64_t end = plat_now_ns() + (uint64_t)ms * NSEC_PER_MSEC;

	while (a->live_exports && plat_now_ns() < end) {
		if (a->o.srv)
			nbd_server_poll(a->o.srv);
		if (a->pool)
			thin_pool_poll(a->pool);
	}
	return a->live_exports == 0;
}

/* ---- The transaction protocol (config/store.h) -------------------------------------------- */

/*
 * Whether the pool's mode allows a change (@change) or any metadata access at all: in FAIL
 * mode the metadata is gone from memory, and read-only refuses changes anyway (saying so
 * before a configuration slot is written saves a useless write).
 */
int appliance_pool_usable(struct appliance *a, bool change)
{
	struct thin_pool_status st;
	int rc;

	if (!a->pool)
		return -ENODEV;
	rc = thin_pool_get_status(a->pool, &st);
	if (rc)
		return rc;
	if (st.mode == THIN_POOL_FAIL)
		return -EIO;
	if (change && st.mode == THIN_POOL_READ_ONLY)
		return -EROFS;
	return 0;
}

/* Changing volumes or exports needs a writable pool and a configuration in step with it. */
static int config_changeable(struct appliance *a)
{
	int rc = appliance_pool_usable(a, true);

	if (rc)
		return rc;
	return a->state == APPLIANCE_READY ? 0 : -ESTALE;
}

int appliance_transaction_id(struct appliance *a, uint64_t *out)
{
	struct thin_pool_status st;
	int rc;

	if (!a->pool)
		return -ENODEV;
	rc = thin_pool_get_status(a->pool, &st);
	if (!rc)
		*out = st.transaction_id;
	return rc;
}

int appliance_update_data_size(struct appliance *a)
{
	if (!a->o.data_size_changed)
		return 0;
	return a->o.data_size_changed(a->o.data_size_ctx, a->o.data_disk);
}

/*
 * Make @next the configuration: save it for T + 1, run @before (adds devices to the pool),
 * move the transaction id T -> T + 1 (a commit), mark the slot committed, then run @after
 * (removes devices). On success @next's contents move into a->cfg (and @next is left
 * empty); on failure the configuration in force is unchanged and @next still the caller's.
 */
int app_transact(struct appliance *a, struct cfg *next, int (*before)(struct appliance *, void *),
		 void (*undo)(struct appliance *, void *), int (*after)(struct appliance *, void *),
		 void *arg)
{
	uint64_t t;
	int rc;

	rc = config_changeable(a);
	if (rc)
		return rc;
	rc = appliance_transaction_id(a, &t);
	if (rc)
		return rc;
	/* 1. the configuration for T + 1 is durable before the pool can reach T + 1 */
	rc = cfg_store_save(&a->store, next, t + 1);
	if (rc)
		return rc;
	/* 2. pool changes that add: a crash after them leaves an orphan, never a dangling name */
	if (before) {
		rc = before(a, arg);
		if (rc)
			return rc;
	}
	rc = thin_pool_set_transaction_id(a->pool, t, t + 1);
	if (rc) {
		if (undo)
			undo(a, arg);
		return rc;
	}
	/* 3. the pool is at T + 1: the new slot is the committed one */
	cfg_store_committed(&a->store);
	cfg_free(&a->cfg);
	a->cfg = *next;
	cfg_init(next);
	/* 4. pool changes that remove: a crash before them leaves an orphan */
	if (after) {
		rc = after(a, arg);
		if (rc)
			app_log(
			    a,
			    "warning: the change is saved but the pool could not finish it (%s); "
			    "the leftover is removed at the next boot",
			    appliance_strerror(rc));
	}
	return 0;
}

/* ---- Orphans ------------------------------------------------------------------------------ */

struct orphan_scan {
	const struct cfg *cfg;
	thin_id_t ids[64];
	unsigned n;
};

static int collect_orphan(void *ctx, thin_id_t id, const struct thin_dev_details *d)
{
	struct orphan_scan *s = ctx;

	if (id > CFG_MAX_THIN_ID || !cfg_find_volume_id(s->cfg, (uint32_t)id)) {
		if (s->n < ARRAY_SIZE(s->ids))
			s->ids[s->n++] = id;
	}
	return 0;
}

/* Delete thin devices no volume names: leftovers of a change a crash interrupted. */
static void delete_orphans(struct appliance *a)
{
	struct orphan_scan s = { .cfg = &a->cfg };
	struct thin_md_view v;
	int rc;

	rc = appliance_pool_usable(a, true);
	if (!rc)
		rc = thin_md_view_current(thin_pool_md(a->pool), &v);
	if (!rc)
		rc = thin_view_for_each_device(&v, collect_orphan, &s);
	if (rc) {
		app_log(a, "warning: cannot list the pool's thin devices: %s",
			appliance_strerror(rc));
		return;
	}
	for (unsigned i = 0; i < s.n; i++) {
		rc = thin_pool_delete_thin(a->pool, s.ids[i]);
		app_log(a, "thin device %" PRIu64 " was left by an interrupted change: %s",
			s.ids[i], rc ? appliance_strerror(rc) : "deleted");
	}
}

/* ---- Boot --------------------------------------------------------------------------------- */

static void close_everything(struct appliance *a)
{
	stop_exports(a);
	if (!wait_exports_released(a, APPLIANCE_EXPORTS_RELEASE_MS))
		app_log(a, "warning: %u export(s) still in use by connections", a->live_exports);
	/* Volumes held by something else than an export do not exist: exports are the only
	 * long-lived users; temporary ones are closed by the call that opened them. */
	if (a->pool && !a->live_exports) {
		int rc = thin_pool_close(a->pool);

		/* Only -EBUSY leaves the pool open; after a failed last commit it is closed
		 * all the same (what was not committed is lost, as in a crash). */
		if (rc)
			app_log(a, "warning: closing the pool: %s", appliance_strerror(rc));
		if (rc != -EBUSY)
			a->pool = NULL;
	}
	cfg_free(&a->cfg);
}

static int open_pool(struct appliance *a)
{
	char why[160] = "";
	int rc;

	rc = thin_pool_open(a->meta, a->o.data_disk, &a->o.pool_opts, why, sizeof(why), &a->pool);
	if (rc) {
		a->pool = NULL;
		if (rc == -ENODATA)
			set_problem(a, APPLIANCE_NO_POOL,
				    "the metadata disk holds no pool (pool format creates one)");
		else
			set_problem(
			    a, APPLIANCE_NO_POOL,
			    "the pool does not open: %s%s%s (pool format --force starts over)",
			    appliance_strerror(rc), why[0] ? ": " : "", why);
	}
	return rc;
}

static int first_boot(struct appliance *a)
{
	uint64_t size = a->o.data_disk->nr_blocks * a->o.data_disk->block_size;
	char sz[32];
	int rc;

	size = MIN(ALIGN_DOWN(size, 512ull), APPLIANCE_MAX_VOLUME_BYTES);
	format_size(size, sz, sizeof(sz));
	a->state = APPLIANCE_READY;
	rc =
	    app_create_volume_tx(a, APPLIANCE_DEFAULT_VOLUME, size, NULL, APPLIANCE_DEFAULT_VOLUME);
	if (rc) {
		set_problem(a, APPLIANCE_BAD_CONFIG, "first boot: creating volume %s failed: %s",
			    APPLIANCE_DEFAULT_VOLUME, appliance_strerror(rc));
		return rc;
	}
	app_log(a, "first boot: created volume %s (%s, thin) and exported it as %s",
		APPLIANCE_DEFAULT_VOLUME, sz, APPLIANCE_DEFAULT_VOLUME);
	return 0;
}

static int count_device(void *ctx, thin_id_t id, const struct thin_dev_details *d)
{
	(*(unsigned *)ctx)++;
	return 0;
}

static unsigned pool_devices(struct appliance *a)
{
	struct thin_md_view v;
	unsigned n = 0;

	if (appliance_pool_usable(a, false) || thin_md_view_current(thin_pool_md(a->pool), &v) ||
	    thin_view_for_each_device(&v, count_device, &n))
		return ~0u;
	return n;
}

/* The pool is open: load its configuration and act on what is found. */
static void load_config(struct appliance *a, bool may_first_boot)
{
	char err[200] = "";
	uint64_t t;
	int rc;

	rc = appliance_transaction_id(a, &t);
	if (rc) {
		set_problem(a, APPLIANCE_BAD_CONFIG, "cannot read the pool status: %s",
			    appliance_strerror(rc));
		return;
	}
	cfg_free(&a->cfg);
	rc = cfg_store_load(&a->store, t, &a->cfg, err, sizeof(err));
	switch (rc) {
	case 0:
		a->state = APPLIANCE_READY;
		a->problem[0] = '\0';
		delete_orphans(a);
		start_exports(a);
		app_log(a, "pool at transaction %" PRIu64 ": %zu volume(s), %zu export(s)", t,
			a->cfg.nvols, a->cfg.nexps);
		return;
	case -ENODATA:
	case -ESTALE:
		cfg_init(&a->cfg);
		/*
		 * A first boot cut short after the format: the pool is at transaction 0 and no
		 * configuration was saved for 0 (an explicit pool format saves an empty one, so
		 * it never gets here). With no device at all, or with ours (a configuration for
		 * a later id exists: the first boot's own transaction was interrupted, and its
		 * device is an orphan), nothing can be lost: finish the first boot. A pool
		 * without any configuration but with devices (made elsewhere) is left alone.
		 */
		if (may_first_boot && t == 0 && (rc == -ESTALE || pool_devices(a) == 0)) {
			a->state = APPLIANCE_READY;
			a->problem[0] = '\0';
			delete_orphans(a);
			first_boot(a);
			return;
		}
		if (rc == -ESTALE)
			break;
		a->state = APPLIANCE_READY;
		a->problem[0] = '\0';
		app_log(a, "pool at transaction %" PRIu64 ": no configuration saved yet", t);
		return;
	default:
		cfg_init(&a->cfg);
		set_problem(a, APPLIANCE_BAD_CONFIG, "the configuration cannot be read: %s",
			    err[0] ? err : appliance_strerror(rc));
		return;
	}
	set_problem(a, APPLIANCE_STALE,
		    "%s; nothing is exported. pool set-transaction-id %" PRIu64
		    " ID adopts the configuration saved for ID; pool format --force starts "
		    "over",
		    err, t);
}

static bool block0_zero(struct appliance *a, int *rc_out)
{
	bool blank = false;

	*rc_out = thin_md_is_blank(a->o.meta_disk, &blank);
	return !*rc_out && blank;
}

/*
 * The settings block: pool options dm-thin keeps in its table rather than its metadata
 * (skip_block_zeroing, chosen at format time; error_if_no_space and no_space_timeout, set
 * with `pool set`). Little-endian: magic "THNBXSET", le32 version 1, le32 flags (bit 0: no
 * zeroing, bit 1: error_if_no_space, bit 2: the no-space fields are present), le32 crc32c
 * of the 16 bytes before it; then le32 no_space_timeout_ms and le32 crc32c of the 24 bytes
 * before it. A block written before the no-space fields existed lacks bit 2 (and an older
 * reader ignores them): the no-space options keep their defaults then.
 */
#define SETTINGS_MAGIC		  "THNBXSET"
#define SETTING_NO_ZERO		  (1u << 0)
#define SETTING_ERROR_IF_NO_SPACE (1u << 1)
#define SETTING_HAS_NO_SPACE	  (1u << 2)

static int settings_write(struct appliance *a, const struct thin_pool_opts *po)
{
	uint32_t bs = a->o.meta_disk->block_size;
	uint8_t *buf = calloc(1, APPLIANCE_SETTINGS_BYTES);
	int rc;

	if (!buf)
		return -ENOMEM;
	memcpy(buf, SETTINGS_MAGIC, 8);
	put_le32(buf + 8, 1);
	put_le32(buf + 12, (po->zero_new_blocks ? 0 : SETTING_NO_ZERO) |
			       (po->error_if_no_space ? SETTING_ERROR_IF_NO_SPACE : 0) |
			       SETTING_HAS_NO_SPACE);
	put_le32(buf + 16, crc32c(buf, 16));
	put_le32(buf + 20, po->no_space_timeout_ms);
	put_le32(buf + 24, crc32c(buf, 24));
	rc = blkdev_write(a->o.meta_disk, a->meta_bytes / bs, APPLIANCE_SETTINGS_BYTES / bs, buf);
	free(buf);
	return rc ? rc : blkdev_flush(a->o.meta_disk);
}

/* Apply the settings block to the open options; absent or damaged: the defaults stay. */
static void settings_read(struct appliance *a)
{
	uint32_t bs = a->o.meta_disk->block_size;
	uint8_t *buf = malloc(APPLIANCE_SETTINGS_BYTES);

	if (!buf)
		return;
	if (!blkdev_read(a->o.meta_disk, a->meta_bytes / bs, APPLIANCE_SETTINGS_BYTES / bs, buf) &&
	    !memcmp(buf, SETTINGS_MAGIC, 8) && get_le32(buf + 8) == 1 &&
	    get_le32(buf + 16) == crc32c(buf, 16)) {
		uint32_t flags = get_le32(buf + 12);

		a->o.pool_opts.zero_new_blocks = !(flags & SETTING_NO_ZERO);
		if ((flags & SETTING_HAS_NO_SPACE) && get_le32(buf + 24) == crc32c(buf, 24)) {
			a->o.pool_opts.error_if_no_space = flags & SETTING_ERROR_IF_NO_SPACE;
			a->o.pool_opts.no_space_timeout_ms = get_le32(buf + 20);
		}
	}
	free(buf);
}

static int do_format(struct appliance *a, const struct thin_pool_opts *po, bool force)
{
	int rc;

	/* The configuration goes first: a configuration must never outlive its pool. */
	rc = cfg_store_wipe(&a->store);
	if (!rc)
		rc = settings_write(a, po);
	if (rc)
		return rc;
	rc = thin_pool_format(a->meta, a->o.data_disk, po, force);
	if (rc)
		return rc;
	rc = open_pool(a);
	if (rc)
		return rc;
	return 0;
}

static void boot(struct appliance *a)
{
	struct cfg probe;
	char err[200];
	int rc, lrc;

	settings_read(a);
	if (!open_pool(a)) {
		load_config(a, a->o.first_boot);
		return;
	}
	if (a->state != APPLIANCE_NO_POOL || !a->o.first_boot)
		return;
	/* First boot only on a blank disk: block 0 all zeroes and no configuration at all. */
	if (!block0_zero(a, &rc))
		return;
	lrc = cfg_store_load(&a->store, 0, &probe, err, sizeof(err));
	cfg_free(&probe);
	if (lrc != -ENODATA) {
		set_problem(a, APPLIANCE_NO_POOL,
			    "the metadata disk has no pool but holds a configuration; pool format "
			    "creates a new pool");
		return;
	}
	app_log(a,
		"first boot: blank metadata disk; formatting the pool (%u KiB blocks, zeroing "
		"%s)",
		a->o.pool_opts.data_block_sectors / 2,
		a->o.pool_opts.zero_new_blocks ? "on" : "off");
	rc = do_format(a, &a->o.pool_opts, false);
	if (rc) {
		set_problem(a, APPLIANCE_NO_POOL, "first boot: formatting failed: %s",
			    appliance_strerror(rc));
		return;
	}
	cfg_init(&a->cfg);
	first_boot(a);
}

int appliance_create(const struct appliance_opts *o, struct appliance **out)
{
	struct appliance *a;
	uint64_t disk_bytes, store_off;
	uint32_t bs;
	int rc;

	if (!o || !o->meta_disk || !o->data_disk)
		return -EINVAL;
	bs = o->meta_disk->block_size;
	disk_bytes = o->meta_disk->nr_blocks * bs;
	if (bs < 512 || bs > 4096 || 4096 % bs || disk_bytes < APPLIANCE_MIN_META_BYTES)
		return -EINVAL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->o = *o;
	cfg_init(&a->cfg);
	/* The store takes the last APPLIANCE_STORE_BYTES (4 KiB aligned), the settings block the
	 * 4 KiB before it, the pool the rest. */
	store_off = ALIGN_DOWN(disk_bytes - APPLIANCE_STORE_BYTES, 4096ull);
	a->store_off = store_off;
	a->meta_bytes = store_off - APPLIANCE_SETTINGS_BYTES;
	rc = blkdev_slice_create(o->meta_disk, 0, a->meta_bytes / bs, &a->meta);
	if (!rc)
		rc = cfg_store_init(&a->store, o->meta_disk, store_off / bs,
				    APPLIANCE_STORE_BYTES / bs);
	if (rc) {
		blkdev_destroy(a->meta);
		free(a);
		return rc;
	}
	a->state = APPLIANCE_NO_POOL;
	boot(a);
	if (a->state != APPLIANCE_READY)
		app_log(a, "appliance: %s", a->problem);
	*out = a;
	return 0;
}

void appliance_destroy(struct appliance *a)
{
	if (!a)
		return;
	close_everything(a);
	if (a->pool || a->live_exports) {
		/* Something still uses the pool: leaking is safer than freeing under it. */
		app_log(a, "warning: the pool stays open");
		return;
	}
	blkdev_destroy(a->meta);
	free(a);
}

int appliance_poll(struct appliance *a)
{
	return a->pool ? thin_pool_poll(a->pool) : 0;
}

bool appliance_busy(const struct appliance *a)
{
	return a->pool && thin_pool_busy(a->pool);
}

/* ---- Administration ----------------------------------------------------------------------- */

int appliance_format(struct appliance *a, const struct appliance_format_opts *fo)
{
	struct thin_pool_opts po = a->o.pool_opts, defaults;
	int rc;

	/* Without --block-size a format gets the default, not whatever the last one chose. */
	thin_pool_default_opts(&defaults);
	po.data_block_sectors =
	    fo->data_block_sectors ? fo->data_block_sectors : defaults.data_block_sectors;
	if (po.data_block_sectors < THIN_DATA_BLOCK_SECTORS_MIN ||
	    po.data_block_sectors > THIN_DATA_BLOCK_SECTORS_MAX ||
	    po.data_block_sectors % THIN_DATA_BLOCK_SECTORS_MIN)
		return -EINVAL;
	po.zero_new_blocks = !fo->no_zero;
	if (!fo->force) {
		bool zero = block0_zero(a, &rc);

		if (rc)
			return rc;
		if (!zero)
			return -EEXIST;
	}
	close_everything(a);
	if (a->pool)
		return -EBUSY;
	a->state = APPLIANCE_NO_POOL;
	a->o.pool_opts.data_block_sectors = po.data_block_sectors;
	a->o.pool_opts.zero_new_blocks = po.zero_new_blocks;
	rc = do_format(a, &po, fo->force);
	if (rc) {
		if (a->state != APPLIANCE_NO_POOL || !a->problem[0])
			set_problem(a, APPLIANCE_NO_POOL, "format failed: %s",
				    appliance_strerror(rc));
		return rc;
	}
	/* An empty configuration for transaction 0, so that the next boot knows the pool was
	 * formatted on purpose and does not finish a "first boot" in it. */
	cfg_init(&a->cfg);
	rc = cfg_store_save(&a->store, &a->cfg, 0);
	if (!rc)
		cfg_store_committed(&a->store);
	a->state = APPLIANCE_READY;
	a->problem[0] = '\0';
	return rc;
}

int appliance_commit(struct appliance *a)
{
	return a->pool ? thin_pool_commit(a->pool) : -ENODEV;
}

int appliance_set_no_space(struct appliance *a, bool error_if_no_space, uint32_t timeout_ms)
{
	struct thin_pool_opts po;
	int rc;

	if (!a->pool)
		return -ENODEV;
	/* Saved first, so the pool never runs with a policy the next boot would not restore. */
	po = a->o.pool_opts;
	po.error_if_no_space = error_if_no_space;
	po.no_space_timeout_ms = timeout_ms;
	rc = settings_write(a, &po);
	if (rc)
		return rc;
	a->o.pool_opts = po;
	thin_pool_set_no_space(a->pool, error_if_no_space, timeout_ms);
	return 0;
}

int appliance_set_transaction_id(struct appliance *a, uint64_t old, uint64_t new_id)
{
	uint64_t t;
	int rc;

	rc = appliance_pool_usable(a, true);
	if (rc)
		return rc;
	rc = appliance_transaction_id(a, &t);
	if (rc)
		return rc;
	if (t != old || new_id == old)
		return -EINVAL;
	if (a->state == APPLIANCE_READY) {
		rc = cfg_store_save(&a->store, &a->cfg, new_id);
		if (rc)
			return rc;
		rc = thin_pool_set_transaction_id(a->pool, old, new_id);
		if (rc)
			return rc;
		cfg_store_committed(&a->store);
		return 0;
	}
	/* Not READY: move the pool and look for a configuration saved for the new id. */
	rc = thin_pool_set_transaction_id(a->pool, old, new_id);
	if (rc)
		return rc;
	load_config(a, false);
	return 0;
}

/* -- create / snapshot -- */

struct create_arg {
	uint32_t id, origin_id;
	bool snap;
	const char *export_name;
};

static int create_before(struct appliance *a, void *p)
{
	struct create_arg *c = p;

	return c->snap ? thin_pool_create_snap(a->pool, c->id, c->origin_id)
		       : thin_pool_create_thin(a->pool, c->id);
}

static void create_undo(struct appliance *a, void *p)
{
	struct create_arg *c = p;

	thin_pool_delete_thin(a->pool, c->id);
}

/* The lowest id that neither the configuration nor the pool uses. */
static int64_t free_thin_id(struct appliance *a, const struct cfg *c)
{
	struct thin_md *md = thin_pool_md(a->pool);

	for (uint32_t id = 0; id <= CFG_MAX_THIN_ID; id++) {
		int rc;

		if (cfg_find_volume_id(c, id))
			continue;
		rc = thin_md_device_exists(md, id);
		if (rc < 0)
			return rc;
		if (!rc)
			return id;
	}
	return -ENOSPC;
}

static int check_size(uint64_t size)
{
	return size == 0 || size % 512 || size > APPLIANCE_MAX_VOLUME_BYTES ? -EINVAL : 0;
}

int app_create_volume_tx(struct appliance *a, const char *name, uint64_t size, const char *origin,
			 const char *export_name)
{
	struct create_arg arg = { .export_name = export_name };
	const struct cfg_volume *ov = NULL;
	struct cfg next;
	int64_t id;
	int rc;

	rc = config_changeable(a);
	if (rc)
		return rc;
	if (!cfg_name_valid(name))
		return -EINVAL;
	if (cfg_find_volume(&a->cfg, name))
		return -EEXIST;
	if (origin) {
		ov = cfg_find_volume(&a->cfg, origin);
		if (!ov)
			return -ENOENT;
		size = ov->size;
		arg.snap = true;
		arg.origin_id = ov->id;
	} else if (check_size(size)) {
		return -EINVAL;
	}
	rc = cfg_copy(&next, &a->cfg);
	if (rc)
		return rc;
	id = free_thin_id(a, &next);
	if (id < 0) {
		cfg_free(&next);
		return (int)id;
	}
	arg.id = (uint32_t)id;
	rc = cfg_add_volume(&next, name, arg.id, size, origin);
	if (!rc && export_name)
		rc = cfg_add_export(&next, export_name, name, false);
	if (!rc)
		rc = app_transact(a, &next, create_before, create_undo, NULL, &arg);
	cfg_free(&next);
	if (rc)
		return rc;
	if (export_name) {
		const struct cfg_export *ce = cfg_find_export(&a->cfg, export_name);

		rc = ce ? export_start(a, ce) : -ENOENT;
		if (rc)
			app_log(a, "export %s: saved but not started: %s", export_name,
				appliance_strerror(rc));
	}
	return 0;
}

int appliance_create_volume(struct appliance *a, const char *name, uint64_t size)
{
	return app_create_volume_tx(a, name, size, NULL, NULL);
}

int appliance_snapshot_volume(struct appliance *a, const char *origin, const char *name)
{
	return app_create_volume_tx(a, name, 0, origin, NULL);
}

/* -- delete -- */

static int delete_after(struct appliance *a, void *p)
{
	return thin_pool_delete_thin(a->pool, *(uint32_t *)p);
}

int appliance_delete_volume(struct appliance *a, const char *name)
{
	const struct cfg_volume *cv;
	struct cfg next;
	uint32_t id;
	int rc;

	rc = config_changeable(a);
	if (rc)
		return rc;
	cv = cfg_find_volume(&a->cfg, name);
	if (!cv)
		return -ENOENT;
	id = cv->id;
	for (size_t i = 0; i < a->cfg.nexps; i++)
		if (!strcmp(a->cfg.exps[i].volume, name))
			return -EBUSY;
	/* A connection may still hold it after its export was removed: let its requests in
	 * flight finish (the transport closes the connection afterwards, outside this call). */
	if (app_volume_open(a, id)) {
		uint64_t end = plat_now_ns() + APPLIANCE_VOLUME_RELEASE_MS * NSEC_PER_MSEC;

		while (app_volume_open(a, id) && plat_now_ns() < end) {
			if (a->o.srv)
				nbd_server_poll(a->o.srv);
			thin_pool_poll(a->pool);
		}
		if (app_volume_open(a, id))
			return -EBUSY;
	}
	rc = cfg_copy(&next, &a->cfg);
	if (rc)
		return rc;
	rc = cfg_remove_volume(&next, name);
	if (!rc)
		rc = app_transact(a, &next, NULL, NULL, delete_after, &id);
	cfg_free(&next);
	return rc;
}

/* -- resize -- */

struct resize_arg {
	uint32_t id;
	uint64_t size;
};

/* Shrinking unmaps past the new end before the transaction id moves (see app_transact). */
static int resize_before(struct appliance *a, void *p)
{
	struct resize_arg *r = p;
	struct app_vol *v = find_open_vol(a, r->id);
	struct thin_volume *tmp = NULL;
	int rc = 0;

	if (!v) {
		const struct cfg_volume *cv = cfg_find_volume_id(&a->cfg, r->id);

		rc = thin_volume_open(a->pool, r->id, cv->size, false, &tmp);
		if (rc)
			return rc;
	}
	for (unsigned tries = 0; tries < APPLIANCE_RESIZE_POLLS; tries++) {
		rc = thin_volume_resize(v ? v->vol : tmp, r->size);
		if (rc != -EBUSY)
			break;
		/* Requests in flight on an exported volume: let them finish. */
		if (a->o.srv)
			nbd_server_poll(a->o.srv);
		thin_pool_poll(a->pool);
	}
	if (tmp)
		thin_volume_close(tmp);
	return rc;
}

int appliance_resize_volume(struct appliance *a, const char *name, uint64_t size)
{
	const struct cfg_volume *cv;
	struct resize_arg arg = { .size = size };
	struct cfg next;
	int rc;

	rc = config_changeable(a);
	if (rc)
		return rc;
	cv = cfg_find_volume(&a->cfg, name);
	if (!cv)
		return -ENOENT;
	if (check_size(size))
		return -EINVAL;
	arg.id = cv->id;
	rc = cfg_copy(&next, &a->cfg);
	if (rc)
		return rc;
	cfg_find_volume(&next, name)->size = size;
	rc = app_transact(a, &next, resize_before, NULL, NULL, &arg);
	cfg_free(&next);
	return rc;
}

/* -- exports -- */

int appliance_add_export(struct appliance *a, const char *volume, const char *export_name,
			 bool read_only)
{
	const struct cfg_export *ce;
	struct cfg next;
	int rc;

	rc = config_changeable(a);
	if (rc)
		return rc;
	if (!export_name)
		export_name = volume;
	if (!cfg_find_volume(&a->cfg, volume))
		return -ENOENT;
	if (!cfg_name_valid(export_name))
		return -EINVAL;
	if (cfg_find_export(&a->cfg, export_name))
		return -EEXIST;
	if (a->cfg.nexps >= NBD_DEFAULT_MAX_EXPORTS)
		return -ENOSPC;
	rc = cfg_copy(&next, &a->cfg);
	if (rc)
		return rc;
	rc = cfg_add_export(&next, export_name, volume, read_only);
	if (!rc)
		rc = app_transact(a, &next, NULL, NULL, NULL, NULL);
	cfg_free(&next);
	if (rc)
		return rc;
	ce = cfg_find_export(&a->cfg, export_name);
	rc = ce ? export_start(a, ce) : -ENOENT;
	if (rc)
		app_log(a, "export %s: saved but not started: %s", export_name,
			appliance_strerror(rc));
	return rc;
}

int appliance_remove_export(struct appliance *a, const char *export_name)
{
	struct cfg next;
	int rc;

	rc = config_changeable(a);
	if (rc)
		return rc;
	if (!cfg_find_export(&a->cfg, export_name))
		return -ENOENT;
	rc = cfg_copy(&next, &a->cfg);
	if (rc)
		return rc;
	rc = cfg_remove_export(&next, export_name);
	if (!rc)
		rc = app_transact(a, &next, NULL, NULL, NULL, NULL);
	cfg_free(&next);
	if (!rc)
		export_stop(a, export_name);
	return rc;
}

int appliance_volume_info(struct appliance *a, const char *name, struct appliance_volume_info *out)
{
	const struct cfg_volume *cv;
	struct thin_dev_details d;
	struct thin_md_view v;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = appliance_pool_usable(a, false);
	if (rc)
		return rc;
	cv = cfg_find_volume(&a->cfg, name);
	if (!cv)
		return -ENOENT;
	for (size_t i = 0; i < a->cfg.nexps; i++)
		if (!strcmp(a->cfg.exps[i].volume, name))
			out->exports++;
	out->open = app_volume_open(a, cv->id);
	rc = thin_md_view_current(thin_pool_md(a->pool), &v);
	if (!rc)
		rc = thin_view_get_details(&v, cv->id, &d);
	if (rc == -ENODATA)
		return 0;
	if (rc)
		return rc;
	out->in_pool = true;
	out->mapped_bytes = d.mapped_blocks * v.sb.data_block_sectors * 512ull;
	out->creation_time = d.creation_time;
	out->snapshotted_time = d.snapshotted_time;
	return 0;
}
