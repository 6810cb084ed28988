/* SPDX-License-Identifier: MIT */
/*
 * The split virtqueue against a device played by the test (vdev_double.c): chains arrive on
 * the device exactly as added (direct and indirect), completions come back in any order,
 * indices wrap at 65536, the doorbell honours NO_NOTIFY or (EVENT_IDX) avail_event, one kick
 * covers a batch, used_event arms and disarms interrupts, a lying device is caught, and the
 * transport-independent bring-up negotiates as §3.1.1 says.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "drivers/virtio/virtqueue.h"
#include "tests/support/harness.h"
#include "tests/support/vdev_double.h"

static unsigned notified;

static void count_notify(struct vq *vq)
{
	(void)vq;
	notified++;
}

static struct vdd_queue devq(struct vq *vq)
{
	struct vdd_queue q = { .vq = vq };

	return q;
}

/* Tokens are pointers: addresses in this array, so a test can tell them apart. */
static char tokens[1024];

TEST(init_rejects_bad_sizes)
{
	struct vq vq;

	ok_eq(vq_init(&vq, 0, 0, 0), -EINVAL);
	ok_eq(vq_init(&vq, 0, 3, 0), -EINVAL);
	ok_eq(vq_init(&vq, 0, 256, 1), -EINVAL); /* an indirect table of one makes no sense */
	ok_eq(vq_init(&vq, 0, 256, 0), 0);
	ok_eq(vq.num_free, 256);
	ok_eq(vq_read16(&vq.avail->flags), VRING_AVAIL_F_NO_INTERRUPT);
	/* Alignment the spec requires: descriptors 16, available 2, used 4. */
	ok(vq.desc_bus % 16 == 0 && vq.avail_bus % 2 == 0 && vq.used_bus % 4 == 0);
	vq_fini(&vq);
}

TEST(chain_arrives_as_added)
{
	struct vq vq;
	struct vdd_queue q;
	struct vdd_chain c;
	struct vq_buf b[3] = { { 0x1000, 16 }, { 0x2000, 4096 }, { 0x3000, 1 } };
	void *t;
	uint32_t len;

	ok_eq(vq_init(&vq, 0, 8, 0), 0);
	vq.notify = count_notify;
	q = devq(&vq);
	ok_eq(vq_add(&vq, b, 1, 2, &tokens[1]), 0);
	ok_eq(vq.num_free, 5);
	ok_eq(vdd_pop(&q, &c), 1);
	ok_eq(c.n, 3);
	ok(!c.indirect);
	ok(c.seg[0].addr == 0x1000 && c.seg[0].len == 16 && !c.seg[0].write);
	ok(c.seg[1].addr == 0x2000 && c.seg[1].len == 4096 && c.seg[1].write);
	ok(c.seg[2].addr == 0x3000 && c.seg[2].len == 1 && c.seg[2].write);
	ok_eq(vdd_pop(&q, &c), 0);
	ok(!vq_has_used(&vq));
	ok_eq(vq_get_used(&vq, &t, &len), -EAGAIN);
	vdd_push(&q, c.head, 4097);
	ok(vq_has_used(&vq));
	ok_eq(vq_get_used(&vq, &t, &len), 0);
	ok(t == &tokens[1]);
	ok_eq(len, 4097);
	ok_eq(vq.num_free, 8);
	ok_eq(vq_add(&vq, b, 0, 0, &tokens[1]), -EINVAL);
	ok_eq(vq_add(&vq, b, 1, 0, NULL), -EINVAL);
	vq_fini(&vq);
}

/* The idle halt's arming (boot/irq.h): the flag flips, and a completion the last poll did not
 * see makes vq_irq_enable() say "do not sleep". */
TEST(irq_enable_reports_a_pending_completion)
{
	struct vq vq;
	struct vdd_queue q;
	struct vdd_chain c;
	struct vq_buf b = { 0x1000, 512 };
	void *t;

	ok_eq(vq_init(&vq, 0, 8, 0), 0);
	vq.notify = count_notify;
	q = devq(&vq);
	ok(!vq_irq_enable(&vq)); /* nothing in flight: safe to halt */
	ok_eq(vq_read16(&vq.avail->flags), 0);
	vq_irq_disable(&vq);
	ok_eq(vq_read16(&vq.avail->flags), VRING_AVAIL_F_NO_INTERRUPT);

	ok_eq(vq_add(&vq, &b, 0, 1, &tokens[2]), 0);
	ok_eq(vdd_pop(&q, &c), 1);
	vdd_push(&q, c.head, 512); /* finished while the loop was not looking */
	ok(vq_irq_enable(&vq));
	ok_eq(vq_read16(&vq.avail->flags), 0);
	vq_irq_disable(&vq);
	ok_eq(vq_get_used(&vq, &t, NULL), 0);
	ok(!vq_irq_enable(&vq));
	vq_irq_disable(&vq);
	vq_fini(&vq);
}

TEST(indirect_chain_takes_one_slot)
{
	struct vq vq;
	struct vdd_queue q;
	struct vdd_chain c;
	struct vq_buf b[5] = {
		{ 0x10, 16 }, { 0x20, 512 }, { 0x30, 512 }, { 0x40, 512 }, { 0x50, 1 }
	};
	void *t;

	ok_eq(vq_init(&vq, 0, 4, 4), 0);
	vq.notify = count_notify;
	q = devq(&vq);
	/* Four chains of three fill a four-entry queue when each takes one slot. */
	for (unsigned i = 0; i < 4; i++)
		ok_eq(vq_add(&vq, b, 1, 2, &tokens[i]), 0);
	ok_eq(vq.num_free, 0);
	ok_eq(vq_add(&vq, b, 1, 0, &tokens[9]), -EAGAIN);
	for (unsigned i = 0; i < 4; i++) {
		ok_eq(vdd_pop(&q, &c), 1);
		ok(c.indirect);
		ok_eq(c.n, 3);
		ok(c.seg[0].addr == 0x10 && !c.seg[0].write && c.seg[2].write);
	}
	for (unsigned i = 0; i < 4; i++) {
		vdd_push(&q, c.head, 0);
		c.head = (uint16_t)((c.head + 1) & 3);
	}
	for (unsigned i = 0; i < 4; i++)
		ok_eq(vq_get_used(&vq, &t, NULL), 0);
	ok_eq(vq.num_free, 4);
	/* Longer than the indirect table: falls back to a direct chain of 5 (too many here). */
	ok_eq(vq_add(&vq, b, 1, 4, &tokens[0]), -EAGAIN);
	ok_eq(vq_add(&vq, b, 1, 3, &tokens[0]), 0);
	ok_eq(vq.num_free, 3);
	vq_fini(&vq);
}

TEST(full_queue_out_of_order_and_wraparound)
{
	uint64_t seed = test_seed();
	struct vq vq;
	struct vdd_queue q;
	struct vdd_chain c[64];
	unsigned outstanding[64];
	unsigned rounds = 0;

	ok_eq(vq_init(&vq, 0, 64, 0), 0);
	vq.notify = count_notify;
	q = devq(&vq);
	/* 2000 rounds of 32 two-piece chains pass 65536 on both indices. */
	for (rounds = 0; rounds < 2100 && !test_failed(); rounds++) {
		struct vq_buf b[2] = { { 0x1000, 16 }, { 0x2000, 1 } };
		unsigned n = 0;

		for (unsigned i = 0; i < 32; i++)
			if (!ok_eq(vq_add(&vq, b, 1, 1, &tokens[i]), 0))
				return;
		ok_eq(vq_add(&vq, b, 1, 1, &tokens[99]), -EAGAIN);
		while (vdd_pop(&q, &c[n]) == 1)
			n++;
		ok_eq(n, 32);
		/* Complete in a random order; the driver must hand back each token once. */
		for (unsigned i = 0; i < n; i++)
			outstanding[i] = i;
		for (unsigned i = n; i > 1; i--) {
			unsigned j = (unsigned)(test_rand(&seed) % i), x = outstanding[i - 1];

			outstanding[i - 1] = outstanding[j];
			outstanding[j] = x;
		}
		for (unsigned i = 0; i < n; i++)
			vdd_push(&q, c[outstanding[i]].head, 0);
		for (unsigned i = 0; i < n; i++) {
			void *t;

			if (!ok_eq(vq_get_used(&vq, &t, NULL), 0))
				return;
			/* Completions come back in the device's order. */
			ok(t != NULL);
		}
		ok_eq(vq.num_free, 64);
	}
	ok(vq.avail_idx == (uint16_t)(rounds * 32));
	ok(rounds * 32 > 65536);
	vq_fini(&vq);
}

TEST(random_model_mixed_chains)
{
	uint64_t seed = test_seed();
	struct vq vq;
	struct vdd_queue q;
	struct vdd_chain held[128];
	unsigned nheld = 0;
	bool in_flight[256] = { false };
	unsigned descs_in_flight[256] = { 0 };
	unsigned used_descs = 0;

	ok_eq(vq_init(&vq, 3, 128, 6), 0);
	vq.notify = count_notify;
	q = devq(&vq);
	for (unsigned step = 0; step < 20000 && !test_failed(); step++) {
		unsigned r = (unsigned)(test_rand(&seed) % 3);

		if (r == 0) { /* driver adds a chain of 1..8 pieces */
			unsigned n = 1 + (unsigned)(test_rand(&seed) % 8), k;
			unsigned n_out = (unsigned)(test_rand(&seed) % (n + 1));
			struct vq_buf b[8];
			int rc;

			for (k = 0; k < 256 && in_flight[k]; k++)
				;
			if (k == 256)
				continue;
			for (unsigned i = 0; i < n; i++) {
				b[i].addr = ((uint64_t)k << 16) | i;
				b[i].len = n;
			}
			rc = vq_add(&vq, b, n_out, n - n_out, &tokens[k]);
			if (vq_descs_needed(&vq, n) > 128 - used_descs) {
				ok_eq(rc, -EAGAIN);
				continue;
			}
			if (!ok_eq(rc, 0))
				return;
			in_flight[k] = true;
			descs_in_flight[k] = vq_descs_needed(&vq, n);
			used_descs += descs_in_flight[k];
		} else if (r == 1) { /* device takes what is available */
			while (nheld < 128 && vdd_pop(&q, &held[nheld]) == 1) {
				struct vdd_chain *c = &held[nheld];
				unsigned k = (unsigned)(c->seg[0].addr >> 16);

				ok_eq(c->n, c->seg[0].len);
				for (unsigned i = 0; i < c->n; i++)
					ok_eq(c->seg[i].addr & 0xffff, i);
				ok(in_flight[k]);
				nheld++;
			}
		} else if (nheld) { /* device finishes one at random */
			unsigned j = (unsigned)(test_rand(&seed) % nheld);
			unsigned k = (unsigned)(held[j].seg[0].addr >> 16);
			void *t;

			vdd_push(&q, held[j].head, 0);
			held[j] = held[--nheld];
			if (!ok_eq(vq_get_used(&vq, &t, NULL), 0))
				return;
			ok(t == &tokens[k]);
			in_flight[k] = false;
			used_descs -= descs_in_flight[k];
		}
		ok_eq(vq.num_free, 128 - used_descs);
	}
	vq_fini(&vq);
}

TEST(kick_honours_no_notify)
{
	struct vq vq;
	struct vq_buf b = { 0x1000, 1 };

	ok_eq(vq_init(&vq, 0, 8, 0), 0);
	vq.notify = count_notify;
	notified = 0;
	ok_eq(vq_add(&vq, &b, 1, 0, &tokens[0]), 0);
	vq_kick(&vq);
	ok_eq(notified, 1);
	vq_write16(&vq.used->flags, VRING_USED_F_NO_NOTIFY);
	ok_eq(vq_add(&vq, &b, 1, 0, &tokens[1]), 0);
	vq_kick(&vq);
	ok_eq(notified, 1);
	ok_eq(vq.kicks_skipped, 1);
	vq_fini(&vq);
}

/* ---- Notification suppression (§2.7.10) ----------------------------------------------------- */

/* vring_need_event(): "did the index move past @event", modulo 65536. */
TEST(event_index_math_and_wraparound)
{
	/* Moved 0 -> 3: entries 0, 1, 2 were added; events 0..2 are passed, 3 is not. */
	ok(vring_need_event(0, 3, 0));
	ok(vring_need_event(2, 3, 0));
	ok(!vring_need_event(3, 3, 0));
	ok(!vring_need_event(0xffff, 3, 0)); /* behind the old index: passed long ago */
	/* Nothing moved: never. */
	ok(!vring_need_event(5, 5, 5));
	/* Across the wrap: 65534 -> 2 added 65534, 65535, 0, 1. */
	ok(vring_need_event(65534, 2, 65534));
	ok(vring_need_event(65535, 2, 65534));
	ok(vring_need_event(0, 2, 65534));
	ok(vring_need_event(1, 2, 65534));
	ok(!vring_need_event(2, 2, 65534));
	ok(!vring_need_event(65533, 2, 65534));
	/* A whole lap minus one moved: every event but the new index itself. */
	ok(vring_need_event(100, 99, 100));
	ok(!vring_need_event(99, 99, 100));
}

/* Put both sides of a fresh queue at index @at, as if @at chains had come and gone. */
static void start_at(struct vq *vq, struct vdd_queue *q, uint16_t at)
{
	vq->avail_idx = vq->kicked_idx = vq->last_used = at;
	vq_write16(&vq->avail->idx, at);
	vq_write16(&vq->used->idx, at);
	q->last_avail = q->used_idx = at;
	vq_write16(vq_avail_event(vq), at);
}

/*
 * With EVENT_IDX the doorbell rings only when avail_event lies among the entries added since
 * the last kick, also across the 16-bit wrap; NO_NOTIFY is then ignored (§2.7.10: the driver
 * must ignore the flag), and a kick with nothing new rings nothing.
 */
TEST(event_index_kick_suppression)
{
	struct vq vq;
	struct vdd_queue q;
	struct vdd_chain c;
	struct vq_buf b = { 0x1000, 1 };
	void *t;

	ok_eq(vq_init(&vq, 0, 16, 0), 0);
	vq.notify = count_notify;
	vq.event_idx = true;
	q = devq(&vq);
	q.event_idx = true;
	start_at(&vq, &q, 65530);
	notified = 0;

	/* The device waits for entry 65530 (caught up): three additions, one doorbell. */
	for (unsigned i = 0; i < 3; i++)
		ok_eq(vq_add(&vq, &b, 1, 0, &tokens[i]), 0);
	vq_kick(&vq);
	ok_eq(notified, 1);
	vq_kick(&vq); /* nothing new */
	ok_eq(notified, 1);
	ok_eq(vq.kicks_skipped, 0);

	/* The device is busy with 65530 only (avail_event stays 65531): later ones ring nothing. */
	q.busy = true;
	ok_eq(vdd_pop(&q, &c), 1);
	vq_write16(vq_avail_event(&vq), 65531);
	ok_eq(vq_add(&vq, &b, 1, 0, &tokens[3]), 0); /* 65533 */
	vq_kick(&vq);
	ok_eq(notified, 1);
	ok_eq(vq.kicks_skipped, 1);

	/* NO_NOTIFY clear, the flag means nothing: avail_event decides. */
	vq_write16(&vq.used->flags, 0);
	ok_eq(vq_add(&vq, &b, 1, 0, &tokens[4]), 0); /* 65534 */
	vq_kick(&vq);
	ok_eq(notified, 1);

	/* The device catches up and asks for the next one, 65535: the batch 65535..1 crosses
	 * the wrap and contains it. */
	q.busy = false;
	while (vdd_pop(&q, &c) == 1)
		vdd_push(&q, c.head, 0);
	ok_eq(vq_read16(vq_avail_event(&vq)), 65535);
	for (unsigned i = 5; i < 8; i++)
		ok_eq(vq_add(&vq, &b, 1, 0, &tokens[i]), 0);
	ok_eq(vq.avail_idx, 2);
	vq_kick(&vq);
	ok_eq(notified, 2);

	/* After the wrap the device wants entry 5, and the driver adds 2, 3, 4: no doorbell;
	 * then 5: the doorbell. */
	vq_write16(vq_avail_event(&vq), 5);
	for (unsigned i = 8; i < 11; i++)
		ok_eq(vq_add(&vq, &b, 1, 0, &tokens[i]), 0);
	vq_kick(&vq);
	ok_eq(notified, 2);
	ok_eq(vq_add(&vq, &b, 1, 0, &tokens[11]), 0);
	vq_kick(&vq);
	ok_eq(notified, 3);
	while (vq_get_used(&vq, &t, NULL) == 0)
		;
	vq_fini(&vq);
}

/* Without EVENT_IDX: NO_NOTIFY, which QEMU sets while its thread works on the queue. */
TEST(no_notify_honoured_and_batch_kick_covers_every_chain)
{
	struct vq vq;
	struct vdd_queue q;
	struct vdd_chain c;
	struct vq_buf b = { 0x1000, 1 };
	unsigned got = 0;

	ok_eq(vq_init(&vq, 0, 64, 0), 0);
	vq.notify = count_notify;
	q = devq(&vq);
	notified = 0;
	for (unsigned i = 0; i < 40; i++)
		ok_eq(vq_add(&vq, &b, 1, 0, &tokens[i]), 0);
	ok(vq_kick_pending(&vq));
	vq_kick(&vq);
	ok_eq(notified, 1);
	ok(!vq_kick_pending(&vq));
	/* That one doorbell covers all 40: the device finds every one of them. */
	while (vdd_pop(&q, &c) == 1)
		got++;
	ok_eq(got, 40);
	vq_write16(&vq.used->flags, VRING_USED_F_NO_NOTIFY);
	ok_eq(vq_add(&vq, &b, 1, 0, &tokens[40]), 0);
	vq_kick(&vq);
	ok_eq(notified, 1);
	vq_write16(&vq.used->flags, 0);
	ok_eq(vq_add(&vq, &b, 1, 0, &tokens[41]), 0);
	vq_kick(&vq);
	ok_eq(notified, 2);
	vq_fini(&vq);
}

/*
 * Interrupts with EVENT_IDX: vq_irq_enable() asks for the next completion through used_event;
 * while disabled, the device never passes used_event, even over more than a whole 16-bit lap
 * of completions (the idle halt's wake-up must not become an interrupt storm, nor a lost one).
 */
TEST(event_index_interrupts_follow_irq_enable)
{
	struct vq vq;
	struct vdd_queue q;
	struct vdd_chain c;
	struct vq_buf b = { 0x1000, 1 };
	void *t;

	ok_eq(vq_init(&vq, 0, 8, 0), 0);
	vq.notify = count_notify;
	vq.event_idx = true;
	q = devq(&vq);
	q.event_idx = true;
	for (unsigned i = 0; i < 70000; i++) {
		ok_eq(vq_add(&vq, &b, 1, 0, &tokens[i % 8]), 0);
		vq_kick(&vq);
		ok_eq(vdd_pop(&q, &c), 1);
		vdd_push(&q, c.head, 0);
		ok_eq(vq_get_used(&vq, &t, NULL), 0);
	}
	ok_eq(q.interrupts, 0);
	/* Every addition was announced: the device always waited for the next one. */
	ok_eq(vq.kicks, 70000);

	/* Armed: the next completion interrupts. */
	ok(!vq_irq_enable(&vq));
	ok_eq(vq_read16(vq_used_event(&vq)), vq.last_used);
	ok_eq(vq_add(&vq, &b, 1, 0, &tokens[0]), 0);
	vq_kick(&vq);
	ok_eq(vdd_pop(&q, &c), 1);
	vdd_push(&q, c.head, 0);
	ok_eq(q.interrupts, 1);
	/* Disarmed: used_event one behind the consumer, so the next completion does not. */
	vq_irq_disable(&vq);
	ok_eq(vq_get_used(&vq, &t, NULL), 0);
	ok_eq(vq_add(&vq, &b, 1, 0, &tokens[1]), 0);
	vq_kick(&vq);
	ok_eq(vdd_pop(&q, &c), 1);
	vdd_push(&q, c.head, 0);
	ok_eq(q.interrupts, 1);
	/* A completion that arrived before arming is reported, so the caller does not halt. */
	ok(vq_irq_enable(&vq));
	vq_irq_disable(&vq);
	vq_fini(&vq);
}

TEST(lying_device_is_caught)
{
	struct vq vq;
	struct vdd_queue q;
	struct vq_buf b = { 0x1000, 1 };
	void *t;

	ok_eq(vq_init(&vq, 0, 8, 0), 0);
	vq.notify = count_notify;
	q = devq(&vq);
	ok_eq(vq_add(&vq, &b, 1, 0, &tokens[0]), 0);
	vdd_push(&q, 5, 0); /* never made available */
	ok_eq(vq_get_used(&vq, &t, NULL), -EIO);
	vdd_push(&q, 200, 0); /* beyond the table */
	ok_eq(vq_get_used(&vq, &t, NULL), -EIO);
	/* An index that runs more than a ring ahead. */
	vq_write16(&vq.used->idx, (uint16_t)(vq.last_used + 9));
	ok_eq(vq_get_used(&vq, &t, NULL), -EIO);
	vq_fini(&vq);
}

TEST(detach_returns_everything_outstanding)
{
	struct vq vq;
	struct vq_buf b[2] = { { 0x1000, 1 }, { 0x2000, 1 } };
	unsigned seen = 0;
	void *t;

	ok_eq(vq_init(&vq, 0, 16, 0), 0);
	for (unsigned i = 0; i < 5; i++)
		ok_eq(vq_add(&vq, b, 1, 1, &tokens[i]), 0);
	while ((t = vq_detach(&vq)) != NULL)
		seen |= 1u << ((char *)t - tokens);
	ok_eq(seen, 0x1f);
	ok_eq(vq.num_free, 16);
	vq_fini(&vq);
}

/* ---- Bring-up through the transport ops (drivers/virtio/virtio.c) -------------------------- */

TEST(negotiate_requires_version_1)
{
	struct vdd d;

	vdd_init(&d, VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC), 1, 8);
	ok_eq(virtio_negotiate(&d.vdev, ~0ull), -ENODEV);
	ok(d.status & VIRTIO_STATUS_FAILED);
}

TEST(negotiate_accepts_offered_subset_and_access_platform)
{
	struct vdd d;
	uint64_t offered = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM) |
			   VIRTIO_BIT(VIRTIO_F_RING_PACKED) | VIRTIO_BIT(9) | VIRTIO_BIT(3);

	vdd_init(&d, offered, 1, 8);
	ok_eq(virtio_negotiate(&d.vdev, VIRTIO_BIT(9) | VIRTIO_BIT(13)), 0);
	ok_eq(d.resets, 1);
	ok_eq(d.accepted, VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM) |
			      VIRTIO_BIT(9));
	/* EVENT_IDX, when offered, is taken whatever the driver asked for: every queue does it. */
	vdd_init(&d, offered | VIRTIO_BIT(VIRTIO_F_EVENT_IDX), 1, 8);
	ok_eq(virtio_negotiate(&d.vdev, VIRTIO_BIT(9)), 0);
	ok(d.accepted & VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
	ok_eq(d.status,
	      VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	ok(d.vdev.features == d.accepted);
	virtio_ready(&d.vdev);
	ok(d.status & VIRTIO_STATUS_DRIVER_OK);
}

TEST(negotiate_reports_refused_features_and_stuck_reset)
{
	struct vdd d;

	vdd_init(&d, VIRTIO_BIT(VIRTIO_F_VERSION_1), 1, 8);
	d.refuse_features = true;
	ok_eq(virtio_negotiate(&d.vdev, 0), -EIO);
	ok(d.status & VIRTIO_STATUS_FAILED);
	vdd_init(&d, VIRTIO_BIT(VIRTIO_F_VERSION_1), 1, 8);
	d.reset_stuck = true;
	ok_eq(virtio_negotiate(&d.vdev, 0), -ETIMEDOUT);
}

TEST(setup_queue_rounds_to_power_of_two)
{
	struct vdd d;
	struct vq vq;

	vdd_init(&d, VIRTIO_BIT(VIRTIO_F_VERSION_1), 2, 200);
	ok_eq(virtio_negotiate(&d.vdev, 0), 0);
	ok_eq(virtio_setup_queue(&d.vdev, &vq, 1, 256, 4), 0);
	ok_eq(vq.size, 128);
	ok(vq.indirect == NULL); /* INDIRECT_DESC was not offered */
	ok(!vq.event_idx);	 /* nor EVENT_IDX */
	ok(d.q[1].vq == &vq);
	vq_fini(&vq);
	ok_eq(virtio_setup_queue(&d.vdev, &vq, 2, 256, 0), -ENOENT);
}
