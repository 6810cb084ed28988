/* SPDX-License-Identifier: MIT */
/*
 * Compatibility with thin-provisioning-tools 0.9.0 (the oracle, docs/dm-thin-format.md §8.6):
 *  - thin_restore builds an image from generated XML (tests/compat/gen_xml.py: many
 *    devices, ranges and singles, shared data blocks, varied times, 100,000+ mappings);
 *    our engine opens it and every lookup, every device's details and mapped count match
 *    the generator's list; after writes, snapshots, deletes and a commit thin_check still
 *    passes and thin_dump equals thinbox-dump;
 *  - images our engine writes pass thin_check with nothing but its phase lines on stderr,
 *    and thin_dump of them equals thinbox-dump;
 *  - a held root dumps with thin_dump --metadata-snap and shows the pool as it was when
 *    held.
 */
#include "tests/support/thin_test.h"

#include "core/thin/thin_check.h"
#include "core/thin/thin_pool.h"

#include <stdarg.h>
#include <unistd.h>

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int run(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

struct dev_info {
	uint64_t id, trans;
	uint32_t ctime, stime;
	uint64_t count;
};

/*
 * thin_restore counts only the entries in range as free in a partial last bitmap: a full
 * pool of 100 blocks says 0 free there. Growing the data device adds free entries to that
 * same bitmap, and allocation must find them (it skipped them, the pool saying ENOSPC with
 * 100 free blocks).
 */
TEST(grown_restored_full_pool_allocates_the_new_blocks)
{
	const char *dir = test_tmpdir();
	char xml[512], img[512];
	struct blkdev *dev;
	struct thin_md *md;
	struct thin_dev *td;
	uint64_t nr_free, b;
	FILE *f;

	snprintf(xml, sizeof(xml), "%s/full.xml", dir);
	snprintf(img, sizeof(img), "%s/full.bin", dir);
	f = fopen(xml, "w");
	if (!ok(f))
		return;
	fprintf(f, "<superblock uuid=\"\" time=\"1\" transaction=\"1\" flags=\"0\" version=\"2\" "
		   "data_block_size=\"128\" nr_data_blocks=\"100\">\n"
		   "  <device dev_id=\"1\" mapped_blocks=\"100\" transaction=\"0\" "
		   "creation_time=\"0\" snap_time=\"1\">\n"
		   "    <range_mapping origin_begin=\"0\" data_begin=\"0\" length=\"100\" "
		   "time=\"0\"/>\n"
		   "  </device>\n"
		   "</superblock>\n");
	fclose(f);
	if (!ok_eq(run("rm -f %s && truncate -s 8M %s && PATH=$PATH:/usr/sbin thin_restore -q "
		       "-i %s -o %s",
		       img, img, xml, img),
		   0) ||
	    !ok_eq(filedisk_open(img, 4096, false, 0, &dev), 0))
		return;
	if (ok_eq(md_open(dev, false, 0, &md), 0)) {
		ok_eq(thin_md_get_free_data_blocks(md, &nr_free), 0);
		ok_eq(nr_free, 0);
		ok_eq(thin_md_alloc_data_block(md, &b), -ENOSPC);
		ok_eq(thin_md_resize_data_dev(md, 200), 0);
		ok_eq(thin_md_open_thin(md, 1, &td), 0);
		for (unsigned i = 0; i < 100; i++) {
			if (!ok_eq(thin_md_alloc_data_block(md, &b), 0))
				break;
			ok(b >= 100 && b < 200);
			ok_eq(thin_insert_block(td, 100 + i, b), 0);
		}
		ok_eq(thin_md_alloc_data_block(md, &b), -ENOSPC);
		thin_md_close_thin(td);
		ok_eq(thin_md_commit(md), 0);
		ok_eq(thin_md_close(md), 0);
		ok_eq(check_dev(dev), 0);
		ok_eq(tpt_check(img, NULL), 0);
	}
	blkdev_destroy(dev);
}

TEST(thin_restore_image_lookups_then_changes)
{
	const char *dir = test_tmpdir();
	char xml[512], lk[512], img[512];
	struct dev_info *devs = calloc(100, sizeof(*devs));
	unsigned ndev = 0, bad = 0;
	uint64_t n = 0, seed = test_seed() % 100000;
	struct blkdev *dev;
	struct thin_md *md;
	FILE *f;
	char tag[8];

	snprintf(xml, sizeof(xml), "%s/gen.xml", dir);
	snprintf(lk, sizeof(lk), "%s/gen.lookups", dir);
	snprintf(img, sizeof(img), "%s/restored.bin", dir);
	if (!ok(devs) ||
	    !ok_eq(run("python3 tests/compat/gen_xml.py %llu 40 110000 --lookups %s >%s",
		       (unsigned long long)seed, lk, xml),
		   0) ||
	    !ok_eq(run("rm -f %s && truncate -s 96M %s && PATH=$PATH:/usr/sbin thin_restore -q "
		       "-i %s -o %s",
		       img, img, xml, img),
		   0))
		return;
	/* Reading: thinbox-dump equals thin_dump byte for byte. */
	ok_eq(tpt_dump_matches(img, NULL), 0);
	if (!ok_eq(filedisk_open(img, 4096, false, 0, &dev), 0) ||
	    !ok_eq(md_open(dev, false, 0, &md), 0))
		return;
	/* Every lookup, as the generator wrote it. */
	f = fopen(lk, "r");
	if (!ok(f))
		return;
	{
		struct thin_dev *td = NULL;
		struct dev_info *cur = NULL;

		while (fscanf(f, "%7s", tag) == 1) {
			unsigned long long a, b, c, d;

			if (!strcmp(tag, "D")) {
				if (fscanf(f, "%llu %llu %llu %llu", &a, &b, &c, &d) != 4 ||
				    ndev == 100)
					break;
				thin_md_close_thin(td);
				td = NULL;
				cur = &devs[ndev++];
				*cur = (struct dev_info){ a, b, (uint32_t)c, (uint32_t)d, 0 };
				if (!ok_eq(thin_md_open_thin(md, a, &td), 0))
					break;
				continue;
			}
			a = strtoull(tag, NULL, 10);
			if (fscanf(f, "%llu %llu %llu", &b, &c, &d) != 3 || !td)
				break;
			{
				struct thin_lookup_result lr;
				int r = thin_find_block(td, b, true, &lr);

				if (r || lr.block != c || lr.shared != (cur->stime > d)) {
					if (bad++ < 5)
						printf("  dev %llu block %llu: r %d -> %llu, "
						       "expected %llu\n",
						       a, b, r, (unsigned long long)lr.block, c);
				}
				cur->count++;
				n++;
			}
		}
		thin_md_close_thin(td);
	}
	fclose(f);
	ok_eq(bad, 0);
	ok(n >= 100000);
	printf("  %llu lookups on %u devices matched\n", (unsigned long long)n, ndev);
	/* Details and mapped counts. */
	{
		struct thin_md_view v;

		ok_eq(thin_md_view_current(md, &v), 0);
		for (unsigned i = 0; i < ndev; i++) {
			struct thin_dev_details d;

			if (!ok_eq(thin_view_get_details(&v, devs[i].id, &d), 0))
				break;
			ok_eq(d.mapped_blocks, devs[i].count);
			ok_eq(d.transaction_id, devs[i].trans);
			ok_eq(d.creation_time, devs[i].ctime);
			ok_eq(d.snapshotted_time, devs[i].stime);
		}
	}
	/* Changes: writes, snapshots of restored devices, deletes, range removal. The generated
	 * pool may be nearly full: grow the data device first so the 3,000 writes fit (which
	 * also exercises growing a restored pool). */
	{
		uint64_t rng = seed, nr_data;
		struct thin_dev *td;

		ok_eq(thin_md_get_data_dev_size(md, &nr_data), 0);
		ok_eq(thin_md_resize_data_dev(md, nr_data + 4000), 0);

		for (unsigned i = 0; i < 10; i++) {
			uint64_t id = devs[test_rand(&rng) % ndev].id;

			if (thin_md_open_thin(md, id, &td))
				continue;
			for (unsigned k = 0; k < 300; k++) {
				uint64_t b;

				if (!ok_eq(thin_md_alloc_data_block(md, &b), 0))
					break;
				ok_eq(thin_insert_block(td, test_rand(&rng) % 200000, b), 0);
			}
			ok_eq(thin_remove_range(td, 0, test_rand(&rng) % 5000), 0);
			thin_md_close_thin(td);
		}
		ok_eq(thin_md_create_snap(md, 20000, devs[0].id), 0);
		ok_eq(thin_md_create_snap(md, 20001, 20000), 0);
		ok_eq(thin_md_delete_thin(md, devs[1].id), 0);
		ok_eq(thin_md_delete_thin(md, devs[0].id), 0);
		if (ok_eq(thin_md_open_thin(md, 20001, &td), 0)) {
			ok_eq(thin_remove_range(td, 0, 1000), 0);
			thin_md_close_thin(td);
		}
		ok_eq(thin_md_commit(md), 0);
	}
	ok_eq(thin_md_close(md), 0);
	blkdev_destroy(dev);
	ok_eq(tpt_check(img, NULL), 0);
	ok_eq(tpt_dump_matches(img, NULL), 0);
	free(devs);
}

TEST(our_images_pass_thin_check)
{
	char img[512];
	struct blkdev *dev;
	struct thin_md *md;
	uint64_t rng = test_seed();
	unsigned created = 0;

	snprintf(img, sizeof(img), "%s/ours.bin", test_tmpdir());
	if (!ok_eq(filedisk_open(img, 4096, true, 4096, &dev), 0) ||
	    !ok_eq(md_open(dev, true, 200000, &md), 0))
		return;
	ok_eq(thin_md_set_transaction_id(md, 0, 1), 0);
	for (unsigned t = 0; t < 25 && !test_failed(); t++) {
		for (unsigned op = 0; op < 40; op++) {
			uint64_t id = test_rand(&rng) % 12, o = test_rand(&rng) % 12;
			unsigned x = (unsigned)(test_rand(&rng) % 10);
			struct thin_dev *td;

			if (x < 2) {
				if (!thin_md_create_thin(md, id))
					created++;
			} else if (x < 4) {
				if (!thin_md_create_snap(md, id, o))
					created++;
			} else if (x < 5) {
				thin_md_delete_thin(md, id);
			} else if (!thin_md_open_thin(md, id, &td)) {
				uint64_t base = test_rand(&rng) % 5000;

				for (unsigned k = 0; k < 60; k++) {
					uint64_t b;

					if (!ok_eq(thin_md_alloc_data_block(md, &b), 0) ||
					    !ok_eq(thin_insert_block(td, base + k * 3, b), 0))
						break;
				}
				if (x == 9)
					ok_eq(thin_remove_range(td, base, base + 90), 0);
				thin_md_close_thin(td);
			}
		}
		ok_eq(thin_md_set_transaction_id(md, t + 1, t + 2), 0);
		ok_eq(thin_md_commit(md), 0);
	}
	ok_eq(check_dev(dev), 0);
	ok_eq(thin_md_close(md), 0);
	blkdev_destroy(dev);
	printf("  %u devices created\n", created);
	ok_eq(tpt_check(img, NULL), 0);
	ok_eq(tpt_dump_matches(img, NULL), 0);
}

TEST(held_root_dumps_as_it_was)
{
	const char *dir = test_tmpdir();
	char img[512], before[512];
	struct blkdev *dev;
	struct thin_md *md;
	struct thin_dev *td;

	snprintf(img, sizeof(img), "%s/held.bin", dir);
	snprintf(before, sizeof(before), "%s/before.xml", dir);
	if (!ok_eq(filedisk_open(img, 4096, true, 2048, &dev), 0) ||
	    !ok_eq(md_open(dev, true, 50000, &md), 0))
		return;
	ok_eq(thin_md_create_thin(md, 1), 0);
	ok_eq(thin_md_open_thin(md, 1, &td), 0);
	for (unsigned k = 0; k < 2000; k++) {
		uint64_t b;

		ok_eq(thin_md_alloc_data_block(md, &b), 0);
		ok_eq(thin_insert_block(td, k * 2, b), 0);
	}
	ok_eq(thin_md_create_snap(md, 2, 1), 0);
	ok_eq(thin_md_set_transaction_id(md, 0, 7), 0);
	ok_eq(thin_md_commit(md), 0);
	/* The pool now, as thin_dump shows it but with nr_data_blocks 0 (a held copy). */
	ok_eq(run("build/host/thinbox-dump %s | sed 's/nr_data_blocks=\"[0-9]*\"/"
		  "nr_data_blocks=\"0\"/' >%s",
		  img, before),
	      0);
	ok_eq(thin_md_reserve_metadata_snap(md), 0);
	/* Change everything: remove, overwrite, new devices, delete the snapshot. */
	ok_eq(thin_remove_range(td, 0, 1000), 0);
	for (unsigned k = 0; k < 500; k++) {
		uint64_t b;

		ok_eq(thin_md_alloc_data_block(md, &b), 0);
		ok_eq(thin_insert_block(td, k * 2 + 1, b), 0);
	}
	thin_md_close_thin(td);
	ok_eq(thin_md_delete_thin(md, 2), 0);
	ok_eq(thin_md_create_thin(md, 3), 0);
	ok_eq(thin_md_set_transaction_id(md, 7, 8), 0);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(check_dev(dev), 0);
	ok_eq(thin_md_close(md), 0);
	blkdev_destroy(dev);
	ok_eq(tpt_check(img, NULL), 0);
	ok_eq(tpt_dump_matches(img, NULL), 0);
	ok_eq(tpt_dump_matches(img, "-m"), 0);
	ok_eq(run("PATH=$PATH:/usr/sbin thin_dump -m %s | cmp -s - %s", img, before), 0);
	/* Released, everything only the held copy kept is freed: still clean. */
	if (!ok_eq(filedisk_open(img, 4096, false, 0, &dev), 0) ||
	    !ok_eq(md_open(dev, false, 0, &md), 0))
		return;
	ok_eq(thin_md_release_metadata_snap(md), 0);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(check_dev(dev), 0);
	ok_eq(thin_md_close(md), 0);
	blkdev_destroy(dev);
	ok_eq(tpt_check(img, NULL), 0);
	ok(run("PATH=$PATH:/usr/sbin thin_dump -m %s >/dev/null 2>&1", img) != 0);
}

static unsigned warning_lines, problem_lines;

static void count_kinds(void *ctx, const char *line)
{
	if (!strncmp(line, "warning: ", 9))
		warning_lines++;
	else
		problem_lines++;
	if (getenv("THIN_DEBUG"))
		printf("  check: %s\n", line);
}

/*
 * Pools thin_restore 0.9.0 writes carry space-map counters that disagree with the bitmaps
 * (metadata nr_allocated, an index entry's nr_free and none_free_before: one block counted
 * allocated that no bitmap has). thin_check passes them; so do thinbox-check (exit 0,
 * warnings printed) and the core checker (0, warnings only). The pool opens read-write
 * in the host build, and after its first commit the checker prints no warning and
 * thin_check still passes.
 */
TEST(thin_restore_counters_are_warnings_then_corrected)
{
	const char *dir = test_tmpdir();
	char xml[512], img[512], dimg[512], out[600];
	struct thin_check_stats st;
	struct blkdev *meta, *data;
	struct thin_pool *pool;
	struct thin_volume *vol;
	struct thin_pool_opts o;
	uint8_t *buf = calloc(1, 65536);
	int r;

	snprintf(xml, sizeof(xml), "%s/w.xml", dir);
	snprintf(img, sizeof(img), "%s/w.bin", dir);
	snprintf(dimg, sizeof(dimg), "%s/w.data", dir);
	snprintf(out, sizeof(out), "%s/w.out", dir);
	if (!ok_eq(run("python3 tests/compat/gen_xml.py 2 7 3000 >%s", xml), 0) ||
	    !ok_eq(run("rm -f %s && truncate -s 64M %s && PATH=$PATH:/usr/sbin thin_restore -q "
		       "-i %s -o %s",
		       img, img, xml, img),
		   0))
		return;
	ok_eq(tpt_check(img, NULL), 0);
	/* thinbox-check: exit 0, the warnings printed, no problem. */
	ok_eq(run("build/host/thinbox-check %s >%s", img, out), 0);
	ok_eq(run("grep -q '^warning: metadata space map: root says' %s", out), 0);
	ok_eq(run("grep -q ' 0 problem(s), 3 warning(s);' %s", out), 0);
	if (!ok_eq(filedisk_open(img, 4096, false, 0, &meta), 0))
		return;
	warning_lines = problem_lines = 0;
	ok_eq(thin_check(meta, count_kinds, NULL, &st), 0);
	ok(warning_lines > 0);
	ok_eq(problem_lines, 0);
	ok_eq(st.warnings, warning_lines);
	ok_eq(st.problems, 0);
	/* The pool opens (sparse data file, 64 KiB blocks as gen_xml writes) and commits. */
	if (!ok_eq(filedisk_open(dimg, 512, true, st.data_blocks * 128, &data), 0))
		return;
	thin_pool_default_opts(&o);
	r = thin_pool_open(meta, data, &o, NULL, 0, &pool);
	if (ok_eq(r, 0)) {
		/* `pool check` before the commit: passes, the warnings said. */
		warning_lines = problem_lines = 0;
		ok_eq(thin_pool_check(pool, NULL, count_kinds, NULL), 0);
		ok(warning_lines > 0);
		ok_eq(problem_lines, 0);
		ok_eq(thin_pool_create_thin(pool, 4999999), 0);
		ok_eq(thin_volume_open(pool, 4999999, 65536, false, &vol), 0);
		ok_eq(blkdev_write(thin_volume_blkdev(vol), 0, 128, buf), 0);
		ok_eq(blkdev_flush(thin_volume_blkdev(vol)), 0);
		thin_volume_close(vol);
		ok_eq(thin_pool_close(pool), 0);
	}
	warning_lines = problem_lines = 0;
	ok_eq(thin_check(meta, count_kinds, NULL, &st), 0);
	ok_eq(warning_lines, 0);
	ok_eq(problem_lines, 0);
	blkdev_destroy(data);
	blkdev_destroy(meta);
	ok_eq(run("build/host/thinbox-check %s >%s", img, out), 0);
	ok_eq(run("grep -q ' 0 problem(s), 0 warning(s);' %s", out), 0);
	ok_eq(run("! grep -q '^warning' %s", out), 0);
	ok_eq(tpt_check(img, NULL), 0);
	unlink(dimg);
	free(buf);
}
