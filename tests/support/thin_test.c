/* SPDX-License-Identifier: MIT */
/* Helpers for the thin-metadata tests (tests/support/thin_test.h). */
#include "tests/support/thin_test.h"

#include <errno.h>

int md_open(struct blkdev *dev, bool format, uint64_t data_blocks, struct thin_md **md)
{
	char why[200] = "";
	struct thin_md_open_opts o = { .data_block_sectors = format ? 128 : 0,
				       .format = format,
				       .data_dev_blocks = data_blocks,
				       .cache_blocks = 256,
				       .why = why,
				       .why_len = sizeof(why) };
	int r = thin_md_open(dev, &o, md);

	if (r && getenv("THIN_DEBUG"))
		printf("  open: %s (%d)\n", why, r);
	return r;
}

void print_problem(void *ctx, const char *line)
{
	unsigned *n = ctx;

	if ((*n)++ < 10)
		printf("  check: %s\n", line);
}

/* The core checker on @dev (whatever is on the device: commit first). */
int check_dev(struct blkdev *dev)
{
	unsigned n = 0;
	int r = thin_check(dev, print_problem, &n, NULL);

	if (r)
		printf("  check: %d (%u problems)\n", r, n);
	return r;
}

/*----------------------------------------------------------------*/
/* State hash: superblock view, details and every mapping. */

struct hasher {
	uint64_t h;
	const struct thin_md_view *v;
};

static void hash_u64(struct hasher *h, uint64_t x)
{
	for (int i = 0; i < 8; i++) {
		h->h ^= (x >> (8 * i)) & 0xff;
		h->h *= 0x100000001b3ull;
	}
}

static int hash_map(void *ctx, uint64_t vb, uint64_t db, uint32_t time)
{
	struct hasher *h = ctx;

	hash_u64(h, vb);
	hash_u64(h, db);
	hash_u64(h, time);
	return 0;
}

static int hash_dev(void *ctx, thin_id_t id, const struct thin_dev_details *d)
{
	struct hasher *h = ctx;

	hash_u64(h, id);
	hash_u64(h, d->mapped_blocks);
	hash_u64(h, d->transaction_id);
	hash_u64(h, d->creation_time);
	hash_u64(h, d->snapshotted_time);
	return thin_view_for_each_mapping(h->v, id, hash_map, h);
}

int md_hash(struct thin_md *md, uint64_t *out)
{
	struct thin_md_view v;
	struct hasher h = { 0xcbf29ce484222325ull, &v };
	uint64_t x;
	int r = thin_md_view_current(md, &v);

	if (r)
		return r;
	hash_u64(&h, v.sb.time);
	hash_u64(&h, v.sb.trans_id);
	hash_u64(&h, v.sb.flags);
	hash_u64(&h, v.sb.nr_data_blocks);
	hash_u64(&h, v.sb.held_root != 0);
	r = thin_md_get_free_data_blocks(md, &x);
	hash_u64(&h, x);
	if (!r)
		r = thin_view_for_each_device(&v, hash_dev, &h);
	*out = h.h;
	return r;
}

/*----------------------------------------------------------------*/
/* thin-provisioning-tools */

/* Copy @dev into a file (the tools read files). */
int dev_to_file(struct blkdev *dev, const char *path)
{
	FILE *f = fopen(path, "w");
	uint8_t *buf = malloc(dev->block_size);
	int r = f && buf ? 0 : -EIO;

	for (uint64_t b = 0; b < dev->nr_blocks && !r; b++) {
		r = blkdev_read(dev, b, 1, buf);
		if (!r && fwrite(buf, dev->block_size, 1, f) != 1)
			r = -EIO;
	}
	if (f && fclose(f))
		r = -EIO;
	free(buf);
	return r;
}

/*
 * thin_check on @path: exit 0 and nothing on stderr but its four phase lines (no
 * warnings, no leaks). Returns 0 when so.
 */
int tpt_check(const char *path, const char *extra)
{
	char cmd[1024];
	int r;

	snprintf(cmd, sizeof(cmd),
		 "PATH=$PATH:/usr/sbin:/sbin; out=$(thin_check %s '%s' 2>&1 >/dev/null); rc=$?; "
		 "bad=$(printf '%%s\\n' \"$out\" | grep -v -e '^examining superblock$' "
		 "-e '^examining devices tree$' -e '^examining mapping tree$' "
		 "-e '^checking space map counts$' -e '^$'); "
		 "if [ $rc -ne 0 ] || [ -n \"$bad\" ]; then echo \"  thin_check rc=$rc: $out\"; "
		 "exit 1; fi",
		 extra ? extra : "", path);
	r = system(cmd);
	return r ? -EILSEQ : 0;
}

/* thin_dump of @path (with @extra options) equals thinbox-dump's (the same options). */
int tpt_dump_matches(const char *path, const char *extra)
{
	char cmd[1400];

	snprintf(cmd, sizeof(cmd),
		 "PATH=$PATH:/usr/sbin:/sbin; a=$(mktemp); b=$(mktemp); "
		 "thin_dump %s '%s' >$a 2>&1; ra=$?; build/host/thinbox-dump %s '%s' >$b 2>&1; "
		 "rb=$?; if [ $ra -ne 0 ] || [ $rb -ne 0 ] || ! cmp -s $a $b; then "
		 "echo \"  dump differs (thin_dump $ra, thinbox-dump $rb)\"; diff $a $b | head -5; "
		 "rm -f $a $b; exit 1; fi; rm -f $a $b",
		 extra ? extra : "", path, extra ? extra : "", path);
	return system(cmd) ? -EILSEQ : 0;
}
