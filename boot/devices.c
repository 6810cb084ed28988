/* SPDX-License-Identifier: MIT */
/*
 * Virtio devices in the firmware: probe, disk roles, polling, and the `disks`/`nic`/`net` shell
 * commands (see devices.h). The shell commands live here, in the composition root, because
 * config/ may not include driver headers and the drivers and net/lwip/ may not include the
 * shell.
 *
 * Test switches (fw_cfg, QEMU tests only; docs/virtio.md; test-selftest is efi_main.c's):
 *   opt/thinbox/test-clear-bme=1       clear bus mastering on every virtio function first,
 *                                      so an iommu_platform=on run proves the driver sets it;
 *   opt/thinbox/test-nobme=BB:DD.F     do not set bus mastering on that function (its DMA
 *                                      then never happens: a device that never completes).
 */
#include "boot/devices.h"

#include "boot/bootcfg.h"
#include "boot/irq.h"
#include "boot/tls_cmd.h"
#include "drivers/bus/pci.h"
#include "config/shell.h"
#include "core/base/plat.h"
#include "core/base/util.h"
#include "drivers/virtio-blk/roles.h"
#include "drivers/virtio-blk/vblk.h"
#include "drivers/virtio-net/vnet.h"
#include "drivers/virtio-rng/vrng.h"
#include "drivers/virtio/virtio_pci.h"
#include "drivers/virtio/virtqueue.h"
#include "net/lwip/netif_vnet.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DISKS 8

struct disk {
	const struct pci_dev *pci;
	struct vpci_dev vp;
	struct vblk *vb; /* NULL when the driver did not start */
	int rc;
	enum disk_role role;
};

static struct disk *disks;
static unsigned ndisks;
static int meta_idx = -1, data_idx = -1;

static struct vpci_dev *nic_vp;
static struct vnet *nic;
static int nic_rc = -ENODEV;

static struct vpci_dev *rng_vp;
static struct vrng *rng;
static int rng_rc = -ENODEV;

static vnet_rx_fn rx_handler;
static void (*rx_batch_end)(void *ctx);
static void *rx_ctx;
static uint64_t rx_dropped_no_handler;

/* ---- Probe ---------------------------------------------------------------------------------- */

static bool addr_is(const struct pci_dev *d, const char *s)
{
	uint8_t b, dv, f;

	return s && !disk_parse_addr(s, &b, &dv, &f) && d->bus == b && d->dev == dv && d->fn == f;
}

static unsigned vpci_flags_for(const struct pci_dev *d)
{
	if (addr_is(d, bootcfg_get("test-nobme"))) {
		plat_printf("thinbox: test-nobme: bus mastering left off on %02x:%02x.%x\n", d->bus,
			    d->dev, d->fn);
		return VPCI_TEST_NO_BUS_MASTER;
	}
	return 0;
}

/* Test switch: start from bus mastering off, as a stricter firmware than OVMF would leave it. */
static void test_clear_bus_master(void)
{
	const struct pci_dev *d;

	if (!bootcfg_get("test-clear-bme"))
		return;
	for (unsigned i = 0; (d = pci_get(i)) != NULL; i++)
		if (d->vendor == PCI_VENDOR_VIRTIO)
			pci_write_config16(d, PCI_COMMAND,
					   pci_read_config16(d, PCI_COMMAND) & ~PCI_COMMAND_MASTER);
	plat_printf("thinbox: test-clear-bme: bus mastering cleared on virtio functions\n");
}

/*
 * MSI-X entry 0 of the function aimed at the wake-up vector (boot/irq.h), before the driver
 * sets up its queues. Without it the function still works; the idle CPU then wakes only on
 * its timer, so a request arriving during a sleep waits for the next tick.
 */
static bool wake_setup(struct vpci_dev *vp)
{
	int rc;

	if (!irq_ready())
		return false;
	rc = vpci_msix_setup(vp, irq_msi_addr(), irq_msi_data());
	if (rc)
		plat_printf("thinbox: %s: no MSI-X wake-up (%d)\n", vp->vdev.name, rc);
	return rc == 0;
}

static void probe_disk(const struct pci_dev *d)
{
	struct disk *dk = &disks[ndisks++];
	char size[32];
	bool wakes = false;

	dk->pci = d;
	dk->rc = vpci_init(&dk->vp, d, vpci_flags_for(d));
	if (!dk->rc)
		wakes = wake_setup(&dk->vp);
	if (!dk->rc)
		dk->rc = vblk_create(&dk->vp.vdev, &dk->vb);
	/* Its completions can end a halt: the main loop may halt while it waits on them. */
	if (!dk->rc)
		dk->vb->wakes = wakes;
	if (dk->rc) {
		plat_printf("thinbox: disk %02x:%02x.%x: virtio-blk did not start (%d)\n", d->bus,
			    d->dev, d->fn, dk->rc);
		return;
	}
	format_size(dk->vb->bdev.nr_blocks * dk->vb->bdev.block_size, size, sizeof(size));
	plat_printf("thinbox: disk %02x:%02x.%x: %" PRIu64 " blocks of %u (%s)%s\n", d->bus, d->dev,
		    d->fn, dk->vb->bdev.nr_blocks, dk->vb->bdev.block_size, size,
		    dk->vb->bdev.read_only ? ", read-only" : "");
}

static void probe_nic(const struct pci_dev *d)
{
	if (nic_vp) {
		plat_printf("thinbox: nic %02x:%02x.%x: ignored, one NIC is driven\n", d->bus,
			    d->dev, d->fn);
		return;
	}
	nic_vp = calloc(1, sizeof(*nic_vp));
	if (!nic_vp) {
		nic_rc = -ENOMEM;
		return;
	}
	nic_rc = vpci_init(nic_vp, d, vpci_flags_for(d));
	if (!nic_rc)
		wake_setup(nic_vp);
	if (!nic_rc)
		nic_rc = vnet_create(&nic_vp->vdev, &nic);
	if (nic_rc) {
		plat_printf("thinbox: nic %02x:%02x.%x: virtio-net did not start (%d)\n", d->bus,
			    d->dev, d->fn, nic_rc);
		return;
	}
	plat_printf("thinbox: nic %02x:%02x.%x: mac %02x:%02x:%02x:%02x:%02x:%02x link %s\n",
		    d->bus, d->dev, d->fn, nic->mac[0], nic->mac[1], nic->mac[2], nic->mac[3],
		    nic->mac[4], nic->mac[5], nic->link_up ? "up" : "down");
}

static void probe_rng(const struct pci_dev *d)
{
	if (rng_vp) {
		plat_printf("thinbox: rng %02x:%02x.%x: ignored, one virtio-rng is driven\n",
			    d->bus, d->dev, d->fn);
		return;
	}
	rng_vp = calloc(1, sizeof(*rng_vp));
	if (!rng_vp) {
		rng_rc = -ENOMEM;
		return;
	}
	rng_rc = vpci_init(rng_vp, d, vpci_flags_for(d));
	if (!rng_rc)
		rng_rc = vrng_create(&rng_vp->vdev, &rng);
	if (rng_rc) {
		plat_printf("thinbox: rng %02x:%02x.%x: virtio-rng did not start (%d)\n", d->bus,
			    d->dev, d->fn, rng_rc);
		return;
	}
	plat_printf("thinbox: rng %02x:%02x.%x: virtio-rng\n", d->bus, d->dev, d->fn);
}

static void role_msg(void *ctx, const char *line)
{
	(void)ctx;
	plat_printf("thinbox: WARNING: %s\n", line);
}

int devices_probe(void)
{
	struct disk_candidate cand[MAX_DISKS];
	struct disk_roles_cfg cfg = { 0 };
	const struct pci_dev *d;
	int missing;

	disks = calloc(MAX_DISKS, sizeof(*disks));
	if (!disks)
		plat_panic("no memory for the disk table");
	test_clear_bus_master();
	for (unsigned i = 0; (d = pci_get(i)) != NULL; i++) {
		if (d->vendor != PCI_VENDOR_VIRTIO)
			continue;
		if (d->device == VIRTIO_PCI_DEVICE_BLK) {
			if (ndisks < MAX_DISKS)
				probe_disk(d);
			else
				plat_printf(
				    "thinbox: disk %02x:%02x.%x: ignored, more than %d disks\n",
				    d->bus, d->dev, d->fn, MAX_DISKS);
		} else if (d->device == VIRTIO_PCI_DEVICE_NET) {
			probe_nic(d);
		} else if (d->device == VIRTIO_PCI_DEVICE_RNG) {
			probe_rng(d);
		}
	}
	if (!nic_vp)
		plat_printf("thinbox: WARNING: no virtio-net device; no network\n");

	for (unsigned i = 0; i < ndisks; i++) {
		cand[i].bus = disks[i].pci->bus;
		cand[i].dev = disks[i].pci->dev;
		cand[i].fn = disks[i].pci->fn;
		cand[i].usable = disks[i].vb != NULL;
		cand[i].bytes =
		    disks[i].vb ? disks[i].vb->bdev.nr_blocks * disks[i].vb->bdev.block_size : 0;
	}
	cfg.meta_addr = bootcfg_get("meta-disk");
	cfg.data_addr = bootcfg_get("data-disk");
	missing = disk_roles_assign(cand, ndisks, &cfg, &meta_idx, &data_idx, role_msg, NULL);
	for (unsigned i = 0; i < ndisks; i++)
		disks[i].role = cand[i].role;
	if (meta_idx >= 0 && data_idx >= 0)
		plat_printf("thinbox: disks: metadata %s, data %s\n", disks[meta_idx].vp.vdev.name,
			    disks[data_idx].vp.vdev.name);
	else
		plat_printf("thinbox: WARNING: %d disk role(s) empty; the pool cannot start "
			    "(see `disks`)\n",
			    missing);
	return missing;
}

struct blkdev *devices_meta_disk(void)
{
	return meta_idx >= 0 ? &disks[meta_idx].vb->bdev : NULL;
}

struct blkdev *devices_data_disk(void)
{
	return data_idx >= 0 ? &disks[data_idx].vb->bdev : NULL;
}

struct blkdev *devices_disk(unsigned idx)
{
	for (unsigned i = 0; i < ndisks; i++)
		if (disks[i].vb && idx-- == 0)
			return &disks[i].vb->bdev;
	return NULL;
}

struct vnet *devices_nic(void)
{
	return nic;
}

struct vrng *devices_rng(int *rc)
{
	if (rc)
		*rc = rng_rc;
	return rng;
}

const char *devices_rng_addr(void)
{
	return rng_vp ? rng_vp->vdev.name : NULL;
}

void devices_set_rx_handler(bool (*fn)(void *ctx, const struct vnet_rx_frame *f),
			    void (*batch_end)(void *ctx), void *ctx)
{
	rx_handler = fn;
	rx_batch_end = batch_end;
	rx_ctx = ctx;
}

/* ---- Polling -------------------------------------------------------------------------------- */

static bool drop_frame(void *ctx, const struct vnet_rx_frame *f)
{
	(void)ctx;
	(void)f;
	rx_dropped_no_handler++;
	return false;
}

int devices_poll(void)
{
	int n, events = 0;

	for (unsigned i = 0; i < ndisks; i++)
		if (disks[i].vb && disks[i].vb->inflight && (n = vblk_poll(disks[i].vb)) > 0)
			events += n;
	if (nic && !nic->dead) {
		vnet_poll(nic);
		n = vnet_rx_poll(nic, rx_handler ? rx_handler : drop_frame, rx_ctx, 32);
		if (rx_handler && rx_batch_end)
			rx_batch_end(rx_ctx);
		if (n > 0)
			events += n;
	}
	return events;
}

void devices_flush(void)
{
	for (unsigned i = 0; i < ndisks; i++)
		if (disks[i].vb)
			vblk_kick(disks[i].vb);
	if (nic)
		vnet_tx_kick(nic);
}

/*
 * The queues whose completions are work: the disks' and the NIC's receive queue. Transmit
 * completions only return buffers, which the next poll reclaims, so they wake nobody.
 */
bool devices_wake_arm(void)
{
	bool pending = false;

	for (unsigned i = 0; i < ndisks; i++)
		if (disks[i].vb && !disks[i].vb->dead)
			pending |= vq_irq_enable(&disks[i].vb->vq);
	if (nic && !nic->dead)
		pending |= vq_irq_enable(&nic->rxq);
	return pending;
}

bool devices_io_pending(void)
{
	for (unsigned i = 0; i < ndisks; i++)
		if (disks[i].vb && !disks[i].vb->dead && disks[i].vb->inflight)
			return true;
	return false;
}

void devices_wake_disarm(void)
{
	for (unsigned i = 0; i < ndisks; i++)
		if (disks[i].vb)
			vq_irq_disable(&disks[i].vb->vq);
	if (nic)
		vq_irq_disable(&nic->rxq);
}

/* ---- Shell ---------------------------------------------------------------------------------- */

static int cmd_disks(struct shell *sh, int argc, char **argv)
{
	(void)argv;
	if (argc != 1)
		return shell_usage(sh, "disks");
	if (ndisks == 0)
		shell_puts(sh, "no virtio-blk devices\n");
	for (unsigned i = 0; i < ndisks; i++) {
		struct disk *dk = &disks[i];
		char size[32], feat[160];
		uint64_t bytes;

		if (!dk->vb) {
			shell_printf(sh, "%s  not started (error %d)\n", dk->vp.vdev.name, dk->rc);
			continue;
		}
		bytes = dk->vb->bdev.nr_blocks * dk->vb->bdev.block_size;
		format_size(bytes, size, sizeof(size));
		vblk_features_str(dk->vb, feat, sizeof(feat));
		shell_printf(sh,
			     "%s  %" PRIu64 " bytes (%s)  block %u  role %s%s\n"
			     "         features: %s\n"
			     "         queue %u, in flight %u (max %u), reads %" PRIu64
			     ", writes %" PRIu64 ", errors %" PRIu64 "; doorbells %" PRIu64
			     " (%" PRIu64 " not needed)\n",
			     dk->vp.vdev.name, bytes, size, dk->vb->bdev.block_size,
			     disk_role_name(dk->role), dk->vb->dead ? "  DEAD" : "", feat,
			     dk->vb->vq.size, dk->vb->inflight, dk->vb->stats.max_inflight,
			     dk->vb->stats.reads, dk->vb->stats.writes, dk->vb->stats.errors,
			     dk->vb->vq.kicks, dk->vb->vq.kicks_skipped);
	}
	if (meta_idx < 0 || data_idx < 0)
		shell_printf(sh,
			     "roles: metadata %s, data %s (expected at %s and %s, or set "
			     "opt/thinbox/meta-disk, data-disk)\n",
			     meta_idx >= 0 ? disks[meta_idx].vp.vdev.name : "MISSING",
			     data_idx >= 0 ? disks[data_idx].vp.vdev.name : "MISSING",
			     DISK_META_DEFAULT, DISK_DATA_DEFAULT);
	return 0;
}

static int cmd_nic(struct shell *sh, int argc, char **argv)
{
	const struct vnet_stats *st;
	char feat[128];

	(void)argv;
	if (argc != 1)
		return shell_usage(sh, "nic");
	if (!nic) {
		shell_printf(sh, "no virtio-net device (%d)\n", nic_rc);
		return 0;
	}
	st = &nic->stats;
	vnet_features_str(nic, feat, sizeof(feat));
	shell_printf(
	    sh,
	    "%s  mac %02x:%02x:%02x:%02x:%02x:%02x  link %s  mtu %u%s\n"
	    "         features: %s\n"
	    "         rx %" PRIu64 " packets %" PRIu64 " bytes, dropped %" PRIu64
	    " malformed, %" PRIu64 " unclaimed\n"
	    "         tx %" PRIu64 " packets %" PRIu64 " bytes, busy %" PRIu64
	    ", sw checksums %" PRIu64 "; by reference %" PRIu64 ", copied %" PRIu64
	    " (references returned %" PRIu64 ")\n"
	    "         offload: tx csum by device %" PRIu64 ", gso frames %" PRIu64 " (%" PRIu64
	    " segments); rx csum valid %" PRIu64 ", partial %" PRIu64 "; rx merged %" PRIu64
	    ", large %" PRIu64 ", kept %" PRIu64 " (buffers held %u of %u)\n",
	    nic->vdev->name, nic->mac[0], nic->mac[1], nic->mac[2], nic->mac[3], nic->mac[4],
	    nic->mac[5], nic->link_up ? "up" : "down", nic->mtu, nic->dead ? "  DEAD" : "", feat,
	    st->rx_packets, st->rx_bytes, st->rx_dropped, rx_dropped_no_handler, st->tx_packets,
	    st->tx_bytes, st->tx_busy, st->tx_csum_sw, st->tx_ref, st->tx_copied, st->tx_ref_done,
	    st->tx_csum_dev, st->tx_gso, st->tx_gso_segs, st->rx_csum_valid, st->rx_csum_partial,
	    st->rx_merged, st->rx_gso, st->rx_kept, nic->rx_held, nic->rx_nbufs);
	/* A line of its own: shell_printf() cuts a message at 512 bytes. */
	shell_printf(sh,
		     "         doorbells: rx %" PRIu64 " (%" PRIu64 " not needed), tx %" PRIu64
		     " (%" PRIu64 " not needed)\n",
		     nic->rxq.kicks, nic->rxq.kicks_skipped, nic->txq.kicks,
		     nic->txq.kicks_skipped);
	return 0;
}

/*
 * `net`: the lwIP interface over the NIC (net/lwip/netif_vnet.c), from its status snapshot,
 * with the driver's packet counters beside it. It lives here, next to `nic`, because the
 * shell belongs to the composition root: the network glue below offers a query API only.
 */
static int cmd_net(struct shell *sh, int argc, char **argv)
{
	const struct vnet_stats *vs;
	struct net_status ns;

	(void)argv;
	if (argc != 1)
		return shell_usage(sh, "net");
	net_get_status(&ns);
	/* net_start() is only ever given this NIC (boot/efi_main.c), so its counters are ours. */
	if (!ns.started || !nic) {
		shell_puts(sh, "network not started (no virtio-net device?)\n");
		return 0;
	}
	vs = &nic->stats;
	shell_printf(
	    sh,
	    "address %s/%u  netmask %s  gateway %s\n"
	    "dhcp %s  link %s  mtu %u  mac %02x:%02x:%02x:%02x:%02x:%02x\n"
	    "rx %" PRIu64 " packets %" PRIu64 " bytes, dropped %" PRIu64 " (no pbuf %" PRIu64
	    ", refused %" PRIu64 ", malformed %" PRIu64 "), copied %" PRIu64
	    ", acks merged %" PRIu64 "\n"
	    "tx %" PRIu64 " packets %" PRIu64 " bytes, dropped %" PRIu64 ", ring full %" PRIu64 "\n"
	    "tcp %u connections, %u in time-wait, %u listening; tcp checksums by %s\n",
	    ns.addr, ns.prefix_len, ns.netmask, ns.gateway, ns.dhcp_state,
	    ns.link_up ? "up" : "down", ns.mtu, ns.mac[0], ns.mac[1], ns.mac[2], ns.mac[3],
	    ns.mac[4], ns.mac[5], vs->rx_packets, vs->rx_bytes,
	    ns.stats.rx_nomem + ns.stats.rx_rejected + vs->rx_dropped, ns.stats.rx_nomem,
	    ns.stats.rx_rejected, vs->rx_dropped, ns.stats.rx_copied, ns.stats.rx_acks_merged,
	    vs->tx_packets, vs->tx_bytes, ns.stats.tx_dropped, ns.stats.tx_retries, ns.tcp_active,
	    ns.tcp_time_wait, ns.tcp_listening, ns.tcp_csum_by);
	tls_fw_net_line(sh);
	return 0;
}

static const struct shell_cmd device_cmds[] = {
	{ "disks", "", "list virtio-blk disks: address, capacity, features, role", cmd_disks },
	{ "nic", "", "show the virtio-net device: MAC, link, counters", cmd_nic },
	{ "net", "", "network: address, gateway, DHCP, link, MAC, counters, TCP connections",
	  cmd_net },
};

static struct shell_cmd_table device_table = { device_cmds, ARRAY_SIZE(device_cmds), NULL };

void devices_shell_init(struct shell *sh)
{
	shell_add_commands(sh, &device_table);
}
