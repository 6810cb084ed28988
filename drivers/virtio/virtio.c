/* SPDX-License-Identifier: MIT */
/*
 * The transport-independent part of bringing a virtio 1.x device up (§3.1.1) and down.
 * Every step goes through the transport ops, so the host tests run it against a fake.
 */
#include "drivers/virtio/virtio.h"
#include "drivers/virtio/virtqueue.h"

#include "core/base/plat.h"

#include <errno.h>

int virtio_negotiate(struct virtio_dev *vdev, uint64_t wanted)
{
	const struct virtio_transport_ops *ops = vdev->ops;
	uint64_t offered, accept;
	int rc;

	/* 1. Reset: OVMF resets at ExitBootServices, but never trust what came before us. */
	rc = ops->reset(vdev);
	if (rc) {
		plat_printf("virtio %s: reset did not finish (%d)\n", vdev->name, rc);
		return rc;
	}
	/* 2, 3. We noticed the device, and we know how to drive it. */
	ops->set_status(vdev, VIRTIO_STATUS_ACKNOWLEDGE);
	ops->set_status(vdev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);

	/* 4. Features: ours that are offered, plus the two transport bits we must handle. */
	offered = ops->get_features(vdev);
	if (!(offered & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
		plat_printf("virtio %s: VERSION_1 not offered (legacy device)\n", vdev->name);
		rc = -ENODEV;
		goto err;
	}
	accept = offered & wanted;
	accept |= VIRTIO_BIT(VIRTIO_F_VERSION_1);
	/*
	 * ACCESS_PLATFORM: the device goes through the platform's DMA translation and honours
	 * bus mastering. Identity mapping means no translation for us, and we set bus mastering
	 * ourselves, so accepting it costs nothing; refusing it would fail FEATURES_OK (§6.1).
	 */
	accept |= offered & VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM);
	/*
	 * EVENT_IDX: every queue is a struct vq, which implements it both ways (virtqueue.h), and
	 * it lets the device say precisely which addition it wants a doorbell for.
	 */
	accept |= offered & VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
	/* Never anything the device did not offer, and never the packed ring (not written). */
	accept &= offered & ~VIRTIO_BIT(VIRTIO_F_RING_PACKED);
	ops->set_features(vdev, accept);

	/* 5, 6. The device confirms it can work with that subset, or clears FEATURES_OK. */
	ops->set_status(vdev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				  VIRTIO_STATUS_FEATURES_OK);
	if (!(ops->get_status(vdev) & VIRTIO_STATUS_FEATURES_OK)) {
		plat_printf("virtio %s: device refused features %#llx\n", vdev->name,
			    (unsigned long long)accept);
		rc = -EIO;
		goto err;
	}
	vdev->features = accept;
	return 0;

err:
	virtio_fail(vdev);
	return rc;
}

void virtio_ready(struct virtio_dev *vdev)
{
	/* 8. Queues are set up; from here the device may read them. */
	vdev->ops->set_status(vdev, vdev->ops->get_status(vdev) | VIRTIO_STATUS_DRIVER_OK);
}

void virtio_fail(struct virtio_dev *vdev)
{
	vdev->ops->set_status(vdev, vdev->ops->get_status(vdev) | VIRTIO_STATUS_FAILED);
}

int virtio_stop(struct virtio_dev *vdev)
{
	return vdev->ops->reset(vdev);
}

int virtio_setup_queue(struct virtio_dev *vdev, struct vq *vq, uint16_t index, uint16_t want,
		       unsigned indirect_max)
{
	uint16_t max = vdev->ops->queue_max_size(vdev, index);
	uint16_t size = 1;
	int rc;

	if (max == 0)
		return -ENOENT;
	if (want > max)
		want = max;
	/* Split rings need a power of two; a smaller size than the device's is allowed (§4.1.4.3). */
	while ((uint32_t)size * 2 <= want)
		size = (uint16_t)(size * 2);
	if (!virtio_has(vdev, VIRTIO_F_INDIRECT_DESC))
		indirect_max = 0;
	rc = vq_init(vq, index, size, indirect_max);
	if (rc)
		return rc;
	vq->priv = vdev;
	vq->event_idx = virtio_has(vdev, VIRTIO_F_EVENT_IDX);
	rc = vdev->ops->enable_queue(vdev, vq);
	if (rc)
		vq_fini(vq);
	return rc;
}
