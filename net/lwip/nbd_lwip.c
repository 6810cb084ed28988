/* SPDX-License-Identifier: MIT */
/*
 * lwIP raw API under the NBD server (see nbd_lwip.h and docs/network.md).
 *
 * lwIP's callbacks only record what happened (data arrived, bytes acknowledged, the
 * connection died); nbd_lwip_poll() does the work from the main loop. That keeps every
 * tcp_close/tcp_abort out of lwIP's own call stack, where it would need ERR_ABRT handling.
 *
 * Held input is a list of single pbufs linked through pbuf->next. It is not an lwIP chain
 * (tot_len is not maintained across it; lwIP's u16 tot_len could not hold a 512 KiB window
 * anyway): each pbuf is detached before it is freed, so pbuf_free() releases exactly one.
 *
 * WRITE payloads are borrowed (nbd_conn_feed_ref(), docs/nbd.md "Borrowed input"): the server
 * takes a pbuf_ref() on each pbuf whose bytes it keeps and pbuf_free()s it when the request
 * is done, so the block device reads the payload where the NIC put it. The window reopens
 * for every byte fed at once, as before (tcp_recved() is never tied to a completion: a
 * 256 KiB WRITE with a 64 KiB window would wait forever); what the server holds is bounded by
 * its in-flight limit (max_conn_bytes) and, in pbufs, by its BORROW_MAX_HOLDS (1,024): a held
 * pbuf keeps a driver receive buffer or a pool pbuf (netif_vnet.c copies frames into the pool
 * when the driver runs short of spares), and those must not all be held.
 * A pbuf the server holds has been detached from our list (next NULL) before it can be
 * freed by the server's last release: a release while we still hold it only drops a count.
 */
#include "net/lwip/nbd_lwip.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/perf.h"
#include "core/base/plat.h"
#include "core/base/util.h"
#include "net/lwip/lwip_err.h"
#include "net/lwip/netif_vnet.h"

#include "lwip/pbuf.h"
#include "lwip/tcp.h"

#define MAX_IOV 16
/* Smaller output pieces (reply headers, option replies) are copied: a PBUF_ROM per 16-byte
 * header would cost a pbuf each and make segments of dozens of fragments. */
#define ZEROCOPY_MIN 1024
/* tcp_write() takes a u16 length: a larger piece goes in pieces of this size (not 0xffff, so
 * a 64 KiB READ does not leave a 1-byte tail, which would be copied). */
#define WRITE_MAX 0xf000u
/*
 * How far lwIP's send queue may run ahead of the wire: up to the peer's largest window plus
 * SEND_AHEAD, refilled once it is below the window plus half that. lwIP's tcp_write() walks
 * the whole unsent list to find its tail, once per call, so a queue as long as TCP_SND_BUF
 * allows (8 MiB, for the windows of a tap) behind a 64 KiB window (user networking's) made
 * every acknowledgement's refill walk a thousand segments. A window's worth plus 128 KiB
 * keeps segments ready for tcp_input()'s own tcp_output() when an ACK opens the window,
 * and the half-way refill hands them over in batches of 64 KiB or more, not a piece per ACK.
 */
#define SEND_AHEAD (128 * 1024u)
/* tcp_poll interval in TCP coarse-timer ticks (500 ms): write retries after ERR_MEM. */
#define POLL_TICKS 2
/* A vanished client that never sends a RST: keepalive finds it within ~2 minutes. Live but
 * idle clients answer the probes and stay. */
#define KEEP_IDLE_MS  60000
#define KEEP_INTVL_MS 10000
#define KEEP_CNT      6
/* tcp_close() can fail for lack of memory; retry from the loop, then abort. */
#define CLOSE_RETRY_NS (5 * NSEC_PER_SEC)

struct lconn {
	struct lconn *next;
	struct tcp_pcb *pcb; /* NULL once lwIP freed it (error) or we let it go */
	struct nbd_conn *c;
	struct pbuf *in, *in_tail; /* received, not yet consumed (see the file comment) */
	size_t in_off;		   /* bytes of @in's first pbuf already consumed */
	size_t inflight;	   /* handed to tcp_write, not yet acknowledged */
	bool eof;		   /* the client closed its side */
	bool eof_told;		   /* ... and the server knows */
	bool dead;		   /* tcp_err: the pcb is gone */
	uint64_t close_deadline;   /* nonzero while a failed tcp_close is retried */
	uint64_t drain_epoch;	   /* draining: net_tx_epoch() when its pcb went */
};

struct nbd_lwip {
	struct nbd_server *srv;
	struct tcp_pcb *lpcb;
	struct lconn *conns;
	/* Gone with output unacknowledged: their buffers wait for the NIC (lconn_destroy). */
	struct lconn *draining;
};

/* ---- lwIP callbacks: record only --------------------------------------------------------- */

static err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
	struct lconn *lc = arg;

	(void)pcb;
	if (!p) {
		lc->eof = true;
		return ERR_OK;
	}
	if (err != ERR_OK) {
		pbuf_free(p);
		return err;
	}
	/* Append the chain's pbufs to our list; the last one's next is already NULL. */
	if (lc->in_tail)
		lc->in_tail->next = p;
	else
		lc->in = p;
	while (p->next)
		p = p->next;
	lc->in_tail = p;
	return ERR_OK;
}

static err_t on_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
	struct lconn *lc = arg;
	size_t n = len < lc->inflight ? len : lc->inflight;

	/* perf_tcp: what is still in flight after this acknowledgement (a compare, a store), and
	 * whether it acknowledged all we handed over while the client still waits for replies:
	 * the wire idle, waiting for us (a second compare; the calls only then). */
	if (pcb->snd_nxt - pcb->lastack > perf_tcp.max_flight)
		perf_tcp.max_flight = pcb->snd_nxt - pcb->lastack;
	else if (n && n == lc->inflight &&
		 (nbd_conn_output_pending(lc->c) > n || nbd_conn_requests(lc->c)))
		perf_tcp.dry++;
	/* Acknowledged: lwIP holds no reference to these bytes any more (zero-copy or not). */
	lc->inflight -= n;
	nbd_conn_output_done(lc->c, n);
	return ERR_OK;
}

static void on_err(void *arg, err_t err)
{
	struct lconn *lc = arg;

	/* lwIP freed the pcb (and every segment pointing into our output) before calling us;
	 * the NIC may still hold frames of them (lconn_destroy). */
	(void)err;
	lc->pcb = NULL;
	lc->dead = true;
}

static void lconn_write(struct lconn *lc);

static err_t on_poll(void *arg, struct tcp_pcb *pcb)
{
	(void)pcb;
	lconn_write(arg);
	return ERR_OK;
}

static void lconn_set_callbacks(struct tcp_pcb *pcb, struct lconn *lc)
{
	tcp_arg(pcb, lc);
	tcp_recv(pcb, lc ? on_recv : NULL);
	tcp_sent(pcb, lc ? on_sent : NULL);
	tcp_err(pcb, lc ? on_err : NULL);
	tcp_poll(pcb, lc ? on_poll : NULL, POLL_TICKS);
}

/*
 * The client's address from the pcb: lwIP keeps an IPv4 address as a u32 already in network
 * byte order (ip4_addr_t.addr), so its bytes in memory are the address's bytes in order.
 */
static void peer_of(const struct tcp_pcb *pcb, struct nbd_peer *p)
{
	memset(p, 0, sizeof(*p));
	p->port = pcb->remote_port; /* host order */
#if LWIP_IPV6
	if (IP_IS_V6(&pcb->remote_ip)) {
		p->addr.family = NET_AF_INET6;
		memcpy(p->addr.bytes, ip_2_ip6(&pcb->remote_ip)->addr, 16);
		return;
	}
#endif
	p->addr.family = NET_AF_INET;
	memcpy(p->addr.bytes, &ip_2_ip4(&pcb->remote_ip)->addr, 4);
}

static err_t on_accept(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct nbd_lwip *nl = arg;
	struct nbd_peer peer;
	struct lconn *lc;
	int rc;

	if (err != ERR_OK || !pcb)
		return ERR_VAL;
	peer_of(pcb, &peer);
	lc = calloc(1, sizeof(*lc));
	rc = lc ? nbd_conn_create_peer(nl->srv, &peer, &lc->c) : -ENOMEM;
	if (rc) {
		/*
		 * Too many clients, this client at its connection cap (the server logged it) or
		 * no memory: the client sees a reset, the others nothing.
		 */
		free(lc);
		tcp_abort(pcb);
		return ERR_ABRT;
	}
	lc->pcb = pcb;
	lconn_set_callbacks(pcb, lc);
	/* Replies are queued whole and pushed with tcp_output(); Nagle would only delay them. */
	tcp_nagle_disable(pcb);
	ip_set_option(pcb, SOF_KEEPALIVE);
	pcb->keep_idle = KEEP_IDLE_MS;
	pcb->keep_intvl = KEEP_INTVL_MS;
	pcb->keep_cnt = KEEP_CNT;
	lc->next = nl->conns;
	nl->conns = lc;
	return ERR_OK;
}

/* ---- Per connection, from the main loop ------------------------------------------------- */

/*
 * lwIP's reference count is a u8 (LWIP_PBUF_REF_T): a pbuf is one receive buffer of at most
 * VNET_RX_BUF_SIZE (4 KiB) or one pool pbuf, and each hold is a stretch of a different WRITE
 * (each behind its own 28-byte header), so at most 4096 / 29 = 141 holds can land on one pbuf.
 */
static void in_hold(void *ctx, void *ref)
{
	(void)ctx;
	pbuf_ref(ref);
}

static void in_release(void *ctx, void *ref)
{
	(void)ctx;
	pbuf_free(ref); /* one reference: a pbuf we hold too only drops a count */
}

static const struct nbd_input_ops in_ops = { .hold = in_hold, .release = in_release };

/* Offer held input to the server; reopen the window for exactly what it consumed. */
static void lconn_feed(struct lconn *lc)
{
	while (lc->in && nbd_conn_wants_input(lc->c)) {
		struct pbuf *p = lc->in;
		size_t avail = p->len - lc->in_off;
		size_t k = nbd_conn_feed_ref(lc->c, (const uint8_t *)p->payload + lc->in_off, avail,
					     &in_ops, p);

		if (k && lc->pcb)
			tcp_recved(lc->pcb, (u16_t)k); /* k <= p->len, a u16 */
		lc->in_off += k;
		if (k < avail)
			break; /* back-pressure: keep the rest */
		lc->in = p->next;
		if (!lc->in)
			lc->in_tail = NULL;
		p->next = NULL; /* free this pbuf alone */
		pbuf_free(p);
		lc->in_off = 0;
	}
	if (lc->eof && !lc->in && !lc->eof_told) {
		lc->eof_told = true;
		nbd_conn_input_closed(lc->c);
	}
}

/*
 * After a batch of output and its tcp_output() (@rc): count why sending stopped there, in
 * perf_tcp (core/base/perf.h, docs/performance.md "Keeping the pipe full"). Reads lwIP's pcb
 * fields only. The window is the smaller of the peer's and the congestion window; it is what
 * stopped us when lwIP kept segments queued (unsent) or when our buffer filled exactly as the
 * window did (less than a segment of room left).
 */
static void pipe_note(const struct lconn *lc, err_t rc)
{
	const struct tcp_pcb *pcb = lc->pcb;
	u32_t flight = pcb->snd_nxt - pcb->lastack;
	u32_t wnd = MIN(pcb->snd_wnd, pcb->cwnd);

	perf_tcp.batches++;
	if (flight > perf_tcp.max_flight)
		perf_tcp.max_flight = flight;
	if (pcb->snd_wnd > perf_tcp.max_peer_wnd)
		perf_tcp.max_peer_wnd = pcb->snd_wnd;
	if (rc != ERR_OK)
		perf_tcp.stop_netif++;
	else if (pcb->unsent ||
		 (nbd_conn_output_pending(lc->c) > lc->inflight && (u64_t)flight + pcb->mss > wnd))
		*(pcb->snd_wnd <= pcb->cwnd ? &perf_tcp.stop_peer_wnd : &perf_tcp.stop_cwnd) += 1;
	else if (nbd_conn_output_pending(lc->c) > lc->inflight)
		perf_tcp.stop_sndbuf++; /* tcp_sndbuf() 0 or tcp_write() ERR_MEM */
	else if (nbd_conn_requests(lc->c))
		perf_tcp.stop_starved++;
	else
		perf_tcp.drained++;
}

/* The most output lwIP may hold for @lc (SEND_AHEAD). */
static size_t send_mark(const struct lconn *lc)
{
	return (size_t)lc->pcb->snd_wnd_max + SEND_AHEAD;
}

/* Hand queued output to lwIP until its send buffer, its queue or send_mark() is full. */
static void lconn_write(struct lconn *lc)
{
	struct nbd_iov iov[MAX_IOV];
	bool wrote = false;
	size_t mark;

	if (!lc->pcb || lc->close_deadline)
		return;
	if (nbd_conn_output_pending(lc->c) <= lc->inflight)
		return;
	mark = send_mark(lc);
	if (lc->inflight + SEND_AHEAD / 2 > mark)
		return; /* enough queued: refill in one batch later */
	perf_begin();
	while (nbd_conn_output_pending(lc->c) > lc->inflight) {
		unsigned n = 0;
		bool full = false;

		nbd_conn_output(lc->c, lc->inflight, iov, MAX_IOV, &n);
		if (!n)
			break;
		for (unsigned i = 0; i < n && !full; i++) {
			/* A piece larger than one tcp_write() goes on in the same pass while lwIP
			 * has room (it used to end the pass after 64 KiB of a 256 KiB READ). */
			for (size_t off = 0; off < iov[i].len;) {
				size_t room = MIN(MIN(tcp_sndbuf(lc->pcb), WRITE_MAX), /* u16 */
						  mark - lc->inflight);
				size_t len = MIN(iov[i].len - off, room);
				u8_t flags = TCP_WRITE_FLAG_MORE;

				if (len == 0) {
					full = true;
					break;
				}
				if (len < ZEROCOPY_MIN)
					flags |= TCP_WRITE_FLAG_COPY;
				/* ERR_MEM: the send queue is full; on_sent/on_poll and the loop
				 * retry. */
				if (tcp_write(lc->pcb, (const uint8_t *)iov[i].base + off,
					      (u16_t)len, flags) != ERR_OK) {
					full = true;
					break;
				}
				lc->inflight += len;
				off += len;
				wrote = true;
			}
		}
		if (full)
			break;
	}
	if (wrote)
		pipe_note(lc, tcp_output(lc->pcb));
	perf_end(PERF_LWIP_OUTPUT, 0);
}

static void lconn_free_input(struct lconn *lc)
{
	while (lc->in) {
		struct pbuf *p = lc->in;

		lc->in = p->next;
		p->next = NULL;
		pbuf_free(p);
	}
	lc->in_tail = NULL;
}

static void lconn_free(struct lconn *lc)
{
	nbd_conn_destroy(lc->c); /* its buffers go back to the server's free lists */
	free(lc);
}

/*
 * Forget @lc (unlinked by the caller): abort its pcb if it still has one; free it, or, when
 * output it handed to lwIP was never acknowledged, put it on @nl's draining list. tcp_abort
 * (or lwIP itself before tcp_err) frees the queued segments, but a frame of them may still be
 * on the transmit ring: the driver holds its pbufs, whose PBUF_ROM pieces point into our READ
 * buffers. Freed now, such a buffer could be refilled with another client's READ before the
 * device reads the frame, and those bytes would leave in this connection's stream. So the
 * buffers stay until every frame handed to the NIC by reference up to now came back
 * (nbd_lwip_poll). No time limit: a device that never returns a frame keeps the memory.
 */
static void lconn_destroy(struct nbd_lwip *nl, struct lconn *lc)
{
	if (lc->pcb) {
		lconn_set_callbacks(lc->pcb, NULL);
		tcp_abort(lc->pcb);
		lc->pcb = NULL;
	}
	lconn_free_input(lc);
	if (lc->inflight) {
		lc->drain_epoch = net_tx_epoch();
		if (!net_tx_returned(lc->drain_epoch)) {
			/* Nothing more comes in: the server winds the connection down meanwhile. */
			if (!lc->eof_told) {
				lc->eof_told = true;
				nbd_conn_input_closed(lc->c);
			}
			lc->next = nl->draining;
			nl->draining = lc;
			return;
		}
	}
	lconn_free(lc);
}

/* Free the draining connections whose frames all came back from the device. */
static void lconn_drain(struct nbd_lwip *nl)
{
	struct lconn *lc, **pp;

	for (pp = &nl->draining; (lc = *pp) != NULL;) {
		if (net_tx_returned(lc->drain_epoch)) {
			*pp = lc->next;
			lconn_free(lc);
		} else {
			pp = &lc->next;
		}
	}
}

/*
 * Close gracefully once the server is done and everything sent was acknowledged (so lwIP
 * references none of our output). True when @lc can be freed.
 */
static bool lconn_try_close(struct lconn *lc)
{
	uint64_t now = plat_now_ns();

	if (!lc->close_deadline)
		lc->close_deadline = now + CLOSE_RETRY_NS;
	/* A successful tcp_close may free the pcb at once (e.g. RST for unread data): no
	 * callback may reach @lc afterwards, so they go first and come back on failure. */
	lconn_set_callbacks(lc->pcb, NULL);
	if (tcp_close(lc->pcb) == ERR_OK) {
		lc->pcb = NULL; /* lwIP finishes the FIN handshake on its own */
		return true;
	}
	lconn_set_callbacks(lc->pcb, lc);
	return now >= lc->close_deadline; /* then lconn_destroy() aborts it */
}

static bool lconn_should_close(const struct lconn *lc)
{
	return lc->close_deadline || (nbd_conn_finished(lc->c) && lc->inflight == 0);
}

/* ---- The listener and the loop ------------------------------------------------------------ */

int nbd_lwip_listen(struct nbd_server *srv, uint16_t port, struct nbd_lwip **out)
{
	struct nbd_lwip *nl;
	struct tcp_pcb *pcb, *lpcb;
	int rc;

	nl = calloc(1, sizeof(*nl));
	if (!nl)
		return -ENOMEM;
	pcb = tcp_new();
	if (!pcb) {
		free(nl);
		return -ENOMEM;
	}
	rc = net_errno(tcp_bind(pcb, IP_ANY_TYPE, port));
	if (rc) {
		tcp_abort(pcb);
		free(nl);
		return rc;
	}
	/* Keepalive settings are inherited by accepted pcbs (SOF_INHERITED). */
	lpcb = tcp_listen_with_backlog(pcb, TCP_DEFAULT_LISTEN_BACKLOG);
	if (!lpcb) {
		tcp_abort(pcb);
		free(nl);
		return -ENOMEM;
	}
	nl->srv = srv;
	nl->lpcb = lpcb;
	tcp_arg(lpcb, nl);
	tcp_accept(lpcb, on_accept);
	*out = nl;
	return 0;
}

void nbd_lwip_poll(struct nbd_lwip *nl)
{
	struct lconn *lc, **pp;

	if (nl->draining)
		lconn_drain(nl);
	/* Same order as host/nbd_sock.c: feed, let the devices run, feed again, send, close. */
	for (lc = nl->conns; lc; lc = lc->next)
		if (!lc->dead)
			lconn_feed(lc);
	nbd_server_poll(nl->srv);
	for (pp = &nl->conns; (lc = *pp) != NULL;) {
		bool gone = lc->dead;

		if (!gone) {
			lconn_feed(lc); /* budget freed by completions */
			lconn_write(lc);
			if (lconn_should_close(lc))
				gone = lconn_try_close(lc);
		}
		if (gone) {
			*pp = lc->next;
			lconn_destroy(nl, lc);
		} else {
			pp = &lc->next;
		}
	}
}

void nbd_lwip_close(struct nbd_lwip *nl)
{
	if (!nl)
		return;
	while (nl->conns) {
		struct lconn *lc = nl->conns;

		nl->conns = lc->next;
		lconn_destroy(nl, lc);
	}
	/* Shutting down: the buffers go now whatever the NIC still holds (nothing runs on). */
	while (nl->draining) {
		struct lconn *lc = nl->draining;

		nl->draining = lc->next;
		lconn_free(lc);
	}
	tcp_arg(nl->lpcb, NULL);
	tcp_accept(nl->lpcb, NULL);
	tcp_close(nl->lpcb); /* a listening pcb closes without waiting */
	free(nl);
}
