/* SPDX-License-Identifier: MIT */
/*
 * The commit cycle at its edges: passdown only after the commit that made the unmap durable,
 * a discard arriving while a commit's data flush is in flight, a failed data flush, and a
 * metadata snapshot taken while writes keep arriving. Each test sets up the exact
 * interleaving with a data disk whose requests the test completes by hand (gatedev) or a
 * hook run at the data disk's flush, then looks at what a power cut would leave.
 */
#include "tests/support/pool_test.h"

#include "core/base/plat.h"

/*----------------------------------------------------------------*/
/* A data disk whose requests of the held kinds wait until the test releases them; the
 * others complete at the next poll. A hook may run after each completed flush. */

struct gatedev {
	struct blkdev dev;
	struct blkdev *lower;
	struct blkdev_req *q[256];
	unsigned n;
	unsigned hold; /* bit (1 << op): requests of that op wait for gate_release() */
	void (*flush_hook)(void *ctx);
	void *hook_ctx;
};

static struct gatedev *to_gate(struct blkdev *d)
{
	return container_of(d, struct gatedev, dev);
}

static int g_read(struct blkdev *d, uint64_t b, uint32_t c, void *buf)
{
	return blkdev_read(to_gate(d)->lower, b, c, buf);
}
static int g_write(struct blkdev *d, uint64_t b, uint32_t c, const void *buf)
{
	return blkdev_write(to_gate(d)->lower, b, c, buf);
}
static int g_flush(struct blkdev *d)
{
	return blkdev_flush(to_gate(d)->lower);
}
static int g_discard(struct blkdev *d, uint64_t b, uint32_t c)
{
	return blkdev_discard(to_gate(d)->lower, b, c);
}

static int g_submit(struct blkdev *d, struct blkdev_req *req)
{
	struct gatedev *g = to_gate(d);

	if (g->n == ARRAY_SIZE(g->q))
		return -EAGAIN;
	g->q[g->n++] = req;
	return 0;
}

static void g_complete(struct gatedev *g, struct blkdev_req *req)
{
	req->done(req, blkdev_run_req(g->lower, req));
	if (req->op == BLKDEV_FLUSH && g->flush_hook)
		g->flush_hook(g->hook_ctx);
}

/* Complete the queued requests whose op is in @mask (in order); returns how many. */
static int gate_run(struct gatedev *g, unsigned mask)
{
	struct blkdev_req *run[256];
	unsigned nrun = 0, keep = 0;

	for (unsigned i = 0; i < g->n; i++) {
		if (mask & (1u << g->q[i]->op))
			run[nrun++] = g->q[i];
		else
			g->q[keep++] = g->q[i];
	}
	g->n = keep;
	for (unsigned i = 0; i < nrun; i++)
		g_complete(g, run[i]);
	return (int)nrun;
}

static int g_poll(struct blkdev *d)
{
	struct gatedev *g = to_gate(d);

	return gate_run(g, ~g->hold);
}

static void gate_release(struct gatedev *g, enum blkdev_op op)
{
	g->hold &= ~(1u << op);
	gate_run(g, 1u << op);
}

static const struct blkdev_ops gate_ops = { .read = g_read,
					    .write = g_write,
					    .flush = g_flush,
					    .discard = g_discard,
					    .submit = g_submit,
					    .poll = g_poll };

static void gate_init(struct gatedev *g, struct blkdev *lower)
{
	memset(g, 0, sizeof(*g));
	g->lower = lower;
	g->dev.ops = &gate_ops;
	g->dev.name = "gatedev";
	g->dev.nr_blocks = lower->nr_blocks;
	g->dev.block_size = lower->block_size;
	g->dev.discard_zeroes = lower->discard_zeroes;
}

/*----------------------------------------------------------------*/
/* Helpers */

static void poll_n(struct thin_pool *pool, unsigned n)
{
	while (n--)
		thin_pool_poll(pool);
}

/* What a power cut leaves of a memory disk: its contents now, in a new memory disk. */
static struct blkdev *snapshot_disk(struct blkdev *src)
{
	struct blkdev *copy;
	uint8_t *b = malloc(src->block_size);

	if (!b || memdisk_create(src->nr_blocks, src->block_size, &copy)) {
		free(b);
		return NULL;
	}
	for (uint64_t i = 0; i < src->nr_blocks; i++) {
		if (blkdev_read(src, i, 1, b) || blkdev_write(copy, i, 1, b)) {
			blkdev_destroy(copy);
			copy = NULL;
			break;
		}
	}
	free(b);
	return copy;
}

/* The data block thin @id maps @vblock to in the current transaction. */
static uint64_t mapped_at(struct thin_pool *pool, thin_id_t id, uint64_t vblock)
{
	struct thin_md_view view;
	uint64_t db = ~0ull;
	uint32_t tm;

	if (thin_md_view_current(thin_pool_md(pool), &view) ||
	    thin_view_lookup(&view, id, vblock, &db, &tm))
		return ~0ull;
	return db;
}

/*----------------------------------------------------------------*/
/* Point: passdown only after the commit that made the unmap durable */

TEST(passdown_waits_for_the_commit_that_made_the_unmap_durable)
{
	struct tpool t;
	struct thin_volume *vo, *vs, *v2;
	struct blkdev *o, *s, *meta_after_cut;
	struct thin_pool *p2;
	struct thin_pool_opts ro;
	uint8_t *p = malloc(KB64), *q = malloc(KB64), *b = malloc(KB64);
	uint64_t a;

	if (!ok_eq(tpool_create(&t, 256, 16, NULL), 0))
		return;
	/* Origin written and flushed, snapshot, origin overwritten (copy-on-write), flushed:
	 * the committed snapshot maps block a, which only it references now. */
	o = pool_vol_open(t.pool, 1, 4 * KB64, &vo);
	pattern(p, KB64, 1);
	pattern(q, KB64, 2);
	ok_eq(blkdev_write(o, 0, 128, p), 0);
	ok_eq(blkdev_flush(o), 0);
	ok_eq(thin_pool_create_snap(t.pool, 2, 1), 0);
	ok_eq(blkdev_write(o, 0, 128, q), 0);
	ok_eq(blkdev_flush(o), 0);
	a = mapped_at(t.pool, 2, 0);
	ok(a != ~0ull && a != mapped_at(t.pool, 1, 0));
	/* The snapshot discards the block: its last reference goes. */
	s = pool_vol_open(t.pool, 2, 4 * KB64, &vs);
	ok_eq(blkdev_discard(s, 0, 128), 0);
	ok_eq(blkdev_read(s, 0, 128, b), 0);
	ok(all_bytes(b, KB64, 0));
	/* Not committed yet: the data disk must still hold the snapshot's data ... */
	ok_eq(blkdev_read(t.data, a * 128, 128, b), 0);
	ok(!memcmp(b, p, KB64));
	/* ... because a power cut now reopens the pool at the last commit, which maps it. */
	meta_after_cut = snapshot_disk(t.meta);
	ok(meta_after_cut != NULL);
	ro = t.o;
	ro.read_only = true;
	if (meta_after_cut && ok_eq(thin_pool_open(meta_after_cut, t.data, &ro, NULL, 0, &p2), 0)) {
		ok_eq(thin_volume_open(p2, 2, 4 * KB64, true, &v2), 0);
		ok_eq(blkdev_read(thin_volume_blkdev(v2), 0, 128, b), 0);
		ok(!memcmp(b, p, KB64));
		thin_volume_close(v2);
		ok_eq(thin_pool_close(p2), 0);
	}
	blkdev_destroy(meta_after_cut);
	/* The commit makes the unmap durable; then the block goes down (memdisk: zeroes). */
	ok_eq(blkdev_flush(s), 0);
	ok_eq(blkdev_read(t.data, a * 128, 128, b), 0);
	ok(all_bytes(b, KB64, 0));
	ok_eq(blkdev_read(o, 0, 128, b), 0);
	ok(!memcmp(b, q, KB64));
	thin_volume_close(vs);
	thin_volume_close(vo);
	/* The hold taken for the discard was released: block a is free again. */
	ok_eq(thin_pool_commit(t.pool), 0);
	ok_eq(data_used(t.pool), 1);
	ok_eq(check_dev(t.meta), 0);
	tpool_destroy(&t);
	free(p);
	free(q);
	free(b);
}

/*----------------------------------------------------------------*/
/* Point: a discard during a commit's data flush */

TEST(discard_during_a_commit_flush_leaks_no_block)
{
	struct tpool t;
	struct gatedev g;
	struct blkdev *mem;
	struct thin_volume *v;
	struct blkdev *d;
	struct waiter fl, dc, fl2;
	uint8_t *a = malloc(KB64);
	struct thin_check_stats st;
	unsigned n = 0;

	memset(&t, 0, sizeof(t));
	thin_pool_default_opts(&t.o);
	ok_eq(memdisk_create(256, 4096, &t.meta), 0);
	ok_eq(memdisk_create(16 * KB64 / 512, 512, &mem), 0);
	gate_init(&g, mem);
	t.data = &g.dev;
	ok_eq(thin_pool_format(t.meta, t.data, &t.o, false), 0);
	if (!ok_eq(thin_pool_open(t.meta, t.data, &t.o, NULL, 0, &t.pool), 0))
		return;
	d = pool_vol_open(t.pool, 1, 8 * KB64, &v);
	pattern(a, KB64, 3);
	ok_eq(blkdev_write(d, 0, 128, a), 0);
	ok_eq(blkdev_write(d, 128, 128, a), 0);
	ok_eq(blkdev_flush(d), 0);
	/* A new write makes the pool dirty; a FLUSH starts a commit whose data flush hangs. */
	ok_eq(blkdev_write(d, 256, 128, a), 0);
	g.hold = (1u << BLKDEV_FLUSH) | (1u << BLKDEV_DISCARD);
	ok_eq(waiter_submit(d, &fl, BLKDEV_FLUSH, 0, 0, NULL), 0);
	poll_n(t.pool, 5);
	ok(!fl.done);
	/* A discard of block 0 arrives meanwhile. */
	ok_eq(waiter_submit(d, &dc, BLKDEV_DISCARD, 0, 128, NULL), 0);
	poll_n(t.pool, 5);
	/* The data flush completes: the commit runs. What it wrote must account for every
	 * block: no reference without a mapping. */
	gate_release(&g, BLKDEV_FLUSH);
	poll_n(t.pool, 5);
	ok(fl.done);
	ok_eq(fl.rc, 0);
	ok_eq(thin_check(t.meta, print_problem, &n, &st), 0);
	ok_eq(n, 0);
	/* Release the rest; the discard was passed down after a commit and the pool is clean. */
	gate_release(&g, BLKDEV_DISCARD);
	g.hold = 0;
	ok_eq(waiter_submit(d, &fl2, BLKDEV_FLUSH, 0, 0, NULL), 0);
	for (unsigned i = 0; i < 100 && !(dc.done && fl2.done); i++)
		poll_n(t.pool, 1);
	ok(dc.done && fl2.done);
	ok_eq(dc.rc, 0);
	ok_eq(fl2.rc, 0);
	thin_volume_close(v);
	ok_eq(thin_pool_commit(t.pool), 0);
	ok_eq(data_used(t.pool), 2);
	ok_eq(check_dev(t.meta), 0);
	ok_eq(thin_pool_close(t.pool), 0);
	blkdev_destroy(mem);
	blkdev_destroy(t.meta);
	free(a);
}

/*----------------------------------------------------------------*/
/* Point: a failed data flush */

TEST(failed_data_flush_rolls_back_and_goes_read_only)
{
	struct tpool t;
	struct blkdev *mem, *fd;
	struct thin_volume *v;
	struct blkdev *d;
	struct thin_pool_status st;
	struct thin_check_stats cs;
	uint8_t *a = malloc(KB64), *b = malloc(KB64);
	unsigned n = 0;

	memset(&t, 0, sizeof(t));
	thin_pool_default_opts(&t.o);
	ok_eq(memdisk_create(256, 4096, &t.meta), 0);
	ok_eq(memdisk_create(16 * KB64 / 512, 512, &mem), 0);
	ok_eq(faultdev_create(mem, &fd), 0);
	t.data = fd;
	ok_eq(thin_pool_format(t.meta, t.data, &t.o, false), 0);
	if (!ok_eq(thin_pool_open(t.meta, t.data, &t.o, NULL, 0, &t.pool), 0))
		return;
	d = pool_vol_open(t.pool, 1, 8 * KB64, &v);
	pattern(a, KB64, 4);
	ok_eq(blkdev_write(d, 0, 128, a), 0);
	ok_eq(blkdev_flush(d), 0);
	/* A provisioning write, then a FLUSH whose data flush fails. */
	ok_eq(blkdev_write(d, 128, 128, a), 0);
	faultdev_fail_nth(fd, BLKDEV_FLUSH, 1, false);
	ok_eq(blkdev_flush(d), -EIO);
	ok(faultdev_fired(fd));
	/* dm: the transaction is rolled back, needs_check set, the pool read-only. */
	ok_eq(thin_pool_get_status(t.pool, &st), 0);
	ok_eq(st.mode, THIN_POOL_READ_ONLY);
	ok(st.needs_check);
	/* The next flush works on the disk but commits nothing: the mapping whose data the
	 * failed flush may have lost is gone (and the volume says its changes were dropped). */
	ok_eq(blkdev_flush(d), -EIO);
	ok_eq(thin_check(t.meta, print_problem, &n, &cs), 0);
	ok_eq(cs.mappings, 1);
	ok_eq(blkdev_read(d, 0, 128, b), 0);
	ok(!memcmp(a, b, KB64));
	ok_eq(blkdev_read(d, 128, 128, b), 0);
	ok(all_bytes(b, KB64, 0));
	ok_eq(blkdev_write(d, 256, 128, a), -EROFS);
	thin_volume_close(v);
	ok_eq(thin_pool_close(t.pool), 0);
	/* It reopens read-only, needs_check set on the disk. */
	if (ok_eq(thin_pool_open(t.meta, t.data, &t.o, NULL, 0, &t.pool), 0)) {
		ok_eq(thin_pool_get_status(t.pool, &st), 0);
		ok_eq(st.mode, THIN_POOL_READ_ONLY);
		ok(st.needs_check);
		ok_eq(thin_pool_close(t.pool), 0);
	}
	blkdev_destroy(fd);
	blkdev_destroy(mem);
	blkdev_destroy(t.meta);
	free(a);
	free(b);
}

/*----------------------------------------------------------------*/
/* Point: reserve-metadata-snap commits only data that was flushed */

struct reserve_ctx {
	struct blkdev *vol, *crash;
	struct waiter w;
	uint8_t *buf;
	bool armed;
};

/* Run once after the data disk's first flush of the reserve: a write arrives, and the power
 * fails at the data disk's next flush (the write itself reaches the disk's cache only). */
static void write_after_flush(void *ctx)
{
	struct reserve_ctx *c = ctx;

	if (!c->armed)
		return;
	c->armed = false;
	waiter_submit(c->vol, &c->w, BLKDEV_WRITE, 5 * 128, 8, c->buf);
	crashdev_cut_at(c->crash, 2);
}

TEST(reserve_metadata_snap_commits_no_unflushed_data)
{
	/* Several power-cut outcomes for the unflushed write (kept, dropped, torn). */
	for (uint64_t seed = 1; seed <= 8; seed++) {
		struct tpool t;
		struct blkdev *mem, *crash;
		struct gatedev g;
		struct thin_volume *v;
		struct reserve_ctx c;
		struct thin_pool_opts ro;
		uint8_t *a = malloc(KB64), *b = malloc(KB64);

		memset(&t, 0, sizeof(t));
		memset(&c, 0, sizeof(c));
		thin_pool_default_opts(&t.o);
		ok_eq(memdisk_create(256, 4096, &t.meta), 0);
		ok_eq(memdisk_create(16 * KB64 / 512, 512, &mem), 0);
		/* Old contents everywhere: a block mapped without its data shows them. */
		memset(a, 0xab, KB64);
		for (unsigned i = 0; i < 16; i++)
			ok_eq(blkdev_write(mem, i * 128, 128, a), 0);
		ok_eq(crashdev_create(mem, &crash), 0);
		gate_init(&g, crash);
		t.data = &g.dev;
		ok_eq(thin_pool_format(t.meta, t.data, &t.o, false), 0);
		if (!ok_eq(thin_pool_open(t.meta, t.data, &t.o, NULL, 0, &t.pool), 0))
			return;
		c.vol = pool_vol_open(t.pool, 1, 8 * KB64, &v);
		c.crash = crash;
		c.buf = malloc(4096);
		pattern(c.buf, 4096, 7);
		pattern(a, KB64, 6);
		ok_eq(blkdev_write(c.vol, 0, 128, a), 0);
		ok_eq(blkdev_flush(c.vol), 0);
		g.flush_hook = write_after_flush;
		g.hook_ctx = &c;
		c.armed = true;
		thin_pool_reserve_metadata_snap(t.pool);
		ok(!c.armed);
		for (unsigned i = 0; i < 100 && !c.w.done; i++)
			poll_n(t.pool, 1);
		/* Power cut: the metadata disk holds what was committed, the data disk what
		 * was flushed plus whatever of the unflushed write survived. */
		crashdev_power_cut(crash, seed);
		crashdev_revive(crash);
		ro = t.o;
		ro.read_only = true;
		{
			struct blkdev *meta_after_cut = snapshot_disk(t.meta);
			struct thin_pool *p2;
			struct thin_volume *v2;

			if (meta_after_cut &&
			    ok_eq(thin_pool_open(meta_after_cut, mem, &ro, NULL, 0, &p2), 0)) {
				ok_eq(thin_volume_open(p2, 1, 8 * KB64, true, &v2), 0);
				ok_eq(blkdev_read(thin_volume_blkdev(v2), 5 * 128, 128, b), 0);
				/* Unmapped (zeroes), or the write and zero fill: never old data. */
				if (!ok(all_bytes(b, KB64, 0) ||
					(!memcmp(b, c.buf, 4096) &&
					 all_bytes(b + 4096, KB64 - 4096, 0))))
					printf("  seed %llu: block 5 maps unflushed data\n",
					       (unsigned long long)seed);
				ok_eq(blkdev_read(thin_volume_blkdev(v2), 0, 128, b), 0);
				ok(!memcmp(a, b, KB64));
				thin_volume_close(v2);
				ok_eq(thin_pool_close(p2), 0);
				ok_eq(check_dev(meta_after_cut), 0);
			}
			blkdev_destroy(meta_after_cut);
		}
		/* The live pool saw its data disk fail; let it settle, then drop it. */
		thin_volume_close(v);
		thin_pool_close(t.pool);
		blkdev_destroy(crash);
		blkdev_destroy(mem);
		blkdev_destroy(t.meta);
		free(c.buf);
		free(a);
		free(b);
	}
}
