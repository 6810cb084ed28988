/* SPDX-License-Identifier: MIT */
/* Host-only additions to core/base/plat.h, for host/main.c and the tests. */
#ifndef HOST_PLAT_HOST_H
#define HOST_PLAT_HOST_H

#include <stdbool.h>
#include <stdint.h>

/* True once plat_poweroff() was called or SIGINT/SIGTERM arrived. */
bool plat_host_stop_requested(void);
/* Ask the main loop to stop (used by the signal handlers). */
void plat_host_request_stop(void);
/* Tests: move plat_now_ns() forward by @ns (timers fire without waiting for them). */
void plat_host_clock_advance(uint64_t ns);

#endif
