/* SPDX-License-Identifier: MIT */
/*
 * build/host/thinbox-restore -i XML -o META: build pool metadata on the existing file META
 * (which keeps its size, as with thin_restore) from XML in thin_dump's format, through the
 * engine's API: format, set the time and transaction id, then per device create it, set
 * its transaction id and times, and insert every mapping with its time, taking one data
 * reference per mapping (mapped_blocks is derived from the mappings, as thin_restore does);
 * commit once at the end.
 *
 * The parser accepts exactly the thin_dump vocabulary: <superblock> holding <device>s
 * holding <range_mapping/> and <single_mapping/>, optional <?xml?> and comments. Every
 * attribute is checked (known, not repeated, required ones present, decimal numbers that
 * fit), mappings of a device must come in ascending order without overlap, and any error
 * stops with "XML:LINE: reason" and exit 1 before anything reaches META (the file is only
 * written once the whole document has been parsed and checked once).
 */
#include "core/thin/thin_metadata.h"
#include "host/hostdev.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ATTRS 8

struct attr {
	const char *name, *value;
	size_t name_len, value_len;
};

struct parser {
	const char *path;
	const char *p, *end;
	unsigned line;
	/* The current tag. */
	char name[32];
	bool closing, empty;
	struct attr attrs[MAX_ATTRS];
	unsigned nattrs;
	char err[300];
};

static int perr(struct parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int perr(struct parser *ps, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(ps->err, sizeof(ps->err), "%s:%u: ", ps->path, ps->line);

	va_start(ap, fmt);
	vsnprintf(ps->err + n, sizeof(ps->err) - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end &&
	       (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\r' || *ps->p == '\n')) {
		if (*ps->p == '\n')
			ps->line++;
		ps->p++;
	}
}

static bool starts(struct parser *ps, const char *s)
{
	size_t n = strlen(s);

	return (size_t)(ps->end - ps->p) >= n && !memcmp(ps->p, s, n);
}

/* Skip up to and including @term; false at end of input. */
static bool skip_past(struct parser *ps, const char *term)
{
	while (ps->p < ps->end) {
		if (starts(ps, term)) {
			ps->p += strlen(term);
			return true;
		}
		if (*ps->p == '\n')
			ps->line++;
		ps->p++;
	}
	return false;
}

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '-' ||
	       (c >= '0' && c <= '9');
}

/* The next tag (skipping declarations and comments). 1 = tag, 0 = end of input. */
static int next_tag(struct parser *ps)
{
	for (;;) {
		size_t n;

		skip_ws(ps);
		if (ps->p >= ps->end)
			return 0;
		if (*ps->p != '<')
			return perr(ps, "text outside a tag ('%c')", *ps->p);
		if (starts(ps, "<?")) {
			if (!skip_past(ps, "?>"))
				return perr(ps, "unterminated <? ... ?>");
			continue;
		}
		if (starts(ps, "<!--")) {
			if (!skip_past(ps, "-->"))
				return perr(ps, "unterminated comment");
			continue;
		}
		ps->p++;
		ps->closing = ps->p < ps->end && *ps->p == '/';
		if (ps->closing)
			ps->p++;
		for (n = 0; ps->p < ps->end && name_char(*ps->p); n++, ps->p++)
			if (n + 1 >= sizeof(ps->name))
				return perr(ps, "element name too long");
			else
				ps->name[n] = *ps->p;
		ps->name[n] = 0;
		if (!n)
			return perr(ps, "missing element name");
		ps->nattrs = 0;
		ps->empty = false;
		for (;;) {
			struct attr *a;
			char q;

			skip_ws(ps);
			if (ps->p >= ps->end)
				return perr(ps, "unterminated <%s>", ps->name);
			if (*ps->p == '>') {
				ps->p++;
				return 1;
			}
			if (starts(ps, "/>")) {
				if (ps->closing)
					return perr(ps, "</%s/> is not a tag", ps->name);
				ps->p += 2;
				ps->empty = true;
				return 1;
			}
			if (ps->closing)
				return perr(ps, "attributes in closing tag </%s>", ps->name);
			if (ps->nattrs == MAX_ATTRS)
				return perr(ps, "too many attributes in <%s>", ps->name);
			a = &ps->attrs[ps->nattrs];
			a->name = ps->p;
			while (ps->p < ps->end && name_char(*ps->p))
				ps->p++;
			a->name_len = (size_t)(ps->p - a->name);
			if (!a->name_len)
				return perr(ps, "bad character '%c' in <%s>",
					    ps->p < ps->end ? *ps->p : '?', ps->name);
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != '=')
				return perr(ps, "attribute %.*s of <%s> has no value",
					    (int)a->name_len, a->name, ps->name);
			ps->p++;
			skip_ws(ps);
			if (ps->p >= ps->end || (*ps->p != '"' && *ps->p != '\''))
				return perr(ps, "attribute %.*s of <%s>: value not quoted",
					    (int)a->name_len, a->name, ps->name);
			q = *ps->p++;
			a->value = ps->p;
			while (ps->p < ps->end && *ps->p != q && *ps->p != '<' && *ps->p != '\n')
				ps->p++;
			if (ps->p >= ps->end || *ps->p != q)
				return perr(ps, "attribute %.*s of <%s>: unterminated value",
					    (int)a->name_len, a->name, ps->name);
			a->value_len = (size_t)(ps->p - a->value);
			ps->p++;
			for (unsigned i = 0; i < ps->nattrs; i++)
				if (ps->attrs[i].name_len == a->name_len &&
				    !memcmp(ps->attrs[i].name, a->name, a->name_len))
					return perr(ps, "attribute %.*s repeated in <%s>",
						    (int)a->name_len, a->name, ps->name);
			ps->nattrs++;
		}
	}
}

struct field {
	const char *name;
	bool required;
	uint64_t max;
	uint64_t *out;
	bool is_string; /* uuid: any text, ignored */
	bool seen;
};

/* Match the tag's attributes to @f: all known, required present, numbers in range. */
static int take_attrs(struct parser *ps, struct field *f, unsigned nf)
{
	for (unsigned i = 0; i < ps->nattrs; i++) {
		struct attr *a = &ps->attrs[i];
		unsigned j;

		for (j = 0; j < nf; j++)
			if (strlen(f[j].name) == a->name_len &&
			    !memcmp(f[j].name, a->name, a->name_len))
				break;
		if (j == nf)
			return perr(ps, "unknown attribute %.*s in <%s>", (int)a->name_len, a->name,
				    ps->name);
		f[j].seen = true;
		if (f[j].is_string)
			continue;
		{
			uint64_t v = 0;

			if (!a->value_len)
				return perr(ps, "%s of <%s> is empty", f[j].name, ps->name);
			for (size_t k = 0; k < a->value_len; k++) {
				unsigned dgt = (unsigned)(a->value[k] - '0');

				if (dgt > 9)
					return perr(
					    ps, "%s of <%s> is not a decimal number: \"%.*s\"",
					    f[j].name, ps->name, (int)a->value_len, a->value);
				if (v > (UINT64_MAX - dgt) / 10)
					return perr(ps, "%s of <%s> is too big", f[j].name,
						    ps->name);
				v = v * 10 + dgt;
			}
			if (v > f[j].max)
				return perr(ps, "%s of <%s> is %" PRIu64 ", at most %" PRIu64,
					    f[j].name, ps->name, v, f[j].max);
			*f[j].out = v;
		}
	}
	for (unsigned j = 0; j < nf; j++)
		if (f[j].required && !f[j].seen)
			return perr(ps, "<%s> lacks attribute %s", ps->name, f[j].name);
	return 0;
}

/*----------------------------------------------------------------*/
/* The document: parsed twice, first only checked (@md NULL), then applied. */

struct sb_attrs {
	uint64_t time, trans, flags, version, block_size, nr_data, snap;
};

static int fail_md(struct parser *ps, const char *what, int r)
{
	return perr(ps, "%s: %s", what, strerror(-r));
}

static int parse_mappings(struct parser *ps, struct thin_md *md, struct thin_dev *td,
			  const struct sb_attrs *sb, uint64_t dev_id)
{
	uint64_t next_origin = 0;
	bool any = false;
	int r;

	for (;;) {
		uint64_t ob = 0, db = 0, len = 1, t = 0;

		r = next_tag(ps);
		if (r <= 0)
			return r ? r : perr(ps, "document ends inside <device>");
		if (ps->closing) {
			if (strcmp(ps->name, "device"))
				return perr(ps, "</%s> inside <device>", ps->name);
			return 0;
		}
		if (!strcmp(ps->name, "range_mapping")) {
			struct field f[] = {
				{ "origin_begin", true, UINT64_MAX, &ob, false, false },
				{ "data_begin", true, UINT64_MAX, &db, false, false },
				{ "length", true, UINT64_MAX, &len, false, false },
				{ "time", true, 0xffffff, &t, false, false },
			};

			r = take_attrs(ps, f, 4);
			if (!r && !len)
				r = perr(ps, "range_mapping of length 0");
		} else if (!strcmp(ps->name, "single_mapping")) {
			struct field f[] = {
				{ "origin_block", true, UINT64_MAX, &ob, false, false },
				{ "data_block", true, UINT64_MAX, &db, false, false },
				{ "time", true, 0xffffff, &t, false, false },
			};

			r = take_attrs(ps, f, 3);
		} else {
			return perr(ps, "<%s> inside <device> (expected a mapping)", ps->name);
		}
		if (r)
			return r;
		if (!ps->empty)
			return perr(ps, "<%s> must be empty (<%s .../>)", ps->name, ps->name);
		if (ob > UINT64_MAX - len || db > UINT64_MAX - len)
			return perr(ps, "mapping range wraps around");
		if (db + len > sb->nr_data)
			return perr(
			    ps, "mapping beyond end of data device (%" PRIu64 " >= %" PRIu64 ")",
			    db + len - 1, sb->nr_data);
		if (any && ob < next_origin)
			return perr(ps,
				    "device %" PRIu64 ": mapping for block %" PRIu64
				    " out of order or overlapping",
				    dev_id, ob);
		if (t > sb->time)
			return perr(ps,
				    "mapping time %" PRIu64 " is later than the pool's %" PRIu64, t,
				    sb->time);
		any = true;
		next_origin = ob + len;
		if (!md)
			continue;
		for (uint64_t i = 0; i < len; i++) {
			r = thin_md_inc_data_range(md, db + i, db + i + 1);
			if (!r)
				r = thin_insert_block_time(td, ob + i, db + i, (uint32_t)t);
			if (r)
				return fail_md(ps, "inserting a mapping", r);
		}
	}
}

/* Device ids seen by the checking pass, to find duplicates before anything is written. */
struct id_line {
	uint64_t id;
	unsigned line;
};
static struct id_line *seen_ids;
static size_t nr_seen, cap_seen;

static int remember_id(struct parser *ps, uint64_t id)
{
	if (nr_seen == cap_seen) {
		size_t cap = cap_seen ? cap_seen * 2 : 256;
		struct id_line *n = realloc(seen_ids, cap * sizeof(*n));

		if (!n)
			return perr(ps, "out of memory");
		seen_ids = n;
		cap_seen = cap;
	}
	seen_ids[nr_seen++] = (struct id_line){ id, ps->line };
	return 0;
}

static int cmp_id(const void *a, const void *b)
{
	const struct id_line *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id ? 1 : (int)x->line - (int)y->line;
}

static int check_duplicate_ids(struct parser *ps)
{
	if (nr_seen)
		qsort(seen_ids, nr_seen, sizeof(*seen_ids), cmp_id);
	for (size_t i = 1; i < nr_seen; i++)
		if (seen_ids[i].id == seen_ids[i - 1].id) {
			ps->line = seen_ids[i].line;
			return perr(ps, "Device already exists: %" PRIu64, seen_ids[i].id);
		}
	return 0;
}

static int parse_device(struct parser *ps, struct thin_md *md, const struct sb_attrs *sb)
{
	uint64_t id = 0, mapped = 0, trans = 0, ctime = 0, stime = 0;
	struct field f[] = {
		{ "dev_id", true, THIN_MAX_DEV_ID, &id, false, false },
		{ "mapped_blocks", false, UINT64_MAX, &mapped, false, false },
		{ "transaction", true, UINT64_MAX, &trans, false, false },
		{ "creation_time", true, 0xffffffff, &ctime, false, false },
		{ "snap_time", true, 0xffffffff, &stime, false, false },
	};
	struct thin_dev *td = NULL;
	int r = take_attrs(ps, f, 5);

	if (r)
		return r;
	if (ctime > sb->time || stime > sb->time || trans > sb->trans)
		return perr(ps, "device %" PRIu64 ": times or transaction beyond the superblock's",
			    id);
	if (!md) {
		r = remember_id(ps, id);
		if (r)
			return r;
	}
	if (md) {
		r = thin_md_create_thin(md, id);
		if (r == -EEXIST)
			return perr(ps, "Device already exists: %" PRIu64, id);
		if (!r)
			r = thin_md_open_thin(md, id, &td);
		if (!r)
			r = thin_set_details(td, trans, (uint32_t)ctime, (uint32_t)stime);
		if (r) {
			thin_md_close_thin(td);
			return fail_md(ps, "creating a device", r);
		}
	}
	if (!ps->empty)
		r = parse_mappings(ps, md, td, sb, id);
	thin_md_close_thin(td);
	return r;
}

/* Superblock attributes are parsed before the pool exists: @sb is filled, @md unused. */
static int parse_superblock_tag(struct parser *ps, struct sb_attrs *sb)
{
	uint64_t dummy;
	struct field f[] = {
		{ "uuid", false, 0, &dummy, true, false },
		{ "time", true, 0xffffff, &sb->time, false, false },
		{ "transaction", true, UINT64_MAX, &sb->trans, false, false },
		{ "flags", false, 0xffffffff, &sb->flags, false, false },
		{ "version", false, 0xffffffff, &sb->version, false, false },
		{ "data_block_size", true, 0xffffffff, &sb->block_size, false, false },
		{ "nr_data_blocks", true, 1ull << 40, &sb->nr_data, false, false },
		{ "metadata_snap", false, UINT64_MAX, &sb->snap, false, false },
	};
	int r;

	sb->version = 1; /* thin_restore's default */
	r = next_tag(ps);
	if (r <= 0)
		return r ? r : perr(ps, "empty document");
	if (ps->closing || strcmp(ps->name, "superblock"))
		return perr(ps, "expected <superblock>, found <%s%s>", ps->closing ? "/" : "",
			    ps->name);
	r = take_attrs(ps, f, 8);
	if (r)
		return r;
	if (ps->empty)
		return perr(ps, "<superblock/> is empty");
	if (sb->version != 1 && sb->version != 2)
		return perr(ps, "metadata version %" PRIu64 " is not supported (1 or 2)",
			    sb->version);
	if (sb->block_size < THIN_DATA_BLOCK_SECTORS_MIN ||
	    sb->block_size > THIN_DATA_BLOCK_SECTORS_MAX ||
	    (sb->block_size & (THIN_DATA_BLOCK_SECTORS_MIN - 1)))
		return perr(ps,
			    "data_block_size %" PRIu64 " must be %u..%u sectors, a multiple of %u",
			    sb->block_size, THIN_DATA_BLOCK_SECTORS_MIN,
			    THIN_DATA_BLOCK_SECTORS_MAX, THIN_DATA_BLOCK_SECTORS_MIN);
	if (sb->flags & ~(uint64_t)THIN_METADATA_NEEDS_CHECK_FLAG)
		return perr(ps, "unknown superblock flags %" PRIu64, sb->flags);
	if (sb->snap)
		return perr(ps, "metadata_snap cannot be restored (a held root is not data)");
	return 0;
}

static int parse_body(struct parser *ps, struct thin_md *md, const struct sb_attrs *sb)
{
	int r;

	for (;;) {
		r = next_tag(ps);
		if (r <= 0)
			return r ? r : perr(ps, "document ends inside <superblock>");
		if (ps->closing) {
			if (strcmp(ps->name, "superblock"))
				return perr(ps, "</%s> inside <superblock>", ps->name);
			break;
		}
		if (strcmp(ps->name, "device"))
			return perr(ps, "<%s> inside <superblock> (expected <device>)", ps->name);
		r = parse_device(ps, md, sb);
		if (r)
			return r;
	}
	r = next_tag(ps);
	if (r > 0)
		return perr(ps, "<%s> after </superblock>", ps->name);
	return r;
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (!f)
		return NULL;
	for (;;) {
		if (n == cap) {
			char *nb;

			cap = cap ? cap * 2 : 1 << 16;
			nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			buf = nb;
		}
		size_t got = fread(buf + n, 1, cap - n, f);

		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		free(buf);
		fclose(f);
		errno = EIO;
		return NULL;
	}
	fclose(f);
	*len = n;
	return buf;
}

int main(int argc, char **argv)
{
	const char *in = NULL, *out = NULL;
	struct parser ps = { 0 };
	struct sb_attrs sb = { 0 };
	char why[256] = "";
	struct blkdev *dev;
	struct thin_md *md;
	size_t len;
	char *text;
	int r;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "-i") || !strcmp(argv[i], "--input"))
			in = argv[i + 1];
		else if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output"))
			out = argv[i + 1];
	}
	if (!in || !out || argc != 5) {
		fprintf(stderr, "usage: thinbox-restore -i XML -o METADATA\n");
		return 1;
	}
	text = read_file(in, &len);
	if (!text) {
		fprintf(stderr, "thinbox-restore: %s: %s\n", in, strerror(errno));
		return 1;
	}
	/* Pass 1: check the whole document; nothing is written if it is bad. */
	ps = (struct parser){ .path = in, .p = text, .end = text + len, .line = 1 };
	r = parse_superblock_tag(&ps, &sb);
	if (!r)
		r = parse_body(&ps, NULL, &sb);
	if (!r)
		r = check_duplicate_ids(&ps);
	free(seen_ids);
	if (r) {
		fprintf(stderr, "thinbox-restore: %s\n", ps.err);
		free(text);
		return 1;
	}
	r = filedisk_open(out, 4096, false, 0, &dev);
	if (r) {
		fprintf(stderr, "thinbox-restore: %s: %s\n", out, strerror(-r));
		free(text);
		return 1;
	}
	/* Pass 2: a fresh pool (restore replaces what was there). */
	r = thin_md_erase(dev);
	if (!r) {
		struct thin_md_open_opts o = { .data_block_sectors = (uint32_t)sb.block_size,
					       .format = true,
					       .data_dev_blocks = sb.nr_data,
					       .why = why,
					       .why_len = sizeof(why) };

		r = thin_md_open(dev, &o, &md);
		if (r) {
			fprintf(stderr, "thinbox-restore: %s: %s\n", out,
				why[0] ? why : strerror(-r));
			blkdev_destroy(dev);
			free(text);
			return 1;
		}
	}
	if (!r)
		r = thin_md_set_time(md, (uint32_t)sb.time);
	if (!r)
		r = thin_md_set_transaction_id(md, 0, sb.trans);
	if (r) {
		fprintf(stderr, "thinbox-restore: %s: %s\n", out, strerror(-r));
	} else {
		ps = (struct parser){ .path = in, .p = text, .end = text + len, .line = 1 };
		r = parse_superblock_tag(&ps, &sb);
		if (!r)
			r = parse_body(&ps, md, &sb);
		if (r)
			fprintf(stderr, "thinbox-restore: %s\n", ps.err);
	}
	if (!r)
		r = thin_md_commit(md);
	if (!r && (sb.flags & THIN_METADATA_NEEDS_CHECK_FLAG))
		r = thin_md_set_needs_check(md);
	if (r && !ps.err[0])
		fprintf(stderr, "thinbox-restore: %s: %s\n", out, strerror(-r));
	thin_md_close(md);
	blkdev_destroy(dev);
	free(text);
	return r ? 1 : 0;
}
