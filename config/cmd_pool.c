/* SPDX-License-Identifier: MIT */
/*
 * The `pool` shell command (dm-thin's pool messages and status, docs/appliance.md), and the
 * helpers every appliance command shares: finding the appliance, errors, sizes, subcommands.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/cmd_internal.h"
#include "core/base/util.h"

/* ---- Shared helpers ----------------------------------------------------------------------- */

struct appliance *appliance_of(struct shell *sh)
{
	/* The tables are embedded in struct appliance_cmds, so the table that holds the pool
	 * commands leads back to the appliance: no global, and several appliances (tests) can
	 * live side by side. */
	for (struct shell_cmd_table *t = sh->tables; t; t = t->next)
		if (t->cmds == app_pool_cmds)
			return container_of(t, struct appliance_cmds, pool_tab)->a;
	return NULL;
}

void appliance_cmds_register(struct appliance_cmds *c, struct appliance *a, struct shell *sh)
{
	c->a = a;
	c->pool_tab = (struct shell_cmd_table){ app_pool_cmds, app_pool_ncmds, NULL };
	c->thin_tab = (struct shell_cmd_table){ app_thin_cmds, app_thin_ncmds, NULL };
	c->export_tab = (struct shell_cmd_table){ app_export_cmds, app_export_ncmds, NULL };
	shell_add_commands(sh, &c->pool_tab);
	shell_add_commands(sh, &c->thin_tab);
	shell_add_commands(sh, &c->export_tab);
}

int app_error(struct shell *sh, int rc, const char *fmt, ...)
{
	char what[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	shell_printf(sh, "error: %s: %s\n", what, appliance_strerror(rc));
	return rc;
}

int app_parse_size(struct shell *sh, const char *arg, uint64_t *out)
{
	unsigned long long v;
	int rc = shell_parse_size(arg, &v);

	if (rc) {
		shell_printf(
		    sh, "error: bad size '%s' (a number with an optional K, M, G or T suffix)\n",
		    arg);
		return -EINVAL;
	}
	if (v == 0 || v % 512 || v > APPLIANCE_MAX_VOLUME_BYTES) {
		shell_printf(
		    sh, "error: size '%s' must be a multiple of 512 bytes between 512 and 1 PiB\n",
		    arg);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

int app_parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

/* The appliance, or NULL after saying why there is none to work on. */
struct appliance *app_need_pool(struct shell *sh, bool need_config)
{
	struct appliance *a = appliance_of(sh);

	if (!a)
		shell_puts(sh, "error: no appliance (the disks were not given)\n");
	else if (!appliance_pool(a))
		shell_printf(sh, "error: no pool: %s\n", appliance_problem(a));
	else if (need_config && appliance_state(a) != APPLIANCE_READY)
		shell_printf(sh, "error: %s\n", appliance_problem(a));
	else
		return a;
	return NULL;
}

/* ---- pool status -------------------------------------------------------------------------- */

static const char *mode_name(enum thin_pool_mode m)
{
	switch (m) {
	case THIN_POOL_WRITE:
		return "rw (write)";
	case THIN_POOL_OUT_OF_DATA_SPACE:
		return "out_of_data_space (writes needing a new block fail)";
	case THIN_POOL_READ_ONLY:
		return "ro (read-only: see pool check)";
	case THIN_POOL_FAIL:
		return "Fail (every I/O fails)";
	}
	return "?";
}

/* What a write needing a new block meets when the pool is full (the no-space policy). */
static void when_full(const struct thin_pool_status *st, char *buf, size_t len)
{
	int n;

	if (st->error_if_no_space && !st->no_space_timed_out)
		n = snprintf(buf, len, "error at once (error-if-no-space on)");
	else if (!st->no_space_timeout_ms)
		n = snprintf(buf, len, "queue writes until space appears (no-space-timeout 0)");
	else
		n = snprintf(buf, len, "queue writes for %" PRIu32 " s, then error",
			     (st->no_space_timeout_ms + 999) / 1000);
	if (n < 0 || (size_t)n >= len)
		return;
	if (st->no_space_timed_out)
		snprintf(buf + n, len - (size_t)n, "; timed out: erroring until space appears");
	else if (st->queued_for_space)
		snprintf(buf + n, len - (size_t)n, "; %u write(s) queued", st->queued_for_space);
}

static unsigned percent(uint64_t part, uint64_t whole)
{
	return whole ? (unsigned)(part * 100 / whole) : 0;
}

static int pool_status(struct shell *sh, struct appliance *a)
{
	struct thin_pool_status st;
	struct appliance_vg_info vi;
	char line[256], s1[32], s2[32], s3[32], full[128];
	uint64_t bb;
	int rc;

	rc = thin_pool_status_line(appliance_pool(a), line, sizeof(line));
	if (rc)
		return app_error(sh, rc, "pool status");
	shell_printf(sh, "status: %s\n", line);
	rc = thin_pool_get_status(appliance_pool(a), &st);
	if (rc)
		return app_error(sh, rc, "pool status");
	bb = (uint64_t)st.data_block_sectors * 512;
	shell_printf(sh, "  mode            %s\n", mode_name(st.mode));
	shell_printf(sh, "  transaction id  %" PRIu64 "\n", st.transaction_id);
	format_size(st.data_used * bb, s1, sizeof(s1));
	format_size(st.data_total * bb, s2, sizeof(s2));
	format_size(bb, s3, sizeof(s3));
	shell_printf(
	    sh, "  data            %s of %s used, %u%% (%" PRIu64 " of %" PRIu64 " blocks of %s)\n",
	    s1, s2, percent(st.data_used, st.data_total), st.data_used, st.data_total, s3);
	format_size(st.meta_used * 4096, s1, sizeof(s1));
	format_size(st.meta_total * 4096, s2, sizeof(s2));
	shell_printf(sh,
		     "  metadata        %s of %s used, %u%% (%" PRIu64 " of %" PRIu64
		     " blocks of 4 KiB)\n",
		     s1, s2, percent(st.meta_used, st.meta_total), st.meta_used, st.meta_total);
	/* The cache bounds the pool's memory whatever the pool's size (docs/firmware.md). */
	format_size(st.meta_cache_bytes, s1, sizeof(s1));
	shell_printf(
	    sh, "  metadata cache  at most %u blocks (%s); %" PRIu64 " hits, %" PRIu64 " misses\n",
	    st.meta_cache_blocks, s1, st.meta_cache_hits, st.meta_cache_misses);
	if (st.held_root)
		shell_printf(sh, "  held root       block %" PRIu64 "\n", st.held_root);
	else
		shell_puts(sh, "  held root       -\n");
	shell_printf(sh, "  needs_check     %s\n", st.needs_check ? "yes" : "no");
	shell_printf(
	    sh, "  low-water mark  data %" PRIu64 " blocks (%s), metadata %" PRIu64 " blocks\n",
	    st.low_water_blocks,
	    !st.low_water_blocks   ? "off"
	    : st.low_water_reached ? "reached"
				   : "not reached",
	    st.meta_low_water_blocks);
	shell_printf(sh, "  features        %s, %s, %s\n",
		     st.zero_new_blocks ? "zeroing" : "skip_block_zeroing",
		     st.discard_passdown ? "discard_passdown" : "no_discard_passdown",
		     st.error_if_no_space ? "error_if_no_space" : "queue_if_no_space");
	when_full(&st, full, sizeof(full));
	shell_printf(sh, "  when full       %s\n", full);
	shell_printf(sh, "  volumes         %zu named, %u open, %u requests in flight\n",
		     appliance_config(a)->nvols, st.open_volumes, st.requests_in_flight);
	shell_printf(sh, "  exports         %zu\n", appliance_config(a)->nexps);
	if (!appliance_vg_info(a, &vi))
		shell_printf(sh,
			     "  volume group    %s, seqno %" PRIu32 ", %u LVs, extents of %" PRIu64
			     " MiB; pool LV %s at transaction %" PRIu64 "%s\n",
			     vi.vg, vi.seqno, vi.lvs, vi.extent_bytes >> 20, vi.pool,
			     vi.transaction_id, vi.messages ? ", a message pending" : "");
	shell_printf(sh, "  configuration   %s\n",
		     appliance_state(a) == APPLIANCE_READY ? "in step with the pool"
							   : appliance_problem(a));
	return 0;
}

/* ---- pool check --------------------------------------------------------------------------- */

struct check_ctx {
	struct shell *sh;
	int last_pct;
	unsigned problems, warnings;
	bool bar_open; /* a progress bar is on the current line */
};

static void check_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct check_ctx *c = ctx;
	char bar[41];
	int pct = total ? (int)(MIN(done, total) * 100 / total) : 100;
	int filled = pct * 40 / 100;

	/* Redraw only when the figure changes: a serial line is slow. */
	if (pct == c->last_pct)
		return;
	c->last_pct = pct;
	for (int i = 0; i < 40; i++)
		bar[i] = i < filled ? '#' : '.';
	bar[40] = '\0';
	shell_printf(c->sh, "\r  [%s] %3d%%", bar, pct);
	c->bar_open = true;
}

static void check_problem(void *ctx, const char *msg)
{
	struct check_ctx *c = ctx;

	if (c->bar_open)
		shell_puts(c->sh, "\n");
	c->bar_open = false;
	c->last_pct = -1;
	/* The checker's warnings (space-map counters) are not problems: say them as such. */
	if (!strncmp(msg, "warning: ", 9)) {
		c->warnings++;
		shell_printf(c->sh, "  %s\n", msg);
		return;
	}
	c->problems++;
	shell_printf(c->sh, "  problem: %s\n", msg);
}

static int pool_check(struct shell *sh, struct appliance *a)
{
	struct check_ctx c = { .sh = sh, .last_pct = -1 };
	int rc;

	shell_puts(sh, "checking the committed pool metadata\n");
	rc = thin_pool_check(appliance_pool(a), check_progress, check_problem, &c);
	if (c.bar_open)
		shell_puts(sh, "\n");
	if (rc == -EUCLEAN) {
		shell_printf(sh, "pool check: %u problem(s) found; the pool needs repair\n",
			     c.problems);
		return rc;
	}
	if (rc)
		return app_error(sh, rc, "pool check");
	if (c.warnings)
		shell_printf(
		    sh,
		    "pool check: clean, %u warning(s): space-map counters, corrected at the "
		    "next commit\n",
		    c.warnings);
	else
		shell_puts(sh, "pool check: clean\n");
	return 0;
}

/* ---- pool format -------------------------------------------------------------------------- */

static const char pool_format_usage[] =
    "usage: pool format [--block-size SIZE] [--no-zero] [--vg NAME] [--force [--confirm VG]]\n";

static int pool_format(struct shell *sh, struct appliance *a, int argc, char **argv)
{
	struct appliance_format_opts fo = { 0 };
	int rc;

	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--force")) {
			fo.force = true;
		} else if (!strcmp(argv[i], "--confirm") && i + 1 < argc) {
			fo.confirm = argv[++i];
		} else if (!strcmp(argv[i], "--vg") && i + 1 < argc) {
			fo.vg_name = argv[++i];
		} else if (!strcmp(argv[i], "--no-zero")) {
			fo.no_zero = true;
		} else if (!strcmp(argv[i], "--block-size") && i + 1 < argc) {
			unsigned long long bs;

			i++;
			if (shell_parse_size(argv[i], &bs) || bs < 64 * 1024 ||
			    bs > 1024ull << 20 || bs % (64 * 1024)) {
				shell_printf(
				    sh,
				    "error: bad block size '%s' (a multiple of 64K from 64K "
				    "to 1G)\n",
				    argv[i]);
				return -EINVAL;
			}
			fo.data_block_sectors = (uint32_t)(bs / 512);
		} else {
			shell_printf(sh, "error: unknown option '%s'\n", argv[i]);
			shell_puts(sh, pool_format_usage);
			return -EINVAL;
		}
	}
	rc = appliance_format(a, &fo);
	if (rc == -EINVAL && fo.vg_name) {
		/* The block size was checked above: what is left is the name. */
		shell_printf(sh, "error: '%s' is not a valid volume group name\n", fo.vg_name);
		return rc;
	}
	if (rc == -ENOTEMPTY) {
		const char *vg = appliance_disks_vg(a) ? appliance_disks_vg(a) : "VG";

		shell_printf(sh,
			     "error: the disks hold LVM volume group %s with its pool and "
			     "volumes; to erase all of it, name it: pool format --force --confirm "
			     "%s\n",
			     vg, vg);
		return rc;
	}
	if (rc == -EEXIST) {
		shell_puts(sh, "error: the metadata disk is not blank (it holds data that is not "
			       "an LVM volume group); pool format --force erases it\n");
		return rc;
	}
	if (rc == -EBUSY) {
		shell_puts(sh, "error: connections still use the exports; try again when they "
			       "have closed\n");
		return rc;
	}
	if (rc)
		return app_error(sh, rc, "pool format");
	shell_printf(sh,
		     "pool formatted: volume group %s, %u KiB blocks, zeroing %s; no volumes "
		     "(thin create NAME SIZE)\n",
		     fo.vg_name ? fo.vg_name : APPLIANCE_DEFAULT_VG,
		     (fo.data_block_sectors ? fo.data_block_sectors : 128) / 2,
		     fo.no_zero ? "off" : "on");
	return 0;
}

/* ---- pool set ----------------------------------------------------------------------------- */

static const char set_usage[] =
    "usage: pool set no-space-timeout SECONDS   (when full, queue writes this long; 0: until\n"
    "                                            space appears; default 60)\n"
    "       pool set error-if-no-space on|off   (when full, fail writes at once)\n";

static int pool_set(struct shell *sh, struct appliance *a, int argc, char **argv)
{
	struct thin_pool_status st;
	char full[128];
	bool error_if_no_space;
	uint32_t timeout_ms;
	uint64_t v;
	int rc;

	if (argc != 4) {
		shell_puts(sh, set_usage);
		return -EINVAL;
	}
	if (!app_need_pool(sh, false))
		return -ENODEV;
	rc = thin_pool_get_status(appliance_pool(a), &st);
	if (rc)
		return app_error(sh, rc, "pool set");
	error_if_no_space = st.error_if_no_space && !st.no_space_timed_out;
	timeout_ms = st.no_space_timeout_ms;
	if (!strcmp(argv[2], "no-space-timeout")) {
		if (app_parse_u64(argv[3], &v) || v > UINT32_MAX / 1000) {
			shell_printf(sh,
				     "error: bad no-space timeout '%s' (whole seconds from 0 to "
				     "%u; 0 queues until space appears)\n",
				     argv[3], UINT32_MAX / 1000);
			return -EINVAL;
		}
		timeout_ms = (uint32_t)v * 1000;
	} else if (!strcmp(argv[2], "error-if-no-space")) {
		if (!strcmp(argv[3], "on")) {
			error_if_no_space = true;
		} else if (!strcmp(argv[3], "off")) {
			error_if_no_space = false;
		} else {
			shell_printf(sh, "error: error-if-no-space is on or off, not '%s'\n",
				     argv[3]);
			return -EINVAL;
		}
	} else {
		shell_printf(sh, "error: unknown pool setting '%s'\n", argv[2]);
		shell_puts(sh, set_usage);
		return -EINVAL;
	}
	rc = appliance_set_no_space(a, error_if_no_space, timeout_ms);
	if (rc)
		return app_error(sh, rc, "pool set %s", argv[2]);
	rc = thin_pool_get_status(appliance_pool(a), &st);
	if (rc)
		return app_error(sh, rc, "pool set");
	when_full(&st, full, sizeof(full));
	shell_printf(sh, "when full: %s (kept across reboots)\n", full);
	return 0;
}

/* ---- pool ---------------------------------------------------------------------------------- */

static const char pool_usage[] =
    "usage: pool format [--block-size SIZE] [--no-zero] [--vg NAME] [--force [--confirm VG]]\n"
    "       pool status | commit | check | resize-data\n"
    "       pool set no-space-timeout SECONDS | error-if-no-space on|off\n"
    "       pool set-transaction-id OLD NEW\n"
    "       pool reserve-metadata-snap | release-metadata-snap\n";

static int want_args(struct shell *sh, int argc, int n)
{
	if (argc == n)
		return 0;
	shell_puts(sh, pool_usage);
	return -EINVAL;
}

static int cmd_pool(struct shell *sh, int argc, char **argv)
{
	struct appliance *a = appliance_of(sh);
	const char *sub = argc > 1 ? argv[1] : "";
	int rc;

	if (!a) {
		shell_puts(sh, "error: no appliance (the disks were not given)\n");
		return -ENODEV;
	}
	if (!strcmp(sub, "format"))
		return pool_format(sh, a, argc, argv);
	if (!strcmp(sub, "status")) {
		if (want_args(sh, argc, 2))
			return -EINVAL;
		if (!appliance_pool(a)) {
			shell_printf(sh, "no pool: %s\n", appliance_problem(a));
			return -ENODEV;
		}
		return pool_status(sh, a);
	}
	if (!strcmp(sub, "commit")) {
		if (want_args(sh, argc, 2) || !app_need_pool(sh, false))
			return -EINVAL;
		rc = appliance_commit(a);
		if (rc)
			return app_error(sh, rc, "pool commit");
		shell_puts(sh, "committed\n");
		return 0;
	}
	if (!strcmp(sub, "check")) {
		if (want_args(sh, argc, 2) || !app_need_pool(sh, false))
			return -EINVAL;
		rc = appliance_pool_usable(a, false);
		if (rc)
			return app_error(sh, rc, "pool check");
		return pool_check(sh, a);
	}
	if (!strcmp(sub, "set"))
		return pool_set(sh, a, argc, argv);
	if (!strcmp(sub, "set-transaction-id")) {
		uint64_t old, new_id, now = 0;

		if (want_args(sh, argc, 4) || !app_need_pool(sh, false))
			return -EINVAL;
		if (app_parse_u64(argv[2], &old) || app_parse_u64(argv[3], &new_id)) {
			shell_puts(sh, "error: transaction ids are decimal numbers\n");
			return -EINVAL;
		}
		appliance_transaction_id(a, &now);
		rc = appliance_set_transaction_id(a, old, new_id);
		if (rc == -EINVAL) {
			shell_printf(sh,
				     "error: mismatched transaction id: the pool is at %" PRIu64
				     " (and NEW must differ from OLD)\n",
				     now);
			return rc;
		}
		if (rc)
			return app_error(sh, rc, "pool set-transaction-id");
		shell_printf(sh, "transaction id %" PRIu64 " -> %" PRIu64 "\n", old, new_id);
		if (appliance_state(a) != APPLIANCE_READY)
			shell_printf(sh, "warning: %s\n", appliance_problem(a));
		return 0;
	}
	if (!strcmp(sub, "reserve-metadata-snap") || !strcmp(sub, "release-metadata-snap")) {
		bool reserve = sub[1] == 'e' && sub[2] == 's';
		struct thin_pool_status st;

		if (want_args(sh, argc, 2) || !app_need_pool(sh, false))
			return -EINVAL;
		rc = appliance_pool_usable(a, true);
		if (rc)
			return app_error(sh, rc, "pool %s", sub);
		rc = reserve ? thin_pool_reserve_metadata_snap(appliance_pool(a))
			     : thin_pool_release_metadata_snap(appliance_pool(a));
		if (rc == -EBUSY && reserve) {
			shell_puts(sh, "error: a metadata snapshot is already held "
				       "(pool release-metadata-snap first)\n");
			return rc;
		}
		if (rc == -EINVAL && !reserve) {
			shell_puts(sh, "error: no metadata snapshot is held\n");
			return rc;
		}
		if (rc)
			return app_error(sh, rc, "pool %s", sub);
		if (!thin_pool_get_status(appliance_pool(a), &st) && st.held_root)
			shell_printf(sh, "held root: block %" PRIu64 " (thin_dump -m reads it)\n",
				     st.held_root);
		else
			shell_puts(sh, "held root released\n");
		return 0;
	}
	if (!strcmp(sub, "resize-data")) {
		struct thin_pool_status before, after;

		if (want_args(sh, argc, 2) || !app_need_pool(sh, false))
			return -EINVAL;
		rc = appliance_pool_usable(a, true);
		if (rc)
			return app_error(sh, rc, "pool resize-data");
		thin_pool_get_status(appliance_pool(a), &before);
		rc = appliance_resize_data(a);
		if (rc == -EINVAL) {
			shell_puts(sh,
				   "error: the data disk is smaller than the pool; shrinking is "
				   "not supported\n");
			return rc;
		}
		if (rc)
			return app_error(sh, rc, "pool resize-data");
		thin_pool_get_status(appliance_pool(a), &after);
		shell_printf(sh, "data blocks: %" PRIu64 " -> %" PRIu64 "\n", before.data_total,
			     after.data_total);
		return 0;
	}
	if (sub[0])
		shell_printf(sh, "error: unknown pool command '%s'\n", sub);
	shell_puts(sh, pool_usage);
	return -EINVAL;
}

const struct shell_cmd app_pool_cmds[] = {
	{ "pool", "format|status|commit|check|resize-data|set|set-transaction-id|...",
	  "the thin pool: format, status, commit, check, settings, transaction id, metadata "
	  "snapshot",
	  cmd_pool },
};
const size_t app_pool_ncmds = ARRAY_SIZE(app_pool_cmds);
