/* SPDX-License-Identifier: MIT */
/*
 * lwIP's netif over the virtio-net driver (see netif_vnet.h and docs/network.md).
 *
 * Receive: the driver hands each frame to net_rx_frame() as the list of receive buffers it
 * fills (several with MRG_RXBUF: a large coalesced segment with GUEST_TSO4). Each buffer
 * becomes a custom PBUF_REF pbuf referring to it, chained, and the chain goes to netif->input
 * (NO_SYS: the whole IP/TCP input path runs inside that call); when lwIP frees a pbuf (at
 * once for an ACK, when the application consumed the data otherwise) its buffer goes back to
 * the driver (vnet_rx_release). No copy. Only when the driver is short of spare buffers
 * (lwIP holds too many) is the frame copied into pool pbufs, so the ring never starves. lwIP
 * takes TCP segments larger than its MSS on input (tcp_in.c checks the window, not the MSS),
 * and keeps the headers in the first pbuf, which a page-sized first buffer always holds.
 *
 * Transmit: linkoutput gives the pbuf chain to vnet_tx_frags_ref() by reference: the device
 * reads the pbufs' payloads where they are (lwIP's segment buffers, or with tcp_write without
 * COPY the application's own memory), so the chain holds a pbuf_ref() until the device
 * returns it (tx_done: pbuf_free). lwIP does not retransmit a segment whose pbuf is still
 * referenced (tcp_output_segment_busy), so it never rewrites headers the device is reading.
 * The driver copies instead when that is cheaper or needed (small frames, long chains: see
 * vnet.h); a chain of more than TX_MAX_FRAGS pbufs is flattened here and copied. When the
 * device offers VIRTIO_NET_F_CSUM, lwIP does not compute TCP checksums: the frame carries the
 * pseudo-header sum and the device finishes it (under TCG that runs as host code, several
 * times cheaper than ours). QEMU offers it only with a backend that takes virtio headers
 * (tap); with user networking lwIP computes the sums itself.
 */
#include "net/lwip/netif_vnet.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/perf.h"
#include "core/base/plat.h"
#include "core/base/util.h"
#include "drivers/virtio-net/vnet.h"
#include "net/lwip/ack_merge.h"
#include "net/lwip/lwip_err.h"

#include "lwip/dhcp.h"
#include "lwip/etharp.h"
#include "lwip/init.h"
#include "lwip/ip4_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/prot/dhcp.h"
#include "lwip/timeouts.h"
#include "lwip/priv/tcp_priv.h"
#include "netif/ethernet.h"

_Static_assert(NET_ADDR_STRLEN >= IP4ADDR_STRLEN_MAX, "struct net_status addresses");

#define ETH_HLEN	 14
#define ETHTYPE_IP4	 0x0800
#define TX_MAX_FRAGS	 32
#define TX_RETRY_NS	 (20 * NSEC_PER_MSEC)
#define DEFAULT_HOSTNAME "thinbox"

/* Checksums lwIP always does itself: IP headers (20 bytes; virtio cannot offload them),
 * UDP (DHCP only: not worth the zero-checksum special case) and ICMP. */
#define CSUM_SOFT (NETIF_CHECKSUM_GEN_IP | NETIF_CHECKSUM_GEN_UDP | NETIF_CHECKSUM_GEN_ICMP)
#define CSUM_CHECK_ALL                                                                             \
	(NETIF_CHECKSUM_CHECK_IP | NETIF_CHECKSUM_CHECK_UDP | NETIF_CHECKSUM_CHECK_TCP |           \
	 NETIF_CHECKSUM_CHECK_ICMP)
/* For a frame the device vouched for: only the IP header still needs checking. */
#define CSUM_CHECK_TRUSTED (NETIF_CHECKSUM_CHECK_IP | NETIF_CHECKSUM_CHECK_ICMP)

/* One per driver receive buffer (indexed by its number): the pbuf lwIP holds for it. */
struct rx_pbuf {
	struct pbuf_custom pc; /* first: lwIP's free callback gets the pbuf */
	uint16_t id;
};

static struct {
	struct netif netif;
	struct rx_pbuf *rx_pbufs; /* vn->rx_nbufs of them; NULL: always copy */
	struct vnet *vn;
	bool started;
	bool dhcp;
	bool tx_csum_offload; /* the device (or the driver, test switch) finishes TCP sums */
	bool test_csum_offload;
	char hostname[64];
	ip4_addr_t last_ip; /* announced on the console */
	struct net_stats stats;
	/* A pure ACK held back within a receive batch (net_rx_frame, net_rx_batch_end). */
	struct {
		struct pbuf *p; /* NULL: none */
		struct pure_ack a;
		bool trusted; /* the device checked its sums */
	} held;
} net;

/* The checksums lwIP generates: all but TCP's when the device finishes those. */
static u16_t csum_gen(void)
{
	return CSUM_SOFT | (net.tx_csum_offload ? 0 : NETIF_CHECKSUM_GEN_TCP);
}

/* ---- Receive ------------------------------------------------------------------------------ */

static void rx_pbuf_free(struct pbuf *p)
{
	struct rx_pbuf *r = (struct rx_pbuf *)(void *)p;

	vnet_rx_release(net.vn, r->id);
}

/* The frame's buffers as a chain of custom pbufs (never fails: the pbufs are preallocated). */
static struct pbuf *rx_chain(const struct vnet_rx_frame *f)
{
	struct pbuf *head = NULL;

	for (unsigned i = 0; i < f->nseg; i++) {
		struct rx_pbuf *r = &net.rx_pbufs[f->seg[i].id];
		struct pbuf *q;

		q = pbuf_alloced_custom(PBUF_RAW, (u16_t)f->seg[i].len, PBUF_REF, &r->pc,
					(void *)(uintptr_t)f->seg[i].data, (u16_t)f->seg[i].len);
		if (head)
			pbuf_cat(head, q);
		else
			head = q;
	}
	return head;
}

/* The frame copied into pool pbufs, or NULL. */
static struct pbuf *rx_copy(const struct vnet_rx_frame *f)
{
	struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)f->len, PBUF_POOL);
	u16_t off = 0;

	if (!p)
		return NULL;
	perf_begin();
	for (unsigned i = 0; i < f->nseg; i++) {
		pbuf_take_at(p, f->seg[i].data, (u16_t)f->seg[i].len, off);
		off = (u16_t)(off + f->seg[i].len);
	}
	perf_end(PERF_COPY, f->len);
	perf_payload.rx_frames_copied += f->len;
	net.stats.rx_copied++;
	return p;
}

/*
 * One frame into lwIP. lwIP's checksum checks are per netif, not per packet; but with NO_SYS
 * the whole input path runs inside netif->input, so setting the flags around the call makes
 * them per frame: a frame the device validated (@trusted) skips the TCP/UDP sum.
 */
static void rx_input(struct pbuf *p, bool trusted)
{
	struct netif *nif = &net.netif;

	NETIF_SET_CHECKSUM_CTRL(nif, csum_gen() | (trusted ? CSUM_CHECK_TRUSTED : CSUM_CHECK_ALL));
	if (nif->input(p, nif) != ERR_OK) {
		net.stats.rx_rejected++;
		pbuf_free(p); /* gives kept buffers back through rx_pbuf_free */
	}
}

/* The held ACK, if any, into lwIP now. */
static void rx_release_held(void)
{
	struct pbuf *p = net.held.p;

	if (p) {
		net.held.p = NULL;
		rx_input(p, net.held.trusted);
	}
}

bool net_rx_frame(void *ctx, const struct vnet_rx_frame *f)
{
	struct pure_ack a;
	bool keep, trusted = f->flags & VNET_RX_CSUM_OK;
	struct pbuf *p;

	(void)ctx;
	if (!net.started)
		return false;
	if (f->len > 0xffff) {
		/* A pbuf chain's length is 16 bits: 14 + 65535 does not fit. Counted as refused. */
		net.stats.rx_rejected++;
		return false;
	}
	perf_begin();
	keep = f->may_keep && net.rx_pbufs;
	p = keep ? rx_chain(f) : rx_copy(f);
	if (!p) {
		net.stats.rx_nomem++;
		perf_end(PERF_NET_RX, f->len);
		return false;
	}
	/*
	 * A pure ACK waits for the next frame: if that is a later ACK of the same connection,
	 * this one is redundant and goes back unread (ack_merge.h). Anything else goes in after
	 * it, in order. The batch's end (net_rx_batch_end) hands in the last one.
	 */
	if (f->nseg == 1 && pure_ack_parse(f->seg[0].data, f->seg[0].len, &a)) {
		if (net.held.p && pure_ack_supersedes(&a, &net.held.a)) {
			pbuf_free(net.held.p);
			net.held.p = NULL;
			net.stats.rx_acks_merged++;
		}
		rx_release_held();
		net.held.p = p;
		net.held.a = a;
		net.held.trusted = trusted;
	} else {
		rx_release_held();
		rx_input(p, trusted);
	}
	perf_end(PERF_NET_RX, f->len);
	return keep;
}

void net_rx_batch_end(void *ctx)
{
	(void)ctx;
	if (!net.held.p)
		return;
	perf_begin();
	rx_release_held();
	perf_end(PERF_NET_RX, 0);
}

/* ---- Transmit ----------------------------------------------------------------------------- */

/*
 * For an unfragmented IPv4/TCP frame: store the pseudo-header sum in the TCP checksum field
 * (lwIP left 0 there, NETIF_CHECKSUM_GEN_TCP being off) and say where the sum goes. False for
 * any other frame, whose checksums lwIP computed.
 */
static bool tcp_csum_prepare(struct pbuf *p, struct vnet_csum *cs)
{
	uint8_t h[ETH_HLEN + 20];
	uint32_t sum = 0;
	unsigned ihl, tot, tcplen;

	if (pbuf_copy_partial(p, h, sizeof(h), 0) != sizeof(h))
		return false;
	if ((h[12] << 8 | h[13]) != ETHTYPE_IP4 || (h[14] >> 4) != 4 || h[23] != IP_PROTO_TCP)
		return false;
	/* TCP never fragments here (MSS + headers <= MTU); a fragment would have no TCP header. */
	if (((h[20] << 8 | h[21]) & 0x3fff) != 0)
		return false;
	ihl = (h[14] & 0xf) * 4u;
	tot = (unsigned)(h[16] << 8 | h[17]);
	if (ihl < 20 || tot < ihl + 20 || ETH_HLEN + tot > p->tot_len)
		return false;
	tcplen = tot - ihl;
	for (unsigned i = 26; i < 34; i += 2) /* source and destination addresses */
		sum += (uint32_t)(h[i] << 8 | h[i + 1]);
	sum += IP_PROTO_TCP + tcplen;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	cs->start = (uint16_t)(ETH_HLEN + ihl);
	cs->offset = 16; /* struct tcp_hdr: chksum */
	pbuf_put_at(p, (u16_t)(cs->start + cs->offset), (u8_t)(sum >> 8));
	pbuf_put_at(p, (u16_t)(cs->start + cs->offset + 1), (u8_t)sum);
	return true;
}

/* The device returned a frame sent by reference: drop the chain's reference. */
static void tx_done(void *ctx, void *ref)
{
	(void)ctx;
	pbuf_free(ref);
}

static err_t linkoutput(struct netif *nif, struct pbuf *p)
{
	struct vnet_frag frags[TX_MAX_FRAGS];
	uint8_t flat[VNET_MAX_FRAME];
	struct vnet_csum cs;
	const struct vnet_csum *csp = NULL;
	unsigned n = 0;
	uint64_t deadline = 0;
	struct pbuf *q, *ref;
	int rc;

	perf_begin();
	if (net.tx_csum_offload && tcp_csum_prepare(p, &cs))
		csp = &cs;
	for (q = p; q && n < TX_MAX_FRAGS; q = q->next)
		frags[n++] = (struct vnet_frag){ q->payload, q->len };
	if (q) {
		/* A segment built from many small writes: flatten it (one frame, <= MTU). */
		if (p->tot_len > sizeof(flat)) {
			net.stats.tx_dropped++;
			perf_end(PERF_NET_TX, 0);
			return ERR_VAL;
		}
		perf_begin();
		pbuf_copy_partial(p, flat, p->tot_len, 0);
		perf_end(PERF_COPY, p->tot_len);
		frags[0] = (struct vnet_frag){ flat, p->tot_len };
		n = 1;
	}
	/* Taken before the driver may keep the chain, given back below if it does not. */
	ref = q ? NULL : p;
	if (ref)
		pbuf_ref(ref);
	/*
	 * Every transmit buffer in flight: QEMU completes them on its own thread, so wait a
	 * bounded moment rather than drop (a dropped TCP segment costs a retransmission timeout).
	 */
	while ((rc = vnet_tx_frags_ref(net.vn, frags, n, csp, ref)) == -EAGAIN) {
		uint64_t now = plat_now_ns();

		if (!deadline) {
			deadline = now + TX_RETRY_NS;
			net.stats.tx_retries++;
		} else if (now >= deadline) {
			break;
		}
		__builtin_ia32_pause(); /* x86 only, like the firmware */
		vnet_poll(net.vn);
	}
	if (rc == VNET_TX_REFERENCED)
		rc = 0; /* tx_done frees it */
	else if (ref)
		pbuf_free(ref);
	if (rc)
		net.stats.tx_dropped++;
	perf_end(PERF_NET_TX, p->tot_len);
	return net_err_from_errno(rc);
}

uint64_t net_tx_epoch(void)
{
	return net.started ? vnet_tx_ref_seq(net.vn) : 0;
}

bool net_tx_returned(uint64_t epoch)
{
	return !net.started || vnet_tx_ref_returned(net.vn, epoch);
}

/* ---- Interface ----------------------------------------------------------------------------- */

static unsigned prefix_len(const ip4_addr_t *mask)
{
	uint32_t m = lwip_ntohl(ip4_addr_get_u32(mask));
	unsigned n = 0;

	while (m & 0x80000000u) {
		n++;
		m <<= 1;
	}
	return n;
}

static void announce(struct netif *nif)
{
	char a[IP4ADDR_STRLEN_MAX], g[IP4ADDR_STRLEN_MAX];

	if (ip4_addr_cmp(netif_ip4_addr(nif), &net.last_ip))
		return;
	net.last_ip = *netif_ip4_addr(nif);
	if (ip4_addr_isany_val(net.last_ip)) {
		plat_printf("thinbox: net no address\n");
		return;
	}
	ip4addr_ntoa_r(netif_ip4_addr(nif), a, sizeof(a));
	ip4addr_ntoa_r(netif_ip4_gw(nif), g, sizeof(g));
	plat_printf("thinbox: net %s/%u gw %s (%s)\n", a, prefix_len(netif_ip4_netmask(nif)), g,
		    net.dhcp ? "dhcp" : "static");
}

static void status_changed(struct netif *nif)
{
	announce(nif);
}

static err_t vnet_netif_init(struct netif *nif)
{
	const uint8_t *mac = vnet_mac(net.vn);

	nif->name[0] = 'e';
	nif->name[1] = 'n';
	nif->output = etharp_output;
	nif->linkoutput = linkoutput;
	nif->mtu = net.vn->mtu;
	nif->hwaddr_len = ETH_HWADDR_LEN;
	memcpy(nif->hwaddr, mac, ETH_HWADDR_LEN);
	nif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET;
	netif_set_hostname(nif, net.hostname);
	/* With offload, TCP sums are finished by the device; see tcp_csum_prepare(). */
	net.tx_csum_offload = virtio_has(net.vn->vdev, VIRTIO_NET_F_CSUM) || net.test_csum_offload;
	NETIF_SET_CHECKSUM_CTRL(nif, csum_gen() | CSUM_CHECK_ALL);
	return ERR_OK;
}

/* "A.B.C.D/N" -> address and netmask. */
static int parse_cidr(const char *s, ip4_addr_t *addr, ip4_addr_t *mask)
{
	char buf[IP4ADDR_STRLEN_MAX];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned long plen;
	char *end;

	if (!slash || alen == 0 || alen >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (!ip4addr_aton(buf, addr))
		return -EINVAL;
	plen = strtoul(slash + 1, &end, 10);
	if (end == slash + 1 || *end != '\0' || plen < 1 || plen > 32)
		return -EINVAL;
	ip4_addr_set_u32(mask, lwip_htonl(plen == 32 ? 0xffffffffu : ~(0xffffffffu >> plen)));
	return 0;
}

int net_start(struct vnet *vn, const struct net_config *cfg)
{
	ip4_addr_t ip, mask, gw;
	int rc;

	if (net.started)
		return -EALREADY;
	ip4_addr_set_zero(&ip);
	ip4_addr_set_zero(&mask);
	ip4_addr_set_zero(&gw);
	net.dhcp = !cfg->ip || strcmp(cfg->ip, "dhcp") == 0;
	if (!net.dhcp) {
		rc = parse_cidr(cfg->ip, &ip, &mask);
		if (rc) {
			plat_printf("thinbox: net: ip=%s is not ADDR/PREFIX\n", cfg->ip);
			return rc;
		}
		if (cfg->gateway && !ip4addr_aton(cfg->gateway, &gw)) {
			plat_printf("thinbox: net: gateway=%s is not an address\n", cfg->gateway);
			return -EINVAL;
		}
	}
	snprintf(net.hostname, sizeof(net.hostname), "%s",
		 cfg->hostname ? cfg->hostname : DEFAULT_HOSTNAME);
	net.vn = vn;
	net.test_csum_offload = cfg->test_csum_offload;
	/* Without them every frame is copied (slower, still correct). Each is tied to its buffer
	 * once here; pbuf_alloced_custom() per frame sets only the pbuf fields. */
	net.rx_pbufs = calloc(vn->rx_nbufs, sizeof(*net.rx_pbufs));
	for (unsigned i = 0; net.rx_pbufs && i < vn->rx_nbufs; i++) {
		net.rx_pbufs[i].id = (uint16_t)i;
		net.rx_pbufs[i].pc.custom_free_function = rx_pbuf_free;
	}
	vnet_set_tx_done(vn, tx_done, NULL);
	lwip_init();
	if (!netif_add(&net.netif, &ip, &mask, &gw, NULL, vnet_netif_init, ethernet_input))
		return -EIO;
	netif_set_status_callback(&net.netif, status_changed);
	netif_set_default(&net.netif);
	netif_set_up(&net.netif);
	if (vnet_link_up(vn))
		netif_set_link_up(&net.netif);
	net.started = true;
	if (net.dhcp) {
		rc = net_errno(dhcp_start(&net.netif));
		if (rc) {
			plat_printf("thinbox: net: DHCP did not start (%d)\n", rc);
			return rc;
		}
		plat_printf("thinbox: net DHCP started on %s\n", vn->name);
	} else {
		announce(&net.netif);
	}
	return 0;
}

void net_poll(void)
{
	if (!net.started)
		return;
	/* The driver refreshes the link a few times a second (vnet_poll); follow it. DHCP
	 * restarts by itself when the link comes back (dhcp_network_changed). */
	if (vnet_link_up(net.vn) != netif_is_link_up(&net.netif)) {
		if (vnet_link_up(net.vn))
			netif_set_link_up(&net.netif);
		else
			netif_set_link_down(&net.netif);
		plat_printf("thinbox: net link %s\n", vnet_link_up(net.vn) ? "up" : "down");
	}
	sys_check_timeouts();
}

uint32_t net_next_timer_ms(void)
{
	u32_t ms;

	if (!net.started)
		return UINT32_MAX;
	ms = sys_timeouts_sleeptime();
	return ms == SYS_TIMEOUTS_SLEEPTIME_INFINITE ? UINT32_MAX : ms;
}

/* ---- Status (the `net` command is in boot/devices.c) --------------------------------------- */

static const char *dhcp_state_name(struct netif *nif)
{
	const struct dhcp *d = netif_dhcp_data(nif);

	if (!net.dhcp)
		return "off (static)";
	if (!d)
		return "stopped";
	switch (d->state) {
	case DHCP_STATE_OFF:
		return "off";
	case DHCP_STATE_REQUESTING:
		return "requesting";
	case DHCP_STATE_INIT:
		return "init";
	case DHCP_STATE_REBOOTING:
		return "rebooting";
	case DHCP_STATE_REBINDING:
		return "rebinding";
	case DHCP_STATE_RENEWING:
		return "renewing";
	case DHCP_STATE_SELECTING:
		return "selecting";
	case DHCP_STATE_CHECKING:
		return "checking";
	case DHCP_STATE_BOUND:
		return "bound";
	case DHCP_STATE_BACKING_OFF:
		return "backing off";
	default:
		return "other";
	}
}

static unsigned count_pcbs(struct tcp_pcb *list)
{
	unsigned n = 0;

	for (; list; list = list->next)
		n++;
	return n;
}

static const char *csum_by(void)
{
	if (!net.tx_csum_offload)
		return "lwip";
	return virtio_has(net.vn->vdev, VIRTIO_NET_F_CSUM) ? "device" : "driver (test switch)";
}

void net_get_status(struct net_status *st)
{
	struct netif *nif = &net.netif;

	*st = (struct net_status){ .started = net.started };
	if (!net.started)
		return;
	ip4addr_ntoa_r(netif_ip4_addr(nif), st->addr, sizeof(st->addr));
	ip4addr_ntoa_r(netif_ip4_netmask(nif), st->netmask, sizeof(st->netmask));
	ip4addr_ntoa_r(netif_ip4_gw(nif), st->gateway, sizeof(st->gateway));
	st->prefix_len = prefix_len(netif_ip4_netmask(nif));
	st->dhcp_state = dhcp_state_name(nif);
	st->link_up = netif_is_link_up(nif);
	st->mtu = nif->mtu;
	memcpy(st->mac, nif->hwaddr, sizeof(st->mac));
	st->stats = net.stats;
	st->tcp_active = count_pcbs(tcp_active_pcbs);
	st->tcp_time_wait = count_pcbs(tcp_tw_pcbs);
	for (struct tcp_pcb_listen *l = tcp_listen_pcbs.listen_pcbs; l; l = l->next)
		st->tcp_listening++;
	st->tcp_csum_by = csum_by();
}
