/* SPDX-License-Identifier: MIT */
/* The virtio device played by the tests (tests/support/vdev_double.h). */
#include "tests/support/vdev_double.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/base/util.h"

static struct vdd *to_vdd(struct virtio_dev *vdev)
{
	return (struct vdd *)vdev;
}

/* ---- Device side of a virtqueue ------------------------------------------------------------ */

int vdd_pop(struct vdd_queue *q, struct vdd_chain *c)
{
	struct vq *vq = q->vq;
	uint16_t avail = vq_read16(&vq->avail->idx);
	struct vring_desc *tbl = vq->desc;
	unsigned tbl_size = vq->size;
	uint16_t i;

	if (avail == q->last_avail) {
		if (q->event_idx && !q->busy)
			vq_write16(vq_avail_event(vq), q->last_avail);
		return 0;
	}
	vq_rmb(); /* read the ring entry after the index, as a device must */
	c->head = le16_to_cpu(vq->avail->ring[q->last_avail & (vq->size - 1)]);
	q->last_avail++;
	if (q->event_idx && !q->busy)
		vq_write16(vq_avail_event(vq), q->last_avail);
	c->n = 0;
	c->indirect = false;
	if (c->head >= vq->size)
		return -1;
	i = c->head;
	if (le16_to_cpu(tbl[i].flags) & VRING_DESC_F_INDIRECT) {
		if (le16_to_cpu(tbl[i].flags) & VRING_DESC_F_NEXT)
			return -1; /* §2.6.5.3.1 */
		c->indirect = true;
		tbl_size = le32_to_cpu(tbl[i].len) / sizeof(struct vring_desc);
		tbl = (struct vring_desc *)(uintptr_t)le64_to_cpu(tbl[i].addr);
		i = 0;
	}
	for (;;) {
		uint16_t f = le16_to_cpu(tbl[i].flags);

		if (c->n == VDD_MAX_SEGS || i >= tbl_size ||
		    (c->indirect && (f & VRING_DESC_F_INDIRECT)))
			return -1;
		c->seg[c->n].addr = le64_to_cpu(tbl[i].addr);
		c->seg[c->n].len = le32_to_cpu(tbl[i].len);
		c->seg[c->n].write = (f & VRING_DESC_F_WRITE) != 0;
		c->n++;
		if (!(f & VRING_DESC_F_NEXT))
			return 1;
		i = le16_to_cpu(tbl[i].next);
	}
}

void vdd_push(struct vdd_queue *q, uint16_t head, uint32_t len)
{
	struct vq *vq = q->vq;
	struct vring_used_elem *e = &vq->used->ring[q->used_idx & (vq->size - 1)];

	e->id = cpu_to_le32(head);
	e->len = cpu_to_le32(len);
	vq_wmb(); /* the element before the index, as a device must */
	q->used_idx++;
	vq_write16(&vq->used->idx, q->used_idx);
	vq_mb(); /* the index before reading what the driver wants (§2.7.10) */
	if (q->event_idx ? vring_need_event(vq_read16(vq_used_event(vq)), q->used_idx,
					    (uint16_t)(q->used_idx - 1))
			 : !(vq_read16(&vq->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT))
		q->interrupts++;
}

/* ---- Fake transport -------------------------------------------------------------------------- */

static int vdd_reset(struct virtio_dev *vdev)
{
	struct vdd *d = to_vdd(vdev);

	d->resets++;
	if (d->reset_stuck)
		return -ETIMEDOUT;
	d->status = 0;
	d->accepted = 0;
	for (unsigned i = 0; i < VDD_MAX_QUEUES; i++)
		memset(&d->q[i], 0, sizeof(d->q[i]));
	return 0;
}

static uint8_t vdd_get_status(struct virtio_dev *vdev)
{
	return to_vdd(vdev)->status;
}

static void vdd_set_status(struct virtio_dev *vdev, uint8_t s)
{
	struct vdd *d = to_vdd(vdev);

	if ((s & VIRTIO_STATUS_FEATURES_OK) && d->refuse_features)
		s &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
	d->status = s;
}

static uint64_t vdd_get_features(struct virtio_dev *vdev)
{
	return to_vdd(vdev)->offered;
}

static void vdd_set_features(struct virtio_dev *vdev, uint64_t f)
{
	to_vdd(vdev)->accepted = f;
}

static int vdd_read_config(struct virtio_dev *vdev, unsigned off, void *buf, unsigned len)
{
	struct vdd *d = to_vdd(vdev);

	if (off > d->config_len || len > d->config_len - off)
		return -EINVAL;
	memcpy(buf, d->config + off, len);
	return 0;
}

static unsigned vdd_num_queues(struct virtio_dev *vdev)
{
	return to_vdd(vdev)->nq;
}

static uint16_t vdd_queue_max_size(struct virtio_dev *vdev, uint16_t index)
{
	struct vdd *d = to_vdd(vdev);

	return index < d->nq ? d->qmax : 0;
}

static void vdd_notify(struct vq *vq)
{
	struct vdd *d = to_vdd(vq->priv);

	d->q[vq->index].notifies++;
	if (d->on_notify)
		d->on_notify(d, vq->index);
}

static int vdd_enable_queue(struct virtio_dev *vdev, struct vq *vq)
{
	struct vdd *d = to_vdd(vdev);

	if (vq->index >= d->nq || vq->size > d->qmax)
		return -EINVAL;
	memset(&d->q[vq->index], 0, sizeof(d->q[vq->index]));
	d->q[vq->index].vq = vq;
	d->q[vq->index].event_idx = (d->accepted & VIRTIO_BIT(VIRTIO_F_EVENT_IDX)) != 0;
	vq->notify = vdd_notify;
	return 0;
}

static const struct virtio_transport_ops vdd_ops = {
	.reset = vdd_reset,
	.get_status = vdd_get_status,
	.set_status = vdd_set_status,
	.get_features = vdd_get_features,
	.set_features = vdd_set_features,
	.read_config = vdd_read_config,
	.num_queues = vdd_num_queues,
	.queue_max_size = vdd_queue_max_size,
	.enable_queue = vdd_enable_queue,
};

void vdd_init(struct vdd *d, uint64_t offered, unsigned nq, uint16_t qmax)
{
	memset(d, 0, sizeof(*d));
	d->vdev.ops = &vdd_ops;
	snprintf(d->vdev.name, sizeof(d->vdev.name), "00:04.0");
	d->offered = offered;
	d->nq = nq;
	d->qmax = qmax;
	d->status = 0x0f; /* as if a previous owner left it running */
}
