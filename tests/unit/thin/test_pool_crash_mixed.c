/* SPDX-License-Identifier: MIT */
/*
 * Power cuts where the bugs live (issue 10, point 10): crashdev on both disks under a mixed
 * workload, cut at many events of either disk.
 *
 * The workload, on volumes of 8 data blocks and a data disk of 20 (so it runs full): writes
 * (sector-granular and whole blocks: provisioning, in place, copy-on-write after snapshots),
 * whole-block discards (shared and unshared; passdown is on, so a block nobody references
 * is discarded on the data disk), write-zeroes (whole blocks: unmap; partial: zeroes
 * written), FLUSH, FUA (write + flush), snapshots of any live volume, deletes, reserve and
 * release of the metadata snapshot, bursts of concurrent requests (a write, a FLUSH, and a
 * read whose completion submits a discard: see do_burst()), a block provisioned, discarded
 * and the device filled in one transaction, the pool running out of data space (a 1 ms
 * no-space timeout, then -ENOSPC) and, in every other workload, a data-disk flush that fails
 * once, losing every write in the disk's volatile cache (crashdev_fail_flush()). The data disk completes
 * requests out of order, across polls (pool_test.h's oodev over the crashdev).
 *
 * Each workload runs once without a cut (to count each disk's events: writes, discards and
 * flushes), then once per cut point: POINTS points spread evenly over each disk's events.
 *
 * After each cut (unflushed writes of both disks kept, dropped or torn): the core checker is
 * clean, the pool opens, needs_check is set only when a data flush failed (the injected one or
 * the cut), every device whose creation (deletion) was committed exists (does not), and every
 * sector of every device holds an allowed value (the model below). At every 16th cut point,
 * thin-provisioning-tools' thin_check runs on the metadata too. While the workload runs, the
 * only error allowed before the cut or the injected flush failure is -ENOSPC from a request
 * that needs a new block.
 *
 * The model, per device and per 512-byte sector:
 *   - durable: its value as of the last FLUSH to that device that completed successfully, or
 *     the last successful admin call (snapshot, delete), which commits the whole pool after
 *     flushing the data disk;
 *   - rec: every request issued to that device since (acknowledged or not), in order;
 *   - cur: what a read returns now (re-read from the pool after any request that failed
 *     without a cut, since a failed request may have changed part of its range and an abort
 *     returns the pool to its last commit).
 * After a cut a sector may read its durable value or the value of any request in rec that
 * covers it. A discard or write-zeroes is a request whose value is zeroes, which is exactly
 * what it guarantees: a whole block discarded (or zeroed) reads zeroes once the unmap is
 * committed; a cut before that commit restores the mapping, so the block reads its durable
 * data again (or zeroes, or a later write, if those were committed by another device's FLUSH
 * or an automatic commit) — never anything else. In particular a discard passed down to the
 * data disk must not destroy data a committed mapping still points at. A partial discard
 * does nothing (dm), so the workload discards whole blocks only.
 * A FLUSH that completes successfully while acknowledged writes of its device no longer read
 * back (an abort dropped them, or the failing flush lost them from the disk's cache) is an
 * error in itself: it acknowledges writes that did not survive (dm fails every FLUSH once
 * read-only).
 */
#include "core/base/plat.h"
#include "tests/support/pool_test.h"

#include <time.h>

#define SPB	    128u	       /* sectors per data block (64 KiB) */
#define VOL_BLOCKS  8u		       /* data blocks per volume */
#define VS	    (SPB * VOL_BLOCKS) /* sectors per volume */
#define DATA_BLOCKS 20u		       /* the data disk: the workload runs it full */
#define META_BLOCKS 512u	       /* 4 KiB blocks */
#define MAX_DEVS    24u		       /* devices ever created in one workload */
#define MAX_LIVE    4u		       /* volumes open at once */
#define MAX_REC	    128u
#define OPS	    150u
#define WORKLOADS   7u
#define POINTS	    176u /* cut points per workload and disk */

enum dev_state {
	DEV_LIVE,	/* creation committed, no delete tried: must exist */
	DEV_MAYBE_BORN, /* creation failed: may exist (then as modelled) */
	DEV_MAYBE_GONE, /* delete failed: may still exist (then as modelled) */
	DEV_GONE,	/* delete committed: must not exist */
};

struct rec {
	uint16_t start, count;
	uint32_t tag; /* 0: zeroes (discard, write-zeroes) */
};

struct mdev {
	unsigned id; /* thin device id */
	enum dev_state state;
	struct thin_volume *vol; /* open while live in the workload */
	bool dropped;		 /* acknowledged writes since the last flush no longer read back */
	bool untracked;		 /* cur is unknown (a re-read failed) */
	uint32_t durable[VS], cur[VS];
	struct rec rec[MAX_REC];
	unsigned nrec;
	bool overflow;
};

struct model {
	struct mdev dev[MAX_DEVS];
	unsigned ndev;
	unsigned next_id;
	uint32_t tag;
	bool held; /* metadata snapshot reserved */
};

/* What one run did, for the report and the checks after the cut. */
struct run {
	struct blkdev *cmeta, *cdata;
	uint64_t seed;	   /* the workload */
	uint64_t fail_nth; /* data flush that fails (0: none) */
	bool full;	   /* a request got -ENOSPC: delete something soon */
	unsigned enospc, fails, snaps, deletes, discards, zeroes, flushes, bursts, mdsnaps, fills;
};

/*
 * CRASH_MIXED_SKIP (a list of words) leaves parts of the workload out, to tell apart the
 * failures of different bugs while they are being fixed: "passdown" (discard passdown off),
 * "cowdiscard" (no snapshot / copy-on-write / discard sequence), "failflush" (no failing data
 * flush), "burst" (no concurrent bursts), "full" (a data disk big enough never to run
 * full). Unset (as in `make test`), everything runs.
 */
static bool skip(const char *part)
{
	const char *e = getenv("CRASH_MIXED_SKIP");

	return e && strstr(e, part);
}

static uint64_t data_blocks(void)
{
	return skip("full") ? 3 * DATA_BLOCKS : DATA_BLOCKS;
}

static void sector_data(uint8_t *buf, uint32_t sector, uint32_t tag)
{
	if (!tag)
		memset(buf, 0, 512);
	else
		pattern(buf, 512, ((uint64_t)tag << 32) | sector);
}

static bool is_cut(struct run *rn)
{
	return crashdev_tripped(rn->cmeta) || crashdev_tripped(rn->cdata);
}

/* The error of a request is allowed: after the cut or the injected flush failure anything;
 * before, only -ENOSPC from a request that needed a block. */
static void allowed(struct run *rn, int r, bool may_need_space, const char *what)
{
	if (!r || is_cut(rn) || crashdev_flush_failed(rn->cdata))
		return;
	if (r == -ENOSPC && may_need_space) {
		rn->enospc++;
		rn->full = true;
		return;
	}
	fail("%s failed with %d before any cut or flush failure (seed %llu)", what, r,
	     (unsigned long long)rn->seed);
}

static void add_rec(struct mdev *d, uint32_t start, uint32_t count, uint32_t tag)
{
	if (d->nrec == MAX_REC) {
		d->overflow = true;
		return;
	}
	d->rec[d->nrec].start = (uint16_t)start;
	d->rec[d->nrec].count = (uint16_t)count;
	d->rec[d->nrec].tag = tag;
	d->nrec++;
}

static void made_durable(struct mdev *d)
{
	if (d->untracked)
		return; /* cur unknown: keep the older, looser candidates */
	memcpy(d->durable, d->cur, sizeof(d->cur));
	d->nrec = 0;
	d->overflow = false;
	d->dropped = false;
}

/* Does @got match one of the values sector @s of @d may hold? */
static bool sector_allowed(const struct mdev *d, uint32_t s, const uint8_t *got, bool with_cur)
{
	uint8_t want[512];

	sector_data(want, s, d->durable[s]);
	if (!memcmp(want, got, 512))
		return true;
	if (with_cur && !d->untracked) {
		sector_data(want, s, d->cur[s]);
		if (!memcmp(want, got, 512))
			return true;
	}
	if (d->overflow)
		return true; /* too many requests to track: only the durable values are checked */
	for (unsigned i = d->nrec; i-- > 0;) {
		if (s < d->rec[i].start || s >= d->rec[i].start + d->rec[i].count)
			continue;
		sector_data(want, s, d->rec[i].tag);
		if (!memcmp(want, got, 512))
			return true;
	}
	return false;
}

/* Which tag is @got for sector @s, among cur, durable and rec? (-1: none) */
static int64_t which_tag(const struct mdev *d, uint32_t s, const uint8_t *got)
{
	uint8_t want[512];

	sector_data(want, s, d->cur[s]);
	if (!memcmp(want, got, 512))
		return d->cur[s];
	sector_data(want, s, d->durable[s]);
	if (!memcmp(want, got, 512))
		return d->durable[s];
	for (unsigned i = d->nrec; i-- > 0;) {
		if (s < d->rec[i].start || s >= d->rec[i].start + d->rec[i].count)
			continue;
		sector_data(want, s, d->rec[i].tag);
		if (!memcmp(want, got, 512))
			return d->rec[i].tag;
	}
	return -1;
}

/*
 * A request failed without a cut: re-read every live device (only [@start, +@count) of
 * @failed with @narrow) to learn what it holds now. Each sector must hold an allowed value;
 * a sector outside [@start, +@count) of @failed that lost its acknowledged value means
 * acknowledged writes were lost (an abort, or the disk's cache).
 */
static void resync(struct model *m, struct run *rn, struct mdev *failed, uint32_t start,
		   uint32_t count, bool narrow)
{
	uint8_t *buf = malloc(VS * 512);

	for (unsigned i = 0; i < m->ndev && buf; i++) {
		struct mdev *d = &m->dev[i];
		uint32_t lo = 0, n = VS;

		if (!d->vol || (narrow && d != failed))
			continue;
		if (narrow) {
			lo = start;
			n = count;
		}
		if (blkdev_read(thin_volume_blkdev(d->vol), lo, n, buf + (size_t)lo * 512)) {
			d->untracked = true;
			continue;
		}
		for (uint32_t s = lo; s < lo + n; s++) {
			int64_t t = which_tag(d, s, buf + (size_t)s * 512);

			if (t < 0) {
				if (!is_cut(rn))
					fail(
					    "device %u sector %u reads a value never written there "
					    "(seed %llu)",
					    d->id, s, (unsigned long long)rn->seed);
				d->untracked = true;
				break;
			}
			if ((uint32_t)t != d->cur[s] &&
			    !(d == failed && s >= start && s < start + count))
				d->dropped = true;
			d->cur[s] = (uint32_t)t;
		}
	}
	free(buf);
}

/* Issue one request of @op on @d synchronously; the model follows. */
static int do_io(struct model *m, struct run *rn, struct mdev *d, enum blkdev_op op, uint32_t start,
		 uint32_t count, bool may_need_space, const char *what)
{
	struct blkdev *bd = thin_volume_blkdev(d->vol);
	uint8_t *buf = NULL;
	uint32_t tag = 0;
	int r;

	if (op == BLKDEV_WRITE) {
		tag = ++m->tag;
		buf = malloc((size_t)count * 512);
		if (!buf)
			return -ENOMEM;
		for (uint32_t s = 0; s < count; s++)
			sector_data(buf + (size_t)s * 512, start + s, tag);
	}
	add_rec(d, start, count, tag);
	if (op == BLKDEV_WRITE)
		r = blkdev_write(bd, start, count, buf);
	else if (op == BLKDEV_DISCARD)
		r = blkdev_discard(bd, start, count);
	else
		r = blkdev_write_zeroes(bd, start, count);
	free(buf);
	allowed(rn, r, may_need_space, what);
	if (!r && op == BLKDEV_DISCARD && crashdev_flush_failed(rn->cdata)) {
		/* The failed data flush made the pool read-only, where a discard does nothing
		 * (dm): it succeeds and leaves the data. Learn which. */
		resync(m, rn, d, start, count, true);
	} else if (!r) {
		for (uint32_t s = 0; s < count; s++)
			d->cur[start + s] = tag;
	} else if (!is_cut(rn)) {
		rn->fails++;
		/* Refused for space or read-only mode: nothing outside the range changed. */
		resync(m, rn, d, start, count, r == -ENOSPC || r == -EROFS);
	}
	return r;
}

static int do_flush(struct model *m, struct run *rn, struct mdev *d)
{
	int r = blkdev_flush(thin_volume_blkdev(d->vol));

	rn->flushes++;
	allowed(rn, r, false, "FLUSH");
	if (!r) {
		if (d->dropped)
			fail("FLUSH to device %u succeeded though acknowledged writes since its "
			     "last flush no longer read back (seed %llu)",
			     d->id, (unsigned long long)rn->seed);
		made_durable(d);
	} else if (!is_cut(rn)) {
		rn->fails++;
		resync(m, rn, NULL, 0, 0, false);
	}
	return r;
}

/* An admin call succeeded: it flushed the data disk and committed everything. */
static void all_durable(struct model *m)
{
	for (unsigned i = 0; i < m->ndev; i++)
		if (m->dev[i].vol)
			made_durable(&m->dev[i]);
}

static unsigned live_count(const struct model *m)
{
	unsigned n = 0;

	for (unsigned i = 0; i < m->ndev; i++)
		n += m->dev[i].vol != NULL;
	return n;
}

static struct mdev *pick_live(struct model *m, uint64_t *seed)
{
	unsigned n = live_count(m), k;

	if (!n)
		return NULL;
	k = (unsigned)(test_rand(seed) % n);
	for (unsigned i = 0; i < m->ndev; i++)
		if (m->dev[i].vol && !k--)
			return &m->dev[i];
	return NULL;
}

static int do_snapshot(struct thin_pool *pool, struct model *m, struct run *rn, struct mdev *origin)
{
	struct mdev *d;
	int r;

	if (m->ndev == MAX_DEVS || live_count(m) == MAX_LIVE)
		return 0;
	d = &m->dev[m->ndev++];
	/* The snapshot holds what the origin holds: the same candidates. */
	memcpy(d, origin, sizeof(*d));
	d->id = m->next_id++;
	d->vol = NULL;
	d->state = DEV_MAYBE_BORN;
	r = thin_pool_create_snap(pool, d->id, origin->id);
	allowed(rn, r, false, "snapshot");
	if (r) {
		if (!is_cut(rn))
			resync(m, rn, NULL, 0, 0, false);
		return r;
	}
	rn->snaps++;
	all_durable(m);
	made_durable(d);
	d->state = DEV_LIVE;
	r = thin_volume_open(pool, d->id, VS * 512ull, false, &d->vol);
	allowed(rn, r, false, "open of a new snapshot");
	return r;
}

static int do_delete(struct thin_pool *pool, struct model *m, struct run *rn, struct mdev *d)
{
	int r;

	if (live_count(m) < 2)
		return 0;
	thin_volume_close(d->vol);
	d->vol = NULL;
	d->state = DEV_MAYBE_GONE;
	r = thin_pool_delete_thin(pool, d->id);
	allowed(rn, r, false, "delete");
	if (r) {
		if (!is_cut(rn))
			resync(m, rn, NULL, 0, 0, false);
		return r;
	}
	rn->deletes++;
	d->state = DEV_GONE;
	all_durable(m);
	return 0;
}

/*
 * A burst of concurrent requests, as an NBD client pipelines them: a write into one block, a
 * FLUSH, and a read of another block whose completion submits a discard of that block. The
 * read's data I/O and the commit's data flush are in flight together on the out-of-order
 * data disk, so the discard often arrives while the commit's data flush is in flight (the
 * window of point 4: the discard's passdown hold must not be committed).
 */
struct burst_req {
	struct blkdev_req req;
	bool done;
	int rc;
	struct blkdev *then_dev; /* on completion, submit @then there */
	struct burst_req *then;
};

static void burst_done(struct blkdev_req *req, int rc)
{
	struct burst_req *b = container_of(req, struct burst_req, req);

	b->done = true;
	b->rc = rc;
	if (b->then && blkdev_submit(b->then_dev, &b->then->req)) {
		b->then->done = true;
		b->then->rc = -EIO;
	}
}

static int do_burst(struct thin_pool *pool, struct model *m, struct run *rn, uint64_t *seed)
{
	struct mdev *fd = pick_live(m, seed), *dd = pick_live(m, seed), *wd = pick_live(m, seed);
	uint32_t db = (uint32_t)(test_rand(seed) % VOL_BLOCKS);
	uint32_t wb = (db + 1 + (uint32_t)(test_rand(seed) % (VOL_BLOCKS - 1))) % VOL_BLOCKS;
	uint32_t wcnt = 1 + (uint32_t)(test_rand(seed) % 16);
	uint32_t wstart = wb * SPB + (uint32_t)(test_rand(seed) % (SPB - wcnt + 1));
	uint32_t tag = ++m->tag;
	struct burst_req b[4]; /* write, flush, read, discard */
	uint8_t *buf = malloc((size_t)wcnt * 512), *rbuf = malloc(SPB * 512);
	uint32_t before[VS];
	uint64_t deadline = plat_now_ns() + 60000000000ull;
	bool lost_before = crashdev_flush_failed(rn->cdata);
	int r = 0;

	if (!buf || !rbuf) {
		free(buf);
		free(rbuf);
		return -ENOMEM;
	}
	rn->bursts++;
	for (uint32_t s = 0; s < wcnt; s++)
		sector_data(buf + (size_t)s * 512, wstart + s, tag);
	memset(b, 0, sizeof(b));
	b[0].req.op = BLKDEV_WRITE;
	b[0].req.block = wstart;
	b[0].req.count = wcnt;
	b[0].req.buf = buf;
	b[1].req.op = BLKDEV_FLUSH;
	b[2].req.op = BLKDEV_READ;
	b[2].req.block = db * SPB;
	b[2].req.count = SPB;
	b[2].req.buf = rbuf;
	b[2].then = &b[3];
	b[2].then_dev = thin_volume_blkdev(dd->vol);
	b[3].req.op = BLKDEV_DISCARD;
	b[3].req.block = db * SPB;
	b[3].req.count = SPB;
	for (int i = 0; i < 4; i++)
		b[i].req.done = burst_done;
	memcpy(before, fd->cur, sizeof(before));
	add_rec(wd, wstart, wcnt, tag);
	for (int i = 0; i < 3; i++) {
		struct mdev *d = i == 0 ? wd : i == 1 ? fd : dd;

		if (blkdev_submit(thin_volume_blkdev(d->vol), &b[i].req)) {
			b[i].done = true;
			b[i].rc = -EIO;
			if (b[i].then) {
				b[i].then->done = true;
				b[i].then->rc = -EIO;
			}
		}
	}
	while (!(b[0].done && b[1].done && b[2].done && b[3].done)) {
		if (!thin_pool_poll(pool) && !thin_pool_busy(pool))
			plat_udelay(100);
		if (plat_now_ns() > deadline) {
			fail("burst did not complete (seed %llu)", (unsigned long long)rn->seed);
			free(buf);
			free(rbuf);
			return -ETIMEDOUT; /* leaks the requests: the test has failed anyway */
		}
	}
	free(buf);
	allowed(rn, b[0].rc, true, "burst write");
	allowed(rn, b[1].rc, false, "burst FLUSH");
	allowed(rn, b[2].rc, false, "burst read");
	allowed(rn, b[3].rc, false, "burst discard");
	/* Nothing else touched the block read: it reads what the model says it holds now,
	 * unless the data disk lost its cache during the burst (the failing flush): then the
	 * read may see the older values the failure brought back (checked by the resync). */
	for (uint32_t s = 0; s < SPB && !b[2].rc && !dd->untracked && !is_cut(rn) &&
			     (lost_before || !crashdev_flush_failed(rn->cdata));
	     s++) {
		uint8_t want[512];

		sector_data(want, db * SPB + s, dd->cur[db * SPB + s]);
		if (memcmp(want, rbuf + (size_t)s * 512, 512)) {
			fail("burst read of device %u sector %u: not its current value (seed %llu)",
			     dd->id, db * SPB + s, (unsigned long long)rn->seed);
			break;
		}
	}
	free(rbuf);
	/* The FLUSH covers what completed before it was submitted, not its companions. */
	if (!b[1].rc) {
		if (fd->dropped)
			fail("burst FLUSH to device %u succeeded though acknowledged writes since "
			     "its last flush no longer read back (seed %llu)",
			     fd->id, (unsigned long long)rn->seed);
		if (!fd->untracked) {
			memcpy(fd->durable, before, sizeof(before));
			fd->nrec = 0;
			fd->overflow = false;
			fd->dropped = false;
			if (fd == wd)
				add_rec(wd, wstart, wcnt, tag);
		}
	}
	add_rec(dd, db * SPB, SPB, 0);
	if (!b[0].rc)
		for (uint32_t s = 0; s < wcnt; s++)
			wd->cur[wstart + s] = tag;
	if (!b[3].rc && crashdev_flush_failed(rn->cdata))
		resync(m, rn, dd, db * SPB, SPB, true); /* read-only: the discard did nothing */
	else if (!b[3].rc)
		for (uint32_t s = 0; s < SPB; s++)
			dd->cur[db * SPB + s] = 0;
	for (int i = 0; i < 4; i++)
		if (b[i].rc && !r)
			r = b[i].rc;
	if (r && !is_cut(rn)) {
		rn->fails++;
		resync(m, rn, wd, wstart, wcnt, false);
	}
	return r;
}

/* The workload; stops at the cut. */
static void workload(struct thin_pool *pool, struct model *m, struct run *rn)
{
	uint64_t seed = rn->seed;

	for (unsigned op = 0; op < OPS && !is_cut(rn) && !test_failed(); op++) {
		unsigned kind = (unsigned)(test_rand(&seed) % 100);
		struct mdev *d = pick_live(m, &seed);
		uint32_t blk = (uint32_t)(test_rand(&seed) % VOL_BLOCKS);
		uint32_t nb = 1 + (uint32_t)(test_rand(&seed) % 2);
		uint32_t cnt = 1 + (uint32_t)(test_rand(&seed) % 40);
		uint32_t start = (uint32_t)(test_rand(&seed) % (VS - cnt + 1));

		if (!d)
			break;
		if (blk + nb > VOL_BLOCKS)
			nb = 1;
		if (rn->full && kind % 2 && live_count(m) > 1) {
			/* Full: a delete makes space (and the pool leaves out-of-data-space). */
			rn->full = false;
			do_delete(pool, m, rn, d->id == 1 ? pick_live(m, &seed) : d);
			continue;
		}
		if (kind < 34) {
			do_io(m, rn, d, BLKDEV_WRITE, start, cnt, true, "write");
		} else if (kind < 42) {
			do_io(m, rn, d, BLKDEV_WRITE, blk * SPB, SPB, true, "block write");
		} else if (kind < 52) {
			rn->discards++;
			do_io(m, rn, d, BLKDEV_DISCARD, blk * SPB, nb * SPB, false, "discard");
		} else if (kind < 57) {
			rn->zeroes++;
			do_io(m, rn, d, BLKDEV_WRITE_ZEROES, blk * SPB, nb * SPB, false,
			      "write-zeroes");
		} else if (kind < 62) {
			/* Partial at both ends: zeroes written in place or copied. */
			rn->zeroes++;
			do_io(m, rn, d, BLKDEV_WRITE_ZEROES, start % (VS - cnt - SPB + 1),
			      cnt + SPB, true, "partial write-zeroes");
		} else if (kind < 72) {
			do_flush(m, rn, d);
		} else if (kind < 78) {
			/* FUA as the NBD server does it: the write, then a flush. */
			if (!do_io(m, rn, d, BLKDEV_WRITE, start, cnt, true, "FUA write"))
				do_flush(m, rn, d);
		} else if (kind < 82) {
			do_snapshot(pool, m, rn, d);
		} else if (kind < 85 && !skip("cowdiscard")) {
			/* Snapshot, copy-on-write in the origin, discard the snapshot's (old)
			 * block: nobody references it any more, passdown discards it while the
			 * committed mappings still point at it (issue 10, point 3). */
			unsigned nd = m->ndev;
			struct mdev *snap;

			if (do_snapshot(pool, m, rn, d) || m->ndev == nd)
				continue;
			snap = &m->dev[nd];
			if (!snap->vol)
				continue;
			if (!do_io(m, rn, d, BLKDEV_WRITE, blk * SPB + cnt % SPB, 1, true,
				   "copy-on-write"))
				do_io(m, rn, snap, BLKDEV_DISCARD, blk * SPB, SPB, false,
				      "snapshot discard");
		} else if (kind < 89) {
			do_delete(pool, m, rn, d);
		} else if (kind < 91) {
			int r;

			rn->mdsnaps++;
			if (m->held)
				r = thin_pool_release_metadata_snap(pool);
			else
				r = thin_pool_reserve_metadata_snap(pool);
			allowed(rn, r, false,
				m->held ? "release-metadata-snap" : "reserve-metadata-snap");
			if (!r)
				m->held = !m->held;
			else if (!is_cut(rn))
				resync(m, rn, NULL, 0, 0, false);
		} else if (kind < 95) {
			/* Provision a block and discard it, then write every block of the
			 * device, all in one transaction: the discarded block is allocated
			 * again, and with enough devices the pool runs full. */
			rn->fills++;
			do_io(m, rn, d, BLKDEV_WRITE, blk * SPB, SPB, true, "fill write");
			do_io(m, rn, d, BLKDEV_DISCARD, blk * SPB, SPB, false, "fill discard");
			for (uint32_t b = 0; b < VOL_BLOCKS && !is_cut(rn) && !test_failed(); b++)
				if (do_io(m, rn, d, BLKDEV_WRITE, b * SPB, SPB, true, "fill write"))
					break;
		} else if (!skip("burst")) {
			do_burst(pool, m, rn, &seed);
		}
	}
}

static void close_all(struct model *m)
{
	for (unsigned i = 0; i < m->ndev; i++) {
		if (m->dev[i].vol)
			thin_volume_close(m->dev[i].vol);
		m->dev[i].vol = NULL;
	}
}

/* After the cut: reopen on the lower disks and check everything. */
static void verify(struct blkdev *lmeta, struct blkdev *ldata, struct model *m, struct run *rn,
		   bool flush_failed, const char *what)
{
	struct thin_pool *pool;
	struct thin_pool_status st;
	uint8_t *buf = malloc(VS * 512);
	char why[200] = "";
	unsigned bad = 0;
	int r;

	if (!ok_eq(check_dev(lmeta), 0)) {
		printf("  after %s\n", what);
		free(buf);
		return;
	}
	r = thin_pool_open(lmeta, ldata, NULL, why, sizeof(why), &pool);
	if (!ok_eq(r, 0)) {
		printf("  open after %s: %s\n", what, why);
		free(buf);
		return;
	}
	ok_eq(thin_pool_get_status(pool, &st), 0);
	if (st.needs_check && !flush_failed)
		fail("%s: needs_check set though no data flush failed", what);
	for (unsigned i = 0; i < m->ndev && buf; i++) {
		struct mdev *d = &m->dev[i];
		struct thin_volume *vol;

		r = thin_volume_open(pool, d->id, VS * 512ull, true, &vol);
		if (r == -ENODATA) {
			if (d->state == DEV_LIVE)
				fail("%s: device %u lost (its creation was committed)", what,
				     d->id);
			continue;
		}
		if (!ok_eq(r, 0))
			continue;
		if (d->state == DEV_GONE)
			fail("%s: device %u exists (its delete was committed)", what, d->id);
		ok_eq(blkdev_read(thin_volume_blkdev(vol), 0, VS, buf), 0);
		for (uint32_t s = 0; s < VS; s++) {
			if (sector_allowed(d, s, buf + (size_t)s * 512, false))
				continue;
			if (bad++ < 5)
				fail("%s: device %u sector %u (block %u) holds neither its durable "
				     "value (tag %u) nor a later one%s",
				     what, d->id, s, s / SPB, d->durable[s],
				     all_bytes(buf + (size_t)s * 512, 512, 0) ? " (zeroes)" : "");
		}
		thin_volume_close(vol);
	}
	ok_eq(thin_pool_close(pool), 0);
	free(buf);
}

struct totals {
	uint64_t runs, trips, tpt, enospc, fails, flush_fails;
};

/*
 * One run: garbage on the data disk (a block whose data write was lost must not read as
 * zeroes by luck), format, thin 1, arm the cut (@cut_meta, @n; 0 = none), the workload,
 * the power cut, the checks. @ev gets the events of the metadata disk, of the data disk, and
 * the data disk's flushes.
 */
static void one_run(struct blkdev *lmeta, struct blkdev *ldata, uint64_t wseed, uint64_t fail_nth,
		    int cut_meta, uint64_t n, const char *meta_path, struct totals *t,
		    uint64_t ev[3])
{
	struct model *m = calloc(1, sizeof(*m));
	struct run rn = { .seed = wseed, .fail_nth = fail_nth };
	struct thin_pool_opts o;
	struct thin_pool *pool;
	struct oodev *oo = calloc(1, sizeof(*oo));
	uint8_t *junk = malloc(KB64);
	char what[160];
	bool flush_failed, tripped, injected;

	for (uint64_t b = 0; b < data_blocks(); b++) {
		pattern(junk, KB64, 0xbad0000ull + b);
		blkdev_write(ldata, b * SPB, SPB, junk);
	}
	free(junk);
	thin_pool_default_opts(&o);
	o.discard_passdown = !skip("passdown");
	o.no_space_timeout_ms = 1;	    /* queue briefly, then -ENOSPC */
	o.commit_interval_ms = 3600 * 1000; /* no timed commits: the run is deterministic */
	ok_eq(crashdev_create(lmeta, &rn.cmeta), 0);
	ok_eq(crashdev_create(ldata, &rn.cdata), 0);
	/* A power cut stops both disks: the pool cannot record anything after it. */
	crashdev_share_power(rn.cmeta, rn.cdata);
	ok_eq(thin_pool_format(rn.cmeta, rn.cdata, &o, true), 0);
	/* The data disk completes requests out of order, across polls (a virtio queue): a
	 * commit's data flush stays in flight while other requests arrive. */
	oodev_init(oo, rn.cdata, wseed);
	ok_eq(thin_pool_open(rn.cmeta, &oo->dev, &o, NULL, 0, &pool), 0);
	ok_eq(thin_pool_create_thin(pool, 1), 0);
	m->next_id = 2;
	m->ndev = 1;
	m->dev[0].id = 1;
	m->dev[0].state = DEV_LIVE;
	ok_eq(thin_volume_open(pool, 1, VS * 512ull, false, &m->dev[0].vol), 0);
	if (fail_nth)
		crashdev_fail_flush(rn.cdata, fail_nth);
	if (n)
		crashdev_cut_at(cut_meta ? rn.cmeta : rn.cdata, n);
	workload(pool, m, &rn);
	tripped = is_cut(&rn);
	injected = crashdev_flush_failed(rn.cdata);
	flush_failed = injected || crashdev_tripped(rn.cdata);
	ev[0] = crashdev_events(rn.cmeta);
	ev[1] = crashdev_events(rn.cdata);
	ev[2] = ev[1] - crashdev_writes(rn.cdata);
	close_all(m);
	/* Whatever state the pool is in, its memory goes away with the power. */
	thin_pool_close(pool);
	free(oo);
	crashdev_power_cut(rn.cmeta, wseed ^ n ^ 1);
	crashdev_power_cut(rn.cdata, wseed ^ n ^ 2);
	blkdev_destroy(rn.cmeta);
	blkdev_destroy(rn.cdata);
	snprintf(what, sizeof(what), "workload %llu%s, cut on %s at event %llu",
		 (unsigned long long)wseed, fail_nth ? " (failing data flush)" : "",
		 cut_meta ? "meta" : "data", (unsigned long long)n);
	verify(lmeta, ldata, m, &rn, flush_failed, what);
	if (meta_path && !test_failed()) {
		if (dev_to_file(lmeta, meta_path) || tpt_check(meta_path, NULL))
			fail("%s: thin_check", what);
		t->tpt++;
	}
	if (test_failed())
		printf("  %s: %u ENOSPC, %u snapshots, %u deletes, %u discards, %u zeroes, %u "
		       "flushes, %u bursts, %u metadata snapshot calls, %u fills\n",
		       what, rn.enospc, rn.snaps, rn.deletes, rn.discards, rn.zeroes, rn.flushes,
		       rn.bursts, rn.mdsnaps, rn.fills);
	t->runs++;
	t->trips += tripped;
	t->enospc += rn.enospc;
	t->fails += rn.fails;
	t->flush_fails += injected;
	free(m);
}

TEST(mixed_workload_power_cuts)
{
	struct blkdev *lmeta, *ldata;
	struct totals t = { 0 };
	uint64_t seed = test_seed();
	struct timespec t0, t1;
	char path[512];
	bool tools = !system("PATH=$PATH:/usr/sbin:/sbin command -v thin_check >/dev/null 2>&1");

	clock_gettime(CLOCK_MONOTONIC, &t0);
	snprintf(path, sizeof(path), "%s/mixed-meta.img", test_tmpdir());
	ok_eq(memdisk_create(META_BLOCKS, 4096, &lmeta), 0);
	ok_eq(memdisk_create(data_blocks() * SPB, 512, &ldata), 0);
	for (unsigned w = 0; w < WORKLOADS && !test_failed(); w++) {
		uint64_t wseed = seed + w * 1000003ull, fail_nth = 0, ev[3];

		/* A dry run counts the events; odd workloads then fail a data flush two thirds
		 * of the way through theirs (and count again). */
		one_run(lmeta, ldata, wseed, 0, 0, 0, NULL, &t, ev);
		if (w % 2 && !skip("failflush")) {
			fail_nth = 1 + ev[2] * 2 / 3;
			one_run(lmeta, ldata, wseed, fail_nth, 0, 0, NULL, &t, ev);
		}
		for (int cut_meta = 0; cut_meta < 2 && !test_failed(); cut_meta++) {
			uint64_t total = cut_meta ? ev[0] : ev[1];
			uint64_t k = MIN(total + 1, (uint64_t)POINTS);

			/* k cut points spread evenly over events 1 .. total + 1 (after the last). */
			for (uint64_t i = 0; i < k && !test_failed(); i++) {
				uint64_t n = 1 + i * (total + 1) / k;
				bool sample = tools && t.runs % 16 == 0;
				uint64_t e[3];

				one_run(lmeta, ldata, wseed, fail_nth, cut_meta, n,
					sample ? path : NULL, &t, e);
			}
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("  %llu runs (%llu cut during the workload, %llu with a failed data flush), "
	       "%llu thin_check runs%s, %llu ENOSPC, %llu other failed requests, %.1f s\n",
	       (unsigned long long)t.runs, (unsigned long long)t.trips,
	       (unsigned long long)t.flush_fails, (unsigned long long)t.tpt,
	       tools ? "" : " (thin_check not installed)", (unsigned long long)t.enospc,
	       (unsigned long long)t.fails,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	ok(t.runs >= 2000 || test_failed());
	ok(t.trips > t.runs / 2 || test_failed());
	blkdev_destroy(ldata);
	blkdev_destroy(lmeta);
}
