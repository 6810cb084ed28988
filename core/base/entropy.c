/* SPDX-License-Identifier: MIT */
/* The entropy pool: sources into an HMAC_DRBG (see entropy.h). */
#include "core/base/entropy.h"

#include <errno.h>
#include <string.h>

/* Credited bytes of every source side by side, then the uncredited ones. */
#define SEED_MAX   (ENTROPY_MAX_SOURCES * ENTROPY_SEED_BYTES)
#define JITTER_MAX (ENTROPY_MAX_SOURCES * ENTROPY_JITTER_BYTES)

static const char personalization[] = "thinbox entropy pool v1";

void entropy_pool_init(struct entropy_pool *p)
{
	memset(p, 0, sizeof(*p));
}

int entropy_pool_add_source(struct entropy_pool *p, struct entropy_source *s)
{
	if (p->nsrc == ENTROPY_MAX_SOURCES)
		return -ENOSPC;
	p->src[p->nsrc++] = s;
	return 0;
}

bool entropy_pool_has_credited(const struct entropy_pool *p)
{
	for (unsigned i = 0; i < p->nsrc; i++)
		if (p->src[i]->credited)
			return true;
	return false;
}

static bool stuck(const uint8_t *b, size_t n)
{
	if (n < ENTROPY_STUCK_MIN)
		return false;
	for (size_t i = 1; i < n; i++)
		if (b[i] != b[0])
			return false;
	return true;
}

/*
 * Up to @want bytes from @s into @out, in at most ENTROPY_SOURCE_READS calls: the number
 * gathered. Errors and stuck blocks are counted on the source, not returned: one bad source
 * must not stop the others.
 */
static size_t gather(struct entropy_source *s, uint8_t *out, size_t want)
{
	size_t got = 0;

	for (unsigned r = 0; r < ENTROPY_SOURCE_READS && got < want; r++) {
		int n;

		s->reads++;
		n = s->read(s->ctx, out + got, want - got);
		if (n < 0) {
			s->failures++;
			s->last_error = n;
			/* A failing source rarely recovers within one seed; do not spin on it. */
			break;
		}
		if ((size_t)n > want - got) {
			/* A source that claims more than asked is broken: use nothing of it. */
			s->failures++;
			s->last_error = -EIO;
			secure_wipe(out, want);
			return 0;
		}
		if (s->credited && stuck(out + got, (size_t)n)) {
			s->failures++;
			s->last_error = -EIO;
			secure_wipe(out + got, (size_t)n);
			continue;
		}
		got += (size_t)n;
	}
	s->bytes += got;
	return got;
}

/* Jitter from the uncredited sources into @out (≤ JITTER_MAX): the length. */
static size_t gather_uncredited(struct entropy_pool *p, uint8_t *out)
{
	size_t len = 0;

	for (unsigned i = 0; i < p->nsrc; i++)
		if (!p->src[i]->credited)
			len += gather(p->src[i], out + len, ENTROPY_JITTER_BYTES);
	return len;
}

/* Instantiate (first time) or reseed. 0, -ENODEV, -EIO. */
static int pool_seed(struct entropy_pool *p)
{
	uint8_t seed[SEED_MAX], jitter[JITTER_MAX];
	size_t need = p->seeded ? ENTROPY_RESEED_BYTES : ENTROPY_SEED_BYTES;
	size_t credit = 0, jlen;
	int rc;

	if (!entropy_pool_has_credited(p))
		return -ENODEV;
	for (unsigned i = 0; i < p->nsrc; i++)
		if (p->src[i]->credited)
			credit += gather(p->src[i], seed + credit, need);
	jlen = gather_uncredited(p, jitter);
	if (credit < need) {
		p->seed_failures++;
		rc = -EIO;
	} else if (!p->seeded) {
		rc =
		    hmac_drbg_instantiate(&p->drbg, seed, credit, jitter, jlen, personalization,
					  sizeof(personalization) - 1, ENTROPY_RESEED_REQUESTS + 1);
	} else {
		rc = hmac_drbg_reseed(&p->drbg, seed, credit, jitter, jlen);
	}
	if (rc == 0) {
		p->seeded = true;
		p->seeds++;
		p->since_reseed = 0;
		p->last_seed_credit = (unsigned)credit;
	}
	secure_wipe(seed, sizeof(seed));
	secure_wipe(jitter, sizeof(jitter));
	return rc;
}

int entropy_pool_reseed(struct entropy_pool *p)
{
	int rc = pool_seed(p);

	if (rc)
		p->last_error = rc;
	return rc;
}

int entropy_pool_read(struct entropy_pool *p, void *buf, size_t len)
{
	uint8_t jitter[JITTER_MAX];
	uint8_t *o = buf;
	size_t jlen;
	int rc = 0;

	if (!buf && len)
		return -EINVAL;
	if (!p->seeded || p->since_reseed >= ENTROPY_RESEED_REQUESTS) {
		rc = pool_seed(p);
		if (rc)
			goto fail;
	}
	/* Fresh jitter as additional input: never counted, but it costs an attacker more. */
	jlen = gather_uncredited(p, jitter);
	while (len) {
		size_t n = len < HMAC_DRBG_MAX_REQUEST ? len : HMAC_DRBG_MAX_REQUEST;

		rc = hmac_drbg_generate(&p->drbg, o, n, jitter, jlen);
		if (rc == -EAGAIN) {
			/* The DRBG's own interval (only reachable with huge requests). */
			rc = pool_seed(p);
			if (!rc)
				continue;
		}
		if (rc)
			goto fail;
		o += n;
		len -= n;
		p->bytes_out += n;
	}
	secure_wipe(jitter, sizeof(jitter));
	p->requests++;
	p->since_reseed++;
	return 0;

fail:
	secure_wipe(jitter, sizeof(jitter));
	if (buf)
		secure_wipe(buf, (size_t)(o - (uint8_t *)buf) + len);
	p->last_error = rc;
	return rc;
}

void entropy_pool_wipe(struct entropy_pool *p)
{
	hmac_drbg_wipe(&p->drbg);
	p->seeded = false;
}
