/* SPDX-License-Identifier: MIT */
/* The configuration model and its text form; see config/config.h. */
#include "config/config.h"
#include "core/base/hash.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cfg_init(struct cfg *c)
{
	memset(c, 0, sizeof(*c));
}

/* ---- The lookup cache --------------------------------------------------------------------- */

/* Below this many entries a scan is as quick as the table and needs no memory. */
#define IX_MIN 16u

void cfg_reindex(struct cfg *c)
{
	free(c->ix_vname);
	free(c->ix_vid);
	free(c->ix_ename);
	c->ix_vname = c->ix_vid = c->ix_ename = NULL;
	c->ix_vslots = c->ix_eslots = 0;
}

static void drop_vix(struct cfg *c)
{
	free(c->ix_vname);
	free(c->ix_vid);
	c->ix_vname = c->ix_vid = NULL;
	c->ix_vslots = 0;
}

static void drop_eix(struct cfg *c)
{
	free(c->ix_ename);
	c->ix_ename = NULL;
	c->ix_eslots = 0;
}

/* Build the volume tables; false without memory (the lookups then scan). */
static bool build_vix(struct cfg *c)
{
	size_t slots = hash_ix_slots(c->cap_vols);

	drop_vix(c);
	c->ix_vname = calloc(slots, sizeof(uint32_t));
	c->ix_vid = calloc(slots, sizeof(uint32_t));
	if (!c->ix_vname || !c->ix_vid) {
		drop_vix(c);
		return false;
	}
	c->ix_vslots = slots;
	for (size_t i = 0; i < c->nvols; i++) {
		hash_ix_put(c->ix_vname, slots, hash_str(c->vols[i].name), i);
		hash_ix_put(c->ix_vid, slots, hash_u32(c->vols[i].id), i);
	}
	return true;
}

static bool build_eix(struct cfg *c)
{
	size_t slots = hash_ix_slots(c->cap_exps);

	drop_eix(c);
	c->ix_ename = calloc(slots, sizeof(uint32_t));
	if (!c->ix_ename)
		return false;
	c->ix_eslots = slots;
	for (size_t i = 0; i < c->nexps; i++)
		hash_ix_put(c->ix_ename, slots, hash_str(c->exps[i].name), i);
	return true;
}

/* Whether the volume tables can be used (built now if needed). The tables are a cache, so a
 * lookup on a const configuration may build them. */
static bool vix(const struct cfg *c)
{
	if (c->nvols < IX_MIN)
		return false;
	return c->ix_vslots || build_vix((struct cfg *)c);
}

static bool eix(const struct cfg *c)
{
	if (c->nexps < IX_MIN)
		return false;
	return c->ix_eslots || build_eix((struct cfg *)c);
}

void cfg_free(struct cfg *c)
{
	cfg_reindex(c);
	free(c->vols);
	free(c->exps);
	cfg_init(c);
}

int cfg_copy(struct cfg *dst, const struct cfg *src)
{
	cfg_init(dst);
	if (src->nvols) {
		dst->vols = malloc(src->nvols * sizeof(*dst->vols));
		if (!dst->vols)
			return -ENOMEM;
		memcpy(dst->vols, src->vols, src->nvols * sizeof(*dst->vols));
		dst->nvols = dst->cap_vols = src->nvols;
	}
	if (src->nexps) {
		dst->exps = malloc(src->nexps * sizeof(*dst->exps));
		if (!dst->exps) {
			cfg_free(dst);
			return -ENOMEM;
		}
		memcpy(dst->exps, src->exps, src->nexps * sizeof(*dst->exps));
		dst->nexps = dst->cap_exps = src->nexps;
	}
	return 0;
}

static bool name_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '.' || ch == '-' || ch == ':' || ch == '+';
}

bool cfg_name_valid(const char *name)
{
	size_t n = 0;

	if (!name || !*name || *name == '.' || *name == '-')
		return false;
	for (; name[n]; n++)
		if (n == CFG_NAME_MAX || !name_char(name[n]))
			return false;
	return true;
}

struct cfg_volume *cfg_find_volume(const struct cfg *c, const char *name)
{
	if (vix(c)) {
		size_t m = c->ix_vslots - 1;

		for (size_t h = hash_str(name) & m; c->ix_vname[h]; h = (h + 1) & m)
			if (!strcmp(c->vols[c->ix_vname[h] - 1].name, name))
				return &c->vols[c->ix_vname[h] - 1];
		return NULL;
	}
	for (size_t i = 0; i < c->nvols; i++)
		if (!strcmp(c->vols[i].name, name))
			return &c->vols[i];
	return NULL;
}

struct cfg_volume *cfg_find_volume_id(const struct cfg *c, uint32_t id)
{
	if (vix(c)) {
		size_t m = c->ix_vslots - 1;

		for (size_t h = hash_u32(id) & m; c->ix_vid[h]; h = (h + 1) & m)
			if (c->vols[c->ix_vid[h] - 1].id == id)
				return &c->vols[c->ix_vid[h] - 1];
		return NULL;
	}
	for (size_t i = 0; i < c->nvols; i++)
		if (c->vols[i].id == id)
			return &c->vols[i];
	return NULL;
}

struct cfg_export *cfg_find_export(const struct cfg *c, const char *name)
{
	if (eix(c)) {
		size_t m = c->ix_eslots - 1;

		for (size_t h = hash_str(name) & m; c->ix_ename[h]; h = (h + 1) & m)
			if (!strcmp(c->exps[c->ix_ename[h] - 1].name, name))
				return &c->exps[c->ix_ename[h] - 1];
		return NULL;
	}
	for (size_t i = 0; i < c->nexps; i++)
		if (!strcmp(c->exps[i].name, name))
			return &c->exps[i];
	return NULL;
}

/* Make room for one more element of @size bytes in *@arr (count @n, capacity *@cap). */
static int grow(void **arr, size_t n, size_t *cap, size_t size)
{
	size_t ncap;
	void *p;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 8;
	p = realloc(*arr, ncap * size);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

int cfg_add_volume(struct cfg *c, const char *name, uint32_t id, uint64_t size, const char *origin)
{
	struct cfg_volume *v;
	int rc;

	if (!cfg_name_valid(name) || id > CFG_MAX_THIN_ID || size == 0 || size % 512)
		return -EINVAL;
	if (origin && *origin && !cfg_find_volume(c, origin))
		return -EINVAL;
	if (cfg_find_volume(c, name) || cfg_find_volume_id(c, id))
		return -EEXIST;
	if (c->nvols == CFG_MAX_VOLUMES)
		return -ENOSPC;
	rc = grow((void **)&c->vols, c->nvols, &c->cap_vols, sizeof(*c->vols));
	if (rc)
		return rc;
	v = &c->vols[c->nvols++];
	memset(v, 0, sizeof(*v));
	memcpy(v->name, name, strlen(name) + 1);
	v->id = id;
	v->size = size;
	if (origin)
		memcpy(v->origin, origin, strlen(origin) + 1);
	/* The tables follow an add while they stay at most half full; else a rebuild. */
	if (c->ix_vslots && 2 * c->nvols + 2 <= c->ix_vslots) {
		hash_ix_put(c->ix_vname, c->ix_vslots, hash_str(name), c->nvols - 1);
		hash_ix_put(c->ix_vid, c->ix_vslots, hash_u32(id), c->nvols - 1);
	} else {
		drop_vix(c);
	}
	return 0;
}

int cfg_remove_volume(struct cfg *c, const char *name)
{
	struct cfg_volume *v = cfg_find_volume(c, name);

	if (!v)
		return -ENOENT;
	for (size_t i = 0; i < c->nexps; i++)
		if (!strcmp(c->exps[i].volume, name))
			return -EBUSY;
	/* Snapshots keep their data when the origin goes (dm-thin shares, it does not depend);
	 * they just no longer name an origin. */
	for (size_t i = 0; i < c->nvols; i++)
		if (!strcmp(c->vols[i].origin, name))
			c->vols[i].origin[0] = '\0';
	*v = c->vols[--c->nvols];
	drop_vix(c);
	return 0;
}

int cfg_rename_volume(struct cfg *c, const char *name, const char *new_name)
{
	struct cfg_volume *v = cfg_find_volume(c, name);

	if (!v)
		return -ENOENT;
	if (!cfg_name_valid(new_name))
		return -EINVAL;
	if (cfg_find_volume(c, new_name))
		return -EEXIST;
	for (size_t i = 0; i < c->nexps; i++)
		if (!strcmp(c->exps[i].volume, name))
			snprintf(c->exps[i].volume, sizeof(c->exps[i].volume), "%s", new_name);
	for (size_t i = 0; i < c->nvols; i++)
		if (!strcmp(c->vols[i].origin, name))
			snprintf(c->vols[i].origin, sizeof(c->vols[i].origin), "%s", new_name);
	snprintf(v->name, sizeof(v->name), "%s", new_name);
	drop_vix(c);
	return 0;
}

int cfg_add_export(struct cfg *c, const char *name, const char *volume, bool read_only)
{
	struct cfg_export *e;
	int rc;

	if (!cfg_name_valid(name) || !cfg_name_valid(volume))
		return -EINVAL;
	if (!cfg_find_volume(c, volume))
		return -ENOENT;
	if (cfg_find_export(c, name))
		return -EEXIST;
	if (c->nexps == CFG_MAX_EXPORTS)
		return -ENOSPC;
	rc = grow((void **)&c->exps, c->nexps, &c->cap_exps, sizeof(*c->exps));
	if (rc)
		return rc;
	e = &c->exps[c->nexps++];
	memset(e, 0, sizeof(*e));
	memcpy(e->name, name, strlen(name) + 1);
	memcpy(e->volume, volume, strlen(volume) + 1);
	e->read_only = read_only;
	if (c->ix_eslots && 2 * c->nexps + 2 <= c->ix_eslots)
		hash_ix_put(c->ix_ename, c->ix_eslots, hash_str(name), c->nexps - 1);
	else
		drop_eix(c);
	return 0;
}

int cfg_remove_export(struct cfg *c, const char *name)
{
	struct cfg_export *e = cfg_find_export(c, name);
	size_t i;

	if (!e)
		return -ENOENT;
	/* Keep the order: the first export is the default one a client gets without a name. */
	i = (size_t)(e - c->exps);
	memmove(&c->exps[i], &c->exps[i + 1], (c->nexps - i - 1) * sizeof(*e));
	c->nexps--;
	drop_eix(c);
	return 0;
}

static int cmp_u32(const void *x, const void *y)
{
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;

	return a < b ? -1 : a > b;
}

int64_t cfg_free_id(const struct cfg *c)
{
	uint32_t *ids, want = 0;

	if (!c->nvols)
		return 0;
	/* Sorted, the first gap is the answer: O(n log n) where probing each id was O(n^2). */
	ids = malloc(c->nvols * sizeof(*ids));
	if (!ids) {
		for (uint32_t id = 0; id <= CFG_MAX_THIN_ID; id++)
			if (!cfg_find_volume_id(c, id))
				return id;
		return -ENOSPC;
	}
	for (size_t i = 0; i < c->nvols; i++)
		ids[i] = c->vols[i].id;
	qsort(ids, c->nvols, sizeof(*ids), cmp_u32);
	for (size_t i = 0; i < c->nvols && ids[i] <= want; i++)
		if (ids[i] == want)
			want++;
	free(ids);
	return want <= CFG_MAX_THIN_ID ? (int64_t)want : -ENOSPC;
}

int cfg_export_allow(struct cfg *c, const char *name, const struct net_prefix *p)
{
	struct cfg_export *e = cfg_find_export(c, name);
	struct net_prefix canon = *p;

	if (!e)
		return -ENOENT;
	/* Only canonical prefixes are kept, so equal lists compare equal and print alike. */
	net_prefix_mask(&canon);
	if ((p->addr.family != NET_AF_INET && p->addr.family != NET_AF_INET6) ||
	    p->len > (p->addr.family == NET_AF_INET ? 32 : 128) || !net_prefix_equal(&canon, p))
		return -EINVAL;
	for (unsigned i = 0; i < e->nallow; i++)
		if (net_prefix_equal(&e->allow[i], p))
			return 0;
	if (e->nallow == CFG_MAX_ALLOW)
		return -ENOSPC;
	e->allow[e->nallow++] = *p;
	return 0;
}

int cfg_export_disallow(struct cfg *c, const char *name, const struct net_prefix *p)
{
	struct cfg_export *e = cfg_find_export(c, name);

	if (!e)
		return -ENOENT;
	for (unsigned i = 0; i < e->nallow; i++) {
		if (!net_prefix_equal(&e->allow[i], p))
			continue;
		memmove(&e->allow[i], &e->allow[i + 1], (e->nallow - i - 1) * sizeof(*p));
		e->nallow--;
		return 0;
	}
	return -ENOENT;
}
