/* SPDX-License-Identifier: MIT */
/*
 * The firmware's NBD over TLS (docs/tls.md "The firmware") and the `tls` shell command.
 *
 * thinbox.cfg takes nbdkit's names: `tls = off|on|require`, `tls-psk = \keys.psk` (a psktool
 * keys file on the ESP), `tls-certificates = \tls` (a directory on the ESP with ca-cert.pem,
 * server-cert.pem, server-key.pem), `tls-verify-peer = on|off`. The ESP is gone after
 * ExitBootServices, so the files are read before it (boot/efi_main.c, with the EFI file
 * protocol) into loader memory, and used after it, once entropy is up:
 *
 *   tls_fw_plan()      before ExitBootServices: the ESP paths to read, from the four values
 *   (efi_main.c reads each wanted file into files[i].data, or sets files[i].rc)
 *   tls_fw_setup()     after entropy_setup(), before the NBD server listens
 *
 * Any problem (a bad value, an unreadable or malformed file, no entropy source) is printed
 * and TLS is refused; the NBD server must then not listen at all: there is no silent
 * plaintext fallback. Keys are never printed, and the files' bytes are wiped once loaded.
 *
 * The shell: `tls` shows the configuration (mode, PSK identities, certificates' subject,
 * issuer and validity, client certificate checks, handshake counters); `tls selftest` runs
 * mbedTLS's in-memory PSK handshake (net/tls/tls_selftest.h) seeded from plat_random().
 */
#ifndef BOOT_TLS_CMD_H
#define BOOT_TLS_CMD_H

#include <stddef.h>

struct shell;
struct nbd_server;

#define TLS_FW_FILE_MAX (64 * 1024) /* bytes of one keys or PEM file; larger is refused */
#define TLS_FW_PATH_MAX 128	    /* an ESP path, backslashes, ASCII */

enum tls_fw_file_id {
	TLS_FW_PSK,  /* the tls-psk file */
	TLS_FW_CERT, /* tls-certificates\server-cert.pem */
	TLS_FW_KEY,  /* tls-certificates\server-key.pem */
	TLS_FW_CA,   /* tls-certificates\ca-cert.pem (optional without tls-verify-peer) */
	TLS_FW_NFILES,
};

struct tls_fw_file {
	char path[TLS_FW_PATH_MAX]; /* "\keys.psk"; "" when not wanted */
	char *data;		    /* NUL-terminated, memory that stays ours; NULL when not read */
	size_t len;
	int rc; /* the read: 0, -ENOENT, -EFBIG (over TLS_FW_FILE_MAX), -ENAMETOOLONG, -errno */
};

struct tls_fw_input {
	/* thinbox.cfg's values (NULL when absent), kept by the caller for good. */
	const char *mode, *psk, *certs, *verify;
	struct tls_fw_file files[TLS_FW_NFILES];
};

/*
 * Fill @in->files[].path from @in->psk and @in->certs ('/' taken as '\', a leading '\'
 * added). A path too long for TLS_FW_PATH_MAX gets rc -ENAMETOOLONG and an empty path.
 */
void tls_fw_plan(struct tls_fw_input *in);

/*
 * Check the values, load the credentials into a TLS server seeded from plat_random() and
 * set @srv's TLS mode; messages on the console ("thinbox: tls: ..."). Wipes the files' bytes.
 * 0 when NBD may be served (TLS off and no TLS key set, or TLS set up); -EINVAL (bad value,
 * bad or missing file), -EIO (no entropy source) or -ENOMEM when TLS was asked for and
 * refused: the caller must then not serve NBD. @in must stay valid (the shell shows it).
 */
int tls_fw_setup(struct tls_fw_input *in, struct nbd_server *srv);

/* No network, so tls_fw_setup() will not run: wipe the files' bytes all the same. */
void tls_fw_discard(struct tls_fw_input *in);

/* One line for `net`: "nbd tls: require (PSK, X.509)" or why it was refused, with '\n'. */
void tls_fw_net_line(struct shell *sh);

/* Register `tls`. */
void tls_cmd_init(struct shell *sh);

#endif
