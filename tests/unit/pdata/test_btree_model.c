/* SPDX-License-Identifier: MIT */
/*
 * Model tests: random insert / overwrite / remove / lookup on the two-level mapping tree of
 * the test pool, checked against an in-memory oracle across commits, aborts and reopens,
 * with shared subtrees (snapshots) and device deletion. After every commit pool_check()
 * verifies the B-tree rules and that every block's count equals the references to it.
 * A failing case prints its seed; SEED=n replays it.
 */
#include "tests/support/pdata_pool.h"

#define NR_DEVS 4

struct model {
	struct pool p;
	struct blkdev *dev;
	struct dm_btree_info tl_info; /* the top level alone: values are subtree roots */
	uint64_t nkeys;
	uint64_t *cur, *committed; /* [dev * nkeys + vblock]: block_time, 0 = absent */
	bool dev_present[NR_DEVS], dev_committed[NR_DEVS];
	uint64_t rng;
	unsigned commits, aborts, reopens;
};

static int subtree_inc(void *ctx, const void *v)
{
	return dm_tm_inc(((struct model *)ctx)->p.tm, get_le64(v));
}

static int subtree_dec(void *ctx, const void *v)
{
	struct model *m = ctx;
	struct dm_btree_info bl = m->p.map_info;

	bl.levels = 1;
	return dm_btree_del(&bl, get_le64(v));
}

static void model_infos(struct model *m)
{
	m->tl_info.tm = m->p.tm;
	m->tl_info.levels = 1;
	m->tl_info.value_type =
	    (struct dm_btree_value_type){ m, 8, subtree_inc, subtree_dec, NULL };
}

static bool model_init(struct model *m, uint64_t nkeys, dm_block_t meta_blocks, unsigned cache)
{
	memset(m, 0, sizeof(*m));
	m->rng = test_seed();
	m->nkeys = nkeys;
	m->cur = calloc(NR_DEVS * nkeys, 8);
	m->committed = calloc(NR_DEVS * nkeys, 8);
	if (!ok(m->cur && m->committed))
		return false;
	if (!ok_eq(memdisk_create(meta_blocks, 4096, &m->dev), 0))
		return false;
	if (!ok_eq(pool_format(&m->p, m->dev, cache, NR_DEVS * nkeys + 64), 0))
		return false;
	model_infos(m);
	return true;
}

static void model_free(struct model *m)
{
	if (m->p.bm)
		pool_close(&m->p);
	blkdev_destroy(m->dev);
	free(m->cur);
	free(m->committed);
}

static int model_commit(struct model *m)
{
	int r = pool_commit(&m->p);

	if (r)
		return r;
	memcpy(m->committed, m->cur, NR_DEVS * m->nkeys * 8);
	memcpy(m->dev_committed, m->dev_present, sizeof(m->dev_present));
	m->commits++;
	return 0;
}

static int model_abort(struct model *m)
{
	int r = pool_abort(&m->p);

	if (r)
		return r;
	model_infos(m);
	memcpy(m->cur, m->committed, NR_DEVS * m->nkeys * 8);
	memcpy(m->dev_present, m->dev_committed, sizeof(m->dev_present));
	m->aborts++;
	return 0;
}

static int model_reopen(struct model *m)
{
	int r = model_commit(m);

	if (r)
		return r;
	pool_close(&m->p);
	r = pool_open(&m->p, m->dev, m->p.cache);
	if (r)
		return r;
	model_infos(m);
	m->reopens++;
	return 0;
}

static int create_dev(struct model *m, uint64_t dev)
{
	dm_block_t sub, root;
	uint8_t v[8];
	int r = dm_btree_empty(&m->p.map_info, &sub);

	/* An empty bottom-level tree is a one-level empty leaf with 8-byte values. */
	if (r)
		return r;
	put_le64(v, sub);
	r = dm_btree_insert(&m->tl_info, m->p.map_root, &dev, v, &root);
	if (!r)
		m->p.map_root = root;
	m->dev_present[dev] = true;
	return r;
}

/* Like dm-thin's create_snap: share the origin's whole bottom tree. */
static int snap_dev(struct model *m, uint64_t origin, uint64_t dev)
{
	dm_block_t root;
	uint8_t v[8];
	int r = dm_btree_lookup(&m->tl_info, m->p.map_root, &origin, v);

	if (!r)
		r = dm_tm_inc(m->p.tm, get_le64(v));
	if (!r)
		r = dm_btree_insert(&m->tl_info, m->p.map_root, &dev, v, &root);
	if (r)
		return r;
	m->p.map_root = root;
	m->dev_present[dev] = true;
	memcpy(m->cur + dev * m->nkeys, m->cur + origin * m->nkeys, m->nkeys * 8);
	return 0;
}

static int delete_dev(struct model *m, uint64_t dev)
{
	dm_block_t root;
	int r = dm_btree_remove(&m->tl_info, m->p.map_root, &dev, &root);

	if (r)
		return r;
	m->p.map_root = root;
	m->dev_present[dev] = false;
	memset(m->cur + dev * m->nkeys, 0, m->nkeys * 8);
	return 0;
}

static int do_insert(struct model *m, uint64_t dev, uint64_t vb)
{
	uint64_t keys[2] = { dev, vb };
	uint8_t v[8];
	dm_block_t root;
	int inserted, r;

	r = pool_new_mapping(&m->p, (uint32_t)(test_rand(&m->rng) & 0xffff), v);
	if (r)
		return r;
	r = dm_btree_insert_notify(&m->p.map_info, m->p.map_root, keys, v, &root, &inserted);
	if (r)
		return r;
	m->p.map_root = root;
	/* The tree now holds the reference new_block took. */
	if (inserted != !m->cur[dev * m->nkeys + vb])
		return -EPROTO;
	m->cur[dev * m->nkeys + vb] = get_le64(v);
	return 0;
}

static int do_remove(struct model *m, uint64_t dev, uint64_t vb)
{
	uint64_t keys[2] = { dev, vb };
	dm_block_t root;
	int r = dm_btree_remove(&m->p.map_info, m->p.map_root, keys, &root);

	if (r == -ENODATA && !m->cur[dev * m->nkeys + vb] && root == m->p.map_root)
		return 0;
	if (r)
		return r;
	if (!m->cur[dev * m->nkeys + vb])
		return -EPROTO;
	m->p.map_root = root;
	m->cur[dev * m->nkeys + vb] = 0;
	return 0;
}

static int do_lookup(struct model *m, uint64_t dev, uint64_t vb)
{
	uint64_t keys[2] = { dev, vb };
	uint8_t v[8];
	int r = dm_btree_lookup(&m->p.map_info, m->p.map_root, keys, v);
	uint64_t want = m->cur[dev * m->nkeys + vb];

	if (r == -ENODATA)
		return want ? -EPROTO : 0;
	if (r)
		return r;
	return get_le64(v) == want ? 0 : -EPROTO;
}

struct cmp_ctx {
	struct model *m;
	uint64_t seen;
	int bad;
};

static int cmp_entry(void *ctx, const uint64_t *keys, void *v)
{
	struct cmp_ctx *c = ctx;

	if (keys[0] >= NR_DEVS || keys[1] >= c->m->nkeys ||
	    c->m->cur[keys[0] * c->m->nkeys + keys[1]] != get_le64(v))
		c->bad++;
	c->seen++;
	return 0;
}

/* The whole tree equals the oracle (walk order checked by the checker). */
static bool model_compare(struct model *m)
{
	struct cmp_ctx c = { m, 0, 0 };
	uint64_t want = 0;
	int r = dm_btree_walk(&m->p.map_info, m->p.map_root, cmp_entry, &c);

	for (uint64_t i = 0; i < NR_DEVS * m->nkeys; i++)
		want += m->cur[i] != 0;
	if (!ok_eq(r, 0) || !ok_eq(c.bad, 0) || !ok_eq(c.seen, want))
		return false;
	return true;
}

static bool model_full_check(struct model *m)
{
	uint64_t entries;

	if (!ok_eq(pool_check_ex(&m->p, &entries), 0))
		return false;
	if (!ok_eq(dm_bm_locks_held(m->p.bm), 0) || !ok_eq(dm_bm_misuse_count(m->p.bm), 0))
		return false;
	return model_compare(m);
}

static uint64_t pick_dev(struct model *m, bool present)
{
	for (int tries = 0; tries < 16; tries++) {
		uint64_t d = test_rand(&m->rng) % NR_DEVS;

		if (m->dev_present[d] == present)
			return d;
	}
	return NR_DEVS;
}

/* One random step; returns 0 or the failing call's error. */
static int model_step(struct model *m, unsigned commit_pct)
{
	unsigned op = (unsigned)(test_rand(&m->rng) % 1000);
	uint64_t vb = test_rand(&m->rng) % m->nkeys, d;

	if (op < 10) {
		d = pick_dev(m, false);
		return d < NR_DEVS ? create_dev(m, d) : 0;
	}
	if (op < 16) {
		uint64_t o = pick_dev(m, true);

		d = pick_dev(m, false);
		return d < NR_DEVS && o < NR_DEVS ? snap_dev(m, o, d) : 0;
	}
	if (op < 18) {
		d = pick_dev(m, true);
		return d < NR_DEVS ? delete_dev(m, d) : 0;
	}
	if (op < 20 + commit_pct * 10)
		return model_commit(m);
	if (op < 25 + commit_pct * 10)
		return model_abort(m);
	if (op < 28 + commit_pct * 10)
		return model_reopen(m);
	d = pick_dev(m, true);
	if (d >= NR_DEVS)
		return create_dev(m, 0 + (test_rand(&m->rng) % NR_DEVS) * 0 +
					 pick_dev(m, false) % NR_DEVS);
	if (op < 700)
		return do_insert(m, d, vb);
	if (op < 880)
		return do_remove(m, d, vb);
	return do_lookup(m, d, vb);
}

/*
 * Many short runs over a small key space (so nodes split, merge and redistribute often),
 * with a full check after every commit and an oracle comparison after every step.
 */
TEST(short_random_runs)
{
	for (int run = 0; run < 40 && !test_failed(); run++) {
		struct model m;

		if (!model_init(&m, 1500, 2048, 16 + run * 8))
			return;
		m.rng += (uint64_t)run * 0x9e3779b97f4a7c15ull;
		for (int step = 0; step < 2500 && !test_failed(); step++) {
			unsigned commits = m.commits, reopens = m.reopens;
			int r = model_step(&m, 3);

			if (!ok_eq(r, 0)) {
				printf("  run %d step %d\n", run, step);
				break;
			}
			if (step % 25 == 0 && !model_compare(&m))
				break;
			if ((m.commits != commits || m.reopens != reopens) && !model_full_check(&m))
				break;
		}
		if (!test_failed() && ok_eq(model_commit(&m), 0))
			model_full_check(&m);
		if (run % 10 == 0) {
			uint64_t entries = 0;

			pool_check_ex(&m.p, &entries);
			printf("  run %d: %u commits, %u aborts, %u reopens, %llu entries\n", run,
			       m.commits, m.aborts, m.reopens, (unsigned long long)entries);
		}
		model_free(&m);
	}
}

/* Random keys with a tree-walk and full check after each step (small trees). */
TEST(every_step_checked)
{
	struct model m;

	if (!model_init(&m, 600, 1024, 32))
		return;
	for (int step = 0; step < 1200 && !test_failed(); step++) {
		int r = model_step(&m, 0);

		if (!ok_eq(r, 0) || !ok_eq(model_commit(&m), 0) || !model_full_check(&m)) {
			printf("  step %d\n", step);
			break;
		}
	}
	model_free(&m);
}

/* Fill and empty one device completely: every leaf merges away, the root collapses. */
TEST(fill_and_drain)
{
	struct model m;
	const uint64_t n = 20000;

	if (!model_init(&m, n, 4096, 128) || !ok_eq(create_dev(&m, 1), 0))
		return;
	for (uint64_t i = 0; i < n && !test_failed(); i++)
		ok_eq(do_insert(&m, 1, (i * 7919) % n), 0);
	ok_eq(model_commit(&m), 0);
	model_full_check(&m);
	ok_eq(snap_dev(&m, 1, 2), 0);
	for (uint64_t i = 0; i < n && !test_failed(); i++) {
		ok_eq(do_remove(&m, 1, (i * 104729) % n), 0);
		if (i % 5000 == 4999 && ok_eq(model_commit(&m), 0))
			model_full_check(&m);
	}
	ok_eq(model_commit(&m), 0);
	model_full_check(&m);
	{
		uint64_t keys[2] = { 1, 0 };
		uint8_t v[8];

		/* Device 1 is empty now, its snapshot (2) still has everything. */
		ok_eq(dm_btree_find_highest_key(&m.p.map_info, m.p.map_root, keys), 0);
		ok_eq(keys[0], 2);
		ok_eq(keys[1], n - 1);
		keys[0] = 1;
		keys[1] = 0;
		ok_eq(dm_btree_lookup_next(&m.p.map_info, m.p.map_root, keys, &keys[1], v),
		      -ENODATA);
		keys[0] = 2;
		keys[1] = 0;
		ok_eq(dm_btree_lookup_next(&m.p.map_info, m.p.map_root, keys, &keys[1], v), 0);
		ok_eq(keys[1], 0);
	}
	ok_eq(delete_dev(&m, 2), 0);
	ok_eq(delete_dev(&m, 1), 0);
	ok_eq(model_commit(&m), 0);
	model_full_check(&m);
	{
		dm_block_t nr, nfree;

		/* Everything freed again: only the empty trees and the space maps remain. */
		ok_eq(dm_sm_get_nr_blocks(m.p.dsm, &nr), 0);
		ok_eq(dm_sm_get_nr_free(m.p.dsm, &nfree), 0);
		ok_eq(nfree, nr);
	}
	model_free(&m);
}

/* lookup_next / highest / lowest against the oracle. */
TEST(ordered_queries)
{
	struct model m;

	if (!model_init(&m, 5000, 1024, 64) || !ok_eq(create_dev(&m, 3), 0))
		return;
	for (int i = 0; i < 3000; i++)
		ok_eq(do_insert(&m, 3, test_rand(&m.rng) % m.nkeys), 0);
	for (int i = 0; i < 500 && !test_failed(); i++) {
		uint64_t k = test_rand(&m.rng) % (m.nkeys + 10), keys[2] = { 3, k }, got;
		uint64_t want = k;
		uint8_t v[8];
		int r = dm_btree_lookup_next(&m.p.map_info, m.p.map_root, keys, &got, v);

		while (want < m.nkeys && !m.cur[3 * m.nkeys + want])
			want++;
		if (want >= m.nkeys) {
			ok_eq(r, -ENODATA);
		} else if (ok_eq(r, 0)) {
			ok_eq(got, want);
			ok_eq(get_le64(v), m.cur[3 * m.nkeys + want]);
		}
	}
	{
		uint64_t keys[2], hi = m.nkeys - 1, lo = 0;

		while (!m.cur[3 * m.nkeys + hi])
			hi--;
		while (!m.cur[3 * m.nkeys + lo])
			lo++;
		ok_eq(dm_btree_find_highest_key(&m.p.map_info, m.p.map_root, keys), 0);
		ok_eq(keys[0], 3);
		ok_eq(keys[1], hi);
		ok_eq(dm_btree_find_lowest_key(&m.p.map_info, m.p.map_root, keys), 0);
		ok_eq(keys[1], lo);
	}
	model_free(&m);
}

/*
 * One long run to 1,000,000 keys in one device, inserted in random order with a cache of
 * about 1% of the tree, committed every 50,000 and fully checked every 250,000; then a
 * reopen, a full comparison, and removal of every other key with checks.
 */
TEST(million_keys)
{
	struct model m;
	const uint64_t n = 1000000, stride = 611953; /* coprime with n: a permutation */
	uint64_t start = test_seed() % n;

	if (!model_init(&m, n / NR_DEVS + 1, 32768, 100))
		return;
	/* One device holding all keys: use the oracle as one flat array. */
	free(m.cur);
	free(m.committed);
	m.nkeys = n;
	m.cur = calloc(NR_DEVS * n, 8);
	m.committed = calloc(NR_DEVS * n, 8);
	pool_close(&m.p);
	blkdev_destroy(m.dev);
	if (!ok(m.cur && m.committed) || !ok_eq(memdisk_create(32768, 4096, &m.dev), 0) ||
	    !ok_eq(pool_format(&m.p, m.dev, 100, n + 64), 0))
		return;
	model_infos(&m);
	ok_eq(create_dev(&m, 0), 0);
	for (uint64_t i = 0; i < n && !test_failed(); i++) {
		if (do_insert(&m, 0, (start + i * stride) % n)) {
			fail("insert %llu failed", (unsigned long long)i);
			break;
		}
		if (i % 50000 == 49999)
			ok_eq(model_commit(&m), 0);
		if (i % 250000 == 249999)
			model_full_check(&m);
	}
	ok_eq(model_reopen(&m), 0);
	model_full_check(&m);
	for (uint64_t i = 0; i < n && !test_failed(); i += 2) {
		if (do_remove(&m, 0, (start + i * stride) % n)) {
			fail("remove %llu failed", (unsigned long long)i);
			break;
		}
		if (i % 100000 == 99998)
			ok_eq(model_commit(&m), 0);
	}
	ok_eq(model_commit(&m), 0);
	model_full_check(&m);
	for (int i = 0; i < 20000 && !test_failed(); i++)
		ok_eq(do_lookup(&m, 0, test_rand(&m.rng) % n), 0);
	model_free(&m);
}
