/* SPDX-License-Identifier: MIT */
/*
 * HMAC_DRBG with SHA-256 (NIST SP 800-90A Rev. 1 §10.1.2): the deterministic half of the
 * firmware's entropy pool (entropy.h). Security strength 256 bits; no derivation function
 * needed (§10.1.2 takes entropy input of any length). Checked against NIST's CAVP vectors
 * (HMAC_DRBG.rsp, SHA-256) in tests/unit/core/test_sha256.c.
 *
 * Prediction resistance is the caller's business (reseed when it wants it); this file only
 * enforces the standard's limits and our reseed interval.
 */
#ifndef CORE_BASE_HMAC_DRBG_H
#define CORE_BASE_HMAC_DRBG_H

#include "core/base/sha256.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Table 2: at most 2^19 bits per generate call. */
#define HMAC_DRBG_MAX_REQUEST 65536
/* Entropy input for a 256-bit strength: at least 256 bits (§10.1.2.3, §10.1.2.4). */
#define HMAC_DRBG_MIN_ENTROPY 32
/* Table 2: entropy input, nonce, personalization and additional input are each < 2^35 bits;
 * our callers pass a few hundred bytes, so a far smaller bound catches a bad length. */
#define HMAC_DRBG_MAX_INPUT 4096

struct hmac_drbg {
	uint8_t K[SHA256_DIGEST_SIZE];
	uint8_t V[SHA256_DIGEST_SIZE];
	uint64_t reseed_counter;  /* generate calls since the last (re)seed, plus one */
	uint64_t reseed_interval; /* generate refuses once the counter passes it (≤ 2^48) */
	bool instantiated;
};

/*
 * Instantiate (§10.1.2.3) from @entropy (≥ HMAC_DRBG_MIN_ENTROPY bytes), a @nonce and a
 * @pers personalization string (either may be NULL with length 0), with the reseed interval
 * @reseed_interval (1..2^48; 0 means 2^48). 0 or -EINVAL (short entropy, bad lengths).
 */
int hmac_drbg_instantiate(struct hmac_drbg *d, const void *entropy, size_t entropy_len,
			  const void *nonce, size_t nonce_len, const void *pers, size_t pers_len,
			  uint64_t reseed_interval);
/* Reseed (§10.1.2.4) with fresh @entropy and optional additional input. 0 or -EINVAL. */
int hmac_drbg_reseed(struct hmac_drbg *d, const void *entropy, size_t entropy_len, const void *add,
		     size_t add_len);
/*
 * Generate (§10.1.2.5) @len bytes (≤ HMAC_DRBG_MAX_REQUEST) into @out, with optional
 * additional input. 0; -EAGAIN when a reseed is required first (the interval has passed:
 * nothing is written); -EINVAL for a bad length or an uninstantiated state.
 */
int hmac_drbg_generate(struct hmac_drbg *d, void *out, size_t len, const void *add, size_t add_len);
/* Uninstantiate (§9.4): wipe the state. */
void hmac_drbg_wipe(struct hmac_drbg *d);

#endif
