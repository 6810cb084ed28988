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

static void on_rx(void *ctx, const void *frame, size_t len, unsigned flags)
{
	struct rx_log *l = ctx;

	l->n++;
	memcpy(l->last, frame, len);
	l->last_len = len;
	l->last_flags = flags;
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
	ok_eq(vn->rxq.size, 128);
	/* Every receive slot holds a buffer, and the device was told. */
	ok_eq(vq_read16(&vn->rxq.avail->idx), 128);
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
	/* Three laps of the ring: buffers must come back each time. */
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
