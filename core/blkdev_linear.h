/* SPDX-License-Identifier: MIT */
/*
 * A linear device: pieces of lower block devices laid end to end, seen as one device (like
 * dm-linear with several targets). Piece 0 is blocks [0, pieces[0].nr_blocks) of the device,
 * piece 1 follows it, and so on; each piece is blocks [first, first + nr_blocks) of its lower
 * device. Pieces may lie on different lower devices, or several on the same one in any order.
 *
 * What it is for: LVM may give the pool's metadata or data LV several linear segments
 * (lvextend, lvconvert --repair moving _tmeta onto the spare's extents, segments on the other
 * disk); the pool runs on the concatenation of those segments, and can never write outside
 * them whatever it believes the device size to be.
 *
 * Every op is split at piece boundaries and forwarded with each piece's offset; a range
 * outside the device is -EINVAL before it reaches any lower device. Synchronous ops run the
 * parts in order and stop at the first error (the parts before it are done: a failed write
 * leaves its range undefined, as on any device). discard and write_zeroes are -EOPNOTSUPP,
 * before anything is done, when the lower device of a piece in the range lacks the op.
 * flush() flushes every distinct lower device once, all of them even after an error, and
 * returns the first error (devices have no ranged flush).
 *
 * Asynchronous requests: when at least one lower device has a submit op, the device has one
 * too (and a poll, which polls every distinct lower device once, then resubmits the children
 * a lower device refused with -EAGAIN). A request is split into one child request per piece
 * it touches (a FLUSH: one per distinct lower device), each submitted with blkdev_submit() on
 * its lower device (so a lower device without submit completes its child at once). The
 * caller's request completes exactly once, after every child did, with 0 or the error of the
 * first child to fail (in the order they finish). When the first child is refused by its
 * lower device, nothing is in flight: the request is refused with that error (as a slice
 * does) and done() never runs. A later child refused with -EAGAIN waits for the next poll; one
 * refused otherwise counts as a child that failed with that error. Children and requests come
 * from pools sized at creation (BLKDEV_LINEAR_QUEUE requests, BLKDEV_LINEAR_QUEUE +
 * number of pieces children): submit allocates nothing, and is -EAGAIN while the pools lack
 * room (poll, then submit again). poll returns the number of the caller's requests it
 * completed, or the first error a lower device's poll returned.
 *
 * The device's size is the sum of the pieces; its block size is the lower devices' (they
 * must all have the same); it is read_only when any lower device is and discard_zeroes only
 * when all are. Its name is the first lower device's for one piece, else "linear(N):" and
 * the first lower's name. It never owns the lower devices: destroy it first (with nothing in
 * flight), then them.
 */
#ifndef CORE_BLKDEV_LINEAR_H
#define CORE_BLKDEV_LINEAR_H

#include "core/blkdev.h"

/* The most pieces one device takes: it bounds the children of one request. */
#define BLKDEV_LINEAR_MAX_PIECES 64u
/* Requests in flight at once on a device whose lower devices have a submit op. */
#define BLKDEV_LINEAR_QUEUE 256u

struct blkdev_piece {
	struct blkdev *lower;
	uint64_t first;	    /* first block on @lower */
	uint64_t nr_blocks; /* blocks of @lower, > 0 */
};

/*
 * Create a linear device of the @n pieces (copied: @pieces may go after the call). -EINVAL
 * when @n is 0 or above BLKDEV_LINEAR_MAX_PIECES, a piece has no lower device, is empty or
 * does not lie inside its lower device, the lower devices' block sizes differ, or the sum
 * of the pieces overflows; -ENOMEM.
 */
int blkdev_linear_create(const struct blkdev_piece *pieces, unsigned n, struct blkdev **out);

/*
 * Grow linear device @dev at its end by piece @p (lvextend under an open pool): the last
 * piece is extended when @p continues it on the same lower device, else @p is appended.
 * Requests in flight are unaffected (blocks before the old end do not move). -EINVAL when
 * @p's lower device is not one of @dev's, @p is empty or outside its lower device; -E2BIG
 * past BLKDEV_LINEAR_MAX_PIECES. Only for a device made by blkdev_linear_create().
 */
int blkdev_linear_grow(struct blkdev *dev, const struct blkdev_piece *p);

#endif
