/* SPDX-License-Identifier: MIT */
/*
 * PSK keys files, in the format psktool writes and nbdkit (--tls-psk) and qemu
 * (tls-creds-psk's keys.psk) read: one key a line, `IDENTITY:HEXKEY`.
 *
 * Parsed strictly, so a typing mistake is refused instead of silently losing a key: every
 * line is an identity (1..TLS_PSK_MAX_IDENTITY printable ASCII characters, no space and no
 * ':'), one ':', and an even number of hex digits making TLS_PSK_MIN_KEY..TLS_PSK_MAX_KEY
 * bytes; empty lines are skipped; anything else (a carriage return, a second ':', a
 * duplicate identity) refuses the whole file. Errors name the line, never the key. No
 * mbedTLS type here: the firmware's shell and the host's main may include it.
 */
#ifndef NET_TLS_TLS_PSK_H
#define NET_TLS_TLS_PSK_H

#include <stddef.h>
#include <stdint.h>

#define TLS_PSK_MAX_IDENTITY 255
#define TLS_PSK_MIN_KEY	     16 /* 128 bits: shorter keys are refused as weak */
#define TLS_PSK_MAX_KEY	     32 /* mbedTLS 2.28's MBEDTLS_PSK_MAX_LEN (psktool's default size) */

struct tls_psk_key {
	char identity[TLS_PSK_MAX_IDENTITY + 1];
	uint8_t key[TLS_PSK_MAX_KEY];
	size_t key_len;
};

struct tls_psk_keys {
	struct tls_psk_key *keys;
	unsigned n;
};

/*
 * Parse @len bytes of a keys file into @out (freed with tls_psk_free()). 0; -EINVAL with a
 * message in @err ("line 3: key is not hex") for a malformed file or one without keys;
 * -ENOMEM.
 */
int tls_psk_parse(const char *text, size_t len, struct tls_psk_keys *out, char *err, size_t errlen);

/* The key for an identity of @len bytes, or NULL. */
const struct tls_psk_key *tls_psk_find(const struct tls_psk_keys *k, const void *identity,
				       size_t len);

/* Wipe and free the keys. */
void tls_psk_free(struct tls_psk_keys *k);

#endif
