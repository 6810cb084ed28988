/* SPDX-License-Identifier: MIT */
/*
 * What changed between two volumes (docs/backup.md): the core diff of their thin devices
 * (thin_view_diff(), core/thin/thin_metadata.h) in bytes, for `thin diff` and for the NBD
 * exports' qemu:dirty-bitmap:NAME contexts.
 *
 * It runs on the live pool's current transaction, from the main loop (a shell command, or
 * the NBD server's poll answering BLOCK_STATUS), between two thin_pool_poll() calls: no
 * pool code runs meanwhile, so the mapping trees do not change under the walk, and every
 * write the pool has acknowledged is in them (a write is acknowledged after its mapping is
 * inserted), as for every other metadata query of the appliance.
 */
#include "app/appliance_internal.h"

#include "core/base/util.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The oldest volume of @cv's line the configuration still holds (origins followed). */
static const struct cfg_volume *line_root(const struct cfg *c, const struct cfg_volume *cv)
{
	for (size_t hops = 0; cv->origin[0] && hops < c->nvols; hops++) {
		const struct cfg_volume *o = cfg_find_volume(c, cv->origin);

		if (!o)
			break;
		cv = o;
	}
	return cv;
}

struct bytes_run {
	int (*fn)(void *ctx, const struct appliance_diff_range *r);
	void *ctx;
	uint64_t bs;
};

static int to_bytes(void *ctx, const struct thin_diff_range *r)
{
	struct bytes_run *b = ctx;
	struct appliance_diff_range out = { r->kind, r->begin * b->bs,
					    (r->end - r->begin) * b->bs };

	return b->fn(b->ctx, &out);
}

int appliance_diff(struct appliance *a, const char *from, const char *to, uint64_t offset,
		   int (*fn)(void *ctx, const struct appliance_diff_range *r), void *ctx,
		   struct thin_diff_stats *st)
{
	const struct cfg_volume *f, *t;
	struct thin_md_view v;
	struct bytes_run b = { fn, ctx, 0 };
	int rc = appliance_pool_usable(a, false);

	if (rc)
		return rc;
	if (a->state != APPLIANCE_READY)
		return -ESTALE;
	f = cfg_find_volume(&a->cfg, from);
	t = cfg_find_volume(&a->cfg, to);
	if (!f || !t)
		return -ENOENT;
	b.bs = (uint64_t)thin_md_data_block_sectors(thin_pool_md(a->pool)) * 512u;
	rc = thin_md_view_current(thin_pool_md(a->pool), &v);
	if (!rc)
		rc = thin_view_diff(&v, f->id, t->id, offset / b.bs, 0, to_bytes, &b, st);
	/* The configuration names a device the pool lacks: a bug elsewhere, not a bad name. */
	return rc == -ENODATA ? -EIO : rc;
}

uint64_t appliance_diff_grain(struct appliance *a)
{
	return a->pool ? (uint64_t)thin_md_data_block_sectors(thin_pool_md(a->pool)) * 512u : 0;
}

/*----------------------------------------------------------------*/
/* The exports' dirty maps */

/* The export's volume (by id: a renamed volume keeps its exports), or NULL. */
static const struct cfg_volume *exp_volume(struct app_exp *e)
{
	return cfg_find_volume_id(&e->a->cfg, e->vol->id);
}

/* Whether @cv may be a bitmap of @me: another volume of the same line. */
static bool in_line(const struct cfg *c, const struct cfg_volume *me, const struct cfg_volume *cv)
{
	return cv != me && line_root(c, cv) == line_root(c, me);
}

/*
 * The line of @me: the other volumes with the same oldest ancestor, found for all volumes at
 * once (each root is computed once, from its origin's), so listing a 100-deep chain's
 * bitmaps is not a walk up the chain per name. Thin ids into a new array (*n of them).
 */
static int line_of(const struct cfg *c, const struct cfg_volume *me, uint32_t **out, size_t *n)
{
	size_t *root = malloc((c->nvols + 1) * sizeof(*root));
	size_t *path = malloc((c->nvols + 1) * sizeof(*path));
	uint32_t *ids = malloc((c->nvols + 1) * sizeof(*ids));
	size_t k = 0;

	if (!root || !path || !ids) {
		free(root);
		free(path);
		free(ids);
		return -ENOMEM;
	}
	for (size_t i = 0; i < c->nvols; i++)
		root[i] = SIZE_MAX;
	for (size_t i = 0; i < c->nvols; i++) {
		size_t v = i, np = 0, r;

		/* Up the origins until a volume whose root is known, or the oldest one. */
		while (root[v] == SIZE_MAX && np < c->nvols) {
			const struct cfg_volume *o =
			    c->vols[v].origin[0] ? cfg_find_volume(c, c->vols[v].origin) : NULL;

			path[np++] = v;
			if (!o)
				break;
			v = (size_t)(o - c->vols);
		}
		r = root[v] != SIZE_MAX ? root[v] : v;
		while (np)
			root[path[--np]] = r;
	}
	for (size_t i = 0; i < c->nvols; i++)
		if (&c->vols[i] != me && root[i] == root[me - c->vols])
			ids[k++] = c->vols[i].id;
	free(root);
	free(path);
	*out = ids;
	*n = k;
	return 0;
}

int app_exp_bitmap_name(void *ctx, unsigned idx, char *buf, size_t len)
{
	struct app_exp *e = ctx;
	const struct cfg *c = &e->a->cfg;
	const struct cfg_volume *me = exp_volume(e), *cv;

	if (!me)
		return -ENOENT;
	/* The server asks from 0 upward in one go: make the list then. */
	if (idx == 0 || !e->line) {
		free(e->line);
		e->line = NULL;
		e->nline = 0;
		if (line_of(c, me, &e->line, &e->nline))
			return -ENOENT;
	}
	if (idx >= e->nline)
		return -ENOENT;
	cv = cfg_find_volume_id(c, e->line[idx]);
	if (!cv)
		return -ENOENT;
	snprintf(buf, len, "%s", cv->name);
	return 0;
}

struct dirty_fill {
	struct nbd_extent *ext;
	unsigned n, max;
	uint64_t pos, end; /* bytes: described up to pos, asked up to end */
	bool full;	   /* @ext is full: what follows pos is for the next request */
};

static int dirty_add(struct dirty_fill *d, uint64_t end, uint32_t flags)
{
	end = MIN(end, d->end);
	if (d->full)
		return 1;
	if (end <= d->pos)
		return 0;
	if (d->n && d->ext[d->n - 1].flags == flags) {
		d->ext[d->n - 1].length += end - d->pos;
	} else {
		if (d->n == d->max) {
			d->full = true; /* the client asks again from here */
			return 1;
		}
		d->ext[d->n++] = (struct nbd_extent){ end - d->pos, flags };
	}
	d->pos = end;
	return 0;
}

static int dirty_range(void *ctx, const struct appliance_diff_range *r)
{
	struct dirty_fill *d = ctx;
	int rc;

	if (r->offset >= d->end)
		return 1;
	rc = dirty_add(d, r->offset, 0);
	if (!rc)
		rc = dirty_add(d, r->offset + r->length, NBD_STATE_DIRTY);
	return rc;
}

int app_exp_dirty(void *ctx, const char *bitmap, uint64_t offset, uint64_t length,
		  struct nbd_extent *ext, unsigned max)
{
	struct app_exp *e = ctx;
	const struct cfg *c = &e->a->cfg;
	const struct cfg_volume *me = exp_volume(e), *snap = cfg_find_volume(c, bitmap);
	struct dirty_fill d = { ext, 0, max, offset, offset + length, false };
	int rc;

	if (!me || !snap || !in_line(c, me, snap))
		return -ENOENT; /* deleted (or renamed) since the client chose it */
	rc = appliance_diff(e->a, snap->name, me->name, offset, dirty_range, &d, NULL);
	if (rc < 0)
		return rc == -ENOENT ? -EIO : rc;
	dirty_add(&d, d.end, 0); /* the rest is clean (unless @ext is full) */
	return d.n ? (int)d.n : -EIO;
}
