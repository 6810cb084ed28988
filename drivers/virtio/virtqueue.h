/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueues (virtio 1.1 §2.6), driven by polling, with notification suppression both
 * ways: the device's VRING_USED_F_NO_NOTIFY or, when VIRTIO_F_EVENT_IDX is negotiated, its
 * avail_event (§2.7.10); interrupts only around an idle halt (vq_irq_enable()).
 *
 * A queue is three rings in DMA memory from plat_dma_alloc(): the descriptor table (written
 * by us, read by the device), the available ring (written by us) and the used ring (written
 * by the device). vq_add() places a buffer chain and publishes it, vq_kick() rings the
 * doorbell once for everything added since the last kick, unless the device asked not to be
 * notified, vq_get_used() takes back what the
 * device finished, in whatever order it finished them. Each chain carries a caller token
 * that comes back with its completion.
 *
 * This file is pure memory manipulation: the doorbell is a callback and the memory barriers
 * are the inline helpers below, so the host unit tests build it unchanged and play the
 * device against it (tests/unit/virtio/test_virtqueue.c).
 *
 * Ownership: between vq_add() and the matching vq_get_used() (or vq_detach()), the buffers
 * belong to the device; the caller must neither free nor touch them.
 */
#ifndef DRIVERS_VIRTIO_VIRTQUEUE_H
#define DRIVERS_VIRTIO_VIRTQUEUE_H

#include "drivers/virtio/virtio.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Ring layout (§2.6.5, §2.6.6, §2.6.8) ------------------------------------------ */

#define VRING_DESC_F_NEXT     1 /* the chain continues in .next */
#define VRING_DESC_F_WRITE    2 /* device-writable (else device-readable) */
#define VRING_DESC_F_INDIRECT 4 /* .addr/.len is a table of descriptors */

#define VRING_AVAIL_F_NO_INTERRUPT 1 /* driver to device: we poll, do not interrupt */
#define VRING_USED_F_NO_NOTIFY	   1 /* device to driver: no need to ring the doorbell */

#define VQ_MAX_SIZE 32768 /* §2.6: queue size is a power of two up to 32768 */

struct vring_desc {
	le64 addr;
	le32 len;
	le16 flags;
	le16 next;
};
_Static_assert(sizeof(struct vring_desc) == 16, "virtio 1.1 §2.6.5");

struct vring_avail {
	le16 flags;
	le16 idx;
	le16 ring[]; /* size entries, then le16 used_event (EVENT_IDX: interrupt past it) */
};
_Static_assert(sizeof(struct vring_avail) == 4, "virtio 1.1 §2.6.6");

struct vring_used_elem {
	le32 id;  /* head of the finished chain */
	le32 len; /* bytes the device wrote into the chain's writable part */
};
_Static_assert(sizeof(struct vring_used_elem) == 8, "virtio 1.1 §2.6.8");

struct vring_used {
	le16 flags;
	le16 idx;
	struct vring_used_elem ring[]; /* size entries, then le16 avail_event */
};
_Static_assert(sizeof(struct vring_used) == 4, "virtio 1.1 §2.6.8");

/*
 * §2.7.10 (Linux's vring_need_event): with EVENT_IDX, the other side wants a notification
 * when its index moved from @old to @new past @event, i.e. when @event lies in [old, new).
 * All three are free-running 16-bit counters: the differences are taken modulo 65536, so the
 * test holds across the wrap-around.
 */
static inline bool vring_need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

/* ---- Memory ordering -------------------------------------------------------------- */
/*
 * The device is another agent (a QEMU thread, or real hardware) reading and writing the
 * rings in cache-coherent memory, so the SMP barriers suffice (Linux's virtio_*mb with
 * weak_barriers). On x86 the acquire and release fences only stop the compiler, since the
 * CPU keeps loads in order with loads and stores with stores; the full fence is an mfence,
 * because x86 does let a load pass an earlier store. Each call site says what it orders.
 */
static inline void vq_wmb(void)
{
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static inline void vq_rmb(void)
{
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
}

static inline void vq_mb(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/*
 * Shared ring fields are read and written exactly once through volatile, so the compiler
 * neither caches a device-written index in a register across polls nor splits a store the
 * device may observe half-done.
 */
static inline uint16_t vq_read16(const le16 *p)
{
	return le16_to_cpu(*(const volatile le16 *)p);
}

static inline void vq_write16(le16 *p, uint16_t v)
{
	*(volatile le16 *)p = cpu_to_le16(v);
}

/* ---- The queue ------------------------------------------------------------------------ */

/* One piece of a chain: device-readable ("out") pieces come first, then writable ("in"). */
struct vq_buf {
	uint64_t addr; /* bus address */
	uint32_t len;
};

struct vq {
	uint16_t index; /* the queue's number in its device */
	uint16_t size;	/* entries, a power of two */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint64_t desc_bus, avail_bus, used_bus;

	/* Doorbell, called by vq_kick() when the device wants notifications. */
	void (*notify)(struct vq *vq);
	uint64_t notify_addr; /* the transport's: where the doorbell is */
	void *priv;	      /* the owner's (the struct virtio_dev) */

	/* Driver-private state; the device never sees it. */
	uint16_t free_head; /* first free descriptor; free ones are linked through .next */
	uint16_t num_free;
	uint16_t avail_idx;  /* our copy of avail->idx: the device only reads it */
	uint16_t last_used;  /* next used->ring entry to consume */
	uint16_t kicked_idx; /* avail_idx when vq_kick() last ran: what follows is unannounced */
	bool event_idx;	     /* VIRTIO_F_EVENT_IDX negotiated (set before the device runs) */
	bool irq_on;	     /* between vq_irq_enable() and vq_irq_disable() */
	void **token;	     /* by chain head; NULL when the head is free */

	/* Indirect tables, one per descriptor slot of indirect_max entries (0: none). */
	struct vring_desc *indirect;
	uint64_t indirect_bus;
	unsigned indirect_max;

	void *mem; /* the DMA pages holding all of the above that the device sees */
	size_t mem_pages;

	/* Doorbells rung, and kicks that rang none (NO_NOTIFY, or avail_event not reached). */
	uint64_t kicks, kicks_skipped;
};

/* The two event-index fields (§2.6.6, §2.6.8): after the available and the used ring. */
static inline le16 *vq_used_event(const struct vq *vq)
{
	return &vq->avail->ring[vq->size];
}

static inline le16 *vq_avail_event(const struct vq *vq)
{
	return (le16 *)&vq->used->ring[vq->size];
}

/*
 * Allocate and initialise @vq with @size entries (a power of two, 1..VQ_MAX_SIZE) for the
 * device's queue @index. With @indirect_max > 1 (the device offered INDIRECT_DESC), chains of
 * 2..@indirect_max pieces take a single ring slot, so a queue holds @size requests whatever
 * their shape. 0, -EINVAL, -ENOMEM.
 */
#define VQ_MAX_INDIRECT 256 /* entries of one indirect table (virtio-blk: 2 + seg_max 254) */
int vq_init(struct vq *vq, uint16_t index, uint16_t size, unsigned indirect_max);
/* Free the memory. The device must be reset first (it may still read the rings). */
void vq_fini(struct vq *vq);

/* Free descriptors (a chain of n pieces needs n, or 1 when it goes indirect). */
static inline unsigned vq_num_free(const struct vq *vq)
{
	return vq->num_free;
}

/* Descriptors a chain of @n pieces takes. */
static inline unsigned vq_descs_needed(const struct vq *vq, unsigned n)
{
	return (vq->indirect && n > 1 && n <= vq->indirect_max) ? 1 : n;
}

/*
 * Place the chain @bufs[0..n_out+n_in) and make it available to the device, tagged with
 * @token (not NULL). The device is not notified: call vq_kick() after a batch. 0, -EINVAL
 * for an empty chain or a NULL token, -EAGAIN when too few descriptors are free.
 */
int vq_add(struct vq *vq, const struct vq_buf *bufs, unsigned n_out, unsigned n_in, void *token);
/*
 * Ring the doorbell once for every chain added since the last vq_kick(), unless the device
 * said it does not need it: with EVENT_IDX, when its avail_event is not among the indices
 * added since then; without, when it sets VRING_USED_F_NO_NOTIFY (QEMU does while it is
 * processing the queue). Nothing added since the last kick: nothing to do. Drivers add during
 * a main-loop pass and kick once at its end (or when the ring is full), so one doorbell covers
 * a batch.
 */
void vq_kick(struct vq *vq);
/* True when chains were added since the last vq_kick(): a kick is owed. */
static inline bool vq_kick_pending(const struct vq *vq)
{
	return vq->avail_idx != vq->kicked_idx;
}
/* True when the device has finished a chain we have not taken back yet. */
bool vq_has_used(const struct vq *vq);
/*
 * Take back the next finished chain: 0 with its token and the length the device wrote,
 * -EAGAIN when none is finished, -EIO when the device reported a chain that is not in flight
 * or more chains than the queue holds (a broken device: reset it).
 */
int vq_get_used(struct vq *vq, void **token, uint32_t *len);
/*
 * Interrupts around an idle sleep (boot/irq.c). The queue starts with VRING_AVAIL_F_NO_INTERRUPT
 * set: while the main loop polls, an interrupt would only cost the device work. Before the CPU
 * halts, vq_irq_enable() clears the flag and then looks at used->idx again: true means a chain
 * finished before the device could have seen the flag, so the caller must poll instead of
 * sleeping (the device notifies only for completions after it reads the cleared flag, Linux's
 * virtqueue_enable_cb). vq_irq_disable() sets the flag again after the wake-up. Without
 * VIRTIO_F_EVENT_IDX the flag is all the device looks at; with it the device ignores the flag
 * (§2.7.10) and interrupts when used->idx passes used_event, so vq_irq_enable() sets
 * used_event to the next entry we have not consumed (an interrupt for the next completion) and,
 * while disabled, used_event is kept one behind our consumer (last_used - 1): the device would
 * have to finish 65,535 more chains to pass it, which the ring's size forbids.
 */
bool vq_irq_enable(struct vq *vq);
void vq_irq_disable(struct vq *vq);
/*
 * After a device reset: take back one chain that is still outstanding and return its token,
 * or NULL when none is left. The device must be stopped, or it could still write the buffer.
 */
void *vq_detach(struct vq *vq);

#endif
