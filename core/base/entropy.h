/* SPDX-License-Identifier: MIT */
/*
 * The entropy pool behind the firmware's plat_random(): an HMAC_DRBG (hmac_drbg.h, SP 800-90A,
 * SHA-256, 256-bit strength) seeded and reseeded from registered sources. Portable, so the
 * host tests drive it with fake sources; boot/entropy.c registers the real ones (virtio-rng,
 * RDSEED/RDRAND, TSC jitter).
 *
 * Sources are credited or not. A seed needs ENTROPY_SEED_BYTES (instantiate: 256 bits of
 * entropy plus a 128-bit nonce, SP 800-90A §8.6.7) or ENTROPY_RESEED_BYTES (reseed) from the
 * credited sources together. Every credited source is asked for the whole amount and
 * everything they deliver is concatenated into the seed, so the result is as strong as the
 * best of them: no single source is trusted to be the only input when another exists.
 * Uncredited sources (timing jitter) are mixed in as the nonce and as additional input on
 * every request, and never counted.
 *
 * A credited source's block whose bytes are all the same value (a stuck generator: RDRAND
 * returning all ones, a device returning zeros) is discarded and counted as a failure.
 *
 * Reseeding: after ENTROPY_RESEED_REQUESTS requests. If the sources cannot give a reseed then,
 * the request fails instead of stretching the old seed further.
 */
#ifndef CORE_BASE_ENTROPY_H
#define CORE_BASE_ENTROPY_H

#include "core/base/hmac_drbg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENTROPY_MAX_SOURCES	4
#define ENTROPY_SEED_BYTES	48   /* 256 bits + a 128-bit nonce's worth */
#define ENTROPY_RESEED_BYTES	32   /* 256 bits */
#define ENTROPY_RESEED_REQUESTS 1024 /* our interval, far inside SP 800-90A's 2^48 */
#define ENTROPY_SOURCE_READS	8    /* read calls per source per seed (short reads allowed) */
#define ENTROPY_JITTER_BYTES	16   /* asked of each uncredited source per seed */
#define ENTROPY_STUCK_MIN	8    /* a block of at least this many equal bytes is rejected */

struct entropy_source {
	const char *name;
	/*
	 * Up to @len bytes into @buf: the number delivered (0 when none right now) or a negative
	 * errno (the pool notes it and carries on with the other sources). Must be bounded.
	 */
	int (*read)(void *ctx, uint8_t *buf, size_t len);
	void *ctx;
	bool credited; /* counts toward a seed's entropy */

	/* Kept by the pool. */
	uint64_t bytes;	   /* delivered and used */
	uint64_t reads;	   /* read calls */
	uint64_t failures; /* errors and rejected (stuck) blocks */
	int last_error;	   /* the latest error, 0 when none yet */
};

struct entropy_pool {
	struct hmac_drbg drbg;
	struct entropy_source *src[ENTROPY_MAX_SOURCES];
	unsigned nsrc;
	bool seeded;
	uint64_t seeds;		   /* successful instantiations and reseeds */
	uint64_t seed_failures;	   /* attempts the sources could not satisfy */
	uint64_t requests;	   /* entropy_pool_read() calls answered */
	uint64_t bytes_out;	   /* bytes handed out */
	uint64_t since_reseed;	   /* requests since the last (re)seed */
	uint64_t last_seed_ns;	   /* left 0: the caller may stamp it (shown by `rng`) */
	unsigned last_seed_credit; /* credited bytes in the last successful seed */
	int last_error;		   /* the latest failure of entropy_pool_read(), 0 if none */
};

void entropy_pool_init(struct entropy_pool *p);
/* Register @s (kept by pointer). 0, or -ENOSPC past ENTROPY_MAX_SOURCES. */
int entropy_pool_add_source(struct entropy_pool *p, struct entropy_source *s);
/* True when at least one credited source is registered. */
bool entropy_pool_has_credited(const struct entropy_pool *p);
/*
 * @len bytes of DRBG output into @buf, seeding first when needed. All or nothing:
 *   0        @buf filled;
 *   -ENODEV  no credited source is registered (nothing to seed from);
 *   -EIO     the credited sources delivered too little for the (re)seed that is due;
 *   -EINVAL  @buf NULL with @len > 0.
 * On error @buf is zeroed, so a caller that ignores the result does not use stale bytes.
 */
int entropy_pool_read(struct entropy_pool *p, void *buf, size_t len);
/* Force a reseed now (e.g. after a new source appears). 0, -ENODEV, -EIO. */
int entropy_pool_reseed(struct entropy_pool *p);
/* Wipe the DRBG state; the pool must be seeded again before use. */
void entropy_pool_wipe(struct entropy_pool *p);

#endif
