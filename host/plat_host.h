/* SPDX-License-Identifier: MIT */
/* Host-only additions to core/base/plat.h, for host/main.c and the tests. */
#ifndef HOST_PLAT_HOST_H
#define HOST_PLAT_HOST_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

/* True once plat_poweroff() was called or SIGINT/SIGTERM arrived. */
bool plat_host_stop_requested(void);
/* Ask the main loop to stop (used by the signal handlers). */
void plat_host_request_stop(void);
/* Tests: move plat_now_ns() forward by @ns (timers fire without waiting for them). */
void plat_host_clock_advance(uint64_t ns);

/*
 * poll(2) for a main loop that has just done work: when it would sleep (@timeout_ms not 0),
 * first poll without sleeping for up to @spin_ns, yielding the core between tries (a client on
 * the same core runs; alone, the yield returns at once), so that input arriving meanwhile
 * finds the thread awake instead of paying a wake-up from another core. @spin_ns 0: plain
 * poll(). Returns what poll() returns (-1 with errno set on failure).
 */
int plat_host_poll(struct pollfd *fds, unsigned nfds, int timeout_ms, uint64_t spin_ns);

#endif
