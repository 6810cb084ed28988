/* SPDX-License-Identifier: MIT */
/*
 * build/host/thinbox-dump [-m [BLOCK]] [-o FILE] META: print the pool on the metadata file
 * META in thin_dump 0.9.0's XML format, byte for byte (docs/dm-thin-format.md §8.4): devices in id
 * order, mappings in virtual-block order, runs of consecutive virtual and data blocks with
 * one time merged into range_mapping elements. -m dumps the held root instead (as
 * thin_dump --metadata-snap; BLOCK, if given, must be the held one). Reads only, through
 * the engine's read-only view API. Exit 0, or 1 with a message on stderr.
 */
#include "core/thin/thin_metadata.h"
#include "host/hostdev.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dumper {
	FILE *out;
	const struct thin_md_view *v;
	/* The pending run of mappings. */
	bool have;
	uint64_t vbegin, dbegin, len;
	uint32_t time;
};

static void flush_run(struct dumper *d)
{
	if (!d->have)
		return;
	if (d->len == 1)
		fprintf(d->out,
			"    <single_mapping origin_block=\"%" PRIu64 "\" data_block=\"%" PRIu64
			"\" time=\"%" PRIu32 "\"/>\n",
			d->vbegin, d->dbegin, d->time);
	else
		fprintf(d->out,
			"    <range_mapping origin_begin=\"%" PRIu64 "\" data_begin=\"%" PRIu64
			"\" length=\"%" PRIu64 "\" time=\"%" PRIu32 "\"/>\n",
			d->vbegin, d->dbegin, d->len, d->time);
	d->have = false;
}

static int mapping(void *ctx, uint64_t vblock, uint64_t data_block, uint32_t time)
{
	struct dumper *d = ctx;

	if (d->have && vblock == d->vbegin + d->len && data_block == d->dbegin + d->len &&
	    time == d->time) {
		d->len++;
		return 0;
	}
	flush_run(d);
	d->have = true;
	d->vbegin = vblock;
	d->dbegin = data_block;
	d->len = 1;
	d->time = time;
	return 0;
}

static int device(void *ctx, thin_id_t id, const struct thin_dev_details *det)
{
	struct dumper *d = ctx;
	int r;

	fprintf(
	    d->out,
	    "  <device dev_id=\"%" PRIu64 "\" mapped_blocks=\"%" PRIu64 "\" transaction=\"%" PRIu64
	    "\" creation_time=\"%" PRIu32 "\" snap_time=\"%" PRIu32 "\">\n",
	    id, det->mapped_blocks, det->transaction_id, det->creation_time, det->snapshotted_time);
	r = thin_view_for_each_mapping(d->v, id, mapping, d);
	flush_run(d);
	fprintf(d->out, "  </device>\n");
	return r;
}

static void usage(void)
{
	fprintf(stderr, "usage: thinbox-dump [-m [BLOCK]] [-o FILE] METADATA\n");
}

int main(int argc, char **argv)
{
	const char *path = NULL, *out_path = NULL;
	bool held = false;
	uint64_t held_block = 0;
	char why[256] = "";
	struct thin_md_open_opts o = { .read_only = true, .why = why, .why_len = sizeof(why) };
	struct thin_md_view v;
	struct dumper d = { 0 };
	struct blkdev *dev;
	struct thin_md *md;
	int r;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--metadata-snap")) {
			held = true;
			if (i + 1 < argc && argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9' &&
			    i + 2 < argc) {
				char *end;

				errno = 0;
				held_block = strtoull(argv[++i], &end, 10);
				if (*end || errno) {
					usage();
					return 1;
				}
			}
		} else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
			out_path = argv[++i];
		} else if (argv[i][0] == '-' || path) {
			usage();
			return 1;
		} else {
			path = argv[i];
		}
	}
	if (!path) {
		usage();
		return 1;
	}
	r = filedisk_open(path, 4096, false, 0, &dev);
	if (r) {
		fprintf(stderr, "thinbox-dump: %s: %s\n", path, strerror(-r));
		return 1;
	}
	r = thin_md_open(dev, &o, &md);
	if (r) {
		fprintf(stderr, "thinbox-dump: %s: %s\n", path, why[0] ? why : strerror(-r));
		blkdev_destroy(dev);
		return 1;
	}
	r = held ? thin_md_view_held(md, held_block, &v) : thin_md_view_current(md, &v);
	if (r) {
		fprintf(stderr, "thinbox-dump: %s\n",
			r == -ENODATA  ? "no current metadata snap"
			: r == -EINVAL ? "metadata snapshot does not match that in superblock"
				       : strerror(-r));
		thin_md_close(md);
		blkdev_destroy(dev);
		return 1;
	}
	d.out = out_path ? fopen(out_path, "w") : stdout;
	if (!d.out) {
		fprintf(stderr, "thinbox-dump: %s: %s\n", out_path, strerror(errno));
		thin_md_close(md);
		blkdev_destroy(dev);
		return 1;
	}
	d.v = &v;
	fprintf(d.out,
		"<superblock uuid=\"\" time=\"%" PRIu32 "\" transaction=\"%" PRIu64
		"\" flags=\"%" PRIu32 "\" version=\"%" PRIu32 "\" data_block_size=\"%" PRIu32
		"\" nr_data_blocks=\"%" PRIu64 "\">\n",
		v.sb.time, v.sb.trans_id, v.sb.flags, v.sb.version, v.sb.data_block_sectors,
		v.sb.nr_data_blocks);
	r = thin_view_for_each_device(&v, device, &d);
	fprintf(d.out, "</superblock>\n");
	if (r)
		fprintf(stderr, "thinbox-dump: metadata contains errors (%s)\n", strerror(-r));
	if (d.out != stdout && fclose(d.out))
		r = -errno;
	else if (d.out == stdout && fflush(stdout))
		r = -EIO;
	thin_md_close(md);
	blkdev_destroy(dev);
	return r ? 1 : 0;
}
