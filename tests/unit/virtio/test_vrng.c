/* SPDX-License-Identifier: MIT */
/*
 * The virtio-rng driver on the host against a device double: probe (no device features,
 * one request queue), a request is one device-writable descriptor of a bounded size and the
 * bytes come back; the ring wraps; a device that returns 0 bytes; a device that never
 * answers (bounded wait, reset, dead); a device that claims more than it was given; failed
 * resets and refused features.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/plat.h"
#include "core/base/util.h"
#include "drivers/virtio-rng/vrng.h"
#include "tests/support/harness.h"
#include "tests/support/vdev_double.h"

enum rng_mode { RNG_FILL, RNG_EMPTY, RNG_SILENT, RNG_SHORT, RNG_OVERCLAIM };

struct rngdouble {
	struct vdd d;
	enum rng_mode mode;
	uint8_t next;
	unsigned popped;
	struct vdd_chain last;
	bool bad_chain;
};

static void rd_notify(struct vdd *d, unsigned qi)
{
	struct rngdouble *rd = (struct rngdouble *)d;
	struct vdd_chain c;
	int r;

	if (qi != 0) {
		rd->bad_chain = true;
		return;
	}
	while ((r = vdd_pop(&d->q[0], &c)) == 1) {
		uint8_t *p = (uint8_t *)(uintptr_t)c.seg[0].addr;
		uint32_t n = c.seg[0].len;

		rd->popped++;
		rd->last = c;
		if (c.n != 1 || !c.seg[0].write)
			rd->bad_chain = true;
		switch (rd->mode) {
		case RNG_SILENT:
			continue; /* never finished */
		case RNG_EMPTY:
			n = 0;
			break;
		case RNG_SHORT:
			n = n > 3 ? 3 : n;
			break;
		case RNG_OVERCLAIM:
			n = c.seg[0].len + 1;
			break;
		case RNG_FILL:
			break;
		}
		for (uint32_t i = 0; i < n && i < c.seg[0].len; i++)
			p[i] = rd->next++;
		vdd_push(&d->q[0], c.head, n);
	}
	if (r < 0)
		rd->bad_chain = true;
}

static struct rngdouble *rd_new(uint64_t features)
{
	struct rngdouble *rd = calloc(1, sizeof(*rd));

	vdd_init(&rd->d, features, 1, 64);
	rd->d.on_notify = rd_notify;
	return rd;
}

TEST(probe_and_read)
{
	struct rngdouble *rd =
	    rd_new(VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM) | 0x7);
	struct vrng *vr;
	uint8_t buf[64];
	char feat[64];

	ok_eq(vrng_create(&rd->d.vdev, &vr), 0);
	/* Device feature bits are not ours to accept (virtio-rng defines none). */
	ok_eq(rd->d.accepted,
	      VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM));
	ok(rd->d.status & VIRTIO_STATUS_DRIVER_OK);
	ok_eq(vr->vq.size, VRNG_QUEUE_SIZE);
	vrng_features_str(vr, feat, sizeof(feat));
	ok(strcmp(feat, "version-1 access-platform") == 0);

	ok_eq(vrng_read(vr, buf, 16), 16);
	ok_eq(rd->last.n, 1);
	ok(rd->last.seg[0].write);
	ok_eq(rd->last.seg[0].len, 16);
	for (unsigned i = 0; i < 16; i++)
		ok_eq(buf[i], i);
	ok_eq(vrng_read(vr, buf, 16), 16);
	ok_eq(buf[0], 16);
	ok_eq(vr->stats.bytes, 32);
	ok_eq(vr->stats.requests, 2);
	ok_eq(vrng_read(vr, buf, 0), 0);
	ok_eq(vrng_read(vr, NULL, 1), -EINVAL);
	ok(!rd->bad_chain);
	vrng_destroy(vr);
	ok_eq(rd->d.status, 0);
	free(rd);
}

TEST(requests_are_bounded_and_ring_wraps)
{
	struct rngdouble *rd = rd_new(VIRTIO_BIT(VIRTIO_F_VERSION_1));
	static uint8_t big[4096];
	struct vrng *vr;

	ok_eq(vrng_create(&rd->d.vdev, &vr), 0);
	/* A big ask is cut to VRNG_MAX_REQUEST per request. */
	ok_eq(vrng_read(vr, big, sizeof(big)), VRNG_MAX_REQUEST);
	ok_eq(rd->last.seg[0].len, VRNG_MAX_REQUEST);
	/* Many laps of the 4-entry ring: indices wrap, descriptors are reused. */
	for (unsigned i = 0; i < 1000; i++)
		if (!ok_eq(vrng_read(vr, big, 8), 8))
			break;
	ok_eq(vq_num_free(&vr->vq), vr->vq.size);
	ok_eq(rd->popped, 1001);
	/* Short answers are passed on as they are. */
	rd->mode = RNG_SHORT;
	ok_eq(vrng_read(vr, big, 100), 3);
	ok(!rd->bad_chain);
	vrng_destroy(vr);
	free(rd);
}

TEST(device_returns_zero_bytes)
{
	struct rngdouble *rd = rd_new(VIRTIO_BIT(VIRTIO_F_VERSION_1));
	uint8_t buf[32];
	struct vrng *vr;

	ok_eq(vrng_create(&rd->d.vdev, &vr), 0);
	rd->mode = RNG_EMPTY;
	ok_eq(vrng_read(vr, buf, sizeof(buf)), 0);
	ok_eq(vrng_read(vr, buf, sizeof(buf)), 0);
	ok_eq(vr->stats.empty, 2);
	ok_eq(vr->stats.bytes, 0);
	ok(!vr->dead);
	/* Not a failure: the device gives bytes again later. */
	rd->mode = RNG_FILL;
	ok_eq(vrng_read(vr, buf, sizeof(buf)), 32);
	vrng_destroy(vr);
	free(rd);
}

TEST(device_never_answers)
{
	struct rngdouble *rd = rd_new(VIRTIO_BIT(VIRTIO_F_VERSION_1));
	uint8_t buf[32];
	struct vrng *vr;
	uint64_t t0;

	ok_eq(vrng_create(&rd->d.vdev, &vr), 0);
	vr->timeout_ns = 50 * NSEC_PER_MSEC;
	rd->mode = RNG_SILENT;
	t0 = plat_now_ns();
	ok_eq(vrng_read(vr, buf, sizeof(buf)), -ETIMEDOUT);
	/* Bounded: about the timeout, not forever. */
	ok(plat_now_ns() - t0 >= 50 * NSEC_PER_MSEC);
	ok(plat_now_ns() - t0 < 5 * NSEC_PER_SEC);
	ok_eq(vr->stats.timeouts, 1);
	ok(vr->dead);
	ok_eq(vr->dead_rc, -ETIMEDOUT);
	/* The device was reset (no more DMA into the page) and the buffer taken back. */
	ok_eq(rd->d.status, 0);
	ok_eq(vq_num_free(&vr->vq), vr->vq.size);
	/* Dead from then on: no waiting again. */
	t0 = plat_now_ns();
	ok_eq(vrng_read(vr, buf, sizeof(buf)), -EIO);
	ok(plat_now_ns() - t0 < 10 * NSEC_PER_MSEC);
	vrng_destroy(vr);
	free(rd);
}

TEST(device_claims_more_than_the_buffer)
{
	struct rngdouble *rd = rd_new(VIRTIO_BIT(VIRTIO_F_VERSION_1));
	uint8_t buf[32];
	struct vrng *vr;

	ok_eq(vrng_create(&rd->d.vdev, &vr), 0);
	rd->mode = RNG_OVERCLAIM;
	ok_eq(vrng_read(vr, buf, 16), -EIO);
	ok(vr->dead);
	ok_eq(vr->dead_rc, -EIO);
	ok_eq(vr->stats.bytes, 0);
	vrng_destroy(vr);
	free(rd);
}

TEST(negotiation_errors)
{
	struct rngdouble *rd = rd_new(0); /* no VERSION_1: a legacy device */
	struct vrng *vr = NULL;

	ok_eq(vrng_create(&rd->d.vdev, &vr), -ENODEV);
	ok(rd->d.status & VIRTIO_STATUS_FAILED);
	ok(vr == NULL);
	free(rd);

	rd = rd_new(VIRTIO_BIT(VIRTIO_F_VERSION_1));
	rd->d.refuse_features = true;
	ok_eq(vrng_create(&rd->d.vdev, &vr), -EIO);
	ok(rd->d.status & VIRTIO_STATUS_FAILED || rd->d.status == 0);
	free(rd);

	rd = rd_new(VIRTIO_BIT(VIRTIO_F_VERSION_1));
	rd->d.reset_stuck = true;
	ok_eq(vrng_create(&rd->d.vdev, &vr), -ETIMEDOUT);
	free(rd);

	/* No request queue. */
	rd = rd_new(VIRTIO_BIT(VIRTIO_F_VERSION_1));
	rd->d.nq = 0;
	ok_eq(vrng_create(&rd->d.vdev, &vr), -ENOENT);
	ok_eq(rd->d.status, 0); /* failed, then reset */
	free(rd);
}
