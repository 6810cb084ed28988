/* SPDX-License-Identifier: MIT */
/*
 * The thin pool in service (contract in thin_pool.h): dm-thin's data path on an abstract
 * data disk, in the shape of drivers/md/dm-thin.c but polled and single-threaded.
 *
 * Method. A volume request (struct blkdev_req, 512-byte blocks) becomes a struct pool_req
 * (the parent) split into one struct pool_io per data block it touches. Each io first takes
 * the cell of its (volume, virtual block) (dm's bio prison): reads share a cell, every other
 * op holds it alone, and waiters are served in arrival order. An io then looks its block up.
 * Found mapped, and needing no provisioning, copy or read-modify-write, it leaves the cell
 * and its data I/O runs as on a plain disk (dm's remap_and_issue): concurrent in-place I/O
 * to one block overlaps, and its order is the data disk's. Everything else keeps the cell
 * to the end: provisioning (allocate, write, insert), copy-on-write, read-modify-write of a
 * piece smaller than a data-disk block, and unmapping (discard, whole-block write-zeroes);
 * requests behind it wait, so they see its result. Each of those first waits until the
 * in-place I/O that left the cell earlier completed (dm's all_io_ds and shared_read_ds),
 * so none lands in a block after it was unmapped or copied away (and maybe reused), and a
 * read-modify-write is atomic against every other write. The io then runs a small
 * state machine whose data I/O is submitted to the data disk; the disk's completion callback
 * only puts the io on a list (it may run inside blkdev_submit() for a synchronous device),
 * and thin_pool_poll() advances it. Nothing recurses through callbacks.
 *
 * Ordering invariants:
 *   - per (volume, virtual block), an io that provisions, copies, read-modify-writes or
 *     unmaps runs after every earlier io to it completed, and every later io waits for it;
 *     in-place ios are ordered only by the data disk. So in-place I/O never outlives the
 *     mapping it was issued against;
 *   - a newly provisioned or copied block is written completely before its mapping is
 *     inserted, so no mapping ever points at a block whose contents were not written;
 *   - a block allocated (or held for a passdown discard) but not yet inserted (released) is
 *     "in flight"; a commit waits until none is (new allocations wait meanwhile), so a
 *     commit never records a reference that no mapping accounts for;
 *   - a commit flushes the data disk first, then commits the metadata: data before the
 *     metadata that points to it; a failed flush aborts the transaction (dm);
 *   - a freed block is discarded on the data disk only after the commit that made its
 *     unmap durable (passdown), so a power cut never finds a committed mapping to a
 *     discarded block;
 *   - a FLUSH waits for every earlier modifying request of the pool, except those with a
 *     write queued for data space (not acknowledged, so not the FLUSH's to cover), then for
 *     a commit cycle that starts after that; FUA arrives from the NBD server as write + flush.
 * The metadata is only called from the caller's context (submit, poll, admin calls): no
 * concurrency, as the metadata layer requires.
 */
#include "core/thin/thin_pool.h"
#include "core/thin/thin_check.h"
#include "core/base/poison.h"
#include "core/base/perf.h"
#include "core/base/plat.h"
#include "core/base/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECTOR	     512u
#define CELL_BUCKETS 1024u
/* Bounce buffers (zero fill, copy-on-write, unaligned I/O) at most this many bytes at once
 * (at least one block): more ios wait for memory instead of failing. */
#define BOUNCE_LIMIT (32u * 1024 * 1024)
/*
 * Free lists (issue 14: no heap allocation per request in steady state): the records a
 * request needs (parent, one io per block piece, cells, passdown records) are kept when
 * freed, at most this many of each kind, and handed out again; thin_pool_close() frees them.
 */
#define RECORD_CACHE_MAX 1024u
/* Bounce buffers are kept by power-of-two size class (512 bytes up), at most this many bytes
 * in all; a buffer of a larger class than this is never kept. */
#define BOUNCE_MIN_SHIFT 9u
#define BOUNCE_CLASSES	 32u
#define BOUNCE_CACHE_MAX (4u * 1024 * 1024)
/* Bound for the synchronous waits (admin calls, the volume's synchronous ops). */
#define SYNC_WAIT_NS (120 * NSEC_PER_SEC)
/* One poll call moves at most this many steps, so the main loop stays responsive. */
#define POLL_BUDGET 4096

struct thin_pool;
struct pool_req;

enum io_state {
	IO_START,	  /* take the cell */
	IO_MAP,		  /* look up and dispatch */
	IO_PROVISION,	  /* new block allocated: write it (waits here for memory) */
	IO_READ_DONE,	  /* data read finished (direct or bounce) */
	IO_WRITE_DONE,	  /* in-place write finished */
	IO_RMW_READ_DONE, /* unaligned in-place write: read part done, merge and write */
	IO_COW_READ_DONE, /* old block read: merge and write the new one */
	IO_PROV_ZEROED,	  /* new block zeroed by WRITE_ZEROES: write the payload */
	IO_PROV_DONE,	  /* new block written: insert the mapping */
};

struct cell {
	struct cell *hnext;
	struct thin_volume *vol;
	uint64_t vblock;
	unsigned readers;
	bool writer;
	struct pool_io *wait_head, *wait_tail;
	/* In-place data I/O that left the cell (dm's all_io_ds, per block): an io holding the
	 * cell alone that is about to change the mapping or read-modify-write waits (in
	 * drainer) until this is 0; new ios cannot start meanwhile, as it holds the cell. */
	unsigned in_place;
	struct pool_io *drainer;
};

struct pool_io {
	struct pool_io *next; /* run, completion, deferred, nospace and cell-wait lists */
	struct pool_req *parent;
	struct thin_volume *vol;
	enum blkdev_op op;
	enum io_state state;
	uint64_t vblock;
	uint32_t off, len; /* bytes inside the data block */
	uint8_t *buf;	   /* the caller's bytes for READ/WRITE, NULL for zeroes */
	/* ... or a WRITE's bytes as the caller's segment list (buf NULL): its len bytes from
	 * here on (core/blkdev.h "Segment lists"), handed to the data disk as they are */
	const struct blkdev_seg *segs;
	uint32_t nr_segs, seg_off;
	struct cell *cell;
	uint64_t db, old_db;
	bool tried_commit; /* out of space: one commit was tried (it may free blocks) */
	bool cow;	   /* provisioning copies old_db */
	bool holds_block;  /* db was allocated for this io and counts in pool->in_flight_allocs */
	bool in_place;	   /* left its cell: counts in cell->in_place */
	bool parked;	   /* on the nospace list (or taken off it and not yet run) */
	uint64_t gen;	   /* pool->abort_gen when db was taken */
	uint8_t *bounce;
	size_t bounce_len;
	uint32_t boff; /* byte offset in the data block where the bounce buffer starts */
	int drc;       /* data I/O result */
	struct blkdev_req dreq;
	uint64_t dsubmit; /* perf_wait_begin() at data_submit(): the disk wait (core/base/perf.h) */
};

struct pool_req {
	struct pool_req *next;		/* done list, flush lists, the free list */
	struct pool_req *mprev, *mnext; /* in-flight modifying requests, oldest first */
	struct blkdev_req *req;
	struct thin_volume *vol;
	uint64_t seq;
	unsigned pending;
	unsigned parked; /* its ios waiting for data space: a FLUSH need not wait for it */
	int rc;
	bool modifying;
};

struct thin_volume {
	struct blkdev bdev; /* first: container_of */
	struct thin_pool *pool;
	struct thin_volume *next;
	struct thin_dev *td;
	thin_id_t id;
	uint64_t size;
	unsigned in_flight; /* parents */
	char name[32];
	/* Allocation locality: the last block provisioned. */
	uint64_t last_vblock, last_db;
	bool have_last;
};

/*
 * A passdown discard, issued after the commit that made the unmap durable: the block is held
 * (one extra reference, counted in in_flight_allocs) while the discard runs, so it cannot be
 * reallocated under it, and released when the discard completes.
 */
struct passdown {
	struct passdown *next;
	struct thin_pool *pool;
	uint64_t db;
	uint64_t gen; /* pool->abort_gen when the hold was taken */
	struct blkdev_req req;
};

enum commit_state { COMMIT_IDLE, COMMIT_DRAIN, COMMIT_FLUSHING };

struct thin_pool {
	struct blkdev *meta, *data;
	struct thin_md *md;
	struct thin_pool_opts o;
	enum thin_pool_mode mode;
	uint32_t block_bytes;	 /* data block size */
	uint64_t data_per_block; /* data-disk blocks per data block */
	bool passdown;
	struct thin_volume *vols;
	unsigned nr_vols;

	struct cell *cells[CELL_BUCKETS];
	struct pool_io *run_head, *run_tail;	     /* ready to step */
	struct pool_io *cpl_head, *cpl_tail;	     /* data I/O completed */
	struct pool_io *retry_head, *retry_tail;     /* data submit said -EAGAIN */
	struct pool_io *mem_head, *mem_tail;	     /* wait for bounce memory */
	struct pool_io *defer_head, *defer_tail;     /* wait for the commit in progress */
	struct pool_io *nospace_head, *nospace_tail; /* out of data space, waiting */
	struct pool_req *done_head, *done_tail;	     /* parents to complete */
	struct pool_req *mhead, *mtail;		     /* modifying parents in flight */
	struct pool_req *flush_wait;		     /* FLUSHes waiting for earlier writes */
	struct pool_req *commit_waiters;	     /* FLUSHes served by the commit in progress */
	struct pool_req *next_waiters;		     /* ... by the one after it */
	unsigned requests;			     /* parents in flight */
	uint64_t seq;

	enum commit_state cstate;
	bool commit_wanted;
	bool dirty;
	int flush_rc;
	bool flush_done;
	struct blkdev_req flush_req;
	uint64_t last_commit_ns;
	uint64_t commits; /* cycles finished */
	int last_commit_rc;
	unsigned in_flight_allocs;
	unsigned data_in_flight; /* data requests submitted and not completed */
	uint64_t abort_gen;
	/* Blocks whose last reference an unmap dropped in the open transaction: passed down
	 * only after the commit that makes the unmap durable (a crash before it then finds the
	 * old mappings pointing at intact data). */
	uint64_t *pd_blocks;
	size_t pd_nr, pd_cap;
	struct passdown *pd_cpl_head, *pd_cpl_tail;	/* discards completed */
	struct passdown *pd_retry_head, *pd_retry_tail; /* discard submit said -EAGAIN */
	unsigned pd_in_flight;				/* discards submitted, not completed */
	/* An admin call that commits by itself (reserve_metadata_snap): run by the commit cycle
	 * at its commit point, after the data flush, in place of a plain commit. */
	int (*commit_op)(struct thin_md *md);
	bool data_flush_failed; /* sticky: every later FLUSH fails (until the pool is reopened) */
	size_t bounce_bytes;
	bool low_water_reached;
	/* The data disk refused WRITE_ZEROES (-EOPNOTSUPP): zero new blocks by writing zeroes. */
	bool zero_by_writing;
	/* Out of data space (dm's no_space_timeout): since when, and whether the timer fired. */
	uint64_t no_space_since;
	bool no_space_timed_out;
	unsigned parked_ios;

	/* Free lists (RECORD_CACHE_MAX, BOUNCE_CACHE_MAX): poisoned under ASan. */
	struct pool_req *free_reqs;
	struct pool_io *free_ios;
	struct cell *free_cells;
	struct passdown *free_pds;
	unsigned nfree_reqs, nfree_ios, nfree_cells, nfree_pds;
	void *free_bounce[BOUNCE_CLASSES]; /* each buffer's first bytes link to the next */
	size_t bounce_cached;		   /* bytes on free_bounce */
};

static void run_io(struct thin_pool *pool, struct pool_io *io);
static int step_io(struct thin_pool *pool, struct pool_io *io);

/*----------------------------------------------------------------*/
/* Lists */

#define LIST_PUSH(head, tail, item)                                                                \
	do {                                                                                       \
		(item)->next = NULL;                                                               \
		if (tail)                                                                          \
			(tail)->next = (item);                                                     \
		else                                                                               \
			(head) = (item);                                                           \
		(tail) = (item);                                                                   \
	} while (0)

#define LIST_POP(head, tail, out)                                                                  \
	do {                                                                                       \
		(out) = (head);                                                                    \
		if (out) {                                                                         \
			(head) = (out)->next;                                                      \
			if (!(head))                                                               \
				(tail) = NULL;                                                     \
			(out)->next = NULL;                                                        \
		}                                                                                  \
	} while (0)

/* Move a whole io list to the end of the run queue. */
static void requeue_all(struct thin_pool *pool, struct pool_io **head, struct pool_io **tail)
{
	struct pool_io *io;

	for (;;) {
		LIST_POP(*head, *tail, io);
		if (!io)
			break;
		LIST_PUSH(pool->run_head, pool->run_tail, io);
	}
}

/*----------------------------------------------------------------*/
/* Free lists */

/*
 * A zeroed record from @list (its link field named @field), else from the heap; NULL when
 * out of memory.
 */
#define REC_GET(list, nfree, field)                                                                \
	({                                                                                         \
		__typeof__(list) r_ = (list);                                                      \
		if (r_) {                                                                          \
			UNPOISON(r_, sizeof(*r_));                                                 \
			(list) = r_->field;                                                        \
			(nfree)--;                                                                 \
			memset(r_, 0, sizeof(*r_));                                                \
		} else {                                                                           \
			r_ = calloc(1, sizeof(*r_));                                               \
		}                                                                                  \
		r_;                                                                                \
	})

/* Give @rec back to @list (or the heap when the list is full). */
#define REC_PUT(list, nfree, field, rec)                                                           \
	do {                                                                                       \
		__typeof__(list) r_ = (rec);                                                       \
		if ((nfree) >= RECORD_CACHE_MAX) {                                                 \
			free(r_);                                                                  \
			break;                                                                     \
		}                                                                                  \
		r_->field = (list);                                                                \
		(list) = r_;                                                                       \
		(nfree)++;                                                                         \
		POISON(r_, sizeof(*r_));                                                           \
	} while (0)

/* Empty @list into the heap (thin_pool_close()). */
#define REC_RELEASE(list, nfree, field)                                                            \
	do {                                                                                       \
		while (list) {                                                                     \
			__typeof__(list) r_ = (list);                                              \
			UNPOISON(r_, sizeof(*r_));                                                 \
			(list) = r_->field;                                                        \
			free(r_);                                                                  \
		}                                                                                  \
		(nfree) = 0;                                                                       \
	} while (0)

/* The size class of a @len-byte bounce buffer and its capacity. */
static unsigned bounce_class(size_t len, size_t *cap)
{
	unsigned k = 0;

	while (((size_t)1 << (BOUNCE_MIN_SHIFT + k)) < len)
		k++;
	*cap = (size_t)1 << (BOUNCE_MIN_SHIFT + k);
	return k;
}

/* An uninitialised buffer of at least @len bytes (its class's capacity), or NULL. */
static void *bounce_buf_get(struct thin_pool *pool, size_t len)
{
	size_t cap;
	unsigned k = bounce_class(len, &cap);
	void *b;

	if (k < BOUNCE_CLASSES && pool->free_bounce[k]) {
		b = pool->free_bounce[k];
		UNPOISON(b, cap);
		memcpy(&pool->free_bounce[k], b, sizeof(void *));
		pool->bounce_cached -= cap;
		return b;
	}
	return malloc(cap);
}

static void bounce_buf_put(struct thin_pool *pool, void *b, size_t len)
{
	size_t cap;
	unsigned k = bounce_class(len, &cap);

	if (k >= BOUNCE_CLASSES || pool->bounce_cached + cap > BOUNCE_CACHE_MAX) {
		free(b);
		return;
	}
	memcpy(b, &pool->free_bounce[k], sizeof(void *));
	pool->free_bounce[k] = b;
	pool->bounce_cached += cap;
	POISON(b, cap);
}

static void free_lists_release(struct thin_pool *pool)
{
	REC_RELEASE(pool->free_reqs, pool->nfree_reqs, next);
	REC_RELEASE(pool->free_ios, pool->nfree_ios, next);
	REC_RELEASE(pool->free_cells, pool->nfree_cells, hnext);
	REC_RELEASE(pool->free_pds, pool->nfree_pds, next);
	for (unsigned k = 0; k < BOUNCE_CLASSES; k++) {
		size_t cap = (size_t)1 << (BOUNCE_MIN_SHIFT + k);

		while (pool->free_bounce[k]) {
			void *b = pool->free_bounce[k];

			UNPOISON(b, cap);
			memcpy(&pool->free_bounce[k], b, sizeof(void *));
			free(b);
		}
	}
	pool->bounce_cached = 0;
}

/*----------------------------------------------------------------*/
/* Modes and metadata failures */

static bool pool_writable(const struct thin_pool *pool)
{
	return pool->mode == THIN_POOL_WRITE || pool->mode == THIN_POOL_OUT_OF_DATA_SPACE;
}

/*
 * A metadata operation failed (dm's metadata_operation_failed): roll back to the last
 * commit, so what was acknowledged as flushed stays, set needs_check and go read-only. If
 * the rollback or the flag cannot be written, fail everything.
 */
static void metadata_failed(struct thin_pool *pool, int r)
{
	(void)r;
	if (!pool_writable(pool))
		return;
	pool->abort_gen++;
	pool->dirty = false;
	/* The unmaps they came from are rolled back; an admin call waiting for its commit
	 * point gets the failure from the commit cycle. */
	pool->pd_nr = 0;
	pool->commit_op = NULL;
	if (thin_md_abort(pool->md) || thin_md_set_needs_check(pool->md))
		pool->mode = THIN_POOL_FAIL;
	else
		pool->mode = THIN_POOL_READ_ONLY;
	/* Waiters for space or for a commit now fail fast instead of waiting (in fail mode
	 * too: nothing else would ever run them). */
	requeue_all(pool, &pool->nospace_head, &pool->nospace_tail);
	requeue_all(pool, &pool->defer_head, &pool->defer_tail);
}

/*----------------------------------------------------------------*/
/* Cells (dm's bio prison) */

static unsigned cell_hash(const struct thin_volume *vol, uint64_t vblock)
{
	uint64_t h = (uint64_t)(uintptr_t)vol ^ (vblock * 0x9e3779b97f4a7c15ull);

	return (unsigned)((h ^ (h >> 29)) % CELL_BUCKETS);
}

static bool cell_compatible(const struct cell *c, const struct pool_io *io)
{
	if (c->writer)
		return false;
	return io->op == BLKDEV_READ || c->readers == 0;
}

static void cell_enter(struct cell *c, struct pool_io *io)
{
	if (io->op == BLKDEV_READ)
		c->readers++;
	else
		c->writer = true;
	io->cell = c;
	io->state = IO_MAP;
}

/* Take the cell: true when held, false when @io waits in it (it is run again later). */
static int cell_get(struct thin_pool *pool, struct pool_io *io, bool *held)
{
	unsigned h = cell_hash(io->vol, io->vblock);
	struct cell *c;

	for (c = pool->cells[h]; c; c = c->hnext)
		if (c->vol == io->vol && c->vblock == io->vblock)
			break;
	if (!c) {
		c = REC_GET(pool->free_cells, pool->nfree_cells, hnext);
		if (!c)
			return -ENOMEM;
		c->vol = io->vol;
		c->vblock = io->vblock;
		c->hnext = pool->cells[h];
		pool->cells[h] = c;
	}
	if (!c->wait_head && cell_compatible(c, io)) {
		cell_enter(c, io);
		*held = true;
		return 0;
	}
	LIST_PUSH(c->wait_head, c->wait_tail, io);
	*held = false;
	return 0;
}

/*
 * @io found its block mapped and needs no provisioning, copy or read-modify-write: leave
 * the cell (dm's cell_defer_no_holder after inc_all_io_entry), so the ios waiting in it
 * start while @io's data I/O runs, as on a plain disk. The cell stays allocated while
 * in-place I/O counts in it.
 */
static void cell_leave(struct thin_pool *pool, struct pool_io *io)
{
	struct cell *c = io->cell;

	if (io->op == BLKDEV_READ)
		c->readers--;
	else
		c->writer = false;
	c->in_place++;
	io->in_place = true;
	while (c->wait_head && cell_compatible(c, c->wait_head)) {
		struct pool_io *w;

		LIST_POP(c->wait_head, c->wait_tail, w);
		cell_enter(c, w);
		LIST_PUSH(pool->run_head, pool->run_tail, w);
	}
}

/*
 * @io holds its cell alone and is about to unmap, copy, provision or read-modify-write its
 * block: true when in-place I/O that started earlier is still in flight; @io then waits
 * and runs its current state (IO_MAP) again once the last of it completed.
 */
static bool cell_wait_in_place(struct pool_io *io)
{
	struct cell *c = io->cell;

	if (!c->in_place)
		return false;
	io->state = IO_MAP;
	c->drainer = io;
	return true;
}

static void cell_put(struct thin_pool *pool, struct pool_io *io)
{
	struct cell *c = io->cell, **pp;

	if (!c)
		return;
	io->cell = NULL;
	if (io->in_place) {
		io->in_place = false;
		if (!--c->in_place && c->drainer) {
			LIST_PUSH(pool->run_head, pool->run_tail, c->drainer);
			c->drainer = NULL;
		}
		goto maybe_free;
	}
	if (io->op == BLKDEV_READ)
		c->readers--;
	else
		c->writer = false;
	/* Admit waiters in order while they fit: a run of readers, or one writer. */
	while (c->wait_head && cell_compatible(c, c->wait_head)) {
		struct pool_io *w;

		LIST_POP(c->wait_head, c->wait_tail, w);
		cell_enter(c, w);
		LIST_PUSH(pool->run_head, pool->run_tail, w);
	}
maybe_free:
	if (c->readers || c->writer || c->wait_head || c->in_place)
		return;
	for (pp = &pool->cells[cell_hash(c->vol, c->vblock)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == c) {
			*pp = c->hnext;
			break;
		}
	}
	REC_PUT(pool->free_cells, pool->nfree_cells, hnext, c);
}

/*----------------------------------------------------------------*/
/* Requests */

static void mlist_del(struct thin_pool *pool, struct pool_req *p)
{
	if (p->mprev)
		p->mprev->mnext = p->mnext;
	else
		pool->mhead = p->mnext;
	if (p->mnext)
		p->mnext->mprev = p->mprev;
	else
		pool->mtail = p->mprev;
	p->mprev = p->mnext = NULL;
}

static void parent_put(struct thin_pool *pool, struct pool_req *p, int rc)
{
	if (rc && !p->rc)
		p->rc = rc;
	if (--p->pending)
		return;
	if (p->modifying)
		mlist_del(pool, p);
	LIST_PUSH(pool->done_head, pool->done_tail, p);
}

static void bounce_free(struct thin_pool *pool, struct pool_io *io)
{
	if (!io->bounce)
		return;
	bounce_buf_put(pool, io->bounce, io->bounce_len);
	pool->bounce_bytes -= io->bounce_len;
	io->bounce = NULL;
	io->bounce_len = 0;
	/* Memory came back: the ios waiting for it try again. */
	requeue_all(pool, &pool->mem_head, &pool->mem_tail);
}

/* A zeroed bounce buffer, or NULL when the memory budget is used up (retry later). */
static uint8_t *bounce_get(struct thin_pool *pool, struct pool_io *io, size_t len)
{
	if (pool->bounce_bytes && pool->bounce_bytes + len > BOUNCE_LIMIT)
		return NULL;
	io->bounce = bounce_buf_get(pool, len);
	if (!io->bounce)
		return NULL;
	memset(io->bounce, 0, len);
	io->bounce_len = len;
	pool->bounce_bytes += len;
	return io->bounce;
}

/* Give back a block that was allocated or held for @io and is not going to be mapped. */
static void release_block(struct thin_pool *pool, struct pool_io *io)
{
	int r;

	if (!io->holds_block)
		return;
	io->holds_block = false;
	pool->in_flight_allocs--;
	/* After an abort the reference belongs to a transaction that no longer exists. */
	if (io->gen != pool->abort_gen || !pool_writable(pool))
		return;
	r = thin_md_dec_data_range(pool->md, io->db, io->db + 1);
	if (r)
		metadata_failed(pool, r);
}

/* @io leaves the nospace list's accounting (it runs again, or fails). */
static void io_unpark(struct thin_pool *pool, struct pool_io *io)
{
	if (!io->parked)
		return;
	io->parked = false;
	io->parent->parked--;
	pool->parked_ios--;
}

static void io_finish(struct thin_pool *pool, struct pool_io *io, int rc)
{
	io_unpark(pool, io);
	release_block(pool, io);
	bounce_free(pool, io);
	cell_put(pool, io);
	parent_put(pool, io->parent, rc);
	REC_PUT(pool->free_ios, pool->nfree_ios, next, io);
}

static void resubmit(struct thin_pool *pool, struct pool_io *io);

static void data_done(struct blkdev_req *req, int rc)
{
	struct pool_io *io = req->priv;
	struct thin_pool *pool = io->vol->pool;

	/* Possibly called inside blkdev_submit(): only queue, poll does the work. */
	perf_wait_end(PERF_DISK_WAIT, io->dsubmit,
		      (uint64_t)io->dreq.count * pool->data->block_size);
	pool->data_in_flight--;
	io->drc = rc;
	LIST_PUSH(pool->cpl_head, pool->cpl_tail, io);
}

/* Submit @io's data request: bytes [@byte_off, +@len) of data block @db. */
static void data_submit(struct thin_pool *pool, struct pool_io *io, enum blkdev_op op, uint64_t db,
			uint32_t byte_off, uint32_t len, void *buf, enum io_state next)
{
	uint32_t dbs = pool->data->block_size;

	io->state = next;
	io->dreq.op = op;
	io->dreq.block = db * pool->data_per_block + byte_off / dbs;
	io->dreq.count = len / dbs;
	io->dreq.buf = buf;
	/* The caller's list goes down only with the caller's payload (payload_submit()). */
	io->dreq.segs = op == BLKDEV_WRITE && !buf ? io->segs : NULL;
	io->dreq.nr_segs = io->nr_segs;
	io->dreq.seg_off = io->seg_off;
	io->dreq.done = data_done;
	io->dreq.priv = io;
	io->dreq.next = NULL;
	io->dsubmit = perf_wait_begin();
	resubmit(pool, io);
}

static void resubmit(struct thin_pool *pool, struct pool_io *io)
{
	int r;

	pool->data_in_flight++;
	r = blkdev_submit(pool->data, &io->dreq);
	if (r == -EAGAIN) {
		pool->data_in_flight--;
		LIST_PUSH(pool->retry_head, pool->retry_tail, io);
		return;
	}
	if (r)
		data_done(&io->dreq, r);
}

/*----------------------------------------------------------------*/
/* Allocation */

static void check_low_water(struct thin_pool *pool)
{
	uint64_t nr_free;

	if (!pool->o.low_water_blocks || pool->low_water_reached)
		return;
	if (!thin_md_get_free_data_blocks(pool->md, &nr_free) &&
	    nr_free <= pool->o.low_water_blocks)
		pool->low_water_reached = true;
}

/*
 * Where the block for @vblock should go: right after its predecessor's block, so a volume
 * written in logical order is sequential on the data disk. Without a mapped predecessor:
 * at the volume's own starting point (spread over the disk by its id, golden-ratio
 * hashing) plus @vblock, so that volumes written at the same time do not interleave.
 */
static uint64_t alloc_hint(struct thin_pool *pool, struct thin_volume *vol, uint64_t vblock)
{
	struct thin_lookup_result res;
	uint64_t nr;

	if (vol->have_last && vol->last_vblock + 1 == vblock)
		return vol->last_db + 1;
	if (vblock && !thin_find_block(vol->td, vblock - 1, true, &res))
		return res.block + 1;
	if (thin_md_get_data_dev_size(pool->md, &nr) || !nr)
		return 0;
	return ((uint64_t)(((unsigned __int128)(vol->id * 0x9e3779b97f4a7c15ull) * nr) >> 64) +
		vblock) %
	       nr;
}

/* Writes needing a block fail at once: the option, or the no-space timer fired. */
static bool no_space_errors(const struct thin_pool *pool)
{
	return pool->o.error_if_no_space || pool->no_space_timed_out;
}

/* Enter or leave out-of-data-space mode; entering starts dm's one no_space_timeout. */
static void set_out_of_space(struct thin_pool *pool, bool out)
{
	if (out && pool->mode != THIN_POOL_OUT_OF_DATA_SPACE) {
		pool->mode = THIN_POOL_OUT_OF_DATA_SPACE;
		pool->no_space_since = plat_now_ns();
		pool->no_space_timed_out = false;
	} else if (!out && pool->mode == THIN_POOL_OUT_OF_DATA_SPACE) {
		pool->mode = THIN_POOL_WRITE;
		pool->no_space_timed_out = false; /* re-armed for the next time */
	}
}

/*
 * Get a new data block for @io. 0: io->db is ours. 1: @io was parked (commit in progress,
 * or waiting for space: then without its cell, in state IO_START) and will run again. <0:
 * fail @io with that.
 */
static bool passdown_busy(const struct thin_pool *pool);

static int alloc_block(struct thin_pool *pool, struct pool_io *io)
{
	int r;

	if (!pool_writable(pool))
		return -EROFS;
	if (pool->cstate != COMMIT_IDLE) {
		/* A commit must not see a block that no mapping accounts for yet. */
		LIST_PUSH(pool->defer_head, pool->defer_tail, io);
		return 1;
	}
	if (pool->mode == THIN_POOL_OUT_OF_DATA_SPACE && pool->nospace_head)
		goto no_space; /* keep the queue in order */
	r = thin_md_alloc_data_block_near(pool->md, alloc_hint(pool, io->vol, io->vblock), &io->db);
	if (r == -ENOSPC && passdown_busy(pool)) {
		/* Blocks held for passdown come back when their discards complete. */
		LIST_PUSH(pool->defer_head, pool->defer_tail, io);
		return 1;
	}
	if (r == -ENOSPC) {
		/* Only the data device is full (as in dm): metadata exhaustion fails elsewhere. */
		if (pool->dirty && !io->tried_commit) {
			/* Blocks freed in this transaction become usable after a commit. */
			io->tried_commit = true;
			pool->commit_wanted = true;
			LIST_PUSH(pool->defer_head, pool->defer_tail, io);
			return 1;
		}
		set_out_of_space(pool, true);
		goto no_space;
	}
	if (r) {
		metadata_failed(pool, r);
		return r;
	}
	set_out_of_space(pool, false);
	pool->dirty = true;
	io->holds_block = true;
	io->gen = pool->abort_gen;
	pool->in_flight_allocs++;
	io->vol->have_last = true;
	io->vol->last_vblock = io->vblock;
	io->vol->last_db = io->db;
	check_low_water(pool);
	return 0;

no_space:
	if (no_space_errors(pool))
		return -ENOSPC;
	/* Queue without the cell (dm's retry list): reads and writes to mapped blocks, this one
	 * included, go on meanwhile; @io looks its block up again when it runs. */
	cell_put(pool, io);
	io->state = IO_START;
	io->parked = true;
	io->parent->parked++;
	pool->parked_ios++;
	LIST_PUSH(pool->nospace_head, pool->nospace_tail, io);
	return 1;
}

/* Space may have appeared (commit, delete, resize): retry the writes waiting for it. */
static void space_changed(struct thin_pool *pool)
{
	uint64_t nr_free;

	if (pool->mode != THIN_POOL_OUT_OF_DATA_SPACE)
		return;
	if (thin_md_get_free_data_blocks(pool->md, &nr_free) || !nr_free)
		return;
	set_out_of_space(pool, false);
	requeue_all(pool, &pool->nospace_head, &pool->nospace_tail);
}

/*----------------------------------------------------------------*/
/* The io state machine */

static bool whole_block(const struct thin_pool *pool, const struct pool_io *io)
{
	return io->off == 0 && io->len == pool->block_bytes;
}

/* Round [off, off + len) out to the data disk's blocks. */
static void aligned_range(const struct thin_pool *pool, const struct pool_io *io, uint32_t *a0,
			  uint32_t *alen)
{
	uint32_t dbs = pool->data->block_size;
	uint32_t s = io->off & ~(dbs - 1), e = (io->off + io->len + dbs - 1) & ~(dbs - 1);

	*a0 = s;
	*alen = e - s;
}

static bool is_aligned(const struct thin_pool *pool, const struct pool_io *io)
{
	uint32_t dbs = pool->data->block_size;

	return !(io->off & (dbs - 1)) && !(io->len & (dbs - 1));
}

/* A WRITE (its bytes in buf or a segment list), not zeroes. */
static bool has_payload(const struct pool_io *io)
{
	return io->buf || io->segs;
}

static void copy_payload(uint8_t *dst, const struct pool_io *io)
{
	perf_begin();
	if (io->buf)
		memcpy(dst, io->buf, io->len);
	else if (io->segs)
		blkdev_segs_gather(dst, io->segs, io->nr_segs, io->seg_off, io->len);
	else
		memset(dst, 0, io->len);
	perf_end(PERF_COPY, io->len);
	if (io->segs)
		perf_payload.write_copied += io->len;
}

/* @io's own payload, aligned to data-disk blocks, written to @db where it belongs: from the
 * caller's buffer or segment list, no copy. */
static void payload_submit(struct thin_pool *pool, struct pool_io *io, uint64_t db,
			   enum io_state next)
{
	data_submit(pool, io, BLKDEV_WRITE, db, io->off, io->len, io->buf, next);
}

/* The data path's mapping lookup, counted (core/base/perf.h). */
static int find_block(struct pool_io *io, struct thin_lookup_result *res)
{
	int r;

	perf_begin();
	r = thin_find_block(io->vol->td, io->vblock, true, res);
	perf_end(PERF_POOL_LOOKUP, 0);
	return r;
}

/* Park @io until bounce memory is returned; it re-runs its current state. */
static void wait_mem(struct thin_pool *pool, struct pool_io *io, enum io_state state)
{
	io->state = state;
	LIST_PUSH(pool->mem_head, pool->mem_tail, io);
}

/* Write @io's payload into its new block: the data-disk blocks it covers, zero-filled around. */
static void provision_payload(struct thin_pool *pool, struct pool_io *io)
{
	uint32_t a0, alen;
	uint8_t *b;

	if (has_payload(io) && is_aligned(pool, io)) {
		payload_submit(pool, io, io->db, IO_PROV_DONE);
		return;
	}
	aligned_range(pool, io, &a0, &alen);
	b = bounce_get(pool, io, alen);
	if (!b) {
		wait_mem(pool, io, IO_PROV_ZEROED);
		return;
	}
	copy_payload(b + io->off - a0, io);
	data_submit(pool, io, BLKDEV_WRITE, io->db, a0, alen, b, IO_PROV_DONE);
}

/*
 * Provision @io's new block io->db: one write of the whole block, or of the payload. With
 * zeroing on and a data disk that takes WRITE_ZEROES, the block is zeroed by one WRITE_ZEROES
 * and then only the payload is written: a 4 KiB write into a new 64 KiB block moves 4 KiB,
 * and a sparse data disk stays sparse (QEMU and the host build punch or zero the range
 * instead of writing 60 KiB of zeroes).
 */
static int provision(struct thin_pool *pool, struct pool_io *io)
{
	bool copy_old = io->cow;
	uint32_t a0, alen;
	uint8_t *b;

	if (whole_block(pool, io) && has_payload(io)) {
		payload_submit(pool, io, io->db, IO_PROV_DONE);
		return 0;
	}
	if (copy_old) {
		b = bounce_get(pool, io, pool->block_bytes);
		if (!b)
			goto wait_mem;
		if (whole_block(pool, io)) {
			data_submit(pool, io, BLKDEV_WRITE, io->db, 0, io->len, b, IO_PROV_DONE);
			return 0;
		}
		data_submit(pool, io, BLKDEV_READ, io->old_db, 0, pool->block_bytes, b,
			    IO_COW_READ_DONE);
		return 0;
	}
	if (pool->o.zero_new_blocks && !pool->zero_by_writing && pool->data->ops->write_zeroes) {
		data_submit(pool, io, BLKDEV_WRITE_ZEROES, io->db, 0, pool->block_bytes, NULL,
			    IO_PROV_ZEROED);
		return 0;
	}
	if (pool->o.zero_new_blocks) {
		a0 = 0;
		alen = pool->block_bytes;
	} else {
		aligned_range(pool, io, &a0, &alen);
	}
	b = bounce_get(pool, io, alen);
	if (!b)
		goto wait_mem;
	copy_payload(b + io->off - a0, io);
	data_submit(pool, io, BLKDEV_WRITE, io->db, a0, alen, b, IO_PROV_DONE);
	return 0;

wait_mem:
	/* Keep the block (and the cell); try again when memory comes back. */
	wait_mem(pool, io, IO_PROVISION);
	return 0;
}

static int map_read(struct thin_pool *pool, struct pool_io *io)
{
	struct thin_lookup_result res;
	uint32_t a0, alen;
	int r = find_block(io, &res);

	if (r == -ENODATA) {
		memset(io->buf, 0, io->len);
		return 1;
	}
	if (r)
		return r;
	if (is_aligned(pool, io)) {
		cell_leave(pool, io);
		data_submit(pool, io, BLKDEV_READ, res.block, io->off, io->len, io->buf,
			    IO_READ_DONE);
		return 0;
	}
	aligned_range(pool, io, &a0, &alen);
	if (!bounce_get(pool, io, alen)) {
		wait_mem(pool, io, IO_MAP);
		return 0;
	}
	io->boff = a0;
	cell_leave(pool, io);
	data_submit(pool, io, BLKDEV_READ, res.block, a0, alen, io->bounce, IO_READ_DONE);
	return 0;
}

/* WRITE, and WRITE_ZEROES of part of a block (io->buf NULL). */
static int map_write(struct thin_pool *pool, struct pool_io *io)
{
	struct thin_lookup_result res;
	uint32_t a0, alen;
	int r = find_block(io, &res);

	if (r && r != -ENODATA)
		return r;
	if (r == -ENODATA) {
		if (!has_payload(io))
			return 1; /* zeroes over a hole: nothing to do */
		/* Only after a rollback could in-place I/O be in flight here; same rule anyway. */
		if (cell_wait_in_place(io))
			return 0;
		io->cow = false;
		r = alloc_block(pool, io);
		if (r)
			return r < 0 ? r : 0;
		return provision(pool, io);
	}
	if (res.shared) {
		/* dm's shared_read_ds: reads of the old block finish before it is unmapped
		 * here (another volume could then free it). */
		if (cell_wait_in_place(io))
			return 0;
		io->old_db = res.block;
		io->cow = true;
		r = alloc_block(pool, io);
		if (r)
			return r < 0 ? r : 0;
		return provision(pool, io);
	}
	/* Mapped and not shared: in place (also in read-only mode, as dm). */
	io->db = res.block;
	if (is_aligned(pool, io) && has_payload(io)) {
		cell_leave(pool, io);
		payload_submit(pool, io, res.block, IO_WRITE_DONE);
		return 0;
	}
	/* A read-modify-write stays in the cell, after the earlier in-place I/O: atomic
	 * against every other write to the same disk block. */
	if (!is_aligned(pool, io) && cell_wait_in_place(io))
		return 0;
	aligned_range(pool, io, &a0, &alen);
	if (!bounce_get(pool, io, alen)) {
		wait_mem(pool, io, IO_MAP);
		return 0;
	}
	io->boff = a0;
	if (is_aligned(pool, io)) {
		/* Zeroes, aligned: the bounce buffer is already zero. */
		cell_leave(pool, io);
		data_submit(pool, io, BLKDEV_WRITE, res.block, a0, alen, io->bounce, IO_WRITE_DONE);
		return 0;
	}
	data_submit(pool, io, BLKDEV_READ, res.block, a0, alen, io->bounce, IO_RMW_READ_DONE);
	return 0;
}

/* Remember @db for passdown after the next commit. Without memory the discard is skipped:
 * that loses nothing. */
static void passdown_later(struct thin_pool *pool, uint64_t db)
{
	if (pool->pd_nr == pool->pd_cap) {
		size_t cap = pool->pd_cap ? pool->pd_cap * 2 : 64;
		uint64_t *n = realloc(pool->pd_blocks, cap * sizeof(*n));

		if (!n)
			return;
		pool->pd_blocks = n;
		pool->pd_cap = cap;
	}
	pool->pd_blocks[pool->pd_nr++] = db;
}

/* DISCARD, and WRITE_ZEROES of a whole block: unmap (the discard goes down after the commit). */
static int map_unmap(struct thin_pool *pool, struct pool_io *io)
{
	struct thin_lookup_result res;
	uint32_t count;
	int r;

	if (!pool_writable(pool)) {
		/* Read-only: discards do nothing (dm); zeroes must still read back as zeroes. */
		if (io->op == BLKDEV_DISCARD)
			return 1;
		return map_write(pool, io);
	}
	if (!whole_block(pool, io)) {
		if (io->op == BLKDEV_DISCARD)
			return 1; /* partial discards are dropped, as dm does */
		return map_write(pool, io);
	}
	r = find_block(io, &res);
	if (r == -ENODATA)
		return 1;
	if (r)
		return r;
	/* dm's all_io_ds: in-place I/O that started before the unmap completes first, or it
	 * could land in the block after it was reused. */
	if (cell_wait_in_place(io))
		return 0;
	r = thin_remove_block(io->vol->td, io->vblock);
	if (r) {
		metadata_failed(pool, r);
		return r;
	}
	pool->dirty = true;
	space_changed(pool);
	if (!pool->passdown)
		return 1;
	/* Only a block nobody references any more goes down, and only after the commit that
	 * makes this unmap durable: until then the last committed mappings may still point
	 * at it (a snapshot's, say), and a power cut would bring them back. A block freed in
	 * this transaction cannot be reallocated before that commit (the space map's rule). */
	r = thin_md_data_block_refcount(pool->md, res.block, &count);
	if (r) {
		metadata_failed(pool, r);
		return r;
	}
	if (!count)
		passdown_later(pool, res.block);
	return 1;
}

static int insert_mapping(struct thin_pool *pool, struct pool_io *io)
{
	int r;

	if (io->gen != pool->abort_gen || !pool_writable(pool))
		return -EIO; /* the allocation was rolled back */
	r = thin_insert_block(io->vol->td, io->vblock, io->db);
	if (r) {
		metadata_failed(pool, r);
		return r == -ENOSPC ? -ENOSPC : -EIO;
	}
	/* The mapping owns the reference now. */
	io->holds_block = false;
	pool->in_flight_allocs--;
	pool->dirty = true;
	return 0;
}

/*
 * Advance @io by one step. Returns 1 when the step moved something, 0 when it was parked.
 * Every path either submits data I/O, parks the io on a list, or finishes it.
 */
static int step_io(struct thin_pool *pool, struct pool_io *io)
{
	bool held;
	int r = 0;

	io_unpark(pool, io);
	if (pool->mode == THIN_POOL_FAIL) {
		io_finish(pool, io, -EIO);
		return 1;
	}
	switch (io->state) {
	case IO_START:
		r = cell_get(pool, io, &held);
		if (r)
			break;
		if (!held)
			return 0;
		/* fall through */
	case IO_MAP:
		if (io->op == BLKDEV_READ)
			r = map_read(pool, io);
		else if (io->op == BLKDEV_WRITE)
			r = map_write(pool, io);
		else if (io->op == BLKDEV_WRITE_ZEROES && !whole_block(pool, io))
			r = map_write(pool, io);
		else
			r = map_unmap(pool, io);
		/* A lookup or metadata update failed: dm's metadata_operation_failed. */
		if (r < 0 && r != -ENOSPC && r != -EROFS && r != -ENOMEM)
			metadata_failed(pool, r);
		if (r == 0)
			return 1; /* submitted or parked */
		if (r == 1)
			r = 0;
		break;
	case IO_PROVISION:
		provision(pool, io);
		return 1;
	case IO_READ_DONE:
		r = io->drc;
		if (!r && io->bounce) {
			perf_begin();
			memcpy(io->buf, io->bounce + io->off - io->boff, io->len);
			perf_end(PERF_COPY, io->len);
		}
		break;
	case IO_WRITE_DONE:
		r = io->drc;
		break;
	case IO_RMW_READ_DONE:
		if ((r = io->drc))
			break;
		copy_payload(io->bounce + io->off - io->boff, io);
		data_submit(pool, io, BLKDEV_WRITE, io->db, io->boff, (uint32_t)io->bounce_len,
			    io->bounce, IO_WRITE_DONE);
		return 1;
	case IO_COW_READ_DONE:
		if ((r = io->drc))
			break;
		copy_payload(io->bounce + io->off, io);
		data_submit(pool, io, BLKDEV_WRITE, io->db, 0, pool->block_bytes, io->bounce,
			    IO_PROV_DONE);
		return 1;
	case IO_PROV_ZEROED:
		if (io->drc == -EOPNOTSUPP) {
			/* Zero by writing from now on: a refusal is the disk's answer. Every io
			 * whose WRITE_ZEROES was refused (several may be in flight) goes again. */
			pool->zero_by_writing = true;
			provision(pool, io);
			return 1;
		}
		if ((r = io->drc))
			break;
		provision_payload(pool, io);
		return 1;
	case IO_PROV_DONE:
		r = io->drc;
		if (!r)
			r = insert_mapping(pool, io);
		break;
	}
	io_finish(pool, io, r);
	return 1;
}

static void run_io(struct thin_pool *pool, struct pool_io *io)
{
	LIST_PUSH(pool->run_head, pool->run_tail, io);
}

/*----------------------------------------------------------------*/
/* Commit policy */

static void flush_req_done(struct blkdev_req *req, int rc)
{
	struct thin_pool *pool = req->priv;

	pool->flush_rc = rc;
	pool->flush_done = true;
}

static void complete_waiters(struct thin_pool *pool, struct pool_req *list, int rc)
{
	while (list) {
		struct pool_req *p = list;
		int r = rc;

		list = p->next;
		/* dm: a FLUSH to a device whose changes an abort dropped must fail. */
		if (!r && p->vol->td && thin_aborted_with_changes(p->vol->td))
			r = -EIO;
		p->pending = 1;
		parent_put(pool, p, r);
	}
}

/*----------------------------------------------------------------*/
/* Passdown */

static void passdown_done(struct blkdev_req *req, int rc)
{
	struct passdown *pd = req->priv;
	struct thin_pool *pool = pd->pool;

	/* Possibly called inside blkdev_submit(): only queue. A failed discard loses nothing. */
	(void)rc;
	pool->pd_in_flight--;
	LIST_PUSH(pool->pd_cpl_head, pool->pd_cpl_tail, pd);
}

static void passdown_submit(struct thin_pool *pool, struct passdown *pd)
{
	int r;

	pool->pd_in_flight++;
	r = blkdev_submit(pool->data, &pd->req);
	if (r == -EAGAIN) {
		pool->pd_in_flight--;
		LIST_PUSH(pool->pd_retry_head, pool->pd_retry_tail, pd);
	} else if (r) {
		passdown_done(&pd->req, r);
	}
}

/*
 * The commit that made the unmaps of the remembered blocks durable succeeded: hold each
 * block (dm's passdown pt1) and discard it on the data disk. The hold is an extra reference
 * in the new transaction, counted in in_flight_allocs, so the block cannot be reallocated
 * while its discard runs, and the next commit waits until it is released.
 */
static void passdown_start(struct thin_pool *pool)
{
	size_t n = pool->pd_nr;
	uint32_t count;
	int r;

	pool->pd_nr = 0;
	for (size_t i = 0; i < n && pool_writable(pool); i++) {
		uint64_t db = pool->pd_blocks[i];
		struct passdown *pd;

		/* Nothing can take a block freed in the committed transaction before this runs;
		 * checking costs a lookup and keeps a shared block from ever going down. */
		r = thin_md_data_block_refcount(pool->md, db, &count);
		if (r) {
			metadata_failed(pool, r);
			return;
		}
		if (count)
			continue;
		pd = REC_GET(pool->free_pds, pool->nfree_pds, next);
		if (!pd)
			continue; /* a skipped discard loses nothing */
		r = thin_md_inc_data_range(pool->md, db, db + 1);
		if (r) {
			REC_PUT(pool->free_pds, pool->nfree_pds, next, pd);
			metadata_failed(pool, r);
			return;
		}
		pd->pool = pool;
		pd->db = db;
		pd->gen = pool->abort_gen;
		pd->req.op = BLKDEV_DISCARD;
		pd->req.block = db * pool->data_per_block;
		pd->req.count = (uint32_t)pool->data_per_block;
		pd->req.done = passdown_done;
		pd->req.priv = pd;
		pool->in_flight_allocs++;
		passdown_submit(pool, pd);
	}
}

/* Discards that completed: drop their holds (dm's passdown pt2). */
static int passdown_step(struct thin_pool *pool)
{
	struct passdown *pd, *retry = pool->pd_retry_head;
	int moved = 0, r;

	pool->pd_retry_head = pool->pd_retry_tail = NULL;
	while (retry) {
		pd = retry;
		retry = retry->next;
		pd->next = NULL;
		passdown_submit(pool, pd);
	}
	for (;;) {
		LIST_POP(pool->pd_cpl_head, pool->pd_cpl_tail, pd);
		if (!pd)
			break;
		pool->in_flight_allocs--;
		/* After an abort the hold belongs to a transaction that no longer exists. */
		if (pd->gen == pool->abort_gen && pool_writable(pool)) {
			r = thin_md_dec_data_range(pool->md, pd->db, pd->db + 1);
			if (r)
				metadata_failed(pool, r);
		}
		REC_PUT(pool->free_pds, pool->nfree_pds, next, pd);
		moved++;
	}
	/* Allocations that found no space while blocks were held try again (unless a commit is
	 * coming: it requeues them when it is done). */
	if (moved && pool->cstate == COMMIT_IDLE && !pool->commit_wanted)
		requeue_all(pool, &pool->defer_head, &pool->defer_tail);
	return moved;
}

static bool passdown_busy(const struct thin_pool *pool)
{
	return pool->pd_in_flight || pool->pd_cpl_head || pool->pd_retry_head;
}

/*----------------------------------------------------------------*/
/* Commit cycle */

/* Drive the commit cycle: drain allocations, flush the data disk, commit. */
static int commit_step(struct thin_pool *pool)
{
	int r;

	switch (pool->cstate) {
	case COMMIT_IDLE:
		if (!pool->commit_wanted)
			return 0;
		pool->commit_wanted = false;
		pool->cstate = COMMIT_DRAIN;
		/* fall through */
	case COMMIT_DRAIN:
		if (pool->in_flight_allocs)
			return 0;
		pool->cstate = COMMIT_FLUSHING;
		pool->flush_done = false;
		memset(&pool->flush_req, 0, sizeof(pool->flush_req));
		pool->flush_req.op = BLKDEV_FLUSH;
		pool->flush_req.done = flush_req_done;
		pool->flush_req.priv = pool;
		r = blkdev_submit(pool->data, &pool->flush_req);
		if (r == -EAGAIN) {
			pool->cstate = COMMIT_DRAIN;
			return 0;
		}
		if (r)
			flush_req_done(&pool->flush_req, r);
		return 1;
	case COMMIT_FLUSHING:
		if (!pool->flush_done)
			return 0;
		break;
	}
	r = pool->mode == THIN_POOL_FAIL ? -EIO : pool->flush_rc;
	/* Writes acknowledged before a failed data flush may be gone (a disk that lost its
	 * cache): no later FLUSH may claim them durable. */
	if (r)
		pool->data_flush_failed = true;
	else if (pool->data_flush_failed)
		r = -EIO;
	if (r && pool_writable(pool)) {
		/* dm (the pre-commit callback): a failed data flush fails the commit. The open
		 * transaction may map blocks whose data never reached the disk: roll it back, set
		 * needs_check and go read-only rather than commit it after a later flush. */
		metadata_failed(pool, r);
		r = -EIO;
	}
	/* Data first, then the metadata pointing to it: commit only after a good flush. No
	 * mapping was inserted since the flush was submitted (allocations wait meanwhile). */
	if (!r && pool_writable(pool) && (pool->dirty || pool->commit_op)) {
		int (*op)(struct thin_md *) = pool->commit_op;

		pool->commit_op = NULL;
		r = op ? op(pool->md) : 0;
		if (!r)
			r = thin_md_commit(pool->md);
		if (r) {
			metadata_failed(pool, r);
			/* Say "metadata full" as such; every other failure is an I/O error. */
			r = r == -ENOSPC ? -ENOSPC : -EIO;
		} else {
			pool->dirty = false;
			passdown_start(pool);
		}
	}
	pool->last_commit_rc = r;
	pool->last_commit_ns = plat_now_ns();
	pool->commits++;
	pool->cstate = COMMIT_IDLE;
	complete_waiters(pool, pool->commit_waiters, r);
	pool->commit_waiters = pool->next_waiters;
	pool->next_waiters = NULL;
	if (pool->commit_waiters)
		pool->commit_wanted = true;
	requeue_all(pool, &pool->defer_head, &pool->defer_tail);
	space_changed(pool);
	return 1;
}

/* FLUSHes whose earlier modifying requests are all done join a commit. */
static int flush_step(struct thin_pool *pool)
{
	struct pool_req **pp = &pool->flush_wait, *oldest = pool->mhead;
	int moved = 0;

	/* Requests with a write queued for space are not acknowledged: not waited for. */
	while (oldest && oldest->parked)
		oldest = oldest->mnext;
	while (*pp) {
		struct pool_req *f = *pp;

		if (oldest && oldest->seq < f->seq) {
			pp = &f->next;
			continue;
		}
		*pp = f->next;
		/* Writes that completed before the data flush is submitted are covered by it. */
		if (pool->cstate == COMMIT_FLUSHING) {
			f->next = pool->next_waiters;
			pool->next_waiters = f;
		} else {
			f->next = pool->commit_waiters;
			pool->commit_waiters = f;
		}
		pool->commit_wanted = true;
		moved++;
	}
	return moved;
}

/*----------------------------------------------------------------*/
/* Poll */

/*
 * dm's no_space_timeout: one timer, from when the pool ran out of data space. When it fires
 * (or error_if_no_space is set), the queued writes fail with -ENOSPC, and so do later ones
 * until space appears (set_out_of_space() re-arms it).
 */
static int no_space_timer(struct thin_pool *pool)
{
	struct pool_io *io;
	int moved = 0;

	if (pool->mode != THIN_POOL_OUT_OF_DATA_SPACE)
		return 0;
	if (!no_space_errors(pool) && pool->o.no_space_timeout_ms &&
	    plat_now_ns() - pool->no_space_since >=
		(uint64_t)pool->o.no_space_timeout_ms * NSEC_PER_MSEC)
		pool->no_space_timed_out = true;
	if (!no_space_errors(pool))
		return 0;
	for (;;) {
		LIST_POP(pool->nospace_head, pool->nospace_tail, io);
		if (!io)
			break;
		io_finish(pool, io, -ENOSPC);
		moved++;
	}
	return moved;
}

int thin_pool_poll(struct thin_pool *pool)
{
	struct pool_io *io;
	struct pool_req *p;
	int moved = 0, budget = POLL_BUDGET;

	for (;;) {
		int before = moved;

		if (blkdev_poll(pool->data) > 0)
			moved++;
		/* Retries: submits refused with -EAGAIN, ios that waited for memory. */
		if (pool->retry_head) {
			struct pool_io *h = pool->retry_head;

			pool->retry_head = pool->retry_tail = NULL;
			while (h) {
				io = h;
				h = h->next;
				io->next = NULL;
				resubmit(pool, io);
			}
		}
		while (budget > 0 && (pool->cpl_head || pool->run_head)) {
			if (pool->cpl_head)
				LIST_POP(pool->cpl_head, pool->cpl_tail, io);
			else
				LIST_POP(pool->run_head, pool->run_tail, io);
			moved += step_io(pool, io);
			budget--;
		}
		moved += passdown_step(pool);
		moved += flush_step(pool);
		if (pool_writable(pool) && pool->dirty && pool->cstate == COMMIT_IDLE &&
		    plat_now_ns() - pool->last_commit_ns >=
			(uint64_t)pool->o.commit_interval_ms * NSEC_PER_MSEC)
			pool->commit_wanted = true;
		moved += commit_step(pool);
		moved += no_space_timer(pool);
		/* Complete parents last: done() may submit new requests, which only queue. */
		for (;;) {
			LIST_POP(pool->done_head, pool->done_tail, p);
			if (!p)
				break;
			pool->requests--;
			p->vol->in_flight--;
			p->req->done(p->req, p->rc);
			REC_PUT(pool->free_reqs, pool->nfree_reqs, next, p);
			moved++;
		}
		if (moved == before || budget <= 0)
			break;
	}
	return moved;
}

/* A FLUSH flush_step() moves at the next poll: no earlier modifying request is left. */
static bool flush_ready(const struct thin_pool *pool)
{
	const struct pool_req *f, *oldest = pool->mhead;

	while (oldest && oldest->parked)
		oldest = oldest->mnext;
	for (f = pool->flush_wait; f; f = f->next)
		if (!oldest || oldest->seq >= f->seq)
			return true;
	return false;
}

/* The data disk announces every completion of what is in flight on it (blkdev.h). */
static bool data_signals(const struct thin_pool *pool)
{
	const struct blkdev *d = pool->data;

	return d->ops->signals_completion && d->ops->signals_completion(d);
}

/* Requests and steps the next poll advances by itself, whatever the disks do. */
static bool pool_has_steps(const struct thin_pool *pool)
{
	return pool->run_head || pool->cpl_head || pool->done_head || pool->retry_head ||
	       pool->commit_wanted || pool->pd_cpl_head || pool->pd_retry_head || flush_ready(pool);
}

bool thin_pool_needs_cpu(const struct thin_pool *pool)
{
	if (pool_has_steps(pool))
		return true;
	/* A commit step that can go on now: its drain is over, or its flush completed. */
	if ((pool->cstate == COMMIT_DRAIN && !pool->in_flight_allocs) ||
	    (pool->cstate == COMMIT_FLUSHING && pool->flush_done))
		return true;
	/* Everything else waits on the data disk: a wait the caller may sleep through only if
	 * the disk announces its completions; a draining commit with nothing on the disk would
	 * wait for nothing, so it is polled as before. */
	if (pool->cstate == COMMIT_DRAIN && !pool->data_in_flight && !pool->pd_in_flight)
		return true;
	return thin_pool_busy(pool) && !data_signals(pool);
}

bool thin_pool_busy(const struct thin_pool *pool)
{
	/* Waiting for space or for the commit timer is not "busy": the caller may sleep. */
	return pool_has_steps(pool) || pool->data_in_flight || pool->cstate != COMMIT_IDLE ||
	       pool->pd_in_flight;
}

/*----------------------------------------------------------------*/
/* Volume requests */

static int vol_submit(struct blkdev *dev, struct blkdev_req *req)
{
	struct thin_volume *vol = container_of(dev, struct thin_volume, bdev);
	struct thin_pool *pool = vol->pool;
	bool bytes = req->op == BLKDEV_WRITE_BYTES || req->op == BLKDEV_WRITE_ZEROES_BYTES;
	/* The byte ops are the same ios at any offset: the io machinery is byte-granular, and a
	 * piece smaller than a data-disk block is read-modify-written under its cell. */
	uint64_t start = bytes ? req->offset : req->block * SECTOR;
	uint64_t byte = start,
		 end = bytes ? start + req->length : start + (uint64_t)req->count * SECTOR;
	enum blkdev_op op = req->op == BLKDEV_WRITE_BYTES	   ? BLKDEV_WRITE
			    : req->op == BLKDEV_WRITE_ZEROES_BYTES ? BLKDEV_WRITE_ZEROES
								   : req->op;
	struct pool_req *p;
	struct pool_io *first = NULL, *last = NULL, *io;
	/* A WRITE's segment list, cut per io as the buffer is (core/blkdev.h). */
	const struct blkdev_seg *segs = req->segs;
	uint32_t nr_segs = req->nr_segs, seg_off = req->seg_off;

	if (pool->mode == THIN_POOL_FAIL)
		return -EIO;
	p = REC_GET(pool->free_reqs, pool->nfree_reqs, next);
	if (!p)
		return -ENOMEM;
	p->req = req;
	p->vol = vol;
	p->seq = ++pool->seq;
	if (req->op == BLKDEV_FLUSH) {
		p->pending = 1;
		p->next = pool->flush_wait;
		pool->flush_wait = p;
		goto queued;
	}
	/* One io per data block touched. */
	while (byte < end) {
		uint64_t vb = byte / pool->block_bytes;
		uint32_t off = (uint32_t)(byte % pool->block_bytes);
		uint32_t len = (uint32_t)MIN((uint64_t)pool->block_bytes - off, end - byte);

		io = REC_GET(pool->free_ios, pool->nfree_ios, next);
		if (!io)
			goto nomem;
		io->parent = p;
		io->vol = vol;
		io->op = op;
		io->vblock = vb;
		io->off = off;
		io->len = len;
		if (segs && op == BLKDEV_WRITE) {
			io->segs = segs;
			io->nr_segs = nr_segs;
			io->seg_off = seg_off;
			if (byte + len < end)
				blkdev_segs_advance(&segs, &nr_segs, &seg_off, len);
		} else if (op == BLKDEV_READ || op == BLKDEV_WRITE) {
			io->buf = (uint8_t *)req->buf + (byte - start);
		}
		LIST_PUSH(first, last, io);
		p->pending++;
		byte += len;
	}
	p->modifying = req->op != BLKDEV_READ;
	if (p->modifying) {
		p->mprev = pool->mtail;
		if (pool->mtail)
			pool->mtail->mnext = p;
		else
			pool->mhead = p;
		pool->mtail = p;
	}
	while (first) {
		io = first;
		first = first->next;
		run_io(pool, io);
	}
queued:
	pool->requests++;
	vol->in_flight++;
	return 0;

nomem:
	while (first) {
		io = first;
		first = first->next;
		REC_PUT(pool->free_ios, pool->nfree_ios, next, io);
	}
	REC_PUT(pool->free_reqs, pool->nfree_reqs, next, p);
	return -ENOMEM;
}

static int vol_poll(struct blkdev *dev)
{
	return thin_pool_poll(container_of(dev, struct thin_volume, bdev)->pool);
}

/* Nothing moves but the pool's timers (commit interval, no-space timeout): the wait may sleep. */
static bool vol_idle(struct blkdev *dev)
{
	return !thin_pool_busy(container_of(dev, struct thin_volume, bdev)->pool);
}

static int vol_sync(struct blkdev *dev, enum blkdev_op op, uint64_t block, uint32_t count,
		    void *buf)
{
	struct blkdev_req req = { .op = op, .block = block, .count = count, .buf = buf };

	return blkdev_submit_wait(dev, &req, SYNC_WAIT_NS, vol_idle);
}

static int vol_read(struct blkdev *dev, uint64_t block, uint32_t count, void *buf)
{
	return vol_sync(dev, BLKDEV_READ, block, count, buf);
}

static int vol_write(struct blkdev *dev, uint64_t block, uint32_t count, const void *buf)
{
	return vol_sync(dev, BLKDEV_WRITE, block, count, (void *)buf);
}

static int vol_flush(struct blkdev *dev)
{
	return vol_sync(dev, BLKDEV_FLUSH, 0, 0, NULL);
}

static int vol_discard(struct blkdev *dev, uint64_t block, uint32_t count)
{
	return vol_sync(dev, BLKDEV_DISCARD, block, count, NULL);
}

static int vol_write_zeroes(struct blkdev *dev, uint64_t block, uint32_t count)
{
	return vol_sync(dev, BLKDEV_WRITE_ZEROES, block, count, NULL);
}

/*
 * A volume's request completes from the pool's poll once the data disk's requests under it
 * have; the metadata is read and written synchronously. So the volume announces its
 * completions when the data disk does, provided the caller also polls whenever
 * thin_pool_needs_cpu() says (the pool's own steps between the disk's completions).
 */
static bool vol_signals(const struct blkdev *dev)
{
	return data_signals(container_of(dev, const struct thin_volume, bdev)->pool);
}

static const struct blkdev_ops vol_ops = {
	.read = vol_read,
	.write = vol_write,
	.flush = vol_flush,
	.discard = vol_discard,
	.write_zeroes = vol_write_zeroes,
	.submit = vol_submit,
	.poll = vol_poll,
	.signals_completion = vol_signals,
};

/*----------------------------------------------------------------*/
/* Open, format, close */

void thin_pool_default_opts(struct thin_pool_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->data_block_sectors = 128;
	o->zero_new_blocks = true;
	o->discard_passdown = true;
	o->error_if_no_space = false;
	o->no_space_timeout_ms = 60000; /* dm's default no_space_timeout */
	o->commit_interval_ms = THIN_POOL_COMMIT_INTERVAL_MS_DEFAULT;
}

/* Data blocks the data disk holds at @sectors per block. */
static int data_geometry(struct blkdev *data, uint32_t sectors, uint64_t *nr)
{
	uint64_t bytes = (uint64_t)sectors * SECTOR;

	if (sectors < THIN_DATA_BLOCK_SECTORS_MIN || sectors > THIN_DATA_BLOCK_SECTORS_MAX ||
	    sectors % THIN_DATA_BLOCK_SECTORS_MIN || data->block_size > bytes ||
	    bytes % data->block_size)
		return -EINVAL;
	*nr = data->nr_blocks * data->block_size / bytes;
	return *nr ? 0 : -EINVAL;
}

int thin_pool_format(struct blkdev *meta, struct blkdev *data, const struct thin_pool_opts *o,
		     bool force)
{
	struct thin_md_open_opts mo = { 0 };
	struct thin_pool_opts def;
	struct thin_md *md;
	uint64_t nr;
	bool blank;
	int r;

	if (!o) {
		thin_pool_default_opts(&def);
		o = &def;
	}
	r = data_geometry(data, o->data_block_sectors, &nr);
	if (r)
		return r;
	r = thin_md_is_blank(meta, &blank);
	if (r)
		return r;
	if (!blank && !force)
		return -EEXIST;
	if (!blank) {
		/* thin_md_open() formats only a blank device: make it one. */
		r = thin_md_erase(meta);
		if (r)
			return r;
	}
	mo.data_block_sectors = o->data_block_sectors;
	mo.format = true;
	mo.data_dev_blocks = nr;
	mo.cache_blocks = o->meta_cache_blocks;
	r = thin_md_open(meta, &mo, &md);
	if (r)
		return r;
	return thin_md_close(md);
}

int thin_pool_open(struct blkdev *meta, struct blkdev *data, const struct thin_pool_opts *o,
		   char *why, size_t why_len, struct thin_pool **out)
{
	struct thin_md_open_opts mo = { 0 };
	struct thin_pool *pool;
	uint64_t nr, have;
	int r;

	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return -ENOMEM;
	if (o)
		pool->o = *o;
	else
		thin_pool_default_opts(&pool->o);
	if (!pool->o.commit_interval_ms)
		pool->o.commit_interval_ms = THIN_POOL_COMMIT_INTERVAL_MS_DEFAULT;
	pool->meta = meta;
	pool->data = data;
	mo.read_only = pool->o.read_only;
	mo.cache_blocks = pool->o.meta_cache_blocks;
	mo.why = why;
	mo.why_len = why_len;
	r = thin_md_open(meta, &mo, &pool->md);
	if (r)
		goto err_free;
	r = data_geometry(data, thin_md_data_block_sectors(pool->md), &nr);
	if (r) {
		if (why)
			snprintf(why, why_len, "data disk block size %u does not fit the pool",
				 data->block_size);
		goto err_close;
	}
	r = thin_md_get_data_dev_size(pool->md, &have);
	if (r)
		goto err_close;
	if (nr != have) {
		/* The data disk's size is the pool's (dm: grown on resume). */
		r = thin_md_is_read_only(pool->md) ? (nr < have ? -ENOSPC : 0)
						   : thin_md_resize_data_dev(pool->md, nr);
		if (!r && !thin_md_is_read_only(pool->md))
			r = thin_md_commit(pool->md);
		if (r) {
			if (why && r == -ENOSPC)
				snprintf(
				    why, why_len,
				    "the data disk (%llu blocks) is smaller than the pool needs",
				    (unsigned long long)nr);
			goto err_close;
		}
	}
	pool->block_bytes = thin_md_data_block_sectors(pool->md) * SECTOR;
	pool->data_per_block = pool->block_bytes / data->block_size;
	pool->passdown = pool->o.discard_passdown && (data->ops->discard || data->ops->submit);
	pool->mode = thin_md_is_read_only(pool->md) ? THIN_POOL_READ_ONLY : THIN_POOL_WRITE;
	pool->last_commit_ns = plat_now_ns();
	*out = pool;
	return 0;

err_close:
	thin_md_close(pool->md);
err_free:
	free(pool);
	return r;
}

/*
 * Poll until @cond holds, bounded. Waits for pool state, not for one request (that is
 * blkdev_submit_wait(), which the volumes' synchronous ops use), with the same bound and
 * the same sleep when idle.
 */
#define WAIT_UNTIL(pool, cond)                                                                     \
	({                                                                                         \
		uint64_t dl_ = plat_now_ns() + SYNC_WAIT_NS;                                       \
		int rc_ = 0;                                                                       \
		while (!(cond)) {                                                                  \
			if (!thin_pool_poll(pool) && !thin_pool_busy(pool))                        \
				plat_udelay(BLKDEV_WAIT_IDLE_US);                                  \
			if (!(cond) && plat_now_ns() > dl_) {                                      \
				rc_ = -ETIMEDOUT;                                                  \
				break;                                                             \
			}                                                                          \
		}                                                                                  \
		rc_;                                                                               \
	})

/* Run one full commit cycle that starts after this call (data flush, then commit). */
static int commit_sync(struct thin_pool *pool)
{
	uint64_t target;
	int r;

	if (pool->mode == THIN_POOL_FAIL)
		return -EIO;
	target = pool->commits + (pool->cstate == COMMIT_IDLE ? 1 : 2);
	pool->commit_wanted = true;
	r = WAIT_UNTIL(pool, pool->commits >= target);
	if (r)
		return r;
	return pool->last_commit_rc;
}

int thin_pool_close(struct thin_pool *pool)
{
	int r = 0;

	if (!pool)
		return 0;
	if (pool->vols || pool->requests)
		return -EBUSY;
	if (pool_writable(pool) && pool->dirty)
		r = commit_sync(pool);
	/* The last commit's passdowns: their holds are net zero and need no commit. */
	if (WAIT_UNTIL(pool, !passdown_busy(pool)) || pool->cstate != COMMIT_IDLE)
		return r ? r : -EBUSY;
	thin_md_close(pool->md);
	free(pool->pd_blocks);
	free_lists_release(pool);
	free(pool);
	return r;
}

struct thin_md *thin_pool_md(struct thin_pool *pool)
{
	return pool->md;
}

/*----------------------------------------------------------------*/
/* Administration */

static int admin_begin(struct thin_pool *pool)
{
	if (pool->mode == THIN_POOL_FAIL)
		return -EIO;
	if (!pool_writable(pool))
		return -EROFS;
	return 0;
}

/* A metadata call made by an admin operation finished with @r: commit, or roll back. */
static int admin_end(struct thin_pool *pool, int r)
{
	if (r == -EINVAL || r == -EEXIST || r == -ENODATA || r == -EBUSY || r == -ENOSPC ||
	    r == -EROFS)
		return r;
	if (r) {
		metadata_failed(pool, r);
		return r;
	}
	pool->dirty = true;
	r = commit_sync(pool);
	space_changed(pool);
	return r;
}

static struct thin_volume *find_vol(struct thin_pool *pool, thin_id_t id)
{
	for (struct thin_volume *v = pool->vols; v; v = v->next)
		if (v->id == id)
			return v;
	return NULL;
}

int thin_pool_create_thin(struct thin_pool *pool, thin_id_t id)
{
	int r = admin_begin(pool);

	return r ? r : admin_end(pool, thin_md_create_thin(pool->md, id));
}

int thin_pool_create_snap(struct thin_pool *pool, thin_id_t id, thin_id_t origin)
{
	struct thin_volume *ov = find_vol(pool, origin);
	int r = admin_begin(pool);

	if (r)
		return r;
	/* dm asks for a suspended origin: let its requests finish so none lands after the
	 * snapshot's time in a block now shared. */
	if (ov) {
		r = WAIT_UNTIL(pool, !ov->in_flight);
		if (r)
			return r;
	}
	return admin_end(pool, thin_md_create_snap(pool->md, id, origin));
}

int thin_pool_delete_thin(struct thin_pool *pool, thin_id_t id)
{
	int r = admin_begin(pool);

	if (r)
		return r;
	if (find_vol(pool, id))
		return -EBUSY;
	return admin_end(pool, thin_md_delete_thin(pool->md, id));
}

int thin_pool_commit(struct thin_pool *pool)
{
	if (pool->mode == THIN_POOL_FAIL)
		return -EIO;
	return commit_sync(pool);
}

int thin_pool_set_transaction_id(struct thin_pool *pool, uint64_t current, uint64_t new_id)
{
	int r = admin_begin(pool);

	return r ? r : admin_end(pool, thin_md_set_transaction_id(pool->md, current, new_id));
}

int thin_pool_reserve_metadata_snap(struct thin_pool *pool)
{
	uint64_t held;
	int r = admin_begin(pool);

	if (!r)
		r = thin_md_get_metadata_snap(pool->md, &held);
	if (r)
		return r;
	if (held || pool->commit_op)
		return -EBUSY;
	/* It commits by itself, so it runs at a commit point of the commit cycle: after the
	 * data flush, with no mapping inserted since, so it makes nothing durable before the
	 * data it points to (dm flushes the data device before every commit). */
	pool->commit_op = thin_md_reserve_metadata_snap;
	return commit_sync(pool);
}

int thin_pool_release_metadata_snap(struct thin_pool *pool)
{
	int r = admin_begin(pool);

	return r ? r : admin_end(pool, thin_md_release_metadata_snap(pool->md));
}

int thin_pool_resize_data(struct thin_pool *pool)
{
	uint64_t nr, have;
	int r = admin_begin(pool);

	if (r)
		return r;
	r = data_geometry(pool->data, pool->block_bytes / SECTOR, &nr);
	if (!r)
		r = thin_md_get_data_dev_size(pool->md, &have);
	if (r)
		return r;
	if (nr < have)
		return -EINVAL;
	if (nr == have)
		return 0;
	pool->low_water_reached = false;
	return admin_end(pool, thin_md_resize_data_dev(pool->md, nr));
}

void thin_pool_set_no_space(struct thin_pool *pool, bool error_if_no_space, uint32_t timeout_ms)
{
	pool->o.error_if_no_space = error_if_no_space;
	pool->o.no_space_timeout_ms = timeout_ms;
	/* The timer is judged again (from no_space_since) at the next poll. */
	pool->no_space_timed_out = false;
}

/*----------------------------------------------------------------*/
/* Status */

int thin_pool_get_status(struct thin_pool *pool, struct thin_pool_status *out)
{
	uint64_t mfree, dfree;
	int r;

	memset(out, 0, sizeof(*out));
	out->mode = pool->mode;
	out->data_block_sectors = pool->block_bytes / SECTOR;
	out->needs_check = thin_md_needs_check(pool->md);
	out->discard_passdown = pool->passdown;
	out->zero_new_blocks = pool->o.zero_new_blocks;
	out->error_if_no_space = no_space_errors(pool);
	out->no_space_timeout_ms = pool->o.no_space_timeout_ms;
	out->no_space_timed_out = pool->no_space_timed_out;
	out->queued_for_space = pool->parked_ios;
	out->low_water_blocks = pool->o.low_water_blocks;
	out->low_water_reached = pool->low_water_reached;
	out->open_volumes = pool->nr_vols;
	out->requests_in_flight = pool->requests;
	if (pool->md) {
		struct thin_md_cache_info ci;

		thin_md_cache_info(pool->md, &ci);
		out->meta_cache_blocks = ci.capacity;
		out->meta_cache_bytes = (uint64_t)ci.capacity * ci.bytes_per_block;
		out->meta_cache_hits = ci.hits;
		out->meta_cache_misses = ci.misses;
	}
	if (pool->mode == THIN_POOL_FAIL)
		return 0;
	r = thin_md_get_transaction_id(pool->md, &out->transaction_id);
	if (!r)
		r = thin_md_get_metadata_dev_size(pool->md, &out->meta_total);
	if (!r)
		r = thin_md_get_free_metadata_blocks(pool->md, &mfree);
	if (!r)
		r = thin_md_get_data_dev_size(pool->md, &out->data_total);
	if (!r)
		r = thin_md_get_free_data_blocks(pool->md, &dfree);
	if (!r)
		r = thin_md_get_metadata_snap(pool->md, &out->held_root);
	if (r)
		return r;
	out->meta_used = out->meta_total - MIN(mfree, out->meta_total);
	out->data_used = out->data_total - MIN(dfree, out->data_total);
	/* dm's calc_metadata_threshold. */
	out->meta_low_water_blocks = MIN(1024ull, out->meta_total / 4);
	return 0;
}

int thin_pool_status_line(struct thin_pool *pool, char *buf, size_t len)
{
	struct thin_pool_status s;
	char held[24];
	int r, n;

	if (pool->mode == THIN_POOL_FAIL) {
		n = snprintf(buf, len, "Fail");
		return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
	}
	r = thin_pool_get_status(pool, &s);
	if (r)
		return r;
	if (s.held_root)
		snprintf(held, sizeof(held), "%llu", (unsigned long long)s.held_root);
	else
		snprintf(held, sizeof(held), "-");
	n = snprintf(buf, len, "%llu %llu/%llu %llu/%llu %s %s %s %s %s %llu",
		     (unsigned long long)s.transaction_id, (unsigned long long)s.meta_used,
		     (unsigned long long)s.meta_total, (unsigned long long)s.data_used,
		     (unsigned long long)s.data_total, held,
		     s.mode == THIN_POOL_WRITE		     ? "rw"
		     : s.mode == THIN_POOL_OUT_OF_DATA_SPACE ? "out_of_data_space"
							     : "ro",
		     s.discard_passdown ? "discard_passdown" : "no_discard_passdown",
		     s.error_if_no_space ? "error_if_no_space" : "queue_if_no_space",
		     s.needs_check ? "needs_check" : "-",
		     (unsigned long long)s.meta_low_water_blocks);
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

struct check_ctx {
	void (*problem)(void *ctx, const char *msg);
	void (*progress)(void *ctx, uint64_t done, uint64_t total);
	void *ctx;
};

static void check_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct check_ctx *c = ctx;

	c->progress(c->ctx, done, total);
}

static void check_report(void *ctx, const char *line)
{
	struct check_ctx *c = ctx;

	if (c->problem)
		c->problem(c->ctx, line);
}

int thin_pool_check(struct thin_pool *pool,
		    void (*progress)(void *ctx, uint64_t done, uint64_t total),
		    void (*problem)(void *ctx, const char *msg), void *ctx)
{
	struct check_ctx c = { problem, progress, ctx };
	int r;

	if (progress)
		progress(ctx, 0, 1);
	r = thin_check_progress(pool->meta, check_report, progress ? check_progress : NULL, &c,
				NULL);
	return r == -EILSEQ ? -EUCLEAN : r;
}

/*----------------------------------------------------------------*/
/* Volumes */

int thin_volume_open(struct thin_pool *pool, thin_id_t id, uint64_t size, bool read_only,
		     struct thin_volume **out)
{
	struct thin_volume *vol;
	int r;

	if (size % SECTOR || !size)
		return -EINVAL;
	if (find_vol(pool, id))
		return -EBUSY;
	vol = calloc(1, sizeof(*vol));
	if (!vol)
		return -ENOMEM;
	r = thin_md_open_thin(pool->md, id, &vol->td);
	if (r) {
		free(vol);
		return r;
	}
	vol->pool = pool;
	vol->id = id;
	vol->size = size;
	snprintf(vol->name, sizeof(vol->name), "thin%llu", (unsigned long long)id);
	vol->bdev.ops = &vol_ops;
	vol->bdev.name = vol->name;
	vol->bdev.nr_blocks = size / SECTOR;
	vol->bdev.block_size = SECTOR;
	vol->bdev.read_only = read_only;
	vol->bdev.discard_zeroes = false; /* partial blocks are not unmapped */
	vol->bdev.byte_writes = true;	  /* BLKDEV_WRITE_BYTES: the ios are byte-granular */
	vol->bdev.seg_writes = true;	  /* segment lists: sliced per io, passed down */
	vol->next = pool->vols;
	pool->vols = vol;
	pool->nr_vols++;
	*out = vol;
	return 0;
}

void thin_volume_close(struct thin_volume *vol)
{
	struct thin_pool *pool;

	if (!vol)
		return;
	pool = vol->pool;
	/* A request still in flight after the bound keeps a pointer to @vol: leak it then. */
	if (WAIT_UNTIL(pool, !vol->in_flight))
		return;
	for (struct thin_volume **pp = &pool->vols; *pp; pp = &(*pp)->next) {
		if (*pp == vol) {
			*pp = vol->next;
			break;
		}
	}
	pool->nr_vols--;
	thin_md_close_thin(vol->td);
	free(vol);
}

struct blkdev *thin_volume_blkdev(struct thin_volume *vol)
{
	return &vol->bdev;
}

int thin_volume_resize(struct thin_volume *vol, uint64_t size)
{
	struct thin_pool *pool = vol->pool;
	uint64_t keep;
	int r;

	if (size % SECTOR || !size)
		return -EINVAL;
	if (vol->in_flight)
		return -EBUSY;
	if (size < vol->size) {
		r = admin_begin(pool);
		if (r)
			return r;
		keep = (size + pool->block_bytes - 1) / pool->block_bytes;
		r = thin_remove_range(vol->td, keep, UINT64_MAX >> 1);
		if (r) {
			metadata_failed(pool, r);
			return r;
		}
		pool->dirty = true;
		space_changed(pool);
	}
	vol->size = size;
	vol->bdev.nr_blocks = size / SECTOR;
	return 0;
}

static int add_extent(struct thin_extent *ext, unsigned max, unsigned *n, uint64_t len,
		      uint32_t flags)
{
	if (!len)
		return 0;
	if (*n && ext[*n - 1].flags == flags) {
		ext[*n - 1].length += len;
		return 0;
	}
	if (*n == max)
		return 1;
	ext[*n].length = len;
	ext[*n].flags = flags;
	(*n)++;
	return 0;
}

int thin_volume_extents(struct thin_volume *vol, uint64_t offset, uint64_t length,
			struct thin_extent *ext, unsigned max)
{
	uint64_t bb = vol->pool->block_bytes, pos = offset, end;
	unsigned n = 0;
	int r;

	if (!max || !length || offset >= vol->size)
		return -EINVAL;
	end = offset + MIN(length, vol->size - offset);
	while (pos < end) {
		uint64_t vb, ve, pb, mstart, mend;
		bool shared;

		r = thin_find_mapped_range(vol->td, pos / bb, (end + bb - 1) / bb, &vb, &ve, &pb,
					   &shared);
		if (r == -ENODATA) {
			add_extent(ext, max, &n, end - pos, 3);
			break;
		}
		if (r)
			return r;
		mstart = MAX(vb * bb, pos);
		mend = MIN(ve * bb, end);
		if (add_extent(ext, max, &n, mstart - pos, 3) ||
		    add_extent(ext, max, &n, mend - mstart, 0))
			break;
		pos = mend;
	}
	return n ? (int)n : -EIO;
}
