/* SPDX-License-Identifier: MIT */
/*
 * build/host/thinbox-check [-q] [--clear-needs-check-flag] META: check the pool metadata on
 * the file META with the core checker (core/thin/thin_check.h), which verifies what
 * thin_check 0.9.0 verifies and also what it skips (data reference counts, mapped_blocks,
 * space-map totals, details/mapping agreement, times). Each problem is printed on its own
 * line on stdout, and so is each warning ("warning: ..."; space-map counters only, which
 * thin_check 0.9.0 does not look at and the pool corrects at its next commit); -q prints
 * nothing. Exit 0 when the pool is clean (warnings or not), 1 when problems were found
 * (thin_check's errors, fatal or not: leaks too), 2 when the check could not run. --clear-needs-check-flag clears NEEDS_CHECK
 * after a clean check (the only write this tool ever does).
 */
#include "core/thin/thin_check.h"
#include "core/thin/thin_metadata.h"
#include "host/hostdev.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static void print_line(void *ctx, const char *line)
{
	if (!*(bool *)ctx)
		printf("%s\n", line);
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	bool quiet = false, clear = false;
	struct thin_check_stats st;
	struct blkdev *dev;
	int r;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet"))
			quiet = true;
		else if (!strcmp(argv[i], "--clear-needs-check-flag"))
			clear = true;
		else if (argv[i][0] != '-' && !path)
			path = argv[i];
		else
			path = NULL, i = argc;
	}
	if (!path) {
		fprintf(stderr, "usage: thinbox-check [-q] [--clear-needs-check-flag] METADATA\n");
		return 2;
	}
	r = filedisk_open(path, 4096, false, 0, &dev);
	if (r) {
		fprintf(stderr, "thinbox-check: %s: %s\n", path, strerror(-r));
		return 2;
	}
	r = thin_check(dev, print_line, &quiet, &st);
	if (r && r != -EILSEQ) {
		fprintf(stderr, "thinbox-check: %s: check could not run: %s\n", path, strerror(-r));
		blkdev_destroy(dev);
		return 2;
	}
	if (!quiet)
		printf("%s: %" PRIu64 " problem(s), %" PRIu64 " warning(s); %" PRIu64
		       " devices, %" PRIu64 " mapping entries, metadata %" PRIu64 "/%" PRIu64
		       " blocks used, data %" PRIu64 "/%" PRIu64 "%s%s\n",
		       path, st.problems, st.warnings, st.devices, st.mappings, st.metadata_used,
		       st.metadata_blocks, st.data_used, st.data_blocks,
		       st.needs_check ? ", needs_check set" : "",
		       st.held_root ? ", metadata snapshot held" : "");
	if (!r && clear && st.needs_check) {
		struct thin_md_open_opts o = { 0 };
		struct thin_md *md;

		r = thin_md_open(dev, &o, &md);
		if (!r) {
			r = thin_md_clear_needs_check(md);
			thin_md_close(md);
		}
		if (r) {
			fprintf(stderr, "thinbox-check: cannot clear needs_check: %s\n",
				strerror(-r));
			blkdev_destroy(dev);
			return 2;
		}
	}
	blkdev_destroy(dev);
	return r ? 1 : 0;
}
