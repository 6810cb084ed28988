/* SPDX-License-Identifier: MIT */
/*
 * build/host/thinbox-delta [-m [BLOCK]] --thin1 A --thin2 B META: the differences between
 * the mappings of thin devices A and B of the pool on the metadata file META, in
 * thin_delta 0.9.0's format (without --verbose), through the core's thin_view_diff()
 * (docs/backup.md): the same lines, but only the paths to what differs are read. -m
 * compares them in the held root instead (as thin_delta --metadata-snap). --snap1 and
 * --snap2 are accepted as thin_delta's synonyms. Exit 0, or 1 with a message on stderr.
 */
#include "core/thin/thin_metadata.h"
#include "host/hostdev.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_name[] = { "same", "left_only", "right_only", "different" };

static int range(void *ctx, const struct thin_diff_range *r)
{
	FILE *out = ctx;

	fprintf(out, "    <%s begin=\"%" PRIu64 "\" length=\"%" PRIu64 "\"/>\n", kind_name[r->kind],
		r->begin, r->end - r->begin);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: thinbox-delta [-m [BLOCK]] --thin1 ID --thin2 ID METADATA\n");
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return s[0] >= '0' && s[0] <= '9' && !*end && !errno;
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	bool held = false, have1 = false, have2 = false;
	uint64_t held_block = 0, id1 = 0, id2 = 0;
	char why[256] = "";
	struct thin_md_open_opts o = { .read_only = true, .why = why, .why_len = sizeof(why) };
	struct thin_md_view v;
	struct blkdev *dev;
	struct thin_md *md;
	int r;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-m") || !strcmp(a, "--metadata-snap")) {
			held = true;
			if (i + 2 < argc && parse_u64(argv[i + 1], &held_block))
				i++;
		} else if ((!strcmp(a, "--thin1") || !strcmp(a, "--snap1")) && i + 1 < argc) {
			have1 = parse_u64(argv[++i], &id1);
			if (!have1) {
				usage();
				return 1;
			}
		} else if ((!strcmp(a, "--thin2") || !strcmp(a, "--snap2")) && i + 1 < argc) {
			have2 = parse_u64(argv[++i], &id2);
			if (!have2) {
				usage();
				return 1;
			}
		} else if (a[0] == '-' || path) {
			usage();
			return 1;
		} else {
			path = a;
		}
	}
	if (!path || !have1 || !have2) {
		usage();
		return 1;
	}
	r = filedisk_open(path, 4096, false, 0, &dev);
	if (r) {
		fprintf(stderr, "thinbox-delta: %s: %s\n", path, strerror(-r));
		return 1;
	}
	r = thin_md_open(dev, &o, &md);
	if (r) {
		fprintf(stderr, "thinbox-delta: %s: %s\n", path, why[0] ? why : strerror(-r));
		blkdev_destroy(dev);
		return 1;
	}
	r = held ? thin_md_view_held(md, held_block, &v) : thin_md_view_current(md, &v);
	if (r) {
		fprintf(stderr, "thinbox-delta: %s\n",
			r == -ENODATA  ? "no current metadata snap"
			: r == -EINVAL ? "metadata snapshot does not match that in superblock"
				       : strerror(-r));
		thin_md_close(md);
		blkdev_destroy(dev);
		return 1;
	}
	/* Both devices first: nothing is printed for a pair that cannot be compared. */
	for (int k = 0; k < 2; k++) {
		struct thin_dev_details det;
		uint64_t id = k ? id2 : id1;

		r = thin_view_get_details(&v, id, &det);
		if (r) {
			fprintf(stderr, "thinbox-delta: thin device %" PRIu64 ": %s\n", id,
				r == -ENODATA ? "no such device" : strerror(-r));
			thin_md_close(md);
			blkdev_destroy(dev);
			return 1;
		}
	}
	printf("<superblock uuid=\"\" time=\"%" PRIu32 "\" transaction=\"%" PRIu64
	       "\" data_block_size=\"%" PRIu32 "\" nr_data_blocks=\"%" PRIu64 "\">\n",
	       v.sb.time, v.sb.trans_id, v.sb.data_block_sectors, v.sb.nr_data_blocks);
	printf("  <diff left=\"%" PRIu64 "\" right=\"%" PRIu64 "\">\n", id1, id2);
	r = thin_view_diff(&v, id1, id2, 0, THIN_DIFF_WANT_SAME, range, stdout, NULL);
	printf("  </diff>\n</superblock>\n");
	if (r)
		fprintf(stderr, "thinbox-delta: metadata contains errors (%s)\n", strerror(-r));
	if (fflush(stdout))
		r = -EIO;
	thin_md_close(md);
	blkdev_destroy(dev);
	return r ? 1 : 0;
}
