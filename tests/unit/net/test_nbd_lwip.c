/* SPDX-License-Identifier: MIT */
/*
 * The NBD glue over lwIP's raw API (net/lwip/nbd_lwip.c) against a fake of the calls it makes,
 * compiled with lwIP's real headers (the Makefile adds them for tests/unit/net/): the fake
 * records every tcp_write() (address, length, flags) and lets the test acknowledge bytes
 * (the tcp_sent callback), deliver input (tcp_recv), reset a connection (tcp_err) and see
 * tcp_close() / tcp_abort(). What it checks:
 *  - READ data goes to tcp_write() by reference (no TCP_WRITE_FLAG_COPY, the address inside
 *    the server's buffer), and that memory stays unchanged until acknowledged although the
 *    same range is rewritten and read again meanwhile; after the acknowledgement the buffer
 *    is reused (it went back to the server);
 *  - a connection reset with unacknowledged zero-copy output is freed without touching the
 *    dead pcb (lwIP already freed it), and everything is given back at the end (the
 *    sanitizer's malloc hook counts allocations and frees);
 *  - after DISC the pcb is closed only once everything sent was acknowledged;
 *  - a connection that dies (RST, or lwIP aborting it) with unacknowledged output keeps its
 *    buffers while the fake NIC still holds frames handed to it by reference before then
 *    (net_tx_epoch/net_tx_returned, faked here): another client's WRITE and READ get other
 *    buffers and the dead one's bytes stay as they were; they go back once the NIC returned
 *    those frames (frames handed over later do not hold them), or at shutdown;
 *  - a WRITE's payload is borrowed: the device gets a segment list over the received pbufs'
 *    own payloads, the pbufs stay referenced (pbuf_ref) until the request completes and are
 *    then freed exactly once, while the window was reopened (tcp_recved) for every byte at
 *    once, before the completion;
 *  - perf_tcp counts why each batch of output stopped, from the pcb's fields after
 *    tcp_output(): every reply answered; our send buffer full with the window open; the
 *    peer's window or the congestion window (segments left unsent, or no room for one more);
 *    tcp_output() failing; nothing to send while a request is unanswered; the
 *    acknowledgements that empty the wire while the client waits for replies (ran dry: a
 *    request unanswered, or a reply's rest still queued); the most bytes in flight;
 *  - lwIP is handed at most the peer's largest window plus 128 KiB of output, refilled once
 *    below the window plus 64 KiB (send_mark()).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/perf.h"
#include "core/base/util.h"
#include "host/hostdev.h"
#include "net/lwip/nbd_lwip.h"
#include "net/lwip/netif_vnet.h"
#include "net/nbd/nbd_proto.h"
#include "net/nbd/nbd_server.h"
#include "tests/support/alloc_count.h"
#include "tests/support/harness.h"
#include "tests/support/nbd_client.h"
#include "tests/support/queued_dev.h"

#include "lwip/pbuf.h"
#include "lwip/tcp.h"

/* ---- The fake lwIP ----------------------------------------------------------------------- */

#define SNDBUF	  (512 * 1024)
#define MAX_WRITE 4096

const ip_addr_t ip_addr_any;

struct wrec {
	struct tcp_pcb *pcb;
	const uint8_t *data;
	u16_t len;
	u8_t flags;
	uint8_t *copy; /* what the bytes were when written */
};

static struct {
	tcp_accept_fn accept;
	void *accept_arg;
	struct tcp_pcb *listener;
	struct wrec w[MAX_WRITE];
	unsigned nw;
	unsigned closes, aborts;
	struct tcp_pcb *closed, *aborted;
	/* The NIC: frames handed to it by reference so far, and the sequence number of the
	 * oldest it still holds (UINT64_MAX: none). */
	uint64_t tx_seq, nic_oldest;
	uint64_t recved;     /* bytes tcp_recved() reopened */
	long pbufs_live;     /* pbufs delivered and not yet freed */
	unsigned pbuf_frees; /* pbuf_free() calls that freed one */
	err_t output_rc;     /* what tcp_output() returns */
} fk;

uint64_t net_tx_epoch(void)
{
	return fk.tx_seq;
}

bool net_tx_returned(uint64_t epoch)
{
	return epoch <= fk.nic_oldest;
}

struct tcp_pcb *tcp_new(void)
{
	struct tcp_pcb *pcb = calloc(1, sizeof(*pcb));

	if (pcb) {
		pcb->snd_buf = SNDBUF;
		pcb->snd_wnd = pcb->snd_wnd_max = pcb->cwnd = 4 * SNDBUF;
		pcb->mss = 1460;
	}
	return pcb;
}

err_t tcp_bind(struct tcp_pcb *pcb, const ip_addr_t *ipaddr, u16_t port)
{
	return ERR_OK;
}

struct tcp_pcb *tcp_listen_with_backlog(struct tcp_pcb *pcb, u8_t backlog)
{
	return pcb;
}

void tcp_accept(struct tcp_pcb *pcb, tcp_accept_fn accept)
{
	fk.accept = accept;
	fk.accept_arg = pcb->callback_arg;
	fk.listener = pcb;
}

void tcp_arg(struct tcp_pcb *pcb, void *arg)
{
	pcb->callback_arg = arg;
}

void tcp_recv(struct tcp_pcb *pcb, tcp_recv_fn recv)
{
	pcb->recv = recv;
}

void tcp_sent(struct tcp_pcb *pcb, tcp_sent_fn sent)
{
	pcb->sent = sent;
}

void tcp_err(struct tcp_pcb *pcb, tcp_err_fn err)
{
	pcb->errf = err;
}

void tcp_poll(struct tcp_pcb *pcb, tcp_poll_fn poll, u8_t interval)
{
	pcb->poll = poll;
	pcb->pollinterval = interval;
}

void tcp_recved(struct tcp_pcb *pcb, u16_t len)
{
	fk.recved += len;
}

err_t tcp_write(struct tcp_pcb *pcb, const void *dataptr, u16_t len, u8_t apiflags)
{
	struct wrec *w;

	if (len > pcb->snd_buf || fk.nw == MAX_WRITE)
		return ERR_MEM;
	w = &fk.w[fk.nw++];
	w->pcb = pcb;
	w->data = dataptr;
	w->len = len;
	w->flags = apiflags;
	w->copy = malloc(len);
	memcpy(w->copy, dataptr, len);
	pcb->snd_buf -= len;
	pcb->snd_nxt += len; /* sent at once, unless a test says lwIP kept it (pcb->unsent) */
	return ERR_OK;
}

err_t tcp_output(struct tcp_pcb *pcb)
{
	return fk.output_rc;
}

/* Real lwIP reports the abort through the err callback, then frees the pcb. */
void tcp_abort(struct tcp_pcb *pcb)
{
	fk.aborts++;
	fk.aborted = pcb;
	if (pcb->errf)
		pcb->errf(pcb->callback_arg, ERR_ABRT);
}

err_t tcp_close(struct tcp_pcb *pcb)
{
	fk.closes++;
	fk.closed = pcb;
	return ERR_OK;
}

/* As lwIP's: a reference dropped; at zero the pbuf is freed and the next one dropped. */
u8_t pbuf_free(struct pbuf *p)
{
	u8_t n = 0;

	while (p) {
		struct pbuf *next = p->next;

		if (!ok(p->ref > 0) || --p->ref)
			break;
		free(p);
		fk.pbufs_live--;
		fk.pbuf_frees++;
		p = next;
		n++;
	}
	return n;
}

void pbuf_ref(struct pbuf *p)
{
	p->ref++;
}

/* ---- Test helpers ----------------------------------------------------------------------- */

struct t {
	struct nbd_server *srv;
	struct nbd_lwip *nl;
	struct blkdev *mem;
	struct tcp_pcb *pcb;
	unsigned acked_w; /* writes (fk.w) of this pcb acknowledged so far */
	uint8_t in[128];
	size_t in_len;
	uint8_t out[1 << 20];
	size_t out_len;
};

static void deliver(struct tcp_pcb *pcb, const void *data, size_t len)
{
	while (len) {
		u16_t k = (u16_t)MIN(len, (size_t)1460);
		struct pbuf *p = calloc(1, sizeof(*p) + k);

		p->payload = p + 1;
		p->len = p->tot_len = k;
		p->ref = 1;
		fk.pbufs_live++;
		memcpy(p->payload, data, k);
		ok_eq(pcb->recv(pcb->callback_arg, pcb, p, ERR_OK), ERR_OK);
		data = (const uint8_t *)data + k;
		len -= k;
	}
}

/*
 * Acknowledge this pcb's written bytes in order, whole writes, the oldest first, until at
 * least @want bytes (SIZE_MAX: everything); check that every byte handed over by reference is
 * still what it was, and collect them as the client's received stream. Returns the bytes.
 */
static size_t ack_some(struct t *t, size_t want)
{
	size_t n = 0;

	for (unsigned i = 0; i < fk.nw && n < want; i++) {
		struct wrec *w = &fk.w[i];

		if (w->pcb != t->pcb || !w->copy)
			continue;
		ok(!memcmp(w->data, w->copy, w->len));
		if (ok(t->out_len + w->len <= sizeof(t->out))) {
			memcpy(t->out + t->out_len, w->copy, w->len);
			t->out_len += w->len;
		}
		n += w->len;
		free(w->copy);
		w->copy = NULL;
	}
	t->pcb->lastack += n;
	t->pcb->snd_buf = SNDBUF - (t->pcb->snd_nxt - t->pcb->lastack);
	for (size_t left = n; left;) {
		u16_t k = (u16_t)MIN(left, (size_t)0xffff);

		t->pcb->sent(t->pcb->callback_arg, t->pcb, k);
		left -= k;
	}
	return n;
}

static void ack_all(struct t *t)
{
	ack_some(t, SIZE_MAX);
}

/* A client connects and opens "disk" (simple replies); its option replies acknowledged. */
static struct tcp_pcb *connect_client(struct t *t)
{
	struct tcp_pcb *pcb = tcp_new();
	uint8_t b[64], go[10];
	size_t n = 4;

	ok_eq(fk.accept(fk.accept_arg, pcb, ERR_OK), ERR_OK);
	nbd_put_be32(b, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	nbd_put_be32(go, 4);
	memcpy(go + 4, "disk", 4);
	nbd_put_be16(go + 8, 0);
	n += nbdc_put_opt(b + n, NBD_OPT_GO, go, sizeof(go));
	deliver(pcb, b, n);
	nbd_lwip_poll(t->nl);
	t->pcb = pcb;
	ack_all(t);
	t->out_len = 0;
	return pcb;
}

static void setup(struct t *t)
{
	struct nbd_export_config cfg = { .name = "disk" };

	memset(&fk, 0, sizeof(fk));
	fk.nic_oldest = UINT64_MAX;
	ok_eq(memdisk_create(2048, 512, &t->mem), 0);
	ok_eq(nbd_server_create(NULL, &t->srv), 0);
	cfg.dev = t->mem;
	ok_eq(nbd_server_add_export(t->srv, &cfg), 0);
	ok_eq(nbd_lwip_listen(t->srv, NBD_LWIP_PORT, &t->nl), 0);
	ok(fk.accept != NULL);
}

static void teardown(struct t *t)
{
	nbd_lwip_close(t->nl);
	free(fk.listener); /* the fake's: tcp_close() on a listener frees it in lwIP */
	nbd_server_destroy(t->srv);
	blkdev_destroy(t->mem);
	for (unsigned i = 0; i < fk.nw; i++)
		free(fk.w[i].copy);
}

/* @pcb is gone: forget its write records (a new pcb may get its address). */
static void forget_writes(struct tcp_pcb *pcb)
{
	for (unsigned i = 0; i < fk.nw; i++) {
		if (fk.w[i].pcb == pcb) {
			free(fk.w[i].copy);
			fk.w[i].copy = NULL;
			fk.w[i].pcb = NULL;
		}
	}
}

/*
 * The connection on @pcb dies (@err: ERR_RST from the client, ERR_ABRT from lwIP): as real
 * lwIP does, the err callback runs and the pcb is freed with its segments. Its memory is
 * scribbled over first, so anything the glue still reads from it is garbage.
 */
static void pcb_dies(struct tcp_pcb *pcb, err_t err)
{
	pcb->errf(pcb->callback_arg, err);
	forget_writes(pcb);
	memset(pcb, 0x6b, sizeof(*pcb));
	free(pcb);
}

/*
 * The first write for @pcb since write @from that went by reference (no copy flag), after
 * checking that it and the by-reference writes after it are one contiguous run of @len bytes.
 */
static const struct wrec *by_reference(struct tcp_pcb *pcb, unsigned from, size_t len)
{
	const struct wrec *first = NULL;
	size_t run = 0;

	for (unsigned i = from; i < fk.nw; i++) {
		const struct wrec *w = &fk.w[i];

		if (w->pcb != pcb || (w->flags & TCP_WRITE_FLAG_COPY))
			continue;
		if (!first)
			first = w;
		else if (!ok(w->data == first->data + run))
			return NULL;
		run += w->len;
	}
	return ok_eq(run, len) ? first : NULL;
}

/* Connections the server still has (a draining one included: its buffers are not back). */
static unsigned server_conns(struct t *t)
{
	struct nbd_conn_info ci;
	unsigned n = 0;

	while (nbd_server_conn_info(t->srv, n, &ci) == 0)
		n++;
	return n;
}

static uint8_t req[2 * 65536 + 256];

/*
 * WRITE 64 KiB of @fill at 0, then READ it back in one main-loop pass. @check: the first write
 * record of the READ's data, all of which must have been handed to lwIP by reference in that
 * pass; else (the tests of other things) a few passes, and the number of writes made.
 */
static const struct wrec *write_then_read(struct t *t, uint8_t fill, uint64_t cookie, bool check)
{
	size_t n = nbdc_put_req(req, NBD_CMD_WRITE, 0, cookie, 0, 65536);
	unsigned from = fk.nw;

	memset(req + n, fill, 65536);
	n += 65536;
	n += nbdc_put_req(req + n, NBD_CMD_READ, 0, cookie + 1, 0, 65536);
	deliver(t->pcb, req, n);
	nbd_lwip_poll(t->nl);
	if (check)
		return by_reference(t->pcb, from, 65536);
	nbd_lwip_poll(t->nl);
	nbd_lwip_poll(t->nl);
	return fk.nw > from ? &fk.w[from] : NULL;
}

/* ---- Tests ------------------------------------------------------------------------------- */

TEST(read_data_zero_copy_until_acknowledged)
{
	const struct wrec *a, *b, *c;
	struct t *t = calloc(1, sizeof(*t));
	const uint8_t *a_data;

	setup(t);
	connect_client(t);

	a = write_then_read(t, 0xa1, 10, true);
	if (!ok(a != NULL))
		goto out;
	/* By reference, in one pass, and the bytes are the READ's data. */
	a_data = a->data;
	ok(a_data[0] == 0xa1 && a_data[65535] == 0xa1);

	/* Not acknowledged: the same range rewritten and read again must not touch it. */
	b = write_then_read(t, 0xb2, 20, true);
	if (!ok(b != NULL))
		goto out;
	ok(b->data != a_data);
	ok(b->data[0] == 0xb2);
	ok(a_data[0] == 0xa1 && a_data[65535] == 0xa1);

	/* Acknowledged (ack_all checks every referenced byte is unchanged): the buffers go back
	 * and the next READ of the same size gets one of them. */
	ack_all(t);
	c = write_then_read(t, 0xc3, 30, true);
	if (ok(c != NULL))
		ok(c->data == a_data || c->data == b->data);
	ack_all(t);
	ok_eq(fk.closes, 0);
out:
	teardown(t);
	free(t->pcb);
	free(t);
}

TEST(reset_with_unacknowledged_output_frees_everything)
{
	unsigned long a0 = alloc_count(), f0 = free_count();
	struct t *t = calloc(1, sizeof(*t));
	struct tcp_pcb *pcb;

	setup(t);
	pcb = connect_client(t);
	/* 64 KiB by reference, never acknowledged. */
	ok(write_then_read(t, 0x5c, 1, false) != NULL);
	pcb_dies(pcb, ERR_RST);
	nbd_lwip_poll(t->nl);
	ok_eq(fk.aborts, 0); /* the dead pcb is not aborted again */
	ok_eq(fk.closes, 0);
	/* A second client works meanwhile. */
	connect_client(t);
	ok(write_then_read(t, 0x77, 5, false) != NULL);
	ack_all(t);
	teardown(t); /* aborts the second one (tcp_abort with callbacks detached) */
	ok_eq(fk.aborts, 1);
	free(t->pcb);
	free(t);
	ok_eq(alloc_count() - a0, free_count() - f0);
}

TEST(disconnect_closes_only_once_acknowledged)
{
	struct t *t = calloc(1, sizeof(*t));
	struct tcp_pcb *pcb;
	uint8_t d[28];

	setup(t);
	pcb = connect_client(t);
	ok(write_then_read(t, 0x42, 1, false) != NULL);
	nbdc_put_req(d, NBD_CMD_DISC, 0, 3, 0, 0);
	deliver(pcb, d, sizeof(d));
	for (int i = 0; i < 4; i++)
		nbd_lwip_poll(t->nl);
	ok_eq(fk.closes, 0); /* replies still unacknowledged: lwIP holds our buffers */
	ack_all(t);
	nbd_lwip_poll(t->nl);
	ok_eq(fk.closes, 1);
	ok(fk.closed == pcb);
	teardown(t);
	ok_eq(fk.aborts, 0);
	free(pcb);
	free(t);
}

/*
 * A connection dies (@err: RST from the client, or lwIP aborting it) with 64 KiB of READ data
 * handed to lwIP by reference and unacknowledged, while the NIC still holds frames handed to
 * it before then (they may point into that data).
 */
static void dies_while_nic_holds_frames(err_t err)
{
	unsigned long a0 = alloc_count(), f0 = free_count();
	struct t *t = calloc(1, sizeof(*t));
	const struct wrec *a, *b;
	const uint8_t *a_data;
	struct tcp_pcb *pcb;

	setup(t);
	pcb = connect_client(t);
	a = write_then_read(t, 0x5c, 1, true);
	if (!ok(a != NULL))
		goto out;
	a_data = a->data;
	fk.tx_seq = 7;	   /* seven frames went to the NIC by reference... */
	fk.nic_oldest = 4; /* ... and it still holds the 5th, 6th, 7th */
	pcb_dies(pcb, err);
	for (int i = 0; i < 3; i++)
		nbd_lwip_poll(t->nl);
	ok_eq(fk.aborts, 0);
	ok_eq(server_conns(t), 1); /* not destroyed: its buffers are not back */

	/* Another client's WRITE and READ of the same size get other buffers: the bytes the
	 * NIC may still read are the dead connection's own. */
	connect_client(t);
	ok_eq(server_conns(t), 2);
	b = write_then_read(t, 0x77, 5, true);
	if (ok(b != NULL)) {
		ok(b->data != a_data);
		ok(b->data[0] == 0x77);
	}
	ok(a_data[0] == 0x5c && a_data[65535] == 0x5c);
	ack_all(t);

	/* Frames handed over after the connection died do not hold it back; the older ones do
	 * until they come back. */
	fk.nic_oldest = 6;
	fk.tx_seq = 12;
	nbd_lwip_poll(t->nl);
	ok_eq(server_conns(t), 2);
	fk.nic_oldest = 7;
	nbd_lwip_poll(t->nl);
	ok_eq(server_conns(t), 1);
	/* The second client still works. */
	ok(write_then_read(t, 0x78, 7, false) != NULL);
	ack_all(t);
out:
	teardown(t);
	free(t->pcb);
	free(t);
	ok_eq(alloc_count() - a0, free_count() - f0);
}

TEST(reset_keeps_buffers_while_nic_holds_frames)
{
	dies_while_nic_holds_frames(ERR_RST);
}

TEST(lwip_abort_keeps_buffers_while_nic_holds_frames)
{
	dies_while_nic_holds_frames(ERR_ABRT);
}

TEST(shutdown_frees_draining_connections)
{
	unsigned long a0 = alloc_count(), f0 = free_count();
	struct t *t = calloc(1, sizeof(*t));
	struct tcp_pcb *pcb;

	setup(t);
	pcb = connect_client(t);
	ok(write_then_read(t, 0x3e, 1, false) != NULL);
	fk.tx_seq = 3;
	fk.nic_oldest = 0; /* never returned */
	pcb_dies(pcb, ERR_RST);
	nbd_lwip_poll(t->nl);
	ok_eq(server_conns(t), 1);
	teardown(t);
	free(t);
	ok_eq(alloc_count() - a0, free_count() - f0);
}

TEST(graceful_close_does_not_wait_for_the_nic)
{
	struct t *t = calloc(1, sizeof(*t));
	struct tcp_pcb *pcb;
	uint8_t d[28];

	setup(t);
	pcb = connect_client(t);
	ok(write_then_read(t, 0x42, 1, false) != NULL);
	fk.tx_seq = 9;
	fk.nic_oldest = 0; /* the NIC holds frames, but everything was acknowledged */
	nbdc_put_req(d, NBD_CMD_DISC, 0, 3, 0, 0);
	deliver(pcb, d, sizeof(d));
	nbd_lwip_poll(t->nl);
	ack_all(t);
	nbd_lwip_poll(t->nl);
	ok_eq(fk.closes, 1);
	ok_eq(server_conns(t), 0);
	teardown(t);
	ok_eq(fk.aborts, 0);
	free(pcb);
	free(t);
}

/* ---- Borrowed WRITE payloads ---- */

/* Every piece but the first of the last WRITE's list lay in a delivered pbuf's payload. */
static bool seen_in_pbufs;

/* The device's on_submit hook: where the pieces of a WRITE's list lie. */
static void check_pbufs(struct queued_dev *qd, const struct blkdev_req *r)
{
	(void)qd;
	seen_in_pbufs = r->segs != NULL;
	/* deliver() puts each payload right after its struct pbuf. */
	for (uint32_t i = 0; r->segs && i < r->nr_segs; i++) {
		const struct pbuf *p = (const struct pbuf *)r->segs[i].base - 1;
		const uint8_t *b = r->segs[i].base;

		if (i == 0) /* the first piece starts after the request header */
			continue;
		seen_in_pbufs &= p->payload == b && p->len == r->segs[i].len;
	}
}

TEST(write_payload_borrowed_until_completion_window_reopened_at_once)
{
	struct t *t = calloc(1, sizeof(*t));
	struct nbd_export_config cfg = { .name = "disk" };
	static uint8_t wreq[28 + 262144];
	uint8_t *back = malloc(262144);
	struct queued_dev h;
	size_t n;

	memset(&fk, 0, sizeof(fk));
	fk.nic_oldest = UINT64_MAX;
	ok_eq(memdisk_create(2048, 512, &t->mem), 0);
	/* A memory disk behind a queue of 16 that completes only when released; it takes lists. */
	qd_init(&h, t->mem);
	h.dev.seg_writes = true;
	h.depth = 16;
	h.on_submit = check_pbufs;
	seen_in_pbufs = false;
	ok_eq(nbd_server_create(NULL, &t->srv), 0);
	cfg.dev = &h.dev;
	ok_eq(nbd_server_add_export(t->srv, &cfg), 0);
	ok_eq(nbd_lwip_listen(t->srv, NBD_LWIP_PORT, &t->nl), 0);
	connect_client(t);
	ok_eq(fk.pbufs_live, 0);

	n = nbdc_put_req(wreq, NBD_CMD_WRITE, 0, 5, 65536, 262144);
	for (size_t i = 0; i < 262144; i++)
		wreq[n + i] = (uint8_t)(i * 7 + (i >> 10));
	h.hold = true;
	fk.recved = 0;
	deliver(t->pcb, wreq, sizeof(wreq));
	nbd_lwip_poll(t->nl);
	/* In the device, not complete: the window is open again for every byte ... */
	ok_eq(fk.recved, sizeof(wreq));
	/* ... the payload is the pbufs themselves, all still referenced. */
	ok_eq(h.seen.op, BLKDEV_WRITE);
	ok(h.seen.segs != NULL);
	ok_eq(h.seen.nr_segs, (sizeof(wreq) + 1459) / 1460);
	ok(seen_in_pbufs);
	ok_eq(fk.pbufs_live, (long)((sizeof(wreq) + 1459) / 1460));
	/* Completed: answered, and every pbuf freed (each exactly once: the fake checks refs). */
	h.hold = false;
	nbd_lwip_poll(t->nl);
	ok_eq(fk.pbufs_live, 0);
	ack_all(t);
	ok_eq(t->out_len, 16);
	ok_eq(nbd_get_be32(t->out + 4), 0);
	ok_eq(blkdev_read(t->mem, 128, 512, back), 0);
	ok(memcmp(back, wreq + 28, 262144) == 0);
	teardown(t);
	free(t->pcb);
	free(t);
	free(back);
}

/* One READ of 64 KiB at 0 (cookie @cookie), two main-loop passes. */
static void read_64k(struct t *t, uint64_t cookie)
{
	size_t n = nbdc_put_req(req, NBD_CMD_READ, 0, cookie, 0, 65536);

	deliver(t->pcb, req, n);
	nbd_lwip_poll(t->nl);
	nbd_lwip_poll(t->nl);
}

TEST(output_stops_counted_by_reason)
{
	struct t *t = calloc(1, sizeof(*t));
	/* lwIP's struct tcp_seg is private (tcp_priv.h): the glue only tests unsent for NULL. */
	static uint64_t queued[8];
	struct perf_tcp z = { 0 };
	size_t n;

	setup(t);
	connect_client(t);

	/* The window wide open, the buffer too: the reply goes whole, nothing else is asked. */
	perf_reset();
	read_64k(t, 1);
	ok_eq(perf_tcp.batches, 1);
	ok_eq(perf_tcp.drained, 1);
	ok_eq(perf_tcp.max_flight, 65536 + 16);
	ok_eq(perf_tcp.max_peer_wnd, 4 * SNDBUF);
	ack_all(t);
	ok_eq(perf_tcp.dry, 0);

	/* Our send buffer full (16 KiB left), the window open: the appliance's own limit. */
	perf_reset();
	t->pcb->snd_buf = 16384;
	read_64k(t, 2);
	ok_eq(perf_tcp.batches, 1);
	ok_eq(perf_tcp.stop_sndbuf, 1);
	ok_eq(perf_tcp.max_flight, 16384);
	/* All of it acknowledged with the reply's rest still queued here: the wire ran dry. */
	ack_all(t);
	ok_eq(perf_tcp.dry, 1);
	nbd_lwip_poll(t->nl); /* the rest, in the next pass's batch, answered whole */
	ok_eq(perf_tcp.batches, 2);
	ok_eq(perf_tcp.drained, 1);
	ack_all(t);
	ok_eq(perf_tcp.dry, 1);

	/* The same buffer, but the peer's window (8 KiB) is smaller than what went out: the
	 * network's limit, not ours; then the congestion window, with segments left unsent. */
	perf_reset();
	t->pcb->snd_buf = 16384;
	t->pcb->snd_wnd = 8192;
	read_64k(t, 3);
	ok_eq(perf_tcp.stop_peer_wnd, 1);
	ok_eq(perf_tcp.stop_sndbuf, 0);
	ack_all(t);
	nbd_lwip_poll(t->nl);
	ack_all(t);
	perf_reset();
	t->pcb->snd_wnd = 4 * SNDBUF;
	t->pcb->cwnd = 8192;
	t->pcb->unsent = (struct tcp_seg *)queued;
	read_64k(t, 4);
	ok_eq(perf_tcp.batches, 1);
	ok_eq(perf_tcp.stop_cwnd, 1);
	t->pcb->unsent = NULL;
	t->pcb->cwnd = 4 * SNDBUF;
	ack_all(t);

	/* tcp_output() failing (the NIC refused a frame). */
	perf_reset();
	fk.output_rc = ERR_MEM;
	read_64k(t, 5);
	ok_eq(perf_tcp.batches, 1);
	ok_eq(perf_tcp.stop_netif, 1);
	fk.output_rc = ERR_OK;
	ack_all(t);

	/* A READ answered while a WRITE still waits for its payload: nothing more to send with a
	 * request unanswered; its acknowledgement leaves the wire idle (ran dry). */
	perf_reset();
	n = nbdc_put_req(req, NBD_CMD_READ, 0, 6, 0, 65536);
	n += nbdc_put_req(req + n, NBD_CMD_WRITE, 0, 7, 0, 65536);
	memset(req + n, 0x5a, 1000);
	deliver(t->pcb, req, n + 1000);
	nbd_lwip_poll(t->nl);
	ok_eq(perf_tcp.batches, 1);
	ok_eq(perf_tcp.stop_starved, 1);
	ok_eq(perf_tcp.dry, 0);
	ack_all(t);
	ok_eq(perf_tcp.dry, 1);
	/* The payload's rest: the WRITE answered, nothing unanswered any more. */
	memset(req, 0x5a, 65536 - 1000);
	deliver(t->pcb, req, 65536 - 1000);
	nbd_lwip_poll(t->nl);
	nbd_lwip_poll(t->nl);
	ok_eq(perf_tcp.drained, 1);
	ack_all(t);
	ok_eq(perf_tcp.dry, 1);

	perf_reset();
	ok(memcmp(&perf_tcp, &z, sizeof(z)) == 0);
	teardown(t);
	free(t->pcb);
	free(t);
}

/*
 * lwIP holds at most the peer's largest window plus SEND_AHEAD (128 KiB) of our output, and
 * gets more only once that fell below the window plus 64 KiB (nbd_lwip.c send_mark()): a
 * window of 64 KiB (user networking's) and six 64 KiB READs answered in one pass.
 */
TEST(send_queue_bounded_by_window_marks)
{
	struct t *t = calloc(1, sizeof(*t));
	const size_t mark = 65535 + 128 * 1024, reply = 16 + 65536;
	size_t n = 0, handed;
	uint8_t fill[6 * 512];

	setup(t);
	connect_client(t);
	t->pcb->snd_wnd = t->pcb->snd_wnd_max = 65535;
	for (unsigned i = 0; i < 6; i++) {
		memset(fill + i * 512, 'a' + i, 512);
		n += nbdc_put_req(req + n, NBD_CMD_WRITE, 0, 10 + i, i * 65536ull, 512);
		memcpy(req + n, fill + i * 512, 512);
		n += 512;
	}
	deliver(t->pcb, req, n);
	nbd_lwip_poll(t->nl);
	nbd_lwip_poll(t->nl);
	ack_all(t);
	t->out_len = 0;

	n = 0;
	for (unsigned i = 0; i < 6; i++)
		n += nbdc_put_req(req + n, NBD_CMD_READ, 0, 20 + i, i * 65536ull, 65536);
	deliver(t->pcb, req, n);
	nbd_lwip_poll(t->nl);
	nbd_lwip_poll(t->nl);
	/* Up to the mark exactly, no further. */
	ok_eq(t->pcb->snd_nxt - t->pcb->lastack, mark);
	/* Acknowledged down to above window + 64 KiB: nothing handed over yet. */
	handed = t->pcb->snd_nxt;
	ok(ack_some(t, 48 * 1024) < mark - (65535 + 64 * 1024));
	nbd_lwip_poll(t->nl);
	ok_eq(t->pcb->snd_nxt, handed);
	/* Below it: refilled to the mark in that pass. */
	ack_some(t, 32 * 1024);
	ok(t->pcb->snd_nxt - t->pcb->lastack < 65535 + 64 * 1024);
	nbd_lwip_poll(t->nl);
	ok_eq(t->pcb->snd_nxt - t->pcb->lastack, mark);
	/* The rest follows as acknowledgements come; the stream is the six replies, whole. */
	for (unsigned i = 0; i < 8 && t->out_len < 6 * reply; i++) {
		ack_all(t);
		nbd_lwip_poll(t->nl);
	}
	ack_all(t);
	if (ok_eq(t->out_len, 6 * reply)) {
		for (unsigned i = 0; i < 6; i++) {
			const uint8_t *r = t->out + i * reply;

			ok_eq(nbd_get_be64(r + 8), 20 + i);
			ok(!memcmp(r + 16, fill + i * 512, 512));
		}
	}
	teardown(t);
	free(t->pcb);
	free(t);
}
