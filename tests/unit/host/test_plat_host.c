/* SPDX-License-Identifier: MIT */
/*
 * host/plat_host.c's plat_host_poll(): after work the main loop polls on without sleeping, so
 * input that arrives within the spin finds its thread awake (no voluntary context switch); with
 * no spin it sleeps in poll() until the input comes; the spin ends at its bound when nothing
 * comes, and then poll() sleeps for the rest as asked.
 */
#include "tests/support/harness.h"
#include "core/base/plat.h"
#include "host/plat_host.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSEC 1000000ull

static long sleeps(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return ru.ru_nvcsw; /* voluntary context switches: the times this thread slept */
}

struct writer {
	int fd;
	unsigned delay_ms;
};

static void *write_later(void *arg)
{
	struct writer *w = arg;
	struct timespec ts = { 0, (long)w->delay_ms * 1000000L };

	nanosleep(&ts, NULL);
	if (write(w->fd, "x", 1) != 1)
		return NULL;
	return arg;
}

/* Input @delay_ms after the call, @spin_ns of spin: poll()'s result and the sleeps meanwhile. */
static int poll_with_input(unsigned delay_ms, uint64_t spin_ns, long *nsleeps)
{
	struct writer w;
	struct pollfd pfd;
	pthread_t t;
	int sv[2], rc;
	long s0;

	if (!ok(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0))
		return -1;
	w.fd = sv[1];
	w.delay_ms = delay_ms;
	pfd = (struct pollfd){ .fd = sv[0], .events = POLLIN };
	if (!ok(pthread_create(&t, NULL, write_later, &w) == 0))
		return -1;
	s0 = sleeps();
	rc = plat_host_poll(&pfd, 1, 10000, spin_ns);
	*nsleeps = sleeps() - s0;
	pthread_join(t, NULL);
	ok(rc == 1 && (pfd.revents & POLLIN));
	close(sv[0]);
	close(sv[1]);
	return rc;
}

/* Input 5 ms later within a 2 s spin: the thread never slept (a yield to another thread is
 * not a sleep: it counts as an involuntary switch). */
TEST(input_within_the_spin_finds_the_thread_awake)
{
	long n = -1;

	poll_with_input(5, 2000 * MSEC, &n);
	ok_eq(n, 0);
	/* The same input without a spin: poll() slept until it came. */
	poll_with_input(5, 0, &n);
	ok(n >= 1);
}

/* Nothing arrives: the spin gives up after its bound and poll() sleeps out the timeout. */
TEST(spin_ends_at_its_bound_then_sleeps)
{
	struct pollfd pfd;
	int sv[2];
	uint64_t t0, dt;
	long s0;

	if (!ok(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0))
		return;
	pfd = (struct pollfd){ .fd = sv[0], .events = POLLIN };
	s0 = sleeps();
	t0 = plat_now_ns();
	ok_eq(plat_host_poll(&pfd, 1, 30, 20 * MSEC), 0);
	dt = plat_now_ns() - t0;
	ok(dt >= 50 * MSEC - MSEC); /* the 20 ms spin, then poll()'s own 30 ms */
	ok(dt < 5000 * MSEC);
	ok(sleeps() - s0 >= 1);
	/* A timeout of 0 never spins: a busy loop does not wait at all. */
	t0 = plat_now_ns();
	ok_eq(plat_host_poll(&pfd, 1, 0, 2000 * MSEC), 0);
	ok(plat_now_ns() - t0 < 1000 * MSEC);
	close(sv[0]);
	close(sv[1]);
}
