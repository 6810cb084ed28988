/* SPDX-License-Identifier: MIT */
/*
 * A virtio device played by the test: a fake transport (struct virtio_transport_ops over
 * plain variables) and the device's side of a split virtqueue (take chains from the
 * available ring, put entries on the used ring, in any order).
 *
 * The device side touches only what a real device sees: the descriptor table, the available
 * ring and the used ring in the queue's memory, plus its own private indices. It never reads
 * the driver's bookkeeping in struct vq, so the tests check the ring protocol itself.
 */
#ifndef TESTS_SUPPORT_VDEV_DOUBLE_H
#define TESTS_SUPPORT_VDEV_DOUBLE_H

#include <stdbool.h>
#include <stdint.h>

#include "drivers/virtio/virtio.h"
#include "drivers/virtio/virtqueue.h"

#define VDD_MAX_QUEUES 4
#define VDD_MAX_SEGS   260

/* One chain as the device sees it. */
struct vdd_chain {
	uint16_t head;
	unsigned n;
	bool indirect;
	struct {
		uint64_t addr;
		uint32_t len;
		bool write;
	} seg[VDD_MAX_SEGS];
};

/* The device's private view of one queue. */
struct vdd_queue {
	struct vq *vq;	     /* only desc/avail/used/size are used */
	uint16_t last_avail; /* next available entry to take */
	uint16_t used_idx;   /* our used->idx */
	unsigned notifies;
	/*
	 * VIRTIO_F_EVENT_IDX accepted (set by enable_queue): vdd_pop() asks for a doorbell on the
	 * next addition (avail_event = last_avail, as a device that caught up does) unless
	 * @busy, and vdd_push() counts the interrupts the device would send.
	 */
	bool event_idx;
	bool busy;	     /* like QEMU while it processes a queue: no doorbell wanted */
	unsigned interrupts; /* vdd_push()es that would have interrupted the driver */
};

struct vdd {
	struct virtio_dev vdev; /* first */
	uint8_t status;
	uint64_t offered, accepted;
	bool refuse_features; /* clear FEATURES_OK when set */
	bool reset_stuck;     /* reset never completes */
	unsigned resets;
	uint8_t config[128];
	unsigned config_len;
	unsigned nq;
	uint16_t qmax;
	struct vdd_queue q[VDD_MAX_QUEUES];
	void (*on_notify)(struct vdd *d, unsigned qi);
	void *priv;
};

/*
 * Take the next available chain: 1 and *c filled, 0 when none, -1 on a malformed chain. With
 * event index and not busy, leaves avail_event at the next entry it has not taken.
 */
int vdd_pop(struct vdd_queue *q, struct vdd_chain *c);
/*
 * Finish the chain @head, having written @len bytes into it; counts an interrupt when the
 * driver asked for one (used_event passed, or without event index VRING_AVAIL_F_NO_INTERRUPT
 * clear).
 */
void vdd_push(struct vdd_queue *q, uint16_t head, uint32_t len);
/* A device offering @offered features and @nq queues of at most @qmax entries, its status
 * as a previous owner left it. */
void vdd_init(struct vdd *d, uint64_t offered, unsigned nq, uint16_t qmax);

#endif
