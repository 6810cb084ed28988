/* SPDX-License-Identifier: MIT */
/*
 * The block-device interface core/ reaches disks through (dependency inversion, as SPDK's
 * spdk_bs_dev): core states what it needs, drivers/virtio-blk and host/ supply it.
 *
 * A device is an array of nr_blocks blocks of block_size bytes (a power of two, >= 512).
 * Every range is given in those blocks. Two ways to do I/O:
 *   - synchronous (read/write/flush/discard below): the metadata path uses these;
 *   - asynchronous (submit + poll): the data path keeps many requests in flight. A device
 *     that has no submit op gets a synchronous fallback in blkdev_submit().
 * Implementations embed struct blkdev first and use container_of.
 *
 * Errors: -EINVAL for a range outside the device or a zero count, -EROFS for a write to a
 * read-only device, -EOPNOTSUPP for an op the device lacks, -EIO for a device failure,
 * -ETIMEDOUT when the device did not answer in bounded time, -EAGAIN from submit when the
 * queue is full (poll, then submit again).
 *
 * Completions (what the thin pool and the NBD server rely on):
 *   - done() runs exactly once per request blkdev_submit() accepted (returned 0), and never
 *     for one it refused. It may run inside blkdev_submit() itself (core/blkdev.c's
 *     synchronous fallback, used by every host device), inside blkdev_poll(), and inside
 *     any synchronous call on the device: those poll until their own request is done and
 *     deliver the others' completions on the way (blkdev_submit_wait(), which
 *     drivers/virtio-blk and thin volumes use; a thin volume's
 *     synchronous calls run the whole pool, so they deliver completions of every volume of
 *     that pool).
 *   - Completions come in any order, not in submission order: virtio-blk completes as the
 *     device does, a thin volume as each request's data blocks and metadata allow. Two
 *     requests in flight at once on overlapping blocks are not ordered either; a caller
 *     that needs an order waits for the first done() before submitting the second.
 *   - done() may call blkdev_submit(), on this device or another (virtio-blk gives the
 *     finished request's slot back before calling done(); a thin volume only queues what is
 *     submitted from there). With a synchronous device the new request completes inside
 *     that call, so a done() that always submits recurses without bound: the thin pool and
 *     the NBD server therefore only record the result in done() and submit from their own
 *     poll loop. done() must not call blkdev_poll(), a synchronous call or blkdev_destroy()
 *     on the device that called it: they are not re-entrant.
 *
 * FLUSH (blkdev_flush(), or a BLKDEV_FLUSH request) covers every write, discard and
 * write-zeroes that COMPLETED (its done() ran, or its synchronous call returned) before the
 * flush was submitted: when the flush completes without error they are durable. Requests
 * still in flight when the flush is submitted, and any submitted after it, are not covered
 * (they may or may not be durable) and may even reach the medium before the flush
 * completes: a FLUSH orders nothing, it only makes earlier completions durable. What each
 * device does for it:
 *   - drivers/virtio-blk: VIRTIO_BLK_T_FLUSH when the device offers VIRTIO_BLK_F_FLUSH
 *     (virtio 1.1 §5.2.6: a write is stable once it completed and a flush sent after its
 *     completion completed); without that feature completed writes are already durable
 *     (§5.2.5) and the flush completes at the next poll with no device work;
 *   - host/filedisk.c: fsync() of the file (every pwrite() that returned);
 *     host/memdisk.c: nothing to do (memory is the medium); host/crashdev.c: applies every
 *     pending write, in order, to the lower device and flushes it; host/faultdev.c and
 *     core/blkdev_slice.c pass it to the lower device (a slice's flush covers the whole
 *     lower device); core/blkdev_linear.c to each of its distinct lower devices once;
 *   - a thin volume (core/thin/thin_pool.h) gives more: its FLUSH waits for every earlier
 *     modifying request of the pool, completed or not, then commits the pool.
 * Read-only devices accept FLUSH.
 *
 * Byte-granular writes (optional; a device that takes them sets byte_writes and has a submit
 * op): BLKDEV_WRITE_BYTES and BLKDEV_WRITE_ZEROES_BYTES name a byte range, req->offset and
 * req->length (any alignment, length >= 1; block and count are not used), so that a device
 * which already orders its own read-modify-write can take a piece smaller than a block
 * without its caller reading and writing the block around it. The contract (a thin volume,
 * core/thin/thin_pool.h, is the one that offers it):
 *   - the partial blocks at either end are read, patched and written by the device as one
 *     step against every other write to those blocks: a write submitted before it that
 *     overlaps them completes first, one submitted after it waits for it, so concurrent
 *     unaligned writes to one block never lose each other's bytes;
 *   - a read overlapping it sees, per block, the old or the new contents, as with aligned
 *     writes;
 *   - BLKDEV_WRITE_ZEROES_BYTES may deallocate the whole blocks it covers, as
 *     BLKDEV_WRITE_ZEROES does;
 *   - for FLUSH both count as writes.
 * A device without byte_writes refuses them with -EOPNOTSUPP (blkdev_submit()); callers
 * then do the read-modify-write themselves and order it (net/nbd/nbd_server.c does).
 * Errors as for WRITE: -EINVAL for an empty range or one past the end, -EROFS.
 *
 * Segment lists (WRITE and WRITE_BYTES): a request may carry its payload as pieces held
 * elsewhere (received network buffers: docs/nbd.md "Borrowed input") instead of one buffer:
 * req->segs non-NULL, req->nr_segs entries, the payload starting req->seg_off bytes into
 * segs[0] and running on through the next ones (count * block_size bytes, or length for
 * WRITE_BYTES); req->buf is then not used. Pieces have any length >= 1 and any address. The
 * list and the memory it names stay valid and unchanged until done() runs. A device that
 * takes lists itself sets seg_writes (drivers/virtio-blk, core/blkdev_linear.c, a thin
 * volume); for any other blkdev_submit() gathers the payload into one buffer and submits
 * that (the single bounce, counted in perf_payload.write_copied). A device with seg_writes
 * whose submit op cannot send a particular list as it is (virtio-blk: a block in more pieces
 * than seg_max, more descriptors than its ring) returns -E2BIG, having started nothing, and
 * blkdev_submit() bounces that request the same way: a valid list is never refused.
 * -EINVAL when the list holds fewer bytes than the payload, or a list on another op.
 *
 * Payloads held by the transport (optional; the host build's raw-file exports): a WRITE with
 * req->in_handle true has its whole payload (count * block_size bytes, nothing else) waiting in an
 * object of the transport named by req->handle (host/nbd_sock.c: the read end of a pipe the
 * payload was spliced into from the socket, so the device moves it into the file without a copy in
 * user space: docs/nbd.md "Payloads spliced into the file"). Only a device that sets handle_writes
 * gets one (host/filedisk.c); blkdev_submit() refuses it with -EINVAL for any other, for any op
 * but WRITE, or with segs. req->buf is still a buffer of the payload's size the device may read
 * the payload into when it cannot move it directly. The device consumes the payload from the
 * handle before done() runs (or reports an error; the handle may then hold leftovers), and never
 * keeps or closes the handle: the transport gets it back once done() ran.
 */
#ifndef CORE_BLKDEV_H
#define CORE_BLKDEV_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct blkdev;

/* One piece of a segment list ("Segment lists" above). */
struct blkdev_seg {
	const void *base;
	uint32_t len;
};

enum blkdev_op {
	BLKDEV_READ,
	BLKDEV_WRITE,
	BLKDEV_FLUSH,
	BLKDEV_DISCARD,
	BLKDEV_WRITE_ZEROES,
	BLKDEV_WRITE_BYTES,	   /* optional: bytes [offset, offset + length) from buf */
	BLKDEV_WRITE_ZEROES_BYTES, /* optional: zeroes over [offset, offset + length) */
};

/* One asynchronous request. The caller owns it until done() is called. */
struct blkdev_req {
	enum blkdev_op op;
	uint64_t block; /* first block */
	uint32_t count; /* blocks (0 for FLUSH) */
	void *buf;	/* count * block_size bytes for READ and WRITE */
	void (*done)(struct blkdev_req *req, int rc); /* see "Completions" above */
	void *priv;				      /* the caller's */
	struct blkdev_req *next;		      /* free for the current owner's lists */
	uint64_t offset; /* bytes: the _BYTES ops only ("Byte-granular writes" above) */
	uint32_t length; /* bytes (length bytes of buf for BLKDEV_WRITE_BYTES) */
	/* WRITE / WRITE_BYTES: the payload as a segment list instead of buf (NULL: buf). */
	const struct blkdev_seg *segs;
	uint32_t nr_segs;
	uint32_t seg_off; /* bytes of segs[0] before the payload */
	/* WRITE: the payload waits in the transport's object @handle ("Payloads held ..." above) */
	bool in_handle;
	int handle;
};

struct blkdev_ops {
	int (*read)(struct blkdev *dev, uint64_t block, uint32_t count, void *buf);
	int (*write)(struct blkdev *dev, uint64_t block, uint32_t count, const void *buf);
	int (*flush)(struct blkdev *dev);
	/* optional: NULL means -EOPNOTSUPP */
	int (*discard)(struct blkdev *dev, uint64_t block, uint32_t count);
	int (*write_zeroes)(struct blkdev *dev, uint64_t block, uint32_t count);
	/* optional asynchronous pair */
	int (*submit)(struct blkdev *dev, struct blkdev_req *req);
	int (*poll)(struct blkdev *dev); /* completions delivered, or -errno */
	/*
	 * optional: true when every request now in flight will announce its completion through
	 * the platform's wake-up (the host build's filedisk: its eventfd), so a loop that sleeps
	 * on that wake-up need not keep polling this device meanwhile (nbd_server_busy()).
	 */
	bool (*signals_completion)(const struct blkdev *dev);
	void (*destroy)(struct blkdev *dev);
};

struct blkdev {
	const struct blkdev_ops *ops;
	const char *name;
	uint64_t nr_blocks;
	uint32_t block_size;
	bool read_only;
	bool discard_zeroes; /* a discarded range reads back as zeroes */
	bool byte_writes;    /* submit takes the _BYTES ops ("Byte-granular writes" above) */
	bool seg_writes;     /* submit takes segment lists ("Segment lists" above) */
	bool handle_writes;  /* submit takes in_handle WRITEs ("Payloads held ..." above) */
};

/* True when [block, block + count) is a non-empty range inside the device. */
static inline bool blkdev_range_ok(const struct blkdev *dev, uint64_t block, uint64_t count)
{
	return count != 0 && block < dev->nr_blocks && count <= dev->nr_blocks - block;
}

/* True when [offset, offset + length) is a non-empty byte range inside the device. */
static inline bool blkdev_bytes_ok(const struct blkdev *dev, uint64_t offset, uint64_t length)
{
	uint64_t size = dev->nr_blocks * dev->block_size;

	return length != 0 && offset < size && length <= size - offset;
}

static inline int blkdev_read(struct blkdev *dev, uint64_t block, uint32_t count, void *buf)
{
	if (!blkdev_range_ok(dev, block, count))
		return -EINVAL;
	return dev->ops->read(dev, block, count, buf);
}

static inline int blkdev_write(struct blkdev *dev, uint64_t block, uint32_t count, const void *buf)
{
	if (!blkdev_range_ok(dev, block, count))
		return -EINVAL;
	if (dev->read_only)
		return -EROFS;
	return dev->ops->write(dev, block, count, buf);
}

static inline int blkdev_flush(struct blkdev *dev)
{
	return dev->ops->flush(dev);
}

static inline int blkdev_discard(struct blkdev *dev, uint64_t block, uint32_t count)
{
	if (!blkdev_range_ok(dev, block, count))
		return -EINVAL;
	if (dev->read_only)
		return -EROFS;
	if (!dev->ops->discard)
		return -EOPNOTSUPP;
	return dev->ops->discard(dev, block, count);
}

static inline int blkdev_write_zeroes(struct blkdev *dev, uint64_t block, uint32_t count)
{
	if (!blkdev_range_ok(dev, block, count))
		return -EINVAL;
	if (dev->read_only)
		return -EROFS;
	if (!dev->ops->write_zeroes)
		return -EOPNOTSUPP;
	return dev->ops->write_zeroes(dev, block, count);
}

/*
 * Start @req. Returns 0 when accepted: done() will run exactly once, from a later
 * blkdev_poll() or synchronous call, or before this returns for a device without a submit
 * op. -EAGAIN when the queue is full, or another -errno when the request is refused; done()
 * is then not called.
 */
int blkdev_submit(struct blkdev *dev, struct blkdev_req *req);
/* Deliver finished requests' done() callbacks; the number delivered, or -errno. */
int blkdev_poll(struct blkdev *dev);

/* Bytes a WRITE-type request carries: count blocks, or length for the _BYTES ops. */
static inline uint64_t blkdev_req_bytes(const struct blkdev *dev, const struct blkdev_req *req)
{
	if (req->op == BLKDEV_WRITE_BYTES || req->op == BLKDEV_WRITE_ZEROES_BYTES)
		return req->length;
	return (uint64_t)req->count * dev->block_size;
}

/*
 * Segment lists: a position in one is (segs, nr, off), the next byte being off bytes into
 * segs[0]. blkdev_segs_advance() moves it @skip bytes on (the list must hold them);
 * blkdev_segs_gather() copies @len bytes from it into @dst; blkdev_segs_span() says how
 * many pieces @len bytes from it touch (0 when the list holds fewer).
 */
void blkdev_segs_advance(const struct blkdev_seg **segs, uint32_t *nr, uint32_t *off,
			 uint64_t skip);
void blkdev_segs_gather(void *dst, const struct blkdev_seg *segs, uint32_t nr, uint32_t off,
			size_t len);
uint32_t blkdev_segs_span(const struct blkdev_seg *segs, uint32_t nr, uint32_t off, uint64_t len);

/* How long blkdev_submit_wait() (and the thin pool's own waits) sleep when nothing moves. */
#define BLKDEV_WAIT_IDLE_US 100u

/*
 * Synchronous over asynchronous, for a device's synchronous ops (drivers/virtio-blk, a thin
 * volume): submit a copy of @req (op, block, count, buf; its done, priv and next are not
 * used; offset and length are, for the _BYTES ops) and blkdev_poll() @dev until the copy completes, for at most @timeout_ns. A submit
 * refused with -EAGAIN is retried, polling in between, within the same bound. Completions
 * of other requests are delivered on the way. Returns the request's result, the refusal
 * from blkdev_submit(), -ENOMEM, or -ETIMEDOUT.
 *
 * The copy lives on the heap, so a timeout is safe for the device: after -ETIMEDOUT the
 * request is still in flight and its done() frees the copy whenever it runs. @req->buf may
 * still be read or written until then: a caller that gives the buffer back must first make
 * the device end what it holds (drivers/virtio-blk resets the device, failing everything).
 *
 * @idle (optional) is asked after a poll that delivered nothing: true means nothing is in
 * progress but timers (a thin pool waiting for its commit or for space), so the loop sleeps
 * BLKDEV_WAIT_IDLE_US instead of spinning. NULL: always spin (completions come from
 * hardware at any moment, and a sleep would only add latency).
 *
 * Not from a done() of @dev: blkdev_poll() is not re-entrant.
 */
int blkdev_submit_wait(struct blkdev *dev, const struct blkdev_req *req, uint64_t timeout_ns,
		       bool (*idle)(struct blkdev *dev));

static inline void blkdev_destroy(struct blkdev *dev)
{
	if (dev && dev->ops->destroy)
		dev->ops->destroy(dev);
}

#endif
