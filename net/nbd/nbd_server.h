/* SPDX-License-Identifier: MIT */
/*
 * The NBD server: a transport-independent protocol state machine (bytes in, bytes out).
 *
 * One struct nbd_server holds the export table and the connections. A transport (POSIX
 * sockets in host/nbd_sock.c, lwIP's raw API in the firmware) only moves bytes:
 *
 *   accept:      nbd_conn_create()                 the greeting is queued at once
 *   bytes in:    n = nbd_conn_feed(c, buf, len)     keep buf[n..len) and offer it again later;
 *                                                   n < len is back-pressure (too much in
 *                                                   flight for this client)
 *   bytes out:   nbd_conn_output(c, skip, iov, ..)  describe queued output without copying;
 *                nbd_conn_output_done(c, n)         the first n bytes are no longer needed
 *   progress:    nbd_server_poll(srv)              polls the block devices, completes
 *                                                   requests, queues replies; call it every
 *                                                   loop, without sleeping while
 *                                                   nbd_server_busy() is true
 *   close:       nbd_conn_finished(c) says when the transport should close (after DISC, ABORT,
 *                a protocol violation, or end of input, once replies are drained);
 *                nbd_conn_destroy(c) when the transport is gone, for whatever reason.
 *
 * Nothing here blocks or sleeps, and one connection never waits for another: a client that
 * stops reading only fills its own output queue, after which its input is refused
 * (nbd_conn_wants_input() false) until the queue drains.
 *
 * Protocol coverage, error mapping and limits are described in docs/nbd.md. Every function
 * returning int gives 0 or a negative errno.
 */
#ifndef NET_NBD_NBD_SERVER_H
#define NET_NBD_NBD_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/netaddr.h"
#include "core/blkdev.h"
#include "net/nbd/nbd_proto.h"

struct nbd_server;
struct nbd_conn;

/* ---- Limits ------------------------------------------------------------------------------ */

#define NBD_MAX_NAME		   255 /* export names: 1..255 bytes (the spec's SHOULD is 256) */
#define NBD_MAX_DESCRIPTION	   255
#define NBD_DEFAULT_MAX_CONNS	   64
#define NBD_DEFAULT_MAX_EXPORTS	   4096
#define NBD_DEFAULT_MAX_PER_CLIENT 16
#define NBD_MAX_ALLOW		   64 /* prefixes in one export's allow list */

/* Per-server limits; zero fields take the defaults documented here. */
struct nbd_limits {
	unsigned max_conns;	 /* connections at once (64) */
	unsigned max_options;	 /* options per connection before it is dropped (4,224; and
				  * never more than 128 + the live exports) */
	unsigned max_requests;	 /* requests in flight per connection (128) */
	uint32_t max_payload;	 /* largest READ/WRITE, advertised in BLOCK_SIZE (64 MiB) */
	size_t max_conn_bytes;	 /* data buffers held per connection before input stops
				      (64 MiB; one request may exceed it) */
	unsigned max_per_client; /* connections at once from one client address (16) */
	size_t max_server_bytes; /* request buffers of all connections together (1 GiB): a
				    request that would pass it waits, taking no input, until
				    replies are sent or requests complete; a server holding
				    nothing always takes one request */
};

/* ---- Server ------------------------------------------------------------------------------ */

/* Create a server with no exports; @lim may be NULL for the defaults. -ENOMEM, -EINVAL. */
int nbd_server_create(const struct nbd_limits *lim, struct nbd_server **out);

/*
 * Free the server, every connection and every export (calling each export's release()).
 * Connections still open are dropped without replies; requests still inside a block device
 * are waited for with blkdev_poll() (a device must complete them in bounded time).
 */
void nbd_server_destroy(struct nbd_server *srv);

/*
 * Make progress: poll the block devices that have requests in flight, complete requests,
 * queue their replies, retry submissions a full device queue refused, give buffers to
 * requests that waited for memory (max_conn_bytes, max_server_bytes) once it is free. Returns
 * the number of requests that moved (0 when idle).
 */
int nbd_server_poll(struct nbd_server *srv);

/*
 * True while some request waits inside a block device (one whose ops->signals_completion
 * says it will announce the completion does not count: a loop sleeping on that signal may
 * sleep), or one that waited for memory can now have it: poll again without sleeping.
 */
bool nbd_server_busy(const struct nbd_server *srv);

/*
 * Where the server says why it refused someone (an address outside an allow list, the
 * per-client cap): one line each, without the newline. Refusals are always counted
 * (nbd_server_stats); repeated ones from one address are logged only while few (the first
 * 4 in a row, then the 8th, 16th, 32nd, ...), so a client knocking in a loop cannot flood a
 * serial console. @log NULL: nothing is logged.
 */
void nbd_server_set_log(struct nbd_server *srv, void (*log)(void *ctx, const char *line),
			void *ctx);

/* Change the per-client cap (>= 1; -EINVAL for 0). Connections already open stay. */
int nbd_server_set_max_per_client(struct nbd_server *srv, unsigned n);

struct nbd_server_stats {
	unsigned max_per_client;
	uint64_t refused_cap;	 /* connections refused: the client had max_per_client open */
	uint64_t refused_full;	 /* connections refused: max_conns open */
	uint64_t refused_policy; /* export selections refused by an allow list */
};
void nbd_server_stats(const struct nbd_server *srv, struct nbd_server_stats *out);

/* ---- Exports ----------------------------------------------------------------------------- */

/* One extent of the base:allocation map (NBD_STATE_HOLE / NBD_STATE_ZERO flags). */
struct nbd_extent {
	uint64_t length;
	uint32_t flags;
};

struct nbd_export_config {
	const char *name;	 /* 1..NBD_MAX_NAME bytes, no NUL inside; copied */
	const char *description; /* optional (NULL), <= NBD_MAX_DESCRIPTION bytes; copied */
	/*
	 * The data; not owned (see release). Unaligned WRITE / WRITE_ZEROES (the advertised
	 * minimum block size is 1): a device with byte_writes (core/blkdev.h) gets them as
	 * byte ops and orders them itself; for any other the server reads, patches and writes
	 * back the partial blocks, ordered against every write this server sends to @dev (all
	 * connections and exports), not against writes that reach @dev some other way.
	 */
	struct blkdev *dev;
	bool read_only; /* refuse writes with EPERM (also when dev->read_only) */
	/*
	 * Optional allocation map for base:allocation (a thin volume later, SEEK_HOLE on the
	 * host). Fill up to @max extents describing [offset, offset + length) in order from
	 * @offset; return how many (>= 1; they may stop short of the end), or -errno. Called
	 * synchronously from the server's poll/feed. Without it every range reports 0
	 * (allocated data), which the spec says is always safe.
	 */
	int (*extents)(void *ctx, uint64_t offset, uint64_t length, struct nbd_extent *ext,
		       unsigned max);
	/*
	 * Optional dirty maps, offered as meta contexts "qemu:dirty-bitmap:NAME" (qemu-nbd's
	 * name; docs/nbd.md "Dirty bitmaps"); both or neither. bitmap_name() writes the @idx'th
	 * NAME (NUL-terminated, < @len bytes) into @buf and returns 0, or -ENOENT past the last;
	 * the list may change between calls. dirty() fills extents as extents() does, flags
	 * NBD_STATE_DIRTY (changed since bitmap @bitmap) or 0 (unchanged); -ENOENT when the
	 * bitmap no longer exists (the client gets EINVAL with a message), other -errno as
	 * they come. Called synchronously from the server's feed/poll.
	 */
	int (*bitmap_name)(void *ctx, unsigned idx, char *buf, size_t len);
	int (*dirty)(void *ctx, const char *bitmap, uint64_t offset, uint64_t length,
		     struct nbd_extent *ext, unsigned max);
	/*
	 * Optional: called once when the export has been removed (or the server destroyed) and
	 * no connection uses it any more; the owner may then destroy @dev.
	 */
	void (*release)(void *ctx, struct blkdev *dev);
	void *ctx;
	/*
	 * Only over TLS: on a plain connection NBD_OPT_INFO/GO answer NBD_REP_ERR_TLS_REQD
	 * (NBD_REP_ERR_POLICY while TLS is off), NBD_OPT_EXPORT_NAME closes the connection and
	 * NBD_OPT_LIST leaves the export out (proto.md "SELECTIVETLS mode").
	 */
	bool tls_only;
	/*
	 * Who may use it (copied): a client whose address is inside one of these prefixes.
	 * @nallow 0: everyone. A client outside does not see it in NBD_OPT_LIST; GO, INFO and
	 * the meta-context options naming it are answered NBD_REP_ERR_POLICY, EXPORT_NAME
	 * closes the connection (it has no error reply); a connection whose address the
	 * transport could not tell is outside every list. Checked after TLS: under
	 * NBD_TLS_REQUIRE before STARTTLS, and for a @tls_only export on a plain connection, the
	 * TLS refusal is the answer and the list is not consulted. docs/nbd.md, "Who may connect".
	 */
	const struct net_prefix *allow;
	unsigned nallow;
};

/*
 * Add an export. The first export added is the default one (the empty name "" selects it).
 * Every connection, now or later, can then see it in NBD_OPT_LIST and open it.
 * Errors: -EINVAL (name empty, too long or with a NUL; description too long; no device;
 * device block size not a power of two in 512..65536; more than NBD_MAX_ALLOW prefixes or
 * a prefix of an unknown family), -EEXIST (name taken), -ENOSPC (table
 * full: NBD_DEFAULT_MAX_EXPORTS), -ENOMEM.
 */
int nbd_server_add_export(struct nbd_server *srv, const struct nbd_export_config *cfg);

/*
 * Remove an export from the table. From now on no new client can list or open it
 * (ERR_UNKNOWN). Clients already using it: requests in flight complete normally; new
 * requests are answered ESHUTDOWN, which tells the client to disconnect (proto.md "Error
 * values"); with @force, those connections are also closed as soon as their requests in
 * flight have completed and been answered. release() runs when the last one is gone —
 * possibly before this call returns. -ENOENT if no export has that name.
 */
int nbd_server_remove_export(struct nbd_server *srv, const char *name, bool force);

/*
 * Replace the allow list of export @name (@n 0: everyone may use it). Connections in
 * transmission on it from an address the new list leaves out are closed once their requests
 * in flight are answered, as nbd_server_remove_export(.., force) does. -ENOENT, -EINVAL
 * (as for nbd_server_add_export), -ENOMEM (the old list stays).
 */
int nbd_server_set_export_allow(struct nbd_server *srv, const char *name,
				const struct net_prefix *allow, unsigned n);

struct nbd_export_info {
	const char *name;	 /* valid until the export is removed */
	const char *description; /* "" when none */
	uint64_t size;		 /* bytes */
	bool read_only;
	bool tls_only;
	unsigned clients;		/* connections in transmission on it */
	unsigned nallow;		/* its allow list (0: everyone) ... */
	const struct net_prefix *allow; /* ... valid until it changes */
	uint64_t refused;		/* selections of it refused by the list */
};

/* The @idx'th export (0-based, in the order added): 0, or -ENOENT past the last one. */
int nbd_server_export_info(const struct nbd_server *srv, unsigned idx, struct nbd_export_info *out);

/* ---- TLS ------------------------------------------------------------------------------- */

/*
 * NBD_OPT_STARTTLS (docs/nbd.md "TLS"). The server knows no TLS library: it hands the
 * connection's byte stream to a session object behind these calls (net/tls/tls_server.h
 * provides one over mbedTLS; the unit tests use doubles). Once STARTTLS is acknowledged, every
 * later byte in both directions goes through the session: nbd_conn_feed() takes ciphertext,
 * nbd_conn_output() describes ciphertext, and the transports do not change. Nothing blocks:
 * the handshake advances as bytes arrive, in the same calls.
 */
enum nbd_tls_mode {
	NBD_TLS_OFF,	 /* STARTTLS answered NBD_REP_ERR_UNSUP (NOTLS) */
	NBD_TLS_ON,	 /* plain and TLS clients; TLS-only exports need TLS (SELECTIVETLS) */
	NBD_TLS_REQUIRE, /* every option but STARTTLS and ABORT: NBD_REP_ERR_TLS_REQD (FORCEDTLS) */
};

/* How a session moves ciphertext; given to nbd_tls_ops.open(), called from inside it. */
struct nbd_tls_bio {
	/* Queue @len bytes for the peer. 0, or -ENOMEM (the connection then closes). */
	int (*send)(void *conn, const void *buf, size_t len);
	/* Take up to @len received bytes; returns how many (0: none now). */
	size_t (*recv)(void *conn, void *buf, size_t len);
	void *conn;
};

struct nbd_tls_ops {
	/*
	 * STARTTLS arrived and TLS may start: make a session that will use @bio. 0, or -errno
	 * with *@why a message for the client (STARTTLS is then refused with
	 * NBD_REP_ERR_PLATFORM, e.g. no entropy source, and the connection stays plain).
	 */
	int (*open)(void *ctx, const struct nbd_tls_bio *bio, void **sess, const char **why);
	/*
	 * Advance the handshake with what @bio has, then decrypt: >0 plaintext bytes in @buf, 0
	 * when nothing is ready, -ECONNRESET when the peer closed the session, another -errno when
	 * the handshake or a record failed (the connection closes after any alert is sent).
	 */
	int (*read)(void *sess, void *buf, size_t len);
	/* Encrypt @len bytes through @bio: >0 bytes taken, 0 not yet (handshake), -errno failed. */
	int (*write)(void *sess, const void *buf, size_t len);
	/* The NBD session ends: send the close_notify alert through @bio. */
	void (*close)(void *sess);
	/* A short description for nbd_conn_info (version, suite, peer); never NULL. */
	const char *(*describe)(void *sess);
	void (*free)(void *sess);
};

struct nbd_tls_config {
	enum nbd_tls_mode mode;
	const struct nbd_tls_ops *ops; /* required unless mode is NBD_TLS_OFF */
	void *ctx;		       /* passed to ops->open() */
};

/*
 * Set the TLS mode for connections created from now on (a connection keeps its mode: the spec
 * wants one mode for a connection's life). -EINVAL for ON/REQUIRE without ops.
 */
int nbd_server_set_tls(struct nbd_server *srv, const struct nbd_tls_config *cfg);

/* ---- Connections ------------------------------------------------------------------------- */

/*
 * A client's address as the transport saw it: the IP address in network byte order (see
 * core/base/netaddr.h; an IPv4-mapped IPv6 address is taken as the IPv4 address) and the
 * TCP port as a host-order number.
 */
struct nbd_peer {
	struct net_addr addr; /* family NET_AF_NONE: unknown */
	uint16_t port;
};

/*
 * A new client connected from @peer (NULL: unknown): create its state and queue the
 * greeting. -EBUSY when max_conns connections exist already, -EDQUOT (a quota: the per-client one) when max_per_client
 * connections from the same address exist (logged and counted; an unknown address is not
 * capped): close the transport. -ENOMEM.
 */
int nbd_conn_create_peer(struct nbd_server *srv, const struct nbd_peer *peer,
			 struct nbd_conn **out);
/* nbd_conn_create_peer() with an unknown address (allowed only on exports without a list). */
int nbd_conn_create(struct nbd_server *srv, struct nbd_conn **out);

/*
 * Offer received bytes. Returns how many were consumed; the rest must be offered again
 * later (after nbd_server_poll() or after output was sent). Never fails: protocol errors are
 * answered on the wire, or make nbd_conn_finished() true.
 */
size_t nbd_conn_feed(struct nbd_conn *c, const void *buf, size_t len);

/* True when nbd_conn_feed() would consume at least one byte now. */
bool nbd_conn_wants_input(const struct nbd_conn *c);

/*
 * Receiving WRITE payloads without a copy (plain connections; under TLS the payload is
 * decrypted through nbd_conn_feed()). nbd_conn_direct_buf(): while @c waits for the payload
 * of a WRITE, the memory its next *@len bytes belong in (the request's own buffer), else
 * NULL. A transport holding no unfed bytes of @c may receive into it and then report the
 * @n bytes it received (n <= *@len) with nbd_conn_direct_done(), instead of nbd_conn_feed().
 * nbd_conn_hdr_wanted(): after a WRITE of 64 KiB or more, while @c waits for the next
 * request header, how many header bytes are missing (else 0): a transport that receives
 * only those, then feeds them, finds the next large payload's buffer ready for it.
 */
void *nbd_conn_direct_buf(struct nbd_conn *c, size_t *len);
void nbd_conn_direct_done(struct nbd_conn *c, size_t n);
size_t nbd_conn_hdr_wanted(const struct nbd_conn *c);

/*
 * WRITE payloads the transport keeps (plain connections; the host glue: a pipe the payload was
 * spliced into from the socket, docs/nbd.md "Payloads spliced into the file").
 * nbd_conn_direct_handle_len(): the bytes of the WRITE @c waits for, when none of it arrived yet,
 * it is block-aligned and the export's device takes payloads held by the transport (core/blkdev.h
 * handle_writes); else 0. The transport may then, holding no unfed bytes of @c, receive the whole
 * payload into an object of its own and hand it over with nbd_conn_direct_handle_done(): @handle
 * is opaque to the server and goes to the device with the WRITE (blkdev_req.handle);
 * @ops->release(ctx, @handle) runs exactly once, when the request is freed (answered, failed,
 * refused, or dropped at nbd_conn_destroy() / nbd_server_destroy() once the device is done with
 * it), possibly after the connection is gone: @ops must stay valid until then. Until the transport
 * hands the payload over, it feeds @c nothing (and asks nothing else); a transport that cannot
 * finish (the client vanished) just destroys the connection. The server may drop the request
 * meanwhile (it closes the connection: export removed, client no longer allowed): a transport
 * receiving in several steps asks nbd_conn_direct_handle_len() again before each, and hands
 * nothing over once it no longer answers the same length.
 */
struct nbd_handle_ops {
	void (*release)(void *ctx, int handle);
	void *ctx;
};
size_t nbd_conn_direct_handle_len(const struct nbd_conn *c);
void nbd_conn_direct_handle_done(struct nbd_conn *c, int handle, const struct nbd_handle_ops *ops);

/*
 * Borrowed input (the mirror of borrowed output; plain connections). nbd_conn_feed_ref() is
 * nbd_conn_feed() for bytes lying in a piece of the transport's memory, @ref (lwIP: a
 * received pbuf). Bytes of a WRITE's payload among them are not copied: the server calls
 * @ops->hold(ctx, @ref) once for each stretch it keeps, and the request goes to the block
 * device as a segment list over those stretches (core/blkdev.h); @ops->release(ctx, @ref) runs
 * once per hold when the request is freed (answered, failed, dropped by a reset mid-payload or
 * at nbd_conn_destroy() / nbd_server_destroy(), once the device is done with it), possibly
 * long after this call and after the connection is gone: the transport must keep @ops and
 * whatever release needs alive until then. Everything else in @buf (headers, options) is
 * read before the call returns, as with nbd_conn_feed(). The transport may consume its
 * window at once: held pieces count in the connection's budget (max_conn_bytes) as the
 * payload buffer did. Once a connection was fed this way its WRITE buffers are allocated only
 * when a payload has to be copied after all: under TLS, a payload in more pieces than its
 * list holds (one per KiB plus 8, at most 4096) or while the server already holds 1,024
 * pieces (a held piece pins a whole receive buffer), an unaligned WRITE to a device without
 * byte_writes, or bytes given through plain nbd_conn_feed(). perf_payload counts both kinds.
 */
struct nbd_input_ops {
	void (*hold)(void *ctx, void *ref);
	void (*release)(void *ctx, void *ref);
	void *ctx;
};
size_t nbd_conn_feed_ref(struct nbd_conn *c, const void *buf, size_t len,
			 const struct nbd_input_ops *ops, void *ref);

/* The transport reached end of input: no more bytes will come. */
void nbd_conn_input_closed(struct nbd_conn *c);

struct nbd_iov {
	const void *base;
	size_t len;
};

/*
 * Describe queued output, skipping its first @skip bytes (a transport that hands data to a
 * stack without copying passes what it already handed over). Fills up to @max entries; sets
 * *@n and returns the number of bytes they hold.
 *
 * Borrowing: the described memory (READ data lies in the request's own buffer, so a
 * transport may hand it to its stack by reference, as the lwIP glue does until the peer
 * acknowledges it) stays valid and unchanged until nbd_conn_output_done() covers it; only
 * then does its buffer go back to the server's free lists for another request. Nothing else
 * ends a borrow but nbd_conn_destroy(), which frees everything the connection still holds:
 * a transport must make its stack and its NIC drop every reference first (lwIP: wait for the
 * acknowledgement before tcp_close(); after tcp_abort() or tcp_err, wait until the driver
 * returned every frame handed to it by reference before then). Under TLS the described
 * bytes are ciphertext records, new bytes encrypted from the plaintext (which is released
 * once encrypted), with the same rule; a transport that copies (host/nbd_sock.c's
 * sendmsg()) releases at once.
 */
size_t nbd_conn_output(struct nbd_conn *c, size_t skip, struct nbd_iov *iov, unsigned max,
		       unsigned *n);

/* Bytes of output queued and not yet released with nbd_conn_output_done(). */
size_t nbd_conn_output_pending(const struct nbd_conn *c);

/* Requests received and not yet answered (replies still to come; perf_tcp's "starved"). */
unsigned nbd_conn_requests(const struct nbd_conn *c);

/* The first @n bytes of the queued output were sent (or copied) and can be freed. */
void nbd_conn_output_done(struct nbd_conn *c, size_t n);

/*
 * True when the transport should close the connection now: it is ending (DISC, ABORT, a
 * handshake failure, bad request magic, too many options, an export removed with force,
 * end of input) and nothing is in flight or left to send.
 */
bool nbd_conn_finished(const struct nbd_conn *c);

/*
 * The transport is gone (closed after nbd_conn_finished(), or the client vanished). @c must
 * not be used again; requests still inside a block device are completed and dropped by a
 * later nbd_server_poll().
 */
void nbd_conn_destroy(struct nbd_conn *c);

struct nbd_conn_info {
	struct nbd_peer peer;
	const char *export_name; /* NULL while negotiating */
	const char *tls;	 /* NULL when plain; else the session's describe() */
	bool structured;	 /* structured replies negotiated */
	unsigned requests;	 /* requests in flight */
	uint64_t bytes_read;	 /* data bytes answered to READ */
	uint64_t bytes_written;	 /* data bytes accepted by WRITE */
};

/* The @idx'th live connection: 0, or -ENOENT past the last one. */
int nbd_server_conn_info(const struct nbd_server *srv, unsigned idx, struct nbd_conn_info *out);

#endif
