/* SPDX-License-Identifier: MIT */
/*
 * Pool modes (docs/dm-thin-format.md §9.7): out of data space (ENOSPC at once with
 * error_if_no_space; else queued without their cells under one timer, dm's
 * no_space_timeout, or served once a delete frees space), metadata device full and metadata I/O
 * errors (read-only with needs_check, reads keep working, acknowledged-and-flushed data
 * stays), fail mode, the read_only option and the low-water mark.
 */
#include "tests/support/pool_test.h"

#include "core/base/plat.h"
#include "host/plat_host.h"

static bool block_is(struct blkdev *d, uint64_t vblock, uint64_t tag, uint8_t *tmp)
{
	uint8_t *want = malloc(KB64);
	bool same;

	if (blkdev_read(d, vblock * 128, 128, tmp)) {
		free(want);
		return false;
	}
	pattern(want, KB64, tag);
	same = !memcmp(want, tmp, KB64);
	free(want);
	return same;
}

TEST(fill_the_pool_enospc_then_delete_frees)
{
	struct tpool t;
	struct thin_pool_opts o;
	struct thin_volume *v1, *v2;
	struct blkdev *d1, *d2;
	struct thin_pool_status st;
	uint8_t *a = malloc(KB64), *b = malloc(KB64);
	char line[200];
	int r = 0;
	unsigned n;

	thin_pool_default_opts(&o);
	o.low_water_blocks = 4;
	o.error_if_no_space = true; /* synchronous writes below: fail at once */
	if (!ok_eq(tpool_create(&t, 256, 16, &o), 0))
		return;
	d2 = pool_vol_open(t.pool, 2, 16 * KB64, &v2);
	for (unsigned i = 0; i < 4; i++) {
		pattern(a, KB64, 200 + i);
		ok_eq(blkdev_write(d2, i * 128, 128, a), 0);
	}
	d1 = pool_vol_open(t.pool, 1, 32 * KB64, &v1);
	for (n = 0; n < 32; n++) {
		pattern(a, KB64, 100 + n);
		r = blkdev_write(d1, n * 128, 128, a);
		if (r)
			break;
	}
	ok_eq(r, -ENOSPC);
	ok_eq(n, 12);
	ok_eq(thin_pool_get_status(t.pool, &st), 0);
	ok_eq(st.mode, THIN_POOL_OUT_OF_DATA_SPACE);
	ok(st.low_water_reached);
	ok_eq(thin_pool_status_line(t.pool, line, sizeof(line)), 0);
	ok(strstr(line, " out_of_data_space ") != NULL);
	/* A partial write needing a block fails too; one to a mapped block works. */
	ok_eq(blkdev_write(d1, 20 * 128 + 3, 1, a), -ENOSPC);
	pattern(a, KB64, 100);
	ok_eq(blkdev_write(d1, 0, 128, a), 0);
	/* Reads keep working, nothing was lost. */
	for (unsigned i = 0; i < 12; i++)
		ok(block_is(d1, i, 100 + i, b));
	for (unsigned i = 0; i < 4; i++)
		ok(block_is(d2, i, 200 + i, b));
	ok_eq(blkdev_flush(d1), 0);
	/* Delete volume 2: its 4 blocks come back. */
	thin_volume_close(v2);
	ok_eq(thin_pool_delete_thin(t.pool, 2), 0);
	ok_eq(thin_pool_get_status(t.pool, &st), 0);
	ok_eq(st.data_used, 12);
	for (n = 12; n < 16; n++) {
		pattern(a, KB64, 100 + n);
		ok_eq(blkdev_write(d1, n * 128, 128, a), 0);
	}
	ok_eq(thin_pool_get_status(t.pool, &st), 0);
	ok_eq(st.mode, THIN_POOL_WRITE);
	for (unsigned i = 0; i < 16; i++)
		ok(block_is(d1, i, 100 + i, b));
	ok_eq(blkdev_write(d1, 16 * 128, 128, a), -ENOSPC);
	thin_volume_close(v1);
	ok_eq(check_dev(t.meta), 0);
	tpool_destroy(&t);
	free(a);
	free(b);
}

/* A freed block becomes allocatable after a commit: the pool commits before giving up. */
TEST(out_of_space_commits_to_reuse_freed_blocks)
{
	struct tpool t;
	struct thin_volume *v;
	struct blkdev *d;
	uint8_t *a = calloc(1, KB64);

	if (!ok_eq(tpool_create(&t, 256, 8, NULL), 0))
		return;
	d = pool_vol_open(t.pool, 1, 16 * KB64, &v);
	for (unsigned i = 0; i < 8; i++)
		ok_eq(blkdev_write(d, i * 128, 128, a), 0);
	ok_eq(blkdev_flush(d), 0);
	ok_eq(blkdev_discard(d, 0, 4 * 128), 0); /* freed, but only after a commit */
	for (unsigned i = 8; i < 12; i++)
		ok_eq(blkdev_write(d, i * 128, 128, a), 0);
	thin_volume_close(v);
	ok_eq(check_dev(t.meta), 0);
	tpool_destroy(&t);
	free(a);
}

/* Submit @count sectors of @op at data block @vblock without waiting. */
static void submit(struct blkdev *d, struct waiter *w, enum blkdev_op op, uint64_t vblock,
		   uint32_t count, void *buf)
{
	ok_eq(waiter_submit(d, w, op, vblock * 128, count, buf), 0);
}

/* Poll enough for anything that can move to finish (memory disks complete at once). */
static void spin(struct thin_pool *pool)
{
	for (int i = 0; i < 200; i++)
		thin_pool_poll(pool);
}

/*
 * A full pool of 8 data blocks: volume 2 maps block 0 (pattern 200), volume 1 blocks 0..6
 * (patterns 100..106), all flushed. The pool is not yet out of data space (no allocation
 * failed).
 */
static bool fill8(struct tpool *t, const struct thin_pool_opts *o, struct thin_volume **v1,
		  struct thin_volume **v2, uint8_t *a)
{
	struct blkdev *d1, *d2;

	if (!ok_eq(tpool_create(t, 256, 8, o), 0))
		return false;
	d2 = pool_vol_open(t->pool, 2, 8 * KB64, v2);
	pattern(a, KB64, 200);
	ok_eq(blkdev_write(d2, 0, 128, a), 0);
	d1 = pool_vol_open(t->pool, 1, 16 * KB64, v1);
	for (unsigned i = 0; i < 7; i++) {
		pattern(a, KB64, 100 + i);
		ok_eq(blkdev_write(d1, i * 128, 128, a), 0);
	}
	return ok_eq(blkdev_flush(d1), 0);
}

/*
 * dm's default: writes needing space queue; ONE timer, started when the pool ran out of
 * space, fails them all (a write queued late fails with the first, not after its own wait);
 * then later writes fail at once, until space appears, which re-arms the timer.
 */
TEST(out_of_space_default_queues_under_one_timer)
{
	struct tpool t;
	struct thin_volume *v1, *v2;
	struct blkdev *d1;
	struct waiter w1, w2, w3;
	struct thin_pool_status st;
	uint8_t *a = malloc(KB64), *b = malloc(KB64);
	char line[200];

	if (!fill8(&t, NULL, &v1, &v2, a))
		return;
	ok_eq(t.o.no_space_timeout_ms, 60000);
	ok(!t.o.error_if_no_space);
	d1 = thin_volume_blkdev(v1);
	submit(d1, &w1, BLKDEV_WRITE, 7, 128, a);
	spin(t.pool);
	ok(!w1.done); /* queued, not failed */
	ok_eq(thin_pool_get_status(t.pool, &st), 0);
	ok_eq(st.mode, THIN_POOL_OUT_OF_DATA_SPACE);
	ok_eq(st.queued_for_space, 1);
	ok(!st.error_if_no_space && !st.no_space_timed_out);
	ok_eq(thin_pool_status_line(t.pool, line, sizeof(line)), 0);
	ok(strstr(line, " out_of_data_space discard_passdown queue_if_no_space ") != NULL);
	/* 40 s later a second write queues too. */
	plat_host_clock_advance(40 * NSEC_PER_SEC);
	spin(t.pool);
	submit(d1, &w2, BLKDEV_WRITE, 8, 128, a);
	spin(t.pool);
	ok(!w1.done && !w2.done);
	/* 61 s after the pool ran out of space both fail: w2 waited only 21 s. */
	plat_host_clock_advance(21 * NSEC_PER_SEC);
	spin(t.pool);
	ok(w1.done && w2.done);
	ok_eq(w1.rc, -ENOSPC);
	ok_eq(w2.rc, -ENOSPC);
	ok_eq(thin_pool_get_status(t.pool, &st), 0);
	ok(st.no_space_timed_out && st.error_if_no_space);
	ok_eq(st.queued_for_space, 0);
	ok_eq(thin_pool_status_line(t.pool, line, sizeof(line)), 0);
	ok(strstr(line, " error_if_no_space ") != NULL);
	/* From now on a write needing space fails at once; in place still works. */
	submit(d1, &w3, BLKDEV_WRITE, 9, 8, a);
	spin(t.pool);
	ok(w3.done);
	ok_eq(w3.rc, -ENOSPC);
	pattern(a, KB64, 300);
	ok_eq(blkdev_write(d1, 0, 128, a), 0);
	ok(block_is(d1, 0, 300, b));
	/* Space appears: write mode, and the next shortage queues under a new timer. */
	thin_volume_close(v2);
	ok_eq(thin_pool_delete_thin(t.pool, 2), 0);
	ok_eq(thin_pool_get_status(t.pool, &st), 0);
	ok_eq(st.mode, THIN_POOL_WRITE);
	ok(!st.no_space_timed_out && !st.error_if_no_space);
	pattern(a, KB64, 107);
	ok_eq(blkdev_write(d1, 7 * 128, 128, a), 0);
	submit(d1, &w1, BLKDEV_WRITE, 8, 128, a);
	spin(t.pool);
	ok(!w1.done);
	plat_host_clock_advance(59 * NSEC_PER_SEC);
	spin(t.pool);
	ok(!w1.done);
	plat_host_clock_advance(2 * NSEC_PER_SEC);
	spin(t.pool);
	ok(w1.done);
	ok_eq(w1.rc, -ENOSPC);
	for (unsigned i = 1; i < 8; i++)
		ok(block_is(d1, i, 100 + i, b));
	thin_volume_close(v1);
	ok_eq(check_dev(t.meta), 0);
	tpool_destroy(&t);
	free(a);
	free(b);
}

/*
 * Queued writes hold no cell and are not acknowledged: reads of their own block and of
 * others, in-place writes and a FLUSH complete while they wait; 0 means wait forever; space
 * appearing serves the queue in order and returns to write mode.
 */
TEST(out_of_space_queue_blocks_nothing_and_waits_forever)
{
	struct tpool t;
	struct thin_pool_opts o;
	struct thin_volume *v1, *v2;
	struct blkdev *d1, *d2;
	struct waiter w1, w2, r1, r2, wi, fl;
	struct thin_pool_status st;
	uint8_t *a = malloc(KB64), *b = malloc(KB64), *c = malloc(KB64), *e = malloc(KB64);
	uint8_t *rb1 = malloc(KB64), *rb2 = malloc(KB64);

	thin_pool_default_opts(&o);
	o.no_space_timeout_ms = 3600 * 1000;
	if (!fill8(&t, &o, &v1, &v2, a))
		return;
	d1 = thin_volume_blkdev(v1);
	d2 = thin_volume_blkdev(v2);
	pattern(b, KB64, 500);
	submit(d1, &w1, BLKDEV_WRITE, 7, 128, b); /* needs a block: queued */
	pattern(c, KB64, 501);
	submit(d1, &w2, BLKDEV_WRITE, 7, 64, c); /* same block, after w1 */
	spin(t.pool);
	ok(!w1.done && !w2.done);
	/* Its own block reads as a hole; another block reads back; both without waiting. */
	submit(d1, &r1, BLKDEV_READ, 7, 128, rb1);
	submit(d1, &r2, BLKDEV_READ, 3, 128, rb2);
	spin(t.pool);
	ok(r1.done && r2.done);
	ok_eq(r1.rc, 0);
	ok_eq(r2.rc, 0);
	ok(all_bytes(rb1, KB64, 0));
	pattern(a, KB64, 103);
	ok(!memcmp(rb2, a, KB64));
	/* In place, and a FLUSH: they complete although earlier writes are queued. */
	pattern(e, KB64, 600);
	submit(d1, &wi, BLKDEV_WRITE, 2, 128, e);
	submit(d2, &fl, BLKDEV_FLUSH, 0, 0, NULL);
	spin(t.pool);
	ok(wi.done && fl.done);
	ok_eq(wi.rc, 0);
	ok_eq(fl.rc, 0);
	/* 0: no timer. Ten hours later they still wait. */
	thin_pool_set_no_space(t.pool, false, 0);
	plat_host_clock_advance(36000 * NSEC_PER_SEC);
	spin(t.pool);
	ok(!w1.done && !w2.done);
	ok_eq(thin_pool_get_status(t.pool, &st), 0);
	ok_eq(st.mode, THIN_POOL_OUT_OF_DATA_SPACE);
	ok_eq(st.queued_for_space, 2);
	ok(!st.no_space_timed_out);
	/* A delete frees a block: both run, in order, and the pool writes again. */
	thin_volume_close(v2);
	ok_eq(thin_pool_delete_thin(t.pool, 2), 0);
	spin(t.pool);
	ok(w1.done && w2.done);
	ok_eq(w1.rc, 0);
	ok_eq(w2.rc, 0);
	ok_eq(thin_pool_get_status(t.pool, &st), 0);
	ok_eq(st.mode, THIN_POOL_WRITE);
	ok_eq(st.queued_for_space, 0);
	memcpy(b, c, 32768);
	ok_eq(blkdev_read(d1, 7 * 128, 128, rb1), 0);
	ok(!memcmp(rb1, b, KB64));
	ok(block_is(d1, 2, 600, rb1));
	thin_volume_close(v1);
	ok_eq(check_dev(t.meta), 0);
	tpool_destroy(&t);
	free(a);
	free(b);
	free(c);
	free(e);
	free(rb1);
	free(rb2);
}

/* error_if_no_space fails at once; the policy changes on the running pool. */
TEST(out_of_space_error_if_no_space_and_runtime_change)
{
	struct tpool t;
	struct thin_pool_opts o;
	struct thin_volume *v1, *v2;
	struct blkdev *d1;
	struct waiter w;
	struct thin_pool_status st;
	uint8_t *a = malloc(KB64);
	char line[200];

	thin_pool_default_opts(&o);
	o.error_if_no_space = true;
	if (!fill8(&t, &o, &v1, &v2, a))
		return;
	d1 = thin_volume_blkdev(v1);
	submit(d1, &w, BLKDEV_WRITE, 7, 128, a);
	spin(t.pool);
	ok(w.done);
	ok_eq(w.rc, -ENOSPC);
	ok_eq(thin_pool_status_line(t.pool, line, sizeof(line)), 0);
	ok(strstr(line, " out_of_data_space discard_passdown error_if_no_space ") != NULL);
	/* Off: the next write queues (the timer counts from when the pool ran out). */
	thin_pool_set_no_space(t.pool, false, 60000);
	submit(d1, &w, BLKDEV_WRITE, 7, 128, a);
	spin(t.pool);
	ok(!w.done);
	ok_eq(thin_pool_get_status(t.pool, &st), 0);
	ok(!st.error_if_no_space);
	ok_eq(st.queued_for_space, 1);
	/* On again: the queued write fails at once. */
	thin_pool_set_no_space(t.pool, true, 60000);
	spin(t.pool);
	ok(w.done);
	ok_eq(w.rc, -ENOSPC);
	/* A shorter timeout that has already run out fires at the next poll. */
	thin_pool_set_no_space(t.pool, false, 0);
	submit(d1, &w, BLKDEV_WRITE, 7, 128, a);
	spin(t.pool);
	ok(!w.done);
	plat_host_clock_advance(10 * NSEC_PER_SEC);
	thin_pool_set_no_space(t.pool, false, 5000);
	spin(t.pool);
	ok(w.done);
	ok_eq(w.rc, -ENOSPC);
	thin_volume_close(v1);
	thin_volume_close(v2);
	ok_eq(check_dev(t.meta), 0);
	tpool_destroy(&t);
	free(a);
}

/*
 * Blocks written, discarded and written again in one transaction, then the pool filled:
 * the data space map's free count stays exact, so the -ENOSPC that follows is out of data
 * space (not taken for exhausted metadata: no read-only, no needs_check) and the status
 * counts every block. Whether the write then fails at once or waits (no_space_timeout),
 * deleting another volume serves it.
 */
TEST(rewrite_after_discard_then_full_is_out_of_data_space)
{
	struct tpool t;
	struct thin_volume *v1, *v2;
	struct blkdev *d1, *d2;
	struct thin_pool_status st;
	struct waiter w;
	uint8_t *a = malloc(KB64);

	if (!ok_eq(tpool_create(&t, 256, 16, NULL), 0))
		return;
	d2 = pool_vol_open(t.pool, 2, 4 * KB64, &v2);
	pattern(a, KB64, 1);
	ok_eq(blkdev_write(d2, 0, 128, a), 0);
	d1 = pool_vol_open(t.pool, 1, 32 * KB64, &v1);
	for (unsigned i = 0; i < 4; i++) {
		ok_eq(blkdev_write(d1, 0, 128, a), 0);
		ok_eq(blkdev_discard(d1, 0, 128), 0);
	}
	for (unsigned i = 0; i < 15; i++) {
		pattern(a, KB64, 100 + i);
		ok_eq(blkdev_write(d1, i * 128, 128, a), 0);
	}
	ok_eq(thin_pool_get_status(t.pool, &st), 0);
	ok_eq(st.mode, THIN_POOL_WRITE);
	ok_eq(st.data_used, 16);
	ok_eq(st.data_total, 16);

	ok_eq(waiter_submit(d1, &w, BLKDEV_WRITE, 20 * 128, 128, a), 0);
	for (int i = 0; i < 200 && !w.done; i++)
		thin_pool_poll(t.pool);
	if (w.done)
		ok_eq(w.rc, -ENOSPC);
	ok_eq(thin_pool_get_status(t.pool, &st), 0);
	ok_eq(st.mode, THIN_POOL_OUT_OF_DATA_SPACE);
	ok(!st.needs_check);
	ok_eq(st.data_used, 16);
	ok_eq(st.data_total, 16);
	ok(!thin_md_needs_check(thin_pool_md(t.pool)));
	/* Space comes back: the pool writes again. */
	thin_volume_close(v2);
	ok_eq(thin_pool_delete_thin(t.pool, 2), 0);
	for (int i = 0; i < 1000 && !w.done; i++)
		thin_pool_poll(t.pool);
	ok(w.done);
	if (w.rc)
		ok_eq(blkdev_write(d1, 20 * 128, 128, a), 0);
	ok_eq(blkdev_flush(d1), 0);
	ok_eq(thin_pool_get_status(t.pool, &st), 0);
	ok_eq(st.mode, THIN_POOL_WRITE);
	ok_eq(st.data_used, 16);
	thin_volume_close(v1);
	ok_eq(thin_pool_close(t.pool), 0);
	t.pool = NULL;
	ok_eq(check_dev(t.meta), 0);
	tpool_destroy(&t);
	free(a);
}

TEST(metadata_device_full_goes_read_only)
{
	struct tpool t;
	struct thin_volume *v;
	struct blkdev *d;
	struct thin_pool_status st;
	uint8_t *a = malloc(4096), *b = malloc(4096);
	uint64_t flushed_upto = 0, n;
	int r = 0;
	char line[200];

	/* 24 metadata blocks cannot map 4096 data blocks written 4 KiB at a time with a
	 * snapshot now and then (each one unshares the tree). */
	if (!ok_eq(tpool_create(&t, 24, 4096, NULL), 0))
		return;
	d = pool_vol_open(t.pool, 1, 4096ull * KB64, &v);
	for (n = 0; n < 4096; n++) {
		pattern(a, 4096, n + 1);
		r = blkdev_write(d, n * 128, 8, a);
		if (r)
			break;
		if (n % 64 == 63) {
			r = blkdev_flush(d);
			if (r)
				break;
			flushed_upto = n + 1;
		}
	}
	printf("  failed after %llu writes with %d\n", (unsigned long long)n, r);
	ok(r == -ENOSPC || r == -EIO);
	ok_eq(thin_pool_get_status(t.pool, &st), 0);
	ok_eq(st.mode, THIN_POOL_READ_ONLY);
	ok(st.needs_check);
	ok_eq(thin_pool_status_line(t.pool, line, sizeof(line)), 0);
	ok(strstr(line, " ro ") && strstr(line, " needs_check "));
	/* Reads keep working; what a completed flush covered is there. */
	for (uint64_t i = 0; i < flushed_upto; i++) {
		pattern(a, 4096, i + 1);
		ok_eq(blkdev_read(d, i * 128, 8, b), 0);
		if (memcmp(a, b, 4096)) {
			fail("block %llu lost", (unsigned long long)i);
			break;
		}
	}
	/* Writes needing a block are refused; admin calls too. */
	ok_eq(blkdev_write(d, 4000 * 128, 8, a), -EROFS);
	ok_eq(thin_pool_create_thin(t.pool, 9), -EROFS);
	thin_volume_close(v);
	ok_eq(thin_pool_close(t.pool), 0);
	ok_eq(check_dev(t.meta), 0);
	/* It reopens read-only (needs_check). */
	ok_eq(thin_pool_open(t.meta, t.data, NULL, NULL, 0, &t.pool), 0);
	ok_eq(thin_pool_get_status(t.pool, &st), 0);
	ok_eq(st.mode, THIN_POOL_READ_ONLY);
	tpool_destroy(&t);
	free(a);
	free(b);
}

TEST(metadata_write_error_read_only_needs_check)
{
	struct blkdev *lmeta, *meta, *data;
	struct thin_pool *pool;
	struct thin_volume *v;
	struct blkdev *d;
	struct thin_pool_status st;
	uint8_t *a = malloc(KB64), *b = malloc(KB64);

	ok_eq(memdisk_create(256, 4096, &lmeta), 0);
	ok_eq(faultdev_create(lmeta, &meta), 0);
	ok_eq(memdisk_create(32 * 128, 512, &data), 0);
	ok_eq(thin_pool_format(meta, data, NULL, false), 0);
	ok_eq(thin_pool_open(meta, data, NULL, NULL, 0, &pool), 0);
	d = pool_vol_open(pool, 1, 8 * KB64, &v);
	pattern(a, KB64, 1);
	ok_eq(blkdev_write(d, 0, 128, a), 0);
	ok_eq(blkdev_flush(d), 0);
	/* The next commit's first metadata write fails. */
	pattern(a, KB64, 2);
	ok_eq(blkdev_write(d, 128, 128, a), 0);
	faultdev_fail_nth(meta, BLKDEV_WRITE, 1, false);
	ok_eq(blkdev_flush(d), -EIO);
	ok(faultdev_fired(meta));
	ok_eq(thin_pool_get_status(pool, &st), 0);
	ok_eq(st.mode, THIN_POOL_READ_ONLY);
	ok(st.needs_check);
	/* Rolled back to the last commit: block 0 is there, block 1 (never flushed) not. */
	ok(block_is(d, 0, 1, b));
	ok_eq(blkdev_read(d, 128, 128, b), 0);
	ok(all_bytes(b, KB64, 0));
	/* In place to a mapped unshared block works; provisioning does not. */
	pattern(a, KB64, 3);
	ok_eq(blkdev_write(d, 0, 128, a), 0);
	ok(block_is(d, 0, 3, b));
	ok_eq(blkdev_write(d, 256, 1, a), -EROFS);
	/* Discards do nothing. */
	ok_eq(blkdev_discard(d, 0, 128), 0);
	ok(block_is(d, 0, 3, b));
	thin_volume_close(v);
	ok_eq(thin_pool_close(pool), 0);
	ok_eq(check_dev(lmeta), 0);
	blkdev_destroy(meta);
	blkdev_destroy(data);
	blkdev_destroy(lmeta);
	free(a);
	free(b);
}

TEST(sticky_metadata_error_fail_mode)
{
	struct blkdev *lmeta, *meta, *data;
	struct thin_pool *pool;
	struct thin_volume *v;
	struct blkdev *d;
	uint8_t *a = calloc(1, KB64);
	char line[64];

	ok_eq(memdisk_create(256, 4096, &lmeta), 0);
	ok_eq(faultdev_create(lmeta, &meta), 0);
	ok_eq(memdisk_create(32 * 128, 512, &data), 0);
	ok_eq(thin_pool_format(meta, data, NULL, false), 0);
	ok_eq(thin_pool_open(meta, data, NULL, NULL, 0, &pool), 0);
	d = pool_vol_open(pool, 1, 8 * KB64, &v);
	ok_eq(blkdev_write(d, 0, 128, a), 0);
	/* Every metadata write fails: the commit, then needs_check itself. */
	faultdev_fail_nth(meta, BLKDEV_WRITE, 1, true);
	ok_eq(blkdev_flush(d), -EIO);
	ok_eq(thin_pool_status_line(pool, line, sizeof(line)), 0);
	ok_eq(strcmp(line, "Fail"), 0);
	ok_eq(blkdev_read(d, 0, 128, a), -EIO);
	thin_volume_close(v);
	thin_pool_close(pool);
	blkdev_destroy(meta);
	blkdev_destroy(data);
	blkdev_destroy(lmeta);
	free(a);
}

TEST(read_only_option)
{
	struct tpool t;
	struct thin_pool_opts o;
	struct thin_volume *v;
	struct blkdev *d;
	uint8_t *a = malloc(KB64), *b = malloc(KB64);

	if (!ok_eq(tpool_create(&t, 256, 16, NULL), 0))
		return;
	d = pool_vol_open(t.pool, 1, 4 * KB64, &v);
	pattern(a, KB64, 5);
	ok_eq(blkdev_write(d, 0, 128, a), 0);
	thin_volume_close(v);
	ok_eq(thin_pool_close(t.pool), 0);
	o = t.o;
	o.read_only = true;
	ok_eq(thin_pool_open(t.meta, t.data, &o, NULL, 0, &t.pool), 0);
	ok_eq(thin_volume_open(t.pool, 1, 4 * KB64, false, &v), 0);
	d = thin_volume_blkdev(v);
	ok(block_is(d, 0, 5, b));
	ok_eq(blkdev_write(d, 128, 128, a), -EROFS);
	ok_eq(thin_pool_create_thin(t.pool, 2), -EROFS);
	thin_volume_close(v);
	/* A read-only volume refuses writes itself. */
	ok_eq(thin_volume_open(t.pool, 1, 4 * KB64, true, &v), 0);
	ok_eq(blkdev_write(thin_volume_blkdev(v), 0, 1, a), -EROFS);
	ok_eq(thin_volume_open(t.pool, 1, 4 * KB64, true, &v), -EBUSY);
	ok_eq(thin_pool_close(t.pool), -EBUSY);
	thin_volume_close(v);
	ok_eq(thin_volume_open(t.pool, 7, 4 * KB64, true, &v), -ENODATA);
	tpool_destroy(&t);
	free(a);
	free(b);
}
