/* SPDX-License-Identifier: MIT */
/*
 * thin_view_diff() (core/pdata/btree_diff.c underneath):
 *  - against a brute-force model (a lookup per virtual block in both devices) on random
 *    workloads: snapshots of snapshots, unrelated volumes, overwrites, discards; every pair
 *    of devices, with and without SAME ranges, from block 0 and from one further on (the
 *    descent to it reads one path), on the live transaction, the committed state
 *    and a held metadata snapshot (each checked against lookups in that same view);
 *  - against thin_delta on the same metadata image (its ranges, line for line);
 *  - cost: a 200,000-block volume and a snapshot of it with 10 blocks changed is diffed
 *    reading a few dozen nodes, not the whole tree (which WANT_SAME must read);
 *  - the callback's non-zero return stops it, an absent device is -ENODATA.
 */
#include "tests/support/thin_test.h"

#include "core/base/util.h"

#define MAXDEV 12

static const char *kind_name[] = { "same", "left_only", "right_only", "different" };

struct collect {
	uint8_t *kinds; /* per vblock: 0 = no range, else kind + 1 */
	uint64_t vspace;
	uint64_t last_end;
	bool have_last;
	enum thin_diff_kind last_kind;
	unsigned bad;
	FILE *out; /* thin_delta-style lines, optional */
};

static int collect_fn(void *ctx, const struct thin_diff_range *r)
{
	struct collect *c = ctx;

	if (r->end <= r->begin || (c->have_last && r->begin < c->last_end) ||
	    (c->have_last && r->begin == c->last_end && r->kind == c->last_kind) ||
	    r->end > c->vspace) {
		if (c->bad++ < 5)
			printf("  bad range %s [%llu, %llu) after %llu\n", kind_name[r->kind],
			       (unsigned long long)r->begin, (unsigned long long)r->end,
			       (unsigned long long)c->last_end);
		return 0;
	}
	for (uint64_t b = r->begin; b < r->end; b++)
		c->kinds[b] = (uint8_t)(r->kind + 1);
	c->have_last = true;
	c->last_end = r->end;
	c->last_kind = r->kind;
	if (c->out)
		fprintf(c->out, "    <%s begin=\"%llu\" length=\"%llu\"/>\n", kind_name[r->kind],
			(unsigned long long)r->begin, (unsigned long long)(r->end - r->begin));
	return 0;
}

#define UNMAPPED UINT64_MAX

/* Device @id's data block for every virtual block, one lookup each (UNMAPPED: none). */
static int lookups(const struct thin_md_view *v, thin_id_t id, uint64_t vspace, uint64_t *map)
{
	for (uint64_t b = 0; b < vspace; b++) {
		uint32_t t;
		int r = thin_view_lookup(v, id, b, &map[b], &t);

		if (r == -ENODATA)
			map[b] = UNMAPPED;
		else if (r)
			return r;
	}
	return 0;
}

/* The expected kind of every block from two devices' lookups; 0 where neither maps it. */
static void expect(const uint64_t *l, const uint64_t *r, uint64_t vspace, bool same, uint8_t *kinds)
{
	for (uint64_t b = 0; b < vspace; b++) {
		if (l[b] == UNMAPPED && r[b] == UNMAPPED)
			kinds[b] = 0;
		else if (r[b] == UNMAPPED)
			kinds[b] = THIN_DIFF_LEFT_ONLY + 1;
		else if (l[b] == UNMAPPED)
			kinds[b] = THIN_DIFF_RIGHT_ONLY + 1;
		else if (l[b] != r[b])
			kinds[b] = THIN_DIFF_DIFFERENT + 1;
		else
			kinds[b] = same ? THIN_DIFF_SAME + 1 : 0;
	}
}

static int brute(const struct thin_md_view *v, thin_id_t l, thin_id_t r, uint64_t vspace, bool same,
		 uint8_t *kinds)
{
	uint64_t *ml = malloc(vspace * 8), *mr = malloc(vspace * 8);
	int rc = ml && mr ? 0 : -ENOMEM;

	if (!rc)
		rc = lookups(v, l, vspace, ml);
	if (!rc)
		rc = lookups(v, r, vspace, mr);
	if (!rc)
		expect(ml, mr, vspace, same, kinds);
	free(ml);
	free(mr);
	return rc;
}

/* Diff every pair of @devs in @v both ways, with and without SAME, against brute(). */
static void check_view(const struct thin_md_view *v, const thin_id_t *devs, unsigned n,
		       uint64_t vspace, const char *what)
{
	uint8_t *want = malloc(vspace), *got = malloc(vspace);
	uint64_t *maps = malloc((size_t)n * vspace * 8);
	unsigned mismatches = 0;

	if (!ok(want && got && maps))
		goto out;
	for (unsigned i = 0; i < n; i++)
		if (!ok_eq(lookups(v, devs[i], vspace, maps + i * vspace), 0))
			goto out;
	for (unsigned i = 0; i < n; i++)
		for (unsigned j = 0; j < n; j++)
			for (int same = 0; same < 3; same++) {
				/* same == 2: no SAME ranges, from a block past the start. */
				struct collect c = { .kinds = got, .vspace = vspace };
				struct thin_diff_stats st;
				uint64_t from = same == 2 ? (i * 7919 + j * 104729) % vspace : 0;

				memset(got, 0, vspace);
				expect(maps + i * vspace, maps + j * vspace, vspace, same == 1,
				       want);
				if (!ok_eq(thin_view_diff(v, devs[i], devs[j], from,
							  same == 1 ? THIN_DIFF_WANT_SAME : 0,
							  collect_fn, &c, &st),
					   0))
					goto out;
				memset(want, 0, from);
				ok_eq(c.bad, 0);
				if (memcmp(want, got, vspace)) {
					for (uint64_t b = 0; b < vspace; b++)
						if (want[b] != got[b] && mismatches++ < 5)
							printf("  %s: diff %llu %llu same=%d block "
							       "%llu: got %d want %d\n",
							       what, (unsigned long long)devs[i],
							       (unsigned long long)devs[j], same,
							       (unsigned long long)b, got[b],
							       want[b]);
					fail("%s: diff differs from lookups", what);
				}
				if (i == j && !same)
					ok_eq(st.ranges, 0);
			}
out:
	free(want);
	free(got);
	free(maps);
}

struct workload {
	struct blkdev *dev;
	struct thin_md *md;
	thin_id_t devs[MAXDEV];
	unsigned n;
	uint64_t vspace;
	uint64_t rng;
};

/* Overwrite, discard and map anew some random blocks of @id. */
static void churn(struct workload *w, thin_id_t id, unsigned ops)
{
	struct thin_dev *td;

	if (!ok_eq(thin_md_open_thin(w->md, id, &td), 0))
		return;
	for (unsigned k = 0; k < ops && !test_failed(); k++) {
		uint64_t v = test_rand(&w->rng) % w->vspace, d;
		unsigned op = (unsigned)(test_rand(&w->rng) % 8);

		if (op < 2) {
			uint64_t len = 1 + test_rand(&w->rng) % 40;

			ok_eq(thin_remove_range(td, v, MIN(v + len, w->vspace)), 0);
		} else {
			uint64_t len = 1 + test_rand(&w->rng) % (op == 7 ? 60 : 4);

			for (uint64_t b = v; b < MIN(v + len, w->vspace); b++) {
				if (!ok_eq(thin_md_alloc_data_block(w->md, &d), 0))
					break;
				ok_eq(thin_insert_block(td, b, d), 0);
			}
		}
	}
	thin_md_close_thin(td);
}

/* An origin, snapshots of it and of snapshots, an unrelated volume, each changed. */
static bool build(struct workload *w, uint64_t vspace, unsigned ops)
{
	memset(w, 0, sizeof(*w));
	w->rng = test_seed();
	w->vspace = vspace;
	if (!ok_eq(memdisk_create(16384, 4096, &w->dev), 0) ||
	    !ok_eq(md_open(w->dev, true, 1000000, &w->md), 0))
		return false;
	ok_eq(thin_md_create_thin(w->md, 1), 0);
	w->devs[w->n++] = 1;
	churn(w, 1, ops * 3);
	ok_eq(thin_md_create_thin(w->md, 2), 0); /* unrelated */
	w->devs[w->n++] = 2;
	churn(w, 2, ops);
	for (unsigned id = 3; id < 9 && !test_failed(); id++) {
		/* Snapshot the origin or any earlier snapshot, then change one of them. */
		thin_id_t from = id == 3 ? 1 : w->devs[test_rand(&w->rng) % w->n];

		ok_eq(thin_md_create_snap(w->md, id, from), 0);
		w->devs[w->n++] = id;
		churn(w, test_rand(&w->rng) % 2 ? id : from, ops / 4 + 1);
		if (id % 3 == 0)
			ok_eq(thin_md_commit(w->md), 0);
	}
	return !test_failed();
}

static void done(struct workload *w)
{
	if (w->md)
		ok_eq(thin_md_close(w->md), 0);
	blkdev_destroy(w->dev);
}

TEST(diff_matches_lookups_on_random_workloads)
{
	static const struct {
		uint64_t vspace;
		unsigned ops;
	} cases[] = { { 64, 20 }, { 3000, 200 }, { 50000, 800 } };

	for (unsigned c = 0; c < sizeof(cases) / sizeof(cases[0]) && !test_failed(); c++) {
		struct workload w;
		struct thin_md_view v;

		if (build(&w, cases[c].vspace, cases[c].ops) &&
		    ok_eq(thin_md_view_current(w.md, &v), 0))
			check_view(&v, w.devs, w.n, w.vspace, "current");
		done(&w);
	}
}

TEST(diff_on_committed_state_and_held_root)
{
	struct workload w;
	struct thin_md_view cur, com, held;
	uint8_t *a = malloc(6000), *b = malloc(6000);

	if (!ok(a && b) || !build(&w, 6000, 300))
		goto out;
	ok_eq(thin_md_commit(w.md), 0);
	/* Held root = the state now; then changes, committed; then more, uncommitted. */
	ok_eq(thin_md_reserve_metadata_snap(w.md), 0);
	churn(&w, 4, 100);
	churn(&w, 1, 100);
	ok_eq(thin_md_commit(w.md), 0);
	churn(&w, 4, 100);
	ok_eq(thin_md_create_snap(w.md, 20, 4), 0);
	churn(&w, 20, 50);
	if (!ok_eq(thin_md_view_held(w.md, 0, &held), 0) ||
	    !ok_eq(thin_md_view_committed(w.md, &com), 0) ||
	    !ok_eq(thin_md_view_current(w.md, &cur), 0))
		goto out;
	check_view(&held, w.devs, w.n, w.vspace, "held");
	check_view(&com, w.devs, w.n, w.vspace, "committed");
	w.devs[w.n++] = 20;
	check_view(&cur, w.devs, w.n, w.vspace, "current");
	/* The three views differ where they should: device 20 exists only in the live one. */
	ok_eq(thin_view_diff(&com, 4, 20, 0, 0, collect_fn, &(struct collect){ 0 }, NULL),
	      -ENODATA);
	ok_eq(brute(&held, 1, 4, w.vspace, true, a), 0);
	ok_eq(brute(&cur, 1, 4, w.vspace, true, b), 0);
	ok(memcmp(a, b, w.vspace) != 0);
	/* A power cut now leaves the committed state: reopen and compare with the diff. */
	{
		struct collect c1 = { .kinds = a, .vspace = w.vspace };
		struct collect c2 = { .kinds = b, .vspace = w.vspace };
		struct thin_md_view v2;

		memset(a, 0, w.vspace);
		memset(b, 0, w.vspace);
		ok_eq(thin_view_diff(&com, 1, 4, 0, 0, collect_fn, &c1, NULL), 0);
		ok_eq(thin_md_abort(w.md), 0);
		ok_eq(thin_md_view_current(w.md, &v2), 0);
		ok_eq(thin_view_diff(&v2, 1, 4, 0, 0, collect_fn, &c2, NULL), 0);
		ok(!memcmp(a, b, w.vspace));
	}
out:
	free(a);
	free(b);
	done(&w);
}

struct counter {
	unsigned calls, stop_at;
};

static int count_fn(void *ctx, const struct thin_diff_range *r)
{
	struct counter *c = ctx;

	(void)r;
	return ++c->calls == c->stop_at ? 42 : 0;
}

TEST(diff_cost_follows_the_change)
{
	enum { N = 200000 };
	struct blkdev *dev;
	struct thin_md *md;
	struct thin_dev *td;
	struct thin_md_view v;
	struct thin_diff_stats st, all;
	struct counter cnt = { 0, 0 };
	uint64_t d;

	if (!ok_eq(memdisk_create(32768, 4096, &dev), 0) ||
	    !ok_eq(md_open(dev, true, 1000000, &md), 0))
		return;
	ok_eq(thin_md_create_thin(md, 1), 0);
	ok_eq(thin_md_open_thin(md, 1, &td), 0);
	for (uint64_t b = 0; b < N && !test_failed(); b++) {
		ok_eq(thin_md_alloc_data_block(md, &d), 0);
		ok_eq(thin_insert_block(td, b, d), 0);
	}
	thin_md_close_thin(td);
	ok_eq(thin_md_create_snap(md, 2, 1), 0);
	ok_eq(thin_md_open_thin(md, 2, &td), 0);
	for (uint64_t k = 0; k < 10; k++) {
		ok_eq(thin_md_alloc_data_block(md, &d), 0);
		ok_eq(thin_insert_block(td, k * 19997, d), 0);
	}
	thin_md_close_thin(td);
	ok_eq(thin_md_commit(md), 0);
	ok_eq(thin_md_view_current(md, &v), 0);
	ok_eq(thin_view_diff(&v, 1, 2, 0, 0, count_fn, &cnt, &st), 0);
	ok_eq(cnt.calls, 10);
	ok_eq(st.blocks[THIN_DIFF_DIFFERENT], 10);
	/* The tree has ~1,600 leaves; 10 paths of depth 3 in two trees is at most 60 nodes. */
	printf("  changed 10 of %d: %llu nodes read, %llu subtrees skipped\n", N,
	       (unsigned long long)st.nodes_read, (unsigned long long)st.subtrees_skipped);
	ok(st.nodes_read <= 64);
	ok(st.subtrees_skipped > 0);
	ok_eq(thin_view_diff(&v, 1, 2, 0, THIN_DIFF_WANT_SAME, count_fn, &cnt, &all), 0);
	printf("  with same ranges: %llu nodes read\n", (unsigned long long)all.nodes_read);
	ok(all.nodes_read > 1000);
	ok_eq(all.blocks[THIN_DIFF_SAME], N - 10);
	/* From the middle: the 4 changes past it, and a descent instead of a walk. */
	cnt = (struct counter){ 0, 0 };
	ok_eq(thin_view_diff(&v, 1, 2, N / 2, 0, count_fn, &cnt, &st), 0);
	ok_eq(cnt.calls, 4);
	ok(st.nodes_read <= 32);
	/* Stopping early, an absent device. */
	cnt = (struct counter){ 0, 3 };
	ok_eq(thin_view_diff(&v, 1, 2, 0, 0, count_fn, &cnt, NULL), 42);
	ok_eq(cnt.calls, 3);
	ok_eq(thin_view_diff(&v, 1, 77, 0, 0, count_fn, &cnt, NULL), -ENODATA);
	ok_eq(thin_md_close(md), 0);
	blkdev_destroy(dev);
}

/* Our ranges as thin_delta prints them (without --verbose), for @l against @r. */
static int write_ours(const struct thin_md_view *v, thin_id_t l, thin_id_t r, uint64_t vspace,
		      const char *path)
{
	uint8_t *k = calloc(1, vspace);
	struct collect c = { .kinds = k, .vspace = vspace };
	int rc;

	c.out = fopen(path, "w");
	if (!c.out || !k) {
		free(k);
		return -EIO;
	}
	rc = thin_view_diff(v, l, r, 0, THIN_DIFF_WANT_SAME, collect_fn, &c, NULL);
	fclose(c.out);
	free(k);
	return rc ? rc : c.bad ? -EILSEQ : 0;
}

static int tpt_delta_matches(const char *img, const char *extra, thin_id_t l, thin_id_t r,
			     const char *ours)
{
	char cmd[2400];

	snprintf(cmd, sizeof(cmd),
		 "PATH=$PATH:/usr/sbin:/sbin; a=$(mktemp); "
		 "thin_delta %s --thin1 %llu --thin2 %llu '%s' 2>&1 | grep ' begin=' >$a; "
		 "if ! cmp -s $a '%s'; then echo '  thin_delta %llu %llu differs:'; "
		 "diff $a '%s' | head -6; rm -f $a; exit 1; fi; rm -f $a",
		 extra, (unsigned long long)l, (unsigned long long)r, img, ours,
		 (unsigned long long)l, (unsigned long long)r, ours);
	return system(cmd) ? -EILSEQ : 0;
}

TEST(diff_matches_thin_delta)
{
	struct workload w;
	struct thin_md_view v;
	char img[512], ours[512];
	unsigned pairs = 0;

	snprintf(img, sizeof(img), "%s/delta.bin", test_tmpdir());
	snprintf(ours, sizeof(ours), "%s/ours.txt", test_tmpdir());
	if (!build(&w, 20000, 400))
		goto out;
	ok_eq(thin_md_commit(w.md), 0);
	ok_eq(thin_md_reserve_metadata_snap(w.md), 0);
	churn(&w, 3, 200);
	ok_eq(thin_md_commit(w.md), 0);
	ok_eq(dev_to_file(w.dev, img), 0);
	ok_eq(thin_md_view_current(w.md, &v), 0);
	for (unsigned i = 0; i < w.n && !test_failed(); i++)
		for (unsigned j = 0; j < w.n && !test_failed(); j += 2, pairs++) {
			ok_eq(write_ours(&v, w.devs[i], w.devs[j], w.vspace, ours), 0);
			ok_eq(tpt_delta_matches(img, "", w.devs[i], w.devs[j], ours), 0);
		}
	/* The held root: thin_delta -m. */
	ok_eq(thin_md_view_held(w.md, 0, &v), 0);
	ok_eq(write_ours(&v, 1, 3, w.vspace, ours), 0);
	ok_eq(tpt_delta_matches(img, "-m", 1, 3, ours), 0);
	printf("  %u pairs and the held root agree with thin_delta\n", pairs);
out:
	done(&w);
}
