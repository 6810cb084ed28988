/* SPDX-License-Identifier: MIT */
/*
 * POSIX sockets under the NBD server (see nbd_sock.h). Every socket is non-blocking and the
 * main loop's poll() decides when to read or write, so a slow or vanished client costs the
 * others nothing: reading stops when its input buffer is full or the server refuses more
 * (back-pressure), and writing stops at EAGAIN until POLLOUT.
 */
#include "host/nbd_sock.h"
#include "host/hostdev.h"
#include "core/base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define IN_BUF_BYTES (256 * 1024)
#define MAX_IOV	     64
/* WRITE payloads spliced into a pipe (splice_payload()): from this size, up to PIPE_MAX. */
#define SPLICE_MIN_BYTES (64 * 1024)
#define NPIPES		 32

/*
 * The pipes WRITE payloads are spliced into, process-wide: a pipe goes with its request to
 * the export's device and comes back through pipe_release() when the server frees the
 * request, which may be after its connection (or this listener) is gone.
 */
struct spipe {
	int rfd, wfd; /* -1: no pipe in this entry */
	size_t cap;   /* F_SETPIPE_SZ's answer */
	bool busy;    /* filling, or with a request */
};
static struct spipe pipes[NPIPES];
static bool pipes_init;
static size_t pipe_refused = SIZE_MAX; /* a size F_SETPIPE_SZ refused: no larger is tried */
static uint64_t pipe_spliced, pipe_fallbacks;
static bool pipe_exact; /* seam: pipes only as large as the payload */

struct sconn {
	struct sconn *next;
	struct nbd_conn *c;
	int fd;
	bool eof;      /* the client closed its side */
	bool eof_told; /* ... and the server knows */
	uint8_t *in;   /* received, not yet consumed by the server */
	size_t in_start, in_end;
	int pipe;		    /* pipes[] entry a payload is being spliced into, or -1 */
	size_t pipe_want, pipe_got; /* its length, and the bytes in the pipe so far */
};

struct nbd_sock {
	struct nbd_server *srv;
	int lfd;
	struct sconn *conns;
	char addr[96];
};

static void pipe_drop(struct spipe *p)
{
	close(p->rfd);
	close(p->wfd);
	p->rfd = p->wfd = -1;
	p->cap = 0;
	p->busy = false;
}

/* Back to the pool, or closed when it still holds bytes (a payload not consumed). */
static void pipe_put(int idx)
{
	struct spipe *p = &pipes[idx];
	int left = 0;

	if (ioctl(p->rfd, FIONREAD, &left) || left)
		pipe_drop(p);
	else
		p->busy = false;
}

/* nbd_handle_ops.release: the server freed a request whose payload came in a pipe. */
static void pipe_release(void *ctx, int handle)
{
	(void)ctx;
	for (int i = 0; i < NPIPES; i++) {
		if (pipes[i].rfd == handle && pipes[i].busy) {
			pipe_put(i);
			return;
		}
	}
}

static const struct nbd_handle_ops pipe_ops = { .release = pipe_release };

/*
 * A free pipe that holds @len bytes, busy from now on: its index, or -1 (all taken, or the
 * kernel will not make a pipe that large: pipe-max-size, 1 MiB by default, for users
 * without CAP_SYS_RESOURCE). Twice the payload when allowed: a pipe holds a number of
 * pieces (pages), and a socket's pieces may be smaller than a page.
 */
static int pipe_get(size_t len)
{
	int i, fds[2], free_slot = -1;

	if (!pipes_init) {
		for (i = 0; i < NPIPES; i++)
			pipes[i].rfd = pipes[i].wfd = -1;
		pipes_init = true;
	}
	if (len >= pipe_refused)
		return -1;
	for (i = 0; i < NPIPES; i++) {
		if (pipes[i].busy)
			continue;
		if (pipes[i].rfd >= 0 && pipes[i].cap >= len) {
			pipes[i].busy = true;
			return i;
		}
		if (free_slot < 0 || pipes[i].rfd < 0)
			free_slot = i;
	}
	if (free_slot < 0)
		return -1;
	if (pipes[free_slot].rfd >= 0)
		pipe_drop(&pipes[free_slot]); /* too small: a larger one in its place */
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC))
		return -1;
	{
		int want = (int)(pipe_exact ? len : MIN(2 * len, (size_t)1 << 20)), got;

		got = fcntl(fds[1], F_SETPIPE_SZ, want);
		if (got < 0 || (size_t)got < len) {
			/*
			 * EPERM: over pipe-max-size, no larger one again. (EPERM also comes when this
			 * user's pipes are over pipe-user-pages-soft, for users without
			 * CAP_SYS_RESOURCE: that one passes, yet this size stays off here too.)
			 * Short of memory: next time.
			 */
			if (got >= 0 || errno == EPERM)
				pipe_refused = len;
			close(fds[0]);
			close(fds[1]);
			return -1;
		}
		pipes[free_slot].cap = (size_t)got;
	}
	pipes[free_slot].rfd = fds[0];
	pipes[free_slot].wfd = fds[1];
	pipes[free_slot].busy = true;
	return free_slot;
}

void nbd_sock_pipes_exact(bool exact)
{
	pipe_exact = exact;
	for (int i = 0; pipes_init && i < NPIPES; i++)
		if (pipes[i].rfd >= 0 && !pipes[i].busy)
			pipe_drop(&pipes[i]);
}

void nbd_sock_splice_stats(uint64_t *spliced, uint64_t *fallbacks)
{
	*spliced = pipe_spliced;
	*fallbacks = pipe_fallbacks;
}

static int set_nonblock_opts(int fd)
{
	int one = 1;

	/* Replies are written whole; waiting for more would only add latency. */
	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ? -errno : 0;
}

int nbd_sock_listen(struct nbd_server *srv, const char *addr, struct nbd_sock **out)
{
	struct addrinfo hints, *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[64], port[16], hbuf[64], pbuf[16];
	const char *colon = strrchr(addr, ':');
	struct nbd_sock *s;
	size_t hl;
	int fd, one = 1, rc;

	if (!colon || colon == addr || !colon[1] || strlen(colon + 1) >= sizeof(port))
		return -EINVAL;
	hl = (size_t)(colon - addr);
	if (addr[0] == '[') { /* [IPv6]:PORT */
		if (hl < 2 || addr[hl - 1] != ']')
			return -EINVAL;
		addr++;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, addr, hl);
	host[hl] = '\0';
	snprintf(port, sizeof(port), "%s", colon + 1);

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if (getaddrinfo(host, port, &hints, &res) || !res)
		return -EINVAL;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		freeaddrinfo(res);
		return rc;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 128) ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl)) {
		rc = -errno;
		freeaddrinfo(res);
		close(fd);
		return rc;
	}
	freeaddrinfo(res);
	s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		return -ENOMEM;
	}
	s->srv = srv;
	s->lfd = fd;
	if (getnameinfo((struct sockaddr *)&ss, sl, hbuf, sizeof(hbuf), pbuf, sizeof(pbuf),
			NI_NUMERICHOST | NI_NUMERICSERV))
		snprintf(s->addr, sizeof(s->addr), "?");
	else if (ss.ss_family == AF_INET6)
		snprintf(s->addr, sizeof(s->addr), "[%s]:%s", hbuf, pbuf);
	else
		snprintf(s->addr, sizeof(s->addr), "%s:%s", hbuf, pbuf);
	*out = s;
	return 0;
}

const char *nbd_sock_address(const struct nbd_sock *s)
{
	return s->addr;
}

unsigned nbd_sock_max_fds(const struct nbd_sock *s)
{
	return 2 + NBD_DEFAULT_MAX_CONNS; /* the listener, the file completions, the clients */
}

static void sconn_close(struct nbd_sock *s, struct sconn *sc)
{
	struct sconn **p;

	for (p = &s->conns; *p; p = &(*p)->next) {
		if (*p == sc) {
			*p = sc->next;
			break;
		}
	}
	if (sc->pipe >= 0)
		pipe_put(sc->pipe); /* a payload cut short: the pipe is closed */
	nbd_conn_destroy(sc->c);
	close(sc->fd);
	free(sc->in);
	free(sc);
}

/* The client's address from accept(): sin_addr / sin6_addr are network order already. */
static void peer_of(const struct sockaddr_storage *ss, socklen_t len, struct nbd_peer *p)
{
	memset(p, 0, sizeof(*p));
	if (ss->ss_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		p->addr.family = NET_AF_INET;
		memcpy(p->addr.bytes, &in->sin_addr, 4);
		p->port = ntohs(in->sin_port);
	} else if (ss->ss_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		p->addr.family = NET_AF_INET6;
		memcpy(p->addr.bytes, &in6->sin6_addr, 16);
		p->port = ntohs(in6->sin6_port);
	}
}

static void accept_all(struct nbd_sock *s)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct nbd_peer peer;
		struct sconn *sc;

		if (fd < 0)
			return; /* EAGAIN, or a transient error: poll will tell us again */
		peer_of(&ss, sl, &peer);
		sc = calloc(1, sizeof(*sc));
		if (sc)
			sc->in = malloc(IN_BUF_BYTES);
		/*
		 * A full server (-EBUSY), a client at its connection cap (-EDQUOT; the server
		 * logged it) or no memory: the client sees the connection close.
		 */
		if (!sc || !sc->in || set_nonblock_opts(fd) ||
		    nbd_conn_create_peer(s->srv, &peer, &sc->c)) {
			if (sc)
				free(sc->in);
			free(sc);
			close(fd);
			continue;
		}
		sc->fd = fd;
		sc->pipe = -1;
		sc->next = s->conns;
		s->conns = sc;
	}
}

unsigned nbd_sock_pollfds(struct nbd_sock *s, struct pollfd *fds, unsigned max)
{
	struct sconn *sc;
	unsigned n = 0;

	if (max == 0)
		return 0;
	fds[n].fd = s->lfd;
	fds[n].events = POLLIN;
	fds[n].revents = 0;
	n++;
	/* The exports' file completions wake the same poll() as the sockets. */
	if (filedisk_wake_fd() >= 0 && n < max) {
		fds[n].fd = filedisk_wake_fd();
		fds[n].events = POLLIN;
		fds[n].revents = 0;
		n++;
	}
	for (sc = s->conns; sc && n < max; sc = sc->next) {
		fds[n].fd = sc->fd;
		fds[n].events = 0;
		fds[n].revents = 0;
		if (!sc->eof && sc->in_end - sc->in_start < IN_BUF_BYTES)
			fds[n].events |= POLLIN;
		if (nbd_conn_output_pending(sc->c))
			fds[n].events |= POLLOUT;
		n++;
	}
	return n;
}

int nbd_sock_timeout_ms(const struct nbd_sock *s, int idle_ms)
{
	const struct sconn *sc;

	/* Requests inside a filedisk wake us through its eventfd: sleep on it, do not spin. */
	if (nbd_server_busy(s->srv))
		return 0;
	for (sc = s->conns; sc; sc = sc->next)
		if (sc->in_end > sc->in_start && nbd_conn_wants_input(sc->c))
			return 0;
	return idle_ms;
}

static void sconn_feed(struct sconn *sc);

/*
 * A WRITE payload spliced from the socket into a pipe (no copy: the pipe takes references
 * to the socket buffer's pages); once all of it is there the pipe goes with the request to
 * the device (nbd_conn_direct_handle_done()), which splices it into the file. Returns 1 when
 * it made progress, 0 when it had nothing to do (no payload to splice, or the socket is
 * empty: *@n says which, as recv()'s result), -1 when the pipe is full before the payload is
 * in: the pipe's bytes then go into the request's buffer, and the rest of the payload follows
 * there through recv() as usual; -2 when that read from the pipe failed part way (the stream
 * can no longer be put back in order: the connection fails).
 */
static int splice_payload(struct sconn *sc, ssize_t *n)
{
	struct spipe *p;
	size_t dlen = 0;
	uint8_t *d;
	int avail = 0;

	/*
	 * Asked again on every pass: the server may have dropped the request meanwhile (it closed
	 * the connection: export removed, client no longer allowed, out of memory). Its pipe is
	 * then closed with the bytes in it, and the rest of the stream goes the usual way.
	 */
	if (sc->pipe >= 0 && nbd_conn_direct_handle_len(sc->c) != sc->pipe_want) {
		pipe_put(sc->pipe);
		sc->pipe = -1;
	}
	if (sc->pipe < 0) {
		size_t len = nbd_conn_direct_handle_len(sc->c);

		*n = -1;
		errno = EAGAIN;
		if (len < SPLICE_MIN_BYTES || (sc->pipe = pipe_get(len)) < 0)
			return 0;
		sc->pipe_want = len;
		sc->pipe_got = 0;
	}
	p = &pipes[sc->pipe];
	*n = splice(sc->fd, NULL, p->wfd, NULL, sc->pipe_want - sc->pipe_got,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (*n > 0) {
		sc->pipe_got += (size_t)*n;
		if (sc->pipe_got == sc->pipe_want) {
			sc->pipe = -1;
			pipe_spliced++;
			nbd_conn_direct_handle_done(sc->c, p->rfd, &pipe_ops);
		}
		return 1;
	}
	if (*n == 0 || errno != EAGAIN || ioctl(sc->fd, FIONREAD, &avail) || avail <= 0)
		return 0;
	/* The socket has bytes, so the pipe is full: its pieces were smaller than pages. */
	d = nbd_conn_direct_buf(sc->c, &dlen);
	if (!d || dlen < sc->pipe_got)
		return 0; /* not reached: the request waits for its whole payload */
	for (size_t got = 0; got < sc->pipe_got;) {
		ssize_t k = read(p->rfd, d + got, sc->pipe_got - got);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -2;
		got += (size_t)k;
	}
	pipe_fallbacks++;
	pipe_put(sc->pipe);
	sc->pipe = -1;
	nbd_conn_direct_done(sc->c, sc->pipe_got);
	return -1;
}

/*
 * Read what the socket has (into free buffer space). False when the connection failed.
 * Large WRITE payloads skip the buffer: with nothing buffered, a payload the server waits for
 * is received straight into its request buffer, and after such a WRITE the next header is
 * received alone and fed at once, so the payload behind it can go straight in too.
 */
static bool sconn_read(struct sconn *sc)
{
	while (!sc->eof) {
		size_t room, hdr = 0;
		ssize_t n;

		if (sc->in_start && sc->in_start == sc->in_end)
			sc->in_start = sc->in_end = 0;
		if (sc->in_start == sc->in_end) {
			size_t dlen = 0;
			void *d;
			int sp = splice_payload(sc, &n);

			if (sp == -2)
				return false;
			if (sp > 0) {
				if (sc->pipe >= 0)
					return true; /* part of it: poll() says when more comes */
				continue;
			}
			if (sp == 0 && sc->pipe >= 0)
				goto no_data;
			d = nbd_conn_direct_buf(sc->c, &dlen);

			if (d) {
				n = recv(sc->fd, d, dlen, 0);
				if (n > 0) {
					nbd_conn_direct_done(sc->c, (size_t)n);
					if ((size_t)n < dlen)
						return true; /* drained: poll() says when more comes */
					continue;
				}
				goto no_data;
			}
			hdr = nbd_conn_hdr_wanted(sc->c);
		}
		if (sc->in_end == IN_BUF_BYTES && sc->in_start) {
			memmove(sc->in, sc->in + sc->in_start, sc->in_end - sc->in_start);
			sc->in_end -= sc->in_start;
			sc->in_start = 0;
		}
		if (sc->in_end == IN_BUF_BYTES)
			return true;
		room = hdr ? MIN(hdr, IN_BUF_BYTES - sc->in_end) : IN_BUF_BYTES - sc->in_end;
		n = recv(sc->fd, sc->in + sc->in_end, room, 0);
		if (n > 0) {
			sc->in_end += (size_t)n;
			if (hdr)
				sconn_feed(sc);
			/*
			 * Less than asked: the socket is empty now, and another recv() would only say
			 * EAGAIN (one system call per request at queue depth 1). poll() is level-
			 * triggered, so what arrives later, or the end of input, is seen next pass.
			 */
			if ((size_t)n < room)
				return true;
			continue;
		}
	no_data:
		if (n == 0) {
			sc->eof = true;
			return true;
		}
		if (errno == EINTR)
			continue;
		return errno == EAGAIN || errno == EWOULDBLOCK;
	}
	return true;
}

static void sconn_feed(struct sconn *sc)
{
	if (sc->in_end > sc->in_start) {
		size_t k = nbd_conn_feed(sc->c, sc->in + sc->in_start, sc->in_end - sc->in_start);

		sc->in_start += k;
		if (sc->in_start == sc->in_end)
			sc->in_start = sc->in_end = 0;
	}
	if (sc->eof && !sc->eof_told && sc->in_start == sc->in_end) {
		sc->eof_told = true;
		nbd_conn_input_closed(sc->c);
	}
}

/* Send queued output until the socket is full. False when the connection failed. */
static bool sconn_write(struct sconn *sc)
{
	struct nbd_iov iov[MAX_IOV];
	struct iovec v[MAX_IOV];

	while (nbd_conn_output_pending(sc->c)) {
		struct msghdr mh;
		unsigned n, i;
		ssize_t k;

		nbd_conn_output(sc->c, 0, iov, MAX_IOV, &n);
		if (!n) {
			nbd_conn_output_done(sc->c, 0);
			break;
		}
		for (i = 0; i < n; i++) {
			v[i].iov_base = (void *)iov[i].base;
			v[i].iov_len = iov[i].len;
		}
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = v;
		mh.msg_iovlen = n;
		k = sendmsg(sc->fd, &mh, MSG_NOSIGNAL);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK;
		}
		nbd_conn_output_done(sc->c, (size_t)k);
	}
	return true;
}

void nbd_sock_process(struct nbd_sock *s, const struct pollfd *fds, unsigned n)
{
	struct sconn *sc, *next;
	unsigned i;

	if (n && fds[0].fd == s->lfd && (fds[0].revents & POLLIN))
		accept_all(s);
	for (i = 1; i < n; i++) {
		if (!fds[i].revents || fds[i].fd == filedisk_wake_fd())
			continue;
		for (sc = s->conns; sc; sc = sc->next)
			if (sc->fd == fds[i].fd)
				break;
		if (!sc)
			continue;
		if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) && !sconn_read(sc)) {
			sconn_close(s, sc);
			continue;
		}
	}
	/* Every connection, every pass: feed, let the devices run, send, close. */
	for (sc = s->conns; sc; sc = sc->next)
		sconn_feed(sc);
	/*
	 * Cleared before the devices are polled: a completion after this wakes the next poll().
	 * Only when poll() saw it set: otherwise there is nothing to clear (a system call saved).
	 */
	if (n > 1 && fds[1].fd == filedisk_wake_fd() && (fds[1].revents & POLLIN))
		filedisk_wake_clear();
	nbd_server_poll(s->srv);
	for (sc = s->conns; sc; sc = next) {
		next = sc->next;
		sconn_feed(sc); /* budget freed by completions */
		if (!sconn_write(sc) || nbd_conn_finished(sc->c)) {
			sconn_close(s, sc);
			continue;
		}
	}
}

void nbd_sock_close(struct nbd_sock *s)
{
	if (!s)
		return;
	while (s->conns)
		sconn_close(s, s->conns);
	close(s->lfd);
	free(s);
}
