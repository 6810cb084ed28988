/* SPDX-License-Identifier: MIT */
/*
 * lwIP configuration for the firmware: NO_SYS (one polled main loop, raw API only), IPv4 with
 * DHCP, ARP and ICMP echo, and TCP sized for NBD throughput (64 KiB .. 1 MiB messages).
 *
 * lwIP 2.1.3's defaults (opt.h) suit a microcontroller: TCP_MSS 536, TCP_WND 4 * MSS,
 * TCP_SND_BUF 2 * MSS, no window scaling, a 1600-byte heap, 16 pool pbufs. One NBD request is
 * larger than all of that, so the TCP and memory settings below are raised, as far as the
 * sanity checks in lwIP's src/core/init.c allow (each check is quoted where it binds). Each
 * setting says why next to it; docs/network.md ("lwIP configuration") has the overview.
 */
#ifndef NET_LWIP_LWIPOPTS_H
#define NET_LWIP_LWIPOPTS_H

/* ---- System: no threads, no OS ------------------------------------------------------- */
#define NO_SYS		     1
#define SYS_LIGHTWEIGHT_PROT 0
#define LWIP_SOCKET	     0
#define LWIP_NETCONN	     0
#define LWIP_TIMERS	     1

/* ---- Memory: everything from newlib's malloc (our page allocator), nothing in .bss ---- */
/* Static pools would land in the .efi file itself (gnu-efi's linker script puts .bss in .data). */
#define MEM_LIBC_MALLOC 1
#define MEMP_MEM_MALLOC 1
#define MEM_ALIGNMENT	8
#define MEM_SIZE	(4 * 1024 * 1024)
/* lwIP's heap goes through a cache of freed blocks (net/lwip/lwip_alloc.h): about four
 * allocations per segment sent or frame received would otherwise each be a newlib malloc()
 * (docs/performance.md, "Copies and allocations"). That header includes nothing itself (its
 * sizes are unsigned long), so including it here pulls no system header into lwIP's. */
#include "net/lwip/lwip_alloc.h"
#define mem_clib_malloc lwip_alloc_malloc
#define mem_clib_free	lwip_alloc_free
#define mem_clib_calloc lwip_alloc_calloc

/* ---- Protocols ------------------------------------------------------------------------ */
#define LWIP_IPV4	    1
#define LWIP_IPV6	    0
#define LWIP_ARP	    1
#define LWIP_ETHERNET	    1
#define LWIP_ICMP	    1
#define LWIP_RAW	    0
#define LWIP_UDP	    1 /* DHCP */
#define LWIP_TCP	    1
#define LWIP_DHCP	    1
#define LWIP_AUTOIP	    0
#define LWIP_IGMP	    0
#define LWIP_DNS	    0
#define IP_REASSEMBLY	    1
#define IP_FRAG		    1
#define ETH_PAD_SIZE	    0
#define ARP_QUEUEING	    1
#define LWIP_NETIF_HOSTNAME 1
/* A DHCP server that hands out an address in use is not our problem to detect; this saves
 * seconds at boot. */
#define DHCP_DOES_ARP_CHECK	   0
#define LWIP_NETIF_STATUS_CALLBACK 1
#define LWIP_NETIF_LINK_CALLBACK   1

/* A packet held in the ARP queue is copied, never kept by reference (lwIP copies only
 * "volatile" pbufs by default): READ replies point into the NBD server's buffers (tcp_write
 * without COPY), which go back to the server when lwIP drops the connection, and a queued
 * reference could later send another request's bytes (docs/network.md, "Closing"). */
#define PBUF_NEEDS_COPY(p) ((void)(p), 1)

/* ---- TCP for throughput ---------------------------------------------------------------- */
#define TCP_MSS 1460
/* Window scaling is required for TCP_WND above 64 KiB; scale 4 allows up to 1 MiB. */
#define LWIP_WND_SCALE 1
#define TCP_RCV_SCALE  4
#define TCP_WND	       (512 * 1024)
/* The send buffer is as large as the firmware's budget of request buffers per connection
 * (8 MiB, boot/efi_main.c; READ data holds it until acknowledged), so a client at QD16 of
 * 256 KiB READs (4 MiB and the reply headers) is never held back by it while the peer's
 * window has room. At 512 KiB it stopped 95% of the output batches with the window open
 * (perf's "tcp output", docs/performance.md "Keeping the pipe full"). It is a limit, not an
 * allocation: lwIP allocates per segment queued, and READ data is sent by reference. */
#define TCP_SND_BUF (8 * 1024 * 1024)
/* init.c: TCP_SNDLOWAT must stay at least 4*MSS below u16_t overflow. */
#define TCP_SNDLOWAT (32 * 1024)
/* init.c: >= 2 * TCP_SND_BUF / TCP_MSS; segments carry at most one MSS each. */
#define TCP_SND_QUEUELEN (4 * TCP_SND_BUF / TCP_MSS)
/* init.c: MEMP_NUM_TCP_SEG >= TCP_SND_QUEUELEN. */
#define MEMP_NUM_TCP_SEG TCP_SND_QUEUELEN
/* Keep out-of-order segments and tell the sender (SACK, new in 2.1): one lost segment then
 * costs one retransmission, not the rest of a 512 KiB window. */
#define TCP_QUEUE_OOSEQ	  1
#define LWIP_TCP_SACK_OUT 1
/* tcp_write() with TCP_WRITE_FLAG_COPY fills the last segment up to the MSS instead of
 * starting a new one per call (reply headers are small copied writes). */
#define TCP_OVERSIZE TCP_MSS
/* Finds clients that vanished without a RST (docs/network.md, "NBD over lwIP"). */
#define LWIP_TCP_KEEPALIVE 1
/* 16+ NBD clients at once, plus the listener and connections being torn down. */
#define MEMP_NUM_TCP_PCB	64
#define MEMP_NUM_TCP_PCB_LISTEN 4
/* PBUF_ROM/REF headers: one per zero-copy tcp_write() piece of READ data still unacknowledged. */
#define MEMP_NUM_PBUF 1024
/* Received frames normally reach lwIP as custom pbufs over the driver's buffers (netif_vnet.c:
 * no copy; pbuf.h enables custom pbufs when IP_FRAG is on, set below explicitly); frames are
 * copied into pool pbufs only when the driver runs short of spare buffers. init.c: the pool
 * must cover the receive window, TCP_WND <= PBUF_POOL_SIZE * (PBUF_POOL_BUFSIZE - headers). */
#define LWIP_SUPPORT_CUSTOM_PBUF 1
#define PBUF_POOL_SIZE		 1024
#define PBUF_POOL_BUFSIZE	 1536

/* ---- Checksums: the NIC may offload; lwIP decides per netif --------------------------- */
#define LWIP_CHECKSUM_CTRL_PER_NETIF 1
/* Off: lwIP's checksum-on-copy sums every piece of data at tcp_write() time whatever the
 * netif's flags say (tcp_priv.h ties it to the compile-time CHECKSUM_GEN_TCP only), so with
 * the device finishing TCP sums (tap, VIRTIO_NET_F_CSUM) it was pure waste: 13% of the guest's
 * cycles in a sequential read. Without offload lwIP sums the same bytes at output instead. */
#define LWIP_CHECKSUM_ON_COPY 0
/* lwIP's own sum (still built: LWIP_CHKSUM_ALGORITHM selects it) is not called: ours is. */
#define LWIP_CHKSUM_ALGORITHM 3
/* Every checksum lwIP computes goes through our counter (lwip_port.c, core/base/perf.h) to
 * inet_sum() (inet_sum.c): the checksum of READ data sent and WRITE data received is on the
 * hot path (user networking offers no VIRTIO_NET_F_CSUM) and TCG makes every guest load and
 * branch count. */
unsigned short thinbox_lwip_chksum(const void *data, int len);
#define LWIP_CHKSUM thinbox_lwip_chksum

/* ---- Diagnostics ------------------------------------------------------------------------ */
#define LWIP_STATS 0
#define LWIP_DEBUG 0

#endif
