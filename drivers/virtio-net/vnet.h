/* SPDX-License-Identifier: MIT */
/*
 * virtio-net driver (virtio 1.1 §5.1): one receive and one transmit queue, polled. This is
 * the API the lwIP netif glue (net/lwip/netif_vnet.c) consumes:
 *
 *   vnet_rx_poll(vn, cb, ctx, budget)  hands each received Ethernet frame to cb as the list
 *                                      of receive buffers it spans (one, or several with
 *                                      VIRTIO_NET_F_MRG_RXBUF); cb either copies it and the
 *                                      buffers go straight back to the device, or keeps them
 *                                      (zero copy) and gives each back later with
 *                                      vnet_rx_release(); the ring is refilled from a pool
 *                                      larger than the ring, so kept buffers do not starve it;
 *   vnet_tx(vn, frame, len, csum)      copies a frame (or vnet_tx_frags: a pbuf chain) into a
 *                                      transmit buffer and places it on the ring; finished
 *                                      buffers are reclaimed by vnet_tx itself and by
 *                                      vnet_poll();
 *   vnet_tx_frags_ref(.., ref)         the same, but the device may read the fragments where
 *                                      they are (zero copy): a small header buffer, then one
 *                                      descriptor per fragment; @ref goes back to the
 *                                      vnet_tx_done_fn once the device returned the chain;
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
#define VIRTIO_NET_F_GUEST_TSO4 7  /* device may hand us TCP/IPv4 segments above the MTU */
#define VIRTIO_NET_F_GUEST_TSO6 8  /* the same for IPv6 (not asked: no IPv6 here) */
#define VIRTIO_NET_F_HOST_TSO4	11 /* device segments our large TCP/IPv4 frames */
#define VIRTIO_NET_F_MRG_RXBUF	15 /* a received frame may span several buffers */
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
#define VIRTIO_NET_HDR_GSO_TCPV4    1
#define VIRTIO_NET_HDR_GSO_ECN	    0x80

/* Precedes every frame in both directions; num_buffers is always there with VERSION_1 (its
 * value means something only with MRG_RXBUF: the number of buffers the frame spans). */
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

#define VNET_QUEUE_SIZE	  128  /* transmit ring */
#define VNET_BUF_SIZE	  2048 /* transmit buffer: header + frame */
#define VNET_MAX_FRAME	  (VNET_BUF_SIZE - sizeof(struct virtio_net_hdr))
#define VNET_LINK_POLL_NS (200 * NSEC_PER_MSEC)

/*
 * Receive: a ring of up to VNET_RX_QUEUE_SIZE slots, refilled from VNET_RX_BUFS page-sized
 * buffers (§5.1.6.3.1 needs 1526 bytes per buffer without MRG_RXBUF). The spare buffers cover
 * what the stack keeps (zero copy) while the ring stays full. With GUEST_TSO4 (only taken
 * together with MRG_RXBUF) a frame is at most 14 + 65535 bytes: VNET_RX_MAX_SEGS buffers.
 */
#define VNET_RX_QUEUE_SIZE 256
#define VNET_RX_BUF_SIZE   4096
#define VNET_RX_BUFS	   1024
#define VNET_RX_MAX_FRAME  (14 + 65535)
#define VNET_RX_MAX_SEGS                                                                           \
	((VNET_RX_MAX_FRAME + sizeof(struct virtio_net_hdr) + VNET_RX_BUF_SIZE - 1) /              \
	 VNET_RX_BUF_SIZE)

/*
 * Transmit segmentation (HOST_TSO4, only with CSUM): lwIP never builds a segment above its
 * MSS, so the driver merges consecutive full-sized segments of one TCP flow, placed in one
 * main-loop pass, into one GSO frame (vnet_tso_may_merge() has the rules) held in one of
 * VNET_TSO_BUFS large buffers until the next frame cannot join it or the pass ends
 * (vnet_tx_kick, vnet_poll). The device cuts it back into gso_size segments.
 */
#define VNET_TSO_BUFS	  16
#define VNET_TSO_BUF_SIZE (17 * 4096)	 /* header + 14 + 65535, rounded up to pages */
#define VNET_TSO_MAX_IP	  65535		 /* IPv4 total length of a merged frame */
#define VNET_TSO_HDR_MAX  (14 + 20 + 60) /* Ethernet, IPv4 without options, TCP, options */

/*
 * Transmit by reference (vnet_tx_frags_ref): a chain of the transmit buffer (virtio header,
 * and for a merged GSO frame the rewritten headers) and the caller's fragments. With
 * INDIRECT_DESC a chain of up to VNET_TX_INDIRECT pieces takes one ring slot; without, chains
 * stay within VNET_TX_DIRECT_MAX pieces so a few frames cannot fill the ring. Frames under
 * VNET_TX_REF_MIN bytes (ACKs, ARP) are copied: a copy that small costs less than the
 * descriptors and the completion bookkeeping.
 */
#define VNET_TX_INDIRECT   64
#define VNET_TX_DIRECT_MAX 8
#define VNET_TX_REF_MIN	   256

#define VNET_RX_CSUM_OK 0x1 /* the transport checksum needs no checking (see above) */
#define VNET_RX_GSO	0x2 /* the device coalesced several TCP segments (GUEST_TSO4) */

struct vnet_stats {
	uint64_t rx_packets, rx_bytes;
	uint64_t rx_dropped; /* malformed completions (length out of range, bad num_buffers) */
	uint64_t rx_merged;  /* frames that spanned more than one buffer (MRG_RXBUF) */
	uint64_t rx_gso;     /* frames the device flagged as coalesced segments (GUEST_TSO4) */
	uint64_t rx_kept;    /* frames the stack kept without copying */
	uint64_t tx_packets, tx_bytes;
	uint64_t tx_busy;	  /* vnet_tx found every buffer in flight */
	uint64_t tx_ref;	  /* frames whose payload the device read in place (no copy) */
	uint64_t tx_copied;	  /* frames copied into a transmit buffer */
	uint64_t tx_ref_done;	  /* references given back to the vnet_tx_done_fn */
	uint64_t tx_csum_sw;	  /* checksums finished here because the device lacks CSUM */
	uint64_t tx_csum_dev;	  /* frames sent NEEDS_CSUM: the device finishes the sum */
	uint64_t tx_gso;	  /* GSO frames sent (two segments or more merged, HOST_TSO4) */
	uint64_t tx_gso_segs;	  /* the segments merged into them */
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

/*
 * A frame sent by reference is finished: the device returned its chain (or the device was
 * reset), so the memory behind @ref's fragments may be reused or freed. Called from
 * vnet_tx_frags_ref(), vnet_poll(), vnet_tx_kick() and vnet_destroy(), exactly once per
 * reference taken. It must not call the driver's transmit functions (it may run in the
 * middle of one): give memory back, nothing more.
 */
typedef void (*vnet_tx_done_fn)(void *ctx, void *ref);

/* An Ethernet/IPv4/TCP frame's headers, as far as segment merging needs them. */
struct vnet_tso_info {
	uint16_t hlen;	  /* Ethernet + IP + TCP headers */
	uint16_t tcp_off; /* where the TCP header starts */
	uint32_t payload; /* TCP payload bytes */
	uint32_t seq;
	uint8_t flags; /* TCP flags byte */
};

/* One receive buffer's share of a frame: @len bytes at @data, buffer number @id. */
struct vnet_rx_seg {
	const uint8_t *data;
	uint32_t len;
	uint16_t id;
};

/* A received frame (Ethernet header first, no virtio header) over @nseg buffers. */
struct vnet_rx_frame {
	size_t len;	/* sum of the segments' lengths */
	unsigned flags; /* VNET_RX_* */
	bool may_keep;	/* enough spare buffers: the receiver may keep this frame's buffers */
	unsigned nseg;
	struct vnet_rx_seg seg[VNET_RX_MAX_SEGS];
};

/*
 * Receive callback: true when it keeps the buffers (only if f->may_keep), each to be given back
 * with vnet_rx_release(); false when it is done with them (the bytes are valid only during
 * the call).
 */
typedef bool (*vnet_rx_fn)(void *ctx, const struct vnet_rx_frame *f);

struct vnet {
	struct virtio_dev *vdev;
	struct vq rxq, txq;
	char name[24];
	uint8_t mac[6];
	uint16_t mtu;
	bool link_up;
	bool dead;

	uint8_t *tx_bufs; /* txq.size buffers of VNET_BUF_SIZE each, DMA memory */
	uint64_t tx_bus;
	size_t tx_pages;
	uint16_t *tx_free; /* stack of free transmit buffer numbers */
	unsigned tx_nfree;
	/* By reference: per transmit buffer, the references its chain holds (tx_ref_max each). */
	vnet_tx_done_fn tx_done;
	void *tx_done_ctx;
	void **tx_refs;
	uint8_t *tx_nrefs;
	/* Sequence numbers of references taken (vnet_tx_ref_seq); per transmit buffer, the
	 * lowest of the references its chain holds (valid while tx_nrefs[] is nonzero). */
	uint64_t tx_ref_seq;
	uint64_t *tx_ref_seqs;
	unsigned tx_max_pieces; /* pieces a chain may have: VNET_TX_INDIRECT or _DIRECT_MAX */
	bool tx_can_ref;	/* the device reads any guest memory (no ACCESS_PLATFORM) */

	/* HOST_TSO4: VNET_TSO_BUFS large buffers, and the frame being merged in one of them. */
	bool tso;
	uint8_t *tso_bufs;
	uint64_t tso_bus;
	size_t tso_pages;
	uint16_t tso_free[VNET_TSO_BUFS];
	unsigned tso_nfree;
	struct {
		bool active;
		unsigned buf;
		struct vnet_tso_info info; /* of the first segment; info.payload: the total */
		uint16_t mss;		   /* payload of the first segment: the gso_size */
		unsigned segs;
		/* By reference (no large buffer): the first segment's headers, the payload
		 * fragments of every segment, and the references to give back. */
		bool ref;
		uint8_t hdr[VNET_TSO_HDR_MAX];
		unsigned npay, nrefs;
		struct vnet_frag pay[VNET_TX_INDIRECT];
		void *refs[VNET_TX_INDIRECT];
		uint64_t ref_seq; /* of refs[0], the lowest */
	} tso_cur;

	uint8_t *rx_bufs; /* rx_nbufs buffers of VNET_RX_BUF_SIZE each, DMA memory */
	uint64_t rx_bus;
	size_t rx_pages;
	unsigned rx_nbufs;
	uint16_t *rx_free; /* stack of buffers neither on the ring nor kept */
	unsigned rx_nfree;
	unsigned rx_held; /* kept by the receiver (vnet_rx_release gives them back) */
	bool mrg;	  /* MRG_RXBUF negotiated: num_buffers counts */
	bool destroyed;	  /* vnet_destroy() ran with buffers held: the last release frees */
	/* The frame being gathered from the used ring, and buffers to skip after a bad one. */
	struct vnet_rx_frame rx_cur;
	unsigned rx_want, rx_skip;
	uint64_t next_link_check;

	struct vnet_stats stats;
};

/*
 * Drive the virtio-net device @vdev: negotiate (MAC, STATUS, CSUM, GUEST_CSUM, MTU, MRG_RXBUF,
 * GUEST_TSO4 when offered; GUEST_TSO4 only with MRG_RXBUF and GUEST_CSUM), fill the receive
 * ring, DRIVER_OK. 0 and *out, or -ENODEV, -EIO, -ETIMEDOUT, -ENOMEM.
 */
int vnet_create(struct virtio_dev *vdev, struct vnet **out);
/*
 * Reset the device and free everything. Receive buffers still kept stay valid, and with them
 * what vnet_rx_release() needs: the last one given back frees the rest.
 */
void vnet_destroy(struct vnet *vn);

/*
 * Hand up to @budget received frames to @cb (Ethernet header first, no virtio header); the
 * buffers @cb does not keep go back to the device right after, and the ring is topped up
 * from the free buffers. A frame whose buffers do not add up (num_buffers 0 or above
 * VNET_RX_MAX_SEGS, a length out of range) is dropped and counted, its remaining buffers
 * skipped. Frames handed up or dropped, or -EIO for a broken device.
 */
int vnet_rx_poll(struct vnet *vn, vnet_rx_fn cb, void *ctx, unsigned budget);
/* Give back receive buffer @id kept by a vnet_rx_fn; it returns to the ring at the next poll. */
void vnet_rx_release(struct vnet *vn, uint16_t id);
/* Copy up to @cap bytes of @f into @dst; the number copied. */
size_t vnet_rx_copy(const struct vnet_rx_frame *f, void *dst, size_t cap);
/*
 * Send one frame made of @n fragments (copied, so they may be reused at once), with an
 * optional checksum to finish. 0, -EAGAIN when every transmit buffer is in flight (poll and
 * retry, or drop), -EMSGSIZE when it exceeds VNET_MAX_FRAME, -EINVAL for a bad @csum, -EIO.
 * With HOST_TSO4 a TCP segment with @csum may be held to merge the next ones into it (see
 * VNET_TSO_BUFS); frames always leave in the order they were given.
 */
int vnet_tx_frags(struct vnet *vn, const struct vnet_frag *frags, unsigned n,
		  const struct vnet_csum *csum);
/*
 * Where completions of frames sent by reference go. Without it nothing goes by reference.
 */
void vnet_set_tx_done(struct vnet *vn, vnet_tx_done_fn fn, void *ctx);
/*
 * As vnet_tx_frags(), but the device may read the fragments in place. VNET_TX_REFERENCED:
 * the driver kept them; the caller must leave them untouched until @ref comes back to the
 * vnet_tx_done_fn (exactly once). 0: they were copied (or @ref is NULL) and may be reused at
 * once. Copied instead of referenced: a frame under VNET_TX_REF_MIN bytes, more fragments
 * than a chain may have (vnet.tx_max_pieces, less one for the header), a checksum the device
 * cannot finish (no CSUM: the driver would have to write into the caller's bytes), a device
 * behind an IOMMU (ACCESS_PLATFORM: our bus address of arbitrary memory is its CPU address,
 * true only identity-mapped, see plat_dma_alloc), no vnet_tx_done_fn. Errors as
 * vnet_tx_frags(); nothing is kept then.
 */
#define VNET_TX_REFERENCED 1
int vnet_tx_frags_ref(struct vnet *vn, const struct vnet_frag *frags, unsigned n,
		      const struct vnet_csum *csum, void *ref);
/*
 * The transmit epoch: each reference the driver keeps (VNET_TX_REFERENCED) gets the next
 * sequence number, counting from 0. vnet_tx_ref_seq() is the number the next one will get, so
 * every reference kept so far has a lower one. vnet_tx_ref_returned(vn, seq): true when every
 * reference numbered below @seq went back to the vnet_tx_done_fn (or was never kept), false
 * while the device (or a held TSO frame) still has one. Completions may come in any order:
 * it looks at the buffers in flight, O(ring size). For memory that must outlive the device's
 * reads of it, e.g. a connection's buffers after its pcb was aborted (net/lwip/nbd_lwip.c).
 */
uint64_t vnet_tx_ref_seq(const struct vnet *vn);
bool vnet_tx_ref_returned(const struct vnet *vn, uint64_t seq);
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

/*
 * Parse @len bytes of an Ethernet frame (@hdr: its first bytes, at least the headers) as a
 * candidate for merging: IPv4 without options and not a fragment, TCP with payload, ACK set and
 * no other flag but PSH. 0 and *@t, or -EINVAL.
 */
int vnet_tso_parse(const uint8_t *hdr, size_t hdr_avail, size_t len, struct vnet_tso_info *t);
/*
 * May segment @b (headers at @hb) follow the frame @a (headers at @ha, @a->payload bytes in
 * segments of @mss) as one GSO frame? @a's segments are all full and its last had no PSH (a
 * short or PSH segment ends a frame); same Ethernet, IP and TCP headers but for IP
 * length/id/checksum, TCP sequence, checksum and the PSH flag; @b's sequence number continues
 * @a's; @b carries at most @mss bytes; the result stays within VNET_TSO_MAX_IP.
 */
bool vnet_tso_may_merge(const uint8_t *ha, const struct vnet_tso_info *a, uint16_t mss,
			const uint8_t *hb, const struct vnet_tso_info *b);

/* RFC 1071 checksum of [start, len) folded into the 16-bit field at start+offset (which
 * holds the pseudo-header sum). Exposed for the tests. -EINVAL when out of the frame. */
int vnet_csum_finish(uint8_t *frame, size_t len, uint16_t start, uint16_t offset);

#endif
