/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueue, polled (virtio 1.1 §2.6). The descriptor free list is threaded through
 * the descriptors' own .next fields (the device only reads descriptors that are in flight),
 * and every ring index is a free-running 16-bit counter reduced modulo the power-of-two size
 * only when it addresses a slot (§2.6.6: idx "wraps naturally at 65536").
 */
#include "drivers/virtio/virtqueue.h"

#include "core/base/perf.h"
#include "core/base/plat.h"
#include "core/base/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Byte offsets of the three rings and the indirect tables inside the queue's DMA pages. */
struct vq_layout {
	size_t avail, used, indirect, total;
};

static void vq_compute_layout(uint16_t size, unsigned indirect_max, struct vq_layout *l)
{
	/* §2.6: descriptors 16-byte aligned, available ring 2, used ring 4. */
	l->avail = (size_t)size * sizeof(struct vring_desc);
	/* flags, idx, ring[size], used_event */
	l->used = l->avail + sizeof(struct vring_avail) + 2u * size + 2u;
	/* Start the device-written ring on its own cache line, away from what we write. */
	l->used = ALIGN_UP(l->used, (size_t)64);
	l->indirect = l->used + sizeof(struct vring_used) + 8u * size + 2u;
	l->indirect = ALIGN_UP(l->indirect, (size_t)64);
	l->total = l->indirect + (size_t)size * indirect_max * sizeof(struct vring_desc);
}

int vq_init(struct vq *vq, uint16_t index, uint16_t size, unsigned indirect_max)
{
	struct vq_layout l;
	uint64_t bus;
	void *mem;
	int rc;

	if (size == 0 || size > VQ_MAX_SIZE || (size & (size - 1)) != 0)
		return -EINVAL;
	if (indirect_max == 1 || indirect_max > VQ_MAX_INDIRECT)
		return -EINVAL;
	memset(vq, 0, sizeof(*vq));
	vq_compute_layout(size, indirect_max, &l);

	vq->token = calloc(size, sizeof(*vq->token));
	if (!vq->token)
		return -ENOMEM;
	vq->mem_pages = (l.total + PLAT_PAGE_SIZE - 1) / PLAT_PAGE_SIZE;
	rc = plat_dma_alloc(vq->mem_pages, &mem, &bus);
	if (rc)
		goto err_dma;

	/* plat_dma_alloc() gives zeroed pages: both rings start empty with idx 0. */
	vq->mem = mem;
	vq->index = index;
	vq->size = size;
	vq->desc = mem;
	vq->avail = (struct vring_avail *)((char *)mem + l.avail);
	vq->used = (struct vring_used *)((char *)mem + l.used);
	vq->desc_bus = bus;
	vq->avail_bus = bus + l.avail;
	vq->used_bus = bus + l.used;
	if (indirect_max) {
		vq->indirect = (struct vring_desc *)((char *)mem + l.indirect);
		vq->indirect_bus = bus + l.indirect;
		vq->indirect_max = indirect_max;
	}
	for (unsigned i = 0; i < size; i++)
		vq->desc[i].next = cpu_to_le16((uint16_t)((i + 1) & (size - 1)));
	vq->free_head = 0;
	vq->num_free = size;
	/* We poll; an interrupt would only cost the device work (§2.6.7, a hint it may ignore). */
	vq_write16(&vq->avail->flags, VRING_AVAIL_F_NO_INTERRUPT);
	/* The same with EVENT_IDX: used_event one behind our consumer (vq_irq_enable()). */
	vq_write16(vq_used_event(vq), (uint16_t)(vq->last_used - 1));
	return 0;

err_dma:
	free(vq->token);
	vq->token = NULL;
	return rc;
}

void vq_fini(struct vq *vq)
{
	if (vq->mem)
		plat_dma_free(vq->mem, vq->mem_pages);
	free(vq->token);
	memset(vq, 0, sizeof(*vq));
}

static void vq_set_desc(struct vring_desc *d, const struct vq_buf *b, uint16_t flags)
{
	d->addr = cpu_to_le64(b->addr);
	d->len = cpu_to_le32(b->len);
	d->flags = cpu_to_le16(flags);
}

int vq_add(struct vq *vq, const struct vq_buf *bufs, unsigned n_out, unsigned n_in, void *token)
{
	unsigned n = n_out + n_in;
	unsigned need = vq_descs_needed(vq, n);
	uint16_t head = vq->free_head;
	uint16_t i = head;

	if (n == 0 || !token)
		return -EINVAL;
	if (need > vq->num_free)
		return -EAGAIN;

	if (need == 1 && n > 1) {
		/* One ring slot pointing at this head's private indirect table (§2.6.5.3). */
		struct vring_desc *tbl = vq->indirect + (size_t)head * vq->indirect_max;
		struct vq_buf t;

		for (unsigned k = 0; k < n; k++) {
			uint16_t f = k < n_out ? 0 : VRING_DESC_F_WRITE;

			if (k + 1 < n)
				f |= VRING_DESC_F_NEXT;
			vq_set_desc(&tbl[k], &bufs[k], f);
			tbl[k].next = cpu_to_le16((uint16_t)(k + 1));
		}
		t.addr = vq->indirect_bus +
			 (uint64_t)head * vq->indirect_max * sizeof(struct vring_desc);
		t.len = (uint32_t)(n * sizeof(struct vring_desc));
		/* §2.6.5.3.1: INDIRECT and NEXT/WRITE are never set together on the ring slot. */
		vq_set_desc(&vq->desc[head], &t, VRING_DESC_F_INDIRECT);
	} else {
		for (unsigned k = 0; k < n; k++) {
			uint16_t f = k < n_out ? 0 : VRING_DESC_F_WRITE;

			if (k + 1 < n)
				f |= VRING_DESC_F_NEXT;
			vq_set_desc(&vq->desc[i], &bufs[k], f);
			/* Free descriptors are already linked, so .next names the chain's next one. */
			i = le16_to_cpu(vq->desc[i].next);
		}
	}
	vq->free_head = need == 1 ? le16_to_cpu(vq->desc[head].next) : i;
	vq->num_free = (uint16_t)(vq->num_free - need);
	vq->token[head] = token;

	vq->avail->ring[vq->avail_idx & (vq->size - 1)] = cpu_to_le16(head);
	/*
	 * The descriptors and the ring slot must be visible before the new index: the device
	 * reads avail->idx first and then trusts everything below it (§2.6.13, step 3 before 4).
	 */
	vq_wmb();
	vq->avail_idx++;
	vq_write16(&vq->avail->idx, vq->avail_idx);
	return 0;
}

void vq_kick(struct vq *vq)
{
	uint16_t old_idx = vq->kicked_idx, new_idx = vq->avail_idx;
	bool need;

	if (old_idx == new_idx)
		return;
	vq->kicked_idx = new_idx;
	/*
	 * Our avail->idx store must be globally visible before we read used->flags or
	 * avail_event. Otherwise a device that is just re-enabling notifications could check the
	 * old idx, go to sleep, and we could read its stale NO_NOTIFY (or old avail_event) and
	 * skip the doorbell: both sides would wait forever. A store followed by a load needs the
	 * full fence (§2.6.13.4; Linux virtqueue_kick_prepare).
	 */
	vq_mb();
	if (vq->event_idx)
		need = vring_need_event(vq_read16(vq_avail_event(vq)), new_idx, old_idx);
	else
		need = !(vq_read16(&vq->used->flags) & VRING_USED_F_NO_NOTIFY);
	if (!need) {
		vq->kicks_skipped++;
		return;
	}
	vq->kicks++;
	perf_begin();
	vq->notify(vq);
	perf_end(PERF_DOORBELL, 0);
}

bool vq_has_used(const struct vq *vq)
{
	return vq_read16(&vq->used->idx) != vq->last_used;
}

bool vq_irq_enable(struct vq *vq)
{
	vq->irq_on = true;
	/* Both: the flag for a device without EVENT_IDX, used_event for one with it. */
	vq_write16(vq_used_event(vq), vq->last_used);
	vq_write16(&vq->avail->flags, 0);
	/*
	 * The stores must be visible before we read used->idx (a store then a load: the full
	 * fence). Otherwise the device could finish a chain, read the old flag or used_event and
	 * not notify, while we read the old idx and halt: a lost wake-up.
	 */
	vq_mb();
	return vq_has_used(vq);
}

void vq_irq_disable(struct vq *vq)
{
	vq->irq_on = false;
	vq_write16(&vq->avail->flags, VRING_AVAIL_F_NO_INTERRUPT);
	vq_write16(vq_used_event(vq), (uint16_t)(vq->last_used - 1));
}

/* Put the chain starting at @head back on the free list. */
static void vq_free_chain(struct vq *vq, uint16_t head)
{
	uint16_t i = head;
	unsigned n = 1;

	vq->token[head] = NULL;
	/*
	 * An indirect chain used one slot. A direct one is followed through NEXT; we wrote those
	 * flags ourselves, and the walk is bounded by the size anyway.
	 */
	if (!(le16_to_cpu(vq->desc[head].flags) & VRING_DESC_F_INDIRECT)) {
		while ((le16_to_cpu(vq->desc[i].flags) & VRING_DESC_F_NEXT) && n < vq->size) {
			i = le16_to_cpu(vq->desc[i].next);
			n++;
		}
	}
	vq->desc[i].next = cpu_to_le16(vq->free_head);
	vq->free_head = head;
	vq->num_free = (uint16_t)(vq->num_free + n);
}

int vq_get_used(struct vq *vq, void **token, uint32_t *len)
{
	uint16_t used_idx = vq_read16(&vq->used->idx);
	struct vring_used_elem *e;
	uint32_t id;

	if (used_idx == vq->last_used)
		return -EAGAIN;
	/* More entries than the ring holds: the device's index is garbage. */
	if ((uint16_t)(used_idx - vq->last_used) > vq->size)
		return -EIO;
	/*
	 * The device fills the used element before it bumps used->idx (§2.6.8.2); we must not
	 * read the element until after we have seen the index, or we could read the previous
	 * lap's stale id and length.
	 */
	vq_rmb();
	e = &vq->used->ring[vq->last_used & (vq->size - 1)];
	id = le32_to_cpu(*(volatile le32 *)&e->id);
	vq->last_used++;
	/*
	 * Polling with EVENT_IDX: keep used_event one behind the consumer, so the device never
	 * passes it (an interrupt nobody waits for). A plain store into memory we own: no exit.
	 */
	if (vq->event_idx && !vq->irq_on)
		vq_write16(vq_used_event(vq), (uint16_t)(vq->last_used - 1));
	if (id >= vq->size || !vq->token[id])
		return -EIO;
	if (len)
		*len = le32_to_cpu(*(volatile le32 *)&e->len);
	*token = vq->token[id];
	vq_free_chain(vq, (uint16_t)id);
	return 0;
}

void *vq_detach(struct vq *vq)
{
	for (unsigned i = 0; i < vq->size; i++) {
		void *t = vq->token[i];

		if (t) {
			vq_free_chain(vq, (uint16_t)i);
			return t;
		}
	}
	return NULL;
}
