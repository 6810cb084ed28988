/* SPDX-License-Identifier: MIT */
/*
 * A window onto a lower block device; see core/blkdev_slice.h. It is a linear device of one
 * piece (core/blkdev_linear.h), which keeps every request inside [first, first + nr_blocks)
 * and forwards each op with the offset added.
 */
#include "core/blkdev_slice.h"

#include "core/blkdev_linear.h"

int blkdev_slice_create(struct blkdev *lower, uint64_t first, uint64_t nr_blocks,
			struct blkdev **out)
{
	struct blkdev_piece piece = { .lower = lower, .first = first, .nr_blocks = nr_blocks };

	return blkdev_linear_create(&piece, 1, out);
}
