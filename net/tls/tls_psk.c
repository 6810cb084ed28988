/* SPDX-License-Identifier: MIT */
/*
 * psktool keys files (contract: tls_psk.h).
 */
#include "net/tls/tls_psk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Wipe a key's bytes in a way the compiler may not drop. */
static void wipe(void *p, size_t n)
{
	volatile uint8_t *v = p;

	while (n--)
		*v++ = 0;
}

/* One line (without its newline) into @k; a message in @why when it is refused. */
static int parse_line(const char *s, size_t len, struct tls_psk_key *k, const char **why)
{
	const char *colon = memchr(s, ':', len);
	size_t il, hl, i;

	if (memchr(s, '\r', len)) {
		*why = "carriage return (the file must have Unix line ends)";
		return -EINVAL;
	}
	if (!colon) {
		*why = "no ':' (want IDENTITY:HEXKEY)";
		return -EINVAL;
	}
	il = (size_t)(colon - s);
	hl = len - il - 1;
	if (!il || il > TLS_PSK_MAX_IDENTITY) {
		*why = il ? "identity longer than 255 bytes" : "empty identity";
		return -EINVAL;
	}
	for (i = 0; i < il; i++) {
		if (s[i] <= ' ' || s[i] > '~') {
			*why = "identity has a space or a character that is not printable ASCII";
			return -EINVAL;
		}
	}
	if (memchr(colon + 1, ':', hl)) {
		*why = "more than one ':'";
		return -EINVAL;
	}
	if (hl % 2) {
		*why = "key has an odd number of hex digits";
		return -EINVAL;
	}
	if (hl / 2 < TLS_PSK_MIN_KEY) {
		*why = "key shorter than 16 bytes (32 hex digits)";
		return -EINVAL;
	}
	if (hl / 2 > TLS_PSK_MAX_KEY) {
		*why = "key longer than 32 bytes (64 hex digits), mbedTLS's limit";
		return -EINVAL;
	}
	for (i = 0; i < hl; i += 2) {
		int hi = hexval(colon[1 + i]), lo = hexval(colon[2 + i]);

		if (hi < 0 || lo < 0) {
			wipe(k->key, sizeof(k->key));
			*why = "key is not hex";
			return -EINVAL;
		}
		k->key[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(k->identity, s, il);
	k->identity[il] = '\0';
	k->key_len = hl / 2;
	return 0;
}

int tls_psk_parse(const char *text, size_t len, struct tls_psk_keys *out, char *err, size_t errlen)
{
	size_t pos = 0, cap = 0;
	unsigned line = 0;
	int rc = 0;

	out->keys = NULL;
	out->n = 0;
	if (errlen)
		err[0] = '\0';
	while (pos < len) {
		const char *s = text + pos, *nl = memchr(s, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - s) : len - pos;
		const char *why = NULL;
		struct tls_psk_key k;

		pos += ll + (nl ? 1 : 0);
		line++;
		if (!ll)
			continue;
		if (memchr(s, '\0', ll)) {
			snprintf(err, errlen, "line %u: a NUL byte (not a text file)", line);
			rc = -EINVAL;
			break;
		}
		rc = parse_line(s, ll, &k, &why);
		if (rc) {
			snprintf(err, errlen, "line %u: %s", line, why);
			break;
		}
		if (tls_psk_find(out, k.identity, strlen(k.identity))) {
			snprintf(err, errlen, "line %u: identity '%s' appears twice", line,
				 k.identity);
			wipe(&k, sizeof(k));
			rc = -EINVAL;
			break;
		}
		if (out->n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			struct tls_psk_key *nk = calloc(ncap, sizeof(*nk));

			if (!nk) {
				wipe(&k, sizeof(k));
				rc = -ENOMEM;
				break;
			}
			if (out->n)
				memcpy(nk, out->keys, out->n * sizeof(*nk));
			wipe(out->keys, cap * sizeof(*nk));
			free(out->keys);
			out->keys = nk;
			cap = ncap;
		}
		out->keys[out->n++] = k;
		wipe(&k, sizeof(k));
	}
	if (!rc && !out->n) {
		snprintf(err, errlen, "no keys (want IDENTITY:HEXKEY lines)");
		rc = -EINVAL;
	}
	if (rc)
		tls_psk_free(out);
	return rc;
}

const struct tls_psk_key *tls_psk_find(const struct tls_psk_keys *k, const void *identity,
				       size_t len)
{
	for (unsigned i = 0; i < k->n; i++)
		if (strlen(k->keys[i].identity) == len &&
		    !memcmp(k->keys[i].identity, identity, len))
			return &k->keys[i];
	return NULL;
}

void tls_psk_free(struct tls_psk_keys *k)
{
	if (k->keys)
		wipe(k->keys, k->n * sizeof(*k->keys));
	free(k->keys);
	k->keys = NULL;
	k->n = 0;
}
