/* SPDX-License-Identifier: MIT */
/*
 * virtio-net driver (virtio 1.1 §5.1): one receive and one transmit queue, polled. This is
 * the API the lwIP netif glue (net/lwip/netif_vnet.c) consumes:
 *
 *   vnet_rx_poll(vn, cb, ctx, budget)  hands each received Ethernet frame to cb (the bytes are
 *                                      valid only during the call: copy them into a pbuf), then
 *                                      gives the buffer straight back to the device, so the
 *                                      receive ring stays full;
 *   vnet_tx(vn, frame, len, csum)      copies a frame (or vnet_tx_frags: a pbuf chain) into a
 *                                      transmit buffer and places it on the ring; finished
 *                                      buffers are reclaimed by vnet_tx itself and by
 *                                      vnet_poll();
 *   vnet_tx_kick(vn)                   one doorbell for the frames placed since the last one;
 *   vnet_poll(vn)                      reclaims transmit buffers and refreshes the link status;
 *   vnet_mac(), vnet_link_up(), vn->stats.
 *
 * Checksums: a frame passed with a struct vnet_csum has the pseudo-header sum already in its
 * checksum field (what lwIP or Linux put there for offload); the device finishes it when it
 * offered VIRTIO_NET_F_CSUM, this driver does otherwise, so the caller need not care. On
 * receive, a frame flagged VNET_RX_CSUM_OK had its transport checksum vouched for by the
 * device: DATA_VALID (checked), or NEEDS_CSUM (a local sender's frame that never crossed a
 * wire, its checksum field still the pseudo-header sum, as Linux's virtio_net treats it: the
 * sum is not finished here, nobody downstream reads it). The stack must skip checking it.
 */
#ifndef DRIVERS_VIRTIO_NET_VNET_H
#define DRIVERS_VIRTIO_NET_VNET_H

#include "core/base/util.h"
#include "drivers/virtio/virtio.h"
#include "drivers/virtio/virtqueue.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- On-device structures (§5.1.3, §5.1.4, §5.1.6) -------------------------------------- */

#define VIRTIO_NET_F_CSUM	0 /* device finishes checksums of frames we send */
#define VIRTIO_NET_F_GUEST_CSUM 1 /* device may hand us frames with partial/validated sums */
#define VIRTIO_NET_F_MTU	3
#define VIRTIO_NET_F_MAC	5
#define VIRTIO_NET_F_STATUS	16

#define VIRTIO_NET_S_LINK_UP 1

struct virtio_net_config {
	uint8_t mac[6];
	le16 status; /* with STATUS */
	le16 max_virtqueue_pairs;
	le16 mtu; /* with MTU */
};
_Static_assert(sizeof(struct virtio_net_config) == 12, "virtio 1.1 §5.1.4");

#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_GSO_NONE	    0

/* Precedes every frame in both directions; num_buffers is always there with VERSION_1. */
struct virtio_net_hdr {
	uint8_t flags;
	uint8_t gso_type;
	le16 hdr_len;
	le16 gso_size;
	le16 csum_start;
	le16 csum_offset;
	le16 num_buffers;
};
_Static_assert(sizeof(struct virtio_net_hdr) == 12, "virtio 1.1 §5.1.6");

/* ---- The driver ---------------------------------------------------------------------------- */

#define VNET_QUEUE_SIZE	  128  /* per direction; every receive slot always holds a buffer */
#define VNET_BUF_SIZE	  2048 /* header + frame; §5.1.6.3.1 needs 1526 without MRG_RXBUF */
#define VNET_MAX_FRAME	  (VNET_BUF_SIZE - sizeof(struct virtio_net_hdr))
#define VNET_LINK_POLL_NS (200 * NSEC_PER_MSEC)

#define VNET_RX_CSUM_OK 0x1

struct vnet_stats {
	uint64_t rx_packets, rx_bytes;
	uint64_t rx_dropped; /* malformed completions (length out of range) */
	uint64_t tx_packets, tx_bytes;
	uint64_t tx_busy;	  /* vnet_tx found every buffer in flight */
	uint64_t tx_csum_sw;	  /* checksums finished here because the device lacks CSUM */
	uint64_t tx_csum_dev;	  /* frames sent NEEDS_CSUM: the device finishes the sum */
	uint64_t rx_csum_valid;	  /* frames the device flagged DATA_VALID */
	uint64_t rx_csum_partial; /* frames flagged NEEDS_CSUM: trusted, the sum left partial */
	uint64_t link_changes;
};

/* Where the transport checksum goes: summed over [start, frame end), stored at start+offset. */
struct vnet_csum {
	uint16_t start;
	uint16_t offset;
};

struct vnet_frag {
	const void *data;
	size_t len;
};

typedef void (*vnet_rx_fn)(void *ctx, const void *frame, size_t len, unsigned flags);

struct vnet {
	struct virtio_dev *vdev;
	struct vq rxq, txq;
	char name[24];
	uint8_t mac[6];
	uint16_t mtu;
	bool link_up;
	bool dead;

	uint8_t *rx_bufs, *tx_bufs; /* vq.size buffers of VNET_BUF_SIZE each, DMA memory */
	uint64_t rx_bus, tx_bus;
	size_t rx_pages, tx_pages;
	uint16_t *tx_free; /* stack of free transmit buffer numbers */
	unsigned tx_nfree;
	uint64_t next_link_check;

	struct vnet_stats stats;
};

/*
 * Drive the virtio-net device @vdev: negotiate (MAC, STATUS, CSUM, GUEST_CSUM, MTU when
 * offered), fill the receive ring, DRIVER_OK. 0 and *out, or -ENODEV, -EIO, -ETIMEDOUT, -ENOMEM.
 */
int vnet_create(struct virtio_dev *vdev, struct vnet **out);
/* Reset the device and free everything. */
void vnet_destroy(struct vnet *vn);

/*
 * Hand up to @budget received frames to @cb (Ethernet header first, no virtio header), each
 * buffer going back to the device right after. Number delivered, or -EIO for a broken device.
 */
int vnet_rx_poll(struct vnet *vn, vnet_rx_fn cb, void *ctx, unsigned budget);
/*
 * Send one frame made of @n fragments (copied, so they may be reused at once), with an
 * optional checksum to finish. 0, -EAGAIN when every transmit buffer is in flight (poll and
 * retry, or drop), -EMSGSIZE when it exceeds VNET_MAX_FRAME, -EINVAL for a bad @csum, -EIO.
 */
int vnet_tx_frags(struct vnet *vn, const struct vnet_frag *frags, unsigned n,
		  const struct vnet_csum *csum);
static inline int vnet_tx(struct vnet *vn, const void *frame, size_t len,
			  const struct vnet_csum *csum)
{
	struct vnet_frag f = { frame, len };

	return vnet_tx_frags(vn, &f, 1, csum);
}
/*
 * Reclaim finished transmit buffers; refresh the link status now and then. 0 or -EIO. Rings
 * the transmit doorbell first for frames not announced yet (vnet_tx_kick()).
 */
int vnet_poll(struct vnet *vn);
/*
 * vnet_tx_frags() only places frames on the ring: one doorbell, here, announces all of them
 * (the device may decline it: virtqueue.h, vq_kick()). The main loop calls it at the end of
 * every pass; a full ring rings it from vnet_tx_frags() itself. Nothing when nothing is new.
 */
void vnet_tx_kick(struct vnet *vn);

static inline const uint8_t *vnet_mac(const struct vnet *vn)
{
	return vn->mac;
}

static inline bool vnet_link_up(const struct vnet *vn)
{
	return vn->link_up;
}

/* The negotiated features as words ("mac status csum guest-csum") into @buf. */
void vnet_features_str(const struct vnet *vn, char *buf, unsigned len);

/* RFC 1071 checksum of [start, len) folded into the 16-bit field at start+offset (which
 * holds the pseudo-header sum). Exposed for the tests. -EINVAL when out of the frame. */
int vnet_csum_finish(uint8_t *frame, size_t len, uint16_t start, uint16_t offset);

#endif
