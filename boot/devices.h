/* SPDX-License-Identifier: MIT */
/*
 * The firmware's virtio devices: probed after the PCI scan, disk roles decided (by slot or
 * configuration, drivers/virtio-blk/roles.h), polled from the main loop, and shown by the
 * shell's `disks` and `nic` commands (`rng`: boot/entropy.c) (and the lwIP netif on the NIC by `net`). What the rest of the firmware (the pool, the lwIP
 * netif) needs from here is the metadata and data disks and the NIC.
 */
#ifndef BOOT_DEVICES_H
#define BOOT_DEVICES_H

#include <stdbool.h>
#include <stddef.h>

struct blkdev;
struct shell;
struct vnet;
struct vnet_rx_frame;
struct vrng;

/*
 * Start every virtio-blk and virtio-net function pci_scan() found and assign the disk roles.
 * Problems (a missing or undersized disk, a device that does not start) are printed as
 * "thinbox: ..." lines; the firmware carries on without that device. Returns the number of
 * disk roles left empty (0 when both disks are there).
 */
int devices_probe(void);
/* Register `disks`, `nic` and `net`. */
void devices_shell_init(struct shell *sh);
/*
 * Poll the drivers once: block completions, transmit reclaim, link, received frames. Returns
 * the number of block completions and received frames delivered (0: nothing happened).
 */
int devices_poll(void);
/*
 * The end of a main-loop pass: one doorbell per queue for the block requests and frames the
 * pass placed on the rings (vblk_kick(), vnet_tx_kick()), instead of one per request or frame.
 */
void devices_flush(void);
/*
 * Before an idle halt: let the disks' queues and the NIC's receive queue interrupt (MSI-X,
 * see boot/irq.h). True when one of them already has a completion the last poll did not see:
 * poll again instead of halting. devices_wake_disarm() after the halt: polling needs no
 * interrupts, and they would only cost QEMU work.
 */
bool devices_wake_arm(void);
void devices_wake_disarm(void);
/* True while a disk has requests in flight (the main loop's wait spell: docs/firmware.md). */
bool devices_io_pending(void);

/* The disks by role (NULL when the role is empty) and the NIC (NULL when none started). */
struct blkdev *devices_meta_disk(void);
struct blkdev *devices_data_disk(void);
struct vnet *devices_nic(void);
/*
 * The virtio-rng device (NULL when none started) and, in *@rc when not NULL, why not:
 * -ENODEV when there is no such PCI function, else the driver's error.
 */
struct vrng *devices_rng(int *rc);
/* The virtio-rng function's PCI address ("00:10.0"), or NULL when there is none. */
const char *devices_rng_addr(void);

/*
 * Who receives frames: the lwIP netif glue sets this. Without a handler, devices_poll()
 * drops received frames so the receive ring keeps moving (counted in the NIC's stats).
 * @batch_end (may be NULL) runs after each receive poll, frames or not: a handler that held a
 * frame back to look at the next one hands it on there.
 */
void devices_set_rx_handler(bool (*fn)(void *ctx, const struct vnet_rx_frame *f),
			    void (*batch_end)(void *ctx), void *ctx);

/* ---- For the test-only commands (boot/virtio_selftest.c) ---------------------------------- */

/* The @idx'th virtio-blk device that started (any role), or NULL past the last. */
struct blkdev *devices_disk(unsigned idx);

#endif
