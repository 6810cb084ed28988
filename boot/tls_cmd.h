/* SPDX-License-Identifier: MIT */
/*
 * The `tls` shell command (firmware): `tls selftest` runs mbedTLS's in-memory PSK handshake
 * and data exchange (net/tls/tls_selftest.h) inside the firmware, the proof that the library
 * built freestanding on newlib links and works (tests/qemu/tls_selftest.t, docs/tls.md).
 */
#ifndef BOOT_TLS_CMD_H
#define BOOT_TLS_CMD_H

struct shell;

/* Register `tls` with @sh. */
void tls_cmd_init(struct shell *sh);

#endif
