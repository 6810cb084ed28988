/* SPDX-License-Identifier: MIT */
/*
 * Pieces of lower devices end to end; see core/blkdev_linear.h. The invariant: no request
 * reaches a lower device outside its pieces. The inline blkdev_*() wrappers and
 * blkdev_submit() check the device's own nr_blocks before an op is called, and every op
 * below cuts its range at piece ends, so each part lies inside one piece.
 */
#include "core/blkdev_linear.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/base/util.h"

struct lin_piece {
	struct blkdev *lower;
	uint64_t first; /* on @lower */
	uint64_t start; /* on the linear device: the sum of the pieces before */
	uint64_t nr_blocks;
};

struct blkdev_linear;

/* The caller's request while its children are in flight. */
struct lin_parent {
	struct blkdev_linear *lin;
	struct blkdev_req *orig;
	struct lin_parent *next_free;
	unsigned pending; /* children not finished, plus one while submit is splitting */
	int rc;		  /* the first child's error */
};

/* What a lower device sees; req.next links the free and retry lists while we hold it. */
struct lin_child {
	struct blkdev_req req;
	struct lin_parent *parent;
	struct blkdev *lower;
};

struct blkdev_linear {
	struct blkdev dev;
	unsigned n, nr_lowers;
	struct lin_piece piece[BLKDEV_LINEAR_MAX_PIECES];
	struct blkdev *lowers[BLKDEV_LINEAR_MAX_PIECES]; /* distinct, in piece order */
	char name[64];
	/* Asynchronous requests only (NULL otherwise): both pools allocated at creation. */
	struct lin_parent *parents, *free_parents;
	struct lin_child *children;
	struct blkdev_req *free_children; /* through req.next */
	unsigned nr_free_children;
	struct blkdev_req *retry_head, *retry_tail; /* children refused with -EAGAIN */
	uint64_t delivered;			    /* the caller's requests completed */
};

static struct blkdev_linear *to_lin(struct blkdev *dev)
{
	return container_of(dev, struct blkdev_linear, dev);
}

/* The piece holding @block (inside the device): the last one starting at or before it. */
static unsigned lin_find(const struct blkdev_linear *l, uint64_t block)
{
	unsigned lo = 0, hi = l->n - 1;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo + 1) / 2;

		if (l->piece[mid].start <= block)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* Blocks of [block, block + count) that lie in piece @i, from @block on. */
static uint32_t lin_part(const struct lin_piece *p, uint64_t block, uint32_t count)
{
	uint64_t left = p->start + p->nr_blocks - block;

	return left < count ? (uint32_t)left : count;
}

/* Does every piece [block, block + count) touches have @op (BLKDEV_DISCARD/WRITE_ZEROES)? */
static bool lin_has_op(const struct blkdev_linear *l, enum blkdev_op op, uint64_t block,
		       uint32_t count)
{
	for (unsigned i = lin_find(l, block); count; i++) {
		const struct blkdev_ops *ops = l->piece[i].lower->ops;
		uint32_t part = lin_part(&l->piece[i], block, count);

		if (!(op == BLKDEV_DISCARD ? ops->discard : ops->write_zeroes))
			return false;
		block += part;
		count -= part;
	}
	return true;
}

/* One synchronous op over the pieces, part by part; stops at the first error. */
static int lin_sync(struct blkdev *dev, enum blkdev_op op, uint64_t block, uint32_t count,
		    uint8_t *buf)
{
	struct blkdev_linear *l = to_lin(dev);
	int rc = 0;

	if ((op == BLKDEV_DISCARD || op == BLKDEV_WRITE_ZEROES) && !lin_has_op(l, op, block, count))
		return -EOPNOTSUPP;
	for (unsigned i = lin_find(l, block); count && !rc; i++) {
		const struct lin_piece *p = &l->piece[i];
		uint32_t part = lin_part(p, block, count);
		uint64_t at = p->first + (block - p->start);

		switch (op) {
		case BLKDEV_READ:
			rc = blkdev_read(p->lower, at, part, buf);
			break;
		case BLKDEV_WRITE:
			rc = blkdev_write(p->lower, at, part, buf);
			break;
		case BLKDEV_DISCARD:
			rc = blkdev_discard(p->lower, at, part);
			break;
		case BLKDEV_WRITE_ZEROES:
			rc = blkdev_write_zeroes(p->lower, at, part);
			break;
		case BLKDEV_FLUSH:
		case BLKDEV_WRITE_BYTES:
		case BLKDEV_WRITE_ZEROES_BYTES:
			rc = -EINVAL; /* not passed here: flush has its own op, no byte writes */
			break;
		}
		block += part;
		count -= part;
		if (buf)
			buf += (size_t)part * dev->block_size;
	}
	return rc;
}

static int lin_read(struct blkdev *dev, uint64_t block, uint32_t count, void *buf)
{
	return lin_sync(dev, BLKDEV_READ, block, count, buf);
}

static int lin_write(struct blkdev *dev, uint64_t block, uint32_t count, const void *buf)
{
	/* Only read from: lin_sync() takes one pointer type for both directions. */
	return lin_sync(dev, BLKDEV_WRITE, block, count, (uint8_t *)buf);
}

static int lin_discard(struct blkdev *dev, uint64_t block, uint32_t count)
{
	return lin_sync(dev, BLKDEV_DISCARD, block, count, NULL);
}

static int lin_write_zeroes(struct blkdev *dev, uint64_t block, uint32_t count)
{
	return lin_sync(dev, BLKDEV_WRITE_ZEROES, block, count, NULL);
}

/* Every distinct lower device, even after an error: each one's completed writes count. */
static int lin_flush(struct blkdev *dev)
{
	struct blkdev_linear *l = to_lin(dev);
	int first = 0;

	for (unsigned i = 0; i < l->nr_lowers; i++) {
		int rc = blkdev_flush(l->lowers[i]);

		if (rc && !first)
			first = rc;
	}
	return first;
}

/* ---- Asynchronous requests ---- */

static void child_put(struct blkdev_linear *l, struct lin_child *c)
{
	c->req.next = l->free_children;
	l->free_children = &c->req;
	l->nr_free_children++;
}

/* One reference of @p gone; the last one completes the caller's request. */
static void parent_put(struct lin_parent *p)
{
	struct blkdev_linear *l = p->lin;
	struct blkdev_req *orig = p->orig;
	int rc = p->rc;

	if (--p->pending)
		return;
	/* Back in the pool before done(), which may submit again. */
	p->next_free = l->free_parents;
	l->free_parents = p;
	l->delivered++;
	orig->done(orig, rc);
}

static void child_finish(struct lin_child *c, int rc)
{
	struct lin_parent *p = c->parent;

	if (rc && !p->rc)
		p->rc = rc;
	child_put(p->lin, c);
	parent_put(p);
}

static void child_done(struct blkdev_req *req, int rc)
{
	child_finish(container_of(req, struct lin_child, req), rc);
}

static void retry_add(struct blkdev_linear *l, struct lin_child *c)
{
	c->req.next = NULL;
	if (l->retry_tail)
		l->retry_tail->next = &c->req;
	else
		l->retry_head = &c->req;
	l->retry_tail = &c->req;
}

static int lin_submit(struct blkdev *dev, struct blkdev_req *req)
{
	struct blkdev_linear *l = to_lin(dev);
	struct lin_child *kids[BLKDEV_LINEAR_MAX_PIECES];
	unsigned k, i0 = 0;
	struct lin_parent *p;
	uint64_t block = req->block;
	uint32_t count = req->count;
	uint8_t *buf = req->buf;
	/* A segment list is cut as the buffer is: each child starts where the last one ended. */
	const struct blkdev_seg *segs = req->segs;
	uint32_t nr_segs = req->nr_segs, seg_off = req->seg_off;

	if (req->op == BLKDEV_FLUSH) {
		k = l->nr_lowers;
	} else {
		i0 = lin_find(l, block);
		k = lin_find(l, block + count - 1) - i0 + 1;
	}
	if (!l->free_parents || l->nr_free_children < k)
		return -EAGAIN;
	/*
	 * Take everything first, so that a request is either refused whole or split whole:
	 * the pools must not run dry half way through it.
	 */
	p = l->free_parents;
	l->free_parents = p->next_free;
	p->orig = req;
	p->rc = 0;
	p->pending = 1 + k;
	for (unsigned j = 0; j < k; j++) {
		kids[j] = container_of(l->free_children, struct lin_child, req);
		l->free_children = l->free_children->next;
		l->nr_free_children--;
	}

	for (unsigned j = 0; j < k; j++) {
		struct lin_child *c = kids[j];
		int rc;

		c->req = *req;
		c->req.done = child_done;
		c->req.next = NULL;
		c->parent = p;
		if (req->op == BLKDEV_FLUSH) {
			c->lower = l->lowers[j];
			c->req.block = 0;
		} else {
			const struct lin_piece *pc = &l->piece[i0 + j];
			uint32_t part = lin_part(pc, block, count);

			c->lower = pc->lower;
			c->req.block = pc->first + (block - pc->start);
			c->req.count = part;
			c->req.buf = buf;
			c->req.segs = segs;
			c->req.nr_segs = nr_segs;
			c->req.seg_off = seg_off;
			block += part;
			count -= part;
			if (buf)
				buf += (size_t)part * dev->block_size;
			if (segs && count)
				blkdev_segs_advance(&segs, &nr_segs, &seg_off,
						    (uint64_t)part * dev->block_size);
		}
		rc = blkdev_submit(c->lower, &c->req);
		if (!rc)
			continue;
		if (j == 0) {
			/* Nothing in flight yet: refuse the whole request, done() never runs. */
			for (unsigned i = j; i < k; i++)
				child_put(l, kids[i]);
			p->next_free = l->free_parents;
			l->free_parents = p;
			return rc;
		}
		if (rc == -EAGAIN)
			retry_add(l, c); /* lin_poll() submits it again */
		else
			child_finish(c, rc);
	}
	parent_put(p);
	return 0;
}

static int lin_poll(struct blkdev *dev)
{
	struct blkdev_linear *l = to_lin(dev);
	uint64_t before = l->delivered;
	struct blkdev_req *r;
	int err = 0;

	for (unsigned i = 0; i < l->nr_lowers; i++) {
		int rc = blkdev_poll(l->lowers[i]);

		if (rc < 0 && !err)
			err = rc;
	}
	/* Detached first: a done() run on the way may submit, and refused children join anew. */
	r = l->retry_head;
	l->retry_head = l->retry_tail = NULL;
	while (r) {
		struct lin_child *c = container_of(r, struct lin_child, req);
		int rc;

		r = r->next;
		c->req.next = NULL;
		rc = blkdev_submit(c->lower, &c->req);
		if (rc == -EAGAIN)
			retry_add(l, c);
		else if (rc)
			child_finish(c, rc);
	}
	return err ? err : (int)(l->delivered - before);
}

static void lin_destroy(struct blkdev *dev)
{
	struct blkdev_linear *l = to_lin(dev);

	free(l->parents);
	free(l->children);
	free(l);
}

/*
 * A child's completion completes its parent from the lower device's done() (parent_put()):
 * the linear device announces its completions when every lower device does and no child
 * waits on the retry list, which only lin_poll() submits again.
 */
static bool lin_signals(const struct blkdev *dev)
{
	const struct blkdev_linear *l = container_of(dev, const struct blkdev_linear, dev);

	if (l->retry_head)
		return false;
	for (unsigned i = 0; i < l->nr_lowers; i++) {
		const struct blkdev *d = l->lowers[i];

		if (!d->ops->signals_completion || !d->ops->signals_completion(d))
			return false;
	}
	return true;
}

static const struct blkdev_ops lin_ops = {
	.read = lin_read,
	.write = lin_write,
	.flush = lin_flush,
	.discard = lin_discard,
	.write_zeroes = lin_write_zeroes,
	.submit = lin_submit,
	.poll = lin_poll,
	.signals_completion = lin_signals,
	.destroy = lin_destroy,
};

/* No lower device has submit: blkdev_submit()'s synchronous fallback runs the ops above. */
static const struct blkdev_ops lin_sync_ops = {
	.read = lin_read,
	.write = lin_write,
	.flush = lin_flush,
	.discard = lin_discard,
	.write_zeroes = lin_write_zeroes,
	.destroy = lin_destroy,
};

static int lin_pools(struct blkdev_linear *l)
{
	unsigned nr_children = BLKDEV_LINEAR_QUEUE + l->n;

	l->parents = calloc(BLKDEV_LINEAR_QUEUE, sizeof(*l->parents));
	l->children = calloc(nr_children, sizeof(*l->children));
	if (!l->parents || !l->children)
		return -ENOMEM;
	for (unsigned i = 0; i < BLKDEV_LINEAR_QUEUE; i++) {
		l->parents[i].lin = l;
		l->parents[i].next_free = l->free_parents;
		l->free_parents = &l->parents[i];
	}
	for (unsigned i = 0; i < nr_children; i++)
		child_put(l, &l->children[i]);
	return 0;
}

int blkdev_linear_create(const struct blkdev_piece *pieces, unsigned n, struct blkdev **out)
{
	struct blkdev_linear *l;
	bool async = false;
	uint64_t size = 0;
	int rc;

	if (!pieces || n == 0 || n > BLKDEV_LINEAR_MAX_PIECES)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		const struct blkdev_piece *p = &pieces[i];

		if (!p->lower || !blkdev_range_ok(p->lower, p->first, p->nr_blocks) ||
		    p->lower->block_size != pieces[0].lower->block_size ||
		    p->nr_blocks > UINT64_MAX - size)
			return -EINVAL;
		size += p->nr_blocks;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->n = n;
	l->dev.nr_blocks = size;
	l->dev.block_size = pieces[0].lower->block_size;
	l->dev.discard_zeroes = true;
	size = 0;
	for (unsigned i = 0; i < n; i++) {
		struct blkdev *lower = pieces[i].lower;
		unsigned j;

		l->piece[i] = (struct lin_piece){ .lower = lower,
						  .first = pieces[i].first,
						  .start = size,
						  .nr_blocks = pieces[i].nr_blocks };
		size += pieces[i].nr_blocks;
		for (j = 0; j < l->nr_lowers && l->lowers[j] != lower; j++)
			;
		if (j < l->nr_lowers)
			continue;
		l->lowers[l->nr_lowers++] = lower;
		async |= lower->ops->submit != NULL;
		l->dev.read_only |= lower->read_only;
		l->dev.discard_zeroes &= lower->discard_zeroes;
	}
	if (n == 1) {
		l->dev.name = pieces[0].lower->name;
	} else {
		snprintf(l->name, sizeof(l->name), "linear(%u):%s", n,
			 pieces[0].lower->name ? pieces[0].lower->name : "?");
		l->dev.name = l->name;
	}
	l->dev.ops = async ? &lin_ops : &lin_sync_ops;
	/* Lists go down to each lower device (blkdev_submit() bounces them for one that has
	 * no use for them); the synchronous ops have no list, so core/blkdev.c bounces there. */
	l->dev.seg_writes = async;
	if (async && (rc = lin_pools(l))) {
		lin_destroy(&l->dev);
		return rc;
	}
	*out = &l->dev;
	return 0;
}

int blkdev_linear_grow(struct blkdev *dev, const struct blkdev_piece *p)
{
	struct blkdev_linear *l = to_lin(dev);
	struct lin_piece *last = &l->piece[l->n - 1];
	unsigned j;

	for (j = 0; j < l->nr_lowers && l->lowers[j] != p->lower; j++)
		;
	if (j == l->nr_lowers || !p->nr_blocks ||
	    !blkdev_range_ok(p->lower, p->first, p->nr_blocks) ||
	    p->nr_blocks > UINT64_MAX - dev->nr_blocks)
		return -EINVAL;
	if (last->lower == p->lower && last->first + last->nr_blocks == p->first) {
		last->nr_blocks += p->nr_blocks;
	} else {
		if (l->n == BLKDEV_LINEAR_MAX_PIECES)
			return -E2BIG;
		l->piece[l->n++] = (struct lin_piece){ .lower = p->lower,
						       .first = p->first,
						       .start = dev->nr_blocks,
						       .nr_blocks = p->nr_blocks };
		if (l->n == 2) {
			snprintf(l->name, sizeof(l->name), "linear:%s",
				 l->piece[0].lower->name ? l->piece[0].lower->name : "?");
			l->dev.name = l->name;
		}
	}
	dev->nr_blocks += p->nr_blocks;
	return 0;
}
