/* SPDX-License-Identifier: MIT */
/* The configuration model and its text form; see config/config.h. */
#include "config/config.h"

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

void cfg_free(struct cfg *c)
{
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
	for (size_t i = 0; i < c->nvols; i++)
		if (!strcmp(c->vols[i].name, name))
			return &c->vols[i];
	return NULL;
}

struct cfg_volume *cfg_find_volume_id(const struct cfg *c, uint32_t id)
{
	for (size_t i = 0; i < c->nvols; i++)
		if (c->vols[i].id == id)
			return &c->vols[i];
	return NULL;
}

struct cfg_export *cfg_find_export(const struct cfg *c, const char *name)
{
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
	return 0;
}

int64_t cfg_free_id(const struct cfg *c)
{
	for (uint32_t id = 0; id <= CFG_MAX_THIN_ID; id++)
		if (!cfg_find_volume_id(c, id))
			return id;
	return -ENOSPC;
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
