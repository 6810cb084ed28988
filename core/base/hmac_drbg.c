/* SPDX-License-Identifier: MIT */
/* HMAC_DRBG, SHA-256 (SP 800-90A Rev. 1 §10.1.2); see hmac_drbg.h. */
#include "core/base/hmac_drbg.h"

#include <errno.h>
#include <string.h>

#define MAX_INTERVAL (1ull << 48) /* Table 2: maximum number of requests between reseeds */

/* One piece of provided_data; the standard concatenates them, we feed them in turn. */
struct piece {
	const void *p;
	size_t len;
};

/*
 * HMAC_DRBG_Update (§10.1.2.2) with provided_data = the concatenation of @pieces:
 *   K = HMAC(K, V || 0x00 || data); V = HMAC(K, V);
 *   and, when data is not empty, once more with 0x01.
 */
static void drbg_update(struct hmac_drbg *d, const struct piece *pieces, unsigned n)
{
	size_t total = 0;

	for (unsigned i = 0; i < n; i++)
		total += pieces[i].len;
	for (uint8_t round = 0; round < 2; round++) {
		struct hmac_sha256_ctx c;

		hmac_sha256_init(&c, d->K, sizeof(d->K));
		hmac_sha256_update(&c, d->V, sizeof(d->V));
		hmac_sha256_update(&c, &round, 1);
		for (unsigned i = 0; i < n; i++)
			if (pieces[i].len)
				hmac_sha256_update(&c, pieces[i].p, pieces[i].len);
		hmac_sha256_final(&c, d->K);
		hmac_sha256(d->K, sizeof(d->K), d->V, sizeof(d->V), d->V);
		if (total == 0)
			break;
	}
}

static bool len_ok(const void *p, size_t len)
{
	return len <= HMAC_DRBG_MAX_INPUT && (p || len == 0);
}

int hmac_drbg_instantiate(struct hmac_drbg *d, const void *entropy, size_t entropy_len,
			  const void *nonce, size_t nonce_len, const void *pers, size_t pers_len,
			  uint64_t reseed_interval)
{
	struct piece seed[3] = { { entropy, entropy_len },
				 { nonce, nonce_len },
				 { pers, pers_len } };

	if (entropy_len < HMAC_DRBG_MIN_ENTROPY || !len_ok(entropy, entropy_len) ||
	    !len_ok(nonce, nonce_len) || !len_ok(pers, pers_len) || reseed_interval > MAX_INTERVAL)
		return -EINVAL;
	/* §10.1.2.3: Key = 0x00 00...00, V = 0x01 01...01, then Update(seed_material). */
	memset(d->K, 0x00, sizeof(d->K));
	memset(d->V, 0x01, sizeof(d->V));
	drbg_update(d, seed, 3);
	d->reseed_counter = 1;
	d->reseed_interval = reseed_interval ? reseed_interval : MAX_INTERVAL;
	d->instantiated = true;
	return 0;
}

int hmac_drbg_reseed(struct hmac_drbg *d, const void *entropy, size_t entropy_len, const void *add,
		     size_t add_len)
{
	struct piece seed[2] = { { entropy, entropy_len }, { add, add_len } };

	if (!d->instantiated || entropy_len < HMAC_DRBG_MIN_ENTROPY ||
	    !len_ok(entropy, entropy_len) || !len_ok(add, add_len))
		return -EINVAL;
	drbg_update(d, seed, 2);
	d->reseed_counter = 1;
	return 0;
}

int hmac_drbg_generate(struct hmac_drbg *d, void *out, size_t len, const void *add, size_t add_len)
{
	struct piece extra = { add, add_len };
	uint8_t *o = out;

	if (!d->instantiated || len > HMAC_DRBG_MAX_REQUEST || (!out && len) ||
	    !len_ok(add, add_len))
		return -EINVAL;
	/* Step 1: past the interval the caller must reseed; no output from a stale state. */
	if (d->reseed_counter > d->reseed_interval)
		return -EAGAIN;
	/* Step 2: additional input is mixed in before the output is drawn ... */
	if (add_len)
		drbg_update(d, &extra, 1);
	/* Steps 3-5: V = HMAC(K, V), output V's bytes until there are enough. */
	while (len) {
		size_t n = len < sizeof(d->V) ? len : sizeof(d->V);

		hmac_sha256(d->K, sizeof(d->K), d->V, sizeof(d->V), d->V);
		memcpy(o, d->V, n);
		o += n;
		len -= n;
	}
	/* Step 6: ... and again after (backtracking resistance: the state moves on). */
	drbg_update(d, &extra, 1);
	d->reseed_counter++;
	return 0;
}

void hmac_drbg_wipe(struct hmac_drbg *d)
{
	secure_wipe(d, sizeof(*d));
}
