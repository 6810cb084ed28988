/* SPDX-License-Identifier: MIT */
/*
 * Virtio 1.x device model shared by the drivers: status and feature bits, little-endian
 * helpers, and the transport ops table the drivers talk through (iPXE's virtio_operations,
 * SPDK's virtio_dev_ops). The modern PCI transport (virtio_pci.c) is the only real
 * implementation; host unit tests plug in a fake one, which is why nothing here includes
 * drivers/bus/pci.h.
 *
 * References: virtio 1.1 (OASIS csprd01) §2.1 status, §3.1.1 driver initialisation,
 * §6 reserved feature bits.
 */
#ifndef DRIVERS_VIRTIO_VIRTIO_H
#define DRIVERS_VIRTIO_VIRTIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Device status (§2.1) --------------------------------------------------------- */

#define VIRTIO_STATUS_ACKNOWLEDGE	 0x01
#define VIRTIO_STATUS_DRIVER		 0x02
#define VIRTIO_STATUS_DRIVER_OK		 0x04
#define VIRTIO_STATUS_FEATURES_OK	 0x08
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED		 0x80

/* ---- Reserved feature bits (§6), by bit number ------------------------------------- */

#define VIRTIO_F_INDIRECT_DESC	 28
#define VIRTIO_F_EVENT_IDX	 29
#define VIRTIO_F_VERSION_1	 32
#define VIRTIO_F_ACCESS_PLATFORM 33
#define VIRTIO_F_RING_PACKED	 34

#define VIRTIO_BIT(n) (1ull << (n))

/* ---- Little-endian fields (every virtio 1.x structure is little-endian) ------------- */

typedef uint16_t le16;
typedef uint32_t le32;
typedef uint64_t le64;

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define cpu_to_le16(x) ((le16)(x))
#define cpu_to_le32(x) ((le32)(x))
#define cpu_to_le64(x) ((le64)(x))
#define le16_to_cpu(x) ((uint16_t)(x))
#define le32_to_cpu(x) ((uint32_t)(x))
#define le64_to_cpu(x) ((uint64_t)(x))
#else
#define cpu_to_le16(x) __builtin_bswap16(x)
#define cpu_to_le32(x) __builtin_bswap32(x)
#define cpu_to_le64(x) __builtin_bswap64(x)
#define le16_to_cpu(x) __builtin_bswap16(x)
#define le32_to_cpu(x) __builtin_bswap32(x)
#define le64_to_cpu(x) __builtin_bswap64(x)
#endif

/*
 * The address a device uses for CPU memory @p. Both builds run identity-mapped (plat.h:
 * plat_dma_alloc's bus == va), so a caller's buffer can be handed to the device as is; this
 * is the one place to change should that ever stop being true.
 */
static inline uint64_t virtio_bus_addr(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

/* ---- Transport --------------------------------------------------------------------- */

struct vq;
struct virtio_dev;

struct virtio_transport_ops {
	/* Write 0 to the status and wait (bounded) until the device reads back 0. */
	int (*reset)(struct virtio_dev *vdev);
	uint8_t (*get_status)(struct virtio_dev *vdev);
	void (*set_status)(struct virtio_dev *vdev, uint8_t status);
	/* All 64 bits the device offers / the driver accepts. */
	uint64_t (*get_features)(struct virtio_dev *vdev);
	void (*set_features)(struct virtio_dev *vdev, uint64_t features);
	/*
	 * Copy @len bytes of device-specific configuration at @off into @buf, consistently
	 * (retrying on a config generation change). 0, -EINVAL beyond the config window, or
	 * -ETIMEDOUT if the generation never settles.
	 */
	int (*read_config)(struct virtio_dev *vdev, unsigned off, void *buf, unsigned len);
	/* Number of queues the device has. */
	unsigned (*num_queues)(struct virtio_dev *vdev);
	/* Largest size of queue @index (0: the queue does not exist). */
	uint16_t (*queue_max_size)(struct virtio_dev *vdev, uint16_t index);
	/*
	 * Tell the device where @vq's rings are (vq->size entries) and enable it. Called between
	 * FEATURES_OK and DRIVER_OK. 0 or -errno.
	 */
	int (*enable_queue)(struct virtio_dev *vdev, struct vq *vq);
	/* The doorbell is not here: enable_queue sets vq->notify (see virtqueue.h). */
};

/* One virtio device as the drivers see it; transports embed it. */
struct virtio_dev {
	const struct virtio_transport_ops *ops;
	char name[16];	   /* for messages: "00:04.0" */
	uint64_t features; /* negotiated (valid after virtio_negotiate()) */
};

static inline bool virtio_has(const struct virtio_dev *vdev, unsigned bit)
{
	return (vdev->features & VIRTIO_BIT(bit)) != 0;
}

/*
 * Steps 1-6 of §3.1.1: reset, ACKNOWLEDGE, DRIVER, read the offered features, accept
 * (offered & @wanted) plus VERSION_1, ACCESS_PLATFORM and EVENT_IDX when offered, FEATURES_OK, and
 * check that the device kept FEATURES_OK. Leaves the device ready for queue setup.
 * -ENODEV when VERSION_1 is not offered (a legacy-only device), -EIO when the device refuses
 * the features, -ETIMEDOUT when the reset does not finish. On error the status is FAILED.
 */
int virtio_negotiate(struct virtio_dev *vdev, uint64_t wanted);
/* The last step: DRIVER_OK (the device may now use the queues). */
void virtio_ready(struct virtio_dev *vdev);
/* Give up on the device: set FAILED so it knows we will not drive it. */
void virtio_fail(struct virtio_dev *vdev);
/* Reset and leave the device stopped (no more DMA into our memory once it returns 0). */
int virtio_stop(struct virtio_dev *vdev);

/*
 * Set up queue @index: pick min(device max, @want) rounded down to a power of two, allocate
 * @vq (see virtqueue.h; @indirect_max as vq_init), program and enable it. 0, -ENOENT when the
 * queue does not exist, -ENOMEM.
 */
int virtio_setup_queue(struct virtio_dev *vdev, struct vq *vq, uint16_t index, uint16_t want,
		       unsigned indirect_max);

#endif
