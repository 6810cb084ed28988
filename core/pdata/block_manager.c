/* SPDX-License-Identifier: MIT */
/*
 * The block cache: a hash table for lookup, an LRU list of unlocked blocks for eviction.
 * Locked blocks are off the LRU list so they can never be evicted under their holder.
 */
#include "core/pdata/block_manager.h"
#include "core/base/crc32c.h"
#include "core/base/plat.h"
#include "core/base/util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct dm_block {
	dm_block_t loc;
	uint8_t *data;
	const struct dm_block_validator *v;
	struct dm_block_manager *bm;
	struct dm_block *hnext;	      /* hash chain */
	struct dm_block *prev, *next; /* LRU (unlocked) or free list */
	unsigned read_count;
	bool write_locked, dirty, in_use;
};

struct dm_block_manager {
	struct blkdev *dev;
	uint32_t per_block; /* device blocks per 4 KiB block */
	unsigned capacity, used, locked, misuse;
	struct dm_block *slots;
	struct dm_block **hash;
	unsigned hash_mask;
	struct dm_block lru; /* sentinel: lru.next is the least recently used */
	struct dm_block *free_list;
	uint64_t reads, writes, hits, misses, evictions;
};

uint32_t dm_bm_checksum(const void *data, size_t len, uint32_t init_xor)
{
	return crc32c_raw(~0u, data, len) ^ init_xor;
}

dm_block_t dm_block_location(const struct dm_block *b)
{
	return b->loc;
}

void *dm_block_data(const struct dm_block *b)
{
	return b->data;
}

dm_block_t dm_bm_nr_blocks(struct dm_block_manager *bm)
{
	return bm->dev->nr_blocks / bm->per_block;
}

int dm_block_manager_create(struct blkdev *dev, unsigned cache_blocks,
			    struct dm_block_manager **out)
{
	struct dm_block_manager *bm;
	unsigned nh = 1;

	if (!dev->block_size || dev->block_size > DM_BM_BLOCK_SIZE ||
	    DM_BM_BLOCK_SIZE % dev->block_size)
		return -EINVAL;
	if (cache_blocks < 16)
		cache_blocks = 16;
	while (nh < cache_blocks && nh < (1u << 30))
		nh <<= 1;
	bm = calloc(1, sizeof(*bm));
	if (!bm)
		return -ENOMEM;
	bm->slots = calloc(cache_blocks, sizeof(*bm->slots));
	bm->hash = calloc(nh, sizeof(*bm->hash));
	if (!bm->slots || !bm->hash) {
		free(bm->slots);
		free(bm->hash);
		free(bm);
		return -ENOMEM;
	}
	bm->dev = dev;
	bm->per_block = DM_BM_BLOCK_SIZE / dev->block_size;
	bm->capacity = cache_blocks;
	bm->hash_mask = nh - 1;
	bm->lru.next = bm->lru.prev = &bm->lru;
	for (unsigned i = cache_blocks; i-- > 0;) {
		bm->slots[i].bm = bm;
		bm->slots[i].next = bm->free_list;
		bm->free_list = &bm->slots[i];
	}
	*out = bm;
	return 0;
}

void dm_block_manager_destroy(struct dm_block_manager *bm)
{
	if (!bm)
		return;
	for (unsigned i = 0; i < bm->capacity; i++)
		free(bm->slots[i].data);
	free(bm->slots);
	free(bm->hash);
	free(bm);
}

static unsigned hash_of(struct dm_block_manager *bm, dm_block_t b)
{
	return (unsigned)((b * 0x9e3779b97f4a7c15ull) >> 32) & bm->hash_mask;
}

static struct dm_block *cache_find(struct dm_block_manager *bm, dm_block_t loc)
{
	for (struct dm_block *b = bm->hash[hash_of(bm, loc)]; b; b = b->hnext)
		if (b->loc == loc)
			return b;
	return NULL;
}

static void lru_del(struct dm_block *b)
{
	b->prev->next = b->next;
	b->next->prev = b->prev;
	b->prev = b->next = NULL;
}

static void lru_add_tail(struct dm_block_manager *bm, struct dm_block *b)
{
	b->prev = bm->lru.prev;
	b->next = &bm->lru;
	bm->lru.prev->next = b;
	bm->lru.prev = b;
}

static void hash_del(struct dm_block_manager *bm, struct dm_block *b)
{
	struct dm_block **pp = &bm->hash[hash_of(bm, b->loc)];

	while (*pp != b)
		pp = &(*pp)->hnext;
	*pp = b->hnext;
}

/* Remove an unlocked block from the cache and put its slot on the free list. */
static void cache_release(struct dm_block_manager *bm, struct dm_block *b)
{
	hash_del(bm, b);
	lru_del(b);
	b->in_use = false;
	b->dirty = false;
	b->next = bm->free_list;
	bm->free_list = b;
	bm->used--;
}

static int write_block(struct dm_block_manager *bm, struct dm_block *b)
{
	int rc;

	if (b->v && b->v->prepare_for_write)
		b->v->prepare_for_write(b->v, b, DM_BM_BLOCK_SIZE);
	rc = blkdev_write(bm->dev, b->loc * bm->per_block, bm->per_block, b->data);
	if (rc)
		return rc;
	bm->writes++;
	b->dirty = false;
	return 0;
}

/* A free slot with a buffer, evicting the least recently used unlocked block if needed. */
static int cache_get_slot(struct dm_block_manager *bm, struct dm_block **out)
{
	struct dm_block *b = bm->free_list;

	if (!b) {
		b = bm->lru.next;
		if (b == &bm->lru)
			return -ENOMEM;
		if (b->dirty) {
			int rc = write_block(bm, b);

			if (rc)
				return rc;
		}
		bm->evictions++;
		cache_release(bm, b);
		b = bm->free_list;
	}
	if (!b->data) {
		b->data = malloc(DM_BM_BLOCK_SIZE);
		if (!b->data)
			return -ENOMEM;
	}
	bm->free_list = b->next;
	b->next = b->prev = NULL;
	*out = b;
	return 0;
}

static void cache_insert(struct dm_block_manager *bm, struct dm_block *b, dm_block_t loc)
{
	unsigned h = hash_of(bm, loc);

	b->loc = loc;
	b->in_use = true;
	b->read_count = 0;
	b->write_locked = false;
	b->dirty = false;
	b->hnext = bm->hash[h];
	bm->hash[h] = b;
	bm->used++;
}

static void slot_unget(struct dm_block_manager *bm, struct dm_block *b)
{
	b->next = bm->free_list;
	bm->free_list = b;
}

/*
 * Find @loc in the cache or load it. The returned block is off the LRU list (the caller
 * locks it). @zero: don't read, fill with zeroes.
 */
static int get_block(struct dm_block_manager *bm, dm_block_t loc,
		     const struct dm_block_validator *v, bool zero, struct dm_block **out)
{
	struct dm_block *b;
	int rc;

	if (loc >= dm_bm_nr_blocks(bm))
		return -EINVAL;
	b = cache_find(bm, loc);
	if (b) {
		bm->hits++;
		if (zero) {
			memset(b->data, 0, DM_BM_BLOCK_SIZE);
			b->v = v;
		} else if (b->v != v && v) {
			/*
			 * The block was cached under another type. A clean copy still carries
			 * the on-disk checksum, so the new type's check decides; a dirty one
			 * was never stamped, and asking for it as another type is a bug.
			 */
			if (b->dirty || b->write_locked)
				return -EINVAL;
			rc = v->check(v, b, DM_BM_BLOCK_SIZE);
			if (rc)
				return rc;
			b->v = v;
		}
		if (!b->read_count && !b->write_locked)
			lru_del(b);
		*out = b;
		return 0;
	}
	bm->misses++;
	rc = cache_get_slot(bm, &b);
	if (rc)
		return rc;
	b->loc = loc;
	if (zero) {
		memset(b->data, 0, DM_BM_BLOCK_SIZE);
	} else {
		rc = blkdev_read(bm->dev, loc * bm->per_block, bm->per_block, b->data);
		if (!rc) {
			bm->reads++;
			if (v)
				rc = v->check(v, b, DM_BM_BLOCK_SIZE);
		}
		if (rc) {
			slot_unget(bm, b);
			return rc;
		}
	}
	b->v = v;
	cache_insert(bm, b, loc);
	*out = b;
	return 0;
}

/* The reads of one dm_bm_prefetch() call; leaked, never freed, when they time out. */
struct prefetch {
	struct blkdev_req req[DM_BM_PREFETCH_MAX];
	dm_block_t loc[DM_BM_PREFETCH_MAX];
	int rc[DM_BM_PREFETCH_MAX];
	unsigned pending;
	uint8_t buf[DM_BM_PREFETCH_MAX][DM_BM_BLOCK_SIZE];
};

static void prefetch_done(struct blkdev_req *req, int rc)
{
	struct prefetch *p = req->priv;

	p->rc[req - p->req] = rc;
	p->pending--;
}

static bool prefetch_listed(const struct prefetch *p, unsigned n, dm_block_t loc)
{
	for (unsigned i = 0; i < n; i++)
		if (p->loc[i] == loc)
			return true;
	return false;
}

int dm_bm_prefetch(struct dm_block_manager *bm, const dm_block_t *locs, unsigned n)
{
	uint64_t deadline = plat_now_ns() + DM_BM_PREFETCH_WAIT_NS;
	struct prefetch *p;
	unsigned count = 0;
	int rc = 0;

	/* A quarter of the cache at most: what is read must not push itself out. */
	n = MIN(n, MIN((unsigned)DM_BM_PREFETCH_MAX, bm->capacity / 4));
	p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->pending = 0;
	for (unsigned i = 0; i < n && !rc; i++) {
		struct blkdev_req *req = &p->req[count];
		dm_block_t loc = locs[i];

		if (loc >= dm_bm_nr_blocks(bm) || cache_find(bm, loc) ||
		    prefetch_listed(p, count, loc))
			continue;
		memset(req, 0, sizeof(*req));
		req->op = BLKDEV_READ;
		req->block = loc * bm->per_block;
		req->count = bm->per_block;
		req->buf = p->buf[count];
		req->done = prefetch_done;
		req->priv = p;
		p->loc[count] = loc;
		p->rc[count] = -EIO;
		p->pending++;
		/* A full queue: take completions and try again, within the same bound. */
		while ((rc = blkdev_submit(bm->dev, req)) == -EAGAIN && plat_now_ns() < deadline)
			if (blkdev_poll(bm->dev) < 0)
				break;
		if (rc) {
			p->pending--;
			break; /* what was submitted is still awaited; the rest is read on demand */
		}
		count++;
	}
	while (p->pending) {
		int r = blkdev_poll(bm->dev);

		if (r < 0 || (p->pending && plat_now_ns() > deadline))
			return r < 0 ? r : -ETIMEDOUT; /* @p stays: the device may still write it */
	}
	for (unsigned i = 0; i < count; i++) {
		struct dm_block *b;

		if (p->rc[i] || cache_find(bm, p->loc[i]))
			continue;
		if (cache_get_slot(bm, &b))
			break;
		memcpy(b->data, p->buf[i], DM_BM_BLOCK_SIZE);
		bm->reads++;
		/* Unchecked: the first lock checks it as the type it asks for (get_block()). */
		b->v = NULL;
		cache_insert(bm, b, p->loc[i]);
		lru_add_tail(bm, b);
	}
	free(p);
	return 0;
}

/* Put a block that get_block() returned back on the LRU when nobody holds it. */
static void put_if_unlocked(struct dm_block_manager *bm, struct dm_block *b)
{
	if (!b->read_count && !b->write_locked)
		lru_add_tail(bm, b);
}

int dm_bm_read_lock(struct dm_block_manager *bm, dm_block_t loc, const struct dm_block_validator *v,
		    struct dm_block **result)
{
	struct dm_block *b = cache_find(bm, loc);
	int rc;

	if (b && b->write_locked) {
		bm->misuse++;
		return -EBUSY;
	}
	rc = get_block(bm, loc, v, false, &b);
	if (rc)
		return rc;
	b->read_count++;
	bm->locked++;
	*result = b;
	return 0;
}

int dm_bm_read_try_lock(struct dm_block_manager *bm, dm_block_t loc,
			const struct dm_block_validator *v, struct dm_block **result)
{
	/* Only a cached block can be had without waiting for the device. */
	if (loc < dm_bm_nr_blocks(bm) && !cache_find(bm, loc))
		return -EWOULDBLOCK;
	return dm_bm_read_lock(bm, loc, v, result);
}

static int write_lock(struct dm_block_manager *bm, dm_block_t loc,
		      const struct dm_block_validator *v, bool zero, struct dm_block **result)
{
	struct dm_block *b = cache_find(bm, loc);
	int rc;

	if (b && (b->write_locked || b->read_count)) {
		bm->misuse++;
		return -EBUSY;
	}
	rc = get_block(bm, loc, v, zero, &b);
	if (rc)
		return rc;
	b->write_locked = true;
	bm->locked++;
	*result = b;
	return 0;
}

int dm_bm_write_lock(struct dm_block_manager *bm, dm_block_t loc,
		     const struct dm_block_validator *v, struct dm_block **result)
{
	return write_lock(bm, loc, v, false, result);
}

int dm_bm_write_lock_zero(struct dm_block_manager *bm, dm_block_t loc,
			  const struct dm_block_validator *v, struct dm_block **result)
{
	return write_lock(bm, loc, v, true, result);
}

void dm_bm_unlock(struct dm_block *b)
{
	struct dm_block_manager *bm = b->bm;

	if (b->write_locked) {
		b->write_locked = false;
		b->dirty = true;
	} else if (b->read_count) {
		b->read_count--;
	} else {
		bm->misuse++;
		return;
	}
	bm->locked--;
	put_if_unlocked(bm, b);
}

static int write_dirty(struct dm_block_manager *bm, const struct dm_block *except)
{
	int rc = 0;

	for (unsigned i = 0; i < bm->capacity; i++) {
		struct dm_block *b = &bm->slots[i];

		if (!b->in_use || b == except)
			continue;
		if (b->write_locked) {
			bm->misuse++;
			return -EBUSY;
		}
		if (b->dirty) {
			int r = write_block(bm, b);

			if (r && !rc)
				rc = r;
		}
	}
	return rc;
}

int dm_bm_flush(struct dm_block_manager *bm)
{
	int rc = write_dirty(bm, NULL);

	return rc ? rc : blkdev_flush(bm->dev);
}

int dm_bm_flush_and_unlock(struct dm_block_manager *bm, struct dm_block *superblock)
{
	int rc = write_dirty(bm, superblock);

	if (!rc)
		rc = blkdev_flush(bm->dev);
	dm_bm_unlock(superblock);
	if (rc)
		return rc;
	rc = write_block(bm, superblock);
	return rc ? rc : blkdev_flush(bm->dev);
}

static int drop(struct dm_block_manager *bm, bool clean_too)
{
	if (bm->locked) {
		bm->misuse++;
		return -EBUSY;
	}
	for (unsigned i = 0; i < bm->capacity; i++) {
		struct dm_block *b = &bm->slots[i];

		if (b->in_use && (b->dirty || clean_too))
			cache_release(bm, b);
	}
	return 0;
}

int dm_bm_drop_dirty(struct dm_block_manager *bm)
{
	return drop(bm, false);
}

int dm_bm_drop_clean(struct dm_block_manager *bm)
{
	return drop(bm, true);
}

void dm_bm_get_stats(struct dm_block_manager *bm, struct dm_bm_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->reads = bm->reads;
	st->writes = bm->writes;
	st->hits = bm->hits;
	st->misses = bm->misses;
	st->evictions = bm->evictions;
	st->capacity = bm->capacity;
	st->locked = bm->locked;
	for (unsigned i = 0; i < bm->capacity; i++) {
		if (bm->slots[i].in_use) {
			st->cached++;
			st->dirty += bm->slots[i].dirty;
		}
	}
	st->bytes_per_block = DM_BM_BLOCK_SIZE + sizeof(struct dm_block) +
			      (size_t)(bm->hash_mask + 1) * sizeof(void *) / bm->capacity;
}

unsigned dm_bm_locks_held(struct dm_block_manager *bm)
{
	return bm->locked;
}

unsigned dm_bm_misuse_count(struct dm_block_manager *bm)
{
	return bm->misuse;
}
