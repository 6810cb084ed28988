/* SPDX-License-Identifier: MIT */
/*
 * The appliance: pool + configuration + volumes + exports; see app/appliance.h for the
 * disks, the transaction protocol and the boot rules (the VG itself: app/app_vg.c).
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

#include "core/base/plat.h"
#include "core/base/util.h"
#include "core/lvm/lvm_vg.h"

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
		return "no space left (pool metadata, pool data or the volume group's metadata "
		       "area full)";
	case -EROFS:
		return "the pool is read-only (needs_check set or a metadata error): pool check "
		       "shows the damage; after repair, thinbox-check --clear-needs-check-flag on "
		       "the metadata image (offline) returns it to write mode";
	case -ESTALE:
		return "the volume group does not match the pool's transaction id (see pool "
		       "status)";
	case -ENODATA:
		return "the disks hold no pool (pool format)";
	case -ENOTEMPTY:
		return "the disks hold an LVM volume group: pool format erases it only with "
		       "--force and its name (--confirm VG)";
	case -E2BIG:
		return "the volume group's metadata area is full: the configuration no longer "
		       "fits in it, nothing was changed (docs/appliance.md, \"Limits\")";
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

void appliance_default_opts(struct appliance_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->first_boot = true;
	thin_pool_default_opts(&o->pool_opts);
}

/* ---- Volumes and exports ------------------------------------------------------------------ */

static struct app_vol *find_open_vol(struct appliance *a, uint32_t id)
{
	for (struct app_vol *v = a->vols[id & (APP_VOL_BUCKETS - 1)]; v; v = v->next)
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
	v->next = a->vols[v->id & (APP_VOL_BUCKETS - 1)];
	a->vols[v->id & (APP_VOL_BUCKETS - 1)] = v;
	*out = v;
	return 0;
}

static void vol_put(struct app_vol *v)
{
	struct appliance *a = v->a;

	if (--v->refs)
		return;
	for (struct app_vol **pp = &a->vols[v->id & (APP_VOL_BUCKETS - 1)]; *pp;
	     pp = &(*pp)->next) {
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
	free(e->line);
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
	nc.bitmap_name = app_exp_bitmap_name;
	nc.dirty = app_exp_dirty;
	nc.release = exp_release;
	nc.ctx = e;
	nc.allow = ce->allow;
	nc.nallow = ce->nallow;
	nc.tls_only = ce->tls_only;
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

/* ---- The transaction protocol -------------------------------------------- */

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

bool appliance_volume_name_valid(const char *name)
{
	return cfg_name_valid(name) && lvm_lv_name_valid(name);
}

/* Commit a copy of the VG with @edit applied to the pool LV (the last commit of a change). */
static int commit_pool_edit(struct appliance *a, void (*edit)(struct lvm_lv *pool))
{
	struct lvm_vg *vg;
	char why[200];
	int rc = lvm_vg_copy(a->vg, &vg, why, sizeof(why));

	if (rc)
		return rc;
	edit(lvm_vg_find_lv(vg, a->pool_lv));
	return app_vg_commit(a, vg);
}

static void drop_messages(struct lvm_lv *pool)
{
	lvm_seg_clear_messages(&pool->segs[0]);
}

/* The VG without pending messages: the second commit of lvm's protocol. */
static int commit_without_messages(struct appliance *a)
{
	return commit_pool_edit(a, drop_messages);
}

/* The id an interrupted `pool set-transaction-id` moves the pool from, or -1. */
static int64_t txid_from(struct appliance *a)
{
	const struct lvm_lv *pool = lvm_vg_find_lv(a->vg, a->pool_lv);

	for (unsigned i = 0; i < pool->tags.n; i++) {
		const char *t = pool->tags.v[i];
		char *end;

		if (!strncmp(t, APP_TAG_TXID_FROM, strlen(APP_TAG_TXID_FROM))) {
			unsigned long long v = strtoull(t + strlen(APP_TAG_TXID_FROM), &end, 10);

			if (!*end && v < INT64_MAX)
				return (int64_t)v;
		}
	}
	return -1;
}

static void drop_txid_tag(struct lvm_lv *pool)
{
	for (unsigned i = pool->tags.n; i-- > 0;)
		if (!strncmp(pool->tags.v[i], APP_TAG_TXID_FROM, strlen(APP_TAG_TXID_FROM)))
			lvm_strs_remove(&pool->tags, i);
}

/* The VG without the set-transaction-id tag: the move is done. */
static int commit_txid_done(struct appliance *a)
{
	return commit_pool_edit(a, drop_txid_tag);
}

/*
 * Make @next the configuration, in lvm's order (docs/appliance.md, "Consistency"):
 *   - a thin device created or deleted (@ch->msg): the VG is committed with the change, the
 *     pool's transaction id T + 1 and the pending message; then the pool changes and moves
 *     from T to T + 1 in one commit; then the VG is committed again without the message. A
 *     crash in between leaves a VG one transaction ahead with its message: the next start
 *     (ours, or lvm's activation in Linux) sends the message and moves the id;
 *   - anything else (exports, names, sizes): the pool change first (a shrink's unmap), then
 *     one VG commit.
 * On success @next's contents move into a->cfg (and @next is left empty); on failure the
 * configuration in force is unchanged and @next still the caller's.
 */
int app_transact(struct appliance *a, struct cfg *next, const struct app_change *ch)
{
	struct lvm_vg *vg, *prev = NULL;
	struct lvm_seg *ps;
	uint64_t t;
	char why[200];
	int rc;

	rc = config_changeable(a);
	if (!rc)
		rc = appliance_transaction_id(a, &t);
	if (rc)
		return rc;
	if (ch->msg == APP_MSG_NONE) {
		if (ch->pool_op) {
			rc = ch->pool_op(a, ch->arg);
			if (rc)
				return rc;
		}
		rc = app_vg_next(a, next, t, &vg);
		if (!rc)
			rc = app_vg_commit(a, vg);
		if (rc)
			return rc;
		goto done;
	}
	rc = lvm_vg_copy(a->vg, &prev, why, sizeof(why));
	if (!rc)
		rc = app_vg_next(a, next, t + 1, &vg);
	if (rc) {
		lvm_vg_free(prev);
		return rc;
	}
	ps = &lvm_vg_find_lv(vg, a->pool_lv)->segs[0];
	if (ch->msg == APP_MSG_DELETE)
		rc = lvm_seg_add_message_delete(ps, ch->id);
	else if (!ch->nnames)
		rc = lvm_seg_add_message_create(ps, ch->name);
	for (unsigned i = 0; i < ch->nnames && !rc; i++)
		rc = lvm_seg_add_message_create(ps, ch->names[i]);
	if (rc) {
		lvm_vg_free(vg);
		lvm_vg_free(prev);
		return rc;
	}
	rc = app_vg_commit(a, vg);
	if (rc) {
		lvm_vg_free(prev);
		return rc;
	}
	rc = ch->pool_op(a, ch->arg);
	if (!rc)
		rc = thin_pool_set_transaction_id(a->pool, t, t + 1);
	if (rc) {
		int rc2;

		/* Nothing of the pool change was committed: put the VG back as it was. */
		if (ch->undo)
			ch->undo(a, ch->arg);
		rc2 = app_vg_commit(a, prev);
		if (rc2)
			app_log(a,
				"warning: the pool refused the change (%s) and the volume group "
				"could not be put back (%s); the next start finishes or undoes it",
				appliance_strerror(rc), appliance_strerror(rc2));
		return rc;
	}
	lvm_vg_free(prev);
	rc = commit_without_messages(a);
	if (rc)
		app_log(a,
			"warning: the change is done but its message stays in the volume group "
			"(%s); the next start clears it",
			appliance_strerror(rc));
done:
	cfg_free(&a->cfg);
	a->cfg = *next;
	cfg_init(next);
	return 0;
}

/* ---- Devices no LV names ------------------------------------------------------------------ */

struct orphan_scan {
	const struct cfg *cfg;
	unsigned n;
	thin_id_t first;
};

static int collect_orphan(void *ctx, thin_id_t id, const struct thin_dev_details *d)
{
	struct orphan_scan *s = ctx;

	if (id > CFG_MAX_THIN_ID || !cfg_find_volume_id(s->cfg, (uint32_t)id)) {
		if (!s->n++)
			s->first = id;
	}
	return 0;
}

/*
 * Thin devices the VG does not name: lvm's protocol never leaves one, so they are someone's
 * (a dmsetup message in Linux, an older appliance). Say so and leave them: their ids are
 * never given to a new volume.
 */
static void report_orphans(struct appliance *a)
{
	struct orphan_scan s = { .cfg = &a->cfg };
	struct thin_md_view v;
	int rc;

	rc = appliance_pool_usable(a, false);
	if (!rc)
		rc = thin_md_view_current(thin_pool_md(a->pool), &v);
	if (!rc)
		rc = thin_view_for_each_device(&v, collect_orphan, &s);
	if (rc)
		app_log(a, "warning: cannot list the pool's thin devices: %s",
			appliance_strerror(rc));
	else if (s.n)
		app_log(a,
			"warning: %u thin device(s) in the pool have no LV (device %" PRIu64
			"%s); they are kept and their ids not reused",
			s.n, s.first, s.n > 1 ? ", ..." : "");
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
	if (!a->pool)
		app_vg_close_devices(a);
	cfg_free(&a->cfg);
}

/* Advice for a pool that does not open: never a command that would destroy it. */
#define REPAIR_ADVICE                                                                              \
	"nothing was changed; the pool can be checked and repaired in Linux with lvm "             \
	"(lvconvert --repair, docs/linux-lvm.md)"

static int open_pool(struct appliance *a)
{
	char why[200] = "";
	int rc;

	rc = app_vg_open_devices(a, why, sizeof(why));
	if (!rc) {
		app_vg_settings(a, &a->o.pool_opts);
		rc = thin_pool_open(a->meta, a->data, &a->o.pool_opts, why, sizeof(why), &a->pool);
	}
	if (!rc) {
		struct thin_pool_status st;
		char sz[32];

		/* The one memory figure of the pool that depends on a setting, not on load. */
		if (!thin_pool_get_status(a->pool, &st)) {
			format_size(st.meta_cache_bytes, sz, sizeof(sz));
			app_log(a, "pool: metadata cache of at most %u blocks (%s)",
				st.meta_cache_blocks, sz);
		}
	}
	if (rc) {
		a->pool = NULL;
		set_problem(a, APPLIANCE_NO_POOL, "the pool %s/%s does not open: %s%s%s; %s",
			    a->vg->name, a->pool_lv, appliance_strerror(rc), why[0] ? ": " : "",
			    why, REPAIR_ADVICE);
	}
	return rc;
}

static int first_boot(struct appliance *a)
{
	uint64_t size = a->data->nr_blocks * a->data->block_size;
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

/* Send a pending message to the pool (lvm's activation does the same). */
static int replay_message(struct appliance *a, const struct lvm_thin_msg *m)
{
	struct thin_md *md = thin_pool_md(a->pool);
	const struct lvm_lv *lv, *origin = NULL;
	thin_id_t id;
	int rc;

	if (m->type == LVM_MSG_DELETE) {
		/* Never delete what an LV still names: such a message is not lvm's (lvm removes
		 * the LV in the same commit), and sending it would destroy a volume. */
		for (unsigned i = 0; i < a->vg->nr_lvs; i++) {
			lv = &a->vg->lvs[i];
			if (lv->nr_segs == 1 && lv->segs[0].type == LVM_SEG_THIN &&
			    !strcmp(lv->segs[0].thin_pool, a->pool_lv) &&
			    lv->segs[0].device_id == m->device_id)
				return -EBUSY;
		}
		rc = thin_md_device_exists(md, m->device_id);
		return rc <= 0 ? rc : thin_pool_delete_thin(a->pool, m->device_id);
	}
	lv = lvm_vg_find_lv(a->vg, m->lv);
	if (!lv || lv->nr_segs != 1 || lv->segs[0].type != LVM_SEG_THIN)
		return -EINVAL;
	id = lv->segs[0].device_id;
	rc = thin_md_device_exists(md, id);
	if (rc)
		return rc < 0 ? rc : 0;
	if (lv->segs[0].origin[0])
		origin = lvm_vg_find_lv(a->vg, lv->segs[0].origin);
	if (origin && origin->nr_segs == 1 && origin->segs[0].type == LVM_SEG_THIN)
		return thin_pool_create_snap(a->pool, id, origin->segs[0].device_id);
	return thin_pool_create_thin(a->pool, id);
}

/*
 * The pool is open: bring it and the VG into step as lvm's activation does (docs/appliance.md,
 * "Starting"), then take the configuration the VG describes. False when they disagree.
 */
static bool reconcile(struct appliance *a)
{
	struct lvm_seg *s = app_pool_seg(a);
	uint64_t p, v = s->transaction_id;
	unsigned n = s->nr_msgs;
	int rc;

	rc = appliance_transaction_id(a, &p);
	if (rc) {
		set_problem(a, APPLIANCE_BAD_CONFIG, "cannot read the pool status: %s",
			    appliance_strerror(rc));
		return false;
	}
	if (txid_from(a) >= 0) {
		/* `pool set-transaction-id` cut short: the pool is still at the old id, or moved. */
		if ((uint64_t)txid_from(a) == p && v != p) {
			rc = thin_pool_set_transaction_id(a->pool, p, v);
			if (rc) {
				set_problem(a, APPLIANCE_STALE,
					    "moving the pool's transaction id from %" PRIu64
					    " to %" PRIu64 " failed: %s",
					    p, v, appliance_strerror(rc));
				return false;
			}
			p = v;
		}
		if (p == v) {
			rc = commit_txid_done(a);
			if (rc)
				app_log(a, "warning: %s", appliance_strerror(rc));
		}
	}
	if (v == p + 1) {
		/* A change was cut short after its first VG commit: finish it. */
		for (unsigned i = 0; i < n && !rc; i++)
			rc = replay_message(a, &s->msgs[i]);
		if (!rc)
			rc = thin_pool_set_transaction_id(a->pool, p, v);
		if (rc) {
			set_problem(a, APPLIANCE_STALE,
				    "the volume group's pending change (transaction %" PRIu64
				    ") could not be applied to the pool: %s; nothing was changed "
				    "and nothing is exported",
				    v,
				    rc == -EBUSY ? "a pending delete names a thin device an LV "
						   "still uses"
						 : appliance_strerror(rc));
			return false;
		}
		app_log(a,
			"finished a change that was cut short: pool at transaction %" PRIu64
			", %u message(s) applied",
			v, n);
	} else if (v != p) {
		set_problem(a, APPLIANCE_STALE,
			    "pool %s/%s is at transaction %" PRIu64
			    ", the volume group expects %" PRIu64 " (lvm refuses it too); nothing "
			    "is exported. pool set-transaction-id %" PRIu64 " %" PRIu64
			    " makes the pool agree with the volume group",
			    a->vg->name, a->pool_lv, p, v, p, v);
		return false;
	}
	if (n) {
		rc = commit_without_messages(a);
		if (rc)
			app_log(a, "warning: clearing the pending message failed: %s",
				appliance_strerror(rc));
	}
	return true;
}

static bool first_boot_pending(struct appliance *a)
{
	const struct lvm_lv *pool = lvm_vg_find_lv(a->vg, a->pool_lv);

	for (unsigned i = 0; i < pool->tags.n; i++)
		if (!strcmp(pool->tags.v[i], APP_TAG_FIRST_BOOT))
			return true;
	return false;
}

/* Tenths of a millisecond since @t0 (plat_now_ns()), for the boot breakdown. */
static unsigned ms10_since(uint64_t t0, uint64_t t1)
{
	return (unsigned)((t1 - t0) / (NSEC_PER_MSEC / 10));
}

#define MS10(x) (x) / 10, (x) % 10

/*
 * The pool is open: take the configuration the VG describes and act on it. *@exports_at
 * (when not NULL): plat_now_ns() when the exports started, left alone when none were (the
 * configuration not usable, or the first boot's volume still to make).
 */
static void load_config(struct appliance *a, uint64_t *exports_at)
{
	char err[200] = "";
	uint64_t t = 0, tc;
	int rc;

	cfg_free(&a->cfg);
	if (!reconcile(a))
		return;
	rc = app_vg_cfg(a, &a->cfg, err, sizeof(err));
	if (rc) {
		set_problem(a, APPLIANCE_BAD_CONFIG, "volume group %s: %s; nothing is exported",
			    a->vg->name, err);
		return;
	}
	a->state = APPLIANCE_READY;
	a->problem[0] = '\0';
	appliance_transaction_id(a, &t);
	report_orphans(a);
	if (first_boot_pending(a) && a->cfg.nvols == 0) {
		/* The first boot was cut short between its format and its first volume. */
		first_boot(a);
		return;
	}
	tc = plat_now_ns();
	start_exports(a);
	app_log(a,
		"volume group %s, pool %s at transaction %" PRIu64 ": %zu volume(s), %zu "
		"export(s)",
		a->vg->name, a->pool_lv, t, a->cfg.nvols, a->cfg.nexps);
	if (exports_at)
		*exports_at = tc;
}

/* What the metadata disk holds when it holds no LVM label. */
static bool meta_disk_blank(struct appliance *a, int *rc_out)
{
	bool blank = false;

	*rc_out = thin_md_is_blank(a->o.meta_disk, &blank);
	return !*rc_out && blank;
}

static int do_format(struct appliance *a, const char *vg_name, const struct thin_pool_opts *po,
		     bool first)
{
	char why[200] = "";
	int rc;

	rc = app_vg_format(a, vg_name, po, first, why, sizeof(why));
	if (rc) {
		set_problem(a, APPLIANCE_NO_POOL, "format failed: %s",
			    why[0] ? why : appliance_strerror(rc));
		return rc;
	}
	return open_pool(a);
}

/*
 * The reopen's stages from boot()'s timestamps (docs/firmware.md "Boot breakdown",
 * docs/appliance.md "Limits"): what a bigger pool or more volumes cost at boot shows up here.
 */
static void log_reopen(struct appliance *a, uint64_t t0, uint64_t t_read, uint64_t t_open,
		       uint64_t t_exports)
{
	uint64_t load = 0, recount = 0, te = plat_now_ns();

	thin_md_open_times(thin_pool_md(a->pool), &load, &recount);
	app_log(a,
		"boot: VG read %u.%u ms, pool open %u.%u ms (space maps %u.%u ms, recount "
		"%u.%u ms), configuration %u.%u ms, exports %u.%u ms",
		MS10(ms10_since(t0, t_read)), MS10(ms10_since(t_read, t_open)),
		MS10(ms10_since(0, load)), MS10(ms10_since(0, recount)),
		MS10(ms10_since(t_open, t_exports)), MS10(ms10_since(t_exports, te)));
}

static void boot(struct appliance *a)
{
	struct lvm_lv *pool;
	char why[240] = "";
	uint64_t t0 = plat_now_ns(), t_read, t2, t_exports = 0;
	int rc;

	rc = app_vg_read(a, &a->vg, why, sizeof(why));
	t_read = plat_now_ns();
	if (!rc) {
		rc = app_vg_pool(a->vg, &pool, why, sizeof(why));
		if (rc) {
			set_problem(a, APPLIANCE_NO_POOL, "%s; %s", why, "nothing was changed");
			return;
		}
		snprintf(a->pool_lv, sizeof(a->pool_lv), "%s", pool->name);
		if (!open_pool(a)) {
			t2 = plat_now_ns();
			load_config(a, &t_exports);
			if (t_exports)
				log_reopen(a, t0, t_read, t2, t_exports);
		}
		return;
	}
	if (rc != -ENODATA && rc != -ENOMSG) {
		set_problem(a, APPLIANCE_NO_POOL, "the disks' LVM metadata cannot be used: %s; %s",
			    why, "nothing was changed");
		return;
	}
	/* PVs that never got a VG (a format cut short before its VG was written) hold
	 * nothing: lvm would make a VG of them without asking either. */
	if (rc == -ENODATA && !meta_disk_blank(a, &rc)) {
		set_problem(a, APPLIANCE_NO_POOL, "%s",
			    rc ? "the metadata disk cannot be read"
			       : "the metadata disk holds no LVM volume group but is not blank: "
				 "disks from a thinbox before LVM2 (its pool at the start of the "
				 "metadata disk) or someone else's; nothing was changed "
				 "(docs/appliance.md, \"Disks from earlier versions\")");
		return;
	}
	if (!a->o.first_boot) {
		set_problem(a, APPLIANCE_NO_POOL,
			    "the disks hold no pool (pool format creates one)");
		return;
	}
	app_log(a,
		"first boot: blank disks; creating volume group %s with pool %s (%u KiB blocks, "
		"zeroing %s)",
		APPLIANCE_DEFAULT_VG, APP_POOL_LV, a->o.pool_opts.data_block_sectors / 2,
		a->o.pool_opts.zero_new_blocks ? "on" : "off");
	if (do_format(a, APPLIANCE_DEFAULT_VG, &a->o.pool_opts, true))
		return;
	t2 = plat_now_ns();
	cfg_init(&a->cfg);
	first_boot(a);
	app_log(a, "boot: VG read %u.%u ms, format %u.%u ms, first volume %u.%u ms",
		MS10(ms10_since(t0, t_read)), MS10(ms10_since(t_read, t2)),
		MS10(ms10_since(t2, plat_now_ns())));
}

int appliance_create(const struct appliance_opts *o, struct appliance **out)
{
	struct appliance *a;
	uint32_t bs;

	if (!o || !o->meta_disk || !o->data_disk)
		return -EINVAL;
	bs = o->meta_disk->block_size;
	if (bs < 512 || bs > 4096 || 4096 % bs ||
	    o->meta_disk->nr_blocks * bs < APPLIANCE_MIN_META_BYTES ||
	    o->data_disk->block_size != bs)
		return -EINVAL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->o = *o;
	a->disk[0] = o->meta_disk;
	a->disk[1] = o->data_disk;
	cfg_init(&a->cfg);
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
	lvm_vg_free(a->vg);
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

bool appliance_needs_cpu(const struct appliance *a)
{
	return a->pool && thin_pool_needs_cpu(a->pool);
}

/* ---- Administration ----------------------------------------------------------------------- */

/* The name of a VG whose copy app_vg_read() found on a disk, even one it refused; or NULL. */
static const char *held_vg_name(const struct appliance *a)
{
	if (a->vg)
		return a->vg->name;
	for (unsigned d = 0; d < 2; d++)
		if (a->disks[d].vg_name[0])
			return a->disks[d].vg_name;
	return NULL;
}

const char *appliance_disks_vg(const struct appliance *a)
{
	return held_vg_name(a);
}

/* Whether every VG copy app_vg_read() found on the disks is of the VG @fo forces and names. */
static bool vg_copies_named(const struct appliance *a, const struct appliance_format_opts *fo)
{
	for (unsigned d = 0; d < 2; d++)
		if (a->disks[d].vg_name[0] &&
		    (!fo->force || !fo->confirm || strcmp(fo->confirm, a->disks[d].vg_name)))
			return false;
	return true;
}

int appliance_format(struct appliance *a, const struct appliance_format_opts *fo)
{
	struct thin_pool_opts po = a->o.pool_opts, defaults;
	const char *vg_name = fo->vg_name ? fo->vg_name : APPLIANCE_DEFAULT_VG;
	struct lvm_vg *old = NULL;
	int rc;

	/* Without --block-size a format gets the default, not whatever the last one chose. */
	thin_pool_default_opts(&defaults);
	po.data_block_sectors =
	    fo->data_block_sectors ? fo->data_block_sectors : defaults.data_block_sectors;
	if (po.data_block_sectors < THIN_DATA_BLOCK_SECTORS_MIN ||
	    po.data_block_sectors > THIN_DATA_BLOCK_SECTORS_MAX ||
	    po.data_block_sectors % THIN_DATA_BLOCK_SECTORS_MIN || !lvm_name_valid(vg_name))
		return -EINVAL;
	po.zero_new_blocks = !fo->no_zero;
	/* What the disks hold decides what it takes to erase them. */
	rc = app_vg_read(a, &old, NULL, 0);
	if (!rc) {
		bool named = fo->confirm && !strcmp(fo->confirm, old->name);

		lvm_vg_free(old);
		if (!fo->force || !named)
			return -ENOTEMPTY; /* a volume group: its name must be given */
	} else if (!vg_copies_named(a, fo)) {
		/* A VG the appliance cannot serve (on one disk only, with other PVs ...) is
		 * someone's all the same: erased only when named too. */
		return -ENOTEMPTY;
	} else if (rc == -ENODATA) {
		bool blank = meta_disk_blank(a, &rc);

		if (rc)
			return rc;
		if (!blank && !fo->force)
			return -EEXIST;
	} else if (rc != -ENOMSG && !fo->force) {
		return -EEXIST;
	}
	close_everything(a);
	if (a->pool)
		return -EBUSY;
	lvm_vg_free(a->vg);
	a->vg = NULL;
	a->state = APPLIANCE_NO_POOL;
	a->o.pool_opts.data_block_sectors = po.data_block_sectors;
	a->o.pool_opts.zero_new_blocks = po.zero_new_blocks;
	rc = do_format(a, vg_name, &po, false);
	if (rc)
		return rc;
	cfg_init(&a->cfg);
	a->state = APPLIANCE_READY;
	a->problem[0] = '\0';
	return 0;
}

int appliance_vg_info(const struct appliance *a, struct appliance_vg_info *out)
{
	const struct lvm_lv *pool;

	memset(out, 0, sizeof(*out));
	if (!a->vg)
		return -ENODEV;
	snprintf(out->vg, sizeof(out->vg), "%s", a->vg->name);
	snprintf(out->pool, sizeof(out->pool), "%s", a->pool_lv);
	out->seqno = a->vg->seqno;
	out->extent_bytes = (uint64_t)a->vg->extent_size * 512u;
	out->lvs = a->vg->nr_lvs;
	pool = lvm_vg_find_lv(a->vg, a->pool_lv);
	if (pool) {
		out->transaction_id = pool->segs[0].transaction_id;
		out->messages = pool->segs[0].nr_msgs;
	}
	out->meta_bytes = a->meta ? a->meta->nr_blocks * a->meta->block_size : 0;
	out->data_bytes = a->data ? a->data->nr_blocks * a->data->block_size : 0;
	return 0;
}

int appliance_commit(struct appliance *a)
{
	return a->pool ? thin_pool_commit(a->pool) : -ENODEV;
}

int appliance_set_no_space(struct appliance *a, bool error_if_no_space, uint32_t timeout_ms)
{
	struct thin_pool_opts po;
	struct lvm_vg *vg;
	char why[200];
	int rc;

	if (!a->pool || !a->vg)
		return -ENODEV;
	/* Saved first, so the pool never runs with a policy the next boot would not restore. */
	po = a->o.pool_opts;
	po.error_if_no_space = error_if_no_space;
	po.no_space_timeout_ms = timeout_ms;
	rc = lvm_vg_copy(a->vg, &vg, why, sizeof(why));
	if (rc)
		return rc;
	rc = app_vg_set_settings(a, vg, &po);
	if (rc) {
		lvm_vg_free(vg);
		return rc;
	}
	rc = app_vg_commit(a, vg);
	if (rc)
		return rc;
	a->o.pool_opts = po;
	thin_pool_set_no_space(a->pool, error_if_no_space, timeout_ms);
	return 0;
}

int appliance_set_transaction_id(struct appliance *a, uint64_t old, uint64_t new_id)
{
	struct lvm_vg *vg;
	char why[200];
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
		/*
		 * The VG first, with the id the pool is heading to and a tag saying where it
		 * comes from: a cut before the pool moved is finished at the next start (lvm
		 * has no message for this; in between, lvm sees the ids disagree).
		 */
		char tag[64];

		snprintf(tag, sizeof(tag), APP_TAG_TXID_FROM "%" PRIu64, old);
		rc = lvm_vg_copy(a->vg, &vg, why, sizeof(why));
		if (rc)
			return rc;
		lvm_vg_find_lv(vg, a->pool_lv)->segs[0].transaction_id = new_id;
		rc = lvm_strs_add(&lvm_vg_find_lv(vg, a->pool_lv)->tags, tag);
		if (rc) {
			lvm_vg_free(vg);
			return rc;
		}
		rc = app_vg_commit(a, vg);
		if (!rc)
			rc = thin_pool_set_transaction_id(a->pool, old, new_id);
		if (!rc)
			rc = commit_txid_done(a);
		return rc;
	}
	/* Not READY: move the pool, then see whether it now agrees with the VG. */
	rc = thin_pool_set_transaction_id(a->pool, old, new_id);
	if (rc)
		return rc;
	load_config(a, NULL);
	return 0;
}

/* -- create / snapshot -- */

struct create_arg {
	uint32_t id, origin_id;
	bool snap;
};

static int create_op(struct appliance *a, void *p)
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
	struct create_arg arg = { 0 };
	struct app_change ch = { .msg = APP_MSG_CREATE,
				 .name = name,
				 .pool_op = create_op,
				 .undo = create_undo,
				 .arg = &arg };
	const struct cfg_volume *ov = NULL;
	struct cfg next;
	int64_t id;
	int rc;

	rc = config_changeable(a);
	if (rc)
		return rc;
	/* A volume is a thin LV: its name must be one lvm accepts for it. */
	if (!appliance_volume_name_valid(name))
		return -EINVAL;
	if (cfg_find_volume(&a->cfg, name) || lvm_vg_find_lv(a->vg, name))
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
		rc = app_transact(a, &next, &ch);
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

/* -- create many -- */

_Static_assert(APPLIANCE_BATCH_CHUNK <= LVM_POOL_MAX_MSGS,
	       "a batch transaction's create messages must fit the pool's pending messages");

struct batch_arg {
	uint32_t *ids;
	unsigned n, done;
	uint32_t origin_id;
	bool snap;
};

static int batch_op(struct appliance *a, void *p)
{
	struct batch_arg *b = p;
	int rc = 0;

	for (b->done = 0; b->done < b->n && !rc; b->done += !rc)
		rc = b->snap ? thin_pool_create_snap(a->pool, b->ids[b->done], b->origin_id)
			     : thin_pool_create_thin(a->pool, b->ids[b->done]);
	return rc;
}

static void batch_undo(struct appliance *a, void *p)
{
	struct batch_arg *b = p;

	while (b->done)
		thin_pool_delete_thin(a->pool, b->ids[--b->done]);
}

/* One transaction of the batch: volumes @prefix<@first> .. <@first + @n - 1>. */
static int create_chunk(struct appliance *a, const char *prefix, uint64_t first, unsigned n,
			uint64_t size, const struct cfg_volume *ov, char **names, uint32_t *ids)
{
	struct batch_arg arg = { .ids = ids, .n = n };
	struct app_change ch = { .msg = APP_MSG_CREATE,
				 .names = names,
				 .nnames = n,
				 .pool_op = batch_op,
				 .undo = batch_undo,
				 .arg = &arg };
	struct thin_md *md = thin_pool_md(a->pool);
	char origin[CFG_NAME_MAX + 1] = "";
	struct cfg next;
	uint32_t id = 0;
	int rc;

	if (ov) {
		arg.snap = true;
		arg.origin_id = ov->id;
		size = ov->size;
		snprintf(origin, sizeof(origin), "%s", ov->name);
	}
	for (unsigned i = 0; i < n; i++) {
		snprintf(names[i], LVM_NAME_MAX + 1, "%s%" PRIu64, prefix, first + i);
		if (!appliance_volume_name_valid(names[i]))
			return -EINVAL;
		if (cfg_find_volume(&a->cfg, names[i]) || lvm_vg_find_lv(a->vg, names[i]))
			return -EEXIST;
	}
	rc = cfg_copy(&next, &a->cfg);
	if (rc)
		return rc;
	/* The lowest free ids, as one create would take them one after the other: each
	 * step is a hashed lookup, and the pool is asked only about ids the VG does not use. */
	for (unsigned i = 0; i < n && !rc; i++, id++) {
		for (;; id++) {
			if (id > CFG_MAX_THIN_ID) {
				rc = -ENOSPC;
				break;
			}
			if (cfg_find_volume_id(&next, id))
				continue;
			rc = thin_md_device_exists(md, id);
			if (rc <= 0)
				break;
		}
		if (rc < 0)
			break;
		ids[i] = id;
		rc = cfg_add_volume(&next, names[i], id, size, ov ? origin : NULL);
	}
	if (!rc)
		rc = app_transact(a, &next, &ch);
	cfg_free(&next);
	return rc;
}

int appliance_create_volumes(struct appliance *a, const char *prefix, uint64_t first,
			     unsigned count, uint64_t size, const char *origin, unsigned *done)
{
	const struct cfg_volume *ov = NULL;
	char **names = NULL;
	uint32_t *ids = NULL;
	unsigned chunk = MIN(count, APPLIANCE_BATCH_CHUNK);
	int rc;

	*done = 0;
	rc = config_changeable(a);
	if (rc)
		return rc;
	if (!count || count > CFG_MAX_VOLUMES || !cfg_name_valid(prefix) ||
	    strlen(prefix) + 20 > LVM_NAME_MAX)
		return -EINVAL;
	if (origin) {
		ov = cfg_find_volume(&a->cfg, origin);
		if (!ov)
			return -ENOENT;
	} else if (check_size(size)) {
		return -EINVAL;
	}
	if (a->cfg.nvols + count > CFG_MAX_VOLUMES)
		return -ENOSPC;
	names = calloc(chunk, sizeof(*names));
	ids = calloc(chunk, sizeof(*ids));
	rc = names && ids ? 0 : -ENOMEM;
	for (unsigned i = 0; i < chunk && !rc; i++)
		if (!(names[i] = malloc(LVM_NAME_MAX + 1)))
			rc = -ENOMEM;
	while (!rc && *done < count) {
		unsigned n = MIN(chunk, count - *done);
		struct cfg_volume o;

		/* The origin's entry moves as the configuration is replaced: a copy. */
		if (ov) {
			const struct cfg_volume *cur = cfg_find_volume(&a->cfg, origin);

			if (!cur) {
				rc = -ENOENT;
				break;
			}
			o = *cur;
		}
		rc = create_chunk(a, prefix, first + *done, n, size, ov ? &o : NULL, names, ids);
		if (!rc)
			*done += n;
	}
	for (unsigned i = 0; names && i < chunk; i++)
		free(names[i]);
	free(names);
	free(ids);
	return rc;
}

int appliance_snapshot_volume(struct appliance *a, const char *origin, const char *name)
{
	return app_create_volume_tx(a, name, 0, origin, NULL);
}

/* -- delete -- */

static int delete_op(struct appliance *a, void *p)
{
	return thin_pool_delete_thin(a->pool, *(uint32_t *)p);
}

int appliance_delete_volume(struct appliance *a, const char *name)
{
	const struct cfg_volume *cv;
	struct app_change ch = { .msg = APP_MSG_DELETE, .pool_op = delete_op };
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
	ch.id = id;
	ch.arg = &id;
	rc = cfg_remove_volume(&next, name);
	if (!rc)
		rc = app_transact(a, &next, &ch);
	cfg_free(&next);
	return rc;
}

/* -- export many -- */

int appliance_add_exports(struct appliance *a, const char *prefix, uint64_t first, unsigned count,
			  bool read_only, unsigned *done)
{
	struct app_change ch = { .msg = APP_MSG_NONE };
	char name[CFG_NAME_MAX + 1];
	struct cfg next;
	int rc;

	*done = 0;
	rc = config_changeable(a);
	if (rc)
		return rc;
	if (!count || !cfg_name_valid(prefix) || strlen(prefix) + 20 > CFG_NAME_MAX)
		return -EINVAL;
	if (a->cfg.nexps + count > NBD_DEFAULT_MAX_EXPORTS)
		return -ENOSPC;
	rc = cfg_copy(&next, &a->cfg);
	for (unsigned i = 0; i < count && !rc; i++) {
		snprintf(name, sizeof(name), "%s%" PRIu64, prefix, first + i);
		rc = cfg_add_export(&next, name, name, read_only);
	}
	/* One VG commit for all of them. */
	if (!rc)
		rc = app_transact(a, &next, &ch);
	cfg_free(&next);
	if (rc)
		return rc;
	*done = count;
	for (unsigned i = 0; i < count; i++) {
		const struct cfg_export *ce;

		snprintf(name, sizeof(name), "%s%" PRIu64, prefix, first + i);
		ce = cfg_find_export(&a->cfg, name);
		rc = ce ? export_start(a, ce) : -ENOENT;
		if (rc)
			app_log(a, "export %s: saved but not started: %s", name,
				appliance_strerror(rc));
	}
	return 0;
}

/* -- rename -- */

int appliance_rename_volume(struct appliance *a, const char *name, const char *new_name)
{
	struct app_change ch = { .msg = APP_MSG_NONE };
	struct cfg next;
	int rc;

	rc = config_changeable(a);
	if (rc)
		return rc;
	if (!cfg_find_volume(&a->cfg, name))
		return -ENOENT;
	if (!appliance_volume_name_valid(new_name))
		return -EINVAL;
	if (cfg_find_volume(&a->cfg, new_name) || lvm_vg_find_lv(a->vg, new_name))
		return -EEXIST;
	rc = cfg_copy(&next, &a->cfg);
	if (rc)
		return rc;
	/* Exports keep their names; they follow the volume (the tags move with the LV). */
	rc = cfg_rename_volume(&next, name, new_name);
	if (!rc)
		rc = app_transact(a, &next, &ch);
	cfg_free(&next);
	return rc;
}

/* -- resize -- */

struct resize_arg {
	uint32_t id;
	uint64_t size;
};

/* Shrinking unmaps past the new end before the VG records the size (see app_transact). */
static int resize_op(struct appliance *a, void *p)
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
	/* The unmap is durable before the VG says the volume is smaller. */
	return rc ? rc : thin_pool_commit(a->pool);
}

int appliance_resize_volume(struct appliance *a, const char *name, uint64_t size)
{
	const struct cfg_volume *cv;
	struct resize_arg arg = { .size = size };
	struct app_change ch = { .msg = APP_MSG_NONE, .pool_op = resize_op, .arg = &arg };
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
	rc = app_transact(a, &next, &ch);
	cfg_free(&next);
	return rc;
}

/* -- exports -- */

int appliance_add_export(struct appliance *a, const char *volume, const char *export_name,
			 bool read_only)
{
	return appliance_add_export_allow(a, volume, export_name, read_only, NULL, 0);
}

int appliance_add_export_allow(struct appliance *a, const char *volume, const char *export_name,
			       bool read_only, const struct net_prefix *allow, unsigned nallow)
{
	return appliance_add_export_tls(a, volume, export_name, read_only, false, allow, nallow);
}

int appliance_add_export_tls(struct appliance *a, const char *volume, const char *export_name,
			     bool read_only, bool tls_only, const struct net_prefix *allow,
			     unsigned nallow)
{
	const struct cfg_export *ce;
	struct app_change ch = { .msg = APP_MSG_NONE };
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
		cfg_find_export(&next, export_name)->tls_only = tls_only;
	for (unsigned i = 0; i < nallow && !rc; i++)
		rc = cfg_export_allow(&next, export_name, &allow[i]);
	if (!rc)
		rc = app_transact(a, &next, &ch);
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
	struct app_change ch = { .msg = APP_MSG_NONE };
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
		rc = app_transact(a, &next, &ch);
	cfg_free(&next);
	if (!rc)
		export_stop(a, export_name);
	return rc;
}

int appliance_export_allow(struct appliance *a, const char *export_name, bool allow,
			   const struct net_prefix *p, unsigned n)
{
	struct app_change ch = { .msg = APP_MSG_NONE };
	const struct cfg_export *ce;
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
	if (!allow && !n)
		cfg_find_export(&next, export_name)->nallow = 0;
	for (unsigned i = 0; i < n && !rc; i++)
		rc = allow ? cfg_export_allow(&next, export_name, &p[i])
			   : cfg_export_disallow(&next, export_name, &p[i]);
	if (!rc)
		rc = app_transact(a, &next, &ch);
	cfg_free(&next);
	if (rc)
		return rc;
	/* Saved: the running export follows (ours when READY, so it is in the server). */
	ce = cfg_find_export(&a->cfg, export_name);
	if (a->o.srv && ce) {
		rc = nbd_server_set_export_allow(a->o.srv, export_name, ce->allow, ce->nallow);
		if (rc == -ENOENT)
			rc = 0; /* saved but not started (logged when it failed to start) */
		if (rc) {
			/* Never serve it with a list wider than the one saved. */
			export_stop(a, export_name);
			app_log(a,
				"export %s: allow list saved but not applied (%s): the export is "
				"stopped until the next start",
				export_name, appliance_strerror(rc));
		}
	}
	return rc;
}

int appliance_volume_info(struct appliance *a, const char *name, struct appliance_volume_info *out)
{
	const struct cfg_volume *cv;
	const struct lvm_lv *lv;
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
	lv = a->vg ? lvm_vg_find_lv(a->vg, name) : NULL;
	if (lv && lv->has_creation) {
		out->created = lv->creation_time;
		snprintf(out->created_host, sizeof(out->created_host), "%s",
			 lv->creation_host ? lv->creation_host : "");
	}
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
