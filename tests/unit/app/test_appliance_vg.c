/* SPDX-License-Identifier: MIT */
/*
 * app/appliance against what lvm in Linux does to its VG between two boots: the appliance
 * makes some state and shuts down, "Linux" changes the VG the way lvm2 would (core/lvm's
 * model, lvm_disks_read / lvm_disks_write, and the pool's own calls where lvm's kernel side
 * sends dm-thin messages), then the appliance boots and the test checks what it shows:
 *   - lvcreate -V / -s, lvrename, lvremove, lvresize of thin LVs;
 *   - lvm interrupted between the steps of its two-commit protocol, or between the PVs;
 *   - lvm moving the pool's LVs (lvextend of _tdata, lvconvert --repair, split _tmeta);
 *   - VGs the appliance cannot serve, a damaged pool and the pre-LVM layout: a clear
 *     message, and nothing written to either disk.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/appliance.h"
#include "config/appliance_cmds.h"
#include "config/shell.h"
#include "core/base/util.h"
#include "core/blkdev_linear.h"
#include "core/lvm/lvm_disks.h"
#include "core/lvm/lvm_pv.h"
#include "core/lvm/lvm_vg.h"
#include "host/hostdev.h"
#include "tests/support/app_fixture.h"
#include "tests/support/harness.h"

#define META_BYTES (16 * MiB) /* 3 extents: pool_tmeta, lvol0_pmspare, one free */
#define DATA_BYTES (64 * MiB) /* 15 extents, all pool_tdata */
#define EXTENT	   (4 * MiB)
#define PE_START   2048u /* sectors, both PVs */
/* What "Linux" stamps on the LVs it makes. */
#define LX_TIME 1700000000ull
#define LX_HOST "linuxhost"

/* ---- Fixture: tests/support/app_fixture.h --------------------------------------------------- */

static bool has(const char *text, const char *s)
{
	if (strstr(text, s))
		return true;
	fprintf(stderr, "text lacks '%s':\n%s\n", s, text);
	return false;
}

static uint64_t txid(struct fx *f)
{
	struct thin_pool_status st;

	if (!appliance_pool(f->a) || thin_pool_get_status(appliance_pool(f->a), &st))
		return ~0ull;
	return st.transaction_id;
}

static const struct cfg_volume *vol(struct fx *f, const char *name)
{
	const struct cfg_volume *v = cfg_find_volume(appliance_config(f->a), name);

	if (!v)
		fprintf(stderr, "no volume %s\n", name);
	return v;
}

/* A disk's whole contents (free() it). */
static uint8_t *image(struct blkdev *d)
{
	uint8_t *p = malloc(d->nr_blocks * d->block_size);

	if (!p || blkdev_read(d, 0, (uint32_t)d->nr_blocks, p))
		abort();
	return p;
}

static bool same_image(struct blkdev *d, const uint8_t *before, const char *what)
{
	uint8_t *now = image(d);
	bool same = !memcmp(now, before, d->nr_blocks * d->block_size);

	if (!same)
		fprintf(stderr, "%s: the disk was written\n", what);
	free(now);
	return same;
}

/* The disk grew (a bigger virtual disk in Linux): a larger disk with the same contents. */
static void grow_disk(struct blkdev **d, uint64_t bytes)
{
	struct blkdev *n;
	uint8_t *p = image(*d);

	if (memdisk_create(bytes / 512, 512, &n) ||
	    blkdev_write(n, 0, (uint32_t)(*d)->nr_blocks, p))
		abort();
	free(p);
	blkdev_destroy(*d);
	*d = n;
}

/* ---- Volume contents ---------------------------------------------------------------------- */

static void pattern(uint8_t *buf, size_t len, uint32_t seed, uint64_t sector)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed * 31 + (sector + i / 512) * 7 + i);
}

/* Write (or check) 8 sectors of pattern @seed at each of @n sectors of thin device @id. */
static int vol_io(struct thin_pool *pool, uint32_t id, uint64_t size, uint32_t seed,
		  const uint64_t *sectors, unsigned n, bool write)
{
	struct thin_volume *tv = NULL;
	uint8_t want[4096], got[4096];
	int rc = thin_volume_open(pool, id, size, !write, &tv);

	for (unsigned i = 0; i < n && !rc; i++) {
		pattern(want, sizeof(want), seed, sectors[i]);
		if (write) {
			rc = blkdev_write(thin_volume_blkdev(tv), sectors[i], 8, want);
		} else {
			rc = blkdev_read(thin_volume_blkdev(tv), sectors[i], 8, got);
			if (!rc && memcmp(want, got, sizeof(got))) {
				fprintf(stderr, "device %u sector %" PRIu64 ": other data\n", id,
					sectors[i]);
				rc = -EILSEQ;
			}
		}
	}
	if (!rc && write)
		rc = blkdev_flush(thin_volume_blkdev(tv));
	if (tv)
		thin_volume_close(tv);
	return rc;
}

/* The same through the appliance's pool, by volume name. */
static int app_io(struct fx *f, const char *name, uint32_t seed, const uint64_t *sectors,
		  unsigned n, bool write)
{
	const struct cfg_volume *v = vol(f, name);

	if (!v || !appliance_pool(f->a))
		return -ENOENT;
	return vol_io(appliance_pool(f->a), v->id, v->size, seed, sectors, n, write);
}

/* ---- "Linux": lvm's view of the two disks -------------------------------------------------- */

struct lx {
	struct lvm_disk dk[3];
	unsigned n;
	struct lvm_vg *vg;
	struct lvm_lv *pool; /* the (first) thin-pool LV */
	/* the pool's devices while open, as lvm activates them */
	struct blkdev *tmeta, *tdata;
	struct thin_pool *tp;
};

static struct lvm_lv *find_pool(struct lvm_vg *vg)
{
	for (unsigned i = 0; i < vg->nr_lvs; i++)
		if (vg->lvs[i].nr_segs == 1 && vg->lvs[i].segs[0].type == LVM_SEG_THIN_POOL)
			return &vg->lvs[i];
	return NULL;
}

/* vgscan: the VG from the disks (0, or the error with the reason printed). */
static int lx_read(struct fx *f, struct lx *x)
{
	char why[200] = "";
	unsigned missing = 0;
	int rc;

	memset(x, 0, sizeof(*x));
	x->n = 2;
	x->dk[0].dev = f->meta;
	x->dk[1].dev = f->data;
	rc = lvm_disks_read(x->dk, x->n, NULL, &x->vg, &missing, why, sizeof(why));
	if (rc || missing) {
		fprintf(stderr, "lvm_disks_read: %d, %u missing: %s\n", rc, missing, why);
		return rc ? rc : -ENODEV;
	}
	x->pool = find_pool(x->vg);
	return 0;
}

/* Commit the model on every PV (seqno + 1), as every lvm command does. */
static int lx_write(struct lx *x)
{
	char why[200] = "";
	int rc = lvm_disks_write(x->vg, x->dk, x->n, why, sizeof(why));

	if (rc)
		fprintf(stderr, "lvm_disks_write: %d: %s\n", rc, why);
	x->pool = find_pool(x->vg);
	return rc;
}

static void lx_done(struct lx *x)
{
	lvm_vg_free(x->vg);
	x->vg = NULL;
}

/* A linear LV as dm-linear over its segments (what lvm activates). */
static int lx_lv_dev(struct lx *x, const char *name, struct blkdev **out)
{
	const struct lvm_lv *lv = lvm_vg_find_lv(x->vg, name);
	struct lvm_piece lp[16];
	struct blkdev_piece p[16];
	unsigned n = 0;
	int rc;

	if (!lv)
		return -ENOENT;
	rc = lvm_lv_map(x->vg, lv, lp, 16, &n);
	for (unsigned i = 0; i < n && !rc; i++) {
		p[i] = (struct blkdev_piece){ NULL, lp[i].pv_sector, lp[i].sectors };
		for (unsigned d = 0; d < x->n; d++)
			if (x->dk[d].pv == (int)lp[i].pv)
				p[i].lower = x->dk[d].dev;
	}
	return rc ? rc : blkdev_linear_create(p, n, out);
}

/* Activate the pool (dm-thin on its _tmeta and _tdata). */
static int lx_pool_open(struct lx *x)
{
	struct thin_pool_opts o;
	char why[200] = "";
	int rc;

	thin_pool_default_opts(&o);
	rc = lx_lv_dev(x, x->pool->segs[0].metadata, &x->tmeta);
	if (!rc)
		rc = lx_lv_dev(x, x->pool->segs[0].pool, &x->tdata);
	if (!rc)
		rc = thin_pool_open(x->tmeta, x->tdata, &o, why, sizeof(why), &x->tp);
	if (rc)
		fprintf(stderr, "lx_pool_open: %d: %s\n", rc, why);
	return rc;
}

static int lx_pool_close(struct lx *x)
{
	int rc = x->tp ? thin_pool_close(x->tp) : 0;

	x->tp = NULL;
	blkdev_destroy(x->tmeta);
	blkdev_destroy(x->tdata);
	x->tmeta = x->tdata = NULL;
	return rc;
}

static uint32_t lx_next_device_id(struct lx *x)
{
	uint32_t max = 0;

	for (unsigned i = 0; i < x->vg->nr_lvs; i++) {
		const struct lvm_lv *lv = &x->vg->lvs[i];

		if (lv->nr_segs == 1 && lv->segs[0].type == LVM_SEG_THIN &&
		    lv->segs[0].device_id > max)
			max = lv->segs[0].device_id;
	}
	return max + 1;
}

static void lx_id(const char *name, char out[LVM_ID_LEN + 1])
{
	uint8_t b[LVM_ID_LEN];

	for (unsigned i = 0; i < LVM_ID_LEN; i++)
		b[i] = (uint8_t)(name[i % strlen(name)] * 13 + i * 101);
	lvm_id_from_bytes(b, out);
}

/* How far an lvm command gets before the guest dies. */
enum lx_stop {
	LX_AFTER_COMMIT1, /* the VG with the message, dm-thin never told */
	LX_AFTER_KERNEL,  /* dm-thin done, the second VG commit missing */
	LX_COMPLETE,
};

/*
 * lvcreate -V SIZE --thinpool pool -n NAME, or lvcreate -s ORIGIN -n NAME (with @origin):
 * lvm's two commits around the pool's messages (docs/lvm2-format.md §11.2). A snapshot gets
 * ACTIVATION_SKIP, as lvcreate -s sets it.
 */
static int lx_lvcreate(struct fx *f, const char *name, uint64_t extents, const char *origin,
		       enum lx_stop stop)
{
	struct lx x;
	struct lvm_lv *lv;
	struct lvm_seg *s;
	uint32_t id, origin_id = 0;
	uint64_t t;
	char lvid[LVM_ID_LEN + 1];
	int rc = lx_read(f, &x);

	if (rc)
		return rc;
	id = lx_next_device_id(&x);
	if (origin) {
		lv = lvm_vg_find_lv(x.vg, origin);
		if (!lv) {
			lx_done(&x);
			return -ENOENT;
		}
		origin_id = lv->segs[0].device_id;
		extents = lvm_lv_extents(lv);
	}
	t = x.pool->segs[0].transaction_id;
	lx_id(name, lvid);
	rc = lvm_vg_add_lv(x.vg, name, lvid, LVM_LV_READ | LVM_LV_WRITE | LVM_LV_VISIBLE, &lv);
	if (!rc)
		rc = lvm_lv_set_creation(lv, LX_TIME, LX_HOST);
	if (!rc && origin)
		rc = lvm_strs_add(&lv->flags, "ACTIVATION_SKIP");
	if (!rc)
		rc = lvm_lv_add_seg(lv, LVM_SEG_THIN, extents, &s);
	if (rc)
		goto out;
	x.pool = find_pool(x.vg);
	snprintf(s->thin_pool, sizeof(s->thin_pool), "%s", x.pool->name);
	s->device_id = id;
	s->transaction_id = t + 1;
	if (origin)
		snprintf(s->origin, sizeof(s->origin), "%s", origin);
	x.pool->segs[0].transaction_id = t + 1;
	rc = lvm_seg_add_message_create(&x.pool->segs[0], name);
	if (!rc)
		rc = lx_write(&x);
	if (rc || stop == LX_AFTER_COMMIT1)
		goto out;
	rc = lx_pool_open(&x);
	if (!rc)
		rc = origin ? thin_pool_create_snap(x.tp, id, origin_id)
			    : thin_pool_create_thin(x.tp, id);
	if (!rc)
		rc = thin_pool_set_transaction_id(x.tp, t, t + 1);
	if (!rc)
		rc = lx_pool_close(&x);
	else
		lx_pool_close(&x);
	if (rc || stop == LX_AFTER_KERNEL)
		goto out;
	lvm_seg_clear_messages(&x.pool->segs[0]);
	rc = lx_write(&x);
out:
	lx_done(&x);
	return rc;
}

/* lvremove VG/NAME of a thin LV: the same protocol with `delete = ID`. */
static int lx_lvremove(struct fx *f, const char *name, enum lx_stop stop)
{
	struct lx x;
	struct lvm_lv *lv;
	uint32_t id;
	uint64_t t;
	int rc = lx_read(f, &x);

	if (rc)
		return rc;
	lv = lvm_vg_find_lv(x.vg, name);
	if (!lv) {
		lx_done(&x);
		return -ENOENT;
	}
	id = lv->segs[0].device_id;
	lvm_vg_remove_lv(x.vg, lv);
	x.pool = find_pool(x.vg);
	t = x.pool->segs[0].transaction_id;
	x.pool->segs[0].transaction_id = t + 1;
	rc = lvm_seg_add_message_delete(&x.pool->segs[0], id);
	if (!rc)
		rc = lx_write(&x);
	if (rc || stop == LX_AFTER_COMMIT1)
		goto out;
	rc = lx_pool_open(&x);
	if (!rc)
		rc = thin_pool_delete_thin(x.tp, id);
	if (!rc)
		rc = thin_pool_set_transaction_id(x.tp, t, t + 1);
	if (!rc)
		rc = lx_pool_close(&x);
	else
		lx_pool_close(&x);
	if (rc || stop == LX_AFTER_KERNEL)
		goto out;
	lvm_seg_clear_messages(&x.pool->segs[0]);
	rc = lx_write(&x);
out:
	lx_done(&x);
	return rc;
}

/* lvrename: one commit; snapshots' origin follows (lvm renames the references). */
static int lx_lvrename(struct fx *f, const char *from, const char *to)
{
	struct lx x;
	struct lvm_lv *lv;
	int rc = lx_read(f, &x);

	if (rc)
		return rc;
	lv = lvm_vg_find_lv(x.vg, from);
	if (!lv) {
		lx_done(&x);
		return -ENOENT;
	}
	snprintf(lv->name, sizeof(lv->name), "%s", to);
	for (unsigned i = 0; i < x.vg->nr_lvs; i++) {
		struct lvm_seg *s = &x.vg->lvs[i].segs[0];

		if (s->type == LVM_SEG_THIN && !strcmp(s->origin, from))
			snprintf(s->origin, sizeof(s->origin), "%s", to);
	}
	rc = lx_write(&x);
	lx_done(&x);
	return rc;
}

/* lvresize -L of a thin LV: its extent_count, one commit (dm-thin stores no size). */
static int lx_lvresize(struct fx *f, const char *name, uint64_t extents)
{
	struct lx x;
	struct lvm_lv *lv;
	int rc = lx_read(f, &x);

	if (rc)
		return rc;
	lv = lvm_vg_find_lv(x.vg, name);
	if (!lv) {
		lx_done(&x);
		return -ENOENT;
	}
	lv->segs[0].extent_count = extents;
	rc = lx_write(&x);
	lx_done(&x);
	return rc;
}

static const struct lvm_lv *lx_lv(struct lx *x, const char *name)
{
	const struct lvm_lv *lv = lvm_vg_find_lv(x->vg, name);

	if (!lv)
		fprintf(stderr, "the VG has no LV %s\n", name);
	return lv;
}

static bool lv_has(const struct lvm_strs *l, const char *s)
{
	for (unsigned i = 0; i < l->n; i++)
		if (!strcmp(l->v[i], s))
			return true;
	return false;
}

/* ---- 1. lvm's ordinary commands ------------------------------------------------------------ */

static const uint64_t SECTORS[] = { 0, 8192, 20000 };

/*
 * lvcreate -V, lvcreate -s of an appliance volume, lvrename (of an exported volume and of a
 * snapshot's origin), lvremove, lvresize: the appliance shows exactly those names, sizes and
 * origins, the data is intact, exports follow the renamed LV, Linux's LVs are not exported,
 * the pool checks clean, and lvm's creation_time/host outlive the appliance's next commit.
 */
TEST(lvm_commands_are_shown_after_boot)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	struct appliance_volume_info info;
	struct nbd_export_info ei;
	const struct cfg_volume *v;
	const struct lvm_lv *lv;
	struct lx x;
	uint64_t t;

	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "thin create data 12M"), 0);
	ok_eq(sh(f, "thin create gone 4M"), 0);
	ok_eq(sh(f, "thin create small 6M"), 0); /* not whole extents: a size tag */
	ok_eq(app_io(f, "data", 1, SECTORS, ARRAY_SIZE(SECTORS), true), 0);
	ok_eq(app_io(f, "small", 2, SECTORS, 1, true), 0);
	t = txid(f);
	ok_eq(t, 4);
	shutdown_app(f);

	ok_eq(lx_lvcreate(f, "lnx", 2, NULL, LX_COMPLETE), 0);
	ok_eq(lx_lvcreate(f, "datasnap", 0, "data", LX_COMPLETE), 0);
	ok_eq(lx_lvrename(f, "data", "data2"), 0);
	ok_eq(lx_lvrename(f, "vol0", "root"), 0);
	ok_eq(lx_lvremove(f, "gone", LX_COMPLETE), 0);
	ok_eq(lx_lvresize(f, "small", 4), 0);

	ok_eq(boot_on(f, true), 0);
	if (!ok_eq(appliance_state(f->a), APPLIANCE_READY)) {
		fprintf(stderr, "%s\n%s", appliance_problem(f->a), f->log);
		goto out;
	}
	ok_eq(txid(f), t + 3);
	ok_eq(appliance_config(f->a)->nvols, 5);
	ok(!cfg_find_volume(appliance_config(f->a), "vol0"));
	ok(!cfg_find_volume(appliance_config(f->a), "data"));
	ok(!cfg_find_volume(appliance_config(f->a), "gone"));
	ok((v = vol(f, "root")) && v->size == DATA_BYTES - MiB - 3 * MiB && !v->origin[0]);
	ok((v = vol(f, "data2")) && v->size == 12 * MiB && !v->origin[0]);
	ok((v = vol(f, "datasnap")) && v->size == 12 * MiB && !strcmp(v->origin, "data2"));
	ok((v = vol(f, "lnx")) && v->size == 2 * EXTENT && !v->origin[0]);
	/* lvresize made the size tag stale: the LV's size wins. */
	ok((v = vol(f, "small")) && v->size == 4 * EXTENT);
	/* The export follows its LV; Linux's LVs are not exported. */
	ok_eq(appliance_config(f->a)->nexps, 1);
	ok(cfg_find_export(appliance_config(f->a), "vol0") &&
	   !strcmp(cfg_find_export(appliance_config(f->a), "vol0")->volume, "root"));
	ok_eq(nbd_server_export_info(f->srv, 0, &ei), 0);
	ok(!strcmp(ei.name, "vol0"));
	ok_eq(nbd_server_export_info(f->srv, 1, &ei), -ENOENT);
	/* The data, in the renamed volume and in Linux's snapshot of it. */
	ok_eq(app_io(f, "data2", 1, SECTORS, ARRAY_SIZE(SECTORS), false), 0);
	ok_eq(app_io(f, "datasnap", 1, SECTORS, ARRAY_SIZE(SECTORS), false), 0);
	ok_eq(app_io(f, "small", 2, SECTORS, 1, false), 0);
	ok_eq(appliance_volume_info(f->a, "lnx", &info), 0);
	ok(info.in_pool && info.created == LX_TIME && !strcmp(info.created_host, LX_HOST));
	ok_eq(sh(f, "thin info datasnap"), 0);
	ok(has(f->out, "origin            data2"));
	ok_eq(sh(f, "thin list"), 0);
	ok(has(f->out, "5 volume(s)"));
	ok_eq(sh(f, "pool check"), 0);
	ok(has(f->out, "pool check: clean"));
	/* The appliance's next change keeps what lvm wrote. */
	ok_eq(sh(f, "thin create after 4M"), 0);
	ok_eq(sh(f, "pool check"), 0);
	ok(has(f->out, "pool check: clean"));
	shutdown_app(f);
	if (ok_eq(lx_read(f, &x), 0)) {
		ok_eq(x.dk[0].state, LVM_DISK_CURRENT);
		ok_eq(x.dk[1].state, LVM_DISK_CURRENT);
		ok_eq(x.pool->segs[0].transaction_id, t + 4);
		ok_eq(x.pool->segs[0].nr_msgs, 0);
		ok((lv = lx_lv(&x, "lnx")) && lv->has_creation && lv->creation_time == LX_TIME &&
		   !strcmp(lv->creation_host, LX_HOST) && !lv->tags.n);
		ok((lv = lx_lv(&x, "datasnap")) && lv_has(&lv->flags, "ACTIVATION_SKIP") &&
		   !strcmp(lv->segs[0].origin, "data2") && lv->creation_time == LX_TIME);
		ok((lv = lx_lv(&x, "root")) && lv_has(&lv->tags, "thinbox_export=vol0"));
		ok((lv = lx_lv(&x, "small")) && lv->segs[0].extent_count == 4);
		ok(!lvm_vg_find_lv(x.vg, "gone"));
		lx_done(&x);
	}
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok_eq(appliance_config(f->a)->nvols, 6);
out:
	fx_free(f);
}

/* ---- 2. lvm interrupted -------------------------------------------------------------------- */

static bool device_in_pool(struct fx *f, uint32_t id)
{
	return thin_md_device_exists(thin_pool_md(appliance_pool(f->a)), id) == 1;
}

static uint32_t seqno_now(struct fx *f)
{
	struct appliance_vg_info vi;

	return appliance_vg_info(f->a, &vi) ? 0 : vi.seqno;
}

/*
 * The guest died after lvm's first commit (VG at T + 1 with the create message, dm-thin never
 * told): the appliance creates the device (a snapshot of the origin for `lvcreate -s`),
 * moves the pool to T + 1, clears the message and is READY.
 */
TEST(lvcreate_cut_after_first_commit_is_finished)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	struct appliance_vg_info vi;
	uint64_t t;

	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "thin create data 12M"), 0);
	ok_eq(app_io(f, "data", 3, SECTORS, ARRAY_SIZE(SECTORS), true), 0);
	t = txid(f);
	shutdown_app(f);
	ok_eq(lx_lvcreate(f, "lnx", 1, NULL, LX_AFTER_COMMIT1), 0);
	ok_eq(boot_on(f, true), 0);
	if (!ok_eq(appliance_state(f->a), APPLIANCE_READY))
		fprintf(stderr, "%s\n", appliance_problem(f->a));
	ok(has(f->log, "finished a change that was cut short"));
	ok_eq(txid(f), t + 1);
	ok_eq(appliance_vg_info(f->a, &vi), 0);
	ok_eq(vi.transaction_id, t + 1);
	ok_eq(vi.messages, 0);
	ok(vol(f, "lnx") && device_in_pool(f, vol(f, "lnx")->id));
	shutdown_app(f);

	ok_eq(lx_lvcreate(f, "snap", 0, "data", LX_AFTER_COMMIT1), 0);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok(has(f->log, "finished a change that was cut short"));
	ok_eq(txid(f), t + 2);
	ok_eq(appliance_vg_info(f->a, &vi), 0);
	ok_eq(vi.messages, 0);
	/* A snapshot, not an empty device: it shares the origin's blocks. */
	ok(vol(f, "snap") && !strcmp(vol(f, "snap")->origin, "data"));
	ok_eq(app_io(f, "snap", 3, SECTORS, ARRAY_SIZE(SECTORS), false), 0);
	ok_eq(sh(f, "pool check"), 0);
	ok(has(f->out, "pool check: clean"));
	shutdown_app(f);
	/* Both PVs carry the cleared VG; a second boot has nothing to finish. */
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok(!strstr(f->log, "cut short"));
	ok_eq(txid(f), t + 2);
	fx_free(f);
}

/*
 * The kernel part was done but the second commit is missing (ids equal, the message still
 * there): the message is cleared with one VG commit, nothing is sent twice.
 */
TEST(lvcreate_cut_before_second_commit_is_cleared)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	struct appliance_vg_info vi;
	uint64_t t;
	uint32_t seq;
	struct lx x;

	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "thin create data 12M"), 0);
	ok_eq(app_io(f, "data", 4, SECTORS, ARRAY_SIZE(SECTORS), true), 0);
	t = txid(f);
	shutdown_app(f);
	ok_eq(lx_lvcreate(f, "snap", 0, "data", LX_AFTER_KERNEL), 0);
	ok_eq(lx_read(f, &x), 0);
	seq = x.vg->seqno;
	ok_eq(x.pool->segs[0].nr_msgs, 1);
	lx_done(&x);
	ok_eq(boot_on(f, true), 0);
	if (!ok_eq(appliance_state(f->a), APPLIANCE_READY))
		fprintf(stderr, "%s\n", appliance_problem(f->a));
	ok(!strstr(f->log, "cut short"));
	ok(!strstr(f->log, "warning"));
	ok_eq(txid(f), t + 1);
	ok_eq(appliance_vg_info(f->a, &vi), 0);
	ok_eq(vi.transaction_id, t + 1);
	ok_eq(vi.messages, 0);
	ok_eq(vi.seqno, seq + 1);
	ok(vol(f, "snap") && device_in_pool(f, vol(f, "snap")->id));
	ok_eq(app_io(f, "snap", 4, SECTORS, ARRAY_SIZE(SECTORS), false), 0);
	ok_eq(sh(f, "pool check"), 0);
	ok(has(f->out, "pool check: clean"));
	fx_free(f);
}

/* The same two cuts of lvremove's `delete = ID`. */
TEST(lvremove_cut_is_finished_or_cleared)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	struct appliance_vg_info vi;
	uint32_t id_a, id_b;
	uint64_t t;

	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "thin create a 4M"), 0);
	ok_eq(sh(f, "thin create b 4M"), 0);
	ok_eq(sh(f, "thin create keep 12M"), 0);
	ok_eq(app_io(f, "keep", 5, SECTORS, ARRAY_SIZE(SECTORS), true), 0);
	id_a = vol(f, "a")->id;
	id_b = vol(f, "b")->id;
	t = txid(f);
	shutdown_app(f);

	ok_eq(lx_lvremove(f, "a", LX_AFTER_COMMIT1), 0);
	ok_eq(boot_on(f, true), 0);
	if (!ok_eq(appliance_state(f->a), APPLIANCE_READY))
		fprintf(stderr, "%s\n", appliance_problem(f->a));
	ok(has(f->log, "finished a change that was cut short"));
	ok(!strstr(f->log, "have no LV"));
	ok(!cfg_find_volume(appliance_config(f->a), "a"));
	ok(!device_in_pool(f, id_a));
	ok_eq(txid(f), t + 1);
	ok_eq(appliance_vg_info(f->a, &vi), 0);
	ok_eq(vi.messages, 0);
	shutdown_app(f);

	ok_eq(lx_lvremove(f, "b", LX_AFTER_KERNEL), 0);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok(!strstr(f->log, "cut short"));
	ok(!strstr(f->log, "warning"));
	ok(!cfg_find_volume(appliance_config(f->a), "b"));
	ok(!device_in_pool(f, id_b));
	ok_eq(txid(f), t + 2);
	ok_eq(appliance_vg_info(f->a, &vi), 0);
	ok_eq(vi.transaction_id, t + 2);
	ok_eq(vi.messages, 0);
	ok_eq(appliance_config(f->a)->nvols, 2);
	ok_eq(app_io(f, "keep", 5, SECTORS, ARRAY_SIZE(SECTORS), false), 0);
	ok_eq(sh(f, "pool check"), 0);
	ok(has(f->out, "pool check: clean"));
	fx_free(f);
}

/* Write the model as the next seqno on disk @d alone: precommitted, committed with @commit. */
static int lx_write_one(struct lx *x, unsigned d, bool commit)
{
	char why[200] = "", *text = NULL;
	size_t len = 0;
	int rc;

	x->vg->seqno++;
	rc = lvm_vg_to_text(x->vg, &text, &len, why, sizeof(why));
	if (!rc)
		rc = lvm_pv_precommit(x->dk[d].dev, text, len, why, sizeof(why));
	if (!rc && commit)
		rc = lvm_pv_commit(x->dk[d].dev, why, sizeof(why));
	if (rc)
		fprintf(stderr, "lx_write_one: %d: %s\n", rc, why);
	free(text);
	return rc;
}

/* After the appliance's next change both PVs hold the same, newest copy. */
static void both_current(struct fx *f, uint32_t seqno)
{
	struct lx x;

	if (!ok_eq(lx_read(f, &x), 0))
		return;
	ok_eq(x.dk[0].state, LVM_DISK_CURRENT);
	ok_eq(x.dk[1].state, LVM_DISK_CURRENT);
	ok_eq(x.dk[0].seqno, seqno);
	ok_eq(x.dk[1].seqno, seqno);
	lx_done(&x);
}

/*
 * lvm cut between the PVs: (1) a rename precommitted on the metadata PV only (never
 * committed): the old copy is in force; (2) a rename committed on one PV, the other stale,
 * either way round: the newest copy is used. The appliance's next change rewrites both.
 */
TEST(vg_cut_between_the_pvs_uses_the_newest_copy)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	struct lx x;
	uint32_t seq;

	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "thin create data 12M"), 0);
	seq = seqno_now(f);
	shutdown_app(f);

	/* (1) precommit only, on one PV */
	ok_eq(lx_read(f, &x), 0);
	snprintf(lvm_vg_find_lv(x.vg, "data")->name, LVM_NAME_MAX + 1, "renamed");
	ok_eq(lx_write_one(&x, 0, false), 0);
	lx_done(&x);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok(vol(f, "data") && !cfg_find_volume(appliance_config(f->a), "renamed"));
	ok_eq(seqno_now(f), seq);
	ok_eq(sh(f, "thin create more 4M"), 0);
	ok_eq(seqno_now(f), seq + 2);
	shutdown_app(f);
	both_current(f, seq + 2);
	seq += 2;

	/* (2) committed on one PV only, the other one stale; each disk in turn */
	for (unsigned d = 0; d < 2; d++) {
		char name[16];

		snprintf(name, sizeof(name), "on-disk%u", d);
		ok_eq(lx_read(f, &x), 0);
		snprintf(lvm_vg_find_lv(x.vg, d ? "on-disk0" : "data")->name, LVM_NAME_MAX + 1,
			 "%s", name);
		ok_eq(lx_write_one(&x, d, true), 0);
		lx_done(&x);
		ok_eq(lx_read(f, &x), 0);
		ok_eq(x.dk[d].state, LVM_DISK_CURRENT);
		ok_eq(x.dk[!d].state, LVM_DISK_STALE);
		lx_done(&x);

		ok_eq(boot_on(f, true), 0);
		ok_eq(appliance_state(f->a), APPLIANCE_READY);
		ok(has(f->log, "is not the newest"));
		ok(vol(f, name));
		ok_eq(seqno_now(f), seq + 1);
		ok_eq(appliance_config(f->a)->nvols, 3);
		ok_eq(sh(f, "export add %s", name), 0);
		ok_eq(seqno_now(f), seq + 2);
		shutdown_app(f);
		both_current(f, seq + 2);
		seq += 2;
		ok_eq(boot_on(f, true), 0);
		ok(!strstr(f->log, "not the newest"));
		ok(cfg_find_export(appliance_config(f->a), name));
		shutdown_app(f);
	}
	fx_free(f);
}

/* ---- 3. lvm moved the pool's LVs ----------------------------------------------------------- */

static uint64_t data_blocks(struct fx *f)
{
	struct thin_pool_status st;

	return thin_pool_get_status(appliance_pool(f->a), &st) ? 0 : st.data_total;
}

/* Write (or check) all of volume @name, 1 MiB at a time. */
static int fill(struct fx *f, const char *name, uint32_t seed, bool write)
{
	const struct cfg_volume *v = vol(f, name);
	struct thin_volume *tv = NULL;
	uint8_t *want = malloc(MiB), *got = malloc(MiB);
	int rc = v && appliance_pool(f->a)
		     ? thin_volume_open(appliance_pool(f->a), v->id, v->size, !write, &tv)
		     : -ENOENT;

	for (uint64_t s = 0; !rc && s < v->size / 512; s += 2048) {
		pattern(want, MiB, seed, s);
		if (write) {
			rc = blkdev_write(thin_volume_blkdev(tv), s, 2048, want);
		} else {
			rc = blkdev_read(thin_volume_blkdev(tv), s, 2048, got);
			if (!rc && memcmp(want, got, MiB))
				rc = -EILSEQ;
		}
	}
	if (!rc && write)
		rc = blkdev_flush(thin_volume_blkdev(tv));
	if (tv)
		thin_volume_close(tv);
	free(want);
	free(got);
	return rc;
}

/* pvresize of the data PV after its disk grew to @bytes. */
static struct lvm_pv *lx_pvresize(struct lx *x, uint64_t bytes)
{
	struct lvm_pv *pv = &x->vg->pvs[x->dk[1].pv];

	pv->dev_size = bytes / 512;
	pv->pe_count = (pv->dev_size - pv->pe_start) / x->vg->extent_size;
	return pv;
}

/* lvcreate -L of a linear LV on PV @pv at extent @pe (lvm's allocation, stated). */
static int lx_linear(struct lx *x, const char *name, unsigned pv, uint64_t pe, uint64_t count,
		     uint32_t status)
{
	struct lvm_lv *lv;
	struct lvm_seg *s;
	char id[LVM_ID_LEN + 1];
	int rc;

	lx_id(name, id);
	rc = lvm_vg_add_lv(x->vg, name, id, status, &lv);
	if (!rc)
		rc = lvm_lv_set_creation(lv, LX_TIME, LX_HOST);
	if (!rc)
		rc = lvm_lv_add_seg(lv, LVM_SEG_STRIPED, count, &s);
	if (!rc)
		s->pv = pv, s->pe = pe;
	x->pool = find_pool(x->vg);
	return rc;
}

/*
 * The data disk grew; in Linux: pvresize, a linear LV on the first new extent, then lvextend
 * of the pool's data over the rest (pool_tdata gets a second segment, the pool LV grows).
 * The appliance opens the pool on both segments and grows into them (as dm-thin does at
 * activation), a volume larger than the old pool is written and read back, and nothing
 * touches the linear LV in between.
 */
TEST(lvextend_tdata_second_segment)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	struct appliance_vg_info vi;
	uint8_t lin[4096], chk[4096];
	uint64_t old_blocks;
	struct lx x;
	unsigned dpv;

	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "thin create data 12M"), 0);
	ok_eq(app_io(f, "data", 6, SECTORS, ARRAY_SIZE(SECTORS), true), 0);
	old_blocks = data_blocks(f);
	ok_eq(old_blocks, 15 * EXTENT / (64 * 1024));
	shutdown_app(f);

	grow_disk(&f->data, DATA_BYTES + 32 * MiB); /* 23 extents */
	ok_eq(lx_read(f, &x), 0);
	dpv = (unsigned)x.dk[1].pv;
	ok_eq(lx_pvresize(&x, DATA_BYTES + 32 * MiB)->pe_count, 23);
	ok_eq(lx_linear(&x, "lxlin", dpv, 15, 1, LVM_LV_READ | LVM_LV_WRITE | LVM_LV_VISIBLE), 0);
	{
		struct lvm_lv *tdata = lvm_vg_find_lv(x.vg, "pool_tdata");
		struct lvm_seg *s;

		ok_eq(lvm_lv_add_seg(tdata, LVM_SEG_STRIPED, 7, &s), 0);
		s->pv = dpv, s->pe = 16;
		x.pool = find_pool(x.vg);
		x.pool->segs[0].extent_count += 7;
	}
	ok_eq(lx_write(&x), 0);
	lx_done(&x);
	/* Something of Linux's on the linear LV (extent 15 of the data PV). */
	memset(lin, 0x5a, sizeof(lin));
	ok_eq(blkdev_write(f->data, PE_START + 15 * (EXTENT / 512), 8, lin), 0);

	ok_eq(boot_on(f, true), 0);
	if (!ok_eq(appliance_state(f->a), APPLIANCE_READY)) {
		fprintf(stderr, "%s\n", appliance_problem(f->a));
		goto out;
	}
	ok_eq(appliance_vg_info(f->a, &vi), 0);
	ok_eq(vi.data_bytes, 22 * EXTENT);
	ok_eq(data_blocks(f), 22 * EXTENT / (64 * 1024));
	ok(!cfg_find_volume(appliance_config(f->a), "lxlin"));
	ok_eq(sh(f, "pool resize-data"), 0);
	ok_eq(data_blocks(f), 22 * EXTENT / (64 * 1024));
	ok_eq(app_io(f, "data", 6, SECTORS, ARRAY_SIZE(SECTORS), false), 0);
	/* More than the old data LV held: blocks in the second segment are used. */
	ok_eq(sh(f, "thin create big 72M"), 0);
	ok_eq(fill(f, "big", 7, true), 0);
	ok_eq(fill(f, "big", 7, false), 0);
	ok_eq(sh(f, "pool check"), 0);
	ok(has(f->out, "pool check: clean"));
	shutdown_app(f);
	ok_eq(blkdev_read(f->data, PE_START + 15 * (EXTENT / 512), 8, chk), 0);
	ok(!memcmp(lin, chk, sizeof(chk)));
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok_eq(fill(f, "big", 7, false), 0);
	ok_eq(app_io(f, "data", 6, SECTORS, ARRAY_SIZE(SECTORS), false), 0);
	if (ok_eq(lx_read(f, &x), 0)) {
		ok(lvm_vg_find_lv(x.vg, "lxlin"));
		ok_eq(lvm_vg_find_lv(x.vg, "pool_tdata")->nr_segs, 2);
		lx_done(&x);
	}
out:
	fx_free(f);
}

/*
 * The same with lvm merging the extension into pool_tdata's one segment, and nobody running
 * `pool resize-data`: the appliance just opens a pool whose data LV is larger than its
 * nr_blocks and grows into it.
 */
TEST(lvextend_tdata_same_segment)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	struct lx x;

	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "thin create data 12M"), 0);
	ok_eq(app_io(f, "data", 8, SECTORS, ARRAY_SIZE(SECTORS), true), 0);
	shutdown_app(f);
	grow_disk(&f->data, DATA_BYTES + 16 * MiB); /* 19 extents */
	ok_eq(lx_read(f, &x), 0);
	lx_pvresize(&x, DATA_BYTES + 16 * MiB);
	lvm_vg_find_lv(x.vg, "pool_tdata")->segs[0].extent_count += 4;
	x.pool->segs[0].extent_count += 4;
	ok_eq(lx_write(&x), 0);
	lx_done(&x);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok_eq(data_blocks(f), 19 * EXTENT / (64 * 1024));
	ok_eq(app_io(f, "data", 8, SECTORS, ARRAY_SIZE(SECTORS), false), 0);
	ok_eq(sh(f, "thin create big 72M"), 0);
	ok_eq(fill(f, "big", 9, true), 0);
	ok_eq(fill(f, "big", 9, false), 0);
	ok_eq(sh(f, "pool check"), 0);
	ok(has(f->out, "pool check: clean"));
	fx_free(f);
}

/* Copy @sectors from @from to @to on @d (through a buffer: the ranges may overlap). */
static void copy_sectors(struct blkdev *d, uint64_t from, uint64_t to, uint64_t sectors)
{
	uint8_t *buf = malloc(sectors * 512);

	if (!buf || blkdev_read(d, from, (uint32_t)sectors, buf) ||
	    blkdev_write(d, to, (uint32_t)sectors, buf))
		abort();
	free(buf);
}

/*
 * lvconvert --repair: the pool's metadata is rebuilt on the spare's extents, the spare becomes
 * pool_tmeta and the old one pool_meta0 (a visible linear LV kept for the administrator),
 * and a new spare is allocated. The appliance follows the new segments: the data reads
 * back, changes work, and pool_meta0 is never written.
 */
TEST(lvconvert_repair_swaps_in_the_spare)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	struct appliance_vg_info vi;
	struct lvm_lv *lv;
	uint8_t *meta0;
	struct lx x;

	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "thin create data 12M"), 0);
	ok_eq(app_io(f, "data", 10, SECTORS, ARRAY_SIZE(SECTORS), true), 0);
	shutdown_app(f);

	ok_eq(lx_read(f, &x), 0);
	/* thin_repair's output: here an exact copy (pool_tmeta is extent 0, the spare 1). */
	ok_eq(lvm_vg_find_lv(x.vg, "pool_tmeta")->segs[0].pe, 0);
	ok_eq(lvm_vg_find_lv(x.vg, "lvol0_pmspare")->segs[0].pe, 1);
	copy_sectors(f->meta, PE_START, PE_START + EXTENT / 512, EXTENT / 512);
	lv = lvm_vg_find_lv(x.vg, "pool_tmeta");
	snprintf(lv->name, sizeof(lv->name), "pool_meta0");
	lv->status |= LVM_LV_VISIBLE;
	lv = lvm_vg_find_lv(x.vg, "lvol0_pmspare");
	snprintf(lv->name, sizeof(lv->name), "pool_tmeta");
	ok_eq(
	    lx_linear(&x, "lvol0_pmspare", (unsigned)x.dk[0].pv, 2, 1, LVM_LV_READ | LVM_LV_WRITE),
	    0);
	ok_eq(lx_write(&x), 0);
	lx_done(&x);
	meta0 = malloc(EXTENT);
	ok_eq(blkdev_read(f->meta, PE_START, EXTENT / 512, meta0), 0);

	ok_eq(boot_on(f, true), 0);
	if (!ok_eq(appliance_state(f->a), APPLIANCE_READY)) {
		fprintf(stderr, "%s\n", appliance_problem(f->a));
		goto out;
	}
	ok_eq(appliance_vg_info(f->a, &vi), 0);
	ok_eq(vi.meta_bytes, EXTENT);
	ok_eq(appliance_config(f->a)->nvols, 2);
	ok(!cfg_find_volume(appliance_config(f->a), "pool_meta0"));
	ok_eq(app_io(f, "data", 10, SECTORS, ARRAY_SIZE(SECTORS), false), 0);
	ok_eq(sh(f, "thin snapshot data s1"), 0);
	ok_eq(sh(f, "thin delete data"), 0);
	ok_eq(app_io(f, "s1", 10, SECTORS, ARRAY_SIZE(SECTORS), false), 0);
	ok_eq(sh(f, "pool check"), 0);
	ok(has(f->out, "pool check: clean"));
	shutdown_app(f);
	{
		uint8_t *now = malloc(EXTENT);

		ok_eq(blkdev_read(f->meta, PE_START, EXTENT / 512, now), 0);
		ok(!memcmp(now, meta0, EXTENT));
		free(now);
	}
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok_eq(app_io(f, "s1", 10, SECTORS, ARRAY_SIZE(SECTORS), false), 0);
	if (ok_eq(lx_read(f, &x), 0)) {
		ok((lv = lvm_vg_find_lv(x.vg, "pool_meta0")) && (lv->status & LVM_LV_VISIBLE));
		ok((lv = lvm_vg_find_lv(x.vg, "pool_tmeta")) && lv->segs[0].pe == 1);
		lx_done(&x);
	}
out:
	free(meta0);
	fx_free(f);
}

/*
 * pool_tmeta in two segments at different places of the metadata PV (lvm moved it: its
 * first extent now at the PV's last extent, the rest at the PV's start), the metadata copied
 * accordingly and its old last extent zeroed: the appliance opens the pool on both pieces,
 * the whole LV (meta_bytes), and the data reads back.
 */
TEST(tmeta_in_two_segments)
{
	struct fx *f = fx_new(32 * MiB, DATA_BYTES); /* 7 extents: tmeta 3, spare 3, 1 free */
	struct appliance_vg_info vi;
	struct lvm_lv *lv;
	struct lvm_seg *s;
	struct lx x;
	const uint64_t ext = EXTENT / 512;

	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "thin create data 12M"), 0);
	ok_eq(app_io(f, "data", 11, SECTORS, ARRAY_SIZE(SECTORS), true), 0);
	shutdown_app(f);

	ok_eq(lx_read(f, &x), 0);
	lv = lvm_vg_find_lv(x.vg, "pool_tmeta");
	ok(lv->nr_segs == 1 && lv->segs[0].pe == 0 && lv->segs[0].extent_count == 3);
	/* pvmove of extents 0..2 to 6, 0, 1: copy in that order (6 is free, then down). */
	copy_sectors(f->meta, PE_START, PE_START + 6 * ext, ext);
	copy_sectors(f->meta, PE_START + ext, PE_START, 2 * ext);
	{
		uint8_t *zero = calloc(1, EXTENT);

		ok_eq(blkdev_write(f->meta, PE_START + 2 * ext, (uint32_t)ext, zero), 0);
		free(zero);
	}
	lv->segs[0].pe = 6;
	lv->segs[0].extent_count = 1;
	ok_eq(lvm_lv_add_seg(lv, LVM_SEG_STRIPED, 2, &s), 0);
	s->pv = lv->segs[0].pv, s->pe = 0;
	ok_eq(lx_write(&x), 0);
	lx_done(&x);

	ok_eq(boot_on(f, true), 0);
	if (!ok_eq(appliance_state(f->a), APPLIANCE_READY)) {
		fprintf(stderr, "%s\n", appliance_problem(f->a));
		goto out;
	}
	ok_eq(appliance_vg_info(f->a, &vi), 0);
	ok_eq(vi.meta_bytes, 3 * EXTENT);
	ok_eq(app_io(f, "data", 11, SECTORS, ARRAY_SIZE(SECTORS), false), 0);
	ok_eq(sh(f, "pool check"), 0);
	ok(has(f->out, "pool check: clean"));
	ok_eq(sh(f, "thin snapshot data s1"), 0);
	shutdown_app(f);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok_eq(app_io(f, "s1", 11, SECTORS, ARRAY_SIZE(SECTORS), false), 0);
	ok_eq(sh(f, "pool check"), 0);
	ok(has(f->out, "pool check: clean"));
out:
	fx_free(f);
}

/* ---- 3d. What the appliance cannot serve: said, and nothing written ------------------------ */

/* A fresh appliance VG with one volume and data, shut down. */
static struct fx *made_vg(uint64_t meta_bytes)
{
	struct fx *f = fx_new(meta_bytes, DATA_BYTES);

	if (boot_on(f, true) || sh(f, "thin create data 12M") ||
	    app_io(f, "data", 12, SECTORS, ARRAY_SIZE(SECTORS), true))
		fail("cannot make the VG");
	shutdown_app(f);
	return f;
}

/*
 * Boot on disks the appliance must not serve: NO_POOL, the reason (@why) in the problem and
 * the boot log, "nothing was changed", `pool status` / `thin list` / `pool format` refused,
 * and both disks exactly as they were after the appliance is gone.
 */
static void refused(struct fx *f, const char *why)
{
	uint8_t *m = image(f->meta), *d = image(f->data);

	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_NO_POOL);
	ok(has(appliance_problem(f->a), why));
	ok(has(appliance_problem(f->a), "nothing was changed"));
	ok(!strstr(appliance_problem(f->a), "pool format --force"));
	ok(has(f->log, why));
	ok(!strstr(f->log, "first boot"));
	ok(!appliance_pool(f->a));
	ok(sh(f, "pool status") != 0);
	ok(has(f->out, why));
	ok(sh(f, "thin list") != 0);
	ok(has(f->out, "no pool"));
	ok(sh(f, "thin create x 4M") != 0);
	ok(sh(f, "pool format") != 0);
	/* Still a VG: erased only when the format names it. */
	ok_eq(sh(f, "pool format --force"), -ENOTEMPTY);
	ok(has(f->out, "--confirm thinbox"));
	ok_eq(sh(f, "pool format --force --confirm other"), -ENOTEMPTY);
	ok(sh(f, "pool resize-data") != 0);
	ok(sh(f, "pool commit") != 0);
	shutdown_app(f);
	ok(same_image(f->meta, m, "metadata disk"));
	ok(same_image(f->data, d, "data disk"));
	free(m);
	free(d);
	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "pool format --force --confirm thinbox"), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	shutdown_app(f);
}

/* vgextend: a third PV (with its own copy of the VG). */
TEST(third_pv_is_refused_untouched)
{
	struct fx *f = made_vg(META_BYTES);
	struct blkdev *third;
	struct lvm_pv *pv;
	char id[LVM_ID_LEN + 1], why[200] = "";
	struct lx x;

	ok_eq(memdisk_create(16 * MiB / 512, 512, &third), 0);
	ok_eq(lx_read(f, &x), 0);
	lx_id("third-pv", id);
	ok_eq(lvm_pv_format(third, &(struct lvm_pv_opts){ .id = id, .in_vg = true }, why,
			    sizeof(why)),
	      0);
	ok_eq(lvm_vg_add_pv(x.vg, id, 16 * MiB / 512, PE_START, &pv), 0);
	x.n = 3;
	x.dk[2].dev = third;
	x.dk[2].pv = 2;
	ok_eq(lx_write(&x), 0);
	lx_done(&x);
	refused(f, "3 physical volume(s)");
	blkdev_destroy(third);
	fx_free(f);
}

/* A second thin pool (on extents of the grown data disk). */
TEST(second_thin_pool_is_refused_untouched)
{
	struct fx *f = made_vg(META_BYTES);
	struct lvm_lv *lv;
	struct lvm_seg *s;
	char id[LVM_ID_LEN + 1];
	struct lx x;
	unsigned dpv;

	grow_disk(&f->data, DATA_BYTES + 8 * MiB); /* 17 extents */
	ok_eq(lx_read(f, &x), 0);
	dpv = (unsigned)x.dk[1].pv;
	lx_pvresize(&x, DATA_BYTES + 8 * MiB);
	lx_id("pool2", id);
	ok_eq(lvm_vg_add_lv(x.vg, "pool2", id, LVM_LV_READ | LVM_LV_WRITE | LVM_LV_VISIBLE, &lv),
	      0);
	ok_eq(lvm_lv_add_seg(lv, LVM_SEG_THIN_POOL, 1, &s), 0);
	snprintf(s->metadata, sizeof(s->metadata), "pool2_tmeta");
	snprintf(s->pool, sizeof(s->pool), "pool2_tdata");
	s->chunk_size = 128;
	s->zero_new_blocks = 1;
	ok_eq(lx_linear(&x, "pool2_tmeta", dpv, 15, 1, LVM_LV_READ | LVM_LV_WRITE), 0);
	ok_eq(lx_linear(&x, "pool2_tdata", dpv, 16, 1, LVM_LV_READ | LVM_LV_WRITE), 0);
	ok_eq(lx_write(&x), 0);
	lx_done(&x);
	refused(f, "several thin pools");
	fx_free(f);
}

/*
 * A VG text the model cannot hold (other segment types, several stripes), committed on both
 * PVs as lvm would: the model is read, its pmspare's segment edited as text (@from -> @to).
 */
static int lx_write_edited(struct fx *f, const char *lv, const char *from, const char *to)
{
	struct blkdev *devs[2] = { f->meta, f->data };
	char why[200] = "", *text = NULL, *out, *p;
	size_t len = 0;
	struct lx x;
	int rc = lx_read(f, &x);

	if (rc)
		return rc;
	x.vg->seqno++;
	rc = lvm_vg_to_text(x.vg, &text, &len, why, sizeof(why));
	lx_done(&x);
	if (rc)
		return rc;
	p = strstr(text, lv);
	p = p ? strstr(p, from) : NULL;
	out = malloc(len + strlen(to) + 1);
	if (!p || !out) {
		free(text);
		free(out);
		return -ENOENT;
	}
	memcpy(out, text, (size_t)(p - text));
	strcpy(out + (p - text), to);
	strcat(out, p + strlen(from));
	rc = lvm_vg_write_text(devs, 2, out, strlen(out), why, sizeof(why));
	if (rc)
		fprintf(stderr, "lvm_vg_write_text: %d: %s\n", rc, why);
	free(text);
	free(out);
	return rc;
}

TEST(other_segment_types_are_refused_untouched)
{
	static const struct {
		const char *from, *to, *why;
	} cases[] = {
		{ "type = \"striped\"", "type = \"cache\"",
		  "segment type 'cache' is not supported" },
		{ "type = \"striped\"", "type = \"raid1\"",
		  "segment type 'raid1' is not supported" },
		{ "stripe_count = 1\nstripes = [",
		  "stripe_count = 2\nstripe_size = 128\nstripes = [\"pv1\", 14, ",
		  "2 stripes; the appliance serves linear LVs only" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct fx *f = made_vg(META_BYTES);

		ok_eq(lx_write_edited(f, "lvol0_pmspare {", cases[i].from, cases[i].to), 0);
		refused(f, cases[i].why);
		fx_free(f);
	}
}

/* ---- 4. Never destructive advice ----------------------------------------------------------- */

/*
 * pool_tmeta's superblock damaged: the boot says nothing was changed and never suggests
 * `pool format`; `pool format` and `pool format --force` are refused naming the VG and
 * `--confirm thinbox`, with the disks unchanged; only `--force --confirm thinbox` formats.
 */
TEST(damaged_tmeta_gets_no_destructive_advice)
{
	struct fx *f = made_vg(META_BYTES);
	uint8_t sb[512], *m, *d;

	ok_eq(blkdev_read(f->meta, PE_START, 1, sb), 0);
	sb[100] ^= 0xff; /* the checksum no longer matches */
	ok_eq(blkdev_write(f->meta, PE_START, 1, sb), 0);
	m = image(f->meta);
	d = image(f->data);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_NO_POOL);
	ok(has(appliance_problem(f->a), "nothing was changed"));
	ok(has(appliance_problem(f->a), "thinbox/pool"));
	ok(has(f->log, "nothing was changed"));
	ok(!strstr(f->log, "pool format"));
	ok(!strstr(f->log, "first boot"));
	ok(sh(f, "pool status") != 0);
	ok(has(f->out, "nothing was changed"));
	ok(!strstr(f->out, "pool format"));
	ok(sh(f, "thin list") != 0);
	ok(!strstr(f->out, "pool format"));
	ok_eq(sh(f, "pool format"), -ENOTEMPTY);
	ok(has(f->out, "volume group thinbox"));
	ok(has(f->out, "--confirm thinbox"));
	ok_eq(sh(f, "pool format --force"), -ENOTEMPTY);
	ok(has(f->out, "--confirm thinbox"));
	ok_eq(sh(f, "pool format --force --confirm other"), -ENOTEMPTY);
	ok_eq(sh(f, "pool format --confirm thinbox"), -ENOTEMPTY);
	ok_eq(appliance_state(f->a), APPLIANCE_NO_POOL);
	shutdown_app(f);
	ok(same_image(f->meta, m, "metadata disk"));
	ok(same_image(f->data, d, "data disk"));
	/* A second boot is the same. */
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_NO_POOL);
	ok_eq(sh(f, "pool format --force --confirm thinbox"), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok_eq(appliance_config(f->a)->nvols, 0);
	shutdown_app(f);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	free(m);
	free(d);
	fx_free(f);
}

/* ---- 5. The layout before LVM2 ------------------------------------------------------------- */

/* The previous thinbox: a dm-thin superblock at byte 0 of the raw metadata disk. */
TEST(pre_lvm_layout_is_named_untouched)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	struct thin_pool_opts o;
	struct thin_pool *p;
	uint8_t *m, *d;

	thin_pool_default_opts(&o);
	ok_eq(thin_pool_format(f->meta, f->data, &o, false), 0);
	ok_eq(thin_pool_open(f->meta, f->data, &o, NULL, 0, &p), 0);
	ok_eq(thin_pool_create_thin(p, 0), 0);
	ok_eq(vol_io(p, 0, 12 * MiB, 13, SECTORS, ARRAY_SIZE(SECTORS), true), 0);
	ok_eq(thin_pool_close(p), 0);
	m = image(f->meta);
	d = image(f->data);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_NO_POOL);
	ok(has(appliance_problem(f->a), "before LVM2"));
	ok(has(appliance_problem(f->a), "nothing was changed"));
	ok(has(f->log, "before LVM2"));
	ok(!strstr(f->log, "first boot"));
	ok(sh(f, "pool status") != 0);
	ok(has(f->out, "before LVM2"));
	ok(sh(f, "thin list") != 0);
	ok_eq(sh(f, "pool format"), -EEXIST);
	ok(has(f->out, "--force"));
	shutdown_app(f);
	ok(same_image(f->meta, m, "metadata disk"));
	ok(same_image(f->data, d, "data disk"));
	/* Still the old pool, intact. */
	if (ok_eq(thin_pool_open(f->meta, f->data, &o, NULL, 0, &p), 0)) {
		ok_eq(vol_io(p, 0, 12 * MiB, 13, SECTORS, ARRAY_SIZE(SECTORS), false), 0);
		ok_eq(thin_pool_close(p), 0);
	}
	free(m);
	free(d);
	fx_free(f);
}

/* ---- 5. Who may connect: allow lists kept as LV tags ---------------------------------------- */

/* Export @name's allow list in the server, as text ("" for everyone, "-" when not served). */
static void served_allow(struct fx *f, const char *name, char *buf, size_t size)
{
	struct nbd_export_info ei;

	snprintf(buf, size, "-");
	for (unsigned i = 0; !nbd_server_export_info(f->srv, i, &ei); i++) {
		if (strcmp(ei.name, name))
			continue;
		buf[0] = '\0';
		for (unsigned k = 0; k < ei.nallow; k++) {
			char t[NET_PREFIX_TEXT_MAX];

			net_prefix_format(&ei.allow[k], t, sizeof(t));
			snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", k ? "," : "", t);
		}
	}
}

static bool served_is(struct fx *f, const char *name, const char *want)
{
	char got[512];

	served_allow(f, name, got, sizeof(got));
	if (!strcmp(got, want))
		return true;
	fprintf(stderr, "export %s is served to '%s', not '%s'\n", name, got, want);
	return false;
}

/* lvchange --addtag / --deltag on LV @lv, as lvm in Linux does it. */
static int lx_tag(struct fx *f, const char *lv, const char *tag, bool add)
{
	struct lvm_lv *l;
	struct lx x;
	int rc = lx_read(f, &x);

	if (rc)
		return rc;
	l = lvm_vg_find_lv(x.vg, lv);
	rc = l ? 0 : -ENOENT;
	if (!rc && add)
		rc = lvm_strs_add(&l->tags, tag);
	for (unsigned i = 0; !rc && !add && i < l->tags.n; i++)
		if (!strcmp(l->tags.v[i], tag))
			lvm_strs_remove(&l->tags, i--);
	if (!rc)
		rc = lx_write(&x);
	lx_done(&x);
	return rc;
}

/*
 * export add --allow, export allow/disallow: kept in the VG as thinbox_allow=EXPORT=PREFIX
 * tags on the volume's LV (what lvm in Linux shows and keeps), applied to the server at
 * once and again after a reboot; a bad prefix is refused with the reason and changes
 * nothing; tags lvm added in Linux are taken, a malformed one makes the configuration bad
 * instead of opening the export to everyone.
 */
TEST(export_allow_lists_are_lv_tags)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	const struct cfg_export *ce;
	const struct lvm_lv *lv;
	uint8_t *meta, *data;
	uint32_t seq;
	struct lx x;

	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "export add vol0 --name lan --allow 10.0.2.0/24 --allow FD00::/8"), 0);
	ok(has(f->out, "exported vol0 as 'lan' to 10.0.2.0/24,fd00::/8"));
	ok(served_is(f, "lan", "10.0.2.0/24,fd00::/8"));
	ok(served_is(f, "vol0", ""));

	/* Bad prefixes: a clear reason, and nothing changed (no VG commit, no export). */
	seq = seqno_now(f);
	ok_eq(sh(f, "export add vol0 --name bad --allow 10.0.2.5/24"), -EINVAL);
	ok(has(f->out, "error: bad address prefix '10.0.2.5/24': address bits are set past the "
		       "prefix length (the network is 10.0.2.0/24)"));
	ok_eq(sh(f, "export add vol0 --name bad --allow 10.0.2.0/33"), -EINVAL);
	ok(has(f->out, "the prefix length must be 0..32"));
	ok_eq(sh(f, "export allow lan 300.1.1.1"), -EINVAL);
	ok(has(f->out, "not an IPv4 (a.b.c.d) or IPv6 address"));
	ok_eq(sh(f, "export allow lan 10.1.0.0/16 fe80::1%%eth0"), -EINVAL);
	ok_eq(sh(f, "export allow nosuch 10.0.0.0/8"), -ENOENT);
	ok(has(f->out, "no export named 'nosuch'"));
	ok_eq(sh(f, "export disallow lan 1.2.3.0/24"), -ENOENT);
	ok(has(f->out, "is not in the allow list of 'lan'; nothing changed"));
	ok_eq(seqno_now(f), seq);
	ok(!cfg_find_export(appliance_config(f->a), "bad"));
	ok(served_is(f, "lan", "10.0.2.0/24,fd00::/8"));
	ok(served_is(f, "bad", "-"));

	ok_eq(sh(f, "export allow vol0 127.0.0.2"), 0);
	ok(has(f->out, "export 'vol0' may be used by 127.0.0.2/32"));
	ok_eq(sh(f, "export allow lan 10.0.2.0/24"), 0); /* already there: no change */
	ok_eq(sh(f, "export disallow lan fd00::/8"), 0);
	ok(served_is(f, "vol0", "127.0.0.2/32"));
	ok(served_is(f, "lan", "10.0.2.0/24"));
	ok_eq(sh(f, "export list"), 0);
	ok(has(f->out, "REFUSED ALLOW"));
	ok(has(f->out, "127.0.0.2/32  (default export)"));
	ok(has(f->out, "10.0.2.0/24\n"));
	shutdown_app(f);

	/* In the VG, on the volume's LV, as lvm shows it. */
	if (ok_eq(lx_read(f, &x), 0)) {
		ok((lv = lx_lv(&x, "vol0")) && lv_has(&lv->tags, "thinbox_allow=lan=10.0.2.0/24") &&
		   lv_has(&lv->tags, "thinbox_allow=vol0=127.0.0.2/32") &&
		   !lv_has(&lv->tags, "thinbox_allow=lan=fd00::/8") &&
		   lv_has(&lv->tags, "thinbox_export=lan"));
		lx_done(&x);
	}
	/* lvchange --addtag in Linux: taken at the next boot, with what was there. */
	ok_eq(lx_tag(f, "vol0", "thinbox_allow=lan=2001:db8::/32", true), 0);
	/* A tag for an export this LV does not serve opens nothing: ignored. */
	ok_eq(lx_tag(f, "vol0", "thinbox_allow=other=0.0.0.0/0", true), 0);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ce = cfg_find_export(appliance_config(f->a), "lan");
	ok(ce && ce->nallow == 2);
	ok(served_is(f, "lan", "10.0.2.0/24,2001:db8::/32"));
	ok(served_is(f, "vol0", "127.0.0.2/32"));
	/* Everyone again. */
	ok_eq(sh(f, "export disallow vol0 --all"), 0);
	ok(has(f->out, "export 'vol0' may be used by everyone"));
	ok(served_is(f, "vol0", ""));
	shutdown_app(f);
	if (ok_eq(lx_read(f, &x), 0)) {
		ok((lv = lx_lv(&x, "vol0")) &&
		   !lv_has(&lv->tags, "thinbox_allow=vol0=127.0.0.2/32") &&
		   !lv_has(&lv->tags, "thinbox_allow=other=0.0.0.0/0") &&
		   lv_has(&lv->tags, "thinbox_allow=lan=2001:db8::/32"));
		lx_done(&x);
	}

	/* A malformed prefix in a tag: not served to anyone, the reason shown, nothing written. */
	ok_eq(lx_tag(f, "vol0", "thinbox_allow=lan=10.0.2.5/24", true), 0);
	meta = image(f->meta);
	data = image(f->data);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_BAD_CONFIG);
	ok(has(appliance_problem(f->a), "allow tag thinbox_allow=lan=10.0.2.5/24: address bits"));
	ok(served_is(f, "lan", "-"));
	shutdown_app(f);
	ok(same_image(f->meta, meta, "metadata disk"));
	ok(same_image(f->data, data, "data disk"));
	free(meta);
	free(data);
	ok_eq(lx_tag(f, "vol0", "thinbox_allow=lan=10.0.2.5/24", false), 0);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok(served_is(f, "lan", "10.0.2.0/24,2001:db8::/32"));
	fx_free(f);
}

/* Whether export @name is served TLS-only by the NBD server: 1, 0, or -1 when not served. */
static int served_tls_only(struct fx *f, const char *name)
{
	struct nbd_export_info info;

	for (unsigned k = 0; !nbd_server_export_info(appliance_server(f->a), k, &info); k++)
		if (!strcmp(info.name, name))
			return info.tls_only;
	return -1;
}

/*
 * export add --tls-only: kept in the VG as a thinbox_tls_only=EXPORT tag on the volume's LV,
 * served TLS-only at once and after a reboot, shown by export list; a tag lvm added in Linux
 * is taken; one for an export the LV does not serve is ignored.
 */
TEST(export_tls_only_is_an_lv_tag)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	const struct cfg_export *ce;
	const struct lvm_lv *lv;
	struct lx x;

	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "export add vol0 --name secret --tls-only --read-only"), 0);
	ok(has(f->out, "exported vol0 as 'secret' (read-only) (TLS only) to everyone"));
	ok_eq(served_tls_only(f, "secret"), 1);
	ok_eq(served_tls_only(f, "vol0"), 0);
	ok_eq(sh(f, "export list"), 0);
	ok(has(f->out, "everyone  (TLS only)\n"));
	ok(has(f->out, "everyone  (default export)\n"));
	shutdown_app(f);
	if (ok_eq(lx_read(f, &x), 0)) {
		ok((lv = lx_lv(&x, "vol0")) && lv_has(&lv->tags, "thinbox_tls_only=secret") &&
		   lv_has(&lv->tags, "thinbox_export_ro=secret") &&
		   !lv_has(&lv->tags, "thinbox_tls_only=vol0"));
		lx_done(&x);
	}
	/* lvchange --addtag in Linux: vol0 becomes TLS-only; a tag for another export: ignored. */
	ok_eq(lx_tag(f, "vol0", "thinbox_tls_only=vol0", true), 0);
	ok_eq(lx_tag(f, "vol0", "thinbox_tls_only=other", true), 0);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ce = cfg_find_export(appliance_config(f->a), "secret");
	ok(ce && ce->tls_only && ce->read_only);
	ok_eq(served_tls_only(f, "secret"), 1);
	ok_eq(served_tls_only(f, "vol0"), 1);
	/* Another change rewrites the tags: the marks stay, the stray tag goes. */
	ok_eq(sh(f, "export remove secret"), 0);
	shutdown_app(f);
	if (ok_eq(lx_read(f, &x), 0)) {
		ok((lv = lx_lv(&x, "vol0")) && lv_has(&lv->tags, "thinbox_tls_only=vol0") &&
		   !lv_has(&lv->tags, "thinbox_tls_only=secret") &&
		   !lv_has(&lv->tags, "thinbox_tls_only=other"));
		lx_done(&x);
	}
	fx_free(f);
}
