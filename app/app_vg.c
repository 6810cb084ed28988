/* SPDX-License-Identifier: MIT */
/*
 * The appliance's disks as an LVM2 volume group (docs/appliance.md, "Disks"): reading the
 * VG from the two PVs, the pool's devices over its _tmeta and _tdata LVs, the configuration
 * (struct cfg) the VG describes and the VG a new configuration makes, and writing it back
 * with lvm's protocol. The order of these steps against the pool's transaction id is
 * app/appliance.c's (app_transact, adopt_vg).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/plat.h"
#include "core/base/util.h"
#include "core/blkdev_linear.h"
#include "core/lvm/lvm_disks.h"
#include "core/lvm/lvm_pv.h"

#include "app/appliance_internal.h"

#define TAG_EXPORT	     "thinbox_export="
#define TAG_EXPORT_RO	     "thinbox_export_ro="
#define TAG_SIZE	     "thinbox_size="
#define TAG_ALLOW	     "thinbox_allow="	 /* thinbox_allow=EXPORT=PREFIX */
#define TAG_TLS_ONLY	     "thinbox_tls_only=" /* thinbox_tls_only=EXPORT */
#define TAG_NO_SPACE_TIMEOUT "thinbox_no_space_timeout_ms="
#define FLAG_ERROR_WHEN_FULL "ERROR_WHEN_FULL"
#define MAX_PIECES	     64u

static int why_set(char *why, size_t len, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int why_set(char *why, size_t len, int rc, const char *fmt, ...)
{
	va_list ap;

	if (why && len) {
		va_start(ap, fmt);
		vsnprintf(why, len, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* ---- Ids, time, host -------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/*
 * lvm ids need to be unique, not secret (lvm itself tells VGs and PVs apart by them): random
 * bytes from the platform (lvm uses /dev/urandom), and when it has no entropy source a
 * counter, the clocks and the VG's own id mixed, so two ids of one appliance never repeat
 * and two appliances' ids differ by their clocks.
 */
void app_new_id(struct appliance *a, char out[LVM_ID_LEN + 1])
{
	uint64_t wall = 0, s;
	uint8_t b[LVM_ID_LEN];

	if (!plat_random(b, sizeof(b))) {
		lvm_id_from_bytes(b, out);
		return;
	}
	plat_wall_time(&wall);
	s = plat_now_ns() ^ (wall << 20) ^ (++a->id_counter * 0xD6E8FEB86659FD93ull) ^
	    (uint64_t)(uintptr_t)a;
	if (a->vg)
		for (unsigned i = 0; i < LVM_ID_LEN; i++)
			s = s * 31 + (uint8_t)a->vg->id[i];
	for (unsigned i = 0; i < LVM_ID_LEN; i += 8) {
		uint64_t r = splitmix64(&s);

		memcpy(b + i, &r, 8);
	}
	lvm_id_from_bytes(b, out);
}

static int set_creation(struct lvm_lv *lv)
{
	uint64_t now = 0;

	/* lvm writes the two together; without a clock 0 says "unknown" as honestly as lvm's
	 * own readers allow. */
	plat_wall_time(&now);
	return lvm_lv_set_creation(lv, now, plat_hostname());
}

/* ---- Reading the VG --------------------------------------------------------------------- */

static const char *disk_role(unsigned d)
{
	return d ? "data disk" : "metadata disk";
}

int app_vg_read(struct appliance *a, struct lvm_vg **out, char *why, size_t len)
{
	struct lvm_disk *dk = a->disks;
	struct lvm_vg *vg = NULL;
	unsigned missing = 0;
	int rc;

	memset(a->disks, 0, sizeof(a->disks));
	dk[0].dev = a->disk[0];
	dk[1].dev = a->disk[1];
	rc = lvm_disks_read(dk, 2, NULL, &vg, &missing, why, len);
	if (rc == -ENODATA) {
		if (dk[0].state == LVM_DISK_NOT_PV && dk[1].state == LVM_DISK_NOT_PV)
			return why_set(why, len, -ENODATA, "no LVM label on either disk");
		/* PVs whose VG was never written (a format cut short), or damaged copies. */
		for (unsigned d = 0; d < 2; d++)
			if (dk[d].state == LVM_DISK_BAD)
				return why_set(why, len, dk[d].rc ? dk[d].rc : -EINVAL, "%s: %s",
					       disk_role(d), dk[d].why);
		return why_set(why, len, -ENOMSG,
			       "the disks are LVM physical volumes without a volume group");
	}
	if (rc)
		return rc;
	for (unsigned d = 0; d < 2; d++) {
		if (dk[d].state == LVM_DISK_STALE || dk[d].state == LVM_DISK_MISMATCH ||
		    dk[d].state == LVM_DISK_BAD)
			app_log(a,
				"volume group %s: the %s's copy is not the newest (%s); the newest "
				"(seqno %" PRIu32 ") is used and the next change rewrites it",
				vg->name, disk_role(d), dk[d].why, vg->seqno);
		if (dk[d].state == LVM_DISK_OTHER_VG || dk[d].state == LVM_DISK_NOT_PV) {
			rc = why_set(why, len, -EINVAL,
				     "the %s is not a PV of volume group %s (%s); the appliance "
				     "serves a VG on exactly its two disks",
				     disk_role(d), vg->name, dk[d].why);
			goto fail;
		}
	}
	/* The pool's PVs and ours must be the same two: a VG extended in Linux (vgextend)
	 * has copies the appliance could not keep in step. */
	if (missing || vg->nr_pvs != 2 || dk[0].pv < 0 || dk[1].pv < 0) {
		rc = why_set(why, len, -EINVAL,
			     "volume group %s has %u physical volume(s); the appliance serves a "
			     "VG on exactly its two disks (vgreduce the others in Linux)",
			     vg->name, vg->nr_pvs);
		goto fail;
	}
	a->disk_pv[0] = dk[0].pv;
	a->disk_pv[1] = dk[1].pv;
	*out = vg;
	return 0;
fail:
	lvm_vg_free(vg);
	return rc;
}

/* The VG's one thin pool: 0, or -ENOENT / -EINVAL with the reason. */
int app_vg_pool(const struct lvm_vg *vg, struct lvm_lv **out, char *why, size_t len)
{
	struct lvm_lv *pool = NULL;

	for (unsigned i = 0; i < vg->nr_lvs; i++) {
		struct lvm_lv *lv = &vg->lvs[i];

		if (lv->nr_segs != 1 || lv->segs[0].type != LVM_SEG_THIN_POOL)
			continue;
		if (pool)
			return why_set(why, len, -EINVAL,
				       "volume group %s has several thin pools (%s, %s); the "
				       "appliance serves one",
				       vg->name, pool->name, lv->name);
		pool = lv;
	}
	if (!pool)
		return why_set(why, len, -ENOENT, "volume group %s has no thin pool", vg->name);
	*out = pool;
	return 0;
}

struct lvm_seg *app_pool_seg(struct appliance *a)
{
	struct lvm_lv *lv = a->vg ? lvm_vg_find_lv(a->vg, a->pool_lv) : NULL;

	return lv ? &lv->segs[0] : NULL;
}

/* A block device over linear LV @name: its segments, in order, on our two disks. */
static int lv_device(struct appliance *a, const char *name, struct blkdev **out, char *why,
		     size_t len)
{
	const struct lvm_lv *lv = lvm_vg_find_lv(a->vg, name);
	struct blkdev_piece p[MAX_PIECES];
	struct lvm_piece lp[MAX_PIECES];
	unsigned n = 0;
	int rc;

	if (!lv)
		return why_set(why, len, -EINVAL, "LV %s is missing", name);
	rc = lvm_lv_map(a->vg, lv, lp, MAX_PIECES, &n);
	if (rc)
		return why_set(why, len, rc,
			       "LV %s is not made of linear segments (at most %u) the appliance "
			       "can follow",
			       name, MAX_PIECES);
	for (unsigned i = 0; i < n; i++) {
		struct blkdev *disk = NULL;
		uint32_t spb;

		for (unsigned d = 0; d < 2; d++)
			if (a->disk_pv[d] == (int)lp[i].pv)
				disk = a->disk[d];
		spb = disk ? disk->block_size / 512 : 1;
		if (!disk || lp[i].pv_sector % spb || lp[i].sectors % spb)
			return why_set(why, len, -EINVAL,
				       "LV %s: segment %u is not on the appliance's disks", name,
				       i);
		p[i] = (struct blkdev_piece){ disk, lp[i].pv_sector / spb, lp[i].sectors / spb };
	}
	rc = blkdev_linear_create(p, n, out);
	if (rc)
		return why_set(why, len, rc, "LV %s: segments outside the disk", name);
	return 0;
}

void app_vg_close_devices(struct appliance *a)
{
	blkdev_destroy(a->meta);
	blkdev_destroy(a->data);
	a->meta = a->data = NULL;
}

int app_vg_open_devices(struct appliance *a, char *why, size_t len)
{
	const struct lvm_seg *s = app_pool_seg(a);
	int rc;

	app_vg_close_devices(a);
	rc = lv_device(a, s->metadata, &a->meta, why, len);
	if (!rc)
		rc = lv_device(a, s->pool, &a->data, why, len);
	if (rc)
		app_vg_close_devices(a);
	return rc;
}

/* Pool options lvm keeps (zero_new_blocks, discards, ERROR_WHEN_FULL) and our tag. */
void app_vg_settings(struct appliance *a, struct thin_pool_opts *po)
{
	const struct lvm_lv *lv = lvm_vg_find_lv(a->vg, a->pool_lv);
	const struct lvm_seg *s = &lv->segs[0];

	po->zero_new_blocks = s->zero_new_blocks == 1;
	po->discard_passdown = s->discards == LVM_DISCARDS_PASSDOWN;
	po->data_block_sectors = s->chunk_size;
	po->error_if_no_space = false;
	for (unsigned i = 0; i < lv->flags.n; i++)
		if (!strcmp(lv->flags.v[i], FLAG_ERROR_WHEN_FULL))
			po->error_if_no_space = true;
	for (unsigned i = 0; i < lv->tags.n; i++) {
		const char *t = lv->tags.v[i];
		char *end;

		if (!strncmp(t, TAG_NO_SPACE_TIMEOUT, strlen(TAG_NO_SPACE_TIMEOUT))) {
			unsigned long long v = strtoull(t + strlen(TAG_NO_SPACE_TIMEOUT), &end, 10);

			if (!*end && v <= UINT32_MAX)
				po->no_space_timeout_ms = (uint32_t)v;
		}
	}
}

/* ---- The configuration the VG describes ------------------------------------------------- */

static uint64_t extent_bytes(const struct lvm_vg *vg)
{
	return (uint64_t)vg->extent_size * 512u;
}

static bool is_our_thin(const struct appliance *a, const struct lvm_lv *lv)
{
	return lv->nr_segs == 1 && lv->segs[0].type == LVM_SEG_THIN &&
	       !strcmp(lv->segs[0].thin_pool, a->pool_lv);
}

/* The volume's size: the LV's, or the exact size our tag keeps when lvm rounded it up. */
static uint64_t thin_size(const struct lvm_vg *vg, const struct lvm_lv *lv)
{
	uint64_t lv_bytes = lv->segs[0].extent_count * extent_bytes(vg);

	for (unsigned i = 0; i < lv->tags.n; i++) {
		const char *t = lv->tags.v[i];
		char *end;
		unsigned long long v;

		if (strncmp(t, TAG_SIZE, strlen(TAG_SIZE)))
			continue;
		v = strtoull(t + strlen(TAG_SIZE), &end, 10);
		/* Only while it still describes the LV: after an lvresize in Linux it does not. */
		if (!*end && v && v % 512 == 0 && v <= lv_bytes && lv_bytes - v < extent_bytes(vg))
			return v;
	}
	return lv_bytes;
}

/*
 * Tag @tag of thin LV @lv, if it is an allow tag: add its prefix to the export's list. A tag
 * naming an export this LV does not serve is ignored (it opens nothing; the next rewrite of
 * the LV's tags drops it); a prefix that does not parse makes the configuration bad rather
 * than leave the export open to everyone.
 */
static int allow_tag(struct cfg *c, const struct lvm_lv *lv, const char *tag, char *why, size_t len)
{
	char name[CFG_NAME_MAX + 1];
	const char *eq, *msg = NULL;
	struct cfg_export *e;
	struct net_prefix p;
	int rc;

	if (strncmp(tag, TAG_ALLOW, strlen(TAG_ALLOW)))
		return 0;
	tag += strlen(TAG_ALLOW);
	eq = strchr(tag, '=');
	if (!eq || (size_t)(eq - tag) > CFG_NAME_MAX)
		return why_set(why, len, -EINVAL,
			       "thin LV %s: allow tag %s%s: want " TAG_ALLOW "EXPORT=PREFIX",
			       lv->name, TAG_ALLOW, tag);
	memcpy(name, tag, (size_t)(eq - tag));
	name[eq - tag] = '\0';
	e = cfg_find_export(c, name);
	if (!e || strcmp(e->volume, lv->name))
		return 0;
	rc = net_prefix_parse(eq + 1, &p, &msg);
	if (!rc)
		rc = cfg_export_allow(c, name, &p);
	if (rc == -ENOSPC)
		msg = "more prefixes than an export may have";
	if (rc)
		return why_set(why, len, -EINVAL, "thin LV %s: allow tag %s%s: %s", lv->name,
			       TAG_ALLOW, tag, msg ? msg : "not valid");
	return 0;
}

int app_vg_cfg(struct appliance *a, struct cfg *out, char *why, size_t len)
{
	const struct lvm_vg *vg = a->vg;
	int rc = 0;

	cfg_init(out);
	for (unsigned i = 0; i < vg->nr_lvs && !rc; i++) {
		const struct lvm_lv *lv = &vg->lvs[i];

		if (!is_our_thin(a, lv))
			continue;
		if (!cfg_name_valid(lv->name)) {
			rc = why_set(why, len, -EINVAL,
				     "thin LV %s: a name the appliance cannot use", lv->name);
			break;
		}
		rc = cfg_add_volume(out, lv->name, lv->segs[0].device_id, thin_size(vg, lv), NULL);
		if (rc)
			why_set(why, len, rc, "thin LV %s (device_id %" PRIu32 "): %s", lv->name,
				lv->segs[0].device_id,
				rc == -EEXIST ? "device_id used twice" : "cannot be a volume");
	}
	/* Origins after all volumes exist (the text may list a snapshot before its origin). */
	for (unsigned i = 0; i < vg->nr_lvs && !rc; i++) {
		const struct lvm_lv *lv = &vg->lvs[i];

		if (is_our_thin(a, lv) && lv->segs[0].origin[0] &&
		    cfg_find_volume(out, lv->segs[0].origin))
			snprintf(cfg_find_volume(out, lv->name)->origin, CFG_NAME_MAX + 1, "%s",
				 lv->segs[0].origin);
	}
	for (unsigned i = 0; i < vg->nr_lvs && !rc; i++) {
		const struct lvm_lv *lv = &vg->lvs[i];

		if (!is_our_thin(a, lv))
			continue;
		for (unsigned t = 0; t < lv->tags.n && !rc; t++) {
			const char *tag = lv->tags.v[t];
			bool ro = !strncmp(tag, TAG_EXPORT_RO, strlen(TAG_EXPORT_RO));

			if (!ro && strncmp(tag, TAG_EXPORT, strlen(TAG_EXPORT)))
				continue;
			tag += ro ? strlen(TAG_EXPORT_RO) : strlen(TAG_EXPORT);
			rc = cfg_add_export(out, tag, lv->name, ro);
			if (rc)
				why_set(why, len, rc, "thin LV %s: export tag %s: %s", lv->name,
					lv->tags.v[t],
					rc == -EEXIST ? "the export name is taken" : "not valid");
		}
	}
	/* Allow lists and TLS-only marks, once the exports exist (tags are in no order). */
	for (unsigned i = 0; i < vg->nr_lvs && !rc; i++) {
		const struct lvm_lv *lv = &vg->lvs[i];

		if (!is_our_thin(a, lv))
			continue;
		for (unsigned t = 0; t < lv->tags.n && !rc; t++) {
			const char *tag = lv->tags.v[t];
			struct cfg_export *e;

			rc = allow_tag(out, lv, tag, why, len);
			if (rc || strncmp(tag, TAG_TLS_ONLY, strlen(TAG_TLS_ONLY)))
				continue;
			/* As for allow tags: one naming an export this LV does not serve is
			 * ignored. */
			e = cfg_find_export(out, tag + strlen(TAG_TLS_ONLY));
			if (e && !strcmp(e->volume, lv->name))
				e->tls_only = true;
		}
	}
	if (rc)
		cfg_free(out);
	return rc;
}

/* ---- The VG a new configuration makes ---------------------------------------------------- */

static bool our_tag(const char *t)
{
	return !strncmp(t, TAG_EXPORT, strlen(TAG_EXPORT)) ||
	       !strncmp(t, TAG_EXPORT_RO, strlen(TAG_EXPORT_RO)) ||
	       !strncmp(t, TAG_ALLOW, strlen(TAG_ALLOW)) ||
	       !strncmp(t, TAG_SIZE, strlen(TAG_SIZE)) ||
	       !strncmp(t, TAG_TLS_ONLY, strlen(TAG_TLS_ONLY));
}

/*
 * The thin LV's tags for volume @cv: its exact size and its exports, which are @c->exps[i]
 * for i = @first, @next_exp[i], ... (SIZE_MAX ends the list; in the configuration's order).
 */
static int set_thin_tags(struct lvm_vg *vg, struct lvm_lv *lv, const struct cfg *c,
			 const struct cfg_volume *cv, size_t first, const size_t *next_exp)
{
	char tag[sizeof(TAG_ALLOW) + CFG_NAME_MAX + 1 + NET_PREFIX_TEXT_MAX];
	int rc = 0;

	for (unsigned i = lv->tags.n; i-- > 0;)
		if (our_tag(lv->tags.v[i]))
			lvm_strs_remove(&lv->tags, i);
	if (cv->size % extent_bytes(vg)) {
		snprintf(tag, sizeof(tag), TAG_SIZE "%" PRIu64, cv->size);
		rc = lvm_strs_add(&lv->tags, tag);
	}
	for (size_t i = first; i != SIZE_MAX && !rc; i = next_exp[i]) {
		const struct cfg_export *e = &c->exps[i];

		snprintf(tag, sizeof(tag), "%s%s", e->read_only ? TAG_EXPORT_RO : TAG_EXPORT,
			 e->name);
		rc = lvm_strs_add(&lv->tags, tag);
		if (e->tls_only && !rc) {
			snprintf(tag, sizeof(tag), TAG_TLS_ONLY "%s", e->name);
			rc = lvm_strs_add(&lv->tags, tag);
		}
		/* Prefixes in lvm's tag characters: digits, '.', ':', hex letters and '/'. */
		for (unsigned k = 0; k < e->nallow && !rc; k++) {
			char pt[NET_PREFIX_TEXT_MAX];

			net_prefix_format(&e->allow[k], pt, sizeof(pt));
			snprintf(tag, sizeof(tag), TAG_ALLOW "%s=%s", e->name, pt);
			rc = lvm_strs_add(&lv->tags, tag);
		}
	}
	return rc;
}

static void rename_refs(struct lvm_vg *vg, const char *from, const char *to)
{
	for (unsigned i = 0; i < vg->nr_lvs; i++) {
		struct lvm_seg *s = &vg->lvs[i].segs[0];

		if (vg->lvs[i].nr_segs == 1 && s->type == LVM_SEG_THIN && !strcmp(s->origin, from))
			snprintf(s->origin, sizeof(s->origin), "%s", to);
	}
}

/* Where each volume's thin LV is in @vg: sorted (device_id, LV index) pairs. */
struct lv_by_id {
	uint32_t id;
	unsigned lv;
};

static int cmp_lv_by_id(const void *x, const void *y)
{
	const struct lv_by_id *a = x, *b = y;

	return a->id < b->id ? -1 : a->id > b->id;
}

int app_vg_next(struct appliance *a, const struct cfg *next, uint64_t txid, struct lvm_vg **out)
{
	struct lvm_vg *vg;
	struct lv_by_id *byid = NULL;
	size_t nbyid = 0, *head = NULL, *next_exp = NULL;
	unsigned nold;
	char why[200];
	int rc = lvm_vg_copy(a->vg, &vg, why, sizeof(why));

	if (rc) {
		app_log(a, "copying the volume group failed: %s", why);
		return rc;
	}
	/* Thin LVs whose device is gone; snapshots of them lose their origin, as in lvm. */
	for (unsigned i = vg->nr_lvs; i-- > 0;) {
		struct lvm_lv *lv = &vg->lvs[i];

		if (is_our_thin(a, lv) && !cfg_find_volume_id(next, lv->segs[0].device_id)) {
			rename_refs(vg, lv->name, "");
			lvm_vg_remove_lv(vg, lv);
		}
	}
	/*
	 * Everything below is O(n log n) for n volumes, so that a VG of 10,000 thin LVs is
	 * rebuilt in milliseconds: thin LVs found by device_id in a sorted table, each volume's
	 * exports linked in lists (head / next_exp) instead of a scan of all exports per volume.
	 */
	nold = vg->nr_lvs;
	byid = malloc((nold + 1) * sizeof(*byid));
	head = malloc((next->nvols + 1) * sizeof(*head));
	next_exp = malloc((next->nexps + 1) * sizeof(*next_exp));
	if (!byid || !head || !next_exp) {
		rc = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < nold; i++)
		if (is_our_thin(a, &vg->lvs[i]))
			byid[nbyid++] = (struct lv_by_id){ vg->lvs[i].segs[0].device_id, i };
	qsort(byid, nbyid, sizeof(*byid), cmp_lv_by_id);
	for (size_t k = 0; k < next->nvols; k++)
		head[k] = SIZE_MAX;
	for (size_t i = next->nexps; i-- > 0;) {
		const struct cfg_volume *cv = cfg_find_volume(next, next->exps[i].volume);
		size_t k;

		next_exp[i] = SIZE_MAX;
		if (!cv)
			continue;
		k = (size_t)(cv - next->vols);
		next_exp[i] = head[k];
		head[k] = i;
	}
	for (size_t k = 0; k < next->nvols && !rc; k++) {
		const struct cfg_volume *cv = &next->vols[k];
		struct lvm_lv *lv = NULL;
		struct lvm_seg *s;
		uint64_t ext = (cv->size + extent_bytes(vg) - 1) / extent_bytes(vg);
		const struct lv_by_id key = { cv->id, 0 }, *hit;

		hit = bsearch(&key, byid, nbyid, sizeof(*byid), cmp_lv_by_id);
		if (hit)
			lv = &vg->lvs[hit->lv];
		if (!lv) {
			char id[LVM_ID_LEN + 1];

			app_new_id(a, id);
			rc = lvm_vg_add_lv(vg, cv->name, id,
					   LVM_LV_READ | LVM_LV_WRITE | LVM_LV_VISIBLE, &lv);
			if (!rc)
				rc = set_creation(lv);
			if (!rc)
				rc = lvm_lv_add_seg(lv, LVM_SEG_THIN, ext, &s);
			if (rc)
				break;
			snprintf(s->thin_pool, sizeof(s->thin_pool), "%s", a->pool_lv);
			s->device_id = cv->id;
			s->transaction_id = txid;
			snprintf(s->origin, sizeof(s->origin), "%s", cv->origin);
		} else if (strcmp(lv->name, cv->name)) {
			rename_refs(vg, lv->name, cv->name);
			snprintf(lv->name, sizeof(lv->name), "%s", cv->name);
		}
		lv->segs[0].extent_count = ext;
		rc = set_thin_tags(vg, lv, next, cv, head[k], next_exp);
	}
fail:
	free(byid);
	free(head);
	free(next_exp);
	if (!rc) {
		struct lvm_lv *pool = lvm_vg_find_lv(vg, a->pool_lv);

		pool->segs[0].transaction_id = txid;
		for (unsigned i = pool->tags.n; i-- > 0;)
			if (!strcmp(pool->tags.v[i], APP_TAG_FIRST_BOOT))
				lvm_strs_remove(&pool->tags, i);
		*out = vg;
		return 0;
	}
	lvm_vg_free(vg);
	return rc;
}

int app_vg_set_settings(struct appliance *a, struct lvm_vg *vg, const struct thin_pool_opts *po)
{
	struct lvm_lv *lv = lvm_vg_find_lv(vg, a->pool_lv);
	char tag[64];

	lv->segs[0].zero_new_blocks = po->zero_new_blocks;
	lv->segs[0].discards =
	    po->discard_passdown ? LVM_DISCARDS_PASSDOWN : LVM_DISCARDS_NOPASSDOWN;
	for (unsigned i = lv->flags.n; i-- > 0;)
		if (!strcmp(lv->flags.v[i], FLAG_ERROR_WHEN_FULL))
			lvm_strs_remove(&lv->flags, i);
	for (unsigned i = lv->tags.n; i-- > 0;)
		if (!strncmp(lv->tags.v[i], TAG_NO_SPACE_TIMEOUT, strlen(TAG_NO_SPACE_TIMEOUT)))
			lvm_strs_remove(&lv->tags, i);
	snprintf(tag, sizeof(tag), TAG_NO_SPACE_TIMEOUT "%" PRIu32, po->no_space_timeout_ms);
	if (po->error_if_no_space) {
		int rc = lvm_strs_add(&lv->flags, FLAG_ERROR_WHEN_FULL);

		if (rc)
			return rc;
	}
	return lvm_strs_add(&lv->tags, tag);
}

/* ---- Writing ------------------------------------------------------------------------------ */

int app_vg_commit(struct appliance *a, struct lvm_vg *next)
{
	char why[LVM_DISK_WHY] = "";
	int rc;

	/* Never a seqno a failed write may have left on one disk, with other text. */
	next->seqno = MAX(a->vg ? a->vg->seqno : 0, a->seqno_used);
	for (unsigned d = 0; d < 2; d++)
		a->disks[d].pv = a->disk_pv[d];
	rc = lvm_disks_write(next, a->disks, 2, why, sizeof(why));
	a->seqno_used = MAX(a->seqno_used, next->seqno);
	/* The text does not fit a PV's metadata area (lvm_pv_precommit() refuses it before
	 * writing anything, so the committed copies stay in force): say that, not "no space",
	 * which names the pool. */
	if (rc == -ENOSPC)
		rc = -E2BIG;
	if (rc) {
		app_log(a, "writing volume group %s (seqno %" PRIu32 ") failed: %s", next->name,
			next->seqno, why[0] ? why : appliance_strerror(rc));
		lvm_vg_free(next);
		return rc;
	}
	lvm_vg_free(a->vg);
	a->vg = next;
	return 0;
}

/* ---- A new VG ----------------------------------------------------------------------------- */

/*
 * The metadata area of a new PV (docs/appliance.md, "Limits"). Every copy of the VG text
 * must fit in half the area, and a thin LV takes about 320 bytes of it: lvm's default area
 * (1 MiB, first extent at 1 MiB) holds ~1,600 volumes (tests/appliance/many.t prints the
 * count). On a disk of APP_BIG_MDA_MIN_DISK (1 GiB) or more the area is 16 MiB, as
 * `pvcreate --metadatasize 16m` makes it (first extent at 16 MiB): ~25,000 volumes, more
 * than CFG_MAX_VOLUMES. Smaller disks (tests, toys) keep lvm's default layout, where 15 MiB
 * more would be a large share of the disk.
 */
#define APP_BIG_MDA_MIN_DISK (1ull << 30)
#define APP_BIG_MDA_BYTES    (16ull << 20)

static void pv_layout(const struct blkdev *disk, uint64_t *mda_size, uint64_t *pe_start)
{
	if (disk->nr_blocks * disk->block_size >= APP_BIG_MDA_MIN_DISK) {
		*mda_size = APP_BIG_MDA_BYTES - LVM_DEFAULT_MDA_OFFSET;
		*pe_start = APP_BIG_MDA_BYTES / LVM_SECTOR;
	} else {
		*mda_size = LVM_DEFAULT_MDA_SIZE;
		*pe_start = LVM_DEFAULT_PE_START;
	}
}

static int add_linear(struct appliance *a, struct lvm_vg *vg, const char *name, unsigned pv,
		      uint64_t pe, uint64_t extents)
{
	struct lvm_lv *lv;
	struct lvm_seg *s;
	char id[LVM_ID_LEN + 1];
	int rc;

	app_new_id(a, id);
	rc = lvm_vg_add_lv(vg, name, id, LVM_LV_READ | LVM_LV_WRITE, &lv);
	if (!rc)
		rc = set_creation(lv);
	if (!rc)
		rc = lvm_lv_add_seg(lv, LVM_SEG_STRIPED, extents, &s);
	if (!rc)
		s->pv = pv, s->pe = pe;
	return rc;
}

/*
 * The VG for blank disks, as lvm's vgcreate + lvcreate --type thin-pool would make it:
 * PV 0 the metadata disk (pool_tmeta in its first half, lvol0_pmspare of the same size in
 * the second: lvm's spare for lvconvert --repair), PV 1 the data disk (pool_tdata, all of
 * it). Order, so that no reader ever sees a VG whose pool is not there: PV labels, the empty
 * pool in pool_tmeta, then the VG metadata.
 */
int app_vg_format(struct appliance *a, const char *vg_name, const struct thin_pool_opts *po,
		  bool first_boot, char *why, size_t len)
{
	struct lvm_vg *vg = NULL;
	struct lvm_lv *lv;
	struct lvm_seg *s;
	char id[LVM_ID_LEN + 1];
	uint64_t tmeta, spare;
	int rc;

	app_new_id(a, id);
	rc = lvm_vg_create(vg_name, id, LVM_DEFAULT_EXTENT_SIZE, &vg);
	if (rc)
		return why_set(why, len, rc, "%s is not a valid volume group name", vg_name);
	if (!rc)
		rc = lvm_vg_add_pv(vg, id, 0, LVM_DEFAULT_PE_START, NULL); /* ids set below */
	if (!rc)
		rc = lvm_vg_add_pv(vg, id, 0, LVM_DEFAULT_PE_START, NULL);
	for (unsigned d = 0; d < 2 && !rc; d++) {
		struct lvm_pv *pv = &vg->pvs[d];
		uint64_t mda_size;

		pv_layout(a->disk[d], &mda_size, &pv->pe_start);
		app_new_id(a, pv->id);
		pv->dev_size = a->disk[d]->nr_blocks * (a->disk[d]->block_size / 512);
		pv->pe_count = pv->dev_size > pv->pe_start
				   ? (pv->dev_size - pv->pe_start) / vg->extent_size
				   : 0;
		a->disk_pv[d] = (int)d;
	}
	if (rc)
		goto out;
	if (vg->pvs[0].pe_count < 1 || vg->pvs[1].pe_count < 1) {
		rc = why_set(why, len, -ENOSPC,
			     "a disk is smaller than one %u MiB extent after the LVM header",
			     vg->extent_size / 2048);
		goto out;
	}
	/* lvm's spare must hold a whole tmeta: halves, or all for tmeta on one extent. */
	spare = vg->pvs[0].pe_count / 2;
	tmeta = spare ? spare : 1;
	app_new_id(a, id);
	rc = lvm_vg_add_lv(vg, APP_POOL_LV, id, LVM_LV_READ | LVM_LV_WRITE | LVM_LV_VISIBLE, &lv);
	if (!rc)
		rc = set_creation(lv);
	if (!rc)
		rc = lvm_lv_add_seg(lv, LVM_SEG_THIN_POOL, vg->pvs[1].pe_count, &s);
	if (rc)
		goto out;
	snprintf(s->metadata, sizeof(s->metadata), APP_POOL_LV "_tmeta");
	snprintf(s->pool, sizeof(s->pool), APP_POOL_LV "_tdata");
	s->transaction_id = 0;
	s->chunk_size = po->data_block_sectors;
	rc = add_linear(a, vg, APP_POOL_LV "_tmeta", 0, 0, tmeta);
	if (!rc && spare)
		rc = add_linear(a, vg, "lvol0_pmspare", 0, tmeta, spare);
	if (!rc)
		rc = add_linear(a, vg, APP_POOL_LV "_tdata", 1, 0, vg->pvs[1].pe_count);
	snprintf(a->pool_lv, sizeof(a->pool_lv), APP_POOL_LV);
	if (!rc)
		rc = app_vg_set_settings(a, vg, po);
	/* Cleared by the first change (the first boot's own volume): tells a first boot cut
	 * short from a pool emptied on purpose. */
	if (!rc && first_boot)
		rc = lvm_strs_add(&lvm_vg_find_lv(vg, APP_POOL_LV)->tags, APP_TAG_FIRST_BOOT);
	if (!rc)
		rc = lvm_vg_validate(vg, why, len);
	if (rc)
		goto out;
	for (unsigned d = 0; d < 2 && !rc; d++) {
		uint64_t mda_size, pe_start;

		pv_layout(a->disk[d], &mda_size, &pe_start);
		rc = lvm_pv_format(a->disk[d],
				   &(struct lvm_pv_opts){ .id = vg->pvs[d].id,
							  .mda_size = mda_size,
							  .pe_start = pe_start,
							  .in_vg = true },
				   why, len);
	}
	if (rc)
		goto out;
	lvm_vg_free(a->vg);
	a->vg = vg;
	vg = NULL;
	a->seqno_used = 0;
	memset(a->disks, 0, sizeof(a->disks));
	a->disks[0].dev = a->disk[0];
	a->disks[1].dev = a->disk[1];
	rc = app_vg_open_devices(a, why, len);
	if (!rc)
		rc = thin_pool_format(a->meta, a->data, po, true);
	if (rc) {
		if (!why[0])
			why_set(why, len, rc, "formatting the pool failed");
		goto fail;
	}
	/* Written last: the first seqno lvm (or we) can read names a complete pool. */
	rc = lvm_vg_copy(a->vg, &vg, why, len);
	if (!rc) {
		lvm_vg_free(a->vg);
		a->vg = NULL;
		vg->seqno = 0; /* written as 1, as vgcreate does */
		rc = app_vg_commit(a, vg);
		vg = NULL;
	}
	if (!rc)
		return 0;
fail:
	lvm_vg_free(a->vg);
	a->vg = NULL;
	app_vg_close_devices(a);
out:
	lvm_vg_free(vg);
	return rc;
}

/* ---- Growing the data PV ------------------------------------------------------------------ */

/*
 * lvm's pvresize + lvextend of pool_tdata, then the pool: the VG is committed first (a
 * crash after it leaves a data LV larger than the pool, which the pool grows into at its
 * next resize, as dm-thin does at activation).
 */
int appliance_resize_data(struct appliance *a)
{
	struct blkdev *disk = a->disk[1];
	struct lvm_vg *vg;
	struct lvm_pv *pv;
	struct lvm_lv *pool, *tdata;
	struct lvm_seg *last;
	uint64_t sectors, count, add;
	uint32_t spb = disk->block_size / 512;
	char why[200];
	int rc;

	rc = appliance_pool_usable(a, true);
	if (rc)
		return rc;
	if (a->state != APPLIANCE_READY)
		return -ESTALE;
	if (a->o.data_size_changed) {
		rc = a->o.data_size_changed(a->o.data_size_ctx, disk);
		if (rc)
			return rc;
	}
	pv = &a->vg->pvs[a->disk_pv[1]];
	sectors = disk->nr_blocks * spb;
	if (pv->dev_size && sectors < pv->dev_size)
		return -EINVAL;
	count = sectors > pv->pe_start ? (sectors - pv->pe_start) / a->vg->extent_size : 0;
	add = count > pv->pe_count ? count - pv->pe_count : 0;
	if (add) {
		struct blkdev_piece p;

		rc = lvm_vg_copy(a->vg, &vg, why, sizeof(why));
		if (rc)
			return rc;
		pv = &vg->pvs[a->disk_pv[1]];
		pool = lvm_vg_find_lv(vg, a->pool_lv);
		tdata = lvm_vg_find_lv(vg, pool->segs[0].pool);
		p = (struct blkdev_piece){ disk,
					   (pv->pe_start + pv->pe_count * vg->extent_size) / spb,
					   add * vg->extent_size / spb };
		last = &tdata->segs[tdata->nr_segs - 1];
		/* lvm merges a contiguous extension into the last segment. */
		if (last->type == LVM_SEG_STRIPED && last->pv == (unsigned)a->disk_pv[1] &&
		    last->pe + last->extent_count == pv->pe_count) {
			last->extent_count += add;
		} else {
			rc = lvm_lv_add_seg(tdata, LVM_SEG_STRIPED, add, &last);
			if (rc) {
				lvm_vg_free(vg);
				return rc;
			}
			last->pv = (unsigned)a->disk_pv[1];
			last->pe = pv->pe_count;
		}
		pool->segs[0].extent_count += add;
		pv->dev_size = sectors;
		pv->pe_count = count;
		rc = app_vg_commit(a, vg);
		if (!rc)
			rc = blkdev_linear_grow(a->data, &p);
		if (rc)
			return rc;
	}
	return thin_pool_resize_data(a->pool);
}
