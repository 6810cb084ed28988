/* SPDX-License-Identifier: MIT */
/*
 * virtio-rng (virtio 1.1 §5.4): queue 0 takes device-writable buffers and gives them back
 * filled with random bytes. One buffer, one request at a time, polled with a deadline.
 */
#include "drivers/virtio-rng/vrng.h"

#include "core/base/plat.h"
#include "core/base/sha256.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(VRNG_MAX_REQUEST <= PLAT_PAGE_SIZE, "one request fits the DMA page");

/* Stop the device for good: after the reset it no longer writes into our page. */
static void vrng_kill(struct vrng *vr, int why, const char *what)
{
	plat_printf("%s: %s; stopping it\n", vr->name, what);
	vr->dead = true;
	vr->dead_rc = why;
	if (virtio_stop(vr->vdev) == 0)
		while (vq_detach(&vr->vq))
			;
}

int vrng_read(struct vrng *vr, void *buf, size_t len)
{
	struct vq_buf b;
	uint64_t deadline;
	uint32_t got;
	void *tok;
	int rc;

	if (!buf)
		return -EINVAL;
	if (vr->dead)
		return -EIO;
	if (len == 0)
		return 0;
	if (len > VRNG_MAX_REQUEST)
		len = VRNG_MAX_REQUEST;
	b.addr = vr->buf_bus;
	b.len = (uint32_t)len;
	/* One device-writable descriptor (§5.4.6.1: the driver supplies writable buffers). */
	rc = vq_add(&vr->vq, &b, 0, 1, vr->buf);
	if (rc) {
		/* Only one request is ever out, and it is always taken back: a full ring means
		 * our bookkeeping and the device disagree. */
		vrng_kill(vr, -EIO, "request queue unexpectedly full");
		return -EIO;
	}
	vq_kick(&vr->vq);
	deadline = plat_now_ns() + vr->timeout_ns;
	while ((rc = vq_get_used(&vr->vq, &tok, &got)) == -EAGAIN) {
		if (plat_now_ns() > deadline) {
			vr->stats.timeouts++;
			vrng_kill(vr, -ETIMEDOUT, "no answer within the timeout");
			return -ETIMEDOUT;
		}
	}
	if (rc || tok != vr->buf || got > len) {
		vrng_kill(vr, -EIO, rc ? "device broke the request ring" : "device wrote too much");
		return -EIO;
	}
	vr->stats.requests++;
	if (got == 0) {
		vr->stats.empty++;
		return 0;
	}
	/* vq_get_used() ordered the device's writes before this read (its read barrier). */
	memcpy(buf, vr->buf, got);
	/* The page held key material-to-be; do not leave a copy where the next request lands. */
	secure_wipe(vr->buf, got);
	vr->stats.bytes += got;
	return (int)got;
}

static void vrng_free(struct vrng *vr)
{
	if (vr->buf)
		plat_dma_free(vr->buf, 1);
	vq_fini(&vr->vq);
	free(vr);
}

int vrng_create(struct virtio_dev *vdev, struct vrng **out)
{
	struct vrng *vr;
	void *page;
	int rc;

	vr = calloc(1, sizeof(*vr));
	if (!vr)
		return -ENOMEM;
	vr->vdev = vdev;
	vr->timeout_ns = VRNG_TIMEOUT_NS;
	snprintf(vr->name, sizeof(vr->name), "vrng %s", vdev->name);

	/* §5.4.3: no device feature bits; only the transport's (VERSION_1, ACCESS_PLATFORM). */
	rc = virtio_negotiate(vdev, 0);
	if (rc)
		goto err_negotiate;
	rc = virtio_setup_queue(vdev, &vr->vq, VRNG_REQUESTQ, VRNG_QUEUE_SIZE, 0);
	if (rc)
		goto err_setup;
	rc = plat_dma_alloc(1, &page, &vr->buf_bus);
	if (rc)
		goto err_setup;
	vr->buf = page;
	virtio_ready(vdev);
	*out = vr;
	return 0;

err_setup:
	virtio_fail(vdev);
	virtio_stop(vdev);
err_negotiate:
	plat_printf("%s: not usable (%d)\n", vr->name, rc);
	vrng_free(vr);
	return rc;
}

void vrng_destroy(struct vrng *vr)
{
	if (!vr)
		return;
	if (!vr->dead && virtio_stop(vr->vdev)) {
		plat_printf("%s: reset failed; keeping its memory\n", vr->name);
		return;
	}
	if (vr->dead && vr->vq.num_free != vr->vq.size) {
		/* The kill's reset failed: the device may still own the page. */
		return;
	}
	vrng_free(vr);
}

void vrng_features_str(const struct vrng *vr, char *buf, unsigned len)
{
	snprintf(buf, len, "%s%s", virtio_has(vr->vdev, VIRTIO_F_VERSION_1) ? "version-1" : "",
		 virtio_has(vr->vdev, VIRTIO_F_ACCESS_PLATFORM) ? " access-platform" : "");
}
