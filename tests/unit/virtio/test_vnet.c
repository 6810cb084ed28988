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
