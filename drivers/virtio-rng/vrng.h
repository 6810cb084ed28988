/* SPDX-License-Identifier: MIT */
/*
 * virtio-rng, the entropy device (virtio 1.1 §5.4; device type 4, modern PCI id 0x1044): one
 * request queue; the driver posts device-writable buffers and the device fills them with
 * random bytes from its host (QEMU: the host's getrandom()). No feature bits, no
 * configuration space.
 *
 * Polled and synchronous: vrng_read() posts one buffer of at most VRNG_MAX_REQUEST bytes,
 * rings the doorbell and polls for the completion for at most timeout_ns. The device may
 * return fewer bytes than asked, or none (§5.4.6.2: it writes what it has); the caller asks
 * again. A device that does not answer in time is reset (so it can no longer write into our
 * buffer) and the driver is dead from then on: its user carries on with the other sources.
 *
 * The bytes are what the host gives. The entropy pool (core/base/entropy.h) mixes them with
 * RDSEED/RDRAND through its DRBG; nothing uses them raw.
 */
#ifndef DRIVERS_VIRTIO_RNG_VRNG_H
#define DRIVERS_VIRTIO_RNG_VRNG_H

#include "core/base/util.h"
#include "drivers/virtio/virtio.h"
#include "drivers/virtio/virtqueue.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VRNG_QUEUE_SIZE	 4   /* one request in flight at a time: a small ring is enough */
#define VRNG_MAX_REQUEST 256 /* bytes per request: one bounded wait buys at most this */
/* QEMU answers in microseconds; the rest is margin for a loaded host. */
#define VRNG_TIMEOUT_NS (2 * NSEC_PER_SEC)
#define VRNG_REQUESTQ	0

struct vrng_stats {
	uint64_t requests; /* buffers the device finished */
	uint64_t bytes;	   /* random bytes it delivered */
	uint64_t empty;	   /* requests it finished with 0 bytes */
	uint64_t timeouts; /* requests it did not finish in time (the driver is dead after one) */
};

struct vrng {
	struct virtio_dev *vdev;
	struct vq vq;
	char name[24];
	uint8_t *buf; /* one page of DMA memory, device-writable while a request is out */
	uint64_t buf_bus;
	bool dead;
	int dead_rc;	     /* why: -ETIMEDOUT (no answer), -EIO (broken ring or length) */
	uint64_t timeout_ns; /* VRNG_TIMEOUT_NS; tests shorten it */
	struct vrng_stats stats;
};

/*
 * Drive the virtio-rng device @vdev: negotiate (no device features; VERSION_1 required), set
 * up the request queue, DRIVER_OK. 0 and *out, or -ENODEV (legacy device), -EIO (features
 * refused), -ETIMEDOUT (reset did not finish), -ENOENT (no request queue), -ENOMEM. On error
 * the device is left FAILED and reset.
 */
int vrng_create(struct virtio_dev *vdev, struct vrng **out);
/* Reset the device and free everything (keeps the memory if the reset fails). */
void vrng_destroy(struct vrng *vr);

/*
 * Ask the device for min(@len, VRNG_MAX_REQUEST) random bytes into @buf and wait (bounded)
 * for them: the number delivered, 0..that (0: the device had none; ask again later);
 * -ETIMEDOUT when it did not answer within timeout_ns (the device is reset and the driver
 * dead); -EIO when the device is dead or broke the protocol (a length beyond the buffer, a
 * completion for nothing we posted); -EINVAL for @buf NULL.
 */
int vrng_read(struct vrng *vr, void *buf, size_t len);

/* The negotiated features as words ("version-1 access-platform") into @buf. */
void vrng_features_str(const struct vrng *vr, char *buf, unsigned len);

#endif
