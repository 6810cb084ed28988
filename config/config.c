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

/* ---- Text ------------------------------------------------------------------------------ */

static int perr(char *err, size_t errlen, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int perr(char *err, size_t errlen, unsigned line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (err && errlen) {
		n = snprintf(err, errlen, "line %u: ", line);
		if (n >= 0 && (size_t)n < errlen) {
			va_start(ap, fmt);
			vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	return -EINVAL;
}

static int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

#define MAX_WORDS 8

/* Split @line in place on spaces/tabs; returns the word count or -E2BIG. */
static int split(char *line, char **w)
{
	int n = 0;

	for (char *p = line;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			return n;
		if (n == MAX_WORDS)
			return -E2BIG;
		w[n++] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		if (*p)
			*p++ = '\0';
	}
}

static int parse_volume(struct cfg *c, char **w, int n, unsigned ln, char *err, size_t errlen)
{
	uint64_t id = UINT64_MAX, size = 0;
	const char *origin = "";
	int rc;

	if (n < 2 || !cfg_name_valid(w[1]))
		return perr(err, errlen, ln, "bad volume name '%s'", n < 2 ? "" : w[1]);
	for (int i = 2; i < n; i++) {
		if (!strncmp(w[i], "id=", 3)) {
			if (parse_u64(w[i] + 3, &id) || id > CFG_MAX_THIN_ID)
				return perr(err, errlen, ln, "bad thin id '%s'", w[i] + 3);
		} else if (!strncmp(w[i], "size=", 5)) {
			if (parse_u64(w[i] + 5, &size) || !size || size % 512)
				return perr(err, errlen, ln, "bad size '%s'", w[i] + 5);
		} else if (!strncmp(w[i], "origin=", 7)) {
			origin = w[i] + 7;
		} else {
			return perr(err, errlen, ln, "unknown volume attribute '%s'", w[i]);
		}
	}
	if (id == UINT64_MAX || !size)
		return perr(err, errlen, ln, "volume '%s' needs id= and size=", w[1]);
	rc = cfg_add_volume(c, w[1], (uint32_t)id, size, origin);
	if (rc == -EEXIST)
		return perr(err, errlen, ln, "volume name or id of '%s' used twice", w[1]);
	if (rc == -EINVAL)
		return perr(err, errlen, ln, "origin '%s' of '%s' is not a volume defined above",
			    origin, w[1]);
	if (rc == -ENOSPC)
		return perr(err, errlen, ln, "more than %d volumes", CFG_MAX_VOLUMES);
	return rc;
}

static int parse_export(struct cfg *c, char **w, int n, unsigned ln, char *err, size_t errlen)
{
	const char *vol = NULL;
	bool ro = false;
	int rc;

	if (n < 2 || !cfg_name_valid(w[1]))
		return perr(err, errlen, ln, "bad export name '%s'", n < 2 ? "" : w[1]);
	for (int i = 2; i < n; i++) {
		if (!strncmp(w[i], "volume=", 7))
			vol = w[i] + 7;
		else if (!strcmp(w[i], "ro"))
			ro = true;
		else
			return perr(err, errlen, ln, "unknown export attribute '%s'", w[i]);
	}
	if (!vol)
		return perr(err, errlen, ln, "export '%s' needs volume=", w[1]);
	rc = cfg_add_export(c, w[1], vol, ro);
	if (rc == -ENOENT || rc == -EINVAL)
		return perr(err, errlen, ln, "export '%s': no volume '%s' defined above", w[1],
			    vol);
	if (rc == -EEXIST)
		return perr(err, errlen, ln, "export '%s' defined twice", w[1]);
	if (rc == -ENOSPC)
		return perr(err, errlen, ln, "more than %d exports", CFG_MAX_EXPORTS);
	return rc;
}

int cfg_parse(const char *text, size_t len, struct cfg *out, char *err, size_t errlen)
{
	char line[512];
	unsigned ln = 0;
	size_t pos = 0;
	int rc = 0;

	cfg_init(out);
	if (err && errlen)
		err[0] = '\0';
	while (pos < len && !rc) {
		size_t end = pos, n;
		char *w[MAX_WORDS];
		int nw;

		while (end < len && text[end] != '\n')
			end++;
		n = end - pos;
		ln++;
		if (n >= sizeof(line)) {
			rc = perr(err, errlen, ln, "line longer than %zu characters",
				  sizeof(line) - 1);
			break;
		}
		if (memchr(text + pos, '\0', n)) {
			rc = perr(err, errlen, ln, "NUL byte in the text");
			break;
		}
		memcpy(line, text + pos, n);
		line[n] = '\0';
		pos = end + 1;
		if (n && line[n - 1] == '\r')
			line[n - 1] = '\0';
		nw = split(line, w);
		if (nw < 0) {
			rc = perr(err, errlen, ln, "too many words");
			break;
		}
		if (nw == 0 || w[0][0] == '#')
			continue;
		if (!strcmp(w[0], "volume"))
			rc = parse_volume(out, w, nw, ln, err, errlen);
		else if (!strcmp(w[0], "export"))
			rc = parse_export(out, w, nw, ln, err, errlen);
		else
			rc = perr(err, errlen, ln, "unknown item '%s'", w[0]);
	}
	if (rc)
		cfg_free(out);
	return rc;
}

/* Append formatted text to a growing buffer. */
struct sbuf {
	char *p;
	size_t len, cap;
	int rc;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->rc)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->rc = -EINVAL;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		char *np = realloc(b->p, b->cap * 2 + (size_t)n);

		if (!np) {
			b->rc = -ENOMEM;
			return;
		}
		b->p = np;
		b->cap = b->cap * 2 + (size_t)n;
	}
}

int cfg_format(const struct cfg *c, char **text, size_t *len)
{
	struct sbuf b = { malloc(256), 0, 256, 0 };

	if (!b.p)
		return -ENOMEM;
	b.p[0] = '\0';
	sb_printf(&b, "# thinbox configuration\n");
	/* Origins are written before their snapshots, so the text parses in one pass: for each
	 * volume, first write its oldest unwritten ancestor, until it is written itself. */
	bool *written = calloc(c->nvols ? c->nvols : 1, sizeof(*written));

	if (!written) {
		free(b.p);
		return -ENOMEM;
	}
	for (size_t i = 0; i < c->nvols; i++) {
		while (!written[i]) {
			size_t k = i, hops = 0;

			/* Climb while the origin exists and is unwritten; hops bound a (corrupt) cycle. */
			while (c->vols[k].origin[0] && hops++ < c->nvols) {
				const struct cfg_volume *o = cfg_find_volume(c, c->vols[k].origin);
				size_t oi;

				if (!o)
					break;
				oi = (size_t)(o - c->vols);
				if (written[oi])
					break;
				k = oi;
			}
			const struct cfg_volume *v = &c->vols[k];

			sb_printf(&b, "volume %s id=%" PRIu32 " size=%" PRIu64 "%s%s\n", v->name,
				  v->id, v->size, v->origin[0] ? " origin=" : "", v->origin);
			written[k] = true;
		}
	}
	free(written);
	for (size_t i = 0; i < c->nexps; i++)
		sb_printf(&b, "export %s volume=%s%s\n", c->exps[i].name, c->exps[i].volume,
			  c->exps[i].read_only ? " ro" : "");
	if (b.rc) {
		free(b.p);
		return b.rc;
	}
	*text = b.p;
	*len = b.len;
	return 0;
}
