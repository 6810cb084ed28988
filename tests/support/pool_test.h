/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the thin-pool tests: pools on memory disks, a data disk that completes
 * requests out of order, and synchronous wrappers over a volume's blkdev.
 */
#ifndef TESTS_SUPPORT_POOL_TEST_H
#define TESTS_SUPPORT_POOL_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/util.h"
#include "core/thin/thin_pool.h"
#include "tests/support/thin_test.h"

#define KB64 65536u

/*----------------------------------------------------------------*/
/* A device that completes requests out of order (a virtio queue with reordering). */

struct oodev {
	struct blkdev dev;
	struct blkdev *lower;
	struct blkdev_req *q[256];
	unsigned n;
	uint64_t seed;
	uint64_t submitted, max_depth;
};

/* @o over @lower; @seed picks the completion order. */
void oodev_init(struct oodev *o, struct blkdev *lower, uint64_t seed);

/* Carry out @req on @lower with the synchronous calls: what a test double does when it
 * completes a queued request. Returns the call's result (-EINVAL for an unknown op). */
int blkdev_run_req(struct blkdev *lower, const struct blkdev_req *req);

/* A request submitted without waiting; done/rc are set by its completion. */
struct waiter {
	struct blkdev_req req;
	bool done;
	int rc;
};

/* Submit @count blocks of @op at @block of @d with @w (zeroed first); blkdev_submit()'s
 * result. */
int waiter_submit(struct blkdev *d, struct waiter *w, enum blkdev_op op, uint64_t block,
		  uint32_t count, void *buf);

/*----------------------------------------------------------------*/
/* Pools */

struct tpool {
	struct blkdev *meta, *data;
	struct thin_pool *pool;
	struct thin_pool_opts o;
};

/* Memory disks: @meta_blocks of 4 KiB, @data_blocks of 64 KiB; formatted and opened. */
int tpool_create(struct tpool *t, uint64_t meta_blocks, uint64_t data_blocks,
		 const struct thin_pool_opts *o);
/* Close the pool (a failure fails the case) and free the disks. */
void tpool_destroy(struct tpool *t);
/* Fill @buf with a pattern derived from @tag. */
void pattern(void *buf, size_t len, uint64_t tag);
/* True when every byte of @buf is @v. */
bool all_bytes(const void *buf, size_t len, uint8_t v);
/* Thin device @id (created when missing) opened read-write as a volume of @size bytes; its
 * blkdev, or NULL (the case failed). */
struct blkdev *pool_vol_open(struct thin_pool *pool, thin_id_t id, uint64_t size,
			     struct thin_volume **vol);
/* Data blocks in use (~0 when the status fails). */
uint64_t data_used(struct thin_pool *pool);

#endif
