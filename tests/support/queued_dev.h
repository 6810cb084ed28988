/* SPDX-License-Identifier: MIT */
/*
 * A block device with a real queue, played by the test (core/blkdev.h's asynchronous pair):
 * blkdev_submit() queues a request, blkdev_poll() completes every queued one against a lower
 * device the test owns (a memdisk), newest first, unless the test holds the queue. The NBD
 * tests use it to keep requests in flight for as long as they like, to see replies leave out
 * of order, back-pressure, and what reaches the device (a buffer, a segment list, a payload
 * held by the transport).
 *
 * What it does, by request:
 *   - submit: -EAGAIN when @depth requests are queued (QD_MAX_QUEUE when @depth is 0 or
 *     more than that); a WRITE gets @refuse when that is set (nothing is queued, done() never
 *     runs); otherwise a WRITE is recorded (@seen; the first QD_SEEN_SEGS pieces of its list
 *     in @seen_segs; one of @buf_writes, @list_writes, @handle_writes counted) and
 *     @on_submit is called; then the request is queued (@n of them in @q, oldest first).
 *   - poll: nothing while @hold; else every queued request completes, newest first, the
 *     number completed returned. READ reads from @lower; WRITE completes with @fail when
 *     set, else its payload (buf, or the list gathered now, at completion, so a piece freed
 *     early is caught by ASan, or for in_handle what @payload returns) is written to @lower;
 *     WRITE_ZEROES and DISCARD write zeroes to @lower; FLUSH and anything else complete with
 *     0 and no work. done() gets @lower's result.
 *   - read, write and flush (synchronous): passed to @lower (flush: nothing).
 *
 * The device takes segment lists or in_handle WRITEs only when the test sets seg_writes or
 * handle_writes in @dev after qd_init(). Not re-entrant (nor is a real one): done() must not
 * poll it.
 */
#ifndef TESTS_SUPPORT_QUEUED_DEV_H
#define TESTS_SUPPORT_QUEUED_DEV_H

#include <stdbool.h>
#include <stdint.h>

#include "core/blkdev.h"

#define QD_MAX_QUEUE 64
#define QD_SEEN_SEGS 512

struct queued_dev {
	struct blkdev dev; /* first; hand &dev to the server */
	struct blkdev *lower;
	struct blkdev_req *q[QD_MAX_QUEUE];
	unsigned n;	/* queued */
	unsigned depth; /* submit says -EAGAIN at this many queued; 0 (or more): QD_MAX_QUEUE */
	bool hold;	/* poll completes nothing while set */
	int fail;	/* complete WRITEs with this (a negative errno) when non-zero */
	int refuse;	/* submit refuses WRITEs with this (a negative errno) when non-zero */
	struct blkdev_req seen; /* the last WRITE as submitted (its pointers: the caller's) */
	struct blkdev_seg seen_segs[QD_SEEN_SEGS];	 /* a copy of its list's first pieces */
	uint64_t buf_writes, list_writes, handle_writes; /* WRITEs submitted, by payload */
	/*
	 * Optional hooks for what a test checks beyond that:
	 * @on_submit runs for every WRITE submit accepts, after it was recorded in @seen (e.g.
	 * that a list's pieces lie in the transport's buffers);
	 * @payload gives an in_handle WRITE's payload at completion (count * block_size bytes),
	 * NULL when there is none (the WRITE then completes with -EIO); without it an in_handle
	 * WRITE completes with -EIO.
	 */
	void (*on_submit)(struct queued_dev *qd, const struct blkdev_req *req);
	const void *(*payload)(struct queued_dev *qd, const struct blkdev_req *req);
	void *priv; /* the test's */
};

/*
 * Make @qd (all of it reset) a queued device over @lower, of @lower's size and block size,
 * named "queued", with no flags set. @lower stays the caller's: destroy it after the last
 * request completed; @qd itself needs no destroy. A NULL @lower (its creation failed, which the
 * test reported) gives a device of no blocks rather than a crash.
 */
void qd_init(struct queued_dev *qd, struct blkdev *lower);

#endif
