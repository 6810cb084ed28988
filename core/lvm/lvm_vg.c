/* SPDX-License-Identifier: MIT */
/*
 * The VG model: text -> model (lvm_vg_from_text), checks (lvm_vg_validate), model -> text
 * (lvm_vg_to_text). Rules and key names are those of docs/lvm2-format.md §7-§10 (lvm2's
 * lib/format_text/import_vsn1.c, export.c and lib/thin/thin.c describe the same keys).
 */
#include "core/lvm/lvm_vg.h"
#include "core/lvm/lvm_text.h"
#include "core/base/hash.h"
#include "core/base/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int why_set(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int why_set(char *why, size_t why_len, const char *fmt, ...)
{
	va_list ap;

	if (why && why_len) {
		va_start(ap, fmt);
		vsnprintf(why, why_len, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static char *dup_str(const char *s)
{
	size_t n = strlen(s);
	char *d = malloc(n + 1);

	if (d)
		memcpy(d, s, n + 1);
	return d;
}

/* ---- names, ids, tags ------------------------------------------------------------------ */

static const char id_alphabet[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!#";

bool lvm_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (!n || n > LVM_NAME_MAX || name[0] == '-' || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-' || c == '+'))
			return false;
	}
	return true;
}

bool lvm_tag_valid(const char *tag)
{
	if (!tag || !*tag)
		return false;
	for (const char *c = tag; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || strchr("_+.-/=!:&#", *c)))
			return false;
	return true;
}

/* The characters of id_alphabet, looked up (not strchr()): an LV's id is checked 3 times. */
static const bool id_chars[256] = {
	['0' ... '9'] = true, ['a' ... 'z'] = true, ['A' ... 'Z'] = true,
	['!'] = true,	      ['#'] = true,
};

static bool id_char(char c)
{
	return id_chars[(uint8_t)c];
}

bool lvm_id_parse(const char *text, char out[LVM_ID_LEN + 1])
{
	unsigned n = 0;

	for (const char *c = text; *c; c++) {
		if (*c == '-')
			continue;
		if (!id_char(*c) || n == LVM_ID_LEN)
			return false;
		out[n++] = *c;
	}
	out[n] = 0;
	return n == LVM_ID_LEN;
}

void lvm_id_format(const char *id, char out[39])
{
	static const unsigned groups[] = { 6, 4, 4, 4, 4, 4, 6 };
	unsigned o = 0, i = 0;

	for (unsigned g = 0; g < 7; g++) {
		if (g)
			out[o++] = '-';
		for (unsigned k = 0; k < groups[g]; k++)
			out[o++] = id[i++];
	}
	out[o] = 0;
}

void lvm_id_from_bytes(const uint8_t bytes[LVM_ID_LEN], char out[LVM_ID_LEN + 1])
{
	for (unsigned i = 0; i < LVM_ID_LEN; i++)
		out[i] = id_alphabet[bytes[i] % 62];
	out[LVM_ID_LEN] = 0;
}

/* lvm's reserved parts of visible LV names (lib/metadata/metadata.c, apply_lvname_restrictions). */
static const char *const reserved_suffixes[] = { "_cdata",  "_cmeta",  "_corig",  "_cpool",
						 "_cvol",   "_wcorig", "_mimage", "_mlog",
						 "_rimage", "_rmeta",  "_tdata",  "_tmeta",
						 "_vdata",  "_imeta",  "_iorig",  "_pmspare",
						 "_vorigin" };

static bool visible_name_ok(const char *name)
{
	if (!strncmp(name, "snapshot", 8) || !strncmp(name, "pvmove", 6))
		return false;
	/* Each reserved part starts with '_': only there can one begin (lvm's strstr() per
	 * part, as this did, is 17 scans of every name). */
	for (const char *u = strchr(name, '_'); u; u = strchr(u + 1, '_'))
		for (unsigned i = 0; i < sizeof(reserved_suffixes) / sizeof(reserved_suffixes[0]);
		     i++)
			if (!strncmp(u, reserved_suffixes[i], strlen(reserved_suffixes[i])))
				return false;
	return true;
}

/* ---- model helpers --------------------------------------------------------------------- */

int lvm_strs_add(struct lvm_strs *l, const char *s)
{
	char **v;

	if (!lvm_tag_valid(s))
		return -EINVAL;
	if (l->n >= LVM_MAX_TAGS)
		return -E2BIG;
	v = realloc(l->v, (l->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	l->v = v;
	v[l->n] = dup_str(s);
	if (!v[l->n])
		return -ENOMEM;
	l->n++;
	return 0;
}

static void strs_free(struct lvm_strs *l)
{
	for (unsigned i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

void lvm_vg_free(struct lvm_vg *vg)
{
	if (!vg)
		return;
	for (unsigned i = 0; i < vg->nr_pvs; i++) {
		free(vg->pvs[i].device);
		strs_free(&vg->pvs[i].tags);
	}
	for (unsigned i = 0; i < vg->nr_lvs; i++) {
		strs_free(&vg->lvs[i].flags);
		strs_free(&vg->lvs[i].tags);
		free(vg->lvs[i].creation_host);
		for (unsigned j = 0; j < vg->lvs[i].nr_segs; j++)
			free(vg->lvs[i].segs[j].msgs);
		free(vg->lvs[i].segs);
	}
	strs_free(&vg->flags);
	strs_free(&vg->tags);
	free(vg->pvs);
	free(vg->lvs);
	free(vg->description);
	free(vg->creation_host);
	free(vg);
}

static bool copy_name(char dst[LVM_NAME_MAX + 1], const char *src)
{
	size_t n = strlen(src);

	if (n > LVM_NAME_MAX)
		return false;
	memcpy(dst, src, n + 1);
	return true;
}

int lvm_vg_create(const char *name, const char *id, uint32_t extent_size, struct lvm_vg **out)
{
	struct lvm_vg *vg;

	if (!lvm_name_valid(name))
		return -EINVAL;
	vg = calloc(1, sizeof(*vg));
	if (!vg)
		return -ENOMEM;
	copy_name(vg->name, name);
	if (!lvm_id_parse(id, vg->id)) {
		free(vg);
		return -EINVAL;
	}
	vg->seqno = 1;
	vg->status = LVM_VG_RESIZEABLE | LVM_VG_READ | LVM_VG_WRITE;
	vg->extent_size = extent_size;
	*out = vg;
	return 0;
}

int lvm_vg_add_pv(struct lvm_vg *vg, const char *id, uint64_t dev_size, uint64_t pe_start,
		  struct lvm_pv **out)
{
	struct lvm_pv *pvs, *pv;

	if (vg->nr_pvs >= LVM_VG_MAX_PVS)
		return -E2BIG;
	pvs = realloc(vg->pvs, (vg->nr_pvs + 1) * sizeof(*pvs));
	if (!pvs)
		return -ENOMEM;
	vg->pvs = pvs;
	pv = &pvs[vg->nr_pvs];
	memset(pv, 0, sizeof(*pv));
	if (!lvm_id_parse(id, pv->id))
		return -EINVAL;
	snprintf(pv->key, sizeof(pv->key), "pv%u", vg->nr_pvs);
	pv->status = LVM_PV_ALLOCATABLE;
	pv->dev_size = dev_size;
	pv->pe_start = pe_start;
	if (vg->extent_size && dev_size > pe_start)
		pv->pe_count = (dev_size - pe_start) / vg->extent_size;
	vg->nr_pvs++;
	if (out)
		*out = pv;
	return 0;
}

int lvm_vg_add_lv(struct lvm_vg *vg, const char *name, const char *id, uint32_t status,
		  struct lvm_lv **out)
{
	struct lvm_lv *lvs, *lv;

	if (!lvm_name_valid(name))
		return -EINVAL;
	if (vg->nr_lvs >= LVM_VG_MAX_LVS)
		return -E2BIG;
	/* Doubling: reading or building a VG of n LVs copies O(n) of them, not O(n^2). */
	if (vg->nr_lvs >= vg->lv_cap) {
		unsigned cap = vg->lv_cap ? vg->lv_cap * 2 : 8;

		lvs = realloc(vg->lvs, cap * sizeof(*lvs));
		if (!lvs)
			return -ENOMEM;
		vg->lvs = lvs;
		vg->lv_cap = cap;
	}
	lvs = vg->lvs;
	lv = &lvs[vg->nr_lvs];
	memset(lv, 0, sizeof(*lv));
	if (!lvm_id_parse(id, lv->id))
		return -EINVAL;
	copy_name(lv->name, name);
	lv->status = status;
	vg->nr_lvs++;
	if (out)
		*out = lv;
	return 0;
}

uint64_t lvm_lv_extents(const struct lvm_lv *lv)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < lv->nr_segs; i++)
		n += lv->segs[i].extent_count;
	return n;
}

int lvm_lv_add_seg(struct lvm_lv *lv, enum lvm_seg_type type, uint64_t extent_count,
		   struct lvm_seg **out)
{
	struct lvm_seg *segs, *s;

	if (lv->nr_segs >= LVM_LV_MAX_SEGS)
		return -E2BIG;
	segs = realloc(lv->segs, (lv->nr_segs + 1) * sizeof(*segs));
	if (!segs)
		return -ENOMEM;
	lv->segs = segs;
	s = &segs[lv->nr_segs];
	memset(s, 0, sizeof(*s));
	s->start_extent = lvm_lv_extents(lv);
	s->extent_count = extent_count;
	s->type = type;
	s->zero_new_blocks = -1;
	lv->nr_segs++;
	if (out)
		*out = s;
	return 0;
}

int lvm_lv_set_creation(struct lvm_lv *lv, uint64_t time, const char *host)
{
	char *h = dup_str(host);

	if (!h)
		return -ENOMEM;
	free(lv->creation_host);
	lv->creation_host = h;
	lv->creation_time = time;
	lv->has_creation = true;
	return 0;
}

static int add_message(struct lvm_seg *seg, const struct lvm_thin_msg *m)
{
	struct lvm_thin_msg *v;

	if (seg->type != LVM_SEG_THIN_POOL)
		return -EINVAL;
	if (seg->nr_msgs >= LVM_POOL_MAX_MSGS)
		return -E2BIG;
	v = realloc(seg->msgs, (seg->nr_msgs + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	seg->msgs = v;
	v[seg->nr_msgs++] = *m;
	return 0;
}

int lvm_seg_add_message_create(struct lvm_seg *seg, const char *name)
{
	struct lvm_thin_msg m = { .type = LVM_MSG_CREATE };

	if (!lvm_name_valid(name) || !copy_name(m.lv, name))
		return -EINVAL;
	return add_message(seg, &m);
}

int lvm_seg_add_message_delete(struct lvm_seg *seg, uint32_t device_id)
{
	struct lvm_thin_msg m = { .type = LVM_MSG_DELETE, .device_id = device_id };

	return add_message(seg, &m);
}

void lvm_seg_clear_messages(struct lvm_seg *seg)
{
	free(seg->msgs);
	seg->msgs = NULL;
	seg->nr_msgs = 0;
}

int lvm_lv_map(const struct lvm_vg *vg, const struct lvm_lv *lv, struct lvm_piece *out,
	       unsigned max, unsigned *nr)
{
	*nr = 0;
	if (!lv->nr_segs)
		return -EINVAL;
	for (unsigned i = 0; i < lv->nr_segs; i++) {
		const struct lvm_seg *s = &lv->segs[i];
		const struct lvm_pv *pv;

		if (s->type != LVM_SEG_STRIPED || s->pv >= vg->nr_pvs)
			return -EINVAL;
		pv = &vg->pvs[s->pv];
		/* The bounds lvm_vg_validate() checks, so that nothing below overflows. */
		if (s->pe > pv->pe_count || s->extent_count > pv->pe_count - s->pe ||
		    pv->pe_count > UINT64_MAX / 2 / (vg->extent_size ? vg->extent_size : 1) ||
		    pv->pe_start > UINT64_MAX / 2)
			return -EINVAL;
	}
	*nr = lv->nr_segs;
	if (lv->nr_segs > max)
		return -E2BIG;
	for (unsigned i = 0; i < lv->nr_segs; i++) {
		const struct lvm_seg *s = &lv->segs[i];

		out[i].pv = s->pv;
		out[i].pv_sector = vg->pvs[s->pv].pe_start + s->pe * vg->extent_size;
		out[i].sectors = s->extent_count * vg->extent_size;
	}
	return 0;
}

struct lvm_lv *lvm_vg_find_lv(const struct lvm_vg *vg, const char *name)
{
	for (unsigned i = 0; i < vg->nr_lvs; i++)
		if (!strcmp(vg->lvs[i].name, name))
			return &vg->lvs[i];
	return NULL;
}

/* ---- hashed lookups ----------------------------------------------------------------------- */

/* A table of core/base/hash.h: slot[] and its mask (slots - 1). */
struct ix_table {
	size_t mask;
	uint32_t *slot;
};

static int ix_init(struct ix_table *t, size_t n)
{
	size_t slots = hash_ix_slots(n);

	t->slot = calloc(slots, sizeof(*t->slot));
	t->mask = slots - 1;
	return t->slot ? 0 : -ENOMEM;
}

static void ix_put(struct ix_table *t, uint32_t h, unsigned i)
{
	hash_ix_put(t->slot, t->mask + 1, h, i);
}

struct lvm_lv_index {
	const struct lvm_vg *vg;
	struct ix_table t;
};

int lvm_lv_index_build(const struct lvm_vg *vg, struct lvm_lv_index **out)
{
	struct lvm_lv_index *ix = calloc(1, sizeof(*ix));

	if (!ix || ix_init(&ix->t, vg->nr_lvs)) {
		free(ix);
		return -ENOMEM;
	}
	ix->vg = vg;
	for (unsigned i = 0; i < vg->nr_lvs; i++)
		ix_put(&ix->t, hash_str(vg->lvs[i].name), i);
	*out = ix;
	return 0;
}

struct lvm_lv *lvm_lv_index_find(const struct lvm_lv_index *ix, const char *name)
{
	for (uint32_t h = hash_str(name) & (uint32_t)ix->t.mask; ix->t.slot[h];
	     h = (h + 1) & (uint32_t)ix->t.mask)
		if (!strcmp(ix->vg->lvs[ix->t.slot[h] - 1].name, name))
			return &ix->vg->lvs[ix->t.slot[h] - 1];
	return NULL;
}

void lvm_lv_index_free(struct lvm_lv_index *ix)
{
	if (ix)
		free(ix->t.slot);
	free(ix);
}

/* The LV named @name: through @ix when there is one. */
static const struct lvm_lv *find_lv(const struct lvm_vg *vg, const struct lvm_lv_index *ix,
				    const char *name)
{
	return ix ? lvm_lv_index_find(ix, name) : lvm_vg_find_lv(vg, name);
}

bool lvm_lv_name_valid(const char *name)
{
	return lvm_name_valid(name) && visible_name_ok(name);
}

void lvm_vg_remove_lv(struct lvm_vg *vg, struct lvm_lv *lv)
{
	size_t i = (size_t)(lv - vg->lvs);

	strs_free(&lv->flags);
	strs_free(&lv->tags);
	free(lv->creation_host);
	for (unsigned j = 0; j < lv->nr_segs; j++)
		free(lv->segs[j].msgs);
	free(lv->segs);
	memmove(lv, lv + 1, (vg->nr_lvs - i - 1) * sizeof(*lv));
	vg->nr_lvs--;
}

void lvm_strs_remove(struct lvm_strs *l, unsigned i)
{
	free(l->v[i]);
	memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof(*l->v));
	l->n--;
}

static int strs_copy(struct lvm_strs *dst, const struct lvm_strs *src)
{
	*dst = (struct lvm_strs){ 0 };
	if (!src->n)
		return 0;
	dst->v = calloc(src->n, sizeof(*dst->v));
	if (!dst->v)
		return -ENOMEM;
	for (unsigned i = 0; i < src->n; i++) {
		dst->v[i] = dup_str(src->v[i]);
		if (!dst->v[i])
			return -ENOMEM;
		dst->n++;
	}
	return 0;
}

/* A deep copy of an array of @n elements of @size bytes (NULL stays NULL). */
static int dup_array(void **dst, const void *src, size_t n, size_t size)
{
	*dst = NULL;
	if (!n)
		return 0;
	*dst = malloc(n * size);
	if (!*dst)
		return -ENOMEM;
	memcpy(*dst, src, n * size);
	return 0;
}

/* Everything an LV owns, copied; on -ENOMEM what was copied is freed by lvm_vg_free(). */
static int lv_copy(struct lvm_lv *dst, const struct lvm_lv *src)
{
	int rc;

	*dst = *src;
	dst->flags = dst->tags = (struct lvm_strs){ 0 };
	dst->creation_host = NULL;
	dst->nr_segs = 0;
	dst->segs = NULL;
	rc = strs_copy(&dst->flags, &src->flags);
	if (!rc)
		rc = strs_copy(&dst->tags, &src->tags);
	if (!rc && src->creation_host && !(dst->creation_host = dup_str(src->creation_host)))
		rc = -ENOMEM;
	if (!rc)
		rc = dup_array((void **)&dst->segs, src->segs, src->nr_segs, sizeof(*src->segs));
	if (rc)
		return rc;
	for (unsigned j = 0; j < src->nr_segs; j++)
		dst->segs[j].msgs = NULL, dst->segs[j].nr_msgs = 0;
	dst->nr_segs = src->nr_segs;
	for (unsigned j = 0; j < src->nr_segs; j++) {
		rc = dup_array((void **)&dst->segs[j].msgs, src->segs[j].msgs, src->segs[j].nr_msgs,
			       sizeof(*src->segs[j].msgs));
		if (rc)
			return rc;
		dst->segs[j].nr_msgs = src->segs[j].nr_msgs;
	}
	return 0;
}

int lvm_vg_copy(const struct lvm_vg *vg, struct lvm_vg **out, char *why, size_t why_len)
{
	struct lvm_vg *c;
	int rc = lvm_vg_validate(vg, why, why_len);

	if (rc)
		return rc;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	*c = *vg;
	c->flags = c->tags = (struct lvm_strs){ 0 };
	c->nr_pvs = c->nr_lvs = 0;
	c->pvs = NULL;
	c->lvs = NULL;
	c->description = c->creation_host = NULL;
	rc = strs_copy(&c->flags, &vg->flags);
	if (!rc)
		rc = strs_copy(&c->tags, &vg->tags);
	if (!rc && vg->description && !(c->description = dup_str(vg->description)))
		rc = -ENOMEM;
	if (!rc && vg->creation_host && !(c->creation_host = dup_str(vg->creation_host)))
		rc = -ENOMEM;
	if (!rc && vg->nr_pvs && !(c->pvs = calloc(vg->nr_pvs, sizeof(*c->pvs))))
		rc = -ENOMEM;
	for (unsigned i = 0; i < vg->nr_pvs && !rc; i++) {
		c->pvs[i] = vg->pvs[i];
		c->pvs[i].device = NULL;
		c->pvs[i].tags = (struct lvm_strs){ 0 };
		c->nr_pvs++;
		rc = strs_copy(&c->pvs[i].tags, &vg->pvs[i].tags);
		if (!rc && vg->pvs[i].device && !(c->pvs[i].device = dup_str(vg->pvs[i].device)))
			rc = -ENOMEM;
	}
	c->lv_cap = 0;
	if (!rc && vg->nr_lvs && !(c->lvs = calloc(vg->nr_lvs, sizeof(*c->lvs))))
		rc = -ENOMEM;
	if (c->lvs)
		c->lv_cap = vg->nr_lvs;
	for (unsigned i = 0; i < vg->nr_lvs && !rc; i++) {
		rc = lv_copy(&c->lvs[i], &vg->lvs[i]);
		c->nr_lvs++;
	}
	if (rc) {
		lvm_vg_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* ---- validation ------------------------------------------------------------------------ */

static bool is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static int check_tags(const struct lvm_strs *t, const char *what, const char *name, char *why,
		      size_t why_len)
{
	for (unsigned i = 0; i < t->n; i++)
		if (!lvm_tag_valid(t->v[i]))
			return why_set(why, why_len, "%s %s: bad tag '%.64s'", what, name, t->v[i]);
	return 0;
}

static int check_striped_component(const struct lvm_vg *vg, const struct lvm_lv_index *ix,
				   const struct lvm_lv *pool, const char *name, const char *role,
				   char *why, size_t why_len)
{
	const struct lvm_lv *c = find_lv(vg, ix, name);

	if (!c)
		return why_set(why, why_len, "thin pool %s: %s LV '%s' does not exist", pool->name,
			       role, name);
	if (c == pool || c->status & LVM_LV_VISIBLE)
		return why_set(why, why_len, "thin pool %s: %s LV %s must be a hidden LV",
			       pool->name, role, name);
	/* Any number of linear pieces, on any PVs (lvm_lv_map() lists them). */
	for (unsigned i = 0; i < c->nr_segs; i++)
		if (c->segs[i].type != LVM_SEG_STRIPED)
			return why_set(why, why_len, "thin pool %s: %s LV %s is not linear",
				       pool->name, role, name);
	/* A component used by two pools (or twice by one) corrupts both. */
	for (unsigned i = 0; i < vg->nr_lvs; i++) {
		const struct lvm_lv *o = &vg->lvs[i];

		if (o == pool || o->nr_segs != 1 || o->segs[0].type != LVM_SEG_THIN_POOL)
			continue;
		if (!strcmp(o->segs[0].metadata, name) || !strcmp(o->segs[0].pool, name))
			return why_set(why, why_len,
				       "LV %s is a component of two thin pools (%s, %s)", name,
				       pool->name, o->name);
	}
	if (!strcmp(pool->segs[0].metadata, pool->segs[0].pool))
		return why_set(why, why_len, "thin pool %s: metadata and data are the same LV",
			       pool->name);
	return 0;
}

/* lvm2's rules for pending messages (lib/thin/thin.c, thin_manip.c), and one of ours. */
static int check_messages(const struct lvm_vg *vg, const struct lvm_lv_index *ix,
			  const struct lvm_lv *pool, char *why, size_t why_len)
{
	const struct lvm_seg *s = &pool->segs[0];

	if (s->nr_msgs > LVM_POOL_MAX_MSGS)
		return why_set(why, why_len, "thin pool %s: more than %u pending messages",
			       pool->name, LVM_POOL_MAX_MSGS);
	/* lvm raises the id with the first message and sends set_transaction_id(id - 1, id). */
	if (s->nr_msgs && !s->transaction_id)
		return why_set(why, why_len, "thin pool %s: pending messages with transaction_id 0",
			       pool->name);
	for (unsigned i = 0; i < s->nr_msgs; i++) {
		const struct lvm_thin_msg *m = &s->msgs[i];

		switch (m->type) {
		case LVM_MSG_CREATE: {
			const struct lvm_lv *t = find_lv(vg, ix, m->lv);

			if (!t || t->nr_segs != 1 || t->segs[0].type != LVM_SEG_THIN ||
			    strcmp(t->segs[0].thin_pool, pool->name))
				return why_set(why, why_len,
					       "thin pool %s: message%u creates '%.64s', which is "
					       "not a thin LV of this pool",
					       pool->name, i + 1, m->lv);
			break;
		}
		case LVM_MSG_DELETE:
			if (m->device_id > LVM_THIN_MAX_DEV_ID)
				return why_set(why, why_len,
					       "thin pool %s: message%u deletes device_id %u, out "
					       "of range",
					       pool->name, i + 1, m->device_id);
			break;
		default:
			return why_set(why, why_len, "thin pool %s: message%u of unknown type",
				       pool->name, i + 1);
		}
		/* lvm refuses to queue a second message for the same LV or device id. */
		for (unsigned j = 0; j < i; j++)
			if (s->msgs[j].type == m->type &&
			    (m->type == LVM_MSG_CREATE ? !strcmp(s->msgs[j].lv, m->lv)
						       : s->msgs[j].device_id == m->device_id))
				return why_set(why, why_len,
					       "thin pool %s: message%u repeats message%u",
					       pool->name, i + 1, j + 1);
	}
	return 0;
}

static int check_lv(const struct lvm_vg *vg, const struct lvm_lv_index *ix, const struct lvm_lv *lv,
		    char *why, size_t why_len)
{
	uint64_t next = 0;

	if (!lvm_name_valid(lv->name))
		return why_set(why, why_len, "bad LV name '%.64s'", lv->name);
	if ((lv->status & LVM_LV_VISIBLE) && !visible_name_ok(lv->name))
		return why_set(why, why_len, "LV %s: a visible LV may not use a reserved name",
			       lv->name);
	if (lv->status & ~(LVM_LV_READ | LVM_LV_WRITE | LVM_LV_VISIBLE))
		return why_set(why, why_len, "LV %s: unknown status bits", lv->name);
	if (!lvm_id_parse(lv->id, (char[LVM_ID_LEN + 1]){ 0 }))
		return why_set(why, why_len, "LV %s: bad id", lv->name);
	if (lv->has_creation && !lv->creation_host)
		return why_set(why, why_len, "LV %s: creation_time without creation_host",
			       lv->name);
	if (check_tags(&lv->tags, "LV", lv->name, why, why_len) ||
	    check_tags(&lv->flags, "LV", lv->name, why, why_len))
		return -EINVAL;
	if (!lv->nr_segs)
		return why_set(why, why_len, "LV %s has no segment", lv->name);
	for (unsigned i = 0; i < lv->nr_segs; i++) {
		const struct lvm_seg *s = &lv->segs[i];

		if (s->start_extent != next || !s->extent_count ||
		    s->extent_count > UINT64_MAX / 2 - next)
			return why_set(why, why_len,
				       "LV %s: segment %u does not follow the previous one "
				       "(start %llu, %llu extents)",
				       lv->name, i + 1, (unsigned long long)s->start_extent,
				       (unsigned long long)s->extent_count);
		next += s->extent_count;
		if (s->nr_msgs && s->type != LVM_SEG_THIN_POOL)
			return why_set(why, why_len,
				       "LV %s: pending messages on a segment that is not a thin "
				       "pool",
				       lv->name);
		if (s->type != LVM_SEG_STRIPED && lv->nr_segs != 1)
			return why_set(why, why_len,
				       "LV %s: a thin or thin-pool LV has one segment", lv->name);
		switch (s->type) {
		case LVM_SEG_STRIPED: {
			const struct lvm_pv *pv;

			if (s->pv >= vg->nr_pvs)
				return why_set(why, why_len, "LV %s: segment %u on no PV", lv->name,
					       i + 1);
			pv = &vg->pvs[s->pv];
			if (s->pe > pv->pe_count || s->extent_count > pv->pe_count - s->pe)
				return why_set(why, why_len,
					       "LV %s: segment %u runs past the end of PV %s "
					       "(extents %llu+%llu of %llu)",
					       lv->name, i + 1, pv->key, (unsigned long long)s->pe,
					       (unsigned long long)s->extent_count,
					       (unsigned long long)pv->pe_count);
			break;
		}
		case LVM_SEG_THIN_POOL:
			if (s->chunk_size < LVM_CHUNK_MIN || s->chunk_size > LVM_CHUNK_MAX ||
			    s->chunk_size % LVM_CHUNK_MIN)
				return why_set(why, why_len,
					       "thin pool %s: chunk_size %u is not a multiple of "
					       "128 sectors in 128..2097152",
					       lv->name, s->chunk_size);
			if (s->zero_new_blocks > 1 || s->zero_new_blocks < -1)
				return why_set(why, why_len, "thin pool %s: bad zero_new_blocks",
					       lv->name);
			if (s->discards > LVM_DISCARDS_PASSDOWN)
				return why_set(why, why_len, "thin pool %s: bad discards",
					       lv->name);
			if (check_striped_component(vg, ix, lv, s->metadata, "metadata", why,
						    why_len) ||
			    check_striped_component(vg, ix, lv, s->pool, "data", why, why_len) ||
			    check_messages(vg, ix, lv, why, why_len))
				return -EINVAL;
			/* lvm refuses every command on a pool whose metadata LV is named otherwise. */
			if (!strstr(s->metadata, "_tmeta"))
				return why_set(why, why_len,
					       "thin pool %s: metadata LV name %s does not contain "
					       "_tmeta",
					       lv->name, s->metadata);
			if (lvm_lv_extents(find_lv(vg, ix, s->pool)) != s->extent_count)
				return why_set(
				    why, why_len,
				    "thin pool %s: %llu extents, its data LV %s has %llu", lv->name,
				    (unsigned long long)s->extent_count, s->pool,
				    (unsigned long long)lvm_lv_extents(find_lv(vg, ix, s->pool)));
			break;
		case LVM_SEG_THIN: {
			const struct lvm_lv *pool = find_lv(vg, ix, s->thin_pool);

			if (!pool || pool->nr_segs != 1 || pool->segs[0].type != LVM_SEG_THIN_POOL)
				return why_set(why, why_len,
					       "thin LV %s: pool '%s' is not a thin pool", lv->name,
					       s->thin_pool);
			if (s->device_id > LVM_THIN_MAX_DEV_ID)
				return why_set(why, why_len,
					       "thin LV %s: device_id %u out of range", lv->name,
					       s->device_id);
			if (s->origin[0]) {
				const struct lvm_lv *o = find_lv(vg, ix, s->origin);

				if (!o || o == lv || o->nr_segs != 1 ||
				    o->segs[0].type != LVM_SEG_THIN ||
				    strcmp(o->segs[0].thin_pool, s->thin_pool))
					return why_set(
					    why, why_len,
					    "thin LV %s: origin '%s' is not a thin LV of "
					    "pool %s",
					    lv->name, s->origin, s->thin_pool);
			}
			/* Two thin LVs of one pool with one device_id: lvm_vg_validate(). */
			break;
		}
		default:
			return why_set(why, why_len, "LV %s: unknown segment type", lv->name);
		}
	}
	return 0;
}

/* No physical extent may belong to two segments. */
static int check_overlaps(const struct lvm_vg *vg, char *why, size_t why_len)
{
	for (unsigned a = 0; a < vg->nr_lvs; a++)
		for (unsigned i = 0; i < vg->lvs[a].nr_segs; i++) {
			const struct lvm_seg *s = &vg->lvs[a].segs[i];

			if (s->type != LVM_SEG_STRIPED)
				continue;
			for (unsigned b = a; b < vg->nr_lvs; b++)
				for (unsigned j = b == a ? i + 1 : 0; j < vg->lvs[b].nr_segs; j++) {
					const struct lvm_seg *t = &vg->lvs[b].segs[j];

					if (t->type == LVM_SEG_STRIPED && t->pv == s->pv &&
					    t->pe < s->pe + s->extent_count &&
					    s->pe < t->pe + t->extent_count)
						return why_set(why, why_len,
							       "LVs %s and %s use the same extents "
							       "of PV %s",
							       vg->lvs[a].name, vg->lvs[b].name,
							       vg->pvs[s->pv].key);
				}
		}
	return 0;
}

/*
 * Each LV (check_lv()), and what no LV can see alone: names, ids and a pool's device_ids
 * used twice. Hashed, so that a VG of 10,000 thin LVs costs O(n) here, not O(n^2).
 */
static int check_lvs(const struct lvm_vg *vg, char *why, size_t why_len)
{
	struct lvm_lv_index *ix = NULL;
	struct ix_table ids = { 0 }, devs = { 0 };
	int rc = lvm_lv_index_build(vg, &ix);

	if (!rc)
		rc = ix_init(&ids, vg->nr_lvs);
	if (!rc)
		rc = ix_init(&devs, vg->nr_lvs);
	for (unsigned i = 0; i < vg->nr_lvs && !rc; i++) {
		const struct lvm_lv *lv = &vg->lvs[i], *o;
		uint32_t h;

		rc = check_lv(vg, ix, lv, why, why_len);
		if (rc)
			break;
		/* The first LV of that name is i itself, unless an earlier one has it. */
		o = lvm_lv_index_find(ix, lv->name);
		for (h = hash_str(lv->id) & (uint32_t)ids.mask; !o && ids.slot[h];
		     h = (h + 1) & (uint32_t)ids.mask)
			if (!strcmp(vg->lvs[ids.slot[h] - 1].id, lv->id))
				o = &vg->lvs[ids.slot[h] - 1];
		if (o && o != lv) {
			rc = why_set(why, why_len, "LVs %s and %s share a name or an id", o->name,
				     lv->name);
			break;
		}
		ix_put(&ids, hash_str(lv->id), i);
		if (lv->nr_segs != 1 || lv->segs[0].type != LVM_SEG_THIN)
			continue;
		for (h = hash_u32(lv->segs[0].device_id) & (uint32_t)devs.mask; devs.slot[h];
		     h = (h + 1) & (uint32_t)devs.mask) {
			o = &vg->lvs[devs.slot[h] - 1];
			if (o->segs[0].device_id == lv->segs[0].device_id &&
			    !strcmp(o->segs[0].thin_pool, lv->segs[0].thin_pool)) {
				rc = why_set(why, why_len, "thin LVs %s and %s share device_id %u",
					     o->name, lv->name, lv->segs[0].device_id);
				break;
			}
		}
		if (!rc)
			ix_put(&devs, hash_u32(lv->segs[0].device_id), i);
	}
	lvm_lv_index_free(ix);
	free(ids.slot);
	free(devs.slot);
	return rc;
}

int lvm_vg_validate(const struct lvm_vg *vg, char *why, size_t why_len)
{
	int rc;

	if (!lvm_name_valid(vg->name))
		return why_set(why, why_len, "bad VG name '%.64s'", vg->name);
	if (!lvm_id_parse(vg->id, (char[LVM_ID_LEN + 1]){ 0 }))
		return why_set(why, why_len, "VG %s: bad id", vg->name);
	if (vg->status & ~(LVM_VG_RESIZEABLE | LVM_VG_READ | LVM_VG_WRITE))
		return why_set(why, why_len, "VG %s: unknown status bits", vg->name);
	if (!vg->extent_size || (!is_pow2(vg->extent_size) && vg->extent_size % 256))
		return why_set(why, why_len,
			       "VG %s: extent_size %u is neither a power of two nor a multiple "
			       "of 256 sectors",
			       vg->name, vg->extent_size);
	if (!vg->nr_pvs)
		return why_set(why, why_len, "VG %s has no physical volume", vg->name);
	if ((vg->max_pv && vg->nr_pvs > vg->max_pv) || (vg->max_lv && vg->nr_lvs > vg->max_lv))
		return why_set(why, why_len, "VG %s: more PVs or LVs than max_pv / max_lv",
			       vg->name);
	if (vg->has_creation != !!vg->creation_host)
		return why_set(why, why_len, "creation_time and creation_host go together");
	rc = check_tags(&vg->tags, "VG", vg->name, why, why_len);
	if (!rc)
		rc = check_tags(&vg->flags, "VG", vg->name, why, why_len);
	if (rc)
		return rc;
	for (unsigned i = 0; i < vg->nr_pvs; i++) {
		const struct lvm_pv *pv = &vg->pvs[i];

		if (!lvm_name_valid(pv->key) || !lvm_id_parse(pv->id, (char[LVM_ID_LEN + 1]){ 0 }))
			return why_set(why, why_len, "PV %.64s: bad key or id", pv->key);
		if (pv->status & ~LVM_PV_ALLOCATABLE)
			return why_set(why, why_len, "PV %s: unknown status bits", pv->key);
		/* Only the extents must fit in dev_size: lvm's pvresize records the device's
		 * size less pe_start there (lvm2 2.03.16), so a PV whose extents end at the
		 * end of the device has dev_size = pe_count * extent_size. */
		if (!pv->pe_start || pv->pe_count > UINT64_MAX / vg->extent_size ||
		    (pv->dev_size && pv->pe_count * vg->extent_size > pv->dev_size))
			return why_set(why, why_len,
				       "PV %s: %llu extents from sector %llu do not fit in %llu "
				       "sectors",
				       pv->key, (unsigned long long)pv->pe_count,
				       (unsigned long long)pv->pe_start,
				       (unsigned long long)pv->dev_size);
		if (check_tags(&pv->tags, "PV", pv->key, why, why_len))
			return -EINVAL;
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(vg->pvs[j].key, pv->key) || !strcmp(vg->pvs[j].id, pv->id))
				return why_set(why, why_len, "PVs %s and %s share a key or an id",
					       vg->pvs[j].key, pv->key);
	}
	rc = check_lvs(vg, why, why_len);
	return rc ? rc : check_overlaps(vg, why, why_len);
}

/* ---- text -> model --------------------------------------------------------------------- */

/*
 * "@a@b@c@d" into @out of @size bytes (cut short, NUL terminated): the name error messages
 * give an LV or a segment, made for each of them whether or not an error comes; snprintf()
 * is slow enough under TCG to show at 10,000 LVs.
 */
static void label(char *out, size_t size, const char *a, const char *b, const char *c,
		  const char *d)
{
	const char *parts[] = { a, b, c, d };
	size_t at = 0;

	for (unsigned i = 0; i < 4; i++)
		for (const char *p = parts[i]; *p && at + 1 < size; p++)
			out[at++] = *p;
	out[at] = 0;
}

struct rd {
	char *why;
	size_t why_len;
};

/* A non-negative integer key no larger than @max. */
static int get_u64(struct rd *r, const struct lvm_node *sec, const char *key, bool required,
		   uint64_t max, uint64_t *v, const char *what)
{
	int64_t x;
	int rc = lvm_get_int(sec, key, &x);

	if (rc == -ENOENT && !required)
		return 1;
	if (rc == -ENOENT)
		return why_set(r->why, r->why_len, "%s: '%s' is missing", what, key);
	if (rc || x < 0 || (uint64_t)x > max)
		return why_set(r->why, r->why_len, "%s: '%s' is not a number in 0..%llu", what, key,
			       (unsigned long long)max);
	*v = (uint64_t)x;
	return 0;
}

static int get_name(struct rd *r, const struct lvm_node *sec, const char *key, bool required,
		    char out[LVM_NAME_MAX + 1], const char *what)
{
	const char *s;
	int rc = lvm_get_str(sec, key, &s);

	if (rc == -ENOENT && !required)
		return 1;
	if (rc)
		return why_set(r->why, r->why_len, "%s: '%s' %s", what, key,
			       rc == -ENOENT ? "is missing" : "is not a string");
	if (!lvm_name_valid(s) || !copy_name(out, s))
		return why_set(r->why, r->why_len, "%s: '%s' is not a valid LV name", what, key);
	return 0;
}

static int get_id(struct rd *r, const struct lvm_node *sec, char out[LVM_ID_LEN + 1],
		  const char *what)
{
	const char *s;

	if (lvm_get_str(sec, "id", &s))
		return why_set(r->why, r->why_len, "%s: 'id' is missing or not a string", what);
	if (!lvm_id_parse(s, out))
		return why_set(r->why, r->why_len, "%s: bad id '%.48s'", what, s);
	return 0;
}

static int get_strs(struct rd *r, const struct lvm_node *sec, const char *key, struct lvm_strs *out,
		    const char *what)
{
	const struct lvm_node *a;
	int rc = lvm_get_array(sec, key, &a);

	if (rc == -ENOENT)
		return 0;
	if (rc)
		return why_set(r->why, r->why_len, "%s: '%s' is not an array", what, key);
	for (const struct lvm_node *e = a->child; e; e = e->next) {
		if (e->type != LVM_NODE_STR)
			return why_set(r->why, r->why_len, "%s: '%s' holds a non-string", what,
				       key);
		rc = lvm_strs_add(out, e->str);
		if (rc == -EINVAL)
			return why_set(r->why, r->why_len, "%s: bad word '%.64s' in '%s'", what,
				       e->str, key);
		if (rc == -E2BIG)
			return why_set(r->why, r->why_len, "%s: more than %u words in '%s'", what,
				       LVM_MAX_TAGS, key);
		if (rc)
			return rc;
	}
	return 0;
}

struct word {
	const char *word;
	uint32_t bit; /* 0: known to lvm, refused here with @why */
	const char *why;
};

static int get_status(struct rd *r, const struct lvm_node *sec, const struct word *words,
		      unsigned n, uint32_t *out, const char *what)
{
	const struct lvm_node *a;

	*out = 0;
	if (lvm_get_array(sec, "status", &a))
		return why_set(r->why, r->why_len, "%s: 'status' is missing or not an array", what);
	for (const struct lvm_node *e = a->child; e; e = e->next) {
		unsigned i;

		if (e->type != LVM_NODE_STR)
			return why_set(r->why, r->why_len, "%s: status holds a non-string", what);
		for (i = 0; i < n && strcmp(words[i].word, e->str); i++)
			;
		if (i == n)
			return why_set(r->why, r->why_len, "%s: unknown status word '%.32s'", what,
				       e->str);
		if (!words[i].bit)
			return why_set(r->why, r->why_len, "%s: status %s: %s", what, words[i].word,
				       words[i].why);
		*out |= words[i].bit;
	}
	return 0;
}

static const struct word vg_words[] = {
	{ "RESIZEABLE", LVM_VG_RESIZEABLE, NULL },
	{ "READ", LVM_VG_READ, NULL },
	{ "WRITE", LVM_VG_WRITE, NULL },
	{ "EXPORTED", 0, "the VG was exported (vgexport); run vgimport first" },
	{ "CLUSTERED", 0, "clustered VGs are not supported" },
	{ "SHARED", 0, "shared VGs are not supported" },
	{ "PVMOVE", 0, "a pvmove is in progress; finish it with lvm first" },
};

static const struct word pv_words[] = {
	{ "ALLOCATABLE", LVM_PV_ALLOCATABLE, NULL },
	{ "EXPORTED", 0, "the VG was exported (vgexport); run vgimport first" },
	{ "MISSING", 0, "lvm marked this PV missing; repair the VG with lvm first" },
};

static const struct word lv_words[] = {
	{ "READ", LVM_LV_READ, NULL },
	{ "WRITE", LVM_LV_WRITE, NULL },
	{ "VISIBLE", LVM_LV_VISIBLE, NULL },
	{ "LOCKED", 0, "a pvmove is in progress; finish it with lvm first" },
	{ "PVMOVE", 0, "a pvmove is in progress; finish it with lvm first" },
	{ "FIXED_MINOR", 0, "fixed device numbers are not supported" },
	{ "MERGING", 0, "a snapshot merge is pending; finish it with lvm first" },
	{ "CONVERTING", 0, "a conversion is in progress; finish it with lvm first" },
};

static int read_pv(struct rd *r, struct lvm_vg *vg, const struct lvm_node *sec)
{
	struct lvm_pv *pv;
	char what[LVM_NAME_MAX + 8];
	const char *dev;
	int rc;

	snprintf(what, sizeof(what), "PV %s", sec->key);
	if (!lvm_name_valid(sec->key))
		return why_set(r->why, r->why_len, "bad PV key '%.64s'", sec->key);
	if (vg->nr_pvs >= LVM_VG_MAX_PVS)
		return why_set(r->why, r->why_len, "more than %u PVs", LVM_VG_MAX_PVS);
	/* An id that is valid for add_pv; get_id below checks the real one. */
	rc = lvm_vg_add_pv(vg, "00000000000000000000000000000000", 0, 0, &pv);
	if (rc)
		return rc;
	copy_name(pv->key, sec->key);
	if ((rc = get_id(r, sec, pv->id, what)) ||
	    (rc = get_status(r, sec, pv_words, sizeof(pv_words) / sizeof(pv_words[0]), &pv->status,
			     what)) ||
	    (rc = get_strs(r, sec, "tags", &pv->tags, what)))
		return rc;
	if ((rc = get_u64(r, sec, "dev_size", false, UINT64_MAX / 2, &pv->dev_size, what)) < 0 ||
	    (rc = get_u64(r, sec, "pe_start", true, UINT64_MAX / 2, &pv->pe_start, what)) < 0 ||
	    (rc = get_u64(r, sec, "pe_count", true, UINT32_MAX, &pv->pe_count, what)) < 0)
		return rc;
	if (!lvm_get_str(sec, "device", &dev)) {
		pv->device = dup_str(dev);
		if (!pv->device)
			return -ENOMEM;
	}
	if (lvm_find(sec, "ba_start") || lvm_find(sec, "ba_size"))
		return why_set(r->why, r->why_len, "%s: bootloader areas are not supported", what);
	return 0;
}

/*
 * Every subsection of a thin-pool segment is a message, in text order (lvm names them
 * message1..N but reads any name); each holds exactly one of `create = "LV"` and
 * `delete = ID`. What they name is checked by lvm_vg_validate().
 */
static int read_messages(struct rd *r, struct lvm_seg *s, const struct lvm_node *sec,
			 const char *what)
{
	for (const struct lvm_node *m = sec->child; m; m = m->next) {
		const char *name;
		int64_t id;
		int rc_c, rc_d, rc;

		if (m->type != LVM_NODE_SECTION)
			continue;
		rc_c = lvm_get_str(m, "create", &name);
		rc_d = lvm_get_int(m, "delete", &id);
		if ((rc_c && rc_c != -ENOENT) || (rc_d && rc_d != -ENOENT) || !rc_c == !rc_d)
			return why_set(r->why, r->why_len,
				       "%s: message %.32s must hold either create = \"LV\" or "
				       "delete = ID",
				       what, m->key);
		if (!rc_c && !lvm_name_valid(name))
			return why_set(r->why, r->why_len,
				       "%s: message %.32s: '%.64s' is not a valid LV name", what,
				       m->key, name);
		if (!rc_d && (id < 0 || id > UINT32_MAX))
			return why_set(r->why, r->why_len,
				       "%s: message %.32s: delete of device id %lld out of range",
				       what, m->key, (long long)id);
		rc = !rc_c ? lvm_seg_add_message_create(s, name)
			   : lvm_seg_add_message_delete(s, (uint32_t)id);
		if (rc == -E2BIG)
			return why_set(r->why, r->why_len, "%s: more than %u pending messages",
				       what, LVM_POOL_MAX_MSGS);
		if (rc)
			return rc;
	}
	return 0;
}

static int read_seg(struct rd *r, struct lvm_vg *vg, struct lvm_lv *lv, const struct lvm_node *sec)
{
	struct lvm_seg *s;
	char what[2 * LVM_NAME_MAX + 16];
	const char *type;
	uint64_t v;
	int rc;

	label(what, sizeof(what), "LV ", lv->name, " ", sec->key);
	if (lv->nr_segs >= LVM_LV_MAX_SEGS)
		return why_set(r->why, r->why_len, "LV %s: more than %u segments", lv->name,
			       LVM_LV_MAX_SEGS);
	rc = lvm_lv_add_seg(lv, LVM_SEG_STRIPED, 0, &s);
	if (rc)
		return rc;
	if ((rc = get_u64(r, sec, "start_extent", true, UINT32_MAX, &s->start_extent, what)) ||
	    (rc = get_u64(r, sec, "extent_count", true, UINT32_MAX, &s->extent_count, what)))
		return rc;
	if (lvm_get_str(sec, "type", &type))
		return why_set(r->why, r->why_len, "%s: 'type' is missing or not a string", what);
	if (!strcmp(type, "striped")) {
		const struct lvm_node *a, *pvk, *pe;

		s->type = LVM_SEG_STRIPED;
		if ((rc = get_u64(r, sec, "stripe_count", true, UINT32_MAX, &v, what)))
			return rc;
		if (v != 1)
			return why_set(r->why, r->why_len,
				       "%s: %llu stripes; the appliance serves linear LVs only",
				       what, (unsigned long long)v);
		if (lvm_get_array(sec, "stripes", &a) || lvm_node_count(a) != 2 ||
		    (pvk = a->child)->type != LVM_NODE_STR ||
		    (pe = pvk->next)->type != LVM_NODE_INT)
			return why_set(r->why, r->why_len, "%s: 'stripes' is not [\"pvN\", extent]",
				       what);
		for (s->pv = 0; s->pv < vg->nr_pvs && strcmp(vg->pvs[s->pv].key, pvk->str); s->pv++)
			;
		if (s->pv == vg->nr_pvs)
			return why_set(r->why, r->why_len, "%s: unknown PV '%.64s'", what,
				       pvk->str);
		if (pe->num < 0 || pe->num > UINT32_MAX)
			return why_set(r->why, r->why_len, "%s: bad first extent", what);
		s->pe = (uint64_t)pe->num;
	} else if (!strcmp(type, "thin-pool")) {
		const char *d;

		s->type = LVM_SEG_THIN_POOL;
		if ((rc = get_name(r, sec, "metadata", true, s->metadata, what)) ||
		    (rc = get_name(r, sec, "pool", true, s->pool, what)) ||
		    (rc = get_u64(r, sec, "transaction_id", true, INT64_MAX, &s->transaction_id,
				  what)) ||
		    (rc = get_u64(r, sec, "chunk_size", true, UINT32_MAX, &v, what)))
			return rc;
		s->chunk_size = (uint32_t)v;
		rc = get_u64(r, sec, "zero_new_blocks", false, 1, &v, what);
		if (rc < 0)
			return rc;
		s->zero_new_blocks = rc ? -1 : (int)v;
		rc = lvm_get_str(sec, "discards", &d);
		if (rc == -ENOENT)
			s->discards = LVM_DISCARDS_UNSET;
		else if (!rc && !strcmp(d, "ignore"))
			s->discards = LVM_DISCARDS_IGNORE;
		else if (!rc && !strcmp(d, "nopassdown"))
			s->discards = LVM_DISCARDS_NOPASSDOWN;
		else if (!rc && !strcmp(d, "passdown"))
			s->discards = LVM_DISCARDS_PASSDOWN;
		else
			return why_set(r->why, r->why_len, "%s: bad 'discards'", what);
		if ((rc = read_messages(r, s, sec, what)))
			return rc;
		if (lvm_find(sec, "crop_metadata") || lvm_find(sec, "metadata_format"))
			return why_set(r->why, r->why_len,
				       "%s: crop_metadata / metadata_format are not supported",
				       what);
	} else if (!strcmp(type, "thin")) {
		s->type = LVM_SEG_THIN;
		if ((rc = get_name(r, sec, "thin_pool", true, s->thin_pool, what)) ||
		    (rc = get_u64(r, sec, "transaction_id", true, INT64_MAX, &s->transaction_id,
				  what)) ||
		    (rc = get_u64(r, sec, "device_id", true, LVM_THIN_MAX_DEV_ID, &v, what)))
			return rc;
		s->device_id = (uint32_t)v;
		rc = get_name(r, sec, "origin", false, s->origin, what);
		if (rc < 0)
			return rc;
		if (rc)
			s->origin[0] = 0;
		if (lvm_find(sec, "external_origin") || lvm_find(sec, "merge"))
			return why_set(r->why, r->why_len,
				       "%s: external origins and merges are not supported", what);
	} else {
		return why_set(r->why, r->why_len,
			       "%s: segment type '%.32s' is not supported (only striped, "
			       "thin-pool, thin)",
			       what, type);
	}
	return 0;
}

static int read_creation(struct rd *r, const struct lvm_node *sec, bool *has, uint64_t *time,
			 char **host, const char *what)
{
	const char *h;
	int rt, rh;

	rt = get_u64(r, sec, "creation_time", false, INT64_MAX, time, what);
	if (rt < 0)
		return rt;
	rh = lvm_get_str(sec, "creation_host", &h);
	if (rh && rh != -ENOENT)
		return why_set(r->why, r->why_len, "%s: creation_host is not a string", what);
	if (!rt != !rh)
		return why_set(r->why, r->why_len,
			       "%s: creation_time and creation_host go together", what);
	*has = !rt;
	if (*has) {
		*host = dup_str(h);
		if (!*host)
			return -ENOMEM;
	}
	return 0;
}

static int read_lv(struct rd *r, struct lvm_vg *vg, const struct lvm_node *sec)
{
	struct lvm_lv *lv;
	char what[LVM_NAME_MAX + 8];
	uint64_t count;
	int rc;

	label(what, sizeof(what), "LV ", sec->key, "", "");
	if (!lvm_name_valid(sec->key))
		return why_set(r->why, r->why_len, "bad LV name '%.64s'", sec->key);
	if (vg->nr_lvs >= LVM_VG_MAX_LVS)
		return why_set(r->why, r->why_len, "more than %u LVs", LVM_VG_MAX_LVS);
	rc = lvm_vg_add_lv(vg, sec->key, "00000000000000000000000000000000", 0, &lv);
	if (rc)
		return rc;
	if ((rc = get_id(r, sec, lv->id, what)) ||
	    (rc = get_status(r, sec, lv_words, sizeof(lv_words) / sizeof(lv_words[0]), &lv->status,
			     what)) ||
	    (rc = get_strs(r, sec, "flags", &lv->flags, what)) ||
	    (rc = get_strs(r, sec, "tags", &lv->tags, what)) ||
	    (rc = read_creation(r, sec, &lv->has_creation, &lv->creation_time, &lv->creation_host,
				what)) ||
	    (rc = get_u64(r, sec, "segment_count", true, LVM_LV_MAX_SEGS, &count, what)))
		return rc;
	/* Every subsection of an LV is a segment (lvm names them segment1..N). */
	for (const struct lvm_node *m = sec->child; m; m = m->next) {
		if (m->type != LVM_NODE_SECTION)
			continue;
		rc = read_seg(r, vg, lv, m);
		if (rc)
			return rc;
	}
	if (count != lv->nr_segs)
		return why_set(r->why, r->why_len,
			       "%s: segment_count is %llu but %u segments follow", what,
			       (unsigned long long)count, lv->nr_segs);
	/* Order by start_extent (insertion sort: at most LVM_LV_MAX_SEGS); validate checks gaps. */
	for (unsigned i = 1; i < lv->nr_segs; i++)
		for (unsigned j = i; j && lv->segs[j - 1].start_extent > lv->segs[j].start_extent;
		     j--) {
			struct lvm_seg t = lv->segs[j];

			lv->segs[j] = lv->segs[j - 1];
			lv->segs[j - 1] = t;
		}
	return 0;
}

static int read_vg(struct rd *r, struct lvm_vg *vg, const struct lvm_node *sec)
{
	const struct lvm_node *pvs, *lvs;
	uint64_t v;
	const char *s;
	int rc;

	if (!lvm_name_valid(sec->key) || !copy_name(vg->name, sec->key))
		return why_set(r->why, r->why_len, "bad VG name '%.64s'", sec->key);
	if ((rc = get_id(r, sec, vg->id, "VG")) ||
	    (rc = get_u64(r, sec, "seqno", true, UINT32_MAX, &v, "VG")))
		return rc;
	vg->seqno = (uint32_t)v;
	if ((rc = get_status(r, sec, vg_words, sizeof(vg_words) / sizeof(vg_words[0]), &vg->status,
			     "VG")) ||
	    (rc = get_strs(r, sec, "flags", &vg->flags, "VG")) ||
	    (rc = get_strs(r, sec, "tags", &vg->tags, "VG")) ||
	    (rc = get_u64(r, sec, "extent_size", true, UINT32_MAX, &v, "VG")))
		return rc;
	vg->extent_size = (uint32_t)v;
	if ((rc = get_u64(r, sec, "max_lv", true, UINT32_MAX, &v, "VG")))
		return rc;
	vg->max_lv = (uint32_t)v;
	if ((rc = get_u64(r, sec, "max_pv", true, UINT32_MAX, &v, "VG")))
		return rc;
	vg->max_pv = (uint32_t)v;
	if (!lvm_get_str(sec, "format", &s) && strcmp(s, "lvm2"))
		return why_set(r->why, r->why_len, "VG: format '%.16s' is not lvm2", s);
	if (!lvm_get_str(sec, "system_id", &s) && s[0])
		return why_set(r->why, r->why_len,
			       "VG %s belongs to host '%.64s' (system_id); not served here",
			       vg->name, s);
	if (lvm_find(sec, "lock_type"))
		return why_set(r->why, r->why_len, "VG %s uses lvmlockd (lock_type); not served",
			       vg->name);
	if (lvm_get_section(sec, "physical_volumes", &pvs))
		return why_set(r->why, r->why_len, "VG: 'physical_volumes' is missing");
	for (const struct lvm_node *m = pvs->child; m; m = m->next)
		if (m->type == LVM_NODE_SECTION && (rc = read_pv(r, vg, m)))
			return rc;
	rc = lvm_get_section(sec, "logical_volumes", &lvs);
	if (rc == -EINVAL)
		return why_set(r->why, r->why_len, "VG: 'logical_volumes' is not a section");
	if (!rc && lvm_node_count(lvs) > vg->lv_cap) {
		/* Room for every LV at once: lvm_vg_add_lv()'s doubling copies 10,000 LVs about
		 * twice over on the way (240 bytes each), at every boot. */
		unsigned n = MIN(lvm_node_count(lvs), LVM_VG_MAX_LVS);
		struct lvm_lv *all = realloc(vg->lvs, n * sizeof(*all));

		if (!all)
			return -ENOMEM;
		vg->lvs = all;
		vg->lv_cap = n;
	}
	if (!rc)
		for (const struct lvm_node *m = lvs->child; m; m = m->next)
			if (m->type == LVM_NODE_SECTION && (rc = read_lv(r, vg, m)))
				return rc;
	return 0;
}

int lvm_vg_from_tree(struct lvm_tree *t, struct lvm_vg **out, char *why, size_t why_len)
{
	struct rd r = { why, why_len };
	const struct lvm_node *root = lvm_tree_root(t), *vgsec = NULL;
	struct lvm_vg *vg;
	const char *s;
	int64_t v;
	int rc;

	if (lvm_get_str(root, "contents", &s) || strcmp(s, "Text Format Volume Group"))
		return why_set(why, why_len,
			       "not VG metadata: contents is not \"Text Format Volume "
			       "Group\"");
	if (lvm_get_int(root, "version", &v) || v != 1)
		return why_set(why, why_len, "metadata version is not 1");
	for (const struct lvm_node *m = root->child; m; m = m->next) {
		if (m->type != LVM_NODE_SECTION)
			continue;
		if (vgsec)
			return why_set(why, why_len, "more than one VG section ('%.64s', '%.64s')",
				       vgsec->key, m->key);
		vgsec = m;
	}
	if (!vgsec)
		return why_set(why, why_len, "no VG section");
	vg = calloc(1, sizeof(*vg));
	if (!vg)
		return -ENOMEM;
	rc = read_vg(&r, vg, vgsec);
	if (!rc && !lvm_get_str(root, "description", &s) && !(vg->description = dup_str(s)))
		rc = -ENOMEM;
	if (!rc)
		rc = read_creation(&r, root, &vg->has_creation, &vg->creation_time,
				   &vg->creation_host, "metadata header");
	if (!rc)
		rc = lvm_vg_validate(vg, why, why_len);
	if (rc)
		lvm_vg_free(vg);
	else
		*out = vg;
	return rc;
}

int lvm_vg_from_text(const char *text, size_t len, struct lvm_vg **out, char *why, size_t why_len)
{
	struct lvm_tree *t;
	int rc = lvm_text_parse(text, len, NULL, &t, why, why_len);

	if (rc)
		return rc;
	rc = lvm_vg_from_tree(t, out, why, why_len);
	lvm_tree_free(t);
	return rc;
}

/* ---- model -> text --------------------------------------------------------------------- */

struct wr {
	struct lvm_tree *t;
	int rc;
};

static struct lvm_node *w_section(struct wr *w, struct lvm_node *p, const char *key)
{
	struct lvm_node *n = NULL;

	if (!w->rc)
		w->rc = lvm_add_section(w->t, p, key, &n);
	return n;
}

static void w_int(struct wr *w, struct lvm_node *p, const char *key, uint64_t v)
{
	if (!w->rc)
		w->rc = lvm_add_int(w->t, p, key, (int64_t)v);
}

static void w_str(struct wr *w, struct lvm_node *p, const char *key, const char *s)
{
	if (!w->rc)
		w->rc = lvm_add_str(w->t, p, key, s);
}

static void w_id(struct wr *w, struct lvm_node *p, const char *id)
{
	char dashed[39];

	lvm_id_format(id, dashed);
	w_str(w, p, "id", dashed);
}

static void w_words(struct wr *w, struct lvm_node *p, const char *key, const struct word *words,
		    unsigned n, uint32_t bits)
{
	struct lvm_node *a = NULL;

	if (!w->rc)
		w->rc = lvm_add_array(w->t, p, key, &a);
	for (unsigned i = 0; i < n; i++)
		if (words[i].bit & bits)
			w_str(w, a, NULL, words[i].word);
}

static void w_strs(struct wr *w, struct lvm_node *p, const char *key, const struct lvm_strs *l,
		   bool always)
{
	struct lvm_node *a = NULL;

	if (!l->n && !always)
		return;
	if (!w->rc)
		w->rc = lvm_add_array(w->t, p, key, &a);
	for (unsigned i = 0; i < l->n; i++)
		w_str(w, a, NULL, l->v[i]);
}

static void w_seg(struct wr *w, const struct lvm_vg *vg, struct lvm_node *lvn,
		  const struct lvm_seg *s, unsigned i)
{
	static const char *const discards[] = { NULL, "ignore", "nopassdown", "passdown" };
	char key[24];
	struct lvm_node *n, *a = NULL;

	snprintf(key, sizeof(key), "segment%u", i + 1);
	n = w_section(w, lvn, key);
	w_int(w, n, "start_extent", s->start_extent);
	w_int(w, n, "extent_count", s->extent_count);
	switch (s->type) {
	case LVM_SEG_STRIPED:
		w_str(w, n, "type", "striped");
		w_int(w, n, "stripe_count", 1);
		if (!w->rc)
			w->rc = lvm_add_array(w->t, n, "stripes", &a);
		w_str(w, a, NULL, vg->pvs[s->pv].key);
		w_int(w, a, NULL, s->pe);
		break;
	case LVM_SEG_THIN_POOL:
		w_str(w, n, "type", "thin-pool");
		w_str(w, n, "metadata", s->metadata);
		w_str(w, n, "pool", s->pool);
		w_int(w, n, "transaction_id", s->transaction_id);
		w_int(w, n, "chunk_size", s->chunk_size);
		if (s->discards != LVM_DISCARDS_UNSET)
			w_str(w, n, "discards", discards[s->discards]);
		if (s->zero_new_blocks >= 0)
			w_int(w, n, "zero_new_blocks", (uint64_t)s->zero_new_blocks);
		/* As lvm2's _thin_pool_text_export(): message1..N after the pool's keys. */
		for (unsigned k = 0; k < s->nr_msgs; k++) {
			struct lvm_node *m;

			snprintf(key, sizeof(key), "message%u", k + 1);
			m = w_section(w, n, key);
			if (s->msgs[k].type == LVM_MSG_CREATE)
				w_str(w, m, "create", s->msgs[k].lv);
			else
				w_int(w, m, "delete", s->msgs[k].device_id);
		}
		break;
	case LVM_SEG_THIN:
		w_str(w, n, "type", "thin");
		w_str(w, n, "thin_pool", s->thin_pool);
		w_int(w, n, "transaction_id", s->transaction_id);
		if (s->origin[0])
			w_str(w, n, "origin", s->origin);
		w_int(w, n, "device_id", s->device_id);
		break;
	}
}

static void w_lv(struct wr *w, const struct lvm_vg *vg, struct lvm_node *lvs,
		 const struct lvm_lv *lv)
{
	struct lvm_node *n = w_section(w, lvs, lv->name);

	w_id(w, n, lv->id);
	w_words(w, n, "status", lv_words, sizeof(lv_words) / sizeof(lv_words[0]), lv->status);
	w_strs(w, n, "flags", &lv->flags, true);
	w_strs(w, n, "tags", &lv->tags, false);
	if (lv->has_creation) {
		w_int(w, n, "creation_time", lv->creation_time);
		w_str(w, n, "creation_host", lv->creation_host);
	}
	w_int(w, n, "segment_count", lv->nr_segs);
	for (unsigned i = 0; i < lv->nr_segs; i++)
		w_seg(w, vg, n, &lv->segs[i], i);
}

int lvm_vg_to_text(const struct lvm_vg *vg, char **text, size_t *len, char *why, size_t why_len)
{
	struct wr w = { 0 };
	struct lvm_node *root, *n, *pvs, *lvs;
	int rc = lvm_vg_validate(vg, why, why_len);

	if (rc)
		return rc;
	rc = lvm_tree_create(NULL, &w.t);
	if (rc)
		return rc;
	root = lvm_tree_root(w.t);
	/* The VG section first: lvm checks that a copy starts with the VG name. */
	n = w_section(&w, root, vg->name);
	w_id(&w, n, vg->id);
	w_int(&w, n, "seqno", vg->seqno);
	w_str(&w, n, "format", "lvm2");
	w_words(&w, n, "status", vg_words, sizeof(vg_words) / sizeof(vg_words[0]), vg->status);
	w_strs(&w, n, "flags", &vg->flags, true);
	w_strs(&w, n, "tags", &vg->tags, false);
	w_int(&w, n, "extent_size", vg->extent_size);
	w_int(&w, n, "max_lv", vg->max_lv);
	w_int(&w, n, "max_pv", vg->max_pv);
	w_int(&w, n, "metadata_copies", 0);
	pvs = w_section(&w, n, "physical_volumes");
	for (unsigned i = 0; i < vg->nr_pvs; i++) {
		const struct lvm_pv *pv = &vg->pvs[i];
		struct lvm_node *p = w_section(&w, pvs, pv->key);

		w_id(&w, p, pv->id);
		if (pv->device)
			w_str(&w, p, "device", pv->device);
		w_words(&w, p, "status", pv_words, sizeof(pv_words) / sizeof(pv_words[0]),
			pv->status);
		w_strs(&w, p, "flags", &(struct lvm_strs){ 0 }, true);
		w_strs(&w, p, "tags", &pv->tags, false);
		if (pv->dev_size)
			w_int(&w, p, "dev_size", pv->dev_size);
		w_int(&w, p, "pe_start", pv->pe_start);
		w_int(&w, p, "pe_count", pv->pe_count);
	}
	if (vg->nr_lvs) {
		lvs = w_section(&w, n, "logical_volumes");
		/* lvm writes visible LVs before hidden ones. */
		for (unsigned pass = 0; pass < 2; pass++)
			for (unsigned i = 0; i < vg->nr_lvs; i++)
				if ((unsigned)!(vg->lvs[i].status & LVM_LV_VISIBLE) == pass)
					w_lv(&w, vg, lvs, &vg->lvs[i]);
	}
	w_str(&w, root, "contents", "Text Format Volume Group");
	w_int(&w, root, "version", 1);
	w_str(&w, root, "description", vg->description ? vg->description : "");
	if (vg->has_creation) {
		w_str(&w, root, "creation_host", vg->creation_host);
		w_int(&w, root, "creation_time", vg->creation_time);
	}
	rc = w.rc;
	if (!rc)
		rc = lvm_text_emit(w.t, text, len);
	lvm_tree_free(w.t);
	return rc;
}
