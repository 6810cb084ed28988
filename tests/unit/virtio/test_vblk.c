/* SPDX-License-Identifier: MIT */
/*
 * The virtio-blk driver's request state machine on the host: a device double backed by a
 * memory disk answers through the fake transport (vdev_double.c). Covered: configuration
 * (capacity, block size, read-only, limits), synchronous and asynchronous I/O with many
 * requests in flight completed out of order, range and read-only refusals, the status byte
 * mapping, FLUSH/DISCARD/WRITE_ZEROES, splitting, segment-list WRITEs (the descriptors the
 * device sees, the seg_max cap, a block beyond it or a list beyond the ring bounced), and a
 * device that never answers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/plat.h"
#include "core/base/util.h"
#include "drivers/virtio-blk/vblk.h"
#include "tests/support/harness.h"
#include "tests/support/vdev_double.h"

enum blk_mode {
	BLK_IMMEDIATE, /* finish every request when notified */
	BLK_HOLD,      /* take requests when notified, finish them when the test says */
	BLK_DEAD,      /* never look at the queue */
};

struct blkdouble {
	struct vdd d;
	uint8_t *disk;
	uint64_t sectors;
	enum blk_mode mode;
	int force_status; /* >= 0: answer every request with this status (0xff: leave it) */
	struct vdd_chain held[512];
	unsigned nheld;
	unsigned requests, flushes, discards, wzeroes, max_segs;
	struct vdd_chain last; /* the last chain executed */
	unsigned indirect;     /* chains that came as an indirect table */
	uint64_t last_dwz_sector;
	uint32_t last_dwz_count, last_dwz_flags;
};

static struct blkdouble *to_bd(struct vdd *d)
{
	return (struct blkdouble *)d;
}

/* Carry out one request the way QEMU does (§5.2.6.1 device requirements). */
static void bd_execute(struct blkdouble *bd, struct vdd_chain *c)
{
	struct virtio_blk_outhdr *h = (void *)(uintptr_t)c->seg[0].addr;
	uint8_t *status = (void *)(uintptr_t)c->seg[c->n - 1].addr;
	uint32_t type = le32_to_cpu(h->type), written = 1;
	uint64_t sector = le64_to_cpu(h->sector);
	uint8_t st = VIRTIO_BLK_S_OK;

	bd->requests++;
	bd->last = *c;
	bd->indirect += c->indirect;
	if (c->n - 2 > bd->max_segs)
		bd->max_segs = c->n - 2;
	if (c->seg[0].len != sizeof(*h) || c->seg[0].write || !c->seg[c->n - 1].write ||
	    c->seg[c->n - 1].len != 1) {
		st = VIRTIO_BLK_S_IOERR;
	} else if (type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_OUT) {
		uint64_t off = sector * 512;

		for (unsigned i = 1; i + 1 < c->n; i++) {
			void *p = (void *)(uintptr_t)c->seg[i].addr;
			uint32_t len = c->seg[i].len;

			if (c->seg[i].write != (type == VIRTIO_BLK_T_IN) ||
			    off + len > bd->sectors * 512) {
				st = VIRTIO_BLK_S_IOERR;
				break;
			}
			if (type == VIRTIO_BLK_T_IN) {
				memcpy(p, bd->disk + off, len);
				written += len;
			} else {
				memcpy(bd->disk + off, p, len);
			}
			off += len;
		}
	} else if (type == VIRTIO_BLK_T_FLUSH) {
		bd->flushes++;
	} else if (type == VIRTIO_BLK_T_DISCARD || type == VIRTIO_BLK_T_WRITE_ZEROES) {
		struct virtio_blk_discard_write_zeroes *r = (void *)(uintptr_t)c->seg[1].addr;
		uint64_t s = le64_to_cpu(r->sector);
		uint32_t n = le32_to_cpu(r->num_sectors);

		bd->last_dwz_sector = s;
		bd->last_dwz_count = n;
		bd->last_dwz_flags = le32_to_cpu(r->flags);
		if (c->n != 3 || c->seg[1].len != sizeof(*r) || s + n > bd->sectors)
			st = VIRTIO_BLK_S_IOERR;
		else
			memset(bd->disk + s * 512, 0, (size_t)n * 512);
		if (type == VIRTIO_BLK_T_DISCARD)
			bd->discards++;
		else
			bd->wzeroes++;
	} else {
		st = VIRTIO_BLK_S_UNSUPP;
	}
	if (bd->force_status >= 0)
		st = (uint8_t)bd->force_status;
	if (st != 0xff)
		*status = st;
	vdd_push(&bd->d.q[0], c->head, written);
}

static void bd_notify(struct vdd *d, unsigned qi)
{
	struct blkdouble *bd = to_bd(d);
	struct vdd_chain c;

	if (bd->mode == BLK_DEAD)
		return;
	while (vdd_pop(&d->q[qi], &c) == 1) {
		if (bd->mode == BLK_HOLD)
			bd->held[bd->nheld++] = c;
		else
			bd_execute(bd, &c);
	}
}

/* Finish every held request in a random order. */
static void bd_finish_shuffled(struct blkdouble *bd, uint64_t *seed)
{
	while (bd->nheld) {
		unsigned j = (unsigned)(test_rand(seed) % bd->nheld);
		struct vdd_chain c = bd->held[j];

		bd->held[j] = bd->held[--bd->nheld];
		bd_execute(bd, &c);
	}
}

static uint64_t blk_features(void)
{
	return VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) |
	       VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) |
	       VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) | VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) |
	       VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
}

/* A device like QEMU 7.2's virtio-blk-pci: 256 entries, seg_max 254, 512-byte blocks. */
static struct blkdouble *bd_new(uint64_t sectors, uint64_t features, uint32_t blk_size)
{
	struct blkdouble *bd = calloc(1, sizeof(*bd));
	struct virtio_blk_config *cfg = (struct virtio_blk_config *)bd->d.config;

	vdd_init(&bd->d, features, 1, 256);
	bd->d.on_notify = bd_notify;
	bd->sectors = sectors;
	bd->disk = calloc(sectors, 512);
	bd->force_status = -1;
	cfg->capacity = cpu_to_le64(sectors);
	cfg->seg_max = cpu_to_le32(254);
	cfg->blk_size = cpu_to_le32(blk_size);
	cfg->max_discard_sectors = cpu_to_le32(0x3fffff);
	cfg->max_discard_seg = cpu_to_le32(1);
	cfg->max_write_zeroes_sectors = cpu_to_le32(0x3fffff);
	cfg->max_write_zeroes_seg = cpu_to_le32(1);
	cfg->write_zeroes_may_unmap = 1;
	bd->d.config_len = 60;
	return bd;
}

static void bd_free(struct blkdouble *bd)
{
	free(bd->disk);
	free(bd);
}

static void fill(uint8_t *p, size_t len, uint32_t tag)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(tag * 31 + i * 7 + (i >> 9));
}

TEST(configuration_is_read)
{
	struct blkdouble *bd = bd_new(2048, blk_features(), 4096);
	struct vblk *vb;
	char feat[128];

	ok_eq(vblk_create(&bd->d.vdev, &vb), 0);
	ok_eq(vb->bdev.block_size, 4096);
	ok_eq(vb->bdev.nr_blocks, 2048 / 8);
	ok(!vb->bdev.read_only);
	ok(bd->d.status & VIRTIO_STATUS_DRIVER_OK);
	/* Offered and taken: every virtqueue does event index (doorbells only when wanted). */
	ok(bd->d.accepted & VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
	ok(vb->vq.event_idx);
	ok(bd->d.accepted & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD));
	ok_eq(vb->vq.size, 256);
	ok(vb->vq.indirect != NULL);
	vblk_features_str(vb, feat, sizeof(feat));
	ok(strstr(feat, "flush") && strstr(feat, "discard") && strstr(feat, "indirect"));
	blkdev_destroy(&vb->bdev);
	ok_eq(bd->d.status, 0); /* reset on the way out */
	bd_free(bd);
}

/*
 * The driver announces its completions (blkdev signals_completion: the firmware's loop may
 * halt while it waits on it) only once its caller wired the queue's interrupt, and not once
 * the device is dead (its requests finish at the next poll, without the device).
 */
TEST(signals_completion_only_with_the_interrupt_wired)
{
	struct blkdouble *bd = bd_new(2048, blk_features(), 512);
	const struct blkdev_ops *ops;
	struct vblk *vb;

	ok_eq(vblk_create(&bd->d.vdev, &vb), 0);
	ops = vb->bdev.ops;
	ok(ops->signals_completion != NULL);
	ok(!ops->signals_completion(&vb->bdev));
	vb->wakes = true;
	ok(ops->signals_completion(&vb->bdev));
	vb->dead = true;
	ok(!ops->signals_completion(&vb->bdev));
	vb->dead = false;
	blkdev_destroy(&vb->bdev);
	bd_free(bd);
}

TEST(sync_write_read_flush_with_4k_blocks)
{
	struct blkdouble *bd = bd_new(4096, blk_features(), 4096);
	uint8_t *w = malloc(3 * 4096), *r = malloc(3 * 4096);
	struct vblk *vb;

	ok_eq(vblk_create(&bd->d.vdev, &vb), 0);
	fill(w, 3 * 4096, 7);
	ok_eq(blkdev_write(&vb->bdev, 5, 3, w), 0);
	/* Block 5 of 4 KiB is sector 40. */
	ok(memcmp(bd->disk + 40 * 512, w, 3 * 4096) == 0);
	ok_eq(blkdev_read(&vb->bdev, 5, 3, r), 0);
	ok(memcmp(r, w, 3 * 4096) == 0);
	ok_eq(blkdev_flush(&vb->bdev), 0);
	ok_eq(bd->flushes, 1);
	ok_eq(vb->stats.bytes_written, 3 * 4096);
	blkdev_destroy(&vb->bdev);
	free(w);
	free(r);
	bd_free(bd);
}

struct done_log {
	unsigned count;
	int rc[300];
	struct blkdev_req *order[300];
};

static void log_done(struct blkdev_req *req, int rc)
{
	struct done_log *l = req->priv;

	l->rc[l->count] = rc;
	l->order[l->count++] = req;
}

TEST(async_queue_depth_256_out_of_order)
{
	uint64_t seed = test_seed();
	struct blkdouble *bd = bd_new(1 << 16, blk_features(), 512);
	static struct blkdev_req reqs[257];
	static struct done_log log;
	uint8_t *buf = malloc(256 * 4096), *back = malloc(256 * 4096);
	struct vblk *vb;
	unsigned order_changed = 0;

	memset(&log, 0, sizeof(log));
	ok_eq(vblk_create(&bd->d.vdev, &vb), 0);
	bd->mode = BLK_HOLD;
	fill(buf, 256 * 4096, 3);
	for (unsigned i = 0; i < 256; i++) {
		reqs[i] = (struct blkdev_req){ .op = BLKDEV_WRITE,
					       .block = (uint64_t)i * 8 * 3,
					       .count = 8,
					       .buf = buf + i * 4096,
					       .done = log_done,
					       .priv = &log };
		if (!ok_eq(blkdev_submit(&vb->bdev, &reqs[i]), 0))
			break;
	}
	/* Indirect descriptors: one ring slot per request, so the full queue is usable. */
	ok_eq(vb->inflight, 256);
	reqs[256] = reqs[0];
	ok_eq(blkdev_submit(&vb->bdev, &reqs[256]), -EAGAIN);
	/* Submitting rings no doorbell; one kick announces all 256 requests. */
	ok_eq(bd->nheld, 0);
	ok_eq(bd->d.q[0].notifies, 0);
	vblk_kick(vb);
	ok_eq(bd->d.q[0].notifies, 1);
	ok_eq(bd->nheld, 256);
	vblk_kick(vb); /* nothing new: nothing rung */
	ok_eq(bd->d.q[0].notifies, 1);
	bd_finish_shuffled(bd, &seed);
	ok_eq(blkdev_poll(&vb->bdev), 256);
	ok_eq(log.count, 256);
	for (unsigned i = 0; i < 256; i++) {
		ok_eq(log.rc[i], 0);
		order_changed += log.order[i] != &reqs[i];
	}
	ok(order_changed > 0);
	ok_eq(vb->stats.max_inflight, 256);
	bd->mode = BLK_IMMEDIATE;
	for (unsigned i = 0; i < 256; i++)
		ok_eq(blkdev_read(&vb->bdev, (uint64_t)i * 24, 8, back + i * 4096), 0);
	ok(memcmp(back, buf, 256 * 4096) == 0);
	blkdev_destroy(&vb->bdev);
	free(buf);
	free(back);
	bd_free(bd);
}

TEST(without_indirect_depth_is_limited_by_descriptors)
{
	struct blkdouble *bd =
	    bd_new(1 << 12, blk_features() & ~VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC), 512);
	static struct blkdev_req reqs[100];
	static struct done_log log;
	uint8_t *buf = calloc(1, 4096);
	struct vblk *vb;
	unsigned n = 0;

	memset(&log, 0, sizeof(log));
	ok_eq(vblk_create(&bd->d.vdev, &vb), 0);
	bd->mode = BLK_HOLD;
	for (n = 0; n < 100; n++) {
		reqs[n] = (struct blkdev_req){ .op = BLKDEV_READ,
					       .block = n,
					       .count = 1,
					       .buf = buf,
					       .done = log_done,
					       .priv = &log };
		if (blkdev_submit(&vb->bdev, &reqs[n]))
			break;
	}
	/* Three descriptors each: 85 in a 256-entry queue, still at least 64. */
	ok_eq(n, 85);
	ok(n >= 64);
	bd->mode = BLK_IMMEDIATE;
	bd_finish_shuffled(bd, &(uint64_t){ 1 });
	ok_eq(blkdev_poll(&vb->bdev), 85);
	blkdev_destroy(&vb->bdev);
	free(buf);
	bd_free(bd);
}

TEST(range_and_read_only_refusals)
{
	struct blkdouble *bd = bd_new(64, blk_features() | VIRTIO_BIT(VIRTIO_BLK_F_RO), 512);
	struct blkdev_req req = { .op = BLKDEV_READ, .block = 64, .count = 1, .done = log_done };
	uint8_t buf[1024];
	struct vblk *vb;

	ok_eq(vblk_create(&bd->d.vdev, &vb), 0);
	ok(vb->bdev.read_only);
	ok_eq(blkdev_read(&vb->bdev, 64, 1, buf), -EINVAL);
	ok_eq(blkdev_read(&vb->bdev, 63, 2, buf), -EINVAL);
	ok_eq(blkdev_read(&vb->bdev, 0, 0, buf), -EINVAL);
	req.buf = buf;
	ok_eq(blkdev_submit(&vb->bdev, &req), -EINVAL);
	/* Straight to the driver's op too, without core's inline checks. */
	ok_eq(vb->bdev.ops->submit(&vb->bdev, &req), -EINVAL);
	req.block = 0;
	req.op = BLKDEV_WRITE;
	ok_eq(vb->bdev.ops->submit(&vb->bdev, &req), -EROFS);
	ok_eq(vb->bdev.ops->write(&vb->bdev, 0, 1, buf), -EROFS);
	ok_eq(blkdev_write(&vb->bdev, 0, 1, buf), -EROFS);
	ok_eq(blkdev_discard(&vb->bdev, 0, 1), -EROFS);
	ok_eq(bd->requests, 0);
	ok_eq(blkdev_read(&vb->bdev, 62, 2, buf), 0);
	blkdev_destroy(&vb->bdev);
	bd_free(bd);
}

TEST(status_byte_maps_to_errno)
{
	struct blkdouble *bd = bd_new(64, blk_features(), 512);
	uint8_t buf[512];
	struct vblk *vb;

	ok_eq(vblk_status_to_errno(VIRTIO_BLK_S_OK), 0);
	ok_eq(vblk_status_to_errno(VIRTIO_BLK_S_IOERR), -EIO);
	ok_eq(vblk_status_to_errno(VIRTIO_BLK_S_UNSUPP), -EOPNOTSUPP);
	ok_eq(vblk_status_to_errno(0x17), -EIO);
	ok_eq(vblk_create(&bd->d.vdev, &vb), 0);
	bd->force_status = VIRTIO_BLK_S_IOERR;
	ok_eq(blkdev_read(&vb->bdev, 0, 1, buf), -EIO);
	bd->force_status = VIRTIO_BLK_S_UNSUPP;
	ok_eq(blkdev_flush(&vb->bdev), -EOPNOTSUPP);
	bd->force_status = 0xff; /* completes without writing the status */
	ok_eq(blkdev_write(&vb->bdev, 0, 1, buf), -EIO);
	bd->force_status = -1;
	ok_eq(blkdev_read(&vb->bdev, 0, 1, buf), 0);
	ok_eq(vb->stats.errors, 3);
	blkdev_destroy(&vb->bdev);
	bd_free(bd);
}

TEST(discard_and_write_zeroes)
{
	struct blkdouble *bd = bd_new(1 << 14, blk_features(), 4096);
	struct virtio_blk_config *cfg = (struct virtio_blk_config *)bd->d.config;
	uint8_t *buf = malloc(16 * 4096);
	struct vblk *vb;

	cfg->max_discard_sectors = cpu_to_le32(64); /* 8 blocks: forces pieces */
	ok_eq(vblk_create(&bd->d.vdev, &vb), 0);
	fill(buf, 16 * 4096, 9);
	ok_eq(blkdev_write(&vb->bdev, 0, 16, buf), 0);
	ok_eq(blkdev_discard(&vb->bdev, 2, 12), 0);
	ok_eq(bd->discards, 2); /* 8 + 4 blocks */
	ok_eq(bd->last_dwz_sector, 10 * 8);
	ok_eq(bd->last_dwz_count, 4 * 8);
	ok_eq(bd->last_dwz_flags, 0); /* §5.2.6.2: no UNMAP flag on DISCARD */
	ok_eq(blkdev_write_zeroes(&vb->bdev, 1, 1), 0);
	ok_eq(bd->last_dwz_flags, VIRTIO_BLK_WZ_F_UNMAP);
	ok_eq(blkdev_read(&vb->bdev, 0, 16, buf), 0);
	for (unsigned i = 4096; i < 14 * 4096; i++)
		if (buf[i] != 0) {
			fail("byte %u not zero", i);
			break;
		}
	blkdev_destroy(&vb->bdev);
	bd_free(bd);

	/* Not offered: refused before reaching the device. */
	bd = bd_new(64, VIRTIO_BIT(VIRTIO_F_VERSION_1), 512);
	ok_eq(vblk_create(&bd->d.vdev, &vb), 0);
	ok_eq(blkdev_discard(&vb->bdev, 0, 1), -EOPNOTSUPP);
	ok_eq(blkdev_write_zeroes(&vb->bdev, 0, 1), -EOPNOTSUPP);
	/* No FLUSH feature: nothing volatile to flush, and nothing sent. */
	ok_eq(blkdev_flush(&vb->bdev), 0);
	ok_eq(bd->requests, 0);
	blkdev_destroy(&vb->bdev);
	bd_free(bd);
	free(buf);
}

TEST(large_requests_are_split_into_segments_and_pieces)
{
	struct blkdouble *bd =
	    bd_new(1 << 16, blk_features() | VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX), 512);
	struct virtio_blk_config *cfg = (struct virtio_blk_config *)bd->d.config;
	size_t len = 3 * 1024 * 1024 + 4096;
	uint8_t *w = malloc(len), *r = malloc(len);
	struct vblk *vb;

	cfg->size_max = cpu_to_le32(64 * 1024);
	cfg->seg_max = cpu_to_le32(4);
	ok_eq(vblk_create(&bd->d.vdev, &vb), 0);
	ok_eq(vb->max_req_blocks, 4 * 64 * 1024 / 512);
	fill(w, len, 11);
	ok_eq(blkdev_write(&vb->bdev, 100, (uint32_t)(len / 512), w), 0);
	ok_eq(bd->max_segs, 4);
	ok_eq(bd->requests, 13); /* 3 MiB + 4 KiB in 256 KiB pieces */
	ok_eq(blkdev_read(&vb->bdev, 100, (uint32_t)(len / 512), r), 0);
	ok(memcmp(w, r, len) == 0);
	ok(memcmp(bd->disk + 100 * 512, w, len) == 0);
	blkdev_destroy(&vb->bdev);
	free(w);
	free(r);
	bd_free(bd);
}

TEST(dead_device_times_out_and_stays_dead)
{
	struct blkdouble *bd = bd_new(64, blk_features(), 512);
	static struct done_log log;
	struct blkdev_req reqs[3];
	uint8_t buf[3][512];
	struct vblk *vb;
	uint64_t t0;

	memset(&log, 0, sizeof(log));
	ok_eq(vblk_create(&bd->d.vdev, &vb), 0);
	vb->timeout_ns = 50 * NSEC_PER_MSEC;
	bd->mode = BLK_DEAD;
	for (unsigned i = 0; i < 2; i++) {
		reqs[i] = (struct blkdev_req){ .op = BLKDEV_READ,
					       .block = i,
					       .count = 1,
					       .buf = buf[i],
					       .done = log_done,
					       .priv = &log };
		ok_eq(blkdev_submit(&vb->bdev, &reqs[i]), 0);
	}
	t0 = plat_now_ns();
	/* The synchronous call ends by the timeout, not by a hang. */
	ok_eq(blkdev_read(&vb->bdev, 5, 1, buf[2]), -ETIMEDOUT);
	ok(plat_now_ns() - t0 < 5 * NSEC_PER_SEC);
	/* The asynchronous ones in flight ended too, with the same error. */
	ok_eq(log.count, 2);
	ok_eq(log.rc[0], -ETIMEDOUT);
	ok_eq(log.rc[1], -ETIMEDOUT);
	ok(vb->dead);
	ok_eq(bd->d.status, 0); /* it was reset, so it cannot DMA into those buffers later */
	ok_eq(blkdev_read(&vb->bdev, 0, 1, buf[0]), -EIO);
	reqs[0].block = 0;
	ok_eq(blkdev_submit(&vb->bdev, &reqs[0]), -EIO);
	blkdev_destroy(&vb->bdev);
	bd_free(bd);
}

TEST(async_timeout_is_found_by_poll)
{
	struct blkdouble *bd = bd_new(64, blk_features(), 512);
	static struct done_log log;
	struct blkdev_req req;
	uint8_t buf[512];
	struct vblk *vb;
	uint64_t deadline;

	memset(&log, 0, sizeof(log));
	ok_eq(vblk_create(&bd->d.vdev, &vb), 0);
	vb->timeout_ns = 20 * NSEC_PER_MSEC;
	bd->mode = BLK_DEAD;
	req = (struct blkdev_req){ .op = BLKDEV_WRITE,
				   .block = 1,
				   .count = 1,
				   .buf = buf,
				   .done = log_done,
				   .priv = &log };
	ok_eq(blkdev_submit(&vb->bdev, &req), 0);
	deadline = plat_now_ns() + 2 * NSEC_PER_SEC;
	while (!log.count && plat_now_ns() < deadline)
		blkdev_poll(&vb->bdev);
	ok_eq(log.count, 1);
	ok_eq(log.rc[0], -ETIMEDOUT);
	blkdev_destroy(&vb->bdev);
	bd_free(bd);
}

TEST(legacy_or_broken_devices_are_refused)
{
	struct blkdouble *bd = bd_new(64, blk_features() & ~VIRTIO_BIT(VIRTIO_F_VERSION_1), 512);
	struct vblk *vb = NULL;

	ok_eq(vblk_create(&bd->d.vdev, &vb), -ENODEV);
	ok(vb == NULL);
	bd_free(bd);
	bd = bd_new(64, blk_features(), 512);
	bd->d.nq = 0; /* no request queue */
	ok_eq(vblk_create(&bd->d.vdev, &vb), -ENOENT);
	ok(bd->d.status == 0);
	bd_free(bd);
}

/* ---- Segment lists (core/blkdev.h) ---- */

static void seg_done(struct blkdev_req *req, int rc)
{
	int *out = req->priv;

	*out = rc;
}

/* Cut @len bytes of @data into @piece-byte pieces at odd addresses of @arena (2 bytes apart). */
static uint32_t seg_cut(uint8_t *arena, const uint8_t *data, size_t len, uint32_t piece,
			struct blkdev_seg *segs)
{
	size_t at = 3, pos = 0;
	uint32_t n = 0;

	while (pos < len) {
		uint32_t k = (uint32_t)MIN((size_t)piece, len - pos);

		memcpy(arena + at, data + pos, k);
		segs[n].base = arena + at;
		segs[n++].len = k;
		pos += k;
		at += k + 2;
	}
	return n;
}

/* Submit a list WRITE and poll until done; the submit's refusal or the result. */
static int seg_write(struct vblk *vb, uint64_t block, uint32_t count, const struct blkdev_seg *segs,
		     uint32_t n)
{
	int rc = 1;
	struct blkdev_req req = { .op = BLKDEV_WRITE,
				  .block = block,
				  .count = count,
				  .segs = segs,
				  .nr_segs = n,
				  .done = seg_done,
				  .priv = &rc };
	int s = blkdev_submit(&vb->bdev, &req);

	if (s)
		return s;
	for (int i = 0; i < 1000 && rc == 1; i++)
		blkdev_poll(&vb->bdev);
	return rc;
}

TEST(segment_list_write_is_one_indirect_chain_of_the_callers_pieces)
{
	struct blkdouble *bd = bd_new(4096, blk_features(), 512);
	uint8_t *arena = calloc(1, 1 << 20), *w = malloc(65536);
	struct blkdev_seg segs[64];
	struct vblk *vb;
	uint32_t n;

	ok_eq(vblk_create(&bd->d.vdev, &vb), 0);
	ok(vb->bdev.seg_writes);
	ok_eq(vb->segs, 254); /* what the device offers, with indirect descriptors */
	fill(w, 65536, 21);
	n = seg_cut(arena, w, 65536, 1460, segs);
	ok_eq(n, 45);
	ok_eq(seg_write(vb, 40, 128, segs, n), 0);
	ok_eq(bd->requests, 1);
	ok_eq(bd->indirect, 1);
	ok_eq(bd->last.n, 2 + 45);
	for (uint32_t i = 0; i < n; i++) {
		ok_eq(bd->last.seg[1 + i].addr, (uint64_t)(uintptr_t)segs[i].base);
		ok_eq(bd->last.seg[1 + i].len, segs[i].len);
		ok(!bd->last.seg[1 + i].write);
	}
	ok(memcmp(bd->disk + 40 * 512, w, 65536) == 0);
	/* Starting 100 bytes into the first piece, 63 KiB: the offset reaches the device. */
	{
		struct blkdev_req req = { .op = BLKDEV_WRITE,
					  .block = 2000,
					  .count = 126,
					  .segs = segs,
					  .nr_segs = n,
					  .seg_off = 100,
					  .done = seg_done };
		int rc = 1;

		req.priv = &rc;
		ok_eq(blkdev_submit(&vb->bdev, &req), 0);
		for (int i = 0; i < 1000 && rc == 1; i++)
			blkdev_poll(&vb->bdev);
		ok_eq(rc, 0);
		ok_eq(bd->last.seg[1].addr, (uint64_t)(uintptr_t)segs[0].base + 100);
		ok_eq(bd->last.seg[1].len, 1360);
		ok(memcmp(bd->disk + 2000 * 512, w + 100, 126 * 512) == 0);
	}
	blkdev_destroy(&vb->bdev);
	free(arena);
	free(w);
	bd_free(bd);
}

TEST(segment_lists_are_cut_at_seg_max_and_bounced_beyond)
{
	struct blkdouble *bd = bd_new(4096, blk_features(), 512);
	struct virtio_blk_config *cfg = (struct virtio_blk_config *)bd->d.config;
	uint8_t *arena = calloc(1, 1 << 20), *w = malloc(262144);
	struct blkdev_seg *segs = calloc(4096, sizeof(*segs));
	struct vblk *vb;
	uint32_t n;

	cfg->seg_max = cpu_to_le32(126); /* QEMU without seg-max-adjust */
	ok_eq(vblk_create(&bd->d.vdev, &vb), 0);
	ok_eq(vb->segs, 126);
	fill(w, 262144, 22);
	n = seg_cut(arena, w, 262144, 1460, segs);
	ok_eq(n, 180);
	/* 256 KiB in 180 pieces: two device requests, each within 126 descriptors. */
	ok_eq(seg_write(vb, 7, 512, segs, n), 0);
	ok_eq(bd->requests, 2);
	ok_eq(bd->max_segs, 126);
	ok(memcmp(bd->disk + 7 * 512, w, 262144) == 0);
	/* A block spread over more pieces than seg_max cannot be expressed: blkdev_submit()
	 * gathers it into one buffer (a valid list is never refused: core/blkdev.h). */
	n = seg_cut(arena, w, 512, 4, segs); /* 128 pieces of 4 bytes for one block */
	ok_eq(n, 128);
	ok_eq(seg_write(vb, 0, 1, segs, n), 0);
	ok_eq(bd->requests, 3);
	ok_eq(bd->last.n, 3); /* header, the bounce, status */
	ok(memcmp(bd->disk, w, 512) == 0);
	memset(bd->disk, 0, 512);
	n = seg_cut(arena, w, 512, 5, segs); /* 103 pieces: fits */
	ok_eq(seg_write(vb, 0, 1, segs, n), 0);
	ok_eq(bd->requests, 4);
	ok_eq(bd->last.n, 2 + 103);
	ok(memcmp(bd->disk, w, 512) == 0);
	blkdev_destroy(&vb->bdev);
	bd_free(bd);

	/* Without indirect descriptors a chain takes ring slots: 8 data descriptors at most. */
	bd = bd_new(4096, blk_features() & ~VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC), 512);
	ok_eq(vblk_create(&bd->d.vdev, &vb), 0);
	ok_eq(vb->segs, 8);
	n = seg_cut(arena, w, 65536, 1460, segs);
	ok_eq(seg_write(vb, 9, 128, segs, n), 0);
	ok_eq(bd->max_segs, 8);
	ok_eq(bd->indirect, 0);
	ok(memcmp(bd->disk + 9 * 512, w, 65536) == 0);
	/* 1 MiB in 719 pieces would be 90 chains of 10 descriptors, more than the ring has:
	 * never room for it (it was -EAGAIN for ever), so it goes as one buffer. */
	{
		uint8_t *big = malloc(1 << 20), *big_arena = malloc(2 << 20);

		fill(big, 1 << 20, 23);
		n = seg_cut(big_arena, big, 1 << 20, 1460, segs);
		ok_eq(n, 719);
		ok_eq(seg_write(vb, 2048, 2048, segs, n), 0);
		ok(memcmp(bd->disk + 2048 * 512, big, 1 << 20) == 0);
		free(big_arena);
		free(big);
	}
	blkdev_destroy(&vb->bdev);
	bd_free(bd);
	free(segs);
	free(arena);
	free(w);
}
