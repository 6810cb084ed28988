/* SPDX-License-Identifier: MIT */
/*
 * The virtio 1.x modern PCI transport (virtio 1.1 §4.1): the vendor capabilities that locate
 * the common, notify, ISR and device configuration structures inside the BARs (64-bit BARs
 * above 4 GiB included), and struct virtio_transport_ops on top of them.
 *
 * Firmware only: it needs drivers/bus/pci.h and real MMIO. The drivers above it see only
 * struct virtio_dev.
 */
#ifndef DRIVERS_VIRTIO_VIRTIO_PCI_H
#define DRIVERS_VIRTIO_VIRTIO_PCI_H

#include "drivers/virtio/virtio.h"

#include <stdint.h>

struct pci_dev;

#define VIRTIO_PCI_DEVICE_NET 0x1041 /* 0x1040 + device type 1 (§4.1.2.1) */
#define VIRTIO_PCI_DEVICE_BLK 0x1042 /* 0x1040 + device type 2 */
#define VIRTIO_PCI_DEVICE_RNG 0x1044 /* 0x1040 + device type 4 (entropy) */

/* ---- On-device structures (§4.1.4) ----------------------------------------------------- */

#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG	  3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG	  5

/* Read field by field through PCI config space; the struct documents the offsets. */
struct virtio_pci_cap {
	uint8_t cap_vndr; /* PCI_CAP_ID_VNDR */
	uint8_t cap_next;
	uint8_t cap_len;
	uint8_t cfg_type; /* VIRTIO_PCI_CAP_* */
	uint8_t bar;
	uint8_t id;
	uint8_t padding[2];
	le32 offset; /* within the BAR */
	le32 length;
};
_Static_assert(sizeof(struct virtio_pci_cap) == 16, "virtio 1.1 §4.1.4");

struct virtio_pci_notify_cap {
	struct virtio_pci_cap cap;
	le32 notify_off_multiplier; /* queue's doorbell = offset + queue_notify_off * this */
};
_Static_assert(sizeof(struct virtio_pci_notify_cap) == 20, "virtio 1.1 §4.1.4.4");

/* Offsets only: accessed through mmio.h, never by dereferencing the struct. */
struct virtio_pci_common_cfg {
	le32 device_feature_select;
	le32 device_feature;
	le32 driver_feature_select;
	le32 driver_feature;
	le16 msix_config;
	le16 num_queues;
	uint8_t device_status;
	uint8_t config_generation;
	le16 queue_select;
	le16 queue_size;
	le16 queue_msix_vector;
	le16 queue_enable;
	le16 queue_notify_off;
	le64 queue_desc;
	le64 queue_driver; /* the available ring */
	le64 queue_device; /* the used ring */
};
_Static_assert(sizeof(struct virtio_pci_common_cfg) == 0x38, "virtio 1.1 §4.1.4.3");

#define VIRTIO_ISR_QUEUE  0x1
#define VIRTIO_ISR_CONFIG 0x2 /* the device configuration changed */

/* ---- The transport ------------------------------------------------------------------------- */

struct vpci_dev {
	struct virtio_dev vdev; /* first: drivers hold this */
	const struct pci_dev *pci;
	uint64_t common; /* MMIO addresses of the structures found by the capability walk */
	uint64_t notify;
	uint64_t isr;
	uint64_t device;
	uint32_t notify_len, device_len;
	uint32_t notify_mult;
	/* MSI-X (vpci_msix_setup): the vector every queue is given, VIRTIO_MSI_NO_VECTOR when
	 * none; the table entry's address for the shell. */
	uint16_t queue_vector;
	uint64_t msix_table;
};

#define VIRTIO_MSI_NO_VECTOR 0xffff /* §4.1.4.3: no MSI-X vector for this source */

/* Flags for vpci_init(). */
#define VPCI_TEST_NO_BUS_MASTER 0x1 /* test only: leave bus mastering as found (see virtio.md) */

/*
 * Take over the virtio PCI function @pci: enable memory decoding and bus mastering (OVMF's
 * setting is not ours to rely on), walk the capabilities and map the four structures.
 * Does not touch the device's status; virtio_negotiate() does. 0, or -ENODEV when a
 * required structure is missing or lies outside its BAR.
 */
int vpci_init(struct vpci_dev *vp, const struct pci_dev *pci, unsigned flags);

/*
 * Wake-up interrupts (virtio 1.1 §4.1.4.3, §4.1.5.1.2; PCI's MSI-X capability): program
 * MSI-X table entry 0 with @msg_addr/@msg_data (what the CPU's interrupt controller wants;
 * boot/irq.c), enable MSI-X on the function, and make every queue enable_queue() sets up from
 * now on use vector 0 (configuration changes get none: the driver polls for them). Call
 * after vpci_init() and before the driver creates its queues. The device still interrupts
 * only for queues whose driver clears VRING_AVAIL_F_NO_INTERRUPT (virtqueue.h). A device
 * reset keeps the PCI side; the queues get vector 0 again when they are set up again.
 * 0, or -ENODEV without an MSI-X capability or with its table outside a memory BAR.
 */
int vpci_msix_setup(struct vpci_dev *vp, uint64_t msg_addr, uint32_t msg_data);

#endif
