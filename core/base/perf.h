/* SPDX-License-Identifier: MIT */
/*
 * Where the cycles go: a fixed set of counters, one per stage of the data path (no locks: both
 * builds run one loop on one thread). Events and bytes are always counted; the stages' cycles
 * only while timing is on (perf_timing, below: two cycle-counter reads per piece).
 * docs/performance.md says what each stage covers and what was found.
 *
 * A CPU stage is measured with perf_begin() / perf_end(), strictly nested (every begin has its
 * end on every path). Its counter gets the piece's whole time (`cycles`) and its time minus the
 * stages measured inside it (`self`), so the self times of all stages, the idle passes and the
 * halts add up to at most the wall time: what is left is the rest of the main loop. A wait
 * (PERF_DISK_WAIT: from submission to completion, while the CPU does other things) is not CPU
 * time and is measured with perf_wait_begin() / perf_wait_end(); it overlaps everything else.
 *
 * The cycle counter is the platform's (core/base/plat.h: plat_cycles(), the TSC in the
 * firmware, nanoseconds on the host). Only the firmware shows the counters (the shell's
 * `perf`); the host build counts too, for tests.
 */
#ifndef CORE_BASE_PERF_H
#define CORE_BASE_PERF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/plat.h"

enum perf_stage {
	PERF_NBD_PARSE,	  /* an NBD request header decoded, checked, its buffer allocated */
	PERF_NBD_RUN,	  /* the NBD server advancing requests: into the pool, replies built */
	PERF_POOL_LOOKUP, /* the thin pool's mapping lookup of a volume block (btree) */
	PERF_DISK_WAIT,	  /* a data-disk request of the pool, submission to completion (wait) */
	PERF_COPY,	  /* data-path memcpy: payload, bounce, frame into pbuf / transmit buffer */
	PERF_ZERO_SCAN,	  /* READ data scanned for zero runs (structured replies) */
	PERF_LWIP_OUTPUT, /* replies handed to lwIP (tcp_write, tcp_output) */
	PERF_CHECKSUM,	  /* lwIP's Internet checksum (inet_chksum), both directions */
	PERF_NET_RX,	  /* a received frame through lwIP's input */
	PERF_NET_TX,	  /* a frame to virtio-net (linkoutput: gather, copy, doorbell) */
	PERF_DOORBELL,	  /* virtio doorbells rung (vq_kick's MMIO write: a VM exit) */
	PERF_CONSOLE,	  /* the main loop's console read (a UART port read) */
	PERF_DEV_POLL,	  /* devices_poll(): used rings, block completions, tx reclaim, rx */
	PERF_NBD_POLL,	  /* nbd_lwip_poll(): input fed to the NBD server, output to lwIP */
	PERF_POOL_POLL,	  /* appliance_poll(): the pool's queued I/O, completions, commit */
	PERF_LWIP_TIMERS, /* net_poll(): link, lwIP's timers */
	PERF_WAIT_POLL,	  /* passes that found nothing while requests were inside devices */
	PERF_IDLE_POLL,	  /* main-loop passes that found nothing to do */
	PERF_HALT,	  /* halted (HLT) until an interrupt */
	PERF_NR
};

struct perf_counter {
	uint64_t cycles; /* whole pieces */
	uint64_t self;	 /* minus the stages inside them */
	uint64_t events; /* pieces */
	uint64_t bytes;	 /* what the stage says: payload, frame or copy bytes */
};

#define PERF_MAX_DEPTH 8

struct perf_frame {
	uint64_t t0, child;
	bool timed; /* begun with perf_timing on: its end reads the counter too */
};

/* The state, for the inline calls below; read it with perf_snapshot(). */
extern struct perf_counter perf_ctr[PERF_NR];
extern struct perf_frame perf_stack[PERF_MAX_DEPTH];
extern unsigned perf_depth;

/*
 * Timing (`perf on`; off at boot). Under TCG a cycle-counter read is a call into QEMU, and
 * the data path measures several pieces per frame: timed, the counters cost the guest about
 * a sixth of its cycles (docs/performance.md, "Timing on and off"). Off, a piece only
 * counts its event and bytes. Pieces keep the setting they began with, so it may change
 * anywhere.
 */
extern bool perf_timing;

/*
 * How the span since the last perf_reset() was measured: timed throughout, untimed throughout,
 * or mixed (timing switched inside it, so cycles cover part of the span only).
 */
enum perf_span { PERF_SPAN_UNTIMED, PERF_SPAN_TIMED, PERF_SPAN_MIXED };
/* Switch timing (`perf on|off`); a change inside a span makes the span mixed. */
void perf_set_timing(bool on);
/* The span since the last perf_reset(): what perf_report() is told. */
enum perf_span perf_span_kind(void);

static inline void perf_begin(void)
{
	if (perf_depth < PERF_MAX_DEPTH)
		perf_stack[perf_depth] = perf_timing ? (struct perf_frame){ plat_cycles(), 0, true }
						     : (struct perf_frame){ 0, 0, false };
	perf_depth++;
}

static inline void perf_end(enum perf_stage s, uint64_t bytes)
{
	struct perf_counter *c = &perf_ctr[s];

	if (perf_depth == 0)
		return; /* unpaired: a bug, but never worth corrupting memory over */
	perf_depth--;
	if (perf_depth < PERF_MAX_DEPTH && perf_stack[perf_depth].timed) {
		uint64_t t = plat_cycles() - perf_stack[perf_depth].t0;
		uint64_t child = perf_stack[perf_depth].child;

		c->cycles += t;
		c->self += child < t ? t - child : 0;
		if (perf_depth > 0 && perf_depth - 1 < PERF_MAX_DEPTH)
			perf_stack[perf_depth - 1].child += t;
	}
	c->events++;
	c->bytes += bytes;
}

/* End the innermost piece without counting it anywhere (a main-loop pass that did work: its
 * time is the report's "rest"). */
static inline void perf_drop(void)
{
	if (perf_depth > 0)
		perf_depth--;
}

/*
 * A main-loop pass: its polls (PERF_CONSOLE .. PERF_LWIP_TIMERS, measured inside it with
 * perf_begin/perf_end) count in their own stages when the pass did work (perf_pass_work():
 * the pass's own glue is the report's "rest"), and in PERF_IDLE_POLL when it found nothing
 * (perf_pass_idle(): the polls' counters go back to what they were, their self time moves
 * to idle-poll, and stages nested deeper, such as a halt, keep theirs).
 */
#define PERF_POLL_FIRST PERF_CONSOLE
#define PERF_POLL_N	(PERF_LWIP_TIMERS - PERF_CONSOLE + 1)

struct perf_pass {
	struct perf_counter polls[PERF_POLL_N];
	bool saved; /* perf_detail was on at perf_pass_begin() */
};

/*
 * The polls are measured only while perf_detail is on (`perf detail on`): they are a piece
 * per poll per pass, which is most of the counters' own cost (docs/performance.md). Off, a
 * working pass's polls are in `rest` and an idle pass is one piece.
 */
extern bool perf_detail;

static inline void perf_poll_begin(void)
{
	if (perf_detail)
		perf_begin();
}

static inline void perf_poll_end(enum perf_stage s)
{
	if (perf_detail)
		perf_end(s, 0);
}

static inline void perf_pass_begin(struct perf_pass *p)
{
	p->saved = perf_detail;
	if (p->saved)
		for (unsigned i = 0; i < PERF_POLL_N; i++)
			p->polls[i] = perf_ctr[PERF_POLL_FIRST + i];
	perf_begin();
}

static inline void perf_pass_work(void)
{
	perf_drop();
}

/* A pass that found nothing counts whole in @s: PERF_IDLE_POLL, or PERF_WAIT_POLL when it
 * found nothing only because what it waits for is still inside a device (perf_pass_wait()). */
static inline void perf_pass_nothing(const struct perf_pass *p, enum perf_stage s)
{
	uint64_t self = 0;

	for (unsigned i = 0; i < PERF_POLL_N && p->saved; i++) {
		self += perf_ctr[PERF_POLL_FIRST + i].self - p->polls[i].self;
		perf_ctr[PERF_POLL_FIRST + i] = p->polls[i];
	}
	perf_end(s, 0);
	perf_ctr[s].self += self;
}

static inline void perf_pass_idle(const struct perf_pass *p)
{
	perf_pass_nothing(p, PERF_IDLE_POLL);
}

/* A pass that found nothing while device I/O was outstanding: the spinning (or the halt)
 * of a loop that only waits on its disks (docs/performance.md, "wait-poll"). */
static inline void perf_pass_wait(const struct perf_pass *p)
{
	perf_pass_nothing(p, PERF_WAIT_POLL);
}

/* Bytes for @s without an event (the NBD payload, counted where the request is accepted). */
static inline void perf_add_bytes(enum perf_stage s, uint64_t bytes)
{
	perf_ctr[s].bytes += bytes;
}

/* A piece of @s counted but not timed (its time stays in the enclosing stage): for pieces so
 * short that the two cycle-counter reads would cost more than the piece. */
static inline void perf_count(enum perf_stage s, uint64_t bytes)
{
	perf_ctr[s].events++;
	perf_ctr[s].bytes += bytes;
}

/* The start of a wait: the cycle counter, or 0 with timing off (nothing read). */
static inline uint64_t perf_wait_begin(void)
{
	return perf_timing ? plat_cycles() : 0;
}

/* A wait begun at @t0 (perf_wait_begin()) ends: not CPU time, so not nested and not
 * subtracted from anything. Untimed (@t0 0), only its event and bytes count. */
static inline void perf_wait_end(enum perf_stage s, uint64_t t0, uint64_t bytes)
{
	if (t0)
		perf_ctr[s].cycles += plat_cycles() - t0;
	perf_ctr[s].events++;
	perf_ctr[s].bytes += bytes;
}

/* Zero every counter and start the wall-time span over (the shell's `perf reset`). */
void perf_reset(void);

/*
 * What became of received WRITE payloads on their way to the disk (docs/performance.md
 * "Copies and allocations on the data path"), since the last perf_reset(): bytes the NBD
 * server took by reference (borrowed input, no copy), bytes copied somewhere between the
 * transport and the disk (the server's receive copy, a bounce of a segment list, the pool's
 * partial-block bounce), and received frames the network glue copied because the driver was
 * short of spare buffers (any frame, not only payload). perf_report() prints them.
 */
struct perf_payload {
	uint64_t write_borrowed, write_copied, rx_frames_copied;
};
extern struct perf_payload perf_payload;

/*
 * Whether the network or the appliance limits sending (docs/performance.md "Keeping the pipe
 * full"), since the last perf_reset(), over every NBD connection of the lwIP glue
 * (net/lwip/nbd_lwip.c; the host build leaves them 0):
 * - max_flight: the most bytes sent and not yet acknowledged on one connection (lwIP's
 *   snd_nxt - lastack), sampled after each batch of output and at each acknowledgement: above
 *   65,535 only with window scaling;
 * - max_peer_wnd: the largest send window the peer advertised (scaled), seen at each batch;
 * - batches: the times the glue handed replies to lwIP and called tcp_output(), each counted
 *   in exactly one of the next six by why sending stopped there: the peer's window or the
 *   congestion window (whichever is smaller) was full, with bytes left in lwIP's queue or in
 *   the server's (stop_peer_wnd, stop_cwnd); tcp_output() failed, the NIC refusing a frame
 *   (stop_netif); our send buffer (TCP_SND_BUF or the segment queue) was full while the
 *   window still had room for a segment (stop_sndbuf: the appliance's own limit); lwIP sent
 *   everything, the window had room and the server had nothing more to send while requests
 *   were still being answered (stop_starved: the data path behind the network did not keep
 *   up); or every request was answered (drained: the client's queue depth is the limit);
 * - dry: acknowledgements that left nothing in flight while the client still waited for
 *   replies (requests unanswered, or replies queued but not yet handed to lwIP): the wire
 *   idle, waiting for the appliance (its disks, its CPU, its send buffer), not the network.
 */
struct perf_tcp {
	uint64_t max_flight, max_peer_wnd, batches;
	uint64_t stop_peer_wnd, stop_cwnd, stop_netif, stop_sndbuf, stop_starved, drained;
	uint64_t dry;
};
extern struct perf_tcp perf_tcp;
/* A copy of the counters and the cycles since the last reset (or the first call). */
void perf_snapshot(struct perf_counter out[PERF_NR], uint64_t *wall_cycles);
/* The stage's short name ("nbd-parse", ...), NULL past the last. */
const char *perf_stage_name(unsigned s);

/*
 * The report, one line at a time to @out (no newline in the lines). @span says how the
 * counters were measured (perf_span_kind()).
 * - PERF_SPAN_TIMED: a table of every stage with events, cycles, self cycles, self and whole %
 *   of the wall time, cycles per event, CPU milliseconds per GiB of NBD payload and cycles per
 *   NBD request (both from PERF_NBD_PARSE's events and bytes), then the rest of the loop, the
 *   busy share and the mean disk wait.
 * - PERF_SPAN_UNTIMED: no cycle figures at all (they would be zeros, or the whole wall as
 *   "rest"): a line saying so, then each stage's events, bytes and events per NBD request.
 * - PERF_SPAN_MIXED: the timed report after a line saying its cycles cover part of the span.
 * Then, in every case, the payload and TCP output counters. @hz is the cycle counter's rate
 * (plat_cycles_hz()).
 */
void perf_report(const struct perf_counter c[PERF_NR], uint64_t wall, uint64_t hz,
		 enum perf_span span, void (*out)(void *ctx, const char *line), void *ctx);

#endif
