/* SPDX-License-Identifier: MIT */
/*
 * Virtio modern PCI transport (virtio 1.1 §4.1). QEMU 7.2 with disable-legacy=on puts all
 * four structures in the 64-bit prefetchable BAR4 (common 0x0, ISR 0x1000, device 0x2000,
 * notify 0x3000, multiplier 4), but nothing here assumes that layout: the capability list
 * says where each structure is.
 */
#include "drivers/virtio/virtio_pci.h"
#include "drivers/virtio/mmio.h"
#include "drivers/virtio/virtqueue.h"

#include "drivers/bus/pci.h"
#include "core/base/plat.h"
#include "core/base/util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define VPCI_RESET_TIMEOUT_NS NSEC_PER_SEC /* QEMU resets at once */
#define VPCI_CONFIG_GEN_TRIES 100
#define COMMON(field)	      offsetof(struct virtio_pci_common_cfg, field)

static const struct virtio_transport_ops vpci_ops;

static struct vpci_dev *to_vpci(struct virtio_dev *vdev)
{
	return (struct vpci_dev *)vdev;
}

/* ---- Capability walk ------------------------------------------------------------------ */

/*
 * Address of the structure described by the capability at @cap, after checking that it lies
 * inside an assigned memory BAR. 0 with the address and length set, or -ENODEV.
 */
static int vpci_map_cap(struct vpci_dev *vp, uint8_t cap, uint32_t min_len, uint64_t *addr,
			uint32_t *len)
{
	const struct pci_dev *d = vp->pci;
	uint8_t bar = pci_read_config8(d, cap + offsetof(struct virtio_pci_cap, bar));
	uint32_t off = pci_read_config32(d, cap + offsetof(struct virtio_pci_cap, offset));
	uint32_t length = pci_read_config32(d, cap + offsetof(struct virtio_pci_cap, length));
	const struct pci_bar *b = pci_bar(d, bar);
	uint64_t base, size;

	if (!b || b->is_io)
		return -ENODEV; /* an I/O BAR would need port accessors; QEMU never offers one */
	if (pci_bar_addr(d, bar, &base, &size))
		return -ENODEV;
	if (length < min_len || off > size || length > size - off)
		return -ENODEV;
	*addr = base + off;
	*len = length;
	return 0;
}

int vpci_init(struct vpci_dev *vp, const struct pci_dev *pci, unsigned flags)
{
	bool have_common = false, have_notify = false, have_isr = false, have_device = false;
	uint32_t unused;
	uint8_t cap = 0;
	unsigned caps = 0;

	memset(vp, 0, sizeof(*vp));
	vp->vdev.ops = &vpci_ops;
	vp->queue_vector = VIRTIO_MSI_NO_VECTOR;
	vp->pci = pci;
	snprintf(vp->vdev.name, sizeof(vp->vdev.name), "%02x:%02x.%x", pci->bus, pci->dev, pci->fn);

	/*
	 * Memory decoding for the BARs, and bus mastering so the device may DMA into our rings.
	 * OVMF left both on, but QEMU only enforces bus mastering with iommu_platform=on, so a
	 * driver that forgot it would work by accident; the iommu_platform test catches that.
	 */
	pci_enable(pci, (flags & VPCI_TEST_NO_BUS_MASTER)
			    ? PCI_COMMAND_MEMORY
			    : PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);

	/* The first capability of each type wins (§4.1.4: "SHOULD use the first instance"). */
	while ((cap = pci_find_cap(pci, PCI_CAP_ID_VNDR, cap)) != 0 && caps++ < 48) {
		uint8_t type =
		    pci_read_config8(pci, cap + offsetof(struct virtio_pci_cap, cfg_type));

		switch (type) {
		case VIRTIO_PCI_CAP_COMMON_CFG:
			if (!have_common)
				have_common =
				    !vpci_map_cap(vp, cap, sizeof(struct virtio_pci_common_cfg),
						  &vp->common, &unused);
			break;
		case VIRTIO_PCI_CAP_NOTIFY_CFG:
			if (!have_notify &&
			    !vpci_map_cap(vp, cap, 2, &vp->notify, &vp->notify_len)) {
				vp->notify_mult = pci_read_config32(
				    pci, cap + offsetof(struct virtio_pci_notify_cap,
							notify_off_multiplier));
				have_notify = true;
			}
			break;
		case VIRTIO_PCI_CAP_ISR_CFG:
			if (!have_isr)
				have_isr = !vpci_map_cap(vp, cap, 1, &vp->isr, &unused);
			break;
		case VIRTIO_PCI_CAP_DEVICE_CFG:
			/* Optional by the spec (a device may have no config); length 0 then. */
			if (!have_device)
				have_device =
				    !vpci_map_cap(vp, cap, 0, &vp->device, &vp->device_len);
			break;
		default:
			break; /* PCI_CFG access window, shared memory: not used */
		}
	}
	if (!have_common || !have_notify || !have_isr) {
		plat_printf("virtio %s: missing capability (common %d notify %d isr %d)\n",
			    vp->vdev.name, have_common, have_notify, have_isr);
		return -ENODEV;
	}
	return 0;
}

/* ---- MSI-X ------------------------------------------------------------------------------ */

/* PCI MSI-X capability: message control, then table offset | BIR (PCI Local Bus 3.0 §6.8.2). */
#define MSIX_CTRL	       2
#define MSIX_CTRL_ENABLE       0x8000
#define MSIX_CTRL_FUNC_MASK    0x4000
#define MSIX_CTRL_SIZE	       0x07ff /* table entries - 1 */
#define MSIX_TABLE	       4
#define MSIX_TABLE_BIR	       0x7
#define MSIX_ENTRY_ADDR_LO     0
#define MSIX_ENTRY_ADDR_HI     4
#define MSIX_ENTRY_DATA	       8
#define MSIX_ENTRY_CTRL	       12
#define MSIX_ENTRY_CTRL_MASKED 0x1

int vpci_msix_setup(struct vpci_dev *vp, uint64_t msg_addr, uint32_t msg_data)
{
	const struct pci_dev *d = vp->pci;
	uint8_t cap = pci_find_cap(d, PCI_CAP_ID_MSIX, 0);
	uint16_t ctrl;
	uint32_t tab;
	uint64_t base, size, e;

	if (!cap)
		return -ENODEV;
	ctrl = pci_read_config16(d, cap + MSIX_CTRL);
	tab = pci_read_config32(d, cap + MSIX_TABLE);
	if ((tab & MSIX_TABLE_BIR) > 5 || d->bar[tab & MSIX_TABLE_BIR].is_io ||
	    pci_bar_addr(d, tab & MSIX_TABLE_BIR, &base, &size) ||
	    (tab & ~MSIX_TABLE_BIR) + 16 > size)
		return -ENODEV;
	e = base + (tab & ~MSIX_TABLE_BIR);
	/* Entry 0 is written masked and unmasked last, so it never fires half-programmed. */
	mmio_write32(e + MSIX_ENTRY_CTRL, MSIX_ENTRY_CTRL_MASKED);
	mmio_write32(e + MSIX_ENTRY_ADDR_LO, (uint32_t)msg_addr);
	mmio_write32(e + MSIX_ENTRY_ADDR_HI, (uint32_t)(msg_addr >> 32));
	mmio_write32(e + MSIX_ENTRY_DATA, msg_data);
	pci_write_config16(d, cap + MSIX_CTRL,
			   (uint16_t)((ctrl | MSIX_CTRL_ENABLE) & ~MSIX_CTRL_FUNC_MASK));
	mmio_write32(e + MSIX_ENTRY_CTRL, 0);
	vp->msix_table = e;
	vp->queue_vector = 0;
	return 0;
}

/* ---- struct virtio_transport_ops -------------------------------------------------------- */

static uint8_t vpci_get_status(struct virtio_dev *vdev)
{
	return mmio_read8(to_vpci(vdev)->common + COMMON(device_status));
}

static void vpci_set_status(struct virtio_dev *vdev, uint8_t status)
{
	mmio_write8(to_vpci(vdev)->common + COMMON(device_status), status);
}

static int vpci_reset(struct virtio_dev *vdev)
{
	uint64_t deadline = plat_now_ns() + VPCI_RESET_TIMEOUT_NS;

	vpci_set_status(vdev, 0);
	/* §4.1.4.3.2: the reset is done only when device_status reads back 0. */
	while (vpci_get_status(vdev) != 0) {
		if (plat_now_ns() > deadline)
			return -ETIMEDOUT;
		plat_udelay(10);
	}
	return 0;
}

static uint64_t vpci_get_features(struct virtio_dev *vdev)
{
	uint64_t c = to_vpci(vdev)->common;
	uint64_t f;

	mmio_write32(c + COMMON(device_feature_select), 0);
	f = mmio_read32(c + COMMON(device_feature));
	mmio_write32(c + COMMON(device_feature_select), 1);
	f |= (uint64_t)mmio_read32(c + COMMON(device_feature)) << 32;
	return f;
}

static void vpci_set_features(struct virtio_dev *vdev, uint64_t features)
{
	uint64_t c = to_vpci(vdev)->common;

	mmio_write32(c + COMMON(driver_feature_select), 0);
	mmio_write32(c + COMMON(driver_feature), (uint32_t)features);
	mmio_write32(c + COMMON(driver_feature_select), 1);
	mmio_write32(c + COMMON(driver_feature), (uint32_t)(features >> 32));
}

static int vpci_read_config(struct virtio_dev *vdev, unsigned off, void *buf, unsigned len)
{
	struct vpci_dev *vp = to_vpci(vdev);
	uint64_t c = vp->common;
	uint8_t *out = buf;

	if (off > vp->device_len || len > vp->device_len - off)
		return -EINVAL;
	/*
	 * A field wider than 32 bits, or several fields, may change under us; the generation
	 * counter tells us to read again (§4.1.4.3.1). Fields are read with the natural width of
	 * their alignment, since some devices only decode aligned accesses.
	 */
	for (unsigned tries = 0; tries < VPCI_CONFIG_GEN_TRIES; tries++) {
		uint8_t gen = mmio_read8(c + COMMON(config_generation));
		unsigned i = 0;

		while (i < len) {
			uint64_t a = vp->device + off + i;

			if (len - i >= 4 && !(a & 3)) {
				uint32_t v = cpu_to_le32(mmio_read32(a));

				memcpy(out + i, &v, 4);
				i += 4;
			} else if (len - i >= 2 && !(a & 1)) {
				uint16_t v = cpu_to_le16(mmio_read16(a));

				memcpy(out + i, &v, 2);
				i += 2;
			} else {
				out[i] = mmio_read8(a);
				i++;
			}
		}
		if (mmio_read8(c + COMMON(config_generation)) == gen)
			return 0;
	}
	return -ETIMEDOUT;
}

static unsigned vpci_num_queues(struct virtio_dev *vdev)
{
	return mmio_read16(to_vpci(vdev)->common + COMMON(num_queues));
}

static uint16_t vpci_queue_max_size(struct virtio_dev *vdev, uint16_t index)
{
	uint64_t c = to_vpci(vdev)->common;

	if (index >= vpci_num_queues(vdev))
		return 0;
	mmio_write16(c + COMMON(queue_select), index);
	return mmio_read16(c + COMMON(queue_size));
}

/* The doorbell: the queue's index written to its notify address (§4.1.4.4). */
static void vpci_notify_vq(struct vq *vq)
{
	/*
	 * vq_kick() fenced our ring stores before calling us; the MMIO store below is a volatile
	 * store issued after them, and x86 does not reorder stores, so the device sees the new
	 * avail->idx by the time it handles the doorbell.
	 */
	mmio_write16((uint64_t)(uintptr_t)vq->notify_addr, vq->index);
}

static int vpci_enable_queue(struct virtio_dev *vdev, struct vq *vq)
{
	struct vpci_dev *vp = to_vpci(vdev);
	uint64_t c = vp->common;
	uint64_t off;

	mmio_write16(c + COMMON(queue_select), vq->index);
	if (mmio_read16(c + COMMON(queue_enable)))
		return -EBUSY; /* still enabled: the reset did not happen */
	off = (uint64_t)mmio_read16(c + COMMON(queue_notify_off)) * vp->notify_mult;
	if (off + 2 > vp->notify_len)
		return -ENODEV;
	vq->notify_addr = vp->notify + off;
	vq->notify = vpci_notify_vq;

	mmio_write16(c + COMMON(queue_size), vq->size);
	/*
	 * The main loop polls; vector 0 (vpci_msix_setup) only wakes a halted CPU, and only while
	 * the driver has cleared NO_INTERRUPT. The device answers NO_VECTOR when it cannot map
	 * the vector (§4.1.5.1.2): then the CPU's timer wakes it instead, so it is not an error.
	 */
	mmio_write16(c + COMMON(queue_msix_vector), vp->queue_vector);
	if (vp->queue_vector != VIRTIO_MSI_NO_VECTOR &&
	    mmio_read16(c + COMMON(queue_msix_vector)) != vp->queue_vector)
		plat_printf("virtio %s: queue %u refused MSI-X vector %u\n", vp->vdev.name,
			    vq->index, vp->queue_vector);
	mmio_write64_split(c + COMMON(queue_desc), vq->desc_bus);
	mmio_write64_split(c + COMMON(queue_driver), vq->avail_bus);
	mmio_write64_split(c + COMMON(queue_device), vq->used_bus);
	/*
	 * The ring addresses are device registers, not shared memory, and volatile MMIO stores
	 * reach the device in program order on x86 (uncached stores are not reordered), so the
	 * enable below cannot overtake them. The rings themselves were zeroed by plat_dma_alloc
	 * well before; the fence makes that ordering explicit for the compiler too.
	 */
	vq_wmb();
	mmio_write16(c + COMMON(queue_enable), 1);
	return 0;
}

static const struct virtio_transport_ops vpci_ops = {
	.reset = vpci_reset,
	.get_status = vpci_get_status,
	.set_status = vpci_set_status,
	.get_features = vpci_get_features,
	.set_features = vpci_set_features,
	.read_config = vpci_read_config,
	.num_queues = vpci_num_queues,
	.queue_max_size = vpci_queue_max_size,
	.enable_queue = vpci_enable_queue,
};
