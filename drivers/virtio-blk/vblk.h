/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk driver (virtio 1.1 §5.2) behind core/blkdev.h.
 *
 * One request queue, polled. The data path submits many requests at once (blkdev_submit:
 * up to the queue size in flight, 256 with QEMU's defaults thanks to indirect descriptors)
 * and collects completions with blkdev_poll(), which calls each request's done(). The
 * metadata path uses the synchronous calls (blkdev_read/write/flush/discard), which submit
 * and poll until that request is done; done() callbacks of other requests in flight may run
 * from inside them.
 *
 * Requests larger than the device takes in one (max_req_blocks) are split into pieces that
 * share one done() call, which reports the first error. Every request is bounded in time:
 * if the oldest request in flight is older than timeout_ns, the device is reset (no DMA
 * after that), every request in flight ends with -ETIMEDOUT, and the device is dead: later
 * requests fail with -EIO.
 *
 * Errors, besides core/blkdev.h's: -EINVAL for a request needing more pieces than the queue
 * has slots, -EIO once the device is dead.
 */
#ifndef DRIVERS_VIRTIO_BLK_VBLK_H
#define DRIVERS_VIRTIO_BLK_VBLK_H

#include "core/base/util.h"
#include "core/blkdev.h"
#include "drivers/virtio/virtio.h"
#include "drivers/virtio/virtqueue.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- On-device structures (§5.2.4, §5.2.6) ------------------------------------------- */

#define VIRTIO_BLK_F_SIZE_MAX	  1
#define VIRTIO_BLK_F_SEG_MAX	  2
#define VIRTIO_BLK_F_RO		  5
#define VIRTIO_BLK_F_BLK_SIZE	  6
#define VIRTIO_BLK_F_FLUSH	  9
#define VIRTIO_BLK_F_TOPOLOGY	  10
#define VIRTIO_BLK_F_DISCARD	  13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

struct virtio_blk_config {
	le64 capacity; /* in 512-byte sectors, whatever blk_size says */
	le32 size_max; /* largest segment, with SIZE_MAX */
	le32 seg_max;  /* most data segments in a request, with SEG_MAX */
	le16 cylinders;
	uint8_t heads;
	uint8_t sectors;
	le32 blk_size; /* logical block size, with BLK_SIZE */
	uint8_t physical_block_exp;
	uint8_t alignment_offset;
	le16 min_io_size;
	le32 opt_io_size;
	uint8_t writeback;
	uint8_t unused0;
	le16 num_queues;
	le32 max_discard_sectors; /* with DISCARD */
	le32 max_discard_seg;
	le32 discard_sector_alignment;
	le32 max_write_zeroes_sectors; /* with WRITE_ZEROES */
	le32 max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
};
_Static_assert(__builtin_offsetof(struct virtio_blk_config, blk_size) == 20, "§5.2.4");
_Static_assert(__builtin_offsetof(struct virtio_blk_config, max_discard_sectors) == 36, "§5.2.4");
_Static_assert(__builtin_offsetof(struct virtio_blk_config, write_zeroes_may_unmap) == 56,
	       "§5.2.4");

#define VIRTIO_BLK_T_IN		  0
#define VIRTIO_BLK_T_OUT	  1
#define VIRTIO_BLK_T_FLUSH	  4
#define VIRTIO_BLK_T_DISCARD	  11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK	    0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

/* The device-readable header that starts every request. */
struct virtio_blk_outhdr {
	le32 type;
	le32 reserved;
	le64 sector; /* 512-byte units */
};
_Static_assert(sizeof(struct virtio_blk_outhdr) == 16, "§5.2.6");

/* The data of DISCARD and WRITE_ZEROES: one range per request here. */
struct virtio_blk_discard_write_zeroes {
	le64 sector;
	le32 num_sectors;
	le32 flags; /* VIRTIO_BLK_WZ_F_UNMAP */
};
_Static_assert(sizeof(struct virtio_blk_discard_write_zeroes) == 16, "§5.2.6");

#define VIRTIO_BLK_WZ_F_UNMAP 1

/* ---- The driver -------------------------------------------------------------------------- */

#define VBLK_QUEUE_SIZE	   256		       /* asked for; the device may give less */
#define VBLK_MAX_REQ_BYTES (64u * 1024 * 1024) /* largest piece we send */
/* Data descriptors per piece: with indirect descriptors up to what the device offers (QEMU:
 * seg_max 126, or queue size - 2 with seg-max-adjust), within one indirect table; without,
 * a chain takes that many ring slots, so few. */
#define VBLK_MAX_SEGS		(VQ_MAX_INDIRECT - 2)
#define VBLK_DIRECT_SEGS	8
#define VBLK_TIMEOUT_NS_DEFAULT (30 * NSEC_PER_SEC) /* QEMU on a busy host can be slow */

struct vblk_slot;
struct vblk_io;

struct vblk_stats {
	uint64_t reads, writes, flushes, discards, write_zeroes; /* pieces completed */
	uint64_t bytes_read, bytes_written;
	uint64_t errors;       /* pieces that ended with an error */
	unsigned max_inflight; /* most pieces in flight at once */
};

struct vblk {
	struct blkdev bdev; /* first: core holds a struct blkdev * */
	struct virtio_dev *vdev;
	struct vq vq;
	char name[24]; /* "vblk 00:04.0" */

	uint64_t sectors;	  /* capacity in 512-byte sectors */
	uint32_t max_req_blocks;  /* largest READ/WRITE piece */
	uint32_t max_discard_blk; /* largest DISCARD piece (0: no DISCARD) */
	uint32_t max_wz_blk;	  /* largest WRITE_ZEROES piece (0: no WRITE_ZEROES) */
	uint32_t seg_bytes;	  /* largest data descriptor */
	unsigned segs;		  /* data descriptors per piece */
	bool wz_unmap;		  /* WRITE_ZEROES may punch holes */
	bool has_flush;

	uint64_t timeout_ns; /* see above; tests shorten it */
	bool dead;
	/*
	 * Set by the caller once the queue's completions can interrupt (the firmware wired the
	 * function's MSI-X to its wake-up vector): blkdev signals_completion is then true
	 * while every request in flight will be announced that way (none finished without
	 * the device, waiting for the next poll).
	 */
	bool wakes;

	/* Request slots: one per piece in flight; device-visible part in DMA memory. */
	struct vblk_slot *slots;
	struct vblk_slot *free_slots;
	struct vblk_slot *oldest, *newest; /* in flight, by submission time */
	struct vblk_io *ios, *free_ios;	   /* one per blkdev_req in flight */
	struct vblk_io *done_ios;	   /* finished without the device, for the next poll */
	unsigned nslots, inflight;
	void *dma;
	size_t dma_pages;

	struct vblk_stats stats;
};

/*
 * Drive the virtio-blk device @vdev (transport already initialised, status untouched):
 * negotiate, read the configuration, set up the queue and slots, DRIVER_OK. On success
 * *out is a new device; blkdev_destroy(&(*out)->bdev) stops and frees it. -ENODEV (not a
 * usable virtio 1.x device), -EIO, -ETIMEDOUT, -ENOMEM.
 */
int vblk_create(struct virtio_dev *vdev, struct vblk **out);

static inline struct vblk *vblk_from_blkdev(struct blkdev *bdev)
{
	return (struct vblk *)bdev;
}

/*
 * Deliver completions (as blkdev_poll); check for a wedged device. Number delivered, or -EIO.
 * Rings the doorbell first for requests submitted since the last one (vblk_kick()).
 */
int vblk_poll(struct vblk *vb);
/*
 * Submissions only place requests on the ring: one doorbell, here, announces all of them
 * (the device may decline it: virtqueue.h, vq_kick()). The main loop calls it at the end of
 * every pass; nothing when nothing was submitted since, or the device is dead.
 */
void vblk_kick(struct vblk *vb);

/* The virtio-blk status byte as an errno: 0, -EIO, -EOPNOTSUPP (the one mapping). */
int vblk_status_to_errno(uint8_t status);

/* The negotiated features as words ("ro flush discard write-zeroes indirect") into @buf. */
void vblk_features_str(const struct vblk *vb, char *buf, unsigned len);

#endif
