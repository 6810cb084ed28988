/* SPDX-License-Identifier: MIT */
/*
 * The virtio-net driver on the host against a device double: the receive ring is full after
 * probe and stays full, frames go up without the virtio header, transmit buffers are
 * reclaimed, checksums are finished (by the device when it offers CSUM, by us otherwise),
 * the link status follows the config, and counters count.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "drivers/virtio-net/vnet.h"
#include "tests/support/harness.h"
#include "tests/support/vdev_double.h"

struct netdouble {
	struct vdd d;
	struct vdd_chain tx[256];
	unsigned ntx;
};

static void nd_notify(struct vdd *d, unsigned qi)
{
	struct netdouble *nd = (struct netdouble *)d;
	struct vdd_chain c;

	/* Transmit: take frames, finish them later (nd_tx_done). Receive: nothing to do. */
	if (qi == 1)
		while (vdd_pop(&d->q[1], &c) == 1)
			nd->tx[nd->ntx++] = c;
}

static void nd_tx_done(struct netdouble *nd)
{
	for (unsigned i = 0; i < nd->ntx; i++)
		vdd_push(&nd->d.q[1], nd->tx[i].head, 0);
	nd->ntx = 0;
}

/* The device receives @frame: into the next receive buffer, with @flags in the header. */
static int nd_rx(struct netdouble *nd, const void *frame, size_t len, uint8_t flags,
		 uint16_t csum_start, uint16_t csum_offset)
{
	struct vdd_chain c;
	struct virtio_net_hdr *h;

	if (vdd_pop(&nd->d.q[0], &c) != 1 || c.n != 1 || !c.seg[0].write ||
	    c.seg[0].len < sizeof(*h) + len)
		return -1;
	h = (void *)(uintptr_t)c.seg[0].addr;
	memset(h, 0, sizeof(*h));
	h->flags = flags;
	h->csum_start = cpu_to_le16(csum_start);
	h->csum_offset = cpu_to_le16(csum_offset);
	memcpy(h + 1, frame, len);
	vdd_push(&nd->d.q[0], c.head, (uint32_t)(sizeof(*h) + len));
	return 0;
}

static struct netdouble *nd_new(uint64_t features)
{
	struct netdouble *nd = calloc(1, sizeof(*nd));
	struct virtio_net_config *cfg = (struct virtio_net_config *)nd->d.config;
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };

	vdd_init(&nd->d, features | VIRTIO_BIT(VIRTIO_F_VERSION_1), 3, 256);
	nd->d.on_notify = nd_notify;
	memcpy(cfg->mac, mac, 6);
	cfg->status = cpu_to_le16(VIRTIO_NET_S_LINK_UP);
	nd->d.config_len = sizeof(*cfg);
	return nd;
}

struct rx_log {
	unsigned n;
	uint8_t last[2048];
	size_t last_len;
	unsigned last_flags;
};

static bool on_rx(void *ctx, const struct vnet_rx_frame *f)
{
	struct rx_log *l = ctx;

	l->n++;
	l->last_len = vnet_rx_copy(f, l->last, sizeof(l->last));
	l->last_flags = f->flags;
	return false;
}

/* An Ethernet + IPv4 + UDP frame whose UDP checksum field holds the pseudo-header sum. */
static size_t udp_frame(uint8_t *f, uint16_t *start, uint16_t *offset)
{
	size_t len = 14 + 20 + 8 + 5;

	memset(f, 0, len);
	f[12] = 0x08; /* IPv4 */
	f[14] = 0x45;
	f[23] = 17; /* UDP */
	memcpy(f + 42, "hello", 5);
	f[14 + 20 + 4] = 0;
	f[14 + 20 + 5] = 13; /* UDP length */
	/* Pseudo-header sum (addresses 0, protocol 17, length 13) = 0x001e. */
	f[14 + 20 + 6] = 0x00;
	f[14 + 20 + 7] = 0x1e;
	*start = 34;
	*offset = 6;
	return len;
}

/* Verify a UDP checksum: the one's-complement sum over pseudo-header and segment is 0xffff. */
static bool udp_sum_ok(const uint8_t *f, size_t len)
{
	uint32_t sum = 17 + 13;

	for (size_t i = 34; i + 1 < len; i += 2)
		sum += (uint32_t)f[i] << 8 | f[i + 1];
	if ((len - 34) & 1)
		sum += (uint32_t)f[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

TEST(probe_reads_mac_link_and_fills_rx)
{
	struct netdouble *nd =
	    nd_new(VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_STATUS));
	struct vnet *vn;
	char feat[64];

	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	ok(memcmp(vnet_mac(vn), "\x52\x54\x00\x12\x34\x56", 6) == 0);
	ok(vnet_link_up(vn));
	ok_eq(vn->rxq.size, VNET_RX_QUEUE_SIZE);
	/* Every receive slot holds a buffer, and the device was told. */
	ok_eq(vq_read16(&vn->rxq.avail->idx), VNET_RX_QUEUE_SIZE);
	ok_eq(vn->rx_nfree, vn->rx_nbufs - VNET_RX_QUEUE_SIZE);
	ok(nd->d.q[0].notifies >= 1);
	vnet_features_str(vn, feat, sizeof(feat));
	ok(strcmp(feat, "mac status") == 0);
	/* Link goes down: seen at the next refresh. */
	((struct virtio_net_config *)nd->d.config)->status = 0;
	vn->next_link_check = 0;
	ok_eq(vnet_poll(vn), 0);
	ok(!vnet_link_up(vn));
	ok_eq(vn->stats.link_changes, 1);
	vnet_destroy(vn);
	ok_eq(nd->d.status, 0);
	free(nd);
}

TEST(rx_delivers_frames_and_keeps_ring_full)
{
	struct netdouble *nd =
	    nd_new(VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM));
	struct rx_log log = { 0 };
	uint8_t f[64];
	uint16_t s, o;
	size_t len = udp_frame(f, &s, &o);
	struct vnet *vn;

	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	/* Laps of the ring: buffers must come back each time. */
	for (unsigned i = 0; i < 3 * 128; i++) {
		f[42] = (uint8_t)i;
		if (!ok_eq(nd_rx(nd, f, len, 0, 0, 0), 0))
			break;
		ok_eq(vnet_rx_poll(vn, on_rx, &log, 16), 1);
	}
	ok_eq(log.n, 3 * 128);
	ok_eq(log.last_len, len);
	ok_eq(log.last[42], (uint8_t)(3 * 128 - 1));
	ok_eq(log.last_flags, 0);
	ok_eq(vn->stats.rx_packets, 3 * 128);
	ok_eq(vq_num_free(&vn->rxq), 0);

	/* Partial checksum from a local sender: trusted as it is (not summed here), counted. */
	ok_eq(nd_rx(nd, f, len, VIRTIO_NET_HDR_F_NEEDS_CSUM, s, o), 0);
	ok_eq(vnet_rx_poll(vn, on_rx, &log, 16), 1);
	ok(log.last_flags & VNET_RX_CSUM_OK);
	ok(!udp_sum_ok(log.last, log.last_len));
	ok(memcmp(log.last, f, len) == 0);
	ok_eq(vn->stats.rx_csum_partial, 1);
	ok_eq(nd_rx(nd, f, len, VIRTIO_NET_HDR_F_DATA_VALID, 0, 0), 0);
	ok_eq(vnet_rx_poll(vn, on_rx, &log, 16), 1);
	ok(log.last_flags & VNET_RX_CSUM_OK);
	ok_eq(vn->stats.rx_csum_valid, 1);
	/* The budget bounds one poll. */
	for (unsigned i = 0; i < 5; i++)
		nd_rx(nd, f, len, 0, 0, 0);
	ok_eq(vnet_rx_poll(vn, on_rx, &log, 2), 2);
	ok_eq(vnet_rx_poll(vn, on_rx, &log, 16), 3);
	vnet_destroy(vn);
	free(nd);
}

TEST(tx_sends_reclaims_and_reports_full)
{
	struct netdouble *nd = nd_new(VIRTIO_BIT(VIRTIO_NET_F_MAC));
	uint8_t f[64], big[VNET_MAX_FRAME + 1];
	uint16_t s, o;
	size_t len = udp_frame(f, &s, &o);
	struct vnet_csum cs;
	struct vnet *vn;
	unsigned sent = 0;
	int rc;

	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	while ((rc = vnet_tx(vn, f, len, NULL)) == 0)
		sent++;
	ok_eq(rc, -EAGAIN);
	ok_eq(sent, 128);
	ok_eq(vn->stats.tx_busy, 1);
	/* No doorbell per frame: the full ring rang one for all 128. */
	ok_eq(nd->ntx, 128);
	ok_eq(nd->d.q[1].notifies, 1);
	/* The device saw the header (no offload) and the frame. */
	{
		struct virtio_net_hdr *h = (void *)(uintptr_t)nd->tx[5].seg[0].addr;

		ok_eq(nd->tx[5].seg[0].len, sizeof(*h) + len);
		ok_eq(h->flags, 0);
		ok(memcmp(h + 1, f, len) == 0);
	}
	nd_tx_done(nd);
	/* Reclaimed on demand by the next send. */
	ok_eq(vnet_tx(vn, f, len, NULL), 0);
	ok_eq(vn->tx_nfree, 127);
	ok_eq(vnet_tx(vn, big, sizeof(big), NULL), -EMSGSIZE);

	/* No CSUM feature: the checksum is finished in software before sending. */
	cs.start = s;
	cs.offset = o;
	ok_eq(vnet_tx(vn, f, len, &cs), 0);
	vnet_tx_kick(vn); /* the end of the main loop's pass */
	ok(udp_sum_ok((uint8_t *)(uintptr_t)nd->tx[nd->ntx - 1].seg[0].addr + 12, len));
	ok_eq(vn->stats.tx_csum_sw, 1);
	cs.start = (uint16_t)len;
	ok_eq(vnet_tx(vn, f, len, &cs), -EINVAL);
	ok_eq(vn->stats.tx_packets, 130);
	vnet_destroy(vn);
	free(nd);
}

TEST(tx_checksum_offload_when_offered)
{
	struct netdouble *nd = nd_new(VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_CSUM));
	uint8_t f[64];
	uint16_t s, o;
	size_t len = udp_frame(f, &s, &o);
	struct vnet_csum cs;
	struct vnet_frag frags[2];
	struct virtio_net_hdr *h;
	struct vnet *vn;

	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	cs.start = s;
	cs.offset = o;
	frags[0] = (struct vnet_frag){ f, 20 };
	frags[1] = (struct vnet_frag){ f + 20, len - 20 };
	ok_eq(vnet_tx_frags(vn, frags, 2, &cs), 0);
	ok_eq(nd->ntx, 0); /* placed, not announced */
	vnet_tx_kick(vn);
	ok_eq(nd->ntx, 1);
	h = (void *)(uintptr_t)nd->tx[0].seg[0].addr;
	ok_eq(h->flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
	ok_eq(le16_to_cpu(h->csum_start), s);
	ok_eq(le16_to_cpu(h->csum_offset), o);
	ok(memcmp(h + 1, f, len) == 0); /* left for the device to finish */
	ok_eq(vn->stats.tx_csum_sw, 0);
	ok_eq(vn->stats.tx_csum_dev, 1);
	vnet_destroy(vn);
	free(nd);
}

/* ---- Mergeable receive buffers (MRG_RXBUF), large segments (GUEST_TSO4) ------------------ */

#define MRG_FEATURES                                                                               \
	(VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) |                      \
	 VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4))

/*
 * The device receives @frame over as many buffers as it needs (header in the first), and
 * writes @num_buffers in the header (0: the true count). @publish: how many of the used
 * entries to push now (the rest into *@held for later, like a device mid-frame); 0: all.
 * The number of buffers used, or -1.
 */
static int nd_rx_mrg(struct netdouble *nd, const uint8_t *frame, size_t len, uint8_t gso,
		     uint16_t num_buffers, unsigned publish, struct vdd_chain *held)
{
	struct vdd_chain c[64];
	size_t done = 0, hl = sizeof(struct virtio_net_hdr);
	unsigned n = 0;

	while (done < len || n == 0) {
		uint8_t *b;
		size_t room;

		if (n == ARRAY_SIZE(c) || vdd_pop(&nd->d.q[0], &c[n]) != 1 || c[n].n != 1)
			return -1;
		b = (uint8_t *)(uintptr_t)c[n].seg[0].addr;
		room = c[n].seg[0].len - (n == 0 ? hl : 0);
		room = MIN(room, len - done);
		memcpy(b + (n == 0 ? hl : 0), frame + done, room);
		c[n].seg[0].len = (uint32_t)(room + (n == 0 ? hl : 0)); /* bytes written */
		done += room;
		n++;
	}
	{
		struct virtio_net_hdr *h = (void *)(uintptr_t)c[0].seg[0].addr;

		memset(h, 0, sizeof(*h));
		h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
		h->gso_type = gso;
		h->num_buffers = cpu_to_le16(num_buffers ? num_buffers : (uint16_t)n);
	}
	for (unsigned i = 0; i < n; i++) {
		if (publish && i >= publish)
			held[i - publish] = c[i];
		else
			vdd_push(&nd->d.q[0], c[i].head, c[i].seg[0].len);
	}
	return (int)n;
}

static void fill_pattern(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 7 + seed + (i >> 8));
}

struct keep_log {
	struct vnet *vn;
	unsigned n, last_nseg;
	bool keep;
	size_t last_len;
	unsigned last_flags;
	bool last_may_keep;
	uint8_t *copy; /* 70 KiB */
	uint16_t held[2048];
	unsigned nheld;
};

static bool on_rx_keep(void *ctx, const struct vnet_rx_frame *f)
{
	struct keep_log *l = ctx;

	l->n++;
	l->last_nseg = f->nseg;
	l->last_flags = f->flags;
	l->last_may_keep = f->may_keep;
	l->last_len = vnet_rx_copy(f, l->copy, 70 << 10);
	if (!l->keep || !f->may_keep)
		return false;
	for (unsigned i = 0; i < f->nseg; i++)
		l->held[l->nheld++] = f->seg[i].id;
	return true;
}

TEST(mrg_frame_over_one_two_and_many_buffers)
{
	struct netdouble *nd = nd_new(MRG_FEATURES);
	struct keep_log log = { .copy = malloc(70 << 10) };
	static uint8_t f[65535 + 14];
	struct vnet *vn;
	char feat[128];

	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	vnet_features_str(vn, feat, sizeof(feat));
	ok(strcmp(feat, "mac guest-csum mrg-rxbuf guest-tso4") == 0);
	fill_pattern(f, sizeof(f), 1);
	/* One buffer. */
	ok_eq(nd_rx_mrg(nd, f, 60, 0, 0, 0, NULL), 1);
	ok_eq(vnet_rx_poll(vn, on_rx_keep, &log, 16), 1);
	ok_eq(log.last_nseg, 1);
	ok_eq(log.last_len, 60);
	ok(memcmp(log.copy, f, 60) == 0);
	ok_eq(log.last_flags, VNET_RX_CSUM_OK);
	/* Two: 4084 bytes fit the first buffer after the header. */
	ok_eq(nd_rx_mrg(nd, f, 5000, 0, 0, 0, NULL), 2);
	ok_eq(vnet_rx_poll(vn, on_rx_keep, &log, 16), 1);
	ok_eq(log.last_nseg, 2);
	ok_eq(log.last_len, 5000);
	ok(memcmp(log.copy, f, 5000) == 0);
	/* Many: the largest frame a TCPv4 segment makes, coalesced by the device. */
	ok_eq(nd_rx_mrg(nd, f, sizeof(f), VIRTIO_NET_HDR_GSO_TCPV4, 0, 0, NULL), VNET_RX_MAX_SEGS);
	ok_eq(vnet_rx_poll(vn, on_rx_keep, &log, 16), 1);
	ok_eq(log.last_nseg, VNET_RX_MAX_SEGS);
	ok_eq(log.last_len, sizeof(f));
	ok(memcmp(log.copy, f, sizeof(f)) == 0);
	ok_eq(log.last_flags, VNET_RX_CSUM_OK | VNET_RX_GSO);
	ok_eq(vn->stats.rx_packets, 3);
	ok_eq(vn->stats.rx_merged, 2);
	ok_eq(vn->stats.rx_gso, 1);
	ok_eq(vn->stats.rx_dropped, 0);
	/* Nothing kept: every buffer is back, the ring full again. */
	ok_eq(vq_num_free(&vn->rxq), 0);
	ok_eq(vn->rx_nfree + vn->rxq.size, vn->rx_nbufs);

	/* A frame whose buffers arrive over two polls is handed up once, whole. */
	{
		struct vdd_chain rest[8];

		ok_eq(nd_rx_mrg(nd, f, 10000, 0, 0, 1, rest), 3);
		ok_eq(vnet_rx_poll(vn, on_rx_keep, &log, 16), 0);
		ok_eq(log.n, 3);
		vdd_push(&nd->d.q[0], rest[0].head, rest[0].seg[0].len);
		vdd_push(&nd->d.q[0], rest[1].head, rest[1].seg[0].len);
		ok_eq(vnet_rx_poll(vn, on_rx_keep, &log, 16), 1);
		ok_eq(log.n, 4);
		ok_eq(log.last_len, 10000);
		ok(memcmp(log.copy, f, 10000) == 0);
	}
	vnet_destroy(vn);
	free(log.copy);
	free(nd);
}

TEST(mrg_kept_buffers_come_back_and_never_starve_the_ring)
{
	struct netdouble *nd = nd_new(MRG_FEATURES);
	struct keep_log log = { .copy = malloc(70 << 10), .keep = true };
	static uint8_t f[9000];
	unsigned copied_before;
	struct vnet *vn;

	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	log.vn = vn;
	fill_pattern(f, sizeof(f), 3);
	/* Keep 3-buffer frames until the driver says no more may be kept. */
	for (unsigned i = 0; i < 1000 && (log.n == 0 || log.last_may_keep); i++) {
		if (!ok_eq(nd_rx_mrg(nd, f, sizeof(f), 0, 0, 0, NULL), 3))
			break;
		ok_eq(vnet_rx_poll(vn, on_rx_keep, &log, 16), 1);
		/* The ring is topped up from the spare buffers after every poll. */
		if (vn->rx_nfree)
			ok_eq(vq_num_free(&vn->rxq), 0);
	}
	ok(!log.last_may_keep);
	ok_eq(vn->rx_held, log.nheld);
	/* The spares were spent on the kept frames, the ring itself is whole. */
	ok(vn->rx_held + vn->rxq.size <= vn->rx_nbufs);
	ok_eq(vn->rx_held + vn->rx_nfree + vn->rxq.size, vn->rx_nbufs);
	ok_eq(vq_num_free(&vn->rxq), 0);
	ok_eq(vn->stats.rx_kept, log.n - 1);
	/* Frames keep flowing (the receiver copies them) while nothing is given back. */
	copied_before = log.n;
	for (unsigned i = 0; i < 200; i++) {
		ok_eq(nd_rx_mrg(nd, f, sizeof(f), 0, 0, 0, NULL), 3);
		ok_eq(vnet_rx_poll(vn, on_rx_keep, &log, 16), 1);
	}
	ok_eq(log.n, copied_before + 200);
	ok(memcmp(log.copy, f, sizeof(f)) == 0);
	ok_eq(vq_num_free(&vn->rxq), 0);
	/* Given back: free again, on the ring at the next poll; keeping is allowed again. */
	for (unsigned i = 0; i < log.nheld; i++)
		vnet_rx_release(vn, log.held[i]);
	log.nheld = 0;
	ok_eq(vn->rx_held, 0);
	ok_eq(vn->rx_nfree + vn->rxq.size, vn->rx_nbufs);
	ok_eq(nd_rx_mrg(nd, f, sizeof(f), 0, 0, 0, NULL), 3);
	ok_eq(vnet_rx_poll(vn, on_rx_keep, &log, 16), 1);
	ok(log.last_may_keep);
	ok_eq(vn->rx_held, 3);
	ok_eq(vn->stats.rx_dropped, 0);
	for (unsigned i = 0; i < log.nheld; i++)
		vnet_rx_release(vn, log.held[i]);
	vnet_destroy(vn);
	free(log.copy);
	free(nd);
}

TEST(mrg_buffers_kept_across_destroy_come_back_safely)
{
	struct netdouble *nd = nd_new(MRG_FEATURES);
	struct keep_log log = { .copy = malloc(70 << 10), .keep = true };
	static uint8_t f[9000];
	const uint8_t *data[2];
	struct vnet *vn;

	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	fill_pattern(f, sizeof(f), 5);
	ok_eq(nd_rx_mrg(nd, f, sizeof(f), 0, 0, 0, NULL), 3);
	ok_eq(vnet_rx_poll(vn, on_rx_keep, &log, 16), 1);
	ok_eq(log.nheld, 3);
	data[0] = vn->rx_bufs + (size_t)log.held[0] * VNET_RX_BUF_SIZE;
	data[1] = vn->rx_bufs + (size_t)log.held[1] * VNET_RX_BUF_SIZE;
	/* The stack still holds the frame when the device goes away (a reset, a shutdown). */
	vnet_destroy(vn);
	/* Its bytes are still there, and giving the buffers back (the stack freeing the pbufs
	 * later) touches nothing freed; the last one frees the rest (ASan: no use after free,
	 * no leak). */
	ok(memcmp(data[0] + sizeof(struct virtio_net_hdr), f,
		  VNET_RX_BUF_SIZE - sizeof(struct virtio_net_hdr)) == 0);
	ok(memcmp(data[1], f + VNET_RX_BUF_SIZE - sizeof(struct virtio_net_hdr), 64) == 0);
	for (unsigned i = 0; i < log.nheld; i++)
		vnet_rx_release(vn, log.held[i]);
	free(log.copy);
	free(nd);
}

TEST(mrg_bad_num_buffers_is_dropped_and_counted)
{
	struct netdouble *nd = nd_new(MRG_FEATURES);
	struct keep_log log = { .copy = malloc(70 << 10) };
	static uint8_t f[70000];
	struct vnet *vn;

	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	memset(f, 0, sizeof(f));
	fill_pattern(f, 200, 5);
	/* num_buffers 0. */
	ok_eq(nd_rx_mrg(nd, f, 100, 0, 0, 0, NULL), 1);
	{
		/* nd_rx_mrg writes the true count for 0: patch the header to 0 before the poll. */
		struct vq *q = &vn->rxq;
		uint16_t last = (uint16_t)(nd->d.q[0].used_idx - 1);
		uint32_t id = le32_to_cpu(q->used->ring[last & (q->size - 1)].id);
		struct virtio_net_hdr *h = (void *)(uintptr_t)le64_to_cpu(q->desc[id].addr);

		h->num_buffers = 0;
	}
	ok_eq(vnet_rx_poll(vn, on_rx_keep, &log, 16), 1);
	ok_eq(log.n, 0);
	ok_eq(vn->stats.rx_dropped, 1);
	/* Far too many (the buffers that follow are skipped, as far as the device used any). */
	ok_eq(nd_rx_mrg(nd, f, 5000, 0, 1000, 0, NULL), 2);
	ok_eq(vnet_rx_poll(vn, on_rx_keep, &log, 16), 1);
	ok_eq(log.n, 0);
	ok_eq(vn->stats.rx_dropped, 2);
	/* The skip ends where the used ring does: the next good frame gets through. */
	ok_eq(nd_rx_mrg(nd, f, 5000, 0, 0, 0, NULL), 2);
	ok_eq(vnet_rx_poll(vn, on_rx_keep, &log, 16), 1);
	ok_eq(log.n, 1);
	ok_eq(log.last_len, 5000);
	/* One more than a frame can span. */
	ok_eq(nd_rx_mrg(nd, f, 100, 0, VNET_RX_MAX_SEGS + 1, 0, NULL), 1);
	ok_eq(vnet_rx_poll(vn, on_rx_keep, &log, 16), 1);
	ok_eq(vn->stats.rx_dropped, 3);
	/* A frame longer than any TCPv4 segment (VNET_RX_MAX_SEGS buffers, over the limit). */
	ok_eq(nd_rx_mrg(nd, f, VNET_RX_MAX_SEGS * VNET_RX_BUF_SIZE - 12, 0, 0, 0, NULL),
	      VNET_RX_MAX_SEGS);
	ok_eq(vnet_rx_poll(vn, on_rx_keep, &log, 64), 1);
	ok_eq(log.n, 1);
	ok_eq(vn->stats.rx_dropped, 4);
	/* num_buffers too small: the frame's second buffer looks like a frame of its own, whose
	 * "header" (zeros here) says 0 buffers: dropped, nothing crashes. */
	ok_eq(nd_rx_mrg(nd, f, 5000, 0, 1, 0, NULL), 2);
	ok_eq(vnet_rx_poll(vn, on_rx_keep, &log, 16), 2);
	ok_eq(log.n, 2);
	ok_eq(log.last_len, 4084);
	ok_eq(vn->stats.rx_dropped, 5);
	/* And the next good frame is whole. */
	ok_eq(nd_rx_mrg(nd, f, 5000, 0, 0, 0, NULL), 2);
	ok_eq(vnet_rx_poll(vn, on_rx_keep, &log, 16), 1);
	ok_eq(log.n, 3);
	ok_eq(log.last_len, 5000);
	ok(memcmp(log.copy, f, 5000) == 0);
	/* No buffer lost on the way. */
	ok_eq(vn->rx_nfree + vn->rxq.size, vn->rx_nbufs);
	vnet_destroy(vn);
	free(log.copy);
	free(nd);
}

TEST(guest_tso4_only_with_mrg_rxbuf)
{
	struct netdouble *nd =
	    nd_new(VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4));
	struct vnet *vn;
	char feat[128];

	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	vnet_features_str(vn, feat, sizeof(feat));
	ok(strcmp(feat, "guest-csum") == 0);
	ok(!(nd->d.accepted & VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4)));
	vnet_destroy(vn);
	free(nd);
}

/* ---- Transmit segmentation (HOST_TSO4): merging lwIP's segments ---------------------------- */

struct seg_spec {
	uint32_t seq, ack;
	uint16_t payload, sport, win;
	uint8_t flags, tos, ihl_words, opt_byte;
	uint16_t frag;
};

/* Ethernet + IPv4 + TCP (12 bytes of options) + payload, the TCP checksum field holding the
 * pseudo-header sum as lwIP's netif leaves it. The frame's length. */
static size_t tcp_seg(uint8_t *f, const struct seg_spec *s)
{
	unsigned ihl = s->ihl_words ? s->ihl_words * 4u : 20, thl = 32;
	size_t tot = ihl + thl + s->payload;
	uint8_t *ip = f + 14, *th = f + 14 + ihl;
	uint32_t sum;

	memset(f, 0, 14 + tot);
	memcpy(f, "\x52\x54\x00\x12\x34\x57\x52\x54\x00\x12\x34\x56\x08\x00", 14);
	ip[0] = (uint8_t)(0x40 | ihl / 4);
	ip[1] = s->tos;
	ip[2] = (uint8_t)(tot >> 8);
	ip[3] = (uint8_t)tot;
	ip[6] = (uint8_t)(s->frag >> 8);
	ip[7] = (uint8_t)s->frag;
	ip[8] = 255;
	ip[9] = 6;
	memcpy(ip + 12, "\xc0\xa8\x4d\x02\xc0\xa8\x4d\x01", 8);
	th[0] = (uint8_t)(s->sport >> 8);
	th[1] = (uint8_t)s->sport;
	th[2] = 0x2a;
	th[3] = 0x39;
	for (unsigned i = 0; i < 4; i++) {
		th[4 + i] = (uint8_t)(s->seq >> (24 - 8 * i));
		th[8 + i] = (uint8_t)(s->ack >> (24 - 8 * i));
	}
	th[12] = (uint8_t)((thl / 4) << 4);
	th[13] = s->flags;
	th[14] = (uint8_t)(s->win >> 8);
	th[15] = (uint8_t)s->win;
	th[20] = 1; /* NOP NOP, then SACK-permitted-like filler: any bytes, compared as such */
	th[21] = 1;
	th[22] = s->opt_byte;
	for (unsigned i = 0; i < s->payload; i++)
		th[thl + i] = (uint8_t)((s->seq + i) * 13);
	sum = 6 + thl + s->payload + 0xc0a8 + 0x4d02 + 0xc0a8 + 0x4d01;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	th[16] = (uint8_t)(sum >> 8);
	th[17] = (uint8_t)sum;
	return 14 + tot;
}

static struct seg_spec seg_default(uint32_t seq, uint16_t payload)
{
	return (struct seg_spec){ .seq = seq,
				  .ack = 777,
				  .payload = payload,
				  .sport = 10809,
				  .win = 4000,
				  .flags = 0x10 };
}

/* Parse and ask whether @b may follow @a (a frame of @a.payload bytes in segments of @mss). */
static int may_merge(struct seg_spec a, struct seg_spec b, uint16_t mss)
{
	static uint8_t fa[70000], fb[2048];
	size_t la = tcp_seg(fa, &a), lb = tcp_seg(fb, &b);
	struct vnet_tso_info ia, ib;

	if (vnet_tso_parse(fa, la, la, &ia) || vnet_tso_parse(fb, lb, lb, &ib))
		return -1;
	return vnet_tso_may_merge(fa, &ia, mss, fb, &ib);
}

TEST(tso_parse_takes_only_plain_data_segments)
{
	static uint8_t f[2048];
	struct vnet_tso_info t;
	struct seg_spec s = seg_default(1000, 1448);
	size_t len = tcp_seg(f, &s);
	static const uint8_t refused[] = { 0x02, 0x12, 0x01, 0x11, 0x04, 0x14, 0x30, 0x50, 0x90 };

	ok_eq(vnet_tso_parse(f, len, len, &t), 0);
	ok_eq(t.hlen, 14 + 20 + 32);
	ok_eq(t.tcp_off, 34);
	ok_eq(t.payload, 1448);
	ok_eq(t.seq, 1000);
	s.flags = 0x18; /* ACK PSH */
	len = tcp_seg(f, &s);
	ok_eq(vnet_tso_parse(f, len, len, &t), 0);
	/* SYN, SYN-ACK, FIN, FIN-ACK, RST, RST-ACK, URG-ACK, ECE-ACK, CWR-ACK, no ACK: refused. */
	for (unsigned i = 0; i < ARRAY_SIZE(refused); i++) {
		s.flags = refused[i];
		len = tcp_seg(f, &s);
		ok_eq(vnet_tso_parse(f, len, len, &t), -EINVAL);
	}
	s.flags = 0;
	len = tcp_seg(f, &s);
	ok_eq(vnet_tso_parse(f, len, len, &t), -EINVAL);
	/* A pure ACK (no payload), IP options, a fragment, not TCP, not IPv4, padding. */
	s = seg_default(1000, 0);
	len = tcp_seg(f, &s);
	ok_eq(vnet_tso_parse(f, len, len, &t), -EINVAL);
	s = seg_default(1000, 100);
	s.ihl_words = 6;
	len = tcp_seg(f, &s);
	ok_eq(vnet_tso_parse(f, len, len, &t), -EINVAL);
	s = seg_default(1000, 100);
	s.frag = 0x2000;
	len = tcp_seg(f, &s);
	ok_eq(vnet_tso_parse(f, len, len, &t), -EINVAL);
	s.frag = 0x4000; /* DF is fine */
	len = tcp_seg(f, &s);
	ok_eq(vnet_tso_parse(f, len, len, &t), 0);
	f[23] = 17;
	ok_eq(vnet_tso_parse(f, len, len, &t), -EINVAL);
	f[23] = 6;
	f[12] = 0x86;
	ok_eq(vnet_tso_parse(f, len, len, &t), -EINVAL);
	f[12] = 0x08;
	ok_eq(vnet_tso_parse(f, len + 6, len + 6, &t), -EINVAL);
	/* Headers not all there. */
	ok_eq(vnet_tso_parse(f, 60, len, &t), -EINVAL);
}

TEST(tso_merge_rules)
{
	struct seg_spec a = seg_default(1000, 1448), b = seg_default(1000 + 1448, 1448);
	struct seg_spec x;

	ok_eq(may_merge(a, b, 1448), 1);
	/* Several full segments already held; the last may be short and carry PSH. */
	a.payload = 4 * 1448;
	b.seq = 1000 + 4 * 1448;
	ok_eq(may_merge(a, b, 1448), 1);
	b.payload = 10;
	b.flags = 0x18;
	ok_eq(may_merge(a, b, 1448), 1);
	b = seg_default(1000 + 4 * 1448, 1448);
	/* Sequence gap, overlap (a retransmission), or before. */
	x = b;
	x.seq += 1;
	ok_eq(may_merge(a, x, 1448), 0);
	x.seq -= 2;
	ok_eq(may_merge(a, x, 1448), 0);
	/* Another flow (port), another acknowledgment, another window, TOS, options. */
	x = b;
	x.sport++;
	ok_eq(may_merge(a, x, 1448), 0);
	x = b;
	x.ack++;
	ok_eq(may_merge(a, x, 1448), 0);
	x = b;
	x.win++;
	ok_eq(may_merge(a, x, 1448), 0);
	x = b;
	x.tos = 4;
	ok_eq(may_merge(a, x, 1448), 0);
	x = b;
	x.opt_byte = 9;
	ok_eq(may_merge(a, x, 1448), 0);
	/* The held frame ends with a short segment or with PSH: nothing may follow. */
	x = a;
	x.payload = 4 * 1448 - 1;
	b.seq = 1000 + x.payload;
	ok_eq(may_merge(x, b, 1448), 0);
	b.seq = 1000 + 4 * 1448;
	x = a;
	x.flags = 0x18;
	ok_eq(may_merge(x, b, 1448), 0);
	/* A segment above the gso size. */
	x = b;
	x.payload = 1449;
	ok_eq(may_merge(a, x, 1448), 0);
	/* The IPv4 length limit: 44 full segments fit (20 + 32 + 44 * 1448 = 63764), 45 not. */
	a.payload = 44 * 1448;
	b.seq = 1000 + a.payload;
	ok_eq(may_merge(a, b, 1448), 1);
	a.payload = 45 * 1448;
	b.seq = 1000 + a.payload;
	ok_eq(may_merge(a, b, 1448), 0);
}

static uint16_t be16_at(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

TEST(tso_tx_sends_gso_frames_in_order)
{
	struct netdouble *nd = nd_new(VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_CSUM) |
				      VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4));
	static uint8_t f[2048], want[8192];
	struct vnet_csum cs = { 34, 16 };
	struct virtio_net_hdr *h;
	const uint8_t *fr;
	struct seg_spec s;
	size_t len, wl = 0;
	struct vnet *vn;
	char feat[128];
	uint32_t sum = 0;

	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	vnet_features_str(vn, feat, sizeof(feat));
	ok(strcmp(feat, "mac csum host-tso4") == 0);
	/* Three full segments and a short one with PSH: one GSO frame at the end of the pass. */
	for (unsigned i = 0; i < 4; i++) {
		s = seg_default(5000 + i * 1448, i < 3 ? 1448 : 500);
		if (i == 3)
			s.flags = 0x18;
		len = tcp_seg(f, &s);
		if (i == 0) {
			memcpy(want, f, len);
			wl = len;
		} else {
			memcpy(want + wl, f + 66, len - 66);
			wl += len - 66;
		}
		ok_eq(vnet_tx(vn, f, len, &cs), 0);
	}
	ok_eq(vn->stats.tx_packets, 0); /* held */
	vnet_tx_kick(vn);
	ok_eq(nd->ntx, 1);
	h = (void *)(uintptr_t)nd->tx[0].seg[0].addr;
	fr = (const uint8_t *)(h + 1);
	ok_eq(nd->tx[0].seg[0].len, sizeof(*h) + wl);
	ok_eq(h->flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
	ok_eq(h->gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
	ok_eq(le16_to_cpu(h->gso_size), 1448);
	ok_eq(le16_to_cpu(h->hdr_len), 66);
	ok_eq(le16_to_cpu(h->csum_start), 34);
	ok_eq(le16_to_cpu(h->csum_offset), 16);
	/* Payloads back to back; the IP length covers all; the IP checksum is right; PSH set. */
	ok(memcmp(fr + 66, want + 66, wl - 66) == 0);
	ok_eq(be16_at(fr + 16), wl - 14);
	for (unsigned i = 14; i < 34; i += 2)
		sum += be16_at(fr + i);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	ok_eq(sum, 0xffff);
	ok_eq(fr[34 + 13], 0x18);
	/* The TCP field: the pseudo-header sum for the whole length. */
	sum = 6 + (uint32_t)(wl - 34) + 0xc0a8 + 0x4d02 + 0xc0a8 + 0x4d01;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	ok_eq(be16_at(fr + 34 + 16), sum);
	ok_eq(vn->stats.tx_gso, 1);
	ok_eq(vn->stats.tx_gso_segs, 4);
	ok_eq(vn->stats.tx_packets, 1);
	nd_tx_done(nd);
	vnet_poll(vn);

	/* Order is kept: a held segment leaves before a frame that cannot join it (an ARP, a
	 * segment of another flow), and a lone held segment goes as it is (no GSO). */
	s = seg_default(9000, 1448);
	len = tcp_seg(f, &s);
	ok_eq(vnet_tx(vn, f, len, &cs), 0);
	s = seg_default(9000, 1448);
	s.sport = 4444;
	len = tcp_seg(f, &s);
	ok_eq(vnet_tx(vn, f, len, &cs), 0);
	memset(f, 0, 60);
	memcpy(f, "\xff\xff\xff\xff\xff\xff\x52\x54\x00\x12\x34\x56\x08\x06", 14);
	ok_eq(vnet_tx(vn, f, 60, NULL), 0);
	vnet_tx_kick(vn);
	ok_eq(nd->ntx, 3);
	for (unsigned i = 0; i < 2; i++) {
		h = (void *)(uintptr_t)nd->tx[i].seg[0].addr;
		fr = (const uint8_t *)(h + 1);
		ok_eq(h->gso_type, VIRTIO_NET_HDR_GSO_NONE);
		ok_eq(h->flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
		ok_eq(be16_at(fr + 34), i == 0 ? 10809 : 4444);
	}
	h = (void *)(uintptr_t)nd->tx[2].seg[0].addr;
	ok_eq(((const uint8_t *)(h + 1))[13], 0x06);
	ok_eq(vn->stats.tx_gso, 1);
	nd_tx_done(nd);
	vnet_destroy(vn);
	free(nd);
}

TEST(host_tso4_only_with_csum)
{
	struct netdouble *nd = nd_new(VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4));
	struct vnet *vn;

	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	ok(!virtio_has(vn->vdev, VIRTIO_NET_F_HOST_TSO4));
	ok(!vn->tso);
	vnet_destroy(vn);
	free(nd);
}

/* ---- Transmit by reference (vnet_tx_frags_ref) -------------------------------------------- */

/* Each reference is a counter: the completion callback bumps it, so "released exactly once"
 * is each counter at 1. */
static unsigned done_calls;

static void on_tx_done(void *ctx, void *ref)
{
	(void)ctx;
	(*(unsigned *)ref)++;
	done_calls++;
}

#define REF_FEATURES                                                                               \
	(VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_CSUM) |                            \
	 VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))

TEST(tx_ref_chain_points_at_the_fragments_and_releases_once)
{
	struct netdouble *nd = nd_new(REF_FEATURES);
	static uint8_t hdr[42], payload[1400];
	struct vnet_frag fr[3] = { { hdr, sizeof(hdr) }, { payload, 0 }, { payload, 1400 } };
	struct vnet_csum cs = { 34, 6 };
	struct virtio_net_hdr *h;
	unsigned tok = 0;
	struct vnet *vn;
	char feat[128];

	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	vnet_features_str(vn, feat, sizeof(feat));
	ok(strcmp(feat, "mac csum indirect") == 0);
	ok_eq(vn->tx_max_pieces, VNET_TX_INDIRECT);
	vnet_set_tx_done(vn, on_tx_done, NULL);
	done_calls = 0;
	ok_eq(vnet_tx_frags_ref(vn, fr, 3, &cs, &tok), VNET_TX_REFERENCED);
	vnet_tx_kick(vn);
	if (!ok_eq(nd->ntx, 1))
		goto out;
	/* Header buffer, then each non-empty fragment where it is: one indirect ring slot. */
	ok(nd->tx[0].indirect);
	ok_eq(nd->tx[0].n, 3);
	ok_eq(nd->tx[0].seg[0].len, sizeof(*h));
	ok_eq(nd->tx[0].seg[1].addr, (uint64_t)(uintptr_t)hdr);
	ok_eq(nd->tx[0].seg[1].len, sizeof(hdr));
	ok_eq(nd->tx[0].seg[2].addr, (uint64_t)(uintptr_t)payload);
	ok_eq(nd->tx[0].seg[2].len, 1400);
	ok(!nd->tx[0].seg[2].write);
	h = (void *)(uintptr_t)nd->tx[0].seg[0].addr;
	ok_eq(h->flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
	ok_eq(le16_to_cpu(h->csum_start), 34);
	ok_eq(h->gso_type, VIRTIO_NET_HDR_GSO_NONE);
	/* Held until the device returns the chain, however often we poll. */
	ok_eq(vnet_poll(vn), 0);
	ok_eq(tok, 0);
	nd_tx_done(nd);
	ok_eq(vnet_poll(vn), 0);
	ok_eq(tok, 1);
	ok_eq(vnet_poll(vn), 0);
	ok_eq(tok, 1);
	ok_eq(vn->stats.tx_ref, 1);
	ok_eq(vn->stats.tx_copied, 0);
	ok_eq(vn->stats.tx_ref_done, 1);
	ok_eq(vn->stats.tx_packets, 1);
	ok_eq(vn->stats.tx_bytes, sizeof(hdr) + 1400);
	/* Still in flight at teardown: given back once the device is reset. */
	ok_eq(vnet_tx_frags_ref(vn, fr, 3, NULL, &tok), VNET_TX_REFERENCED);
	vnet_tx_kick(vn);
out:
	vnet_destroy(vn);
	ok_eq(tok, 2);
	ok_eq(done_calls, 2);
	free(nd);
}

/* One frame of @n fragments of @each bytes out of @buf, sent with @ref. */
static int send_n(struct vnet *vn, uint8_t *buf, unsigned n, size_t each,
		  const struct vnet_csum *cs, void *ref)
{
	struct vnet_frag fr[80];

	for (unsigned i = 0; i < n; i++)
		fr[i] = (struct vnet_frag){ buf + i * each, each };
	return vnet_tx_frags_ref(vn, fr, n, cs, ref);
}

TEST(tx_ref_falls_back_to_copying)
{
	struct netdouble *nd = nd_new(REF_FEATURES);
	static uint8_t buf[VNET_MAX_FRAME];
	struct vnet_csum cs = { 34, 16 };
	unsigned tok = 0;
	struct vnet *vn;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)i;
	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	/* No completion callback yet: copied. */
	ok_eq(send_n(vn, buf, 1, 1000, NULL, &tok), 0);
	vnet_set_tx_done(vn, on_tx_done, NULL);
	/* No reference offered; an ACK-sized frame; a chain longer than the indirect table. */
	ok_eq(send_n(vn, buf, 1, 1000, NULL, NULL), 0);
	ok_eq(send_n(vn, buf, 1, VNET_TX_REF_MIN - 1, NULL, &tok), 0);
	ok_eq(send_n(vn, buf, VNET_TX_INDIRECT, 20, NULL, &tok), 0);
	/* The longest chain that fits goes by reference. */
	ok_eq(send_n(vn, buf, VNET_TX_INDIRECT - 1, 20, NULL, &tok), VNET_TX_REFERENCED);
	vnet_tx_kick(vn);
	ok_eq(nd->ntx, 5);
	/* A copied frame: one descriptor, the bytes in the driver's buffer. */
	ok_eq(nd->tx[3].n, 1);
	ok_eq(nd->tx[3].seg[0].len, 12 + VNET_TX_INDIRECT * 20);
	ok(memcmp((uint8_t *)(uintptr_t)nd->tx[3].seg[0].addr + 12, buf, VNET_TX_INDIRECT * 20) ==
	   0);
	ok_eq(nd->tx[4].n, VNET_TX_INDIRECT);
	ok_eq(vn->stats.tx_copied, 4);
	ok_eq(vn->stats.tx_ref, 1);
	nd_tx_done(nd);
	vnet_poll(vn);
	ok_eq(tok, 1);
	vnet_destroy(vn);
	free(nd);

	/* Without CSUM the driver would finish the sum in the caller's bytes: copied. */
	nd = nd_new(VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	vnet_set_tx_done(vn, on_tx_done, NULL);
	ok_eq(send_n(vn, buf, 2, 500, &cs, &tok), 0);
	ok_eq(vn->stats.tx_csum_sw, 1);
	ok_eq(send_n(vn, buf, 2, 500, NULL, &tok), VNET_TX_REFERENCED);
	vnet_destroy(vn);
	free(nd);

	/* Behind an IOMMU (ACCESS_PLATFORM) our addresses are not the device's: copied. */
	nd = nd_new(REF_FEATURES | VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM));
	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	vnet_set_tx_done(vn, on_tx_done, NULL);
	ok_eq(send_n(vn, buf, 2, 500, NULL, &tok), 0);
	vnet_destroy(vn);
	free(nd);
	ok_eq(tok, 2);
}

TEST(tx_ref_direct_chains_and_ring_full)
{
	/* No INDIRECT_DESC: chains of up to VNET_TX_DIRECT_MAX descriptors on the ring itself. */
	struct netdouble *nd = nd_new(VIRTIO_BIT(VIRTIO_NET_F_MAC));
	static uint8_t buf[VNET_MAX_FRAME];
	static unsigned tok[32];
	unsigned sent = 0, per = VNET_TX_DIRECT_MAX - 1;
	struct vnet *vn;
	int rc;

	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	ok_eq(vn->tx_max_pieces, VNET_TX_DIRECT_MAX);
	vnet_set_tx_done(vn, on_tx_done, NULL);
	done_calls = 0;
	ok_eq(send_n(vn, buf, per + 1, 100, NULL, &tok[31]), 0); /* too long: copied */
	ok_eq(tok[31], 0);
	/* Each frame takes VNET_TX_DIRECT_MAX descriptors: the ring holds 128 / 8 of them. */
	while (sent < 31 && (rc = send_n(vn, buf, per, 100, NULL, &tok[sent])) == 1)
		sent++;
	ok_eq(rc, -EAGAIN);
	ok_eq(sent, (128 - 1) / VNET_TX_DIRECT_MAX);
	ok_eq(vn->stats.tx_busy, 1);
	/* The refused frame was not kept: nothing comes back for it, its buffer is free. */
	ok_eq(done_calls, 0);
	ok_eq(vn->tx_nfree, 128 - 1 - sent);
	ok_eq(nd->ntx, sent + 1);
	ok(!nd->tx[1].indirect);
	ok_eq(nd->tx[1].n, VNET_TX_DIRECT_MAX);
	nd_tx_done(nd);
	/* The retry reclaims the finished chains (releasing them) and goes through. */
	ok_eq(send_n(vn, buf, per, 100, NULL, &tok[sent]), VNET_TX_REFERENCED);
	ok_eq(done_calls, sent);
	for (unsigned i = 0; i < sent; i++)
		ok_eq(tok[i], 1);
	vnet_tx_kick(vn);
	nd_tx_done(nd);
	ok_eq(vnet_poll(vn), 0);
	ok_eq(tok[sent], 1);
	ok_eq(done_calls, sent + 1);
	vnet_destroy(vn);
	ok_eq(done_calls, sent + 1);
	free(nd);
}

TEST(tso_by_reference_one_header_and_the_payloads)
{
	struct netdouble *nd = nd_new(REF_FEATURES | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4));
	static uint8_t f[5][2048];
	struct vnet_csum cs = { 34, 16 };
	struct vnet_frag fr[2];
	struct virtio_net_hdr *h;
	unsigned tok[5] = { 0 };
	const uint8_t *hd;
	struct seg_spec s;
	size_t len[5], wl = 66;
	struct vnet *vn;
	uint32_t sum = 0;

	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	vnet_set_tx_done(vn, on_tx_done, NULL);
	done_calls = 0;
	/* Three full segments and a short one with PSH, each as headers + payload fragments. */
	for (unsigned i = 0; i < 4; i++) {
		s = seg_default(5000 + i * 1448, i < 3 ? 1448 : 500);
		if (i == 3)
			s.flags = 0x18;
		len[i] = tcp_seg(f[i], &s);
		wl += len[i] - 66;
		fr[0] = (struct vnet_frag){ f[i], 40 };
		fr[1] = (struct vnet_frag){ f[i] + 40, len[i] - 40 };
		ok_eq(vnet_tx_frags_ref(vn, fr, 2, &cs, &tok[i]), VNET_TX_REFERENCED);
	}
	vnet_tx_kick(vn);
	if (!ok_eq(nd->ntx, 1))
		goto out;
	/* One chain: our buffer with the virtio header and the rewritten headers, then each
	 * segment's payload where it is (the headers split at 40 bytes do not matter). */
	ok(nd->tx[0].indirect);
	ok_eq(nd->tx[0].n, 5);
	ok_eq(nd->tx[0].seg[0].len, sizeof(*h) + 66);
	for (unsigned i = 0; i < 4; i++) {
		ok_eq(nd->tx[0].seg[1 + i].addr, (uint64_t)(uintptr_t)(f[i] + 66));
		ok_eq(nd->tx[0].seg[1 + i].len, len[i] - 66);
	}
	h = (void *)(uintptr_t)nd->tx[0].seg[0].addr;
	hd = (const uint8_t *)(h + 1);
	ok_eq(h->gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
	ok_eq(le16_to_cpu(h->gso_size), 1448);
	ok_eq(le16_to_cpu(h->hdr_len), 66);
	ok_eq(h->flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
	ok_eq(be16_at(hd + 16), wl - 14);
	for (unsigned i = 14; i < 34; i += 2)
		sum += be16_at(hd + i);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	ok_eq(sum, 0xffff);
	ok_eq(hd[34 + 13], 0x18);
	/* The segments' own headers are untouched (lwIP may retransmit from them). */
	ok_eq(be16_at(f[0] + 16), len[0] - 14);
	ok_eq(vn->stats.tx_gso, 1);
	ok_eq(vn->stats.tx_gso_segs, 4);
	ok_eq(vn->stats.tx_ref, 1);
	ok_eq(done_calls, 0);
	nd_tx_done(nd);
	ok_eq(vnet_poll(vn), 0);
	for (unsigned i = 0; i < 4; i++)
		ok_eq(tok[i], 1);
	ok_eq(done_calls, 4);
	/* A segment held (not yet placed) at teardown is given back too. */
	s = seg_default(20000, 1448);
	len[4] = tcp_seg(f[4], &s);
	fr[0] = (struct vnet_frag){ f[4], len[4] };
	ok_eq(vnet_tx_frags_ref(vn, fr, 1, &cs, &tok[4]), VNET_TX_REFERENCED);
	ok_eq(nd->ntx, 0);
out:
	vnet_destroy(vn);
	ok_eq(tok[4], 1);
	ok_eq(done_calls, 5);
	free(nd);
}

/* The transmit epoch: a reference's sequence number, and "all below S came back". */
TEST(tx_ref_epoch_with_out_of_order_completion)
{
	struct netdouble *nd = nd_new(REF_FEATURES | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4));
	static uint8_t buf[VNET_MAX_FRAME], seg[2048];
	static unsigned tok[8];
	struct vnet_csum cs = { 34, 16 };
	struct vnet_frag fr;
	struct seg_spec s;
	struct vnet *vn;

	ok_eq(vnet_create(&nd->d.vdev, &vn), 0);
	vnet_set_tx_done(vn, on_tx_done, NULL);
	ok_eq(vnet_tx_ref_seq(vn), 0);
	ok(vnet_tx_ref_returned(vn, 0));
	/* A copied frame takes no number. */
	ok_eq(send_n(vn, buf, 1, 100, NULL, &tok[7]), 0);
	ok_eq(vnet_tx_ref_seq(vn), 0);
	/* Three by reference: 0, 1, 2. */
	for (unsigned i = 0; i < 3; i++)
		ok_eq(send_n(vn, buf, 1, 1000, NULL, &tok[i]), VNET_TX_REFERENCED);
	ok_eq(vnet_tx_ref_seq(vn), 3);
	vnet_tx_kick(vn);
	if (!ok_eq(nd->ntx, 4))
		goto out;
	ok(vnet_tx_ref_returned(vn, 0));
	ok(!vnet_tx_ref_returned(vn, 1));
	/* The device returns the last two first: two completions, but number 0 is still out. */
	vdd_push(&nd->d.q[1], nd->tx[3].head, 0);
	vdd_push(&nd->d.q[1], nd->tx[2].head, 0);
	ok_eq(vnet_poll(vn), 0);
	ok_eq(tok[1] + tok[2], 2);
	ok_eq(tok[0], 0);
	ok(!vnet_tx_ref_returned(vn, 1));
	ok(!vnet_tx_ref_returned(vn, 2));
	ok(!vnet_tx_ref_returned(vn, 3));
	vdd_push(&nd->d.q[1], nd->tx[0].head, 0);
	vdd_push(&nd->d.q[1], nd->tx[1].head, 0);
	nd->ntx = 0;
	ok_eq(vnet_poll(vn), 0);
	ok_eq(tok[0], 1);
	ok(vnet_tx_ref_returned(vn, 3));
	/* The oldest back, a newer one out: all below it came back, not below the newer. */
	ok_eq(send_n(vn, buf, 1, 1000, NULL, &tok[3]), VNET_TX_REFERENCED);
	ok_eq(send_n(vn, buf, 1, 1000, NULL, &tok[4]), VNET_TX_REFERENCED);
	vnet_tx_kick(vn);
	if (!ok_eq(nd->ntx, 2))
		goto out;
	vdd_push(&nd->d.q[1], nd->tx[0].head, 0);
	ok_eq(vnet_poll(vn), 0);
	ok(vnet_tx_ref_returned(vn, 4));
	ok(!vnet_tx_ref_returned(vn, 5));
	vdd_push(&nd->d.q[1], nd->tx[1].head, 0);
	nd->ntx = 0;
	ok_eq(vnet_poll(vn), 0);
	ok(vnet_tx_ref_returned(vn, 5));
	/* A TCP segment held to merge (not on the ring yet) counts as out. */
	s = seg_default(9000, 1448);
	fr = (struct vnet_frag){ seg, tcp_seg(seg, &s) };
	ok_eq(vnet_tx_frags_ref(vn, &fr, 1, &cs, &tok[5]), VNET_TX_REFERENCED);
	ok_eq(nd->ntx, 0);
	ok_eq(vnet_tx_ref_seq(vn), 6);
	ok(vnet_tx_ref_returned(vn, 5));
	ok(!vnet_tx_ref_returned(vn, 6));
	vnet_tx_kick(vn);
	ok(!vnet_tx_ref_returned(vn, 6));
	nd_tx_done(nd);
	ok_eq(vnet_poll(vn), 0);
	ok_eq(tok[5], 1);
	ok(vnet_tx_ref_returned(vn, 6));
out:
	vnet_destroy(vn);
	free(nd);
}
