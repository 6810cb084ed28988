/* SPDX-License-Identifier: MIT */
/*
 * A slice of a block device: blocks [first, first + nr_blocks) of a lower device, seen as a
 * device of its own whose block 0 is the lower device's block @first (like a partition, or
 * dm-linear with one target).
 *
 * The appliance uses it to give the pool metadata the head of the metadata disk and keep the
 * tail for the configuration store (docs/appliance.md), so the pool can never write past its
 * part whatever it believes the device size to be.
 *
 * A slice is a core/blkdev_linear.h device of one piece, with its contract: every op is
 * forwarded with the offset added; a range outside the slice is -EINVAL before it reaches the
 * lower device. flush() flushes the whole lower device (devices have no ranged flush).
 * Asynchronous requests are forwarded when the lower device has a submit op (the slice's
 * poll polls the lower device; at most BLKDEV_LINEAR_QUEUE in flight, then -EAGAIN);
 * otherwise blkdev_submit()'s synchronous fallback applies. The slice has the lower device's
 * name, block size, read_only and discard_zeroes. It never owns the lower device: destroy the
 * slice first, then the lower device.
 */
#ifndef CORE_BLKDEV_SLICE_H
#define CORE_BLKDEV_SLICE_H

#include "core/blkdev.h"

/*
 * Create a slice of @lower. -EINVAL when @nr_blocks is 0 or the range does not lie inside
 * @lower; -ENOMEM.
 */
int blkdev_slice_create(struct blkdev *lower, uint64_t first, uint64_t nr_blocks,
			struct blkdev **out);

#endif
