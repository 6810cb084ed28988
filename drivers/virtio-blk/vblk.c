/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk (virtio 1.1 §5.2): request slots, submission, polled completion, timeouts.
 *
 * A blkdev_req becomes one struct vblk_io and one or more pieces; each piece takes a slot,
 * whose device-visible part (header, discard range, status byte) is 64 bytes of DMA memory,
 * and one ring slot (an indirect table) or 2 + segments descriptors. The status byte starts
 * as 0xff each time, so a device that claims completion without writing it yields -EIO.
 */
#include "drivers/virtio-blk/vblk.h"

#include "core/base/plat.h"
#include "core/base/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VBLK_STATUS_UNSET 0xff

/* What the device sees of one piece. */
struct vblk_slot_dma {
	struct virtio_blk_outhdr hdr;
	struct virtio_blk_discard_write_zeroes dwz;
	uint8_t status;
	uint8_t pad[31]; /* a cache line per slot: the device writes status, we write the rest */
};
_Static_assert(sizeof(struct vblk_slot_dma) == 64, "slot layout");

struct vblk_io {
	struct blkdev_req *req;
	unsigned pending; /* pieces still in flight */
	int rc;		  /* the first error of a piece */
	struct vblk_io *next;
};

struct vblk_slot {
	struct vblk_slot_dma *dma;
	uint64_t bus;
	struct vblk_io *io;
	uint32_t type; /* VIRTIO_BLK_T_* */
	uint32_t bytes;
	uint64_t start_ns;
	struct vblk_slot *prev, *next; /* in-flight list; next also links the free list */
};

static const struct blkdev_ops vblk_ops;

/* ---- Status and errors ------------------------------------------------------------------ */

int vblk_status_to_errno(uint8_t status)
{
	switch (status) {
	case VIRTIO_BLK_S_OK:
		return 0;
	case VIRTIO_BLK_S_UNSUPP:
		return -EOPNOTSUPP;
	case VIRTIO_BLK_S_IOERR:
		return -EIO;
	default: /* includes VBLK_STATUS_UNSET: the device never wrote the status */
		return -EIO;
	}
}

/* ---- Completion --------------------------------------------------------------------------- */

static void vblk_unlink(struct vblk *vb, struct vblk_slot *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		vb->oldest = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		vb->newest = s->prev;
}

static void vblk_count(struct vblk *vb, const struct vblk_slot *s, int rc)
{
	struct vblk_stats *st = &vb->stats;

	if (rc) {
		st->errors++;
		return;
	}
	switch (s->type) {
	case VIRTIO_BLK_T_IN:
		st->reads++;
		st->bytes_read += s->bytes;
		break;
	case VIRTIO_BLK_T_OUT:
		st->writes++;
		st->bytes_written += s->bytes;
		break;
	case VIRTIO_BLK_T_FLUSH:
		st->flushes++;
		break;
	case VIRTIO_BLK_T_DISCARD:
		st->discards++;
		break;
	case VIRTIO_BLK_T_WRITE_ZEROES:
		st->write_zeroes++;
		break;
	}
}

/* One piece is over: give its slot back, and finish its request when it was the last. */
static void vblk_finish_slot(struct vblk *vb, struct vblk_slot *s, int rc)
{
	struct vblk_io *io = s->io;

	vblk_unlink(vb, s);
	vblk_count(vb, s, rc);
	vb->inflight--;
	s->io = NULL;
	s->next = vb->free_slots;
	vb->free_slots = s;

	if (rc && !io->rc)
		io->rc = rc;
	if (--io->pending == 0) {
		struct blkdev_req *req = io->req;

		rc = io->rc;
		io->next = vb->free_ios;
		vb->free_ios = io;
		/* Last: done() may submit again into the slot and io just freed. */
		req->done(req, rc);
	}
}

/*
 * The device stopped answering (or broke the ring protocol): reset it so it can no longer
 * write into our buffers, end everything in flight with @rc, and refuse all later requests.
 */
static void vblk_wedged(struct vblk *vb, int rc, const char *why)
{
	struct vblk_slot *s;

	plat_printf("%s: %s; resetting the device and failing %u request piece(s)\n", vb->name, why,
		    vb->inflight);
	vb->dead = true;
	if (virtio_stop(vb->vdev))
		plat_printf("%s: the reset did not finish either; the device is abandoned\n",
			    vb->name);
	while ((s = vq_detach(&vb->vq)) != NULL)
		vblk_finish_slot(vb, s, rc);
}

void vblk_kick(struct vblk *vb)
{
	if (!vb->dead)
		vq_kick(&vb->vq);
}

int vblk_poll(struct vblk *vb)
{
	int n = 0, rc;
	void *tok;

	/*
	 * Requests submitted since the last doorbell: announce them first, so whoever polls for
	 * a completion (vblk_sync_one(), blkdev_poll() loops) never waits for an unannounced one.
	 */
	vblk_kick(vb);

	/* Requests that needed no device work (FLUSH without a volatile cache). */
	while (vb->done_ios) {
		struct vblk_io *io = vb->done_ios;
		struct blkdev_req *req = io->req;

		vb->done_ios = io->next;
		io->next = vb->free_ios;
		vb->free_ios = io;
		req->done(req, 0);
		n++;
	}
	while ((rc = vq_get_used(&vb->vq, &tok, NULL)) == 0) {
		struct vblk_slot *s = tok;
		/*
		 * vq_get_used() read the used index before the used element, with a read barrier
		 * between; the device wrote the status byte before publishing that element, so this
		 * read sees the final status. volatile: the device, not us, wrote it.
		 */
		uint8_t status = *(volatile uint8_t *)&s->dma->status;

		vblk_finish_slot(vb, s, vblk_status_to_errno(status));
		n++;
	}
	if (rc == -EIO) {
		vblk_wedged(vb, -EIO, "device reported a request that is not in flight");
		return -EIO;
	}
	if (vb->oldest && plat_now_ns() - vb->oldest->start_ns > vb->timeout_ns) {
		vblk_wedged(vb, -ETIMEDOUT, "request timed out");
		return n;
	}
	return n;
}

static int vblk_poll_op(struct blkdev *bdev)
{
	return vblk_poll(vblk_from_blkdev(bdev));
}

/* ---- Submission ----------------------------------------------------------------------------- */

struct vblk_plan {
	uint32_t type;
	uint32_t piece_max; /* blocks per piece */
	unsigned pieces;
};

static int vblk_plan(struct vblk *vb, const struct blkdev_req *req, struct vblk_plan *p)
{
	bool writes = req->op != BLKDEV_READ && req->op != BLKDEV_FLUSH;

	if (req->op != BLKDEV_FLUSH && !blkdev_range_ok(&vb->bdev, req->block, req->count))
		return -EINVAL;
	if (writes && vb->bdev.read_only)
		return -EROFS;
	switch (req->op) {
	case BLKDEV_READ:
	case BLKDEV_WRITE:
		if (!req->buf && !(req->segs && req->op == BLKDEV_WRITE))
			return -EINVAL;
		p->type = req->op == BLKDEV_READ ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT;
		p->piece_max = vb->max_req_blocks;
		break;
	case BLKDEV_FLUSH:
		p->type = VIRTIO_BLK_T_FLUSH;
		p->piece_max = 1;
		p->pieces = 1;
		return 0;
	case BLKDEV_DISCARD:
		p->type = VIRTIO_BLK_T_DISCARD;
		p->piece_max = vb->max_discard_blk;
		break;
	case BLKDEV_WRITE_ZEROES:
		p->type = VIRTIO_BLK_T_WRITE_ZEROES;
		p->piece_max = vb->max_wz_blk;
		break;
	default:
		return -EINVAL;
	}
	if (p->piece_max == 0)
		return -EOPNOTSUPP;
	p->pieces = (unsigned)((req->count + (uint64_t)p->piece_max - 1) / p->piece_max);
	if (p->pieces > vb->nslots)
		return -EINVAL;
	return 0;
}

/* Fill @bufs for one piece; returns the number of device-readable pieces in *n_out. */
static unsigned vblk_piece_bufs(struct vblk *vb, struct vblk_slot *s, uint8_t *data, uint32_t bytes,
				struct vq_buf *bufs, unsigned *n_out)
{
	unsigned n = 0;

	bufs[n].addr = s->bus + offsetof(struct vblk_slot_dma, hdr);
	bufs[n++].len = sizeof(struct virtio_blk_outhdr);
	if (s->type == VIRTIO_BLK_T_DISCARD || s->type == VIRTIO_BLK_T_WRITE_ZEROES) {
		bufs[n].addr = s->bus + offsetof(struct vblk_slot_dma, dwz);
		bufs[n++].len = sizeof(struct virtio_blk_discard_write_zeroes);
	}
	if (s->type == VIRTIO_BLK_T_OUT || s->type == VIRTIO_BLK_T_IN) {
		for (uint32_t off = 0; off < bytes; off += vb->seg_bytes) {
			bufs[n].addr = virtio_bus_addr(data + off);
			bufs[n++].len = MIN(vb->seg_bytes, bytes - off);
		}
	}
	/* §5.2.6: the header and OUT data are device-readable, IN data and status writable. */
	*n_out = s->type == VIRTIO_BLK_T_IN ? 1 : n;
	bufs[n].addr = s->bus + offsetof(struct vblk_slot_dma, status);
	bufs[n++].len = 1;
	return n;
}

/* Descriptors one piece of @blocks blocks takes. */
static unsigned vblk_piece_descs(struct vblk *vb, uint32_t type, uint32_t blocks)
{
	unsigned n = 2;

	if (type == VIRTIO_BLK_T_DISCARD || type == VIRTIO_BLK_T_WRITE_ZEROES)
		n = 3;
	else if (type != VIRTIO_BLK_T_FLUSH)
		n += (unsigned)(((uint64_t)blocks * vb->bdev.block_size + vb->seg_bytes - 1) /
				vb->seg_bytes);
	return vq_descs_needed(&vb->vq, n);
}

/*
 * Segment lists (core/blkdev.h): a position in the list, cut into data descriptors of at most
 * seg_bytes (the device's size_max) each, a piece holding at most vb->segs of them.
 */
struct vblk_segpos {
	const struct blkdev_seg *segs;
	uint32_t nr, off;
};

/* The next descriptor's length from @p, for at most @left bytes. */
static uint32_t vblk_seg_chunk(const struct vblk *vb, const struct vblk_segpos *p, uint64_t left)
{
	return (uint32_t)MIN(MIN((uint64_t)(p->segs->len - p->off), (uint64_t)vb->seg_bytes), left);
}

static void vblk_seg_step(struct vblk_segpos *p, uint32_t k)
{
	p->off += k;
	if (p->off == p->segs->len) {
		p->segs++;
		p->nr--;
		p->off = 0;
	}
}

/*
 * The blocks of the next piece from @p (at most @blocks, and max_req_blocks): as many whole
 * blocks as vb->segs descriptors hold. 0 when not even one block fits in them (its bytes lie
 * in more pieces than the device takes in a request): the request is refused.
 */
static uint32_t vblk_seg_piece(const struct vblk *vb, struct vblk_segpos p, uint32_t blocks)
{
	uint32_t bs = vb->bdev.block_size;
	uint64_t want = (uint64_t)MIN(blocks, vb->max_req_blocks) * bs, got = 0;

	for (unsigned d = 0; d < vb->segs && got < want && p.nr; d++) {
		uint32_t k = vblk_seg_chunk(vb, &p, want - got);

		got += k;
		vblk_seg_step(&p, k);
	}
	return (uint32_t)(got / bs);
}

/* Descriptors for @bytes from @p into @bufs (NULL: only count them); @p moves past them. */
static unsigned vblk_seg_bufs(const struct vblk *vb, struct vblk_segpos *p, uint64_t bytes,
			      struct vq_buf *bufs)
{
	unsigned n = 0;

	while (bytes) {
		uint32_t k = vblk_seg_chunk(vb, p, bytes);

		if (bufs) {
			bufs[n].addr = virtio_bus_addr((const uint8_t *)p->segs->base + p->off);
			bufs[n].len = k;
		}
		n++;
		bytes -= k;
		vblk_seg_step(p, k);
	}
	return n;
}

/*
 * Plan a segment-list WRITE: the pieces (each whole blocks, within vb->segs descriptors), the
 * ring descriptors they take. -E2BIG when the list cannot be sent as it is: a block in more
 * pieces than a request takes (see above), more pieces than there are slots, or more
 * descriptors than the ring has (no indirect tables), which no wait would make room for;
 * blkdev_submit() then gathers it into one buffer (core/blkdev.h "Segment lists").
 */
static int vblk_seg_plan(const struct vblk *vb, const struct blkdev_req *req, unsigned *pieces,
			 unsigned *descs)
{
	struct vblk_segpos p = { req->segs, req->nr_segs, req->seg_off };
	uint32_t left = req->count;

	*pieces = *descs = 0;
	while (left) {
		uint32_t b = vblk_seg_piece(vb, p, left);

		if (!b || ++*pieces > vb->nslots)
			return -E2BIG;
		*descs += vq_descs_needed(
		    &vb->vq, 2 + vblk_seg_bufs(vb, &p, (uint64_t)b * vb->bdev.block_size, NULL));
		left -= b;
	}
	return *descs > vb->vq.size ? -E2BIG : 0;
}

static int vblk_submit(struct blkdev *bdev, struct blkdev_req *req)
{
	struct vblk *vb = vblk_from_blkdev(bdev);
	uint32_t spb = bdev->block_size / 512; /* sectors per block */
	struct vq_buf bufs[3 + VBLK_MAX_SEGS];
	struct vblk_plan p;
	struct vblk_io *io;
	unsigned descs = 0, free_slots = vb->nslots - vb->inflight;
	struct vblk_segpos sp = { req->segs, req->nr_segs, req->seg_off };
	uint32_t seg_done = 0; /* blocks of a segment list placed so far */
	uint64_t now;
	int rc;

	if (vb->dead)
		return -EIO;
	rc = vblk_plan(vb, req, &p);
	if (rc)
		return rc;

	/* All pieces or none: a request half in flight could not be refused cleanly. */
	if (req->segs) {
		rc = vblk_seg_plan(vb, req, &p.pieces, &descs);
		if (rc)
			return rc;
	} else {
		for (unsigned k = 0; k < p.pieces; k++)
			descs += vblk_piece_descs(vb, p.type,
						  MIN(p.piece_max, req->count - k * p.piece_max));
	}
	if (p.pieces > free_slots || descs > vq_num_free(&vb->vq) || !vb->free_ios)
		return -EAGAIN;

	io = vb->free_ios;
	vb->free_ios = io->next;
	io->req = req;
	if (p.type == VIRTIO_BLK_T_FLUSH && !vb->has_flush) {
		/*
		 * §5.2.5: without FLUSH the device has no volatile write cache (completed writes are
		 * durable), so there is nothing to do; done() still comes from the next poll, as the
		 * asynchronous contract promises.
		 */
		io->next = vb->done_ios;
		vb->done_ios = io;
		return 0;
	}
	io->pending = p.pieces;
	io->rc = 0;
	now = plat_now_ns();

	for (unsigned k = 0; k < p.pieces; k++) {
		struct vblk_slot *s = vb->free_slots;
		uint64_t block = req->block + (uint64_t)k * p.piece_max;
		uint32_t count =
		    req->op == BLKDEV_FLUSH ? 0 : MIN(p.piece_max, req->count - k * p.piece_max);

		if (req->segs) {
			/* Same cuts as vblk_seg_plan() made. */
			block = req->block + seg_done;
			count = vblk_seg_piece(vb, sp, req->count - seg_done);
			seg_done += count;
		}
		struct vblk_slot_dma *d = s->dma;
		unsigned n, n_out;

		vb->free_slots = s->next;
		s->io = io;
		s->type = p.type;
		s->bytes = count * bdev->block_size;
		s->start_ns = now;
		d->hdr.type = cpu_to_le32(p.type);
		d->hdr.reserved = 0;
		d->hdr.sector = cpu_to_le64(p.type == VIRTIO_BLK_T_FLUSH ? 0 : block * spb);
		d->dwz.sector = cpu_to_le64(block * spb);
		d->dwz.num_sectors = cpu_to_le32(count * spb);
		d->dwz.flags = cpu_to_le32(p.type == VIRTIO_BLK_T_WRITE_ZEROES && vb->wz_unmap
					       ? VIRTIO_BLK_WZ_F_UNMAP
					       : 0);
		d->status = VBLK_STATUS_UNSET;

		if (req->segs) {
			/* Header, the list's pieces where they lie, status (all but it readable). */
			bufs[0].addr = s->bus + offsetof(struct vblk_slot_dma, hdr);
			bufs[0].len = sizeof(struct virtio_blk_outhdr);
			n = 1 + vblk_seg_bufs(vb, &sp, s->bytes, bufs + 1);
			n_out = n;
			bufs[n].addr = s->bus + offsetof(struct vblk_slot_dma, status);
			bufs[n++].len = 1;
		} else {
			n = vblk_piece_bufs(vb, s,
					    (uint8_t *)req->buf +
						(uint64_t)k * p.piece_max * bdev->block_size,
					    s->bytes, bufs, &n_out);
		}
		/* Checked above: there are descriptors for every piece. */
		rc = vq_add(&vb->vq, bufs, n_out, n - n_out, s);
		if (rc)
			plat_panic("%s: vq_add failed after the space check (%d)", vb->name, rc);

		/* Append to the in-flight list: the head is always the oldest piece. */
		s->next = NULL;
		s->prev = vb->newest;
		if (vb->newest)
			vb->newest->next = s;
		else
			vb->oldest = s;
		vb->newest = s;
		vb->inflight++;
	}
	if (vb->inflight > vb->stats.max_inflight)
		vb->stats.max_inflight = vb->inflight;
	/*
	 * No doorbell here: the main loop rings one for every request of its pass (vblk_kick(),
	 * devices_flush()), and vblk_poll() rings it before looking for completions.
	 */
	return 0;
}

/* ---- Synchronous calls ------------------------------------------------------------------------ */

/* Submit one request and poll until it is done: bounded by the request timeout. */
static int vblk_sync_one(struct vblk *vb, const struct blkdev_req *req)
{
	/*
	 * vblk_poll() fails a request older than timeout_ns (resetting the device); the margin
	 * over it is for a queue that never drained or a poll-side check that did not fire.
	 * Spin (no idle callback): the device completes at any moment.
	 */
	int rc = blkdev_submit_wait(&vb->bdev, req, vb->timeout_ns + NSEC_PER_SEC, NULL);

	/* Then reset it here: that also ends the request left in flight, and its buffer is ours
	 * again. */
	if (rc == -ETIMEDOUT && !vb->dead)
		vblk_wedged(vb, -ETIMEDOUT, "synchronous request timed out");
	return rc;
}

static int vblk_sync(struct vblk *vb, enum blkdev_op op, uint64_t block, uint32_t count, void *buf)
{
	struct blkdev_req req;
	uint32_t chunk;
	int rc;

	if (op == BLKDEV_FLUSH) {
		memset(&req, 0, sizeof(req));
		req.op = op;
		return vblk_sync_one(vb, &req);
	}
	/* Large ranges in chunks of a few pieces, so the queue never has to hold all of one. */
	switch (op) {
	case BLKDEV_DISCARD:
		chunk = vb->max_discard_blk;
		break;
	case BLKDEV_WRITE_ZEROES:
		chunk = vb->max_wz_blk;
		break;
	default:
		chunk = vb->max_req_blocks;
		break;
	}
	if (chunk == 0)
		return -EOPNOTSUPP;
	chunk = (uint32_t)MIN((uint64_t)chunk * MIN(8u, vb->nslots), (uint64_t)UINT32_MAX);
	while (count) {
		uint32_t n = MIN(count, chunk);

		memset(&req, 0, sizeof(req));
		req.op = op;
		req.block = block;
		req.count = n;
		req.buf = buf;
		rc = vblk_sync_one(vb, &req);
		if (rc)
			return rc;
		block += n;
		count -= n;
		if (buf)
			buf = (uint8_t *)buf + (uint64_t)n * vb->bdev.block_size;
	}
	return 0;
}

static int vblk_read(struct blkdev *bdev, uint64_t block, uint32_t count, void *buf)
{
	return vblk_sync(vblk_from_blkdev(bdev), BLKDEV_READ, block, count, buf);
}

static int vblk_write(struct blkdev *bdev, uint64_t block, uint32_t count, const void *buf)
{
	/* The device only reads from @buf (an OUT request); the cast only feeds the generic path. */
	return vblk_sync(vblk_from_blkdev(bdev), BLKDEV_WRITE, block, count, (void *)buf);
}

static int vblk_flush(struct blkdev *bdev)
{
	return vblk_sync(vblk_from_blkdev(bdev), BLKDEV_FLUSH, 0, 0, NULL);
}

static int vblk_discard(struct blkdev *bdev, uint64_t block, uint32_t count)
{
	return vblk_sync(vblk_from_blkdev(bdev), BLKDEV_DISCARD, block, count, NULL);
}

static int vblk_write_zeroes(struct blkdev *bdev, uint64_t block, uint32_t count)
{
	return vblk_sync(vblk_from_blkdev(bdev), BLKDEV_WRITE_ZEROES, block, count, NULL);
}

/* ---- Probe and teardown ---------------------------------------------------------------------- */

static bool is_pow2(uint32_t x)
{
	return x && !(x & (x - 1));
}

/* Read the configuration and derive the device's limits. */
static int vblk_configure(struct vblk *vb)
{
	struct virtio_dev *vdev = vb->vdev;
	struct virtio_blk_config cfg;
	uint32_t bs = 512, spb;
	int rc;

	memset(&cfg, 0, sizeof(cfg));
	/* Only the part whose fields we negotiated: a device's config may end early. */
	rc = vdev->ops->read_config(vdev, 0, &cfg,
				    offsetof(struct virtio_blk_config, physical_block_exp));
	if (!rc &&
	    (virtio_has(vdev, VIRTIO_BLK_F_DISCARD) || virtio_has(vdev, VIRTIO_BLK_F_WRITE_ZEROES)))
		rc = vdev->ops->read_config(
		    vdev, offsetof(struct virtio_blk_config, max_discard_sectors),
		    &cfg.max_discard_sectors,
		    offsetof(struct virtio_blk_config, unused1) -
			offsetof(struct virtio_blk_config, max_discard_sectors));
	if (rc)
		return rc;

	vb->sectors = le64_to_cpu(cfg.capacity);
	if (virtio_has(vdev, VIRTIO_BLK_F_BLK_SIZE)) {
		uint32_t b = le32_to_cpu(cfg.blk_size);

		if (is_pow2(b) && b >= 512 && b <= 65536)
			bs = b;
		else
			plat_printf("%s: ignoring odd block size %u, using 512\n", vb->name, b);
	}
	spb = bs / 512;
	vb->bdev.block_size = bs;
	vb->bdev.nr_blocks = vb->sectors / spb;
	vb->bdev.read_only = virtio_has(vdev, VIRTIO_BLK_F_RO);
	vb->bdev.discard_zeroes = false; /* §5.2.6.2: discarded data is unspecified */
	vb->has_flush = virtio_has(vdev, VIRTIO_BLK_F_FLUSH);

	/* Segments: Linux's reading of §5.2.4 (1 segment, any size, without SEG_MAX/SIZE_MAX). */
	vb->seg_bytes = VBLK_MAX_REQ_BYTES;
	if (virtio_has(vdev, VIRTIO_BLK_F_SIZE_MAX) && le32_to_cpu(cfg.size_max) >= bs)
		vb->seg_bytes = MIN(ALIGN_DOWN(le32_to_cpu(cfg.size_max), bs), VBLK_MAX_REQ_BYTES);
	vb->segs = 1;
	if (virtio_has(vdev, VIRTIO_BLK_F_SEG_MAX) && le32_to_cpu(cfg.seg_max))
		vb->segs = MIN(le32_to_cpu(cfg.seg_max), virtio_has(vdev, VIRTIO_F_INDIRECT_DESC)
							     ? (uint32_t)VBLK_MAX_SEGS
							     : (uint32_t)VBLK_DIRECT_SEGS);
	vb->max_req_blocks =
	    (uint32_t)(MIN((uint64_t)vb->seg_bytes * vb->segs, (uint64_t)VBLK_MAX_REQ_BYTES) / bs);

	/* A maximum of 0 means "no limit" (Linux does the same); one range per request. */
	if (virtio_has(vdev, VIRTIO_BLK_F_DISCARD)) {
		uint32_t m = le32_to_cpu(cfg.max_discard_sectors);

		vb->max_discard_blk = (m ? m : UINT32_MAX) / spb;
	}
	if (virtio_has(vdev, VIRTIO_BLK_F_WRITE_ZEROES)) {
		uint32_t m = le32_to_cpu(cfg.max_write_zeroes_sectors);

		vb->max_wz_blk = (m ? m : UINT32_MAX) / spb;
		vb->wz_unmap = cfg.write_zeroes_may_unmap != 0;
	}
	return 0;
}

/* Slots and ios: the DMA part for the device, the rest on the heap. */
static int vblk_alloc_slots(struct vblk *vb)
{
	uint64_t bus;
	void *dma;
	int rc;

	vb->nslots = vb->vq.size;
	vb->dma_pages =
	    (vb->nslots * sizeof(struct vblk_slot_dma) + PLAT_PAGE_SIZE - 1) / PLAT_PAGE_SIZE;
	rc = plat_dma_alloc(vb->dma_pages, &dma, &bus);
	if (rc)
		return rc;
	vb->dma = dma;
	vb->slots = calloc(vb->nslots, sizeof(*vb->slots));
	vb->ios = calloc(vb->nslots, sizeof(*vb->ios));
	if (!vb->slots || !vb->ios)
		return -ENOMEM; /* the caller frees what was allocated */
	for (unsigned i = 0; i < vb->nslots; i++) {
		struct vblk_slot *s = &vb->slots[i];

		s->dma = (struct vblk_slot_dma *)dma + i;
		s->bus = bus + i * sizeof(struct vblk_slot_dma);
		s->next = vb->free_slots;
		vb->free_slots = s;
		vb->ios[i].next = vb->free_ios;
		vb->free_ios = &vb->ios[i];
	}
	return 0;
}

static void vblk_free(struct vblk *vb)
{
	free(vb->slots);
	free(vb->ios);
	if (vb->dma)
		plat_dma_free(vb->dma, vb->dma_pages);
	vq_fini(&vb->vq);
	free(vb);
}

int vblk_create(struct virtio_dev *vdev, struct vblk **out)
{
	uint64_t want = VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) |
			VIRTIO_BIT(VIRTIO_BLK_F_RO) | VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) |
			VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) | VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) |
			VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES) | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);
	struct vblk *vb;
	int rc;

	vb = calloc(1, sizeof(*vb));
	if (!vb)
		return -ENOMEM;
	vb->vdev = vdev;
	snprintf(vb->name, sizeof(vb->name), "vblk %s", vdev->name);
	vb->bdev.ops = &vblk_ops;
	vb->bdev.name = vb->name;
	vb->bdev.seg_writes = true; /* WRITE only: vblk_plan() refuses a list on WRITE_BYTES */
	vb->timeout_ns = VBLK_TIMEOUT_NS_DEFAULT;

	rc = virtio_negotiate(vdev, want);
	if (rc)
		goto err_negotiate;
	rc = vblk_configure(vb);
	if (rc)
		goto err_setup;
	/* Indirect tables sized for the largest piece: header, segments, status. */
	rc = virtio_setup_queue(vdev, &vb->vq, 0, VBLK_QUEUE_SIZE, 2 + vb->segs);
	if (rc)
		goto err_setup;
	rc = vblk_alloc_slots(vb);
	if (rc)
		goto err_setup;
	virtio_ready(vdev);
	*out = vb;
	return 0;

err_setup:
	virtio_fail(vdev);
	virtio_stop(vdev);
err_negotiate:
	plat_printf("%s: not usable (%d)\n", vb->name, rc);
	vblk_free(vb);
	return rc;
}

static void vblk_destroy(struct blkdev *bdev)
{
	struct vblk *vb = vblk_from_blkdev(bdev);
	struct vblk_slot *s;

	/* Stop DMA before freeing what the device could still write. */
	if (virtio_stop(vb->vdev)) {
		plat_printf("%s: reset failed; keeping its memory\n", vb->name);
		return;
	}
	while ((s = vq_detach(&vb->vq)) != NULL)
		vblk_finish_slot(vb, s, -EIO);
	vblk_free(vb);
}

void vblk_features_str(const struct vblk *vb, char *buf, unsigned len)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {
		{ VIRTIO_BLK_F_RO, "ro" },
		{ VIRTIO_BLK_F_FLUSH, "flush" },
		{ VIRTIO_BLK_F_DISCARD, "discard" },
		{ VIRTIO_BLK_F_WRITE_ZEROES, "write-zeroes" },
		{ VIRTIO_BLK_F_BLK_SIZE, "blk-size" },
		{ VIRTIO_BLK_F_SEG_MAX, "seg-max" },
		{ VIRTIO_F_INDIRECT_DESC, "indirect" },
		{ VIRTIO_F_ACCESS_PLATFORM, "access-platform" },
	};
	size_t used = 0;

	if (len)
		buf[0] = 0;
	for (unsigned i = 0; i < ARRAY_SIZE(names); i++) {
		int n;

		if (!virtio_has(vb->vdev, names[i].bit))
			continue;
		n = snprintf(buf + used, len - used, "%s%s", used ? " " : "", names[i].name);
		if (n < 0 || (size_t)n >= len - used)
			return;
		used += (size_t)n;
	}
}

static bool vblk_signals(const struct blkdev *bdev)
{
	const struct vblk *vb = (const struct vblk *)bdev;

	return vb->wakes && !vb->dead && !vb->done_ios;
}

static const struct blkdev_ops vblk_ops = {
	.read = vblk_read,
	.write = vblk_write,
	.flush = vblk_flush,
	.discard = vblk_discard,
	.write_zeroes = vblk_write_zeroes,
	.submit = vblk_submit,
	.poll = vblk_poll_op,
	.signals_completion = vblk_signals,
	.destroy = vblk_destroy,
};
