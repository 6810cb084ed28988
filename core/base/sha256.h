/* SPDX-License-Identifier: MIT */
/*
 * SHA-256 (FIPS 180-4 §6.2) and HMAC-SHA-256 (FIPS 198-1, RFC 2104), freestanding: what the
 * entropy pool's DRBG (hmac_drbg.h) is built on. Written from the standards, checked against
 * their published examples (tests/unit/core/test_sha256.c). Not constant-time with respect to
 * the message length, which is never secret here; no data-dependent branches or table lookups
 * on the message or key bytes.
 *
 * None of these calls fails: they take any length (up to 2^61 - 1 bytes in all, the
 * standard's 2^64 - 1 bits).
 */
#ifndef CORE_BASE_SHA256_H
#define CORE_BASE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_SIZE 32
#define SHA256_BLOCK_SIZE  64

struct sha256_ctx {
	uint32_t h[8];
	uint64_t bytes; /* message length so far */
	uint8_t buf[SHA256_BLOCK_SIZE];
	size_t fill; /* bytes waiting in buf */
};

void sha256_init(struct sha256_ctx *c);
void sha256_update(struct sha256_ctx *c, const void *data, size_t len);
/* Write the digest and wipe @c (it must be initialised again before reuse). */
void sha256_final(struct sha256_ctx *c, uint8_t out[SHA256_DIGEST_SIZE]);
/* One-shot digest of @len bytes at @data. */
void sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST_SIZE]);

struct hmac_sha256_ctx {
	struct sha256_ctx inner, outer; /* both already fed their padded key block */
};

/* A key longer than the block is hashed first (FIPS 198-1 §4, step 2). */
void hmac_sha256_init(struct hmac_sha256_ctx *c, const void *key, size_t key_len);
void hmac_sha256_update(struct hmac_sha256_ctx *c, const void *data, size_t len);
/* Write the MAC and wipe @c. */
void hmac_sha256_final(struct hmac_sha256_ctx *c, uint8_t out[SHA256_DIGEST_SIZE]);
void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
		 uint8_t out[SHA256_DIGEST_SIZE]);

/* Zero @len bytes at @p in a way the compiler may not drop as a dead store (key material). */
void secure_wipe(void *p, size_t len);

#endif
