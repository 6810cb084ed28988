/* SPDX-License-Identifier: MIT */
/*
 * The firmware's one network interface: lwIP (NO_SYS, raw API) over the virtio-net driver.
 * This is the only code that sees both lwIP and drivers/virtio-net.
 *
 *   net_start(vn, cfg)   lwip_init(), the netif over @vn, DHCP or the static address;
 *                        received frames reach lwIP from then on (devices_set_rx_handler
 *                        is the caller's job: pass it net_rx_frame and net_rx_batch_end);
 *   net_poll()           every main-loop pass: link changes, lwIP's timers;
 *   net_get_status(&st)  a snapshot of address, DHCP, link and counters, in plain C types,
 *                        for the `net` shell command (boot/devices.c): the shell is the
 *                        composition root's, this layer includes nothing of config/.
 *
 * Configuration (docs/network.md): @cfg->ip is "ADDR/PREFIX" for a static address (no DHCP),
 * NULL or "dhcp" for DHCP; @cfg->gateway is "ADDR" (static only). The address is announced
 * on the console as "thinbox: net ADDR/PREFIX gw GW (dhcp|static)" whenever it changes.
 */
#ifndef NET_LWIP_NETIF_VNET_H
#define NET_LWIP_NETIF_VNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vnet;
struct vnet_rx_frame;

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
/*
 * The receive handler for devices_set_rx_handler() (a vnet_rx_fn): one frame into lwIP. True
 * when lwIP got the driver's buffers themselves (custom pbufs, given back with
 * vnet_rx_release() when lwIP frees them), false when the frame was copied or dropped.
 */
bool net_rx_frame(void *ctx, const struct vnet_rx_frame *f);
/*
 * After each receive poll (the batch of frames one vnet_rx_poll() handed to net_rx_frame):
 * a pure ACK net_rx_frame held back, waiting to see whether the next frame supersedes it
 * (ack_merge.h), goes into lwIP now. Nothing is held between batches.
 */
void net_rx_batch_end(void *ctx);
/* Link status, lwIP's timers. Call every main-loop pass; never blocks. */
void net_poll(void);
/*
 * Milliseconds until lwIP's next timer is due (0: due now), or UINT32_MAX when lwIP has none
 * or the network is not started: how long the idle main loop may sleep for the network.
 */
uint32_t net_next_timer_ms(void);

/*
 * The transmit epoch (the driver's vnet_tx_ref_seq): frames handed to the device by reference
 * so far. net_tx_returned(e): true when every frame handed over by reference before
 * net_tx_epoch() returned @e has come back from the device (so the memory it pointed into,
 * e.g. an aborted connection's READ buffers, may be reused); true when the network is not
 * started. Completions may come in any order.
 */
uint64_t net_tx_epoch(void);
bool net_tx_returned(uint64_t epoch);

/* "255.255.255.255" and its NUL (lwIP's IP4ADDR_STRLEN_MAX, without its header). */
#define NET_ADDR_STRLEN 16

/* The netif's own counters (the driver's are in struct vnet_stats). */
struct net_stats {
	uint64_t rx_nomem;	 /* frames dropped: no pbuf */
	uint64_t rx_copied;	 /* frames copied into pool pbufs (too few spare receive buffers) */
	uint64_t rx_rejected;	 /* netif->input refused the frame */
	uint64_t rx_acks_merged; /* pure ACKs a later one of the same batch made redundant */
	uint64_t tx_dropped;	 /* frames linkoutput could not send */
	uint64_t tx_retries;	 /* transmit ring full, waited for the device */
};

struct net_status {
	bool started; /* false until net_start() added the netif; then nothing below is set */
	char addr[NET_ADDR_STRLEN], netmask[NET_ADDR_STRLEN], gateway[NET_ADDR_STRLEN];
	unsigned prefix_len;
	const char *dhcp_state; /* "bound", "selecting", ...; "off (static)" without DHCP */
	bool link_up;
	unsigned mtu;
	uint8_t mac[6];
	struct net_stats stats;
	unsigned tcp_active;	 /* lwIP's active pcbs: established and closing */
	unsigned tcp_time_wait;	 /* pcbs in TIME-WAIT */
	unsigned tcp_listening;	 /* listening pcbs */
	const char *tcp_csum_by; /* "lwip", "device" or "driver (test switch)" */
};

/* Fill @st from the interface now. Never fails; the strings are static. */
void net_get_status(struct net_status *st);

#endif
