/* SPDX-License-Identifier: MIT */
/*
 * virtio-net (virtio 1.1 §5.1): queue 0 receives, queue 1 transmits; no control queue.
 * Receive buffers are pages of DMA memory, one descriptor each, the 12-byte header at the
 * start of a frame's first buffer (VERSION_1 allows any layout, §5.1.6.2); with MRG_RXBUF a
 * frame spans num_buffers of them and is handed up as their list, which the stack may keep
 * (zero copy) while spare buffers refill the ring. Transmit either copies a frame into one
 * VNET_BUF_SIZE buffer, or (vnet_tx_frags_ref) puts only the virtio header (and a merged GSO
 * frame's rewritten headers) there and chains the caller's fragments behind it, one
 * descriptor each, in an indirect table when the device offers INDIRECT_DESC.
 */
#include "drivers/virtio-net/vnet.h"

#include "core/base/perf.h"
#include "core/base/plat.h"
#include "core/base/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VNET_RXQ 0
#define VNET_TXQ 1

/* ---- Checksums ---------------------------------------------------------------------------- */

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

int vnet_csum_finish(uint8_t *frame, size_t len, uint16_t start, uint16_t offset)
{
	uint32_t sum = 0;
	size_t i;
	uint16_t folded;

	if ((size_t)start + offset + 2 > len)
		return -EINVAL;
	/* One's-complement sum of big-endian 16-bit words, the field's partial sum included. */
	for (i = start; i + 1 < len; i += 2)
		sum += get_be16(frame + i);
	if (i < len)
		sum += (uint32_t)frame[i] << 8;
	folded = (uint16_t)~fold(sum);
	/* RFC 768: a UDP checksum computed as 0 is sent as all ones. */
	if (folded == 0)
		folded = 0xffff;
	put_be16(frame + start + offset, folded);
	return 0;
}

/* ---- Receive --------------------------------------------------------------------------------- */

static uint8_t *rx_buf(struct vnet *vn, unsigned i)
{
	return vn->rx_bufs + (size_t)i * VNET_RX_BUF_SIZE;
}

/* Give receive buffer @id (back) to the device: one device-writable descriptor. */
static int vnet_rx_post(struct vnet *vn, unsigned id)
{
	struct vq_buf b = { vn->rx_bus + (uint64_t)id * VNET_RX_BUF_SIZE, VNET_RX_BUF_SIZE };

	return vq_add(&vn->rxq, &b, 0, 1, rx_buf(vn, id));
}

/* Post free buffers while the ring has room; true when any was posted. */
static bool vnet_rx_refill(struct vnet *vn)
{
	bool posted = false;

	while (vn->rx_nfree && vq_num_free(&vn->rxq)) {
		if (vnet_rx_post(vn, vn->rx_free[vn->rx_nfree - 1]))
			break;
		vn->rx_nfree--;
		posted = true;
	}
	return posted;
}

static void vnet_rx_free(struct vnet *vn, unsigned id)
{
	vn->rx_free[vn->rx_nfree++] = (uint16_t)id;
}

static void vnet_free_rx_rest(struct vnet *vn);

void vnet_rx_release(struct vnet *vn, uint16_t id)
{
	/* Posted at the next poll: this runs inside the stack, one doorbell per pass is enough. */
	vnet_rx_free(vn, id);
	vn->rx_held--;
	/* After vnet_destroy(): the last buffer back frees what the held ones kept alive. */
	if (vn->destroyed && !vn->rx_held)
		vnet_free_rx_rest(vn);
}

size_t vnet_rx_copy(const struct vnet_rx_frame *f, void *dst, size_t cap)
{
	uint8_t *p = dst;
	size_t done = 0;

	for (unsigned i = 0; i < f->nseg && done < cap; i++) {
		size_t n = MIN((size_t)f->seg[i].len, cap - done);

		memcpy(p + done, f->seg[i].data, n);
		done += n;
	}
	return done;
}

/* The gathered frame is bad: drop its buffers (and count it once). */
static void vnet_rx_drop(struct vnet *vn)
{
	struct vnet_rx_frame *f = &vn->rx_cur;

	for (unsigned i = 0; i < f->nseg; i++)
		vnet_rx_free(vn, f->seg[i].id);
	f->nseg = 0;
	f->len = 0;
	vn->rx_want = 0;
	vn->stats.rx_dropped++;
}

/* First buffer of a frame (@len bytes written at @buf): start gathering it. 0 or -EINVAL. */
static int vnet_rx_first(struct vnet *vn, uint8_t *buf, uint32_t len)
{
	const struct virtio_net_hdr *h = (const struct virtio_net_hdr *)buf;
	struct vnet_rx_frame *f = &vn->rx_cur;
	unsigned num = vn->mrg ? le16_to_cpu(h->num_buffers) : 1;

	f->flags = 0;
	f->nseg = 0;
	f->len = 0;
	if (num == 0 || num > VNET_RX_MAX_SEGS || len < sizeof(*h) + 14 || len > VNET_RX_BUF_SIZE) {
		/* Nonsense from the device: skip what it says belongs to this frame (bounded by what
		 * it actually completes: vq_get_used), as Linux's virtio_net does. */
		vn->rx_skip = num ? num - 1 : 0;
		return -EINVAL;
	}
	vn->rx_want = num;
	if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		/*
		 * Partial sum from a local sender (the host's stack through tap): the data never
		 * crossed a wire, so it is as good as validated. Finishing the sum would cost a pass
		 * over the frame for nothing.
		 */
		f->flags |= VNET_RX_CSUM_OK;
		vn->stats.rx_csum_partial++;
	} else if (h->flags & VIRTIO_NET_HDR_F_DATA_VALID) {
		f->flags |= VNET_RX_CSUM_OK;
		vn->stats.rx_csum_valid++;
	}
	if ((h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN) != VIRTIO_NET_HDR_GSO_NONE)
		f->flags |= VNET_RX_GSO;
	return 0;
}

int vnet_rx_poll(struct vnet *vn, vnet_rx_fn cb, void *ctx, unsigned budget)
{
	struct vnet_rx_frame *f = &vn->rx_cur;
	unsigned n = 0;
	uint32_t len;
	void *tok;
	int rc = 0;

	if (vn->dead)
		return -EIO;
	/*
	 * vq_get_used() put a read barrier between seeing a used entry and reading its buffer,
	 * and the device wrote the buffer before publishing the entry: the bytes are complete. A
	 * frame's buffers may come over several polls; rx_cur carries it between them.
	 */
	while (n < budget && (rc = vq_get_used(&vn->rxq, &tok, &len)) == 0) {
		uint8_t *buf = tok;
		unsigned id = (unsigned)((buf - vn->rx_bufs) / VNET_RX_BUF_SIZE);
		size_t off;

		if (vn->rx_skip) {
			vn->rx_skip--;
			vnet_rx_free(vn, id);
			continue;
		}
		if (f->nseg == 0 && vnet_rx_first(vn, buf, len)) {
			f->seg[0].id = (uint16_t)id;
			f->nseg = 1;
			vnet_rx_drop(vn);
			n++;
			continue;
		}
		off = f->nseg == 0 ? sizeof(struct virtio_net_hdr) : 0;
		f->seg[f->nseg].id = (uint16_t)id;
		f->seg[f->nseg].data = buf + off;
		f->seg[f->nseg].len = len > off ? len - (uint32_t)off : 0;
		f->nseg++;
		f->len += f->seg[f->nseg - 1].len;
		if (len > VNET_RX_BUF_SIZE || len <= off || f->len > VNET_RX_MAX_FRAME) {
			/* The rest of this frame's buffers are garbage too. */
			vn->rx_skip = vn->rx_want - f->nseg;
			vnet_rx_drop(vn);
			n++;
			continue;
		}
		if (f->nseg < vn->rx_want)
			continue;
		/* Whole. The receiver may keep it if the spare buffers still fill the ring. */
		f->may_keep = vn->rx_held + f->nseg + vn->rxq.size <= vn->rx_nbufs;
		vn->stats.rx_packets++;
		vn->stats.rx_bytes += f->len;
		if (f->nseg > 1)
			vn->stats.rx_merged++;
		if (f->flags & VNET_RX_GSO)
			vn->stats.rx_gso++;
		/* Counted as held first: the stack may free (release) them inside the call. */
		if (f->may_keep)
			vn->rx_held += f->nseg;
		if (cb(ctx, f) && f->may_keep) {
			vn->stats.rx_kept++;
		} else {
			if (f->may_keep)
				vn->rx_held -= f->nseg;
			for (unsigned i = 0; i < f->nseg; i++)
				vnet_rx_free(vn, f->seg[i].id);
		}
		f->nseg = 0;
		f->len = 0;
		vn->rx_want = 0;
		n++;
	}
	/*
	 * A bad frame's remaining buffers are skipped only as far as the device has used any:
	 * an absurd num_buffers must not swallow the good frames that come later (Linux's
	 * virtio_net stops at the same point).
	 */
	if (rc && rc != -EIO)
		vn->rx_skip = 0;
	/* Straight back to the device: the ring never runs dry while we are polled. */
	if (rc != -EIO && vnet_rx_refill(vn))
		vq_kick(&vn->rxq);
	if (rc == -EIO) {
		plat_printf("%s: device broke the receive ring; stopping it\n", vn->name);
		vn->dead = true;
		virtio_stop(vn->vdev);
		return -EIO;
	}
	return (int)n;
}

/* ---- Transmit --------------------------------------------------------------------------------- */

#define TCP_PSH	 0x08
#define TCP_ACK	 0x10
#define ETH_HLEN 14
/* vnet_tso_tx(): the segment was not taken, it goes the ordinary way. */
#define TSO_PASS 2

int vnet_tso_parse(const uint8_t *h, size_t avail, size_t len, struct vnet_tso_info *t)
{
	unsigned tot, thl;
	const uint8_t *th = h + ETH_HLEN + 20;

	/* IPv4, header length 20 (lwIP sends no IP options), TCP, not a fragment. */
	if (avail < ETH_HLEN + 40 || get_be16(h + 12) != 0x0800 || h[14] != 0x45 || h[23] != 6 ||
	    (get_be16(h + 20) & 0x3fff))
		return -EINVAL;
	tot = get_be16(h + 16);
	thl = (th[12] >> 4) * 4u;
	if (ETH_HLEN + tot != len || thl < 20 || ETH_HLEN + 20 + thl > avail || 20 + thl >= tot)
		return -EINVAL;
	/* No SYN, FIN, RST, URG, ECE or CWR: those segments keep their own headers. */
	if (!(th[13] & TCP_ACK) || (th[13] & ~(TCP_ACK | TCP_PSH)))
		return -EINVAL;
	t->tcp_off = ETH_HLEN + 20;
	t->hlen = (uint16_t)(ETH_HLEN + 20 + thl);
	t->payload = tot - 20 - thl;
	t->seq = get_be32(th + 4);
	t->flags = th[13];
	return 0;
}

bool vnet_tso_may_merge(const uint8_t *ha, const struct vnet_tso_info *a, uint16_t mss,
			const uint8_t *hb, const struct vnet_tso_info *b)
{
	unsigned o = a->tcp_off;

	/* The device cuts at gso_size: every segment but the last must be full, PSH ends it. */
	if (!mss || a->payload % mss || (a->flags & TCP_PSH) || b->payload > mss)
		return false;
	if (a->hlen != b->hlen || b->tcp_off != o ||
	    (size_t)a->hlen - ETH_HLEN + a->payload + b->payload > VNET_TSO_MAX_IP)
		return false;
	if (b->seq != a->seq + a->payload)
		return false;
	/* Ethernet header; IP: version/length/TOS, fragment word, TTL, protocol, addresses (not
	 * the total length, id and checksum, which the device sets per segment). */
	if (memcmp(ha, hb, ETH_HLEN) || memcmp(ha + 14, hb + 14, 2) ||
	    memcmp(ha + 20, hb + 20, 4) || memcmp(ha + 26, hb + 26, 8))
		return false;
	/* TCP: ports, acknowledgment, data offset, window, urgent pointer, options (not the
	 * sequence number, the flags (ACK, and PSH on the last: parse checked) and checksum). */
	if (memcmp(ha + o, hb + o, 4) || memcmp(ha + o + 8, hb + o + 8, 5) ||
	    memcmp(ha + o + 14, hb + o + 14, 2) ||
	    memcmp(ha + o + 18, hb + o + 18, a->hlen - o - 18))
		return false;
	return true;
}

/* Copy bytes [@skip, @skip + @max) of the fragments to @dst; the number copied. */
static size_t frags_copy(const struct vnet_frag *frags, unsigned n, size_t skip, uint8_t *dst,
			 size_t max)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < max; i++) {
		size_t l = frags[i].len, c;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		c = MIN(l - skip, max - done);
		memcpy(dst + done, (const uint8_t *)frags[i].data + skip, c);
		done += c;
		skip = 0;
	}
	return done;
}

/*
 * The fragments' bytes from @skip on, as up to @max fragments into @out (empty ones left
 * out): their number, or -1 when it takes more than @max.
 */
static int frags_slice(const struct vnet_frag *frags, unsigned n, size_t skip,
		       struct vnet_frag *out, unsigned max)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++) {
		size_t l = frags[i].len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		if (k == max)
			return -1;
		out[k++] = (struct vnet_frag){ (const uint8_t *)frags[i].data + skip, l - skip };
		skip = 0;
	}
	return (int)k;
}

/* The bus address of caller memory: its CPU address (identity-mapped; see tx_can_ref). */
static uint64_t frag_bus(const struct vnet_frag *f)
{
	return (uint64_t)(uintptr_t)f->data;
}

static uint8_t *tso_buf(struct vnet *vn, unsigned i)
{
	return vn->tso_bufs + (size_t)i * VNET_TSO_BUF_SIZE;
}

static uint8_t *tx_buf(struct vnet *vn, unsigned i)
{
	return vn->tx_bufs + (size_t)i * VNET_BUF_SIZE;
}

/* Hand @n references back to the vnet_tx_done_fn: the device no longer reads their memory. */
static void vnet_tx_refs_done(struct vnet *vn, void *const *refs, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		vn->stats.tx_ref_done++;
		vn->tx_done(vn->tx_done_ctx, refs[i]);
	}
}

/*
 * Transmit buffer @idx's chain, just placed, holds @n references (the lowest numbered @seq)
 * until vnet_tx_release(). Only vnet_tx_reclaim() looks at them, never before the caller
 * returns, so recording them after vq_add() is safe.
 */
static void vnet_tx_hold(struct vnet *vn, unsigned idx, void *const *refs, unsigned n, uint64_t seq)
{
	memcpy(vn->tx_refs + (size_t)idx * VNET_TX_INDIRECT, refs, n * sizeof(void *));
	vn->tx_nrefs[idx] = (uint8_t)n;
	vn->tx_ref_seqs[idx] = seq;
	vn->stats.tx_ref++;
}

/* Give back the references transmit buffer @idx's chain held (the device is done with it). */
static void vnet_tx_release(struct vnet *vn, unsigned idx)
{
	unsigned n = vn->tx_nrefs[idx];

	/* Cleared first: the callback may free memory that ends up sent again at once. */
	vn->tx_nrefs[idx] = 0;
	vnet_tx_refs_done(vn, vn->tx_refs + (size_t)idx * VNET_TX_INDIRECT, n);
}

static int vnet_tx_reclaim(struct vnet *vn)
{
	void *tok;
	int rc;

	while ((rc = vq_get_used(&vn->txq, &tok, NULL)) == 0) {
		uint8_t *buf = tok;
		unsigned idx;

		if (vn->tso_bufs && buf >= vn->tso_bufs &&
		    buf < vn->tso_bufs + (size_t)VNET_TSO_BUFS * VNET_TSO_BUF_SIZE) {
			vn->tso_free[vn->tso_nfree++] =
			    (uint16_t)((buf - vn->tso_bufs) / VNET_TSO_BUF_SIZE);
			continue;
		}
		idx = (unsigned)((buf - vn->tx_bufs) / VNET_BUF_SIZE);
		if (vn->tx_nrefs[idx])
			vnet_tx_release(vn, idx);
		vn->tx_free[vn->tx_nfree++] = (uint16_t)idx;
	}
	if (rc == -EIO) {
		plat_printf("%s: device broke the transmit ring; stopping it\n", vn->name);
		vn->dead = true;
		virtio_stop(vn->vdev);
		return -EIO;
	}
	return 0;
}

/* Place a chain of @n pieces on the transmit ring, reclaiming once when it is full. */
static int vnet_tx_place(struct vnet *vn, const struct vq_buf *b, unsigned n, void *tok)
{
	int rc = vq_add(&vn->txq, b, n, 0, tok);

	if (rc == -EAGAIN) {
		vq_kick(&vn->txq);
		rc = vnet_tx_reclaim(vn);
		if (rc)
			return rc;
		rc = vq_add(&vn->txq, b, n, 0, tok);
	}
	return rc;
}

/* A free transmit buffer's number, reclaiming once when there is none; -EAGAIN, -EIO. */
static int vnet_tx_slot(struct vnet *vn)
{
	int rc;

	if (!vn->tx_nfree) {
		/* The ring is full of frames: announce any not yet announced before waiting. */
		vq_kick(&vn->txq);
		rc = vnet_tx_reclaim(vn);
		if (rc)
			return rc;
		if (!vn->tx_nfree)
			return -EAGAIN;
	}
	return vn->tx_free[--vn->tx_nfree];
}

/*
 * Send the frame being merged: as it is when it holds one segment (its headers are lwIP's),
 * else as a GSO frame: IP length and checksum and the TCP pseudo-header sum for the whole,
 * the device cutting it into gso_size segments. 0, -EAGAIN (ring full: it stays held), -EIO.
 */
static int vnet_tso_flush(struct vnet *vn)
{
	struct virtio_net_hdr *h;
	struct vq_buf b[VNET_TX_INDIRECT];
	unsigned nb = 1;
	uint8_t *buf, *f;
	size_t total;
	int slot = -1, rc;

	if (!vn->tso_cur.active || vn->dead)
		return 0;
	total = vn->tso_cur.info.hlen + vn->tso_cur.info.payload;
	if (vn->tso_cur.ref) {
		/* By reference: a transmit buffer takes the header, the payloads stay put. */
		slot = vnet_tx_slot(vn);
		if (slot < 0) {
			vn->stats.tx_busy++;
			return slot;
		}
		buf = tx_buf(vn, (unsigned)slot);
		f = buf + sizeof(*h);
		memcpy(f, vn->tso_cur.hdr, vn->tso_cur.info.hlen);
		b[0].addr = vn->tx_bus + (uint64_t)slot * VNET_BUF_SIZE;
		b[0].len = (uint32_t)(sizeof(*h) + vn->tso_cur.info.hlen);
		for (unsigned i = 0; i < vn->tso_cur.npay; i++)
			b[nb++] = (struct vq_buf){ frag_bus(&vn->tso_cur.pay[i]),
						   (uint32_t)vn->tso_cur.pay[i].len };
	} else {
		buf = tso_buf(vn, vn->tso_cur.buf);
		f = buf + sizeof(*h);
		b[0].addr = vn->tso_bus + (uint64_t)vn->tso_cur.buf * VNET_TSO_BUF_SIZE;
		b[0].len = (uint32_t)(sizeof(*h) + total);
	}
	h = (struct virtio_net_hdr *)buf;
	memset(h, 0, sizeof(*h));
	h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h->csum_start = cpu_to_le16(vn->tso_cur.info.tcp_off);
	h->csum_offset = cpu_to_le16(16);
	if (vn->tso_cur.segs > 1) {
		uint16_t tot = (uint16_t)(total - ETH_HLEN);
		uint32_t sum = 0;

		put_be16(f + 16, tot);
		put_be16(f + 24, 0);
		for (unsigned i = ETH_HLEN; i < ETH_HLEN + 20; i += 2)
			sum += get_be16(f + i);
		put_be16(f + 24, (uint16_t)~fold(sum));
		/* The pseudo-header sum over the whole length: the device adjusts it per segment. */
		sum = 6u + (uint32_t)(tot - 20);
		for (unsigned i = 26; i < 34; i += 2)
			sum += get_be16(f + i);
		put_be16(f + vn->tso_cur.info.tcp_off + 16, fold(sum));
		h->gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
		h->gso_size = cpu_to_le16(vn->tso_cur.mss);
		h->hdr_len = cpu_to_le16(vn->tso_cur.info.hlen);
	}
	/* vq_add's barrier orders the copies before the device can see the buffer. */
	rc = vnet_tx_place(vn, b, nb, buf);
	if (rc) {
		if (slot >= 0)
			vn->tx_free[vn->tx_nfree++] = (uint16_t)slot;
		vn->stats.tx_busy++;
		return rc == -EIO ? rc : -EAGAIN;
	}
	if (slot >= 0)
		vnet_tx_hold(vn, (unsigned)slot, vn->tso_cur.refs, vn->tso_cur.nrefs,
			     vn->tso_cur.ref_seq);
	else
		vn->stats.tx_copied++;
	vn->tso_cur.active = false;
	vn->stats.tx_packets++;
	vn->stats.tx_bytes += total;
	vn->stats.tx_csum_dev++;
	if (vn->tso_cur.segs > 1) {
		vn->stats.tx_gso++;
		vn->stats.tx_gso_segs += vn->tso_cur.segs;
	}
	return 0;
}

/*
 * A TCP segment with a checksum to offload, HOST_TSO4 on: merged into the held frame, or held
 * to start one. With @ref (the caller allows it and the device can) the segment's payload is
 * kept by reference: the held frame then lists payload fragments and references instead of
 * filling a large buffer; a frame is either kind, never both. 0 when it was taken by copy,
 * VNET_TX_REFERENCED by reference, TSO_PASS when it must go the ordinary way (the held frame
 * was sent first, if any), or the error of sending the held frame.
 */
static int vnet_tso_tx(struct vnet *vn, const struct vnet_frag *frags, unsigned n, size_t len,
		       const struct vnet_csum *csum, void *ref)
{
	uint8_t hb[VNET_TSO_HDR_MAX];
	size_t hav = frags_copy(frags, n, 0, hb, MIN(len, sizeof(hb)));
	struct vnet_frag pay[VNET_TX_INDIRECT];
	struct vnet_tso_info t;
	int npay = -1;
	bool by_ref;
	uint8_t *f;
	int rc;

	if (vnet_tso_parse(hb, hav, len, &t) || csum->start != t.tcp_off || csum->offset != 16) {
		rc = vnet_tso_flush(vn);
		return rc ? rc : TSO_PASS;
	}
	/* One piece of the chain is the header buffer. */
	if (ref)
		npay = frags_slice(frags, n, t.hlen, pay, vn->tx_max_pieces - 1);
	by_ref = npay > 0;
	if (vn->tso_cur.active) {
		f = vn->tso_cur.ref ? vn->tso_cur.hdr
				    : tso_buf(vn, vn->tso_cur.buf) + sizeof(struct virtio_net_hdr);
		if (vn->tso_cur.ref == by_ref &&
		    (!by_ref || vn->tso_cur.npay + (unsigned)npay + 1 <= vn->tx_max_pieces) &&
		    vnet_tso_may_merge(f, &vn->tso_cur.info, vn->tso_cur.mss, hb, &t)) {
			if (by_ref) {
				memcpy(vn->tso_cur.pay + vn->tso_cur.npay, pay,
				       (size_t)npay * sizeof(pay[0]));
				vn->tso_cur.npay += (unsigned)npay;
				vn->tso_cur.refs[vn->tso_cur.nrefs++] = ref;
				vn->tx_ref_seq++;
			} else {
				perf_begin();
				frags_copy(frags, n, t.hlen, f + t.hlen + vn->tso_cur.info.payload,
					   t.payload);
				perf_end(PERF_COPY, t.payload);
			}
			vn->tso_cur.info.payload += t.payload;
			vn->tso_cur.info.flags = t.flags;
			f[t.tcp_off + 13] = t.flags; /* PSH of the last segment */
			vn->tso_cur.segs++;
			return by_ref ? VNET_TX_REFERENCED : 0;
		}
		rc = vnet_tso_flush(vn);
		if (rc)
			return rc;
	}
	if (by_ref) {
		memcpy(vn->tso_cur.hdr, hb, t.hlen);
		memcpy(vn->tso_cur.pay, pay, (size_t)npay * sizeof(pay[0]));
		vn->tso_cur.npay = (unsigned)npay;
		vn->tso_cur.refs[0] = ref;
		vn->tso_cur.nrefs = 1;
		vn->tso_cur.ref_seq = vn->tx_ref_seq++;
	} else {
		if (!vn->tso_nfree)
			return TSO_PASS;
		vn->tso_cur.buf = vn->tso_free[--vn->tso_nfree];
		f = tso_buf(vn, vn->tso_cur.buf) + sizeof(struct virtio_net_hdr);
		perf_begin();
		frags_copy(frags, n, 0, f, len);
		perf_end(PERF_COPY, len);
	}
	vn->tso_cur.ref = by_ref;
	vn->tso_cur.info = t;
	vn->tso_cur.mss = (uint16_t)t.payload;
	vn->tso_cur.segs = 1;
	vn->tso_cur.active = true;
	return by_ref ? VNET_TX_REFERENCED : 0;
}

uint64_t vnet_tx_ref_seq(const struct vnet *vn)
{
	return vn->tx_ref_seq;
}

bool vnet_tx_ref_returned(const struct vnet *vn, uint64_t seq)
{
	/* A held TSO frame's references are numbered from its first one up. */
	if (vn->tso_cur.active && vn->tso_cur.ref && vn->tso_cur.ref_seq < seq)
		return false;
	/* Not the oldest in flight only: the device may return buffers out of order. */
	for (unsigned i = 0; vn->tx_nrefs && i < vn->txq.size; i++)
		if (vn->tx_nrefs[i] && vn->tx_ref_seqs[i] < seq)
			return false;
	return true;
}

void vnet_set_tx_done(struct vnet *vn, vnet_tx_done_fn fn, void *ctx)
{
	vn->tx_done = fn;
	vn->tx_done_ctx = ctx;
}

int vnet_tx_frags(struct vnet *vn, const struct vnet_frag *frags, unsigned n,
		  const struct vnet_csum *csum)
{
	return vnet_tx_frags_ref(vn, frags, n, csum, NULL);
}

int vnet_tx_frags_ref(struct vnet *vn, const struct vnet_frag *frags, unsigned n,
		      const struct vnet_csum *csum, void *ref)
{
	struct virtio_net_hdr *h;
	struct vq_buf b[VNET_TX_INDIRECT];
	unsigned nb = 1;
	size_t len = 0;
	uint8_t *buf, *p;
	bool by_ref;
	int idx, rc;

	if (vn->dead)
		return -EIO;
	for (unsigned i = 0; i < n; i++)
		len += frags[i].len;
	if (len > VNET_MAX_FRAME)
		return -EMSGSIZE;
	if (csum && (size_t)csum->start + csum->offset + 2 > len)
		return -EINVAL;
	/* Small frames are cheaper copied; a sum finished here would be written into the
	 * caller's bytes; the device must be able to reach them (see the header). */
	by_ref = ref && vn->tx_done && vn->tx_can_ref && len >= VNET_TX_REF_MIN &&
		 (!csum || virtio_has(vn->vdev, VIRTIO_NET_F_CSUM));
	/* Frames leave in order: one that does not join the held frame sends that first. */
	rc = csum && vn->tso ? vnet_tso_tx(vn, frags, n, len, csum, by_ref ? ref : NULL)
			     : vnet_tso_flush(vn);
	if (rc < 0 || (csum && vn->tso && rc != TSO_PASS))
		return rc;
	if (by_ref && n + 1 > vn->tx_max_pieces)
		by_ref = false; /* too many pieces for one chain: copied */
	idx = vnet_tx_slot(vn);
	if (idx < 0) {
		if (idx == -EAGAIN)
			vn->stats.tx_busy++;
		return idx;
	}
	buf = tx_buf(vn, (unsigned)idx);
	h = (struct virtio_net_hdr *)buf;
	memset(h, 0, sizeof(*h));
	b[0].addr = vn->tx_bus + (uint64_t)idx * VNET_BUF_SIZE;
	if (by_ref) {
		/* The header alone in the buffer; the device reads the frame where it is. */
		b[0].len = sizeof(*h);
		for (unsigned i = 0; i < n; i++)
			if (frags[i].len)
				b[nb++] =
				    (struct vq_buf){ frag_bus(&frags[i]), (uint32_t)frags[i].len };
	} else {
		p = buf + sizeof(*h);
		perf_begin();
		for (unsigned i = 0; i < n; i++) {
			memcpy(p, frags[i].data, frags[i].len);
			p += frags[i].len;
		}
		perf_end(PERF_COPY, len);
		b[0].len = (uint32_t)(sizeof(*h) + len);
	}
	if (csum) {
		if (virtio_has(vn->vdev, VIRTIO_NET_F_CSUM)) {
			h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
			h->csum_start = cpu_to_le16(csum->start);
			h->csum_offset = cpu_to_le16(csum->offset);
			vn->stats.tx_csum_dev++;
		} else {
			vnet_csum_finish(buf + sizeof(*h), len, csum->start, csum->offset);
			vn->stats.tx_csum_sw++;
		}
	}
	h->gso_type = VIRTIO_NET_HDR_GSO_NONE;

	/* vq_add's barrier orders the copy above before the device can see the buffer. */
	rc = vnet_tx_place(vn, b, nb, buf);
	if (rc) {
		vn->tx_free[vn->tx_nfree++] = (uint16_t)idx;
		if (rc == -EAGAIN)
			vn->stats.tx_busy++;
		return rc;
	}
	/* No doorbell per frame: vnet_tx_kick() at the end of the pass rings one for all. */
	vn->stats.tx_packets++;
	vn->stats.tx_bytes += len;
	if (by_ref) {
		vnet_tx_hold(vn, (unsigned)idx, &ref, 1, vn->tx_ref_seq++);
		return VNET_TX_REFERENCED;
	}
	vn->stats.tx_copied++;
	return 0;
}

/* ---- Link, poll -------------------------------------------------------------------------------- */

static void vnet_read_link(struct vnet *vn)
{
	le16 status;
	bool up = true; /* §5.1.4: without STATUS the link is assumed up */

	if (virtio_has(vn->vdev, VIRTIO_NET_F_STATUS) &&
	    vn->vdev->ops->read_config(vn->vdev, offsetof(struct virtio_net_config, status),
				       &status, sizeof(status)) == 0)
		up = (le16_to_cpu(status) & VIRTIO_NET_S_LINK_UP) != 0;
	if (up != vn->link_up) {
		vn->stats.link_changes++;
		vn->link_up = up;
	}
}

void vnet_tx_kick(struct vnet *vn)
{
	if (vn->dead)
		return;
	/* The end of the pass: a held frame waits no longer (ring full: the next poll sends it). */
	vnet_tso_flush(vn);
	vq_kick(&vn->txq);
}

int vnet_poll(struct vnet *vn)
{
	uint64_t now;

	if (vn->dead)
		return -EIO;
	/* Frames still held or unannounced (a caller that polls to wait for a transmit buffer). */
	vnet_tso_flush(vn);
	vq_kick(&vn->txq);
	now = plat_now_ns();
	/* A config read is a trap to the hypervisor: the link is looked at a few times a second. */
	if (now >= vn->next_link_check) {
		vnet_read_link(vn);
		vn->next_link_check = now + VNET_LINK_POLL_NS;
	}
	return vnet_tx_reclaim(vn);
}

/* ---- Probe and teardown ---------------------------------------------------------------------- */

/* The receive buffers, their free list and @vn itself (vnet_free(), or the last release). */
static void vnet_free_rx_rest(struct vnet *vn)
{
	if (vn->rx_bufs)
		plat_dma_free(vn->rx_bufs, vn->rx_pages);
	free(vn->rx_free);
	free(vn);
}

static void vnet_free(struct vnet *vn)
{
	if (vn->tx_bufs)
		plat_dma_free(vn->tx_bufs, vn->tx_pages);
	if (vn->tso_bufs)
		plat_dma_free(vn->tso_bufs, vn->tso_pages);
	/* The device is stopped (or never ran): what it still held by reference goes back. */
	for (unsigned i = 0; vn->tx_nrefs && i < vn->txq.size; i++)
		if (vn->tx_nrefs[i])
			vnet_tx_release(vn, i);
	if (vn->tso_cur.active && vn->tso_cur.ref)
		vnet_tx_refs_done(vn, vn->tso_cur.refs, vn->tso_cur.nrefs);
	free(vn->tx_refs);
	free(vn->tx_nrefs);
	free(vn->tx_ref_seqs);
	free(vn->tx_free);
	vq_fini(&vn->rxq);
	vq_fini(&vn->txq);
	/*
	 * Buffers the stack still holds are read by it, and each comes back through
	 * vnet_rx_release(), which needs @vn and the free list: they stay until the last one.
	 */
	if (vn->rx_held)
		vn->destroyed = true;
	else
		vnet_free_rx_rest(vn);
}

static int vnet_alloc_bufs(unsigned count, size_t size, uint8_t **va, uint64_t *bus, size_t *pages)
{
	void *p;
	int rc;

	*pages = ((size_t)count * size + PLAT_PAGE_SIZE - 1) / PLAT_PAGE_SIZE;
	rc = plat_dma_alloc(*pages, &p, bus);
	if (rc)
		return rc;
	*va = p;
	return 0;
}

/*
 * Features, with their dependencies (§5.1.3.1): GUEST_TSO4 needs GUEST_CSUM, and large
 * frames need MRG_RXBUF here (our buffers are pages); HOST_TSO4 needs CSUM. A device that
 * offers a dependent feature without what it needs is negotiated again without it (a reset).
 */
static int vnet_negotiate(struct virtio_dev *vdev)
{
	uint64_t want = VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) |
			VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_STATUS) |
			VIRTIO_BIT(VIRTIO_NET_F_MTU) | VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF) |
			VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) |
			VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);
	uint64_t drop = 0;
	int rc = virtio_negotiate(vdev, want);

	if (rc)
		return rc;
	if (virtio_has(vdev, VIRTIO_NET_F_GUEST_TSO4) &&
	    !(virtio_has(vdev, VIRTIO_NET_F_GUEST_CSUM) &&
	      virtio_has(vdev, VIRTIO_NET_F_MRG_RXBUF)))
		drop |= VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4);
	if (virtio_has(vdev, VIRTIO_NET_F_HOST_TSO4) && !virtio_has(vdev, VIRTIO_NET_F_CSUM))
		drop |= VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4);
	if (drop)
		rc = virtio_negotiate(vdev, want & ~drop);
	return rc;
}

int vnet_create(struct virtio_dev *vdev, struct vnet **out)
{
	struct virtio_net_config cfg;
	struct vnet *vn;
	int rc;

	vn = calloc(1, sizeof(*vn));
	if (!vn)
		return -ENOMEM;
	vn->vdev = vdev;
	snprintf(vn->name, sizeof(vn->name), "vnet %s", vdev->name);

	rc = vnet_negotiate(vdev);
	if (rc)
		goto err_negotiate;
	vn->mrg = virtio_has(vdev, VIRTIO_NET_F_MRG_RXBUF);
	memset(&cfg, 0, sizeof(cfg));
	if (virtio_has(vdev, VIRTIO_NET_F_MAC)) {
		rc = vdev->ops->read_config(vdev, 0, cfg.mac, sizeof(cfg.mac));
		if (rc)
			goto err_setup;
		memcpy(vn->mac, cfg.mac, 6);
	} else {
		/* §5.1.5: without MAC the driver picks one; a fixed locally administered one. */
		static const uint8_t local[6] = { 0x02, 0x74, 0x68, 0x62, 0x6f, 0x78 };

		memcpy(vn->mac, local, 6);
	}
	vn->mtu = 1500;
	if (virtio_has(vdev, VIRTIO_NET_F_MTU) &&
	    vdev->ops->read_config(vdev, offsetof(struct virtio_net_config, mtu), &cfg.mtu, 2) ==
		0 &&
	    le16_to_cpu(cfg.mtu) >= 68 && le16_to_cpu(cfg.mtu) <= VNET_MAX_FRAME - 18)
		vn->mtu = le16_to_cpu(cfg.mtu);

	rc = virtio_setup_queue(vdev, &vn->rxq, VNET_RXQ, VNET_RX_QUEUE_SIZE, 0);
	if (rc)
		goto err_setup;
	/* Indirect tables only for transmit: receive chains are one buffer each. */
	rc = virtio_setup_queue(vdev, &vn->txq, VNET_TXQ, VNET_QUEUE_SIZE, VNET_TX_INDIRECT);
	if (rc)
		goto err_setup;
	vn->tx_max_pieces = vn->txq.indirect_max ? vn->txq.indirect_max : VNET_TX_DIRECT_MAX;
	/* Behind an IOMMU the device's addresses are not ours: only DMA memory, copies. */
	vn->tx_can_ref = !virtio_has(vdev, VIRTIO_F_ACCESS_PLATFORM);
	vn->rx_nbufs = MAX(VNET_RX_BUFS, 2u * vn->rxq.size);
	rc = vnet_alloc_bufs(vn->rx_nbufs, VNET_RX_BUF_SIZE, &vn->rx_bufs, &vn->rx_bus,
			     &vn->rx_pages);
	if (rc)
		goto err_setup;
	rc = vnet_alloc_bufs(vn->txq.size, VNET_BUF_SIZE, &vn->tx_bufs, &vn->tx_bus, &vn->tx_pages);
	if (rc)
		goto err_setup;
	if (virtio_has(vdev, VIRTIO_NET_F_HOST_TSO4) &&
	    vnet_alloc_bufs(VNET_TSO_BUFS, VNET_TSO_BUF_SIZE, &vn->tso_bufs, &vn->tso_bus,
			    &vn->tso_pages) == 0) {
		/* Without these buffers the device just never gets a GSO frame. */
		vn->tso = true;
		for (unsigned i = 0; i < VNET_TSO_BUFS; i++)
			vn->tso_free[vn->tso_nfree++] = (uint16_t)i;
	}
	vn->tx_free = calloc(vn->txq.size, sizeof(*vn->tx_free));
	vn->rx_free = calloc(vn->rx_nbufs, sizeof(*vn->rx_free));
	vn->tx_refs = calloc((size_t)vn->txq.size * VNET_TX_INDIRECT, sizeof(*vn->tx_refs));
	vn->tx_nrefs = calloc(vn->txq.size, sizeof(*vn->tx_nrefs));
	vn->tx_ref_seqs = calloc(vn->txq.size, sizeof(*vn->tx_ref_seqs));
	if (!vn->tx_free || !vn->rx_free || !vn->tx_refs || !vn->tx_nrefs || !vn->tx_ref_seqs) {
		rc = -ENOMEM;
		goto err_setup;
	}
	for (unsigned i = 0; i < vn->txq.size; i++)
		vn->tx_free[vn->tx_nfree++] = (uint16_t)(vn->txq.size - 1 - i);
	for (unsigned i = 0; i < vn->rx_nbufs; i++)
		vn->rx_free[vn->rx_nfree++] = (uint16_t)(vn->rx_nbufs - 1 - i);
	/* §5.1.6.3: receive buffers may be added before DRIVER_OK; fill the whole ring. */
	vnet_rx_refill(vn);
	virtio_ready(vdev);
	vq_kick(&vn->rxq);
	vn->link_up = false;
	vnet_read_link(vn);
	vn->stats.link_changes = 0;
	vn->next_link_check = plat_now_ns() + VNET_LINK_POLL_NS;
	*out = vn;
	return 0;

err_setup:
	virtio_fail(vdev);
	virtio_stop(vdev);
err_negotiate:
	plat_printf("%s: not usable (%d)\n", vn->name, rc);
	vnet_free(vn);
	return rc;
}

void vnet_destroy(struct vnet *vn)
{
	if (!vn)
		return;
	/* Stop DMA before freeing the buffers the device may still write. */
	if (virtio_stop(vn->vdev)) {
		plat_printf("%s: reset failed; keeping its memory\n", vn->name);
		return;
	}
	vnet_free(vn);
}

void vnet_features_str(const struct vnet *vn, char *buf, unsigned len)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {
		{ VIRTIO_NET_F_MAC, "mac" },
		{ VIRTIO_NET_F_STATUS, "status" },
		{ VIRTIO_NET_F_CSUM, "csum" },
		{ VIRTIO_NET_F_GUEST_CSUM, "guest-csum" },
		{ VIRTIO_NET_F_MTU, "mtu" },
		{ VIRTIO_NET_F_MRG_RXBUF, "mrg-rxbuf" },
		{ VIRTIO_NET_F_GUEST_TSO4, "guest-tso4" },
		{ VIRTIO_NET_F_HOST_TSO4, "host-tso4" },
		{ VIRTIO_F_INDIRECT_DESC, "indirect" },
		{ VIRTIO_F_ACCESS_PLATFORM, "access-platform" },
	};
	size_t used = 0;

	if (len)
		buf[0] = 0;
	for (unsigned i = 0; i < ARRAY_SIZE(names); i++) {
		int n;

		if (!virtio_has(vn->vdev, names[i].bit))
			continue;
		n = snprintf(buf + used, len - used, "%s%s", used ? " " : "", names[i].name);
		if (n < 0 || (size_t)n >= len - used)
			return;
		used += (size_t)n;
	}
}
