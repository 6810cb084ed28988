/* SPDX-License-Identifier: MIT */
/* The `thin` shell command: named thin volumes (docs/appliance.md). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/cmd_internal.h"
#include "core/base/util.h"
#include "core/base/walltime.h"

static const char thin_usage[] = "usage: thin create NAME SIZE\n"
				 "       thin create PREFIX SIZE --count N [--first K]\n"
				 "       thin snapshot ORIGIN NAME\n"
				 "       thin snapshot ORIGIN PREFIX --count N [--first K]\n"
				 "       thin delete NAME\n"
				 "       thin rename NAME NEW_NAME\n"
				 "       thin resize NAME SIZE\n"
				 "       thin list [PATTERN] [--from NAME] [--limit N]\n"
				 "       thin info NAME\n"
				 "       thin diff FROM TO [--summary]\n";

static int bad_usage(struct shell *sh)
{
	shell_puts(sh, thin_usage);
	return -EINVAL;
}

/* Say why a volume change failed, in the words of the change. */
static int volume_error(struct shell *sh, struct appliance *a, int rc, const char *what,
			const char *name)
{
	switch (rc) {
	case -EINVAL:
		if (!appliance_volume_name_valid(name)) {
			shell_printf(
			    sh,
			    "error: bad name '%s': a volume is an LVM logical volume: 1 to "
			    "%d characters of A-Z a-z 0-9 _ . + -, not starting with . or -, "
			    "and none of lvm's reserved names (snapshot*, pvmove*, *_tmeta, "
			    "*_tdata, *_pmspare, *_rimage, ...)\n",
			    name, CFG_NAME_MAX);
			return rc;
		}
		break;
	case -EEXIST:
		shell_printf(sh, "error: a volume named '%s' exists already\n", name);
		return rc;
	case -ENOENT:
		shell_printf(sh, "error: no volume named '%s' (thin list shows them)\n", name);
		return rc;
	case -ESTALE:
		shell_printf(sh, "error: %s: %s\n", what, appliance_problem(a));
		return rc;
	case -ENOSPC:
		shell_printf(sh,
			     "error: %s %s: no space: the pool metadata or the volume group's "
			     "metadata area is full (pool status shows the pool's)\n",
			     what, name);
		return rc;
	default:
		break;
	}
	return app_error(sh, rc, "%s %s", what, name);
}

/* The LV's creation_time as "YYYY-MM-DD HH:MM" (UTC), or "-" when lvm recorded none. */
static void format_created(const struct appliance_volume_info *info, char *out, size_t len)
{
	struct civil_time t;

	if (!info->created || unix_to_civil(info->created, &t))
		snprintf(out, len, "-");
	else
		snprintf(out, len, "%04d-%02d-%02d %02d:%02d", t.year, t.month, t.day, t.hour,
			 t.min);
}

/* Glob match: '*' any run of characters, '?' one; anything else itself. */
static bool glob_match(const char *p, const char *s)
{
	const char *star = NULL, *resume = NULL;

	while (*s) {
		if (*p == '*') {
			star = ++p;
			resume = s;
		} else if (*p && (*p == '?' || *p == *s)) {
			p++;
			s++;
		} else if (star) {
			p = star;
			s = ++resume;
		} else {
			return false;
		}
	}
	while (*p == '*')
		p++;
	return !*p;
}

static int cmp_vol_name(const void *x, const void *y)
{
	const struct cfg_volume *a = *(const struct cfg_volume *const *)x;
	const struct cfg_volume *b = *(const struct cfg_volume *const *)y;

	return strcmp(a->name, b->name);
}

struct list_opts {
	const char *pattern; /* NULL: all */
	const char *from;    /* NULL: from the first name */
	uint64_t limit;	     /* 0: no limit */
};

/*
 * The volumes in name order (strcmp), those matching the pattern, from the first name not
 * before --from, at most --limit of them: O(n log n) for the sort, then a row per volume
 * shown. Without options: every volume, as before.
 */
static int thin_list(struct shell *sh, struct appliance *a, const struct list_opts *o)
{
	const struct cfg *c = appliance_config(a);
	const struct cfg_volume **v;
	size_t w = 4, n = 0, start = 0, shown;

	if (appliance_state(a) != APPLIANCE_READY) {
		shell_printf(sh, "error: %s\n", appliance_problem(a));
		return -ESTALE;
	}
	v = malloc((c->nvols + 1) * sizeof(*v));
	if (!v)
		return app_error(sh, -ENOMEM, "thin list");
	for (size_t i = 0; i < c->nvols; i++)
		if (!o->pattern || glob_match(o->pattern, c->vols[i].name))
			v[n++] = &c->vols[i];
	qsort(v, n, sizeof(*v), cmp_vol_name);
	while (o->from && start < n && strcmp(v[start]->name, o->from) < 0)
		start++;
	shown = n - start;
	if (o->limit && shown > o->limit)
		shown = (size_t)o->limit;
	for (size_t i = start; i < start + shown; i++)
		w = MAX(w, strlen(v[i]->name));
	shell_printf(sh, "%-*s %8s %11s %11s %-*s %s\n", (int)w, "NAME", "ID", "SIZE", "MAPPED",
		     (int)w, "ORIGIN", "CREATED");
	for (size_t i = start; i < start + shown; i++) {
		const struct cfg_volume *cv = v[i];
		struct appliance_volume_info info;
		char size[32], mapped[32], created[24];
		int rc = appliance_volume_info(a, cv->name, &info);

		format_size(cv->size, size, sizeof(size));
		if (rc || !info.in_pool) {
			snprintf(mapped, sizeof(mapped), "?");
			snprintf(created, sizeof(created), "?");
		} else {
			format_size(info.mapped_bytes, mapped, sizeof(mapped));
			format_created(&info, created, sizeof(created));
		}
		shell_printf(sh, "%-*s %8" PRIu32 " %11s %11s %-*s %s\n", (int)w, cv->name, cv->id,
			     size, mapped, (int)w, cv->origin[0] ? cv->origin : "-", created);
	}
	if (!o->pattern && !o->from && !o->limit) {
		shell_printf(sh, "%zu volume(s)\n", c->nvols);
	} else {
		shell_printf(sh, "%zu shown of %zu matching (%zu volume(s) in all)\n", shown, n,
			     c->nvols);
		if (start + shown < n)
			shell_printf(sh, "more: thin list%s%s --from %s --limit %" PRIu64 "\n",
				     o->pattern ? " " : "", o->pattern ? o->pattern : "",
				     v[start + shown]->name, o->limit);
	}
	free(v);
	return 0;
}

/* Parse thin list's words after "list": 0, or -EINVAL (usage printed). */
static int list_args(struct shell *sh, int argc, char **argv, struct list_opts *o)
{
	memset(o, 0, sizeof(*o));
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--from") && i + 1 < argc) {
			o->from = argv[++i];
		} else if (!strcmp(argv[i], "--limit") && i + 1 < argc) {
			if (app_parse_u64(argv[++i], &o->limit) || !o->limit) {
				shell_printf(sh, "error: --limit wants a number of 1 or more\n");
				return -EINVAL;
			}
		} else if (argv[i][0] != '-' && !o->pattern) {
			o->pattern = argv[i];
		} else {
			return bad_usage(sh);
		}
	}
	return 0;
}

/* --count N [--first K] after argv[4]: 0 and the values, or -EINVAL (usage printed). */
static int count_args(struct shell *sh, int argc, char **argv, unsigned *count, uint64_t *first)
{
	*count = 0;
	*first = 0;
	for (int i = 4; i < argc; i += 2) { /* OPTION VALUE pairs */
		uint64_t v;

		if (i + 1 >= argc || app_parse_u64(argv[i + 1], &v))
			return bad_usage(sh);
		if (!strcmp(argv[i], "--count") && v >= 1 && v <= CFG_MAX_VOLUMES)
			*count = (unsigned)v;
		else if (!strcmp(argv[i], "--first") && v <= UINT32_MAX)
			*first = v;
		else
			return bad_usage(sh);
	}
	return *count ? 0 : bad_usage(sh);
}

/* The batch forms: PREFIX<first> .. PREFIX<first + count - 1>, one line for all. */
static int thin_create_many(struct shell *sh, struct appliance *a, const char *prefix,
			    uint64_t size, const char *origin, unsigned count, uint64_t first)
{
	const char *what = origin ? "thin snapshot" : "thin create";
	unsigned done = 0;
	char sz[32];
	int rc = appliance_create_volumes(a, prefix, first, count, size, origin, &done);

	if (done)
		shell_printf(sh, "created %u volume(s) %s%" PRIu64 " .. %s%" PRIu64 "%s%s\n", done,
			     prefix, first, prefix, first + done - 1,
			     origin ? ": snapshots of " : "", origin ? origin : "");
	if (rc == -ENOENT && origin)
		return volume_error(sh, a, rc, what, origin);
	if (rc == -EEXIST) {
		shell_printf(sh,
			     "error: %s: a volume named %s<N> exists already in %" PRIu64
			     " .. %" PRIu64 "\n",
			     what, prefix, first + done, first + count - 1);
		return rc;
	}
	if (rc == -EINVAL && appliance_volume_name_valid(prefix)) {
		shell_printf(sh, "error: %s: %s<N> is too long for a volume name\n", what, prefix);
		return rc;
	}
	if (rc)
		return volume_error(sh, a, rc, what, prefix);
	if (!origin) {
		format_size(size, sz, sizeof(sz));
		shell_printf(sh, "each %s\n", sz);
	}
	return 0;
}

static int thin_info(struct shell *sh, struct appliance *a, const char *name)
{
	const struct cfg *c = appliance_config(a);
	const struct cfg_volume *v = cfg_find_volume(c, name);
	struct appliance_volume_info info;
	char size[32], mapped[32], created[24];
	int rc;

	if (!v)
		return volume_error(sh, a,
				    appliance_state(a) == APPLIANCE_READY ? -ENOENT : -ESTALE,
				    "thin info", name);
	rc = appliance_volume_info(a, name, &info);
	if (rc)
		return volume_error(sh, a, rc, "thin info", name);
	format_size(v->size, size, sizeof(size));
	format_size(info.mapped_bytes, mapped, sizeof(mapped));
	shell_printf(sh, "name              %s\n", v->name);
	shell_printf(sh, "thin id           %" PRIu32 "\n", v->id);
	shell_printf(sh, "size              %s (%" PRIu64 " bytes)\n", size, v->size);
	shell_printf(sh, "mapped            %s (%" PRIu64 " bytes)\n", mapped, info.mapped_bytes);
	shell_printf(sh, "origin            %s\n", v->origin[0] ? v->origin : "-");
	format_created(&info, created, sizeof(created));
	shell_printf(sh, "created           %s%s%s%s (pool time %" PRIu32 ")\n", created,
		     info.created ? " UTC" : "", info.created_host[0] ? " on " : "",
		     info.created_host, info.creation_time);
	shell_printf(sh, "last snapshotted  pool time %" PRIu32 "\n", info.snapshotted_time);
	shell_printf(sh, "exports           %u\n", info.exports);
	for (size_t i = 0; i < c->nexps; i++)
		if (!strcmp(c->exps[i].volume, name))
			shell_printf(sh, "  %s%s\n", c->exps[i].name,
				     c->exps[i].read_only ? " (read-only)" : "");
	shell_printf(sh, "open              %s\n", info.open ? "yes" : "no");
	if (!info.in_pool)
		shell_puts(sh, "warning: the pool has no thin device with this id\n");
	return 0;
}

/* thin_delta's names, and what each means going from FROM to TO. */
static const char *const diff_kind[][2] = {
	{ "same", "unchanged" },
	{ "left_only", "discarded: in FROM only" },
	{ "right_only", "written: in TO only" },
	{ "different", "overwritten" },
};

struct diff_print {
	struct shell *sh;
	bool summary;
	uint64_t bytes[THIN_DIFF_KINDS];
};

static int diff_line(void *ctx, const struct appliance_diff_range *r)
{
	struct diff_print *p = ctx;
	char sz[32];

	p->bytes[r->kind] += r->length;
	if (p->summary)
		return 0;
	format_size(r->length, sz, sizeof(sz));
	shell_printf(p->sh, "%-10s offset %" PRIu64 " length %" PRIu64 " (%s)\n",
		     diff_kind[r->kind][0], r->offset, r->length, sz);
	return 0;
}

static int thin_diff(struct shell *sh, struct appliance *a, const char *from, const char *to,
		     bool summary)
{
	struct diff_print p = { sh, summary, { 0 } };
	struct thin_diff_stats st;
	char sz[32];
	uint64_t total = 0;
	int rc = appliance_diff(a, from, to, 0, diff_line, &p, &st);

	if (rc == -ENOENT)
		return volume_error(
		    sh, a, rc, "thin diff",
		    appliance_volume_info(a, from, &(struct appliance_volume_info){ 0 }) ? from
											 : to);
	if (rc)
		return volume_error(sh, a, rc, "thin diff", from);
	for (unsigned k = THIN_DIFF_LEFT_ONLY; k < THIN_DIFF_KINDS; k++) {
		total += p.bytes[k];
		format_size(p.bytes[k], sz, sizeof(sz));
		shell_printf(sh, "%-10s %" PRIu64 " bytes (%s) %s\n", diff_kind[k][0], p.bytes[k],
			     sz, diff_kind[k][1]);
	}
	format_size(total, sz, sizeof(sz));
	shell_printf(sh,
		     "total: %s changed from %s to %s in %" PRIu64 " ranges (%" PRIu64
		     " metadata nodes read, %" PRIu64 " shared subtrees skipped)\n",
		     sz, from, to, st.ranges, st.nodes_read, st.subtrees_skipped);
	return 0;
}

static int cmd_thin(struct shell *sh, int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "";
	struct appliance *a;
	uint64_t size, first;
	unsigned count;
	char sz[32];
	int rc;

	if (!strcmp(sub, "create")) {
		if (argc < 4 || (argc > 4 && count_args(sh, argc, argv, &count, &first)))
			return bad_usage(sh);
		a = app_need_pool(sh, false);
		if (!a)
			return -ENODEV;
		if (!appliance_volume_name_valid(argv[2]))
			return volume_error(sh, a, -EINVAL, "thin create", argv[2]);
		if (app_parse_size(sh, argv[3], &size))
			return -EINVAL;
		if (argc > 4)
			return thin_create_many(sh, a, argv[2], size, NULL, count, first);
		rc = appliance_create_volume(a, argv[2], size);
		if (rc)
			return volume_error(sh, a, rc, "thin create", argv[2]);
		format_size(size, sz, sizeof(sz));
		shell_printf(sh, "created %s: %s, thin id %" PRIu32 "\n", argv[2], sz,
			     cfg_find_volume(appliance_config(a), argv[2])->id);
		return 0;
	}
	if (!strcmp(sub, "snapshot")) {
		if (argc < 4 || (argc > 4 && count_args(sh, argc, argv, &count, &first)))
			return bad_usage(sh);
		a = app_need_pool(sh, false);
		if (!a)
			return -ENODEV;
		if (!appliance_volume_name_valid(argv[3]))
			return volume_error(sh, a, -EINVAL, "thin snapshot", argv[3]);
		if (argc > 4)
			return thin_create_many(sh, a, argv[3], 0, argv[2], count, first);
		rc = appliance_snapshot_volume(a, argv[2], argv[3]);
		if (rc == -ENOENT)
			return volume_error(sh, a, rc, "thin snapshot", argv[2]);
		if (rc)
			return volume_error(sh, a, rc, "thin snapshot", argv[3]);
		shell_printf(sh, "created %s: snapshot of %s, thin id %" PRIu32 "\n", argv[3],
			     argv[2], cfg_find_volume(appliance_config(a), argv[3])->id);
		return 0;
	}
	if (!strcmp(sub, "delete")) {
		if (argc != 3)
			return bad_usage(sh);
		a = app_need_pool(sh, false);
		if (!a)
			return -ENODEV;
		rc = appliance_delete_volume(a, argv[2]);
		if (rc == -EBUSY) {
			const struct cfg *c = appliance_config(a);

			for (size_t i = 0; i < c->nexps; i++)
				if (!strcmp(c->exps[i].volume, argv[2])) {
					shell_printf(
					    sh,
					    "error: %s is exported as '%s'; export remove %s "
					    "first\n",
					    argv[2], c->exps[i].name, c->exps[i].name);
					return rc;
				}
			shell_printf(sh,
				     "error: %s is still in use by a connection; try again when "
				     "it has closed\n",
				     argv[2]);
			return rc;
		}
		if (rc)
			return volume_error(sh, a, rc, "thin delete", argv[2]);
		shell_printf(sh, "deleted %s\n", argv[2]);
		return 0;
	}
	if (!strcmp(sub, "rename")) {
		if (argc != 4)
			return bad_usage(sh);
		a = app_need_pool(sh, false);
		if (!a)
			return -ENODEV;
		if (!appliance_volume_name_valid(argv[3]))
			return volume_error(sh, a, -EINVAL, "thin rename", argv[3]);
		rc = appliance_rename_volume(a, argv[2], argv[3]);
		if (rc == -EEXIST)
			return volume_error(sh, a, rc, "thin rename", argv[3]);
		if (rc)
			return volume_error(sh, a, rc, "thin rename", argv[2]);
		shell_printf(sh, "renamed %s to %s (its exports keep their names)\n", argv[2],
			     argv[3]);
		return 0;
	}
	if (!strcmp(sub, "resize")) {
		if (argc != 4)
			return bad_usage(sh);
		a = app_need_pool(sh, false);
		if (!a)
			return -ENODEV;
		if (app_parse_size(sh, argv[3], &size))
			return -EINVAL;
		rc = appliance_resize_volume(a, argv[2], size);
		if (rc)
			return volume_error(sh, a, rc, "thin resize", argv[2]);
		format_size(size, sz, sizeof(sz));
		shell_printf(sh, "%s is now %s (new connections see the new size)\n", argv[2], sz);
		return 0;
	}
	if (!strcmp(sub, "list")) {
		struct list_opts lo;

		if (list_args(sh, argc, argv, &lo))
			return -EINVAL;
		a = app_need_pool(sh, false);
		return a ? thin_list(sh, a, &lo) : -ENODEV;
	}
	if (!strcmp(sub, "info")) {
		if (argc != 3)
			return bad_usage(sh);
		a = app_need_pool(sh, false);
		return a ? thin_info(sh, a, argv[2]) : -ENODEV;
	}
	if (!strcmp(sub, "diff")) {
		bool summary = argc == 5 && !strcmp(argv[4], "--summary");

		if (argc != 4 && !summary)
			return bad_usage(sh);
		a = app_need_pool(sh, false);
		return a ? thin_diff(sh, a, argv[2], argv[3], summary) : -ENODEV;
	}
	if (sub[0])
		shell_printf(sh, "error: unknown thin command '%s'\n", sub);
	return bad_usage(sh);
}

const struct shell_cmd app_thin_cmds[] = {
	{ "thin", "create|snapshot|delete|rename|resize|list|info|diff ...",
	  "thin volumes: create NAME SIZE (--count N: NAME0..), snapshot ORIGIN NAME, delete, "
	  "rename, resize, list [PATTERN] [--from NAME] [--limit N], info, diff FROM TO "
	  "[--summary] (what changed)",
	  cmd_thin },
};
const size_t app_thin_ncmds = ARRAY_SIZE(app_thin_cmds);
