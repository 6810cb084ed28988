/* SPDX-License-Identifier: MIT */
/*
 * The firmware's one network interface: lwIP (NO_SYS, raw API) over the virtio-net driver.
 * This is the only code that sees both lwIP and drivers/virtio-net.
 *
 *   net_start(vn, cfg)   lwip_init(), the netif over @vn, DHCP or the static address;
 *                        received frames reach lwIP from then on (devices_set_rx_handler
 *                        is the caller's job: pass it net_rx_frame);
 *   net_poll()           every main-loop pass: link changes, lwIP's timers;
 *   net_shell_init(sh)   the `net` command.
 *
 * Configuration (docs/network.md): @cfg->ip is "ADDR/PREFIX" for a static address (no DHCP),
 * NULL or "dhcp" for DHCP; @cfg->gateway is "ADDR" (static only). The address is announced
 * on the console as "thinbox: net ADDR/PREFIX gw GW (dhcp|static)" whenever it changes.
 */
#ifndef NET_LWIP_NETIF_VNET_H
#define NET_LWIP_NETIF_VNET_H

#include <stdbool.h>
#include <stddef.h>

struct vnet;
struct shell;

struct net_config {
	const char *ip;	      /* "ADDR/PREFIX", or NULL / "dhcp" */
	const char *gateway;  /* "ADDR" or NULL; only with a static address */
	const char *hostname; /* sent with DHCP; NULL: "thinbox" */
	/* Test switch: take the offload path even when the device lacks VIRTIO_NET_F_CSUM (the
	 * driver then finishes the sums), so QEMU tests with user networking cover it. */
	bool test_csum_offload;
};

/* Bring the interface up. 0, -EINVAL for a malformed address, -ENOMEM, -EIO. */
int net_start(struct vnet *vn, const struct net_config *cfg);
/* The receive handler for devices_set_rx_handler(): one frame into lwIP. */
void net_rx_frame(void *ctx, const void *frame, size_t len, unsigned flags);
/* Link status, lwIP's timers. Call every main-loop pass; never blocks. */
void net_poll(void);
/* Register the `net` command. */
void net_shell_init(struct shell *sh);

#endif
