/* SPDX-License-Identifier: MIT */
/*
 * End to end through a real TCP socket on 127.0.0.1 (host/nbd_sock.c over a filedisk
 * export, the main loop's poll() / nbd_sock_process() pass run here): WRITEs of 64 KiB and
 * more are spliced from the socket into a pipe and from the pipe into the file (docs/nbd.md
 * "Payloads spliced into the file"). A client thread sends them with their headers
 * and payloads cut into pieces that arrive apart (short sleeps between them), several in
 * flight, mixed with small WRITEs that take the usual path; then reads every reply. Checked:
 * every reply is a success, the file holds exactly the bytes written, and the counters say
 * the large payloads went through pipes (nbd_sock_splice_stats(): spliced, or a pipe that
 * filled before its payload was in and was read into the buffer) and reached the file by
 * splice() or by the pipe's bounce (filedisk_spliced_writes() / filedisk_handle_bounces()).
 */
#include "tests/support/harness.h"
#include "core/base/util.h"
#include "host/hostdev.h"
#include "host/nbd_sock.h"
#include "net/nbd/nbd_proto.h"
#include "tests/support/nbd_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BS	    512u
#define NBLK	    8192u /* 4 MiB */
#define WAIT_NS	    20000000000ull
#define SMALL_WRITE 4096u

struct wr {
	uint64_t off;
	uint32_t len;
	size_t piece; /* bytes per send() */
};

/* The large ones spliced; the 4 KiB ones below SPLICE_MIN_BYTES take the buffer path. */
static const struct wr mixed[] = {
	{ 0, 262144, 70000 },	       { 262144, 262144, 1448 },      { 1048576, 65536, 9000 },
	{ 524288, SMALL_WRITE, 1000 }, { 2097152, 524288, 131072 },   { 786432, 131072, 4096 },
	{ 3145728, 262144, 262144 },   { 917504, SMALL_WRITE, 4096 }, { 1572864, 65536, 512 },
	{ 2883584, 262144, 33333 },
};

/* Payloads in 1 KiB pieces, each sent apart: one splice() each, a pipe buffer each. */
static const struct wr tiny_pieces[] = {
	{ 0, 65536, 1024 },
	{ 131072, 65536, 1024 },
	{ 262144, 262144, 65536 },
};

struct client {
	int port;
	const struct wr *writes;
	unsigned nwrites;
	uint8_t *image; /* what the file must hold afterwards */
	atomic_bool done;
	bool ok;
	unsigned replies_ok;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool send_all(int fd, const uint8_t *b, size_t len)
{
	while (len) {
		ssize_t n = send(fd, b, len, MSG_NOSIGNAL);

		if (n <= 0)
			return false;
		b += n;
		len -= (size_t)n;
	}
	return true;
}

static bool recv_all(int fd, uint8_t *b, size_t len)
{
	while (len) {
		ssize_t n = recv(fd, b, len, 0);

		if (n <= 0)
			return false;
		b += n;
		len -= (size_t)n;
	}
	return true;
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		p[i] = (uint8_t)(seed >> 56);
	}
}

/*
 * A client connected to 127.0.0.1:@port and past the handshake (export "d"), or -1. Every wait
 * of the client is bounded (10 s socket timeouts).
 */
static int client_connect(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct timeval tv = { .tv_sec = 10 };
	uint8_t b[64], greet[18], ans[10];
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	size_t n = 4;

	if (fd < 0)
		return -1;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) || !recv_all(fd, greet, 18))
		goto fail;
	nbd_put_be32(b, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	n += nbdc_put_opt(b + n, NBD_OPT_EXPORT_NAME, "d", 1);
	if (!send_all(fd, b, n) || !recv_all(fd, ans, 10))
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

/* The server side of a case: a filedisk export "d" served on 127.0.0.1 by host/nbd_sock.c. */
struct served {
	struct blkdev *dev;
	struct nbd_server *srv;
	struct nbd_sock *sock;
	int port;
};

/* Open @file (io_uring, else the worker pool) in the test's directory and serve it. */
static bool serve(struct served *s, const char *file)
{
	struct nbd_export_config cfg = { .name = "d" };
	char path[512];
	int rc;

	snprintf(path, sizeof(path), "%s/%s", test_tmpdir(), file);
	rc = filedisk_open_io(path, BS, true, NBLK, FILEDISK_IO_URING, &s->dev);
	if (rc) {
		printf("  note: io_uring refused here (%d): the worker pool's bounce instead\n",
		       rc);
		rc = filedisk_open_io(path, BS, true, NBLK, FILEDISK_IO_POOL, &s->dev);
	}
	if (!ok_eq(rc, 0))
		return false;
	ok_eq(nbd_server_create(NULL, &s->srv), 0);
	cfg.dev = s->dev;
	if (!s->srv || !ok_eq(nbd_server_add_export(s->srv, &cfg), 0))
		return false;
	if (!ok_eq(nbd_sock_listen(s->srv, "127.0.0.1:0", &s->sock), 0))
		return false;
	s->port = atoi(strrchr(nbd_sock_address(s->sock), ':') + 1);
	return true;
}

static void unserve(struct served *s)
{
	nbd_sock_close(s->sock);
	if (s->srv)
		nbd_server_destroy(s->srv);
	blkdev_destroy(s->dev);
}

/* One pass of the main loop (host/main.c): wait for the sockets at most @ms, serve them. */
static void pass(struct served *s, int ms)
{
	struct pollfd fds[16];
	unsigned n = nbd_sock_pollfds(s->sock, fds, 16);

	poll(fds, n, ms);
	nbd_sock_process(s->sock, fds, n);
}

/* Passes for @ns nanoseconds. */
static void serve_for(struct served *s, uint64_t ns)
{
	for (uint64_t t = now_ns() + ns; now_ns() < t;)
		pass(s, 10);
}

static void *client_main(void *arg)
{
	struct client *cl = arg;
	int fd;

	cl->ok = false;
	fd = client_connect(cl->port);
	if (fd < 0)
		goto out;
	for (unsigned i = 0; i < cl->nwrites; i++) {
		const struct wr *w = &cl->writes[i];
		uint8_t hdr[28];

		nbdc_put_req(hdr, NBD_CMD_WRITE, 0, 100 + i, w->off, w->len);
		/* The header in two pieces, then the payload in w->piece pieces, apart. */
		if (!send_all(fd, hdr, 10))
			goto out;
		usleep(500);
		if (!send_all(fd, hdr + 10, 18))
			goto out;
		usleep(1000); /* most often the header is read alone, as after a large WRITE */
		for (size_t pos = 0; pos < w->len; pos += w->piece) {
			size_t k = w->len - pos < w->piece ? w->len - pos : w->piece;

			if (!send_all(fd, cl->image + w->off + pos, k))
				goto out;
			usleep(300);
		}
	}
	for (unsigned i = 0; i < cl->nwrites; i++) {
		uint8_t rep[16];

		if (!recv_all(fd, rep, 16) || nbd_get_be32(rep) != NBD_SIMPLE_REPLY_MAGIC)
			goto out;
		if (nbd_get_be32(rep + 4) == 0)
			cl->replies_ok++;
	}
	cl->ok = true;
out:
	if (fd >= 0)
		close(fd);
	atomic_store(&cl->done, true);
	return NULL;
}

static void run(const struct wr *writes, unsigned nwrites, bool pipes_exact)
{
	struct served s = { 0 };
	struct client cl = { .writes = writes, .nwrites = nwrites };
	uint8_t *back = malloc((size_t)NBLK * BS);
	uint64_t spliced0, fallbacks0, spliced, fallbacks, large = 0;
	uint64_t deadline = now_ns() + WAIT_NS;
	pthread_t th;
	bool started = false;

	cl.image = calloc(NBLK, BS);
	if (!ok(back && cl.image))
		goto out;
	for (unsigned i = 0; i < nwrites; i++) {
		fill(cl.image + writes[i].off, writes[i].len, 1000 + i);
		large += writes[i].len >= 65536;
	}
	if (!serve(&s, "splice-e2e.img"))
		goto out;
	cl.port = s.port;
	nbd_sock_pipes_exact(pipes_exact);
	nbd_sock_splice_stats(&spliced0, &fallbacks0);
	if (!ok_eq(pthread_create(&th, NULL, client_main, &cl), 0))
		goto out;
	started = true;
	/* The main loop's pass (host/main.c), bounded. */
	while (!atomic_load(&cl.done) && now_ns() < deadline)
		pass(&s, nbd_sock_timeout_ms(s.sock, 10));
	ok(atomic_load(&cl.done));
	pthread_join(th, NULL);
	started = false;
	ok(cl.ok);
	ok_eq(cl.replies_ok, nwrites);
	nbd_sock_splice_stats(&spliced, &fallbacks);
	printf("  note: %llu payloads spliced, %llu pipes filled early; in the file: %llu by "
	       "splice, %llu bounced\n",
	       (unsigned long long)(spliced - spliced0),
	       (unsigned long long)(fallbacks - fallbacks0),
	       (unsigned long long)filedisk_spliced_writes(s.dev),
	       (unsigned long long)filedisk_handle_bounces(s.dev));
	/*
	 * Large payloads went into pipes, small ones never. Not necessarily every large one: a
	 * header read together with the first bytes of its payload (the first request, one after
	 * a small WRITE, or any while the connection's budget was full) leaves the payload begun
	 * in the input buffer, and it takes the buffer path as before.
	 */
	ok(spliced - spliced0 >= 1);
	ok((spliced - spliced0) + (fallbacks - fallbacks0) <= large);
	ok_eq(filedisk_spliced_writes(s.dev) + filedisk_handle_bounces(s.dev), spliced - spliced0);
	if (filedisk_backend(s.dev) == FILEDISK_IO_URING)
		ok(filedisk_spliced_writes(s.dev) >= 1);
	ok_eq(blkdev_read(s.dev, 0, NBLK, back), 0);
	ok(!memcmp(back, cl.image, (size_t)NBLK * BS));
	if (pipes_exact) {
		/* A 64 KiB pipe holds 16 pieces: the 1 KiB ones filled it, the rest went on by recv. */
		ok(fallbacks - fallbacks0 >= 1);
		nbd_sock_pipes_exact(false);
	}
out:
	if (started) {
		/* The client gives up by its own socket timeouts; keep serving until then. */
		while (!atomic_load(&cl.done) && s.sock)
			pass(&s, 10);
		pthread_join(th, NULL);
	}
	unserve(&s);
	free(back);
	free(cl.image);
}

TEST(large_writes_through_a_socket_are_spliced_into_the_file)
{
	run(mixed, ARRAY_SIZE(mixed), false);
}

TEST(a_pipe_full_before_its_payload_is_in_goes_on_through_the_buffer)
{
	run(tiny_pieces, ARRAY_SIZE(tiny_pieces), true);
}

/*
 * The server closes a connection while its payload is half spliced into a pipe (the export
 * removed with force, as the shell's `nbd export remove --force` does; an allow list that
 * leaves the client out, or out of memory for a reply, likewise): the request is gone, so the
 * rest of the payload must not be handed over. The client sends a header and half of a
 * 256 KiB payload, the server splices that half, the export goes, then the other half comes.
 * Checked: the server goes on (no payload handed over to a request that is no more), the
 * client sees the connection closed without a reply, the file is untouched.
 */
struct half {
	int port;
	uint8_t *payload;
	atomic_int stage; /* 1: half sent; 2: the export is gone, send the rest; 3: done */
	bool closed;	  /* the client saw the end of the connection, no reply */
	bool vanish;	  /* instead: reset the connection after the half */
};

static void *half_client(void *arg)
{
	struct half *h = arg;
	uint8_t hdr[28], rep[16];
	uint64_t deadline = now_ns() + WAIT_NS;
	int fd = client_connect(h->port);

	if (fd < 0)
		goto out;
	nbdc_put_req(hdr, NBD_CMD_WRITE, 0, 7, 0, 262144);
	if (!send_all(fd, hdr, 28))
		goto out;
	usleep(20000); /* the header is read alone: the payload is spliced */
	if (!send_all(fd, h->payload, 131072))
		goto out;
	if (h->vanish) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		usleep(50000); /* the half goes into the pipe first */
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		goto out; /* closed with a reset */
	}
	atomic_store(&h->stage, 1);
	while (atomic_load(&h->stage) < 2 && now_ns() < deadline)
		usleep(1000);
	/* The server may have closed already: a reset here is fine. */
	send_all(fd, h->payload + 131072, 131072);
	h->closed = recv(fd, rep, sizeof(rep), 0) <= 0;
out:
	if (fd >= 0)
		close(fd);
	atomic_store(&h->stage, 3);
	return NULL;
}

TEST(a_connection_closed_by_the_server_mid_payload_hands_nothing_over)
{
	struct served s = { 0 };
	struct half h = { 0 };
	uint8_t *back = malloc(262144), *zero = calloc(1, 262144);
	uint64_t spliced0, fallbacks0, spliced, fallbacks, deadline = now_ns() + WAIT_NS;
	pthread_t th;
	bool started = false;

	h.payload = malloc(262144);
	if (!ok(back && zero && h.payload))
		goto out;
	fill(h.payload, 262144, 77);
	if (!serve(&s, "splice-gone.img"))
		goto out;
	h.port = s.port;
	nbd_sock_splice_stats(&spliced0, &fallbacks0);
	if (!ok_eq(pthread_create(&th, NULL, half_client, &h), 0))
		goto out;
	started = true;
	while (atomic_load(&h.stage) < 1 && now_ns() < deadline)
		pass(&s, 10);
	/* A few passes: the half that came goes into the pipe. */
	serve_for(&s, 100000000ull);
	ok_eq(nbd_server_remove_export(s.srv, "d", true), 0);
	atomic_store(&h.stage, 2);
	while (atomic_load(&h.stage) < 3 && now_ns() < deadline)
		pass(&s, 10);
	ok_eq(atomic_load(&h.stage), 3);
	pthread_join(th, NULL);
	started = false;
	ok(h.closed);
	nbd_sock_splice_stats(&spliced, &fallbacks);
	ok_eq(spliced - spliced0, 0);
	ok_eq(filedisk_spliced_writes(s.dev) + filedisk_handle_bounces(s.dev), 0);
	ok_eq(blkdev_read(s.dev, 0, 262144 / BS, back), 0);
	ok(!memcmp(back, zero, 262144));
out:
	if (started) {
		while (atomic_load(&h.stage) < 3 && s.sock)
			pass(&s, 10);
		pthread_join(th, NULL);
	}
	unserve(&s);
	free(back);
	free(zero);
	free(h.payload);
}

/*
 * A client that resets its connection with half a payload in a pipe: that pipe must never
 * serve another payload with those bytes still in it (the next payload would reach the file
 * behind them, shifted). The client sends a header and half of a 256 KiB payload and resets;
 * then another client writes 256 KiB at 0 and 256 KiB behind it, through pipes from the same
 * pool. Checked: the file holds exactly the second client's bytes, and its payloads went
 * through pipes.
 */
static const struct wr after_reset[] = {
	{ 0, 262144, 262144 },
	{ 262144, 262144, 262144 },
};

TEST(a_payload_cut_short_by_a_reset_leaves_no_bytes_for_the_next)
{
	struct served s = { 0 };
	struct half h = { .vanish = true };
	struct client cl = { .writes = after_reset, .nwrites = ARRAY_SIZE(after_reset) };
	uint8_t *back = malloc(524288);
	uint64_t spliced0, fallbacks0, spliced, fallbacks, deadline = now_ns() + WAIT_NS;
	pthread_t th;
	bool started = false, started2 = false;

	h.payload = malloc(262144);
	cl.image = calloc(NBLK, BS);
	if (!ok(back && h.payload && cl.image))
		goto out;
	fill(h.payload, 262144, 5);
	fill(cl.image, 524288, 6);
	if (!serve(&s, "splice-reset.img"))
		goto out;
	h.port = cl.port = s.port;
	if (!ok_eq(pthread_create(&th, NULL, half_client, &h), 0))
		goto out;
	started = true;
	while (atomic_load(&h.stage) < 3 && now_ns() < deadline)
		pass(&s, 10);
	pthread_join(th, NULL);
	started = false;
	/* A few passes: the server sees the reset and drops the connection. */
	serve_for(&s, 100000000ull);
	nbd_sock_splice_stats(&spliced0, &fallbacks0);
	if (!ok_eq(pthread_create(&th, NULL, client_main, &cl), 0))
		goto out;
	started2 = true;
	while (!atomic_load(&cl.done) && now_ns() < deadline)
		pass(&s, 10);
	ok(atomic_load(&cl.done));
	pthread_join(th, NULL);
	started2 = false;
	ok(cl.ok);
	ok_eq(cl.replies_ok, ARRAY_SIZE(after_reset));
	nbd_sock_splice_stats(&spliced, &fallbacks);
	ok(spliced - spliced0 >= 1);
	ok_eq(blkdev_read(s.dev, 0, 524288 / BS, back), 0);
	ok(!memcmp(back, cl.image, 524288));
out:
	if (started || started2) {
		while (!(started ? atomic_load(&h.stage) == 3 : atomic_load(&cl.done)) && s.sock)
			pass(&s, 10);
		pthread_join(th, NULL);
	}
	unserve(&s);
	free(back);
	free(h.payload);
	free(cl.image);
}
