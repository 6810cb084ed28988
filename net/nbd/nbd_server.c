/* SPDX-License-Identifier: MIT */
/*
 * The NBD server state machine (see nbd_server.h for the transport contract and docs/nbd.md
 * for coverage). Layout follows nbdkit's: the handshake (fixed newstyle options) first, then
 * transmission, where every request goes validate_request() -> a small per-request state
 * machine over blkdev_submit()/blkdev_poll() -> one reply, and nbd_errno() is the one place
 * that turns -errno into an NBD error value.
 *
 * Invariants:
 *  - Nothing blocks. Input is consumed only while the connection has budget (requests and
 *    buffered bytes); output is a queue of segments the transport pulls.
 *  - A block-device completion only records its result and puts the request on its
 *    connection's ready list; requests are advanced from that list by run_ready(), so a
 *    device that completes inside blkdev_submit() (core/blkdev.c's synchronous fallback)
 *    never recurses, and a chunked operation (zeroing 4 GiB) is a loop, not a call chain.
 *  - Objects referenced by a request inside a device (its connection, the connection's
 *    export) are freed only by sweep(), never from a completion callback.
 */
#include "net/nbd/nbd_server.h"
#include "net/nbd/nbd_proto.h"
#include "core/base/poison.h"
#include "core/base/hash.h"
#include "core/base/perf.h"
#include "core/base/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define META_ALLOC_ID	1u	    /* base:allocation's context id */
#define META_DIRTY_ID	2u	    /* the selected qemu:dirty-bitmap:NAME's */
#define MAX_BITMAPS	1024u	    /* names asked of an export's bitmap_name() */
#define MAX_OPT_DATA	(64 * 1024) /* larger options are drained and refused TOO_BIG */
#define ZERO_BUF_BYTES	(1024 * 1024)
#define ZERO_SCAN_GRAIN 4096u /* READ: all-zero 4 KiB pieces become hole chunks */
#define MAX_EXTENTS	256u  /* extents per BLOCK_STATUS reply */
#define PREFERRED_BLOCK 4096u
#define DEFAULT_PAYLOAD (64u * 1024 * 1024)
/* Request buffers held by all connections together (docs/nbd.md "Limits"). */
#define DEFAULT_SERVER_BYTES ((size_t)1024 * 1024 * 1024)
/* TLS: plaintext taken from the session at a time (one record's worth), and the ciphertext
 * queued before replies stop being encrypted until the transport has sent some. */
#define TLS_PT_BYTES   (16u * 1024)
#define TLS_WOUT_LIMIT (256u * 1024)
/* WRITE payloads this large make the transport receive headers alone (nbd_conn_hdr_wanted()). */
#define DIRECT_MIN_BYTES (64u * 1024)
/*
 * Borrowed input (nbd_conn_feed_ref()): a WRITE's payload kept as the transport's pieces, in
 * a list of one slot per KiB of payload plus a few (a 256 KiB WRITE in 1460-byte TCP
 * segments is 180 pieces), at most BORROW_MAX_SEGS. A payload in more pieces than that
 * (a client sending tiny segments, or a WRITE of several MiB) is copied from there on.
 */
#define BORROW_SEGS(len)  ((uint32_t)MIN((len) / 1024 + 8, (size_t)BORROW_MAX_SEGS))
#define BORROW_MAX_SEGS	  4096u
#define BORROW_SLOT_BYTES (sizeof(struct blkdev_seg) + sizeof(void *))

/*
 * Holds of transport pieces across the server. A held piece pins a whole receive buffer,
 * and the firmware's receive path has about 1,800 of them (virtio-net's 768 spares beyond
 * its ring, lwIP's 1,024 pool pbufs for the frames it copies): if WRITEs still receiving
 * their payload held them all, no frame could arrive to complete any of them and the
 * appliance would stop receiving. Past this many, payloads are copied (QD4 of 256 KiB in
 * 1460-byte segments holds 720).
 */
#define BORROW_MAX_HOLDS 1024u
/*
 * Free lists (docs/nbd.md "Memory"): request buffers in size classes of a quarter of a power
 * of two from 4 KiB (4, 5, 6, 7, 8, 10, 12, 14, 16 KiB, ...; at most a quarter wasted), for
 * sizes below 2^32; small output records with room for OUT_SMALL inline bytes.
 */
#define BUF_MIN_SHIFT 12
#define BUF_CLASSES   ((32 - BUF_MIN_SHIFT) * 4 + 1)
#define OUT_SMALL     32 /* the largest reply header: a hole chunk, 20 + 12 bytes */

/* ---- Objects ----------------------------------------------------------------------------- */

struct nbd_export {
	struct nbd_export *next;
	struct nbd_export *hnext; /* the name table's chain (live exports only) */
	char *name;
	char *description;
	struct blkdev *dev;
	bool read_only;
	bool tls_only;
	bool removed;	 /* no longer in the table; freed when refs drop to 0 */
	unsigned refs;	 /* connections in transmission on it */
	unsigned in_dev; /* requests inside dev */
	unsigned polled; /* the server's poll pass that last polled dev */
	int (*extents)(void *ctx, uint64_t offset, uint64_t length, struct nbd_extent *ext,
		       unsigned max);
	int (*bitmap_name)(void *ctx, unsigned idx, char *buf, size_t len);
	int (*dirty)(void *ctx, const char *bitmap, uint64_t offset, uint64_t length,
		     struct nbd_extent *ext, unsigned max);
	void (*release)(void *ctx, struct blkdev *dev);
	void *ctx;
	struct net_prefix *allow; /* NULL (nallow 0): everyone */
	unsigned nallow;
	uint64_t refused;
};

/* One segment of queued output. */
struct nbd_out {
	struct nbd_out *next;
	const uint8_t *data;
	size_t len;
	void *owned;	   /* a request buffer, back to the free lists once the segment is sent */
	size_t owned_size; /* bytes of budget it held */
	bool small;	   /* from the server's free list (OUT_SMALL inline bytes), not malloc */
	uint8_t inl[];
};

enum req_stage {
	RS_START,  /* parsed (and payload received): decide the first device operation */
	RS_IO,	   /* a data operation completed (io_rc): next chunk, FUA or reply */
	RS_FUA,	   /* the FUA flush completed */
	RS_SUBMIT, /* the device queue was full: submit breq again */
	/* read-modify-write: the partial block was read: patch it, write it back */
	RS_EDGE_READ,
	/* read-modify-write: the partial block was written: the next one, or the middle */
	RS_EDGE_WRITE,
};

/* A write's place in the server's write list (read-modify-write ordering, below). */
enum wl_state {
	WL_NONE,   /* not in the list */
	WL_WAIT,   /* in the list, waiting for an earlier conflicting write */
	WL_ACTIVE, /* in the list, may use the device */
};

enum io_mode {
	IO_NONE,
	IO_SINGLE, /* one device operation covers the request */
	IO_ZERO,   /* write zero buffers, chunk by chunk */
};

struct nbd_req {
	struct nbd_conn *conn;
	struct nbd_req *next;
	struct blkdev_req breq;
	uint64_t cookie;
	uint64_t offset;
	uint32_t length;
	uint16_t type;
	uint16_t flags;
	enum req_stage stage;
	enum req_stage retry_stage; /* RS_SUBMIT: the stage to resume */
	enum io_mode mode;
	int io_rc;	 /* result of the last device operation */
	bool in_dev;	 /* breq is inside the device */
	uint8_t *buf;	 /* READ bounce / WRITE payload */
	size_t buf_size; /* bytes of buf (held in the connection's budget) */
	/*
	 * A borrowed WRITE payload (buf NULL): the transport's pieces, each held once
	 * (nbd_input_ops.hold) and released once when the request is freed. segs and refs
	 * share one allocation of seg_cap slots (BORROW_SLOT_BYTES each), from the free lists.
	 */
	struct blkdev_seg *segs;
	void **refs;
	uint32_t nsegs, seg_cap;
	/*
	 * A WRITE payload the transport holds (nbd_conn_direct_handle_done()): handle goes to
	 * the device with the WRITE; hops->release() runs once when the request is freed.
	 */
	const struct nbd_handle_ops *hops;
	int handle;
	uint64_t blk; /* IO_ZERO: next block and blocks left (bytes when zbytes) */
	uint64_t nblk;
	bool zbytes; /* IO_ZERO over BLKDEV_WRITE_BYTES (a device with byte_writes) */
	/*
	 * Read-modify-write by the server, for a device without byte_writes: the partial blocks
	 * at the ends (edge[0..nedge)) are each read into ebuf, patched and written back, then
	 * the whole blocks between them go as an aligned request would. Ordered by the write list.
	 */
	uint64_t edge[2];
	unsigned nedge, edge_i;
	uint8_t *ebuf; /* a block: from the buffer free lists */
	uint32_t ebuf_size;
	enum wl_state wl;
	bool excl; /* a read-modify-write: exclusive over its edge blocks */
	struct nbd_req *wl_prev, *wl_next;
	struct blkdev *wl_dev;
	uint64_t wl_first, wl_end; /* blocks touched, rounded outward */
};

enum conn_state {
	CS_CLIENT_FLAGS,
	CS_OPT_HDR,
	CS_OPT_DATA,
	CS_OPT_SKIP,
	CS_REQ_HDR,
	CS_REQ_DATA,
	CS_REQ_SKIP,
	CS_REQ_WAIT, /* a request header (in hdr) waits for buffer memory (buffer_fits()) */
	CS_CLOSING,
};

struct nbd_conn {
	struct nbd_server *srv;
	struct nbd_conn *next;
	struct nbd_peer peer;
	enum conn_state state;
	bool dead;	   /* the transport is gone */
	bool input_closed; /* end of input seen */
	bool no_zeroes;
	bool structured;
	bool meta_alloc;  /* base:allocation selected ... */
	char *meta_name;  /* ... for this export name */
	char *meta_dirty; /* qemu:dirty-bitmap:NAME selected (NAME), for meta_name too */
	bool export_gone; /* our export was removed: answer ESHUTDOWN */
	unsigned options;
	struct nbd_export *exp; /* in transmission (holds a ref) */

	uint8_t hdr[28]; /* the header being received */
	size_t hdr_len;
	uint32_t opt; /* option being received */
	uint32_t optlen;
	uint8_t *optbuf;
	size_t optgot;
	uint64_t skip_left; /* bytes to drain (CS_OPT_SKIP, CS_REQ_SKIP) */
	int skip_err;	    /* CS_REQ_SKIP: the error to answer once drained */
	const char *skip_msg;
	uint64_t skip_cookie;
	size_t wait_size;    /* CS_REQ_WAIT: the buffer it waits for */
	struct nbd_req *cur; /* CS_REQ_DATA: the WRITE receiving its payload */
	size_t cur_got;
	/* Borrowed input: set by the first nbd_conn_feed_ref(); then WRITE payloads are
	 * borrowed, their buffers allocated only for a copy. in_ref: the piece being fed. */
	const struct nbd_input_ops *in_ops;
	void *in_ref;
	bool big_write; /* the last request header was a WRITE of >= DIRECT_MIN_BYTES */

	struct nbd_req *ready, *ready_tail; /* requests with work to do */
	struct nbd_req *retry;		    /* submissions refused with -EAGAIN */
	unsigned nreqs;			    /* requests alive (not yet answered) */
	unsigned in_dev;		    /* of which inside a device */
	size_t held;			    /* budget: bytes of request buffers alive */

	struct nbd_out *out, *out_tail; /* the protocol's output (plaintext under TLS) */
	size_t out_bytes;

	/*
	 * TLS. From STARTTLS's ACK on, @tls is the session: the transport's bytes are @wout (the
	 * plain bytes queued up to and including the ACK, then ciphertext), received bytes go
	 * through the session into @pt, and the protocol reads @pt.
	 */
	enum nbd_tls_mode tls_mode; /* the server's mode when the connection was made */
	void *tls;
	bool tls_dead;	    /* the session failed or the peer closed it */
	bool tls_notified;  /* close_notify queued */
	const uint8_t *win; /* ciphertext being offered to the session (bio recv's source) */
	size_t win_len, win_pos;
	uint8_t *pt;
	size_t pt_start, pt_end;
	struct nbd_out *wout, *wout_tail;
	size_t wout_bytes;

	uint64_t bytes_read, bytes_written;
};

struct nbd_server {
	struct nbd_limits lim;
	struct nbd_export *exports; /* table order, removed ones included until freed */
	unsigned pass;		    /* nbd_server_poll() calls, for nbd_export.polled */
	unsigned nremoved; /* removed exports still in the list: sweep() walks it only then */
	/*
	 * Live exports by name (chains through hnext; hcap buckets, a power of two, grown with
	 * nlive) and the list's tail (set by nbd_server_create(), kept by sweep()): adding the
	 * 4,096th export or finding one by name must not walk the whole list, or starting n
	 * exports costs n^2 string compares.
	 */
	struct nbd_export **htab;
	unsigned hcap, nlive;
	struct nbd_export **tail;
	struct nbd_conn *conns; /* live and dead (until their requests drain) */
	unsigned nconns;	/* live ones */
	uint8_t *zero_buf;	/* ZERO_BUF_BYTES of zeroes, allocated on first use */
	struct nbd_tls_config tls;
	void (*log)(void *ctx, const char *line);
	void *log_ctx;
	uint64_t refused_cap, refused_full, refused_policy;
	/*
	 * Writes in flight on devices without byte_writes, all connections, in arrival order,
	 * and how many of them are read-modify-writes (nothing waits while none is).
	 */
	struct nbd_req *wl_head, *wl_tail;
	unsigned wl_excl;
	struct net_addr last_refused; /* the address of the last refusal ... */
	uint64_t refused_in_row;      /* ... and how many in a row were its */
	size_t held; /* request buffers of every connection (lim.max_server_bytes) */
	/* Borrowed pieces held by every connection (BORROW_MAX_HOLDS). */
	size_t holds;
	/*
	 * Free lists, so that a connection in steady state allocates nothing per request: freed
	 * request buffers by size class (@cached bytes in all; in use and cached together
	 * within lim.max_server_bytes, see buf_get()),
	 * request records and small output records (each list at most REQ_CACHE_MAX /
	 * OUT_CACHE_MAX long). Filled as requests finish, emptied by nbd_server_destroy().
	 * A class keeps its buffers' addresses in an array beside them, not in the buffers:
	 * taking one touches no memory of it. A link kept in the buffer itself made the
	 * firmware's nbd-parse stage 4-10 times dearer under TCG (5-15 thousand cycles more per
	 * request; a software TLB fill for a page not touched for a while, we think).
	 */
	struct buf_stack {
		void **v;
		unsigned n, cap; /* the array grows (doubling) only with the high-water mark */
	} free_bufs[BUF_CLASSES];
	size_t cached;
	struct nbd_req *free_reqs;
	unsigned nfree_reqs;
	struct nbd_out *free_outs;
	unsigned nfree_outs;
};

/* ---- Error mapping ----------------------------------------------------------------------- */

/*
 * The only -errno -> NBD error conversion (nbdkit's nbd_errno). ENOTSUP is reserved by the
 * spec for FAST_ZERO; elsewhere it becomes EINVAL. Unknown errors are EIO.
 */
static uint32_t nbd_errno(int rc, uint16_t flags)
{
	int e = -rc;

	if (e == EPERM || e == EROFS)
		return NBD_EPERM;
	if (e == ENOSPC || e == EFBIG || e == EDQUOT)
		return NBD_ENOSPC;
	if (e == EINVAL || e == ERANGE)
		return NBD_EINVAL;
	if (e == ENOMEM)
		return NBD_ENOMEM;
	if (e == EOVERFLOW)
		return NBD_EOVERFLOW;
	if (e == ESHUTDOWN)
		return NBD_ESHUTDOWN;
	if (e == ENOTSUP || e == EOPNOTSUPP)
		return (flags & NBD_CMD_FLAG_FAST_ZERO) ? NBD_ENOTSUP : NBD_EINVAL;
	return NBD_EIO;
}

/* ---- Free lists ----------------------------------------------------------------------- */

/* Request records and small output records kept for reuse: far more than one connection's
 * requests in flight (its replies' records) need, and a few hundred KiB at most. */
#define REQ_CACHE_MAX 1024u
#define OUT_CACHE_MAX 4096u

/* The class of a @size-byte buffer and its size; BUF_CLASSES for sizes not cached. */
static unsigned buf_class(size_t size, size_t *class_size)
{
	unsigned b, q;
	size_t step;

	if (size <= ((size_t)1 << BUF_MIN_SHIFT)) {
		*class_size = (size_t)1 << BUF_MIN_SHIFT;
		return 0;
	}
	if ((uint64_t)size > ((uint64_t)1 << 32)) {
		*class_size = size;
		return BUF_CLASSES;
	}
	/* 2^b < size <= 2^(b+1); q quarters of 2^b above 2^b (1..4). */
	b = 63u - (unsigned)__builtin_clzll((unsigned long long)size - 1);
	step = (size_t)1 << (b - 2);
	q = (unsigned)((size - ((size_t)1 << b) + step - 1) / step);
	*class_size = ((size_t)1 << b) + q * step;
	return (b - BUF_MIN_SHIFT) * 4 + q;
}

/* The size of class @k (< BUF_CLASSES): buf_class()'s inverse. */
static size_t buf_class_size(unsigned k)
{
	unsigned b = BUF_MIN_SHIFT + (k - 1) / 4, q = (k - 1) % 4 + 1;

	if (!k)
		return (size_t)1 << BUF_MIN_SHIFT;
	return ((size_t)1 << b) + q * ((size_t)1 << (b - 2));
}

/* Give cached buffers back to the heap, largest classes first, until @want bytes are left. */
static void buf_trim(struct nbd_server *srv, size_t want)
{
	for (unsigned k = BUF_CLASSES; k-- > 0 && srv->cached > want;) {
		size_t cs = buf_class_size(k);
		struct buf_stack *st = &srv->free_bufs[k];

		while (st->n && srv->cached > want) {
			void *b = st->v[--st->n];

			srv->cached -= cs;
			UNPOISON(b, cs);
			free(b);
		}
	}
}

/*
 * A buffer of at least @size bytes (uninitialised): a cached one of its class, else a new
 * one; cached buffers of other sizes are let go first when keeping them and the new one
 * would pass the server's limit. NULL when out of memory.
 */
static void *buf_get(struct nbd_server *srv, size_t size)
{
	size_t cs;
	unsigned k = buf_class(size, &cs);
	void *b;

	if (k < BUF_CLASSES && srv->free_bufs[k].n) {
		b = srv->free_bufs[k].v[--srv->free_bufs[k].n];
		srv->cached -= cs;
		UNPOISON(b, cs);
		return b;
	}
	if (srv->cached && srv->held + srv->cached + cs > srv->lim.max_server_bytes)
		buf_trim(srv, srv->lim.max_server_bytes > srv->held + cs
				  ? srv->lim.max_server_bytes - srv->held - cs
				  : 0);
	return malloc(cs);
}

/* Return a buffer from buf_get(srv, @size) (NULL: nothing). */
static void buf_put(struct nbd_server *srv, void *b, size_t size)
{
	size_t cs;
	unsigned k = buf_class(size, &cs);
	struct buf_stack *st;

	if (!b)
		return;
	if (k >= BUF_CLASSES || srv->cached + cs > srv->lim.max_server_bytes) {
		free(b);
		return;
	}
	st = &srv->free_bufs[k];
	if (st->n == st->cap) {
		unsigned cap = st->cap ? 2 * st->cap : 16;
		void **v = realloc(st->v, cap * sizeof(*v));

		if (!v) {
			free(b);
			return;
		}
		st->v = v;
		st->cap = cap;
	}
	st->v[st->n++] = b;
	srv->cached += cs;
	POISON(b, cs);
}

/* A zeroed request record. */
static struct nbd_req *req_get(struct nbd_server *srv)
{
	struct nbd_req *r = srv->free_reqs;

	if (!r)
		return calloc(1, sizeof(*r));
	UNPOISON(r, sizeof(*r));
	srv->free_reqs = r->next;
	srv->nfree_reqs--;
	memset(r, 0, sizeof(*r));
	return r;
}

static void req_put(struct nbd_server *srv, struct nbd_req *r)
{
	if (srv->nfree_reqs >= REQ_CACHE_MAX) {
		free(r);
		return;
	}
	r->next = srv->free_reqs;
	srv->free_reqs = r;
	srv->nfree_reqs++;
	POISON(r, sizeof(*r));
}

/* An output record with room for @len inline bytes; small ones come from the free list. */
static struct nbd_out *out_get(struct nbd_server *srv, size_t len)
{
	struct nbd_out *o;

	if (len > OUT_SMALL) {
		o = malloc(sizeof(*o) + len);
		if (o)
			o->small = false;
		return o;
	}
	o = srv->free_outs;
	if (o) {
		UNPOISON(o, sizeof(*o) + OUT_SMALL);
		srv->free_outs = o->next;
		srv->nfree_outs--;
	} else {
		o = malloc(sizeof(*o) + OUT_SMALL);
		if (!o)
			return NULL;
	}
	o->small = true;
	return o;
}

static void out_put(struct nbd_server *srv, struct nbd_out *o)
{
	if (!o->small || srv->nfree_outs >= OUT_CACHE_MAX) {
		free(o);
		return;
	}
	o->next = srv->free_outs;
	srv->free_outs = o;
	srv->nfree_outs++;
	POISON(o, sizeof(*o) + OUT_SMALL);
}

/* nbd_server_destroy(): everything on the free lists goes back to the heap. */
static void free_lists_release(struct nbd_server *srv)
{
	buf_trim(srv, 0);
	for (unsigned k = 0; k < BUF_CLASSES; k++)
		free(srv->free_bufs[k].v);
	while (srv->free_reqs) {
		struct nbd_req *r = srv->free_reqs;

		UNPOISON(r, sizeof(*r));
		srv->free_reqs = r->next;
		free(r);
	}
	while (srv->free_outs) {
		struct nbd_out *o = srv->free_outs;

		UNPOISON(o, sizeof(*o) + OUT_SMALL);
		srv->free_outs = o->next;
		free(o);
	}
	srv->nfree_reqs = srv->nfree_outs = 0;
}

/* ---- Output queue ------------------------------------------------------------------------ */

static void req_free(struct nbd_req *r);
static void wl_release(struct nbd_req *r);

/* Request buffer bytes freed: the connection's budget and the server's. */
static void held_sub(struct nbd_conn *c, size_t n)
{
	c->held -= n;
	c->srv->held -= n;
}

/* Enter the closing state: stop reading; finish when nothing is in flight or queued. */
static void conn_close(struct nbd_conn *c)
{
	c->state = CS_CLOSING;
	/* A WRITE still receiving its payload can never run now: drop it (found by fuzzing). */
	if (c->cur) {
		req_free(c->cur);
		c->cur = NULL;
	}
}

static void out_append(struct nbd_conn *c, struct nbd_out *o)
{
	o->next = NULL;
	if (c->out_tail)
		c->out_tail->next = o;
	else
		c->out = o;
	c->out_tail = o;
	c->out_bytes += o->len;
}

/* Queue @len bytes copied from @data (may be NULL: zeroes); NULL (connection closing) on ENOMEM. */
static uint8_t *out_bytes(struct nbd_conn *c, size_t len)
{
	struct nbd_out *o = out_get(c->srv, len);

	if (!o) {
		/* Out of memory mid-reply: the stream can no longer be framed. */
		conn_close(c);
		return NULL;
	}
	o->data = o->inl;
	o->len = len;
	o->owned = NULL;
	o->owned_size = 0;
	memset(o->inl, 0, len);
	out_append(c, o);
	return o->inl;
}

/* Queue @len bytes that live in a request buffer; @owned (if set) is freed after sending. */
static void out_ref(struct nbd_conn *c, const uint8_t *data, size_t len, void *owned,
		    size_t owned_size)
{
	struct nbd_out *o = out_get(c->srv, 0);

	if (!o) {
		conn_close(c);
		if (owned) {
			buf_put(c->srv, owned, owned_size);
			held_sub(c, owned_size);
		}
		return;
	}
	o->data = data;
	o->len = len;
	o->owned = owned;
	o->owned_size = owned_size;
	out_append(c, o);
}

static void tls_pump_out(struct nbd_conn *c);

size_t nbd_conn_output(struct nbd_conn *c, size_t skip, struct nbd_iov *iov, unsigned max,
		       unsigned *n)
{
	struct nbd_out *o;
	size_t total = 0;
	unsigned i = 0;

	if (c->tls)
		tls_pump_out(c);
	for (o = c->tls ? c->wout : c->out; o && i < max; o = o->next) {
		if (skip >= o->len) {
			skip -= o->len;
			continue;
		}
		iov[i].base = o->data + skip;
		iov[i].len = o->len - skip;
		total += iov[i].len;
		skip = 0;
		i++;
	}
	*n = i;
	return total;
}

/* True when the session owes the peer its close_notify (queued by tls_pump_out()). */
static bool tls_notify_owed(const struct nbd_conn *c)
{
	return c->tls && !c->tls_dead && !c->tls_notified && c->state == CS_CLOSING &&
	       c->nreqs == 0 && c->out_bytes == 0;
}

size_t nbd_conn_output_pending(const struct nbd_conn *c)
{
	if (!c->tls)
		return c->out_bytes;
	/* Plaintext counts: the transport asks for output, and nbd_conn_output() encrypts it. */
	return c->wout_bytes + c->out_bytes + (tls_notify_owed(c) ? 1 : 0);
}

unsigned nbd_conn_requests(const struct nbd_conn *c)
{
	return c->nreqs;
}

/* Release the first @n bytes of a queue. */
static void queue_done(struct nbd_conn *c, struct nbd_out **head, struct nbd_out **tail,
		       size_t *bytes, size_t n)
{
	/* Zero-length segments (buffer owners) at the head go as soon as they are reached. */
	while (*head) {
		struct nbd_out *o = *head;
		size_t k = MIN(n, o->len);

		if (k) {
			o->data += k;
			o->len -= k;
			*bytes -= k;
			n -= k;
		}
		if (o->len)
			break;
		*head = o->next;
		if (!*head)
			*tail = NULL;
		if (o->owned) {
			buf_put(c->srv, o->owned, o->owned_size);
			held_sub(c, o->owned_size);
		}
		out_put(c->srv, o);
	}
}

static void out_done(struct nbd_conn *c, size_t n)
{
	queue_done(c, &c->out, &c->out_tail, &c->out_bytes, n);
}

void nbd_conn_output_done(struct nbd_conn *c, size_t n)
{
	if (c->tls)
		queue_done(c, &c->wout, &c->wout_tail, &c->wout_bytes, n);
	else
		out_done(c, n);
}

/* ---- Handshake --------------------------------------------------------------------------- */

/* ---- Who may connect ---------------------------------------------------------------------- */

/* Log a refusal of @peer, unless it is one more of a long run from the same address. */
static void log_refusal(struct nbd_server *srv, const struct nbd_peer *peer, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void log_refusal(struct nbd_server *srv, const struct nbd_peer *peer, const char *fmt, ...)
{
	char line[200], addr[NET_ADDR_TEXT_MAX];
	uint64_t n;
	va_list ap;
	int k;

	if (net_addr_equal(&srv->last_refused, &peer->addr)) {
		n = ++srv->refused_in_row;
	} else {
		srv->last_refused = peer->addr;
		n = srv->refused_in_row = 1;
	}
	if (!srv->log || (n > 4 && (n & (n - 1))))
		return;
	net_addr_format(&peer->addr, addr, sizeof(addr));
	k = snprintf(line, sizeof(line),
		     peer->addr.family == NET_AF_INET6 ? "nbd: refused [%s]:%u: "
						       : "nbd: refused %s:%u: ",
		     addr, peer->port);
	if (k < 0 || (size_t)k >= sizeof(line))
		return;
	va_start(ap, fmt);
	vsnprintf(line + k, sizeof(line) - (size_t)k, fmt, ap);
	va_end(ap);
	if (n > 4) {
		size_t l = strlen(line);

		snprintf(line + l, sizeof(line) - l, " (%llu in a row from this address)",
			 (unsigned long long)n);
	}
	srv->log(srv->log_ctx, line);
}

/* May connection @c use export @e? */
static bool export_allows(const struct nbd_export *e, const struct nbd_conn *c)
{
	if (!e->nallow)
		return true;
	for (unsigned i = 0; i < e->nallow; i++)
		if (net_prefix_match(&e->allow[i], &c->peer.addr))
			return true;
	return false;
}

/* @c asked for @e, which its allow list keeps from @c: count it and say so. */
static void refuse_export(struct nbd_conn *c, struct nbd_export *e)
{
	e->refused++;
	c->srv->refused_policy++;
	log_refusal(c->srv, &c->peer, "export '%s': the address is not in its allow list", e->name);
}

/* The live export named @name (@len bytes), or NULL. */
static struct nbd_export *lookup_live(const struct nbd_server *srv, const uint8_t *name, size_t len)
{
	struct nbd_export *e;

	if (!srv->hcap)
		return NULL;
	for (e = srv->htab[hash_bytes(name, len) & (srv->hcap - 1)]; e; e = e->hnext)
		if (strlen(e->name) == len && !memcmp(e->name, name, len))
			return e;
	return NULL;
}

/* Put live export @e in the name table, doubling it first when it is half full. */
static int table_insert(struct nbd_server *srv, struct nbd_export *e)
{
	struct nbd_export **b;

	if (2 * (srv->nlive + 1) > srv->hcap) {
		unsigned cap = srv->hcap ? 2 * srv->hcap : 64;
		struct nbd_export **t = calloc(cap, sizeof(*t));

		if (!t)
			return -ENOMEM;
		for (struct nbd_export *x = srv->exports; x; x = x->next) {
			if (x->removed)
				continue;
			b = &t[hash_bytes((const uint8_t *)x->name, strlen(x->name)) & (cap - 1)];
			x->hnext = *b;
			*b = x;
		}
		free(srv->htab);
		srv->htab = t;
		srv->hcap = cap;
	}
	b = &srv->htab[hash_bytes((const uint8_t *)e->name, strlen(e->name)) & (srv->hcap - 1)];
	e->hnext = *b;
	*b = e;
	srv->nlive++;
	return 0;
}

/* Take live export @e out of the name table (it stays in the list until swept). */
static void table_remove(struct nbd_server *srv, struct nbd_export *e)
{
	struct nbd_export **b =
	    &srv->htab[hash_bytes((const uint8_t *)e->name, strlen(e->name)) & (srv->hcap - 1)];

	for (; *b; b = &(*b)->hnext) {
		if (*b == e) {
			*b = e->hnext;
			srv->nlive--;
			return;
		}
	}
}

static struct nbd_export *find_export(struct nbd_server *srv, const uint8_t *name, size_t len)
{
	struct nbd_export *e;

	if (len)
		return lookup_live(srv, name, len);
	/* The empty name selects the default export: the first one added. */
	for (e = srv->exports; e; e = e->next)
		if (!e->removed)
			return e;
	return NULL;
}

/*
 * A TLS-only export on a plain connection: the reply that refuses it (0 when allowed). In
 * NOTLS mode NBD_REP_ERR_TLS_REQD must never be sent (proto.md), so it is ERR_POLICY then.
 */
static uint32_t export_refusal(const struct nbd_conn *c, const struct nbd_export *e)
{
	if (!e->tls_only || c->tls)
		return 0;
	return c->tls_mode == NBD_TLS_OFF ? NBD_REP_ERR_POLICY : NBD_REP_ERR_TLS_REQD;
}

static bool export_ro(const struct nbd_export *e)
{
	return e->read_only || e->dev->read_only;
}

static uint64_t export_size(const struct nbd_export *e)
{
	return e->dev->nr_blocks * e->dev->block_size;
}

static uint16_t export_flags(const struct nbd_conn *c, const struct nbd_export *e)
{
	/*
	 * CAN_MULTI_CONN: every connection to an export reaches the same struct blkdev, and a
	 * device flush covers every write it has completed, whoever sent it.
	 */
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
		     NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN;

	if (export_ro(e))
		f |= NBD_FLAG_READ_ONLY;
	else
		f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
	/* DF only means something with structured replies, and must not be set without. */
	if (c->structured)
		f |= NBD_FLAG_SEND_DF;
	return f;
}

static void opt_reply(struct nbd_conn *c, uint32_t type, const void *data, size_t len)
{
	uint8_t *p = out_bytes(c, 20 + len);

	if (!p)
		return;
	nbd_put_be64(p, NBD_REP_MAGIC);
	nbd_put_be32(p + 8, c->opt);
	nbd_put_be32(p + 12, type);
	nbd_put_be32(p + 16, (uint32_t)len);
	if (len)
		memcpy(p + 20, data, len);
}

/* An error reply with a human-readable message (allowed for every NBD_REP_ERR_*). */
static void opt_error(struct nbd_conn *c, uint32_t type, const char *msg)
{
	opt_reply(c, type, msg, strlen(msg));
}

static void opt_info_reply(struct nbd_conn *c, uint16_t info, const void *data, size_t len)
{
	uint8_t *p = out_bytes(c, 20 + 2 + len);

	if (!p)
		return;
	nbd_put_be64(p, NBD_REP_MAGIC);
	nbd_put_be32(p + 8, c->opt);
	nbd_put_be32(p + 12, NBD_REP_INFO);
	nbd_put_be32(p + 16, (uint32_t)(2 + len));
	nbd_put_be16(p + 20, info);
	if (len)
		memcpy(p + 22, data, len);
}

static void enter_transmission(struct nbd_conn *c, struct nbd_export *e)
{
	e->refs++;
	c->exp = e;
	c->state = CS_REQ_HDR;
	c->hdr_len = 0;
}

static void opt_export_name(struct nbd_conn *c, const uint8_t *d, uint32_t len)
{
	struct nbd_export *e = find_export(c->srv, d, len);
	uint8_t *p;

	/* EXPORT_NAME has no way to report an error: the spec says to drop the connection. */
	if (!e || export_refusal(c, e)) {
		conn_close(c);
		return;
	}
	if (!export_allows(e, c)) {
		refuse_export(c, e);
		conn_close(c);
		return;
	}
	p = out_bytes(c, 10 + (c->no_zeroes ? 0 : NBD_EXPORT_NAME_ZEROES));
	if (!p)
		return;
	nbd_put_be64(p, export_size(e));
	nbd_put_be16(p + 8, export_flags(c, e));
	/* EXPORT_NAME never negotiates meta contexts for a different export (proto.md). */
	enter_transmission(c, e);
}

static void opt_list(struct nbd_conn *c, uint32_t len)
{
	struct nbd_export *e;

	if (len) {
		opt_error(c, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
		return;
	}
	for (e = c->srv->exports; e; e = e->next) {
		size_t nl = strlen(e->name), dl = strlen(e->description);
		uint8_t *p;

		/*
		 * TLS-only exports are not listed to plain connections (proto.md allows it), and
		 * an export the client's address may not use is not disclosed to it.
		 */
		if (e->removed || export_refusal(c, e) || !export_allows(e, c))
			continue;
		p = out_bytes(c, 20 + 4 + nl + dl);
		if (!p)
			return;
		nbd_put_be64(p, NBD_REP_MAGIC);
		nbd_put_be32(p + 8, c->opt);
		nbd_put_be32(p + 12, NBD_REP_SERVER);
		nbd_put_be32(p + 16, (uint32_t)(4 + nl + dl));
		nbd_put_be32(p + 20, (uint32_t)nl);
		memcpy(p + 24, e->name, nl);
		memcpy(p + 24 + nl, e->description, dl);
	}
	opt_reply(c, NBD_REP_ACK, NULL, 0);
}

/* NBD_OPT_INFO and NBD_OPT_GO: u32 namelen, name, u16 n, n x u16 info requests. */
static void opt_info_go(struct nbd_conn *c, const uint8_t *d, uint32_t len, bool go)
{
	bool want_name = false, want_desc = false;
	struct nbd_export *e;
	uint32_t namelen, i;
	uint16_t nreq;
	uint8_t buf[14];

	if (len < 6 || (namelen = nbd_get_be32(d)) > len - 6) {
		opt_error(c, NBD_REP_ERR_INVALID, "option data too short");
		return;
	}
	nreq = nbd_get_be16(d + 4 + namelen);
	if (len != 4 + namelen + 2 + 2u * nreq) {
		opt_error(c, NBD_REP_ERR_INVALID, "option length does not match its contents");
		return;
	}
	e = find_export(c->srv, d + 4, namelen);
	if (!e) {
		opt_error(c, NBD_REP_ERR_UNKNOWN, "no such export");
		return;
	}
	/* The TLS requirement first: a plain connection learns nothing about the allow list. */
	if (export_refusal(c, e)) {
		opt_error(c, export_refusal(c, e), "this export is served over TLS only");
		return;
	}
	if (!export_allows(e, c)) {
		refuse_export(c, e);
		opt_error(c, NBD_REP_ERR_POLICY, "this export is not available to your address");
		return;
	}
	for (i = 0; i < nreq; i++) {
		uint16_t r = nbd_get_be16(d + 4 + namelen + 2 + 2 * i);

		want_name |= r == NBD_INFO_NAME;
		want_desc |= r == NBD_INFO_DESCRIPTION;
	}
	nbd_put_be64(buf, export_size(e));
	nbd_put_be16(buf + 8, export_flags(c, e));
	opt_info_reply(c, NBD_INFO_EXPORT, buf, 10);
	if (want_name)
		opt_info_reply(c, NBD_INFO_NAME, e->name, strlen(e->name));
	if (want_desc && e->description[0])
		opt_info_reply(c, NBD_INFO_DESCRIPTION, e->description, strlen(e->description));
	/*
	 * Always sent, asked or not (proto.md "Block size constraints"). Minimum 1, as
	 * qemu-nbd: any offset and length works (unaligned writes are read-modify-writes);
	 * the preferred size says what is efficient.
	 */
	nbd_put_be32(buf, 1);
	nbd_put_be32(buf + 4, MAX(PREFERRED_BLOCK, e->dev->block_size));
	nbd_put_be32(buf + 8, c->srv->lim.max_payload);
	opt_info_reply(c, NBD_INFO_BLOCK_SIZE, buf, 12);
	opt_reply(c, NBD_REP_ACK, NULL, 0);
	if (!go)
		return;
	/* Meta contexts chosen for another export do not carry over (proto.md). */
	if (c->meta_name && strcmp(c->meta_name, e->name)) {
		c->meta_alloc = false;
		free(c->meta_dirty);
		c->meta_dirty = NULL;
	}
	enter_transmission(c, e);
}

/* One NBD_REP_META_CONTEXT: @id, then the context's name (@prefix @name). */
static void meta_reply(struct nbd_conn *c, uint32_t id, const char *prefix, const char *name)
{
	size_t pl = strlen(prefix), nl = strlen(name);
	uint8_t *reply = malloc(4 + pl + nl);

	if (!reply) {
		conn_close(c);
		return;
	}
	nbd_put_be32(reply, id);
	memcpy(reply + 4, prefix, pl);
	memcpy(reply + 4 + pl, name, nl);
	opt_reply(c, NBD_REP_META_CONTEXT, reply, (uint32_t)(4 + pl + nl));
	free(reply);
}

#define QEMU_DIRTY_PREFIX "qemu:dirty-bitmap:"

/* Whether export @e has the bitmap @name (@nl bytes); the name as a string in @buf. */
static bool bitmap_exists(struct nbd_export *e, const uint8_t *name, uint32_t nl, char *buf,
			  size_t len)
{
	if (!e->bitmap_name)
		return false;
	for (unsigned i = 0; i < MAX_BITMAPS && !e->bitmap_name(e->ctx, i, buf, len); i++)
		if (strlen(buf) == nl && !memcmp(buf, name, nl))
			return true;
	return false;
}

/*
 * NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: u32 namelen, name, u32 nq,
 * nq x (u32 len, query). We know base:allocation and, on exports that have dirty maps,
 * qemu:dirty-bitmap:NAME for each NAME the export's bitmap_name() lists (docs/nbd.md).
 */
static void opt_meta(struct nbd_conn *c, const uint8_t *d, uint32_t len, bool set)
{
	static const char base[] = NBD_META_BASE_ALLOCATION;
	static const char dp[] = QEMU_DIRTY_PREFIX;
	uint32_t namelen, nq, i, pos;
	bool match = false, all_bitmaps = false;
	struct nbd_export *e;
	char bm[NBD_MAX_NAME + 1], chosen[NBD_MAX_NAME + 1] = "";

	if (set) {
		/* SET replaces the selection even when it fails (proto.md). */
		c->meta_alloc = false;
		free(c->meta_name);
		c->meta_name = NULL;
		free(c->meta_dirty);
		c->meta_dirty = NULL;
	}
	if (!c->structured) {
		opt_error(c, NBD_REP_ERR_INVALID, "negotiate structured replies first");
		return;
	}
	if (len < 8 || (namelen = nbd_get_be32(d)) > len - 8) {
		opt_error(c, NBD_REP_ERR_INVALID, "option data too short");
		return;
	}
	nq = nbd_get_be32(d + 4 + namelen);
	/* Walk the queries once to check the framing before acting on any of them. */
	for (pos = 8 + namelen, i = 0; i < nq; i++) {
		uint32_t ql;

		if (len - pos < 4 || (ql = nbd_get_be32(d + pos)) > len - pos - 4) {
			opt_error(c, NBD_REP_ERR_INVALID, "query list does not match its length");
			return;
		}
		pos += 4 + ql;
	}
	if (pos != len) {
		opt_error(c, NBD_REP_ERR_INVALID, "trailing bytes after the queries");
		return;
	}
	e = find_export(c->srv, d + 4, namelen);
	if (!e) {
		opt_error(c, NBD_REP_ERR_UNKNOWN, "no such export");
		return;
	}
	/* The TLS requirement first: a plain connection learns nothing about the allow list. */
	if (export_refusal(c, e)) {
		opt_error(c, export_refusal(c, e), "this export is served over TLS only");
		return;
	}
	if (!export_allows(e, c)) {
		refuse_export(c, e);
		opt_error(c, NBD_REP_ERR_POLICY, "this export is not available to your address");
		return;
	}
	if (!nq && !set) {
		match = true; /* LIST with no query lists everything */
		all_bitmaps = true;
	}
	for (pos = 8 + namelen, i = 0; i < nq; i++) {
		uint32_t ql = nbd_get_be32(d + pos);
		const uint8_t *q = d + pos + 4;

		pos += 4 + ql;
		if (ql == sizeof(base) - 1 && !memcmp(q, base, ql))
			match = true;
		/* "base:" is a wildcard for LIST only; for SET it selects nothing. */
		else if (!set && ql == 5 && !memcmp(q, "base:", 5))
			match = true;
		/* So are "qemu:" and "qemu:dirty-bitmap:" (qemu's docs/interop/nbd.txt). */
		else if (!set && ((ql == 5 && !memcmp(q, "qemu:", 5)) ||
				  (ql == sizeof(dp) - 1 && !memcmp(q, dp, ql))))
			all_bitmaps = true;
		else if (ql > sizeof(dp) - 1 && !memcmp(q, dp, sizeof(dp) - 1) &&
			 bitmap_exists(e, q + sizeof(dp) - 1, ql - (uint32_t)(sizeof(dp) - 1), bm,
				       sizeof(bm))) {
			/* SET selects one bitmap: the first one asked for. */
			if (!set)
				meta_reply(c, META_DIRTY_ID, dp, bm);
			else if (!chosen[0])
				memcpy(chosen, bm, sizeof(chosen));
		}
	}
	if (match)
		meta_reply(c, META_ALLOC_ID, base, "");
	if (all_bitmaps && e->bitmap_name)
		for (i = 0; i < MAX_BITMAPS && !e->bitmap_name(e->ctx, i, bm, sizeof(bm)); i++)
			meta_reply(c, META_DIRTY_ID, dp, bm);
	if (chosen[0])
		meta_reply(c, META_DIRTY_ID, dp, chosen);
	if (set && (match || chosen[0])) {
		c->meta_name = malloc(strlen(e->name) + 1);
		c->meta_dirty = chosen[0] ? malloc(strlen(chosen) + 1) : NULL;
		if (c->meta_name && (c->meta_dirty || !chosen[0])) {
			memcpy(c->meta_name, e->name, strlen(e->name) + 1);
			c->meta_alloc = match;
			if (c->meta_dirty)
				memcpy(c->meta_dirty, chosen, strlen(chosen) + 1);
		} else {
			free(c->meta_name);
			free(c->meta_dirty);
			c->meta_name = c->meta_dirty = NULL;
		}
	}
	opt_reply(c, NBD_REP_ACK, NULL, 0);
}

/* ---- STARTTLS ---------------------------------------------------------------------------- */

/* The session's bio: ciphertext out goes to the wire queue, in comes from the fed buffer. */
static int tls_bio_send(void *conn, const void *buf, size_t len)
{
	struct nbd_conn *c = conn;
	struct nbd_out *o = out_get(c->srv, len);

	if (!o)
		return -ENOMEM;
	memcpy(o->inl, buf, len);
	o->data = o->inl;
	o->len = len;
	o->owned = NULL;
	o->owned_size = 0;
	o->next = NULL;
	if (c->wout_tail)
		c->wout_tail->next = o;
	else
		c->wout = o;
	c->wout_tail = o;
	c->wout_bytes += len;
	return 0;
}

static size_t tls_bio_recv(void *conn, void *buf, size_t len)
{
	struct nbd_conn *c = conn;
	size_t k = MIN(len, c->win_len - c->win_pos);

	if (k) {
		memcpy(buf, c->win + c->win_pos, k);
		c->win_pos += k;
	}
	return k;
}

/*
 * NBD_OPT_STARTTLS (proto.md "TLS support"): ACK in plain, then every later byte goes through
 * the session. Negotiation state from before (structured replies, meta contexts) is dropped,
 * as the spec requires.
 */
static void opt_starttls(struct nbd_conn *c, uint32_t len)
{
	const struct nbd_tls_config *t = &c->srv->tls;
	struct nbd_tls_bio bio = { tls_bio_send, tls_bio_recv, c };
	const char *why = NULL;
	void *sess = NULL;

	if (c->tls_mode == NBD_TLS_OFF) {
		opt_error(c, NBD_REP_ERR_UNSUP, "TLS is not enabled on this server");
		return;
	}
	if (len) {
		opt_error(c, NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
		return;
	}
	if (c->tls) {
		opt_error(c, NBD_REP_ERR_INVALID, "TLS is already negotiated");
		return;
	}
	c->pt = malloc(TLS_PT_BYTES);
	if (!c->pt) {
		opt_error(c, NBD_REP_ERR_PLATFORM, "out of memory");
		return;
	}
	if (t->ops->open(t->ctx, &bio, &sess, &why)) {
		free(c->pt);
		c->pt = NULL;
		opt_error(c, NBD_REP_ERR_PLATFORM, why ? why : "TLS cannot start");
		return;
	}
	opt_reply(c, NBD_REP_ACK, NULL, 0);
	/* What is queued so far (this ACK last) goes out in plain, ahead of any ciphertext. */
	c->wout = c->out;
	c->wout_tail = c->out_tail;
	c->wout_bytes = c->out_bytes;
	c->out = c->out_tail = NULL;
	c->out_bytes = 0;
	c->tls = sess;
	c->structured = false;
	c->meta_alloc = false;
	free(c->meta_name);
	c->meta_name = NULL;
	free(c->meta_dirty);
	c->meta_dirty = NULL;
}

static void handle_option(struct nbd_conn *c, const uint8_t *d, uint32_t len)
{
	/*
	 * FORCEDTLS: before TLS only STARTTLS and ABORT are served (proto.md); nothing about the
	 * exports is disclosed. EXPORT_NAME cannot be answered with an error: close.
	 */
	if (c->tls_mode == NBD_TLS_REQUIRE && !c->tls && c->opt != NBD_OPT_STARTTLS &&
	    c->opt != NBD_OPT_ABORT) {
		if (c->opt == NBD_OPT_EXPORT_NAME)
			conn_close(c);
		else
			opt_error(c, NBD_REP_ERR_TLS_REQD,
				  "TLS is required: send NBD_OPT_STARTTLS");
		return;
	}
	switch (c->opt) {
	case NBD_OPT_EXPORT_NAME:
		opt_export_name(c, d, len);
		break;
	case NBD_OPT_ABORT:
		/* Any data is ignored (proto.md); the client may close without reading the ACK. */
		opt_reply(c, NBD_REP_ACK, NULL, 0);
		conn_close(c);
		break;
	case NBD_OPT_LIST:
		opt_list(c, len);
		break;
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		opt_info_go(c, d, len, c->opt == NBD_OPT_GO);
		break;
	case NBD_OPT_STRUCTURED_REPLY:
		if (len)
			opt_error(c, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
		else if (c->structured)
			opt_error(c, NBD_REP_ERR_INVALID, "structured replies already negotiated");
		else {
			c->structured = true;
			opt_reply(c, NBD_REP_ACK, NULL, 0);
		}
		break;
	case NBD_OPT_LIST_META_CONTEXT:
	case NBD_OPT_SET_META_CONTEXT:
		opt_meta(c, d, len, c->opt == NBD_OPT_SET_META_CONTEXT);
		break;
	case NBD_OPT_STARTTLS:
		opt_starttls(c, len);
		break;
	default:
		/*
		 * Everything else, including EXTENDED_HEADERS (an experimental extension we do not implement yet): ERR_UNSUP,
		 * and the session continues — refusing to continue broke clients that send
		 * EXTENDED_HEADERS by default (docs/nbd.md, protocol rule 2).
		 */
		opt_error(c, NBD_REP_ERR_UNSUP, "option not supported");
		break;
	}
}

/* The 16-byte option header is complete. */
static void option_header(struct nbd_conn *c)
{
	if (nbd_get_be64(c->hdr) != NBD_OPT_MAGIC) {
		conn_close(c);
		return;
	}
	c->opt = nbd_get_be32(c->hdr + 8);
	c->optlen = nbd_get_be32(c->hdr + 12);
	c->optgot = 0;
	/* A cap on options per connection keeps a client from negotiating forever (DoS): 128
	 * plus one per live export (nbdinfo --list asks about each once), at most the
	 * server's max_options. */
	if (++c->options > c->srv->lim.max_options || c->options > 128 + c->srv->nlive) {
		conn_close(c);
		return;
	}
	if (c->optlen > MAX_OPT_DATA) {
		if (c->opt == NBD_OPT_EXPORT_NAME) {
			conn_close(c); /* no error reply exists for it */
			return;
		}
		c->skip_left = c->optlen;
		c->state = CS_OPT_SKIP;
		return;
	}
	if (c->optlen) {
		c->optbuf = malloc(c->optlen);
		if (!c->optbuf) {
			conn_close(c);
			return;
		}
		c->state = CS_OPT_DATA;
		return;
	}
	handle_option(c, NULL, 0);
	if (c->state == CS_OPT_HDR)
		c->hdr_len = 0;
}

/* ---- Transmission: replies --------------------------------------------------------------- */

static void simple_reply(struct nbd_conn *c, uint64_t cookie, uint32_t err)
{
	uint8_t *p = out_bytes(c, 16);

	if (!p)
		return;
	nbd_put_be32(p, NBD_SIMPLE_REPLY_MAGIC);
	nbd_put_be32(p + 4, err);
	nbd_put_be64(p + 8, cookie);
}

static uint8_t *chunk(struct nbd_conn *c, uint64_t cookie, uint16_t flags, uint16_t type,
		      size_t payload, size_t inline_len)
{
	uint8_t *p = out_bytes(c, 20 + inline_len);

	if (!p)
		return NULL;
	nbd_put_be32(p, NBD_STRUCTURED_REPLY_MAGIC);
	nbd_put_be16(p + 4, flags);
	nbd_put_be16(p + 6, type);
	nbd_put_be64(p + 8, cookie);
	nbd_put_be32(p + 16, (uint32_t)payload);
	return p + 20;
}

/*
 * Answer an error. With structured replies, READ and BLOCK_STATUS errors must be chunks
 * (a simple reply is forbidden for READ then, proto.md "Structured reply chunk message
 * types"); an ERROR chunk also carries our reason. Everything else gets a simple reply.
 */
static void error_reply(struct nbd_conn *c, uint64_t cookie, uint16_t type, uint16_t flags, int rc,
			const char *msg)
{
	uint32_t err = nbd_errno(rc, flags);

	if (c->structured && (type == NBD_CMD_READ || type == NBD_CMD_BLOCK_STATUS)) {
		size_t ml = msg ? strlen(msg) : 0;
		uint8_t *p =
		    chunk(c, cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, 6 + ml, 6 + ml);

		if (!p)
			return;
		nbd_put_be32(p, err);
		nbd_put_be16(p + 4, (uint16_t)ml);
		if (ml)
			memcpy(p + 6, msg, ml);
		return;
	}
	simple_reply(c, cookie, err);
}

static bool is_zero(const uint8_t *p, size_t n)
{
	/* A zero first byte and every byte equal to its successor: all zero. */
	return !n || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}

/* Length of the run starting at @pos with the same zero-ness, cut at absolute grains. */
static size_t zero_run(const uint8_t *data, uint64_t offset, size_t pos, size_t len, bool *zero)
{
	size_t end = pos;
	bool first = true;

	while (end < len) {
		uint64_t abs = offset + end;
		size_t g = (size_t)MIN((uint64_t)(len - end),
				       ZERO_SCAN_GRAIN - (abs & (ZERO_SCAN_GRAIN - 1)));
		bool z = is_zero(data + end, g);

		if (first) {
			*zero = z;
			first = false;
		} else if (z != *zero) {
			break;
		}
		end += g;
	}
	return end - pos;
}

/* Give back every borrowed piece of @r (each exactly once) and the list's memory. */
static void req_release_segs(struct nbd_req *r)
{
	struct nbd_conn *c = r->conn;

	for (uint32_t i = 0; i < r->nsegs; i++)
		c->in_ops->release(c->in_ops->ctx, r->refs[i]);
	c->srv->holds -= r->nsegs;
	r->nsegs = 0;
	buf_put(c->srv, r->segs, (size_t)r->seg_cap * BORROW_SLOT_BYTES);
	r->segs = NULL;
	r->refs = NULL;
	r->seg_cap = 0;
}

/*
 * From now on @r's payload is copied into a buffer of its own: the @got bytes borrowed so
 * far are gathered into it and their pieces released. 0, or -ENOMEM.
 */
static int req_own_payload(struct nbd_req *r, size_t got)
{
	uint8_t *b = buf_get(r->conn->srv, r->buf_size);

	if (!b)
		return -ENOMEM;
	if (r->nsegs) {
		perf_begin();
		blkdev_segs_gather(b, r->segs, r->nsegs, 0, got);
		perf_end(PERF_COPY, got);
		perf_payload.write_copied += got;
		perf_payload.write_borrowed -= got;
	}
	req_release_segs(r);
	r->buf = b;
	return 0;
}

static void req_free(struct nbd_req *r)
{
	struct nbd_conn *c = r->conn;

	wl_release(r);
	buf_put(c->srv, r->ebuf, r->ebuf_size);
	if (r->segs)
		req_release_segs(r);
	if (r->hops) {
		const struct nbd_handle_ops *h = r->hops;

		r->hops = NULL;
		h->release(h->ctx, r->handle);
	}
	if (r->buf)
		buf_put(c->srv, r->buf, r->buf_size);
	/* A borrowed WRITE holds its budget without a buffer. */
	if (r->buf_size)
		held_sub(c, r->buf_size);
	c->nreqs--;
	req_put(c->srv, r);
}

/* A successful READ: data (from r->buf at @skip) and, when allowed, hole chunks. */
static void read_reply(struct nbd_conn *c, struct nbd_req *r, size_t skip)
{
	const uint8_t *data = r->buf + skip;
	size_t pos = 0, run;
	bool zero = false;

	c->bytes_read += r->length;
	if (!c->structured) {
		simple_reply(c, r->cookie, 0);
		out_ref(c, data, r->length, r->buf, r->buf_size);
		r->buf = NULL;
		r->buf_size = 0; /* the output record holds it (and its budget) now */
		return;
	}
	/* DF: one data chunk for the whole range (we can always send it unfragmented). */
	while (pos < r->length) {
		bool last;
		uint8_t *p;

		perf_begin();
		run = (r->flags & NBD_CMD_FLAG_DF)
			  ? r->length
			  : zero_run(data, r->offset, pos, r->length, &zero);
		perf_end(PERF_ZERO_SCAN, run);
		if (r->flags & NBD_CMD_FLAG_DF)
			zero = false;
		last = pos + run == r->length;
		if (zero) {
			p = chunk(c, r->cookie, last ? NBD_REPLY_FLAG_DONE : 0,
				  NBD_REPLY_TYPE_OFFSET_HOLE, 12, 12);
			if (!p)
				return;
			nbd_put_be64(p, r->offset + pos);
			nbd_put_be32(p + 8, (uint32_t)run);
		} else {
			p = chunk(c, r->cookie, last ? NBD_REPLY_FLAG_DONE : 0,
				  NBD_REPLY_TYPE_OFFSET_DATA, 8 + run, 8);
			if (!p)
				return;
			nbd_put_be64(p, r->offset + pos);
			out_ref(c, data + pos, run, NULL, 0);
		}
		pos += run;
	}
	/* The last segment referencing the buffer frees it once sent. */
	out_ref(c, NULL, 0, r->buf, r->buf_size);
	r->buf = NULL;
	r->buf_size = 0; /* the output record holds it (and its budget) now */
}

/* ---- Transmission: validation ------------------------------------------------------------ */

/*
 * Pure checking, nbdkit's validate_request(): 0, or -errno with *msg set. Order matters and
 * follows nbdkit (docs/nbd.md, protocol rule 4): unknown command, unknown or inapplicable flags,
 * shutdown, read-only, then range (ENOSPC for writes past the end, EINVAL otherwise), then
 * size. There is no alignment rule: the minimum block size we advertise is 1 (unaligned
 * writes are read-modify-writes, see "ordering of read-modify-writes" below).
 */
static int validate_request(const struct nbd_conn *c, uint16_t type, uint16_t flags,
			    uint64_t offset, uint32_t length, const char **msg)
{
	const struct nbd_export *e = c->exp;
	uint64_t size = export_size(e);
	uint16_t allowed = NBD_CMD_FLAG_FUA; /* valid on every command once SEND_FUA is set */
	bool writes = false;

	switch (type) {
	case NBD_CMD_READ:
		if (c->structured)
			allowed |= NBD_CMD_FLAG_DF;
		break;
	case NBD_CMD_WRITE:
	case NBD_CMD_TRIM:
		writes = true;
		break;
	case NBD_CMD_WRITE_ZEROES:
		writes = true;
		allowed |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
		break;
	case NBD_CMD_FLUSH:
	case NBD_CMD_DISC:
		break;
	case NBD_CMD_CACHE:
		break;
	case NBD_CMD_BLOCK_STATUS:
		allowed |= NBD_CMD_FLAG_REQ_ONE;
		break;
	default:
		*msg = "unknown command";
		return -EINVAL;
	}
	if (flags & ~allowed) {
		*msg = "flag not valid for this command";
		return -EINVAL;
	}
	if (c->export_gone) {
		*msg = "export removed";
		return -ESHUTDOWN;
	}
	if (type == NBD_CMD_FLUSH) {
		if (offset || length) {
			*msg = "FLUSH needs offset and length 0";
			return -EINVAL;
		}
		return 0;
	}
	if (writes && export_ro(e)) {
		*msg = "export is read-only";
		return -EPERM;
	}
	if (length == 0) {
		/* Unspecified by the spec; refused like nbdkit, without disconnecting. */
		*msg = "zero length";
		return -EINVAL;
	}
	if (offset > size || length > size - offset) {
		*msg = "range beyond the end of the export";
		/* proto.md: writes past the end are ENOSPC, everything else EINVAL. */
		return (type == NBD_CMD_WRITE || type == NBD_CMD_WRITE_ZEROES) ? -ENOSPC : -EINVAL;
	}
	if ((type == NBD_CMD_READ || type == NBD_CMD_WRITE) && length > c->srv->lim.max_payload) {
		*msg = "payload larger than the advertised maximum";
		return -EINVAL;
	}
	if (type == NBD_CMD_BLOCK_STATUS && !c->meta_alloc && !c->meta_dirty) {
		*msg = "no meta context negotiated";
		return -EINVAL;
	}
	return 0;
}

/* ---- Transmission: request execution ----------------------------------------------------- */

static void ready_push(struct nbd_conn *c, struct nbd_req *r)
{
	r->next = NULL;
	if (c->ready_tail)
		c->ready_tail->next = r;
	else
		c->ready = r;
	c->ready_tail = r;
}

static void req_done(struct blkdev_req *br, int rc)
{
	struct nbd_req *r = br->priv;
	struct nbd_conn *c = r->conn;

	r->io_rc = rc;
	r->in_dev = false;
	c->in_dev--;
	c->exp->in_dev--;
	/* Only record: run_ready() advances it (no recursion from synchronous devices). */
	ready_push(c, r);
}

/* Hand r->breq to the device. A full queue parks the request on the retry list. */
static void req_submit(struct nbd_req *r)
{
	struct nbd_conn *c = r->conn;
	int rc;

	r->breq.done = req_done;
	r->breq.priv = r;
	r->in_dev = true;
	c->in_dev++;
	c->exp->in_dev++;
	rc = blkdev_submit(c->exp->dev, &r->breq);
	if (rc == 0)
		return;
	r->in_dev = false;
	c->in_dev--;
	c->exp->in_dev--;
	if (rc == -EAGAIN) {
		r->retry_stage = r->stage;
		r->stage = RS_SUBMIT;
		r->next = c->retry;
		c->retry = r;
		return;
	}
	/* Refused outright: complete it with that error. */
	r->io_rc = rc;
	ready_push(c, r);
}

/* The request's segment list goes with its own WRITE payload only (not edge blocks). */
static void req_set_segs(struct nbd_req *r, enum blkdev_op op, void *buf)
{
	bool list = r->segs && !buf && (op == BLKDEV_WRITE || op == BLKDEV_WRITE_BYTES);

	r->breq.segs = list ? r->segs : NULL;
	r->breq.nr_segs = list ? r->nsegs : 0;
	r->breq.seg_off = 0;
	/* Likewise a payload the transport holds: with the request's own WRITE only. */
	r->breq.in_handle = r->hops && op == BLKDEV_WRITE && buf == r->buf;
	r->breq.handle = r->hops ? r->handle : 0;
}

static void req_io(struct nbd_req *r, enum blkdev_op op, uint64_t blk, uint32_t count, void *buf)
{
	r->breq.op = op;
	r->breq.block = blk;
	r->breq.count = count;
	r->breq.buf = buf;
	req_set_segs(r, op, buf);
	req_submit(r);
}

/* A byte-granular operation (a device with byte_writes, core/blkdev.h). */
static void req_io_bytes(struct nbd_req *r, enum blkdev_op op, uint64_t offset, uint32_t length,
			 void *buf)
{
	r->breq.op = op;
	r->breq.block = 0;
	r->breq.count = 0;
	r->breq.offset = offset;
	r->breq.length = length;
	r->breq.buf = buf;
	req_set_segs(r, op, buf);
	req_submit(r);
}

/* ---- Transmission: ordering of read-modify-writes ---------------------------------------- */

/*
 * A device without byte_writes gets an unaligned WRITE or WRITE_ZEROES as a read-modify-write
 * of its partial blocks (the edges) by the server: read the block, patch it, write it back.
 * Between that read and that write nothing else may write the block, or its bytes would be
 * lost (the patched block carries the old ones back); and the read must come after every
 * earlier write to the block completed. So every write-type request to such a device, from
 * every connection (they share the device), enters the server's write list in arrival order
 * and leaves it when its data operations are done; it may use the device only when no
 * earlier entry conflicts with it. Two entries conflict when one is a read-modify-write with
 * an edge block inside the other's range. Aligned writes never conflict with each other
 * (their order stays the device's, as before), so while no read-modify-write is in the list
 * nobody waits and the aligned path costs one append and one unlink. Earlier waiting entries
 * count too, so a read-modify-write is not starved by a stream of later writes. Reads do not
 * enter: a read overlapping a read-modify-write sees each block old or new, as with aligned
 * writes (an edge block is written back in one device write).
 */

static bool wl_edge_in(const struct nbd_req *a, const struct nbd_req *b)
{
	for (unsigned i = 0; i < a->nedge; i++)
		if (a->edge[i] >= b->wl_first && a->edge[i] < b->wl_end)
			return true;
	return false;
}

static bool wl_conflict(const struct nbd_req *a, const struct nbd_req *b)
{
	if (a->wl_dev != b->wl_dev)
		return false;
	return (a->excl && wl_edge_in(a, b)) || (b->excl && wl_edge_in(b, a));
}

/* No earlier entry conflicts with @r. */
static bool wl_clear(const struct nbd_req *r)
{
	for (const struct nbd_req *e = r->wl_prev; e; e = e->wl_prev)
		if (wl_conflict(e, r))
			return false;
	return true;
}

/* Entries that can go now leave the wait and are advanced by run_ready(). */
static void wl_grant(struct nbd_server *srv)
{
	for (struct nbd_req *e = srv->wl_head; e; e = e->wl_next) {
		if (e->wl == WL_WAIT && wl_clear(e)) {
			e->wl = WL_ACTIVE;
			ready_push(e->conn, e);
		}
	}
}

/*
 * The partial blocks of an unaligned WRITE / WRITE_ZEROES: the first block when the offset is
 * not aligned, the last when the end is not (once, when both are the same block).
 */
static void rmw_edges(struct nbd_req *r, uint32_t bs)
{
	uint64_t end = r->offset + r->length;

	r->nedge = 0;
	if (r->offset % bs)
		r->edge[r->nedge++] = r->offset / bs;
	if (end % bs && (!r->nedge || end / bs != r->edge[0]))
		r->edge[r->nedge++] = end / bs;
}

/* Enter the write list (r->edge set for a read-modify-write): true when @r may go now. */
static bool wl_enter(struct nbd_req *r)
{
	struct nbd_server *srv = r->conn->srv;
	struct blkdev *dev = r->conn->exp->dev;
	uint32_t bs = dev->block_size;

	r->wl_dev = dev;
	r->wl_first = r->offset / bs;
	r->wl_end = (r->offset + r->length + bs - 1) / bs;
	r->excl = r->nedge > 0;
	r->wl_next = NULL;
	r->wl_prev = srv->wl_tail;
	if (srv->wl_tail)
		srv->wl_tail->wl_next = r;
	else
		srv->wl_head = r;
	srv->wl_tail = r;
	if (r->excl)
		srv->wl_excl++;
	/* Without a read-modify-write in the list (r is none either) there is no conflict. */
	r->wl = (!srv->wl_excl || wl_clear(r)) ? WL_ACTIVE : WL_WAIT;
	return r->wl == WL_ACTIVE;
}

/* Leave the list (its device operations are over, or it is dropped); idempotent. */
static void wl_unlink(struct nbd_req *r)
{
	struct nbd_server *srv = r->conn->srv;

	if (r->wl == WL_NONE)
		return;
	if (r->wl_prev)
		r->wl_prev->wl_next = r->wl_next;
	else
		srv->wl_head = r->wl_next;
	if (r->wl_next)
		r->wl_next->wl_prev = r->wl_prev;
	else
		srv->wl_tail = r->wl_prev;
	r->wl_prev = r->wl_next = NULL;
	if (r->excl)
		srv->wl_excl--;
	r->wl = WL_NONE;
}

static void wl_release(struct nbd_req *r)
{
	struct nbd_server *srv = r->conn->srv;
	bool excl = r->excl;

	if (r->wl == WL_NONE)
		return;
	wl_unlink(r);
	/* Only a read-modify-write makes anyone wait: the one leaving, or one still listed. */
	if (excl || srv->wl_excl)
		wl_grant(srv);
}

/* A connection goes away: its waiting writes leave the list without running. */
static void wl_drop_conn(struct nbd_conn *c)
{
	struct nbd_server *srv = c->srv;
	struct nbd_req *e = srv->wl_head, *n;

	for (; e; e = n) {
		n = e->wl_next;
		if (e->conn == c && e->wl == WL_WAIT) {
			wl_unlink(e);
			req_free(e);
		}
	}
	wl_grant(srv);
}

static uint8_t *zero_buf(struct nbd_server *srv)
{
	if (!srv->zero_buf)
		srv->zero_buf = calloc(1, ZERO_BUF_BYTES);
	return srv->zero_buf;
}

/* Issue the next zero-buffer write of an IO_ZERO request. */
static int zero_next(struct nbd_req *r)
{
	struct nbd_conn *c = r->conn;
	uint32_t bs = c->exp->dev->block_size;
	uint8_t *z = zero_buf(c->srv);
	uint32_t n;

	if (!z)
		return -ENOMEM;
	if (r->zbytes) {
		n = (uint32_t)MIN(r->nblk, (uint64_t)ZERO_BUF_BYTES);
		r->blk += n;
		r->nblk -= n;
		req_io_bytes(r, BLKDEV_WRITE_BYTES, r->blk - n, n, z);
		return 0;
	}
	n = (uint32_t)MIN(r->nblk, (uint64_t)(ZERO_BUF_BYTES / bs));
	r->breq.op = BLKDEV_WRITE;
	r->breq.block = r->blk;
	r->breq.count = n;
	r->breq.buf = z;
	r->blk += n;
	r->nblk -= n;
	req_submit(r);
	return 0;
}

static void finish(struct nbd_req *r, int rc, const char *msg)
{
	struct nbd_conn *c = r->conn;

	if (rc)
		error_reply(c, r->cookie, r->type, r->flags, rc, msg);
	else if (r->type == NBD_CMD_READ)
		read_reply(c, r, (size_t)(r->offset & (c->exp->dev->block_size - 1)));
	else
		simple_reply(c, r->cookie, 0);
	req_free(r);
}

/*
 * Fill @ext (room for @max) for one context, clipped to the request and merged; at least
 * one extent ("0 is always safe" where a callback has nothing to say). The count, or -errno.
 */
static int status_extents(struct nbd_req *r, bool dirty, struct nbd_extent *ext, unsigned max)
{
	struct nbd_conn *c = r->conn;
	struct nbd_export *e = c->exp;
	uint32_t mask = dirty ? NBD_STATE_DIRTY : NBD_STATE_HOLE | NBD_STATE_ZERO;
	uint64_t pos = 0;
	unsigned n = 0, i, out = 0;
	int rc = 0;

	if (dirty)
		rc = e->dirty ? e->dirty(e->ctx, c->meta_dirty, r->offset, r->length, ext, max)
			      : -ENOENT;
	else if (e->extents)
		rc = e->extents(e->ctx, r->offset, r->length, ext, max);
	if (rc < 0)
		return rc;
	n = (unsigned)MIN((unsigned)rc, max);
	/*
	 * Keep what lies inside the request, merge equal neighbours. Extents are clipped to
	 * the requested range (allowed: the last may stop short; at least one is sent).
	 */
	for (i = 0; i < n && pos < r->length; i++) {
		uint64_t l = MIN(ext[i].length, (uint64_t)r->length - pos);
		uint32_t f = ext[i].flags & mask;

		if (!l)
			break;
		if (out && ext[out - 1].flags == f)
			ext[out - 1].length += l;
		else
			ext[out++] = (struct nbd_extent){ l, f };
		pos += l;
	}
	if (!out)
		ext[out++] = (struct nbd_extent){ r->length, 0 };
	return (int)out;
}

static void status_chunk(struct nbd_req *r, uint32_t id, const struct nbd_extent *ext, unsigned out,
			 bool done)
{
	uint8_t *p = chunk(r->conn, r->cookie, done ? NBD_REPLY_FLAG_DONE : 0,
			   NBD_REPLY_TYPE_BLOCK_STATUS, 4 + 8 * out, 4 + 8 * out);

	if (p) {
		nbd_put_be32(p, id);
		for (unsigned i = 0; i < out; i++) {
			nbd_put_be32(p + 4 + 8 * i, (uint32_t)ext[i].length);
			nbd_put_be32(p + 8 + 8 * i, ext[i].flags);
		}
	}
}

/* One BLOCK_STATUS chunk per selected context; the dirty map first, as it may fail. */
static void block_status(struct nbd_req *r)
{
	struct nbd_conn *c = r->conn;
	unsigned max = (r->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : MAX_EXTENTS;
	struct nbd_extent *ext = calloc(2 * (size_t)max, sizeof(*ext));
	int na = 0, nd = 0;

	if (!ext) {
		finish(r, -ENOMEM, NULL);
		return;
	}
	if (c->meta_dirty) {
		nd = status_extents(r, true, ext + max, max);
		if (nd < 0) {
			char msg[NBD_MAX_NAME + 64];

			snprintf(msg, sizeof(msg), "dirty bitmap %s: %s", c->meta_dirty,
				 nd == -ENOENT ? "no such snapshot any more" : "lookup failed");
			free(ext);
			finish(r, nd == -ENOENT ? -EINVAL : nd, msg);
			return;
		}
	}
	if (c->meta_alloc) {
		na = status_extents(r, false, ext, max);
		if (na < 0) {
			free(ext);
			finish(r, na, "allocation map lookup failed");
			return;
		}
		status_chunk(r, META_ALLOC_ID, ext, (unsigned)na, !c->meta_dirty);
	}
	if (c->meta_dirty)
		status_chunk(r, META_DIRTY_ID, ext + max, (unsigned)nd, true);
	free(ext);
	req_free(r);
}

static bool is_write(uint16_t type)
{
	return type == NBD_CMD_WRITE || type == NBD_CMD_TRIM || type == NBD_CMD_WRITE_ZEROES;
}

static bool unaligned(const struct nbd_req *r, uint32_t bs)
{
	return ((r->offset | r->length) & (bs - 1)) != 0;
}

/*
 * WRITE_ZEROES over r->blk, r->nblk (blocks; bytes when r->zbytes). The device's
 * write_zeroes may deallocate (filedisk punches holes), so it is used only when a hole is
 * allowed; NO_HOLE writes real zeroes. Writing zeroes is not faster than a write, so
 * FAST_ZERO then fails at once with ENOTSUP.
 */
static void zero_start(struct nbd_req *r)
{
	struct blkdev *dev = r->conn->exp->dev;
	int rc;

	if (!(r->flags & NBD_CMD_FLAG_NO_HOLE) && (r->zbytes || dev->ops->write_zeroes)) {
		r->mode = IO_SINGLE;
		if (r->zbytes)
			req_io_bytes(r, BLKDEV_WRITE_ZEROES_BYTES, r->blk, (uint32_t)r->nblk, NULL);
		else
			req_io(r, BLKDEV_WRITE_ZEROES, r->blk, (uint32_t)r->nblk, NULL);
		return;
	}
	if (r->flags & NBD_CMD_FLAG_FAST_ZERO) {
		finish(r, -ENOTSUP, "zeroing would not be faster than writing");
		return;
	}
	r->mode = IO_ZERO;
	rc = zero_next(r);
	if (rc)
		finish(r, rc, NULL);
}

/*
 * Read-modify-write by the server (a device without byte_writes; @r is active in the write
 * list): the next edge block is read (RS_EDGE_READ patches and writes it), and once the
 * edges are done the whole blocks between them go as an aligned request's would (RS_IO).
 */
static void rmw_next(struct nbd_req *r)
{
	struct nbd_conn *c = r->conn;
	uint32_t bs = c->exp->dev->block_size;
	uint64_t first = (r->offset + bs - 1) / bs, end = (r->offset + r->length) / bs;

	if (r->edge_i < r->nedge) {
		if (!r->ebuf && !(r->ebuf = buf_get(c->srv, bs))) {
			finish(r, -ENOMEM, NULL);
			return;
		}
		r->ebuf_size = bs;
		r->stage = RS_EDGE_READ;
		req_io(r, BLKDEV_READ, r->edge[r->edge_i], 1, r->ebuf);
		return;
	}
	r->stage = RS_IO;
	if (end <= first) {
		r->mode = IO_NONE;
		r->io_rc = 0;
		ready_push(c, r);
		return;
	}
	if (r->type == NBD_CMD_WRITE) {
		r->mode = IO_SINGLE;
		req_io(r, BLKDEV_WRITE, first, (uint32_t)(end - first),
		       r->buf + (first * bs - r->offset));
		return;
	}
	r->blk = first;
	r->nblk = end - first;
	zero_start(r);
}

/* The edge block in r->ebuf gets the request's bytes (or zeroes) where they fall in it. */
static void rmw_patch(struct nbd_req *r)
{
	uint32_t bs = r->conn->exp->dev->block_size;
	uint64_t b0 = r->edge[r->edge_i] * bs;
	uint64_t s = MAX(r->offset, b0), e = MIN(r->offset + r->length, b0 + bs);

	if (r->type == NBD_CMD_WRITE)
		memcpy(r->ebuf + (s - b0), r->buf + (s - r->offset), (size_t)(e - s));
	else
		memset(r->ebuf + (s - b0), 0, (size_t)(e - s));
}

/* First step of a validated request. */
static void req_start(struct nbd_req *r)
{
	struct nbd_conn *c = r->conn;
	struct blkdev *dev = c->exp->dev;
	uint32_t bs = dev->block_size;
	uint64_t first, end;

	if (r->type == NBD_CMD_WRITE_ZEROES && (r->flags & NBD_CMD_FLAG_FAST_ZERO) &&
	    unaligned(r, bs)) {
		finish(r, -ENOTSUP, "zeroing part of a block is a read-modify-write");
		return;
	}
	if (is_write(r->type) && !dev->byte_writes && r->wl == WL_NONE) {
		if ((r->type == NBD_CMD_WRITE || r->type == NBD_CMD_WRITE_ZEROES) &&
		    unaligned(r, bs))
			rmw_edges(r, bs);
		if (!wl_enter(r))
			return; /* wl_grant() puts it on the ready list again */
	}
	r->stage = RS_IO;
	switch (r->type) {
	case NBD_CMD_READ:
		first = r->offset / bs;
		end = (r->offset + r->length + bs - 1) / bs;
		r->mode = IO_SINGLE;
		req_io(r, BLKDEV_READ, first, (uint32_t)(end - first), r->buf);
		return;
	case NBD_CMD_WRITE:
		r->mode = IO_SINGLE;
		if (r->segs && unaligned(r, bs) && !dev->byte_writes) {
			/* The server's read-modify-write patches from a buffer: copy. */
			int rc = req_own_payload(r, r->length);

			if (rc) {
				finish(r, rc, NULL);
				return;
			}
		}
		/* A borrowed payload goes down as its pieces (r->breq.segs, set by req_io*). */
		if (!unaligned(r, bs))
			req_io(r, BLKDEV_WRITE, r->offset / bs, r->length / bs, r->buf);
		else if (dev->byte_writes)
			req_io_bytes(r, BLKDEV_WRITE_BYTES, r->offset, r->length, r->buf);
		else
			rmw_next(r);
		return;
	case NBD_CMD_FLUSH:
		r->mode = IO_SINGLE;
		req_io(r, BLKDEV_FLUSH, 0, 0, NULL);
		return;
	case NBD_CMD_TRIM:
		/* A hint: round inward to whole blocks; nothing left, or no discard: done. */
		first = (r->offset + bs - 1) / bs;
		end = (r->offset + r->length) / bs;
		if (end <= first || !dev->ops->discard) {
			r->mode = IO_NONE;
			r->io_rc = 0;
			ready_push(c, r);
			return;
		}
		r->mode = IO_SINGLE;
		req_io(r, BLKDEV_DISCARD, first, (uint32_t)(end - first), NULL);
		return;
	case NBD_CMD_WRITE_ZEROES:
		if (unaligned(r, bs) && !dev->byte_writes) {
			rmw_next(r); /* the edges, then the whole blocks through zero_start() */
			return;
		}
		r->zbytes = unaligned(r, bs);
		r->blk = r->zbytes ? r->offset : r->offset / bs;
		r->nblk = r->zbytes ? r->length : r->length / bs;
		zero_start(r);
		return;
	case NBD_CMD_CACHE:
		/* A prefetch hint; our devices have no cache to fill (proto.md: may ignore). */
		finish(r, 0, NULL);
		return;
	case NBD_CMD_BLOCK_STATUS:
		block_status(r);
		return;
	}
	finish(r, -EINVAL, "unknown command");
}

/* A device operation of @r completed (r->io_rc). */
static void req_step(struct nbd_req *r)
{
	int rc = r->io_rc;

	switch (r->stage) {
	case RS_START:
		req_start(r);
		return;
	case RS_SUBMIT:
		r->stage = r->retry_stage;
		req_submit(r);
		return;
	case RS_EDGE_READ:
		if (rc) {
			finish(r, rc, "I/O error");
			return;
		}
		rmw_patch(r);
		r->stage = RS_EDGE_WRITE;
		req_io(r, BLKDEV_WRITE, r->edge[r->edge_i], 1, r->ebuf);
		return;
	case RS_EDGE_WRITE:
		if (rc) {
			finish(r, rc, "I/O error");
			return;
		}
		r->edge_i++;
		rmw_next(r);
		return;
	case RS_IO:
		if (rc == -EOPNOTSUPP || rc == -ENOTSUP) {
			if (r->type == NBD_CMD_TRIM) {
				rc = 0; /* a hint the device cannot take */
			} else if (r->type == NBD_CMD_WRITE_ZEROES && r->mode == IO_SINGLE) {
				if (r->flags & NBD_CMD_FLAG_FAST_ZERO) {
					finish(r, -ENOTSUP, "device cannot zero quickly");
					return;
				}
				r->mode = IO_ZERO;
				rc = zero_next(r);
				if (rc)
					finish(r, rc, NULL);
				return;
			}
		}
		if (rc) {
			finish(r, rc, "I/O error");
			return;
		}
		if (r->mode == IO_ZERO && r->nblk) {
			rc = zero_next(r);
			if (rc)
				finish(r, rc, NULL);
			return;
		}
		/* The data operations are over: later writes to these blocks may go. */
		wl_release(r);
		if ((r->flags & NBD_CMD_FLAG_FUA) && is_write(r->type)) {
			/* FUA: durable before the reply; our devices have no FUA bit, so flush. */
			r->stage = RS_FUA;
			req_io(r, BLKDEV_FLUSH, 0, 0, NULL);
			return;
		}
		finish(r, 0, NULL);
		return;
	case RS_FUA:
		finish(r, rc, "flush failed");
		return;
	}
}

/* Advance every request with work to do. Returns how many steps ran. */
static int run_ready(struct nbd_conn *c)
{
	int n = 0;

	if (!c->ready)
		return 0;
	perf_begin();
	while (c->ready && !c->dead) {
		struct nbd_req *r = c->ready;

		c->ready = r->next;
		if (!c->ready)
			c->ready_tail = NULL;
		req_step(r);
		n++;
	}
	perf_end(PERF_NBD_RUN, 0);
	return n;
}

/* Room for another request? (back-pressure: requests alive and bytes held) */
static bool has_budget(const struct nbd_conn *c)
{
	const struct nbd_limits *l = &c->srv->lim;

	return c->nreqs < l->max_requests && c->held < l->max_conn_bytes &&
	       c->out_bytes + c->wout_bytes < l->max_conn_bytes;
}

/*
 * May a request buffer of @size bytes be allocated now? The server's total stays within
 * max_server_bytes, except that a server holding nothing may always take one: every request
 * of up to max_payload is served, so the bound is the larger of the limit and one request.
 * The connection's own budget was checked before its header was read (has_budget()): a
 * client whose TLS proxy writes with blocking calls (nbd-tester-client's) must not be
 * stopped mid-stream by its own replies, which it reads only once its write went through.
 */
static bool buffer_fits(const struct nbd_conn *c, size_t size)
{
	const struct nbd_server *srv = c->srv;

	return !size || !srv->held || srv->held + size <= srv->lim.max_server_bytes;
}

/* The 28-byte request header is complete (in c->hdr). */
static void request_header(struct nbd_conn *c)
{
	uint32_t magic = nbd_get_be32(c->hdr);
	uint16_t flags = nbd_get_be16(c->hdr + 4);
	uint16_t type = nbd_get_be16(c->hdr + 6);
	uint64_t cookie = nbd_get_be64(c->hdr + 8);
	uint64_t offset = nbd_get_be64(c->hdr + 16);
	uint32_t length = nbd_get_be32(c->hdr + 24);
	const char *msg = NULL;
	struct nbd_req *r;
	size_t size = 0;
	int rc;

	c->hdr_len = 0;
	c->big_write = type == NBD_CMD_WRITE && length >= DIRECT_MIN_BYTES;
	if (magic != NBD_REQUEST_MAGIC) {
		/* The stream cannot be re-framed: hard disconnect (docs/nbd.md, protocol rule 3). */
		conn_close(c);
		return;
	}
	if (type == NBD_CMD_DISC) {
		/* No reply; finish what is in flight, then close. */
		conn_close(c);
		return;
	}
	rc = validate_request(c, type, flags, offset, length, &msg);
	if (rc) {
		if (type == NBD_CMD_WRITE && length) {
			/* Drain the payload, then answer: the stream stays framed. */
			c->skip_left = length;
			c->skip_err = rc;
			c->skip_msg = msg;
			c->skip_cookie = cookie;
			c->state = CS_REQ_SKIP;
			return;
		}
		error_reply(c, cookie, type, flags, rc, msg);
		return;
	}
	if (type == NBD_CMD_READ) {
		uint32_t bs = c->exp->dev->block_size;
		uint64_t first = offset / bs, end = (offset + length + bs - 1) / bs;

		size = (size_t)((end - first) * bs);
	} else if (type == NBD_CMD_WRITE) {
		size = length;
	}
	if (!buffer_fits(c, size)) {
		/*
		 * Wait, header kept, taking no input, until completions or sent replies free
		 * enough; nbd_server_poll() tries again.
		 */
		c->hdr_len = sizeof(c->hdr);
		c->wait_size = size;
		c->state = CS_REQ_WAIT;
		return;
	}
	r = req_get(c->srv);
	if (r && type == NBD_CMD_WRITE && c->in_ops && !c->tls) {
		/* Borrowed input: a list for the pieces; a buffer only if it comes to a copy. */
		r->seg_cap = BORROW_SEGS((size_t)length);
		r->segs = buf_get(c->srv, (size_t)r->seg_cap * BORROW_SLOT_BYTES);
		if (!r->segs) {
			req_put(c->srv, r);
			r = NULL;
		} else {
			r->refs = (void **)(r->segs + r->seg_cap);
		}
	} else if (r && size && !(r->buf = buf_get(c->srv, size))) {
		req_put(c->srv, r);
		r = NULL;
	}
	if (!r) {
		if (type == NBD_CMD_WRITE) {
			c->skip_left = length;
			c->skip_err = -ENOMEM;
			c->skip_msg = NULL;
			c->skip_cookie = cookie;
			c->state = CS_REQ_SKIP;
			return;
		}
		error_reply(c, cookie, type, flags, -ENOMEM, NULL);
		return;
	}
	r->conn = c;
	r->cookie = cookie;
	r->offset = offset;
	r->length = length;
	r->type = type;
	r->flags = flags;
	r->stage = RS_START;
	r->buf_size = size;
	c->held += size;
	c->srv->held += size;
	c->nreqs++;
	if (type == NBD_CMD_READ || type == NBD_CMD_WRITE)
		perf_add_bytes(PERF_NBD_PARSE, length);
	if (type == NBD_CMD_WRITE) {
		c->cur = r;
		c->cur_got = 0;
		c->state = CS_REQ_DATA;
		return;
	}
	ready_push(c, r);
	run_ready(c);
}

/* ---- Input ------------------------------------------------------------------------------- */

/* Gather header bytes into c->hdr; true when @want bytes are there. */
static bool gather(struct nbd_conn *c, size_t want, const uint8_t *in, size_t len, size_t *pos)
{
	size_t k = MIN(want - c->hdr_len, len - *pos);

	memcpy(c->hdr + c->hdr_len, in + *pos, k);
	c->hdr_len += k;
	*pos += k;
	return c->hdr_len == want;
}

/* Would the protocol take a plaintext byte now? */
static bool proto_wants_input(const struct nbd_conn *c)
{
	if (c->dead || c->input_closed || c->state == CS_CLOSING)
		return false;
	if (c->state == CS_REQ_HDR && c->hdr_len == 0)
		return has_budget(c);
	if (c->state == CS_REQ_WAIT)
		return false;
	/* Replies to options are small, but a client that never reads them must stop too. */
	if (c->state <= CS_OPT_SKIP)
		return c->out_bytes + c->wout_bytes < c->srv->lim.max_conn_bytes;
	return true;
}

/*
 * Protocol bytes in (the wire's, or under TLS the session's plaintext). @wire: they come
 * straight from the transport, so STARTTLS's ACK ends them: what follows is for the session.
 */
static size_t proto_feed(struct nbd_conn *c, const uint8_t *in, size_t len, bool wire)
{
	size_t pos = 0, k;

	while (pos < len) {
		if (c->state == CS_CLOSING)
			return len; /* nothing more is read: drop it */
		if (wire && c->tls)
			break;
		if (!proto_wants_input(c))
			break;
		switch (c->state) {
		case CS_CLIENT_FLAGS:
			if (!gather(c, 4, in, len, &pos))
				break;
			{
				uint32_t f = nbd_get_be32(c->hdr);

				/* Unknown client flags: the spec says to drop the connection. */
				if (f &
				    ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
					conn_close(c);
					break;
				}
				c->no_zeroes = f & NBD_FLAG_C_NO_ZEROES;
				c->hdr_len = 0;
				c->state = CS_OPT_HDR;
			}
			break;
		case CS_OPT_HDR:
			if (gather(c, 16, in, len, &pos))
				option_header(c);
			break;
		case CS_OPT_DATA:
			k = MIN((size_t)c->optlen - c->optgot, len - pos);
			memcpy(c->optbuf + c->optgot, in + pos, k);
			c->optgot += k;
			pos += k;
			if (c->optgot == c->optlen) {
				uint8_t *d = c->optbuf;

				/* handle_option() may change state; the data is ours until freed. */
				c->optbuf = NULL;
				c->state = CS_OPT_HDR;
				c->hdr_len = 0;
				handle_option(c, d, c->optlen);
				free(d);
			}
			break;
		case CS_OPT_SKIP:
			k = (size_t)MIN(c->skip_left, (uint64_t)(len - pos));
			c->skip_left -= k;
			pos += k;
			if (!c->skip_left) {
				c->state = CS_OPT_HDR;
				c->hdr_len = 0;
				opt_error(c, NBD_REP_ERR_TOO_BIG, "option data too large");
			}
			break;
		case CS_REQ_HDR:
			if (gather(c, 28, in, len, &pos)) {
				perf_begin();
				request_header(c);
				perf_end(PERF_NBD_PARSE, 0);
			}
			break;
		case CS_REQ_DATA:
			k = MIN((size_t)c->cur->length - c->cur_got, len - pos);
			if (!c->cur->buf && wire && c->in_ref && c->cur->nsegs < c->cur->seg_cap &&
			    c->srv->holds < BORROW_MAX_HOLDS) {
				/* Borrowed: the piece is held until the request is freed. */
				struct nbd_req *r = c->cur;

				c->in_ops->hold(c->in_ops->ctx, c->in_ref);
				c->srv->holds++;
				r->segs[r->nsegs].base = in + pos;
				r->segs[r->nsegs].len = (uint32_t)k;
				r->refs[r->nsegs++] = c->in_ref;
				perf_payload.write_borrowed += k;
			} else {
				if (!c->cur->buf && req_own_payload(c->cur, c->cur_got)) {
					/* No memory for the copy: drain the rest, answer ENOMEM. */
					struct nbd_req *r = c->cur;

					c->skip_left = r->length - c->cur_got;
					c->skip_err = -ENOMEM;
					c->skip_msg = NULL;
					c->skip_cookie = r->cookie;
					c->state = CS_REQ_SKIP;
					c->cur = NULL;
					req_free(r);
					break;
				}
				perf_begin();
				memcpy(c->cur->buf + c->cur_got, in + pos, k);
				perf_end(PERF_COPY, k);
				perf_payload.write_copied += k;
			}
			c->cur_got += k;
			pos += k;
			if (c->cur_got == c->cur->length) {
				struct nbd_req *r = c->cur;

				c->cur = NULL;
				c->state = CS_REQ_HDR;
				c->bytes_written += r->length;
				ready_push(c, r);
				run_ready(c);
			}
			break;
		case CS_REQ_SKIP:
			k = (size_t)MIN(c->skip_left, (uint64_t)(len - pos));
			c->skip_left -= k;
			pos += k;
			if (!c->skip_left) {
				c->state = CS_REQ_HDR;
				error_reply(c, c->skip_cookie, NBD_CMD_WRITE, 0, c->skip_err,
					    c->skip_msg);
			}
			break;
		case CS_REQ_WAIT: /* proto_wants_input() said no: not reached */
		case CS_CLOSING:
			break;
		}
	}
	run_ready(c);
	return pos;
}

/* The session failed or ended: nothing more goes through it; send what is queued, close. */
static void tls_end(struct nbd_conn *c)
{
	c->tls_dead = true;
	c->pt_start = c->pt_end = 0;
	conn_close(c);
	/* Replies not yet encrypted can never be sent now. */
	out_done(c, c->out_bytes);
}

/*
 * Move bytes through the session: drive the handshake with the ciphertext offered (c->win),
 * decrypt records into c->pt while the protocol takes them.
 */
static void tls_pump_in(struct nbd_conn *c)
{
	const struct nbd_tls_ops *ops = c->srv->tls.ops;

	while (!c->tls_dead && c->state != CS_CLOSING) {
		int r;

		if (c->pt_start < c->pt_end) {
			size_t k;

			if (!proto_wants_input(c))
				return;
			k = proto_feed(c, c->pt + c->pt_start, c->pt_end - c->pt_start, false);
			c->pt_start += k;
			if (!k)
				return;
			continue;
		}
		c->pt_start = c->pt_end = 0;
		r = ops->read(c->tls, c->pt, TLS_PT_BYTES);
		if (r == 0)
			return;
		if (r < 0) {
			tls_end(c);
			return;
		}
		c->pt_end = (size_t)r;
	}
}

/* Encrypt queued replies while the ciphertext queue has room; close_notify at the end. */
static void tls_pump_out(struct nbd_conn *c)
{
	const struct nbd_tls_ops *ops = c->srv->tls.ops;

	if (c->tls_dead) {
		/* Replies that can never be encrypted now: dropped, so the connection can finish. */
		out_done(c, c->out_bytes);
		return;
	}
	while (c->out && c->wout_bytes < TLS_WOUT_LIMIT) {
		struct nbd_out *o = c->out;
		int r = 0;

		if (o->len)
			r = ops->write(c->tls, o->data, MIN(o->len, (size_t)TLS_PT_BYTES));
		if (r < 0) {
			tls_end(c);
			return;
		}
		if (!r && o->len)
			return; /* handshake still running */
		out_done(c, (size_t)r);
	}
	if (tls_notify_owed(c)) {
		c->tls_notified = true;
		ops->close(c->tls);
	}
}

static size_t tls_feed(struct nbd_conn *c, const uint8_t *in, size_t len)
{
	size_t taken;

	if (c->state == CS_CLOSING || c->tls_dead)
		return len; /* nothing more is read: drop it */
	c->win = in;
	c->win_len = len;
	c->win_pos = 0;
	tls_pump_in(c);
	/*
	 * The window is the caller's buffer, valid during this call only; what is left of it
	 * is the caller's to feed again. nbd_server_poll() also pumps (decrypted plaintext
	 * waiting for budget) and must find no ciphertext then, not a stale length over a NULL
	 * window (tests/fuzz/corpus/fuzz_tls/c-poll-after-partial-feed).
	 */
	taken = c->win_pos;
	c->win = NULL;
	c->win_len = c->win_pos = 0;
	tls_pump_out(c);
	return c->state == CS_CLOSING ? len : taken;
}

bool nbd_conn_wants_input(const struct nbd_conn *c)
{
	if (!c->tls)
		return proto_wants_input(c);
	/* Ciphertext is taken only when the plaintext already decrypted has been used. */
	return !c->tls_dead && c->pt_start == c->pt_end && proto_wants_input(c);
}

size_t nbd_conn_feed(struct nbd_conn *c, const void *buf, size_t len)
{
	const uint8_t *in = buf;
	size_t n;

	if (c->tls)
		return tls_feed(c, in, len);
	n = proto_feed(c, in, len, true);
	/* STARTTLS was acknowledged inside these bytes: the rest is the client's first flight. */
	if (c->tls && n < len)
		n += tls_feed(c, in + n, len - n);
	return n;
}

size_t nbd_conn_feed_ref(struct nbd_conn *c, const void *buf, size_t len,
			 const struct nbd_input_ops *ops, void *ref)
{
	size_t n;

	c->in_ops = ops;
	c->in_ref = ref;
	n = nbd_conn_feed(c, buf, len);
	c->in_ref = NULL;
	return n;
}

void *nbd_conn_direct_buf(struct nbd_conn *c, size_t *len)
{
	if (c->state != CS_REQ_DATA || !c->cur || c->tls || c->dead || c->input_closed ||
	    !c->cur->buf)
		return NULL;
	*len = (size_t)c->cur->length - c->cur_got;
	return c->cur->buf + c->cur_got;
}

void nbd_conn_direct_done(struct nbd_conn *c, size_t n)
{
	struct nbd_req *r = c->cur;

	/* As proto_feed()'s CS_REQ_DATA, without the copy: the bytes are in place already. */
	c->cur_got += n;
	if (c->cur_got < r->length)
		return;
	c->cur = NULL;
	c->state = CS_REQ_HDR;
	c->bytes_written += r->length;
	ready_push(c, r);
	run_ready(c);
}

size_t nbd_conn_direct_handle_len(const struct nbd_conn *c)
{
	const struct nbd_req *r = c->cur;
	uint32_t bs;

	if (c->state != CS_REQ_DATA || !r || c->tls || c->dead || c->input_closed || !r->buf ||
	    c->cur_got || !c->exp->dev->handle_writes)
		return 0;
	/* Aligned only: an unaligned WRITE is a read-modify-write that patches from r->buf. */
	bs = c->exp->dev->block_size;
	if (r->offset % bs || r->length % bs)
		return 0;
	return r->length;
}

void nbd_conn_direct_handle_done(struct nbd_conn *c, int handle, const struct nbd_handle_ops *ops)
{
	struct nbd_req *r = c->cur;

	r->hops = ops;
	r->handle = handle;
	nbd_conn_direct_done(c, r->length);
}

size_t nbd_conn_hdr_wanted(const struct nbd_conn *c)
{
	if (c->state != CS_REQ_HDR || !c->big_write || c->tls || !proto_wants_input(c))
		return 0;
	return sizeof(c->hdr) - c->hdr_len;
}

void nbd_conn_input_closed(struct nbd_conn *c)
{
	c->input_closed = true;
	conn_close(c);
}

bool nbd_conn_finished(const struct nbd_conn *c)
{
	return c->state == CS_CLOSING && c->nreqs == 0 && nbd_conn_output_pending(c) == 0;
}

/* ---- Connections ------------------------------------------------------------------------- */

int nbd_conn_create_peer(struct nbd_server *srv, const struct nbd_peer *peer, struct nbd_conn **out)
{
	struct nbd_peer who = { .addr = { .family = NET_AF_NONE } };
	struct nbd_conn *c;
	unsigned same = 0;
	uint8_t *p;

	if (peer) {
		who = *peer;
		net_addr_unmap(&who.addr);
	}
	if (srv->nconns >= srv->lim.max_conns) {
		srv->refused_full++;
		if (who.addr.family != NET_AF_NONE)
			log_refusal(srv, &who, "the server has %u connections (its maximum)",
				    srv->nconns);
		return -EBUSY;
	}
	if (who.addr.family != NET_AF_NONE) {
		for (c = srv->conns; c; c = c->next)
			if (!c->dead && net_addr_equal(&c->peer.addr, &who.addr))
				same++;
		if (same >= srv->lim.max_per_client) {
			srv->refused_cap++;
			log_refusal(srv, &who,
				    "%u connections from this address already (max-per-client %u)",
				    same, srv->lim.max_per_client);
			return -EDQUOT;
		}
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->srv = srv;
	c->peer = who;
	c->state = CS_CLIENT_FLAGS;
	c->tls_mode = srv->tls.mode;
	p = out_bytes(c, 18);
	if (!p) {
		free(c);
		return -ENOMEM;
	}
	nbd_put_be64(p, NBD_MAGIC);
	nbd_put_be64(p + 8, NBD_OPT_MAGIC);
	nbd_put_be16(p + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	c->next = srv->conns;
	srv->conns = c;
	srv->nconns++;
	*out = c;
	return 0;
}

int nbd_conn_create(struct nbd_server *srv, struct nbd_conn **out)
{
	return nbd_conn_create_peer(srv, NULL, out);
}

static void export_put(struct nbd_server *srv, struct nbd_export *e)
{
	e->refs--;
}

/* Free a dead connection whose requests have all left the devices. */
static void conn_free(struct nbd_conn *c)
{
	struct nbd_req *r;

	/* First, so that no write of ours is let out of the wait while we free the rest. */
	wl_drop_conn(c);
	while ((r = c->ready)) {
		c->ready = r->next;
		if (!c->ready)
			c->ready_tail = NULL;
		req_free(r);
	}
	while ((r = c->retry)) {
		c->retry = r->next;
		req_free(r);
	}
	if (c->cur)
		req_free(c->cur);
	out_done(c, c->out_bytes);
	queue_done(c, &c->wout, &c->wout_tail, &c->wout_bytes, c->wout_bytes);
	if (c->tls)
		c->srv->tls.ops->free(c->tls);
	free(c->pt);
	if (c->exp)
		export_put(c->srv, c->exp);
	free(c->optbuf);
	free(c->meta_name);
	free(c->meta_dirty);
	free(c);
}

static void export_free(struct nbd_export *e)
{
	if (e->release)
		e->release(e->ctx, e->dev);
	free(e->name);
	free(e->description);
	free(e->allow);
	free(e);
}

/* Free dead connections with nothing in a device, then removed exports nobody uses. */
static void sweep(struct nbd_server *srv)
{
	struct nbd_conn **cp = &srv->conns;
	struct nbd_export **ep = &srv->exports;

	while (*cp) {
		struct nbd_conn *c = *cp;

		if (c->dead && c->in_dev == 0) {
			*cp = c->next;
			conn_free(c);
		} else {
			cp = &c->next;
		}
	}
	if (!srv->nremoved)
		return;
	while (*ep) {
		struct nbd_export *e = *ep;

		if (e->removed && e->refs == 0) {
			*ep = e->next;
			export_free(e);
			srv->nremoved--;
		} else {
			ep = &e->next;
		}
	}
	srv->tail = ep;
}

void nbd_conn_destroy(struct nbd_conn *c)
{
	if (!c || c->dead)
		return;
	c->dead = true;
	c->srv->nconns--;
	sweep(c->srv);
}

int nbd_server_conn_info(const struct nbd_server *srv, unsigned idx, struct nbd_conn_info *out)
{
	const struct nbd_conn *c;

	for (c = srv->conns; c; c = c->next) {
		if (c->dead || idx--)
			continue;
		out->peer = c->peer;
		out->export_name = c->exp ? c->exp->name : NULL;
		out->tls = c->tls ? c->srv->tls.ops->describe(c->tls) : NULL;
		out->structured = c->structured;
		out->requests = c->nreqs;
		out->bytes_read = c->bytes_read;
		out->bytes_written = c->bytes_written;
		return 0;
	}
	return -ENOENT;
}

/* ---- Server and exports ------------------------------------------------------------------ */

int nbd_server_create(const struct nbd_limits *lim, struct nbd_server **out)
{
	struct nbd_server *srv = calloc(1, sizeof(*srv));

	if (!srv)
		return -ENOMEM;
	srv->tail = &srv->exports;
	if (lim)
		srv->lim = *lim;
	if (!srv->lim.max_conns)
		srv->lim.max_conns = NBD_DEFAULT_MAX_CONNS;
	/*
	 * nbdinfo --list sends NBD_OPT_LIST, then NBD_OPT_INFO (or GO) once per export: the
	 * default must let one connection ask about every export there can be, plus the usual
	 * handful (128 dropped nbdinfo --list at about 60 exports).
	 */
	if (!srv->lim.max_options)
		srv->lim.max_options = NBD_DEFAULT_MAX_EXPORTS + 128;
	if (!srv->lim.max_requests)
		srv->lim.max_requests = 128;
	if (!srv->lim.max_payload)
		srv->lim.max_payload = DEFAULT_PAYLOAD;
	if (!srv->lim.max_conn_bytes)
		srv->lim.max_conn_bytes = 64u * 1024 * 1024;
	if (!srv->lim.max_server_bytes)
		srv->lim.max_server_bytes = DEFAULT_SERVER_BYTES;
	if (!srv->lim.max_per_client)
		srv->lim.max_per_client = NBD_DEFAULT_MAX_PER_CLIENT;
	/* The advertised maximum must be at least the preferred block size (proto.md). */
	if (srv->lim.max_payload < 65536) {
		free(srv);
		return -EINVAL;
	}
	*out = srv;
	return 0;
}

int nbd_server_set_tls(struct nbd_server *srv, const struct nbd_tls_config *cfg)
{
	if (cfg->mode != NBD_TLS_OFF &&
	    (cfg->mode > NBD_TLS_REQUIRE || !cfg->ops || !cfg->ops->open || !cfg->ops->read ||
	     !cfg->ops->write || !cfg->ops->close || !cfg->ops->describe || !cfg->ops->free))
		return -EINVAL;
	srv->tls = *cfg;
	return 0;
}

int nbd_server_poll(struct nbd_server *srv)
{
	struct nbd_conn *c;
	int n = 0;

	/*
	 * The devices with requests inside, each once, found through the connections (at most
	 * max_conns and the dead ones draining), not the export list: with thousands of exports
	 * a walk of it on every pass costs more than the requests.
	 */
	srv->pass++;
	for (c = srv->conns; c; c = c->next) {
		if (c->in_dev && c->exp->polled != srv->pass) {
			c->exp->polled = srv->pass;
			blkdev_poll(c->exp->dev);
		}
	}
	for (c = srv->conns; c; c = c->next) {
		struct nbd_req *r;

		if (c->dead) {
			/* Completions of a vanished client: drop them (a drop may let a write of
			 * this connection out of the write list's wait: it lands here too). */
			while ((r = c->ready)) {
				c->ready = r->next;
				if (!c->ready)
					c->ready_tail = NULL;
				req_free(r);
				n++;
			}
			continue;
		}
		/* Retry what a full device queue refused, oldest first is not needed. */
		while ((r = c->retry)) {
			c->retry = r->next;
			ready_push(c, r);
		}
		n += run_ready(c);
		/* Plaintext decrypted earlier, now that completions have freed budget. */
		if (c->tls && c->pt_start < c->pt_end && proto_wants_input(c)) {
			tls_pump_in(c);
			n++;
		}
	}
	/*
	 * Requests waiting for buffer memory, once every completion above has freed what it
	 * held: in list order, each taking what it needs, so one that fits is not passed over.
	 */
	for (c = srv->conns; c; c = c->next) {
		if (c->dead || c->state != CS_REQ_WAIT || !buffer_fits(c, c->wait_size))
			continue;
		c->state = CS_REQ_HDR;
		request_header(c);
		if (c->tls && c->pt_start < c->pt_end && proto_wants_input(c))
			tls_pump_in(c);
		n++;
	}
	sweep(srv);
	return n;
}

bool nbd_server_busy(const struct nbd_server *srv)
{
	const struct nbd_conn *c;

	for (c = srv->conns; c; c = c->next) {
		const struct blkdev *dev = c->in_dev ? c->exp->dev : NULL;

		if (dev && !(dev->ops->signals_completion && dev->ops->signals_completion(dev)))
			return true;
		if (c->retry || (c->ready && !c->dead))
			return true;
		if (!c->dead && c->state == CS_REQ_WAIT && buffer_fits(c, c->wait_size))
			return true;
		if (!c->dead && c->tls && c->pt_start < c->pt_end && proto_wants_input(c))
			return true;
	}
	return false;
}

static char *dup_str(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = malloc(n);

	if (d)
		memcpy(d, s, n);
	return d;
}

/* A copy of allow list @allow (NULL for @n 0): 0, -EINVAL, -ENOMEM. */
static int copy_allow(const struct net_prefix *allow, unsigned n, struct net_prefix **out)
{
	*out = NULL;
	if (!n)
		return 0;
	if (!allow || n > NBD_MAX_ALLOW)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		if ((allow[i].addr.family != NET_AF_INET || allow[i].len > 32) &&
		    (allow[i].addr.family != NET_AF_INET6 || allow[i].len > 128))
			return -EINVAL;
	*out = malloc(n * sizeof(**out));
	if (!*out)
		return -ENOMEM;
	memcpy(*out, allow, n * sizeof(**out));
	return 0;
}

int nbd_server_add_export(struct nbd_server *srv, const struct nbd_export_config *cfg)
{
	struct net_prefix *allow;
	int rc;
	struct nbd_export *e;
	size_t nl;

	if (!cfg->name || !cfg->dev)
		return -EINVAL;
	nl = strlen(cfg->name);
	if (!nl || nl > NBD_MAX_NAME)
		return -EINVAL;
	if (cfg->description && strlen(cfg->description) > NBD_MAX_DESCRIPTION)
		return -EINVAL;
	if (cfg->dev->block_size < 512 || cfg->dev->block_size > 65536 ||
	    (cfg->dev->block_size & (cfg->dev->block_size - 1)))
		return -EINVAL;
	if (lookup_live(srv, (const uint8_t *)cfg->name, nl))
		return -EEXIST;
	if (srv->nlive >= NBD_DEFAULT_MAX_EXPORTS)
		return -ENOSPC;
	rc = copy_allow(cfg->allow, cfg->nallow, &allow);
	if (rc)
		return rc;
	e = calloc(1, sizeof(*e));
	if (!e) {
		free(allow);
		return -ENOMEM;
	}
	e->allow = allow;
	e->nallow = cfg->nallow;
	e->name = dup_str(cfg->name);
	e->description = dup_str(cfg->description ? cfg->description : "");
	if (!e->name || !e->description) {
		free(e->name);
		free(e->description);
		free(e->allow);
		free(e);
		return -ENOMEM;
	}
	e->dev = cfg->dev;
	e->read_only = cfg->read_only;
	e->tls_only = cfg->tls_only;
	e->extents = cfg->extents;
	e->bitmap_name = cfg->dirty ? cfg->bitmap_name : NULL;
	e->dirty = cfg->bitmap_name ? cfg->dirty : NULL;
	e->release = cfg->release;
	e->ctx = cfg->ctx;
	rc = table_insert(srv, e);
	if (rc) {
		free(e->name);
		free(e->description);
		free(e->allow);
		free(e);
		return rc;
	}
	*srv->tail = e;
	srv->tail = &e->next;
	return 0;
}

int nbd_server_remove_export(struct nbd_server *srv, const char *name, bool force)
{
	struct nbd_export *e;
	struct nbd_conn *c;

	e = lookup_live(srv, (const uint8_t *)name, strlen(name));
	if (!e)
		return -ENOENT;
	table_remove(srv, e);
	e->removed = true;
	srv->nremoved++;
	for (c = srv->conns; c; c = c->next) {
		if (c->dead || c->exp != e)
			continue;
		c->export_gone = true;
		if (force)
			conn_close(c);
	}
	sweep(srv);
	return 0;
}

int nbd_server_set_export_allow(struct nbd_server *srv, const char *name,
				const struct net_prefix *allow, unsigned n)
{
	struct net_prefix *copy;
	struct nbd_export *e;
	struct nbd_conn *c;
	int rc;

	e = lookup_live(srv, (const uint8_t *)name, strlen(name));
	if (!e)
		return -ENOENT;
	rc = copy_allow(allow, n, &copy);
	if (rc)
		return rc;
	free(e->allow);
	e->allow = copy;
	e->nallow = n;
	/* Who is no longer allowed loses the export now, not at its next connection. */
	for (c = srv->conns; c; c = c->next) {
		if (c->dead || c->exp != e || export_allows(e, c))
			continue;
		c->export_gone = true;
		conn_close(c);
	}
	return 0;
}

void nbd_server_set_log(struct nbd_server *srv, void (*log)(void *ctx, const char *line), void *ctx)
{
	srv->log = log;
	srv->log_ctx = ctx;
}

int nbd_server_set_max_per_client(struct nbd_server *srv, unsigned n)
{
	if (!n)
		return -EINVAL;
	srv->lim.max_per_client = n;
	return 0;
}

void nbd_server_stats(const struct nbd_server *srv, struct nbd_server_stats *out)
{
	out->max_per_client = srv->lim.max_per_client;
	out->refused_cap = srv->refused_cap;
	out->refused_full = srv->refused_full;
	out->refused_policy = srv->refused_policy;
}

int nbd_server_export_info(const struct nbd_server *srv, unsigned idx, struct nbd_export_info *out)
{
	const struct nbd_export *e;

	for (e = srv->exports; e; e = e->next) {
		if (e->removed || idx--)
			continue;
		out->name = e->name;
		out->description = e->description;
		out->size = export_size(e);
		out->read_only = export_ro(e);
		out->tls_only = e->tls_only;
		out->clients = e->refs;
		out->nallow = e->nallow;
		out->allow = e->allow;
		out->refused = e->refused;
		return 0;
	}
	return -ENOENT;
}

void nbd_server_destroy(struct nbd_server *srv)
{
	struct nbd_export *e;
	struct nbd_conn *c;
	bool waiting = true;

	if (!srv)
		return;
	for (c = srv->conns; c; c = c->next) {
		if (!c->dead) {
			c->dead = true;
			srv->nconns--;
		}
	}
	/* Requests inside devices must come back before their memory goes. */
	while (waiting) {
		waiting = false;
		for (e = srv->exports; e; e = e->next) {
			if (e->in_dev) {
				blkdev_poll(e->dev);
				waiting = true;
			}
		}
		nbd_server_poll(srv);
	}
	for (e = srv->exports; e; e = e->next) {
		srv->nremoved += !e->removed;
		e->removed = true;
	}
	sweep(srv);
	free(srv->htab);
	free_lists_release(srv);
	free(srv->zero_buf);
	free(srv);
}
