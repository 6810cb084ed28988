/* SPDX-License-Identifier: MIT */
/*
 * A crash-simulating wrapper (in the spirit of SQLite's test6.c crash VFS): writes since the
 * last flush live in a pending list, so a simulated power cut can keep, drop or tear each
 * of them independently, which is exactly the freedom a real volatile write cache has.
 */
#include "host/hostdev.h"
#include "core/base/util.h"

#include <stdlib.h>
#include <string.h>

#define SECTOR 512u

struct pending {
	uint64_t block;
	uint32_t count;
	struct pending *next;
	uint8_t data[];
};

struct crashdev {
	struct blkdev dev;
	struct blkdev *lower;
	struct pending *head, **tail;
	uint64_t writes;     /* writes seen */
	uint64_t events;     /* writes and flushes seen: the possible cut points */
	uint64_t cut_at;     /* the event number that fails first; 0 = none */
	uint64_t flushes;    /* flushes seen */
	uint64_t fail_flush; /* from this flush on, the first with writes pending fails; 0 = none */
	bool flush_failed;
	bool dead; /* the cut point was reached, or power_cut() ran */
	bool tripped;
	struct crashdev *peer; /* on the same power supply: dies with this one */
};

static struct crashdev *to_cd(struct blkdev *dev)
{
	return container_of(dev, struct crashdev, dev);
}

/* The armed cut point was reached: the power fails, for the peer too. */
static void trip(struct crashdev *cd)
{
	cd->dead = true;
	cd->tripped = true;
	if (cd->peer)
		cd->peer->dead = true;
}

static int crashdev_read(struct blkdev *dev, uint64_t block, uint32_t count, void *buf)
{
	struct crashdev *cd = to_cd(dev);
	uint32_t bs = dev->block_size;
	int rc;

	if (cd->dead)
		return -EIO;
	rc = blkdev_read(cd->lower, block, count, buf);
	if (rc)
		return rc;
	/* Overlay pending writes in order so reads see the device as the OS would. */
	for (struct pending *p = cd->head; p; p = p->next) {
		uint64_t lo = MAX(block, p->block), hi = MIN(block + count, p->block + p->count);

		if (lo < hi)
			memcpy((uint8_t *)buf + (lo - block) * bs, p->data + (lo - p->block) * bs,
			       (size_t)(hi - lo) * bs);
	}
	return 0;
}

/* Queue a write of @buf (zeroes when NULL) as one pending write. */
static int crashdev_queue(struct blkdev *dev, uint64_t block, uint32_t count, const void *buf)
{
	struct crashdev *cd = to_cd(dev);
	size_t len = (size_t)count * dev->block_size;
	struct pending *p;

	cd->writes++;
	cd->events++;
	if (cd->cut_at && cd->events >= cd->cut_at)
		trip(cd);
	if (cd->dead)
		return -EIO;
	p = malloc(sizeof(*p) + len);
	if (!p)
		return -ENOMEM;
	p->block = block;
	p->count = count;
	p->next = NULL;
	if (buf)
		memcpy(p->data, buf, len);
	else
		memset(p->data, 0, len);
	*cd->tail = p;
	cd->tail = &p->next;
	return 0;
}

static int crashdev_write(struct blkdev *dev, uint64_t block, uint32_t count, const void *buf)
{
	return crashdev_queue(dev, block, count, buf);
}

/*
 * A discard (when the lower device reads discarded blocks as zeroes) or write-zeroes is a
 * volatile write of zeroes: like a write, a power cut keeps, drops or tears it.
 */
static int crashdev_zero(struct blkdev *dev, uint64_t block, uint32_t count)
{
	return crashdev_queue(dev, block, count, NULL);
}

static void drop_pending(struct crashdev *cd)
{
	while (cd->head) {
		struct pending *p = cd->head;

		cd->head = p->next;
		free(p);
	}
	cd->tail = &cd->head;
}

static uint64_t rng(uint64_t *s)
{
	uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Decide the fate of each pending write from @seed (see hostdev.h); returns how many. */
static uint64_t resolve_pending(struct crashdev *cd, uint64_t seed)
{
	uint32_t bs = cd->dev.block_size;
	uint64_t n = 0, s = seed * 2654435761u + 1;

	for (struct pending *p = cd->head; p; p = p->next, n++) {
		uint32_t sectors = p->count * (bs / SECTOR);
		unsigned fate = (unsigned)(rng(&s) % 3);

		if (fate == 0) {
			blkdev_write(cd->lower, p->block, p->count, p->data);
		} else if (fate == 2 && sectors > 1) {
			/* Torn: only the first k sectors land; the rest keep the old contents. */
			uint32_t k = 1 + (uint32_t)(rng(&s) % (sectors - 1));
			uint8_t *old = malloc((size_t)p->count * bs);

			if (!old)
				continue;
			if (!blkdev_read(cd->lower, p->block, p->count, old)) {
				memcpy(old, p->data, (size_t)k * SECTOR);
				blkdev_write(cd->lower, p->block, p->count, old);
			}
			free(old);
		}
		/* fate 1: dropped. */
	}
	drop_pending(cd);
	return n;
}

static int crashdev_flush(struct blkdev *dev)
{
	struct crashdev *cd = to_cd(dev);
	int rc = 0;

	cd->events++;
	if (cd->cut_at && cd->events >= cd->cut_at)
		trip(cd);
	if (cd->dead)
		return -EIO;
	cd->flushes++;
	if (cd->fail_flush && cd->flushes >= cd->fail_flush && cd->head) {
		/* The device lost its volatile cache: every pending write is gone. */
		drop_pending(cd);
		cd->fail_flush = 0;
		cd->flush_failed = true;
		return -EIO;
	}
	for (struct pending *p = cd->head; p && !rc; p = p->next)
		rc = blkdev_write(cd->lower, p->block, p->count, p->data);
	if (!rc)
		rc = blkdev_flush(cd->lower);
	if (!rc)
		drop_pending(cd);
	return rc;
}

static void crashdev_destroy(struct blkdev *dev)
{
	struct crashdev *cd = to_cd(dev);

	drop_pending(cd);
	free(cd);
}

static const struct blkdev_ops crashdev_ops = {
	.read = crashdev_read,
	.write = crashdev_write,
	.flush = crashdev_flush,
	.write_zeroes = crashdev_zero,
	.destroy = crashdev_destroy,
};

static const struct blkdev_ops crashdev_discard_ops = {
	.read = crashdev_read,
	.write = crashdev_write,
	.flush = crashdev_flush,
	.discard = crashdev_zero,
	.write_zeroes = crashdev_zero,
	.destroy = crashdev_destroy,
};

int crashdev_create(struct blkdev *lower, struct blkdev **out)
{
	struct crashdev *cd = calloc(1, sizeof(*cd));

	if (!cd)
		return -ENOMEM;
	cd->lower = lower;
	cd->tail = &cd->head;
	cd->dev.ops = &crashdev_ops;
	cd->dev.name = "crashdev";
	cd->dev.nr_blocks = lower->nr_blocks;
	cd->dev.block_size = lower->block_size;
	/* Discards are modelled as zero writes: only over a device whose discards zero. */
	if (lower->discard_zeroes) {
		cd->dev.ops = &crashdev_discard_ops;
		cd->dev.discard_zeroes = true;
	}
	*out = &cd->dev;
	return 0;
}

void crashdev_cut_at(struct blkdev *dev, uint64_t nth_write)
{
	struct crashdev *cd = to_cd(dev);

	cd->cut_at = nth_write ? cd->events + nth_write : 0;
}

void crashdev_share_power(struct blkdev *a, struct blkdev *b)
{
	to_cd(a)->peer = to_cd(b);
	to_cd(b)->peer = to_cd(a);
}

bool crashdev_tripped(struct blkdev *dev)
{
	return to_cd(dev)->tripped;
}

uint64_t crashdev_writes(struct blkdev *dev)
{
	return to_cd(dev)->writes;
}

uint64_t crashdev_events(struct blkdev *dev)
{
	return to_cd(dev)->events;
}

uint64_t crashdev_power_cut(struct blkdev *dev, uint64_t seed)
{
	struct crashdev *cd = to_cd(dev);
	uint64_t n = resolve_pending(cd, seed);

	cd->dead = true;
	return n;
}

void crashdev_fail_flush(struct blkdev *dev, uint64_t nth_flush)
{
	struct crashdev *cd = to_cd(dev);

	cd->fail_flush = nth_flush ? cd->flushes + nth_flush : 0;
	cd->flush_failed = false;
}

bool crashdev_flush_failed(struct blkdev *dev)
{
	return to_cd(dev)->flush_failed;
}

void crashdev_revive(struct blkdev *dev)
{
	struct crashdev *cd = to_cd(dev);

	drop_pending(cd);
	cd->dead = false;
	cd->cut_at = 0;
	cd->tripped = false;
}
