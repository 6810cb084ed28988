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
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define IN_BUF_BYTES (256 * 1024)
#define MAX_IOV	     64

struct sconn {
	struct sconn *next;
	struct nbd_conn *c;
	int fd;
	bool eof;      /* the client closed its side */
	bool eof_told; /* ... and the server knows */
	uint8_t *in;   /* received, not yet consumed by the server */
	size_t in_start, in_end;
};

struct nbd_sock {
	struct nbd_server *srv;
	int lfd;
	struct sconn *conns;
	char addr[96];
};

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
			void *d = nbd_conn_direct_buf(sc->c, &dlen);

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
