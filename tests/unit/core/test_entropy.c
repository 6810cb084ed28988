/* SPDX-License-Identifier: MIT */
/*
 * The entropy pool (core/base/entropy.h) with sources played by the test: no credited source
 * is -ENODEV; a seed needs enough credited bytes (short reads add up, zero-byte reads and
 * failures do not); stuck blocks are rejected; every credited source goes into the seed (the
 * output depends on each); uncredited jitter never counts; reseeds come on schedule and a
 * failed reseed fails the request (zeroed output) instead of stretching the old seed. And the
 * host build's plat_random().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/entropy.h"
#include "core/base/plat.h"
#include "tests/support/harness.h"

struct fake {
	uint8_t next; /* byte pattern: a counter, so blocks are never stuck */
	uint8_t fill; /* when nonzero... */
	bool stuck;   /* ...return blocks of this byte */
	int err;      /* return this instead (when nonzero) */
	size_t max;   /* at most this per call (0: no limit) */
	unsigned calls;
	bool give_nothing; /* return 0 bytes */
};

static int fake_read(void *ctx, uint8_t *buf, size_t len)
{
	struct fake *f = ctx;

	f->calls++;
	if (f->err)
		return f->err;
	if (f->give_nothing)
		return 0;
	if (f->max && len > f->max)
		len = f->max;
	for (size_t i = 0; i < len; i++)
		buf[i] = f->stuck ? f->fill : f->next++;
	return (int)len;
}

static void src_init(struct entropy_source *s, struct fake *f, const char *name, bool credited)
{
	memset(s, 0, sizeof(*s));
	memset(f, 0, sizeof(*f));
	s->name = name;
	s->read = fake_read;
	s->ctx = f;
	s->credited = credited;
}

static bool all_zero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

TEST(no_credited_source_is_enodev)
{
	struct entropy_pool p;
	struct entropy_source jit;
	struct fake fj;
	uint8_t out[16];

	entropy_pool_init(&p);
	memset(out, 0xaa, sizeof(out));
	ok_eq(entropy_pool_read(&p, out, sizeof(out)), -ENODEV);
	ok(all_zero(out, sizeof(out)));
	/* Jitter alone is never enough. */
	src_init(&jit, &fj, "tsc", false);
	ok_eq(entropy_pool_add_source(&p, &jit), 0);
	ok(!entropy_pool_has_credited(&p));
	ok_eq(entropy_pool_read(&p, out, sizeof(out)), -ENODEV);
	ok_eq(fj.calls, 0);
	ok_eq(p.last_error, -ENODEV);
	ok_eq(entropy_pool_read(&p, NULL, 1), -EINVAL);
}

TEST(seeds_from_short_reads_and_outputs_differ)
{
	struct entropy_pool p;
	struct entropy_source s;
	struct fake f;
	uint8_t a[32], b[32];

	entropy_pool_init(&p);
	src_init(&s, &f, "dev", true);
	f.max = 7; /* 48 bytes take 7 reads: within ENTROPY_SOURCE_READS */
	entropy_pool_add_source(&p, &s);
	ok_eq(entropy_pool_read(&p, a, sizeof(a)), 0);
	ok(p.seeded);
	ok_eq(p.seeds, 1);
	ok_eq(p.last_seed_credit, ENTROPY_SEED_BYTES);
	ok_eq(s.bytes, ENTROPY_SEED_BYTES);
	ok_eq(entropy_pool_read(&p, b, sizeof(b)), 0);
	ok(memcmp(a, b, sizeof(a)) != 0);
	ok_eq(p.requests, 2);
	ok_eq(p.bytes_out, 64);
	/* Only the first request seeded. */
	ok_eq(p.seeds, 1);
	ok_eq(entropy_pool_read(&p, a, 0), 0);
}

TEST(too_little_entropy_is_eio)
{
	struct entropy_pool p;
	struct entropy_source s;
	struct fake f;
	uint8_t out[16];

	entropy_pool_init(&p);
	src_init(&s, &f, "dev", true);
	f.max = 5; /* 8 reads of 5 = 40 < 48 */
	entropy_pool_add_source(&p, &s);
	memset(out, 0xaa, sizeof(out));
	ok_eq(entropy_pool_read(&p, out, sizeof(out)), -EIO);
	ok(all_zero(out, sizeof(out)));
	ok_eq(f.calls, ENTROPY_SOURCE_READS);
	ok(!p.seeded);
	ok_eq(p.seed_failures, 1);
	/* A device that returns 0 bytes contributes nothing, and is asked a bounded number of times. */
	f.max = 0;
	f.give_nothing = true;
	f.calls = 0;
	ok_eq(entropy_pool_read(&p, out, sizeof(out)), -EIO);
	ok_eq(f.calls, ENTROPY_SOURCE_READS);
	/* An erroring source is asked once per seed. */
	f.give_nothing = false;
	f.err = -ETIMEDOUT;
	f.calls = 0;
	ok_eq(entropy_pool_read(&p, out, sizeof(out)), -EIO);
	ok_eq(f.calls, 1);
	ok_eq(s.last_error, -ETIMEDOUT);
	/* It recovers: the next request seeds. */
	f.err = 0;
	ok_eq(entropy_pool_read(&p, out, sizeof(out)), 0);
}

TEST(stuck_source_rejected_other_source_carries)
{
	struct entropy_pool p;
	struct entropy_source rd, dev;
	struct fake frd, fdev;
	uint8_t out[16];

	entropy_pool_init(&p);
	src_init(&rd, &frd, "rdrand", true);
	frd.stuck = true;
	frd.fill = 0xff; /* the all-ones failure mode of some RDRAND implementations */
	entropy_pool_add_source(&p, &rd);
	ok_eq(entropy_pool_read(&p, out, sizeof(out)), -EIO);
	ok_eq(rd.failures, ENTROPY_SOURCE_READS);
	ok_eq(rd.bytes, 0);
	/* With a working second source the pool seeds; the stuck one still contributes nothing. */
	src_init(&dev, &fdev, "virtio-rng", true);
	entropy_pool_add_source(&p, &dev);
	ok_eq(entropy_pool_read(&p, out, sizeof(out)), 0);
	ok_eq(dev.bytes, ENTROPY_SEED_BYTES);
	ok_eq(rd.bytes, 0);
}

/* Two pools with the same sources but one credited source changed give different output:
 * both credited sources went into the seed, neither alone decides it. */
TEST(every_credited_source_is_mixed_in)
{
	struct entropy_pool p1, p2, p3;
	struct entropy_source a1, b1, a2, b2, a3, b3;
	struct fake fa1, fb1, fa2, fb2, fa3, fb3;
	uint8_t o1[32], o2[32], o3[32];

	entropy_pool_init(&p1);
	entropy_pool_init(&p2);
	entropy_pool_init(&p3);
	src_init(&a1, &fa1, "a", true);
	src_init(&b1, &fb1, "b", true);
	src_init(&a2, &fa2, "a", true);
	src_init(&b2, &fb2, "b", true);
	src_init(&a3, &fa3, "a", true);
	src_init(&b3, &fb3, "b", true);
	fb2.next = 100; /* p2: b differs */
	fa3.next = 100; /* p3: a differs */
	entropy_pool_add_source(&p1, &a1);
	entropy_pool_add_source(&p1, &b1);
	entropy_pool_add_source(&p2, &a2);
	entropy_pool_add_source(&p2, &b2);
	entropy_pool_add_source(&p3, &a3);
	entropy_pool_add_source(&p3, &b3);
	ok_eq(entropy_pool_read(&p1, o1, sizeof(o1)), 0);
	ok_eq(entropy_pool_read(&p2, o2, sizeof(o2)), 0);
	ok_eq(entropy_pool_read(&p3, o3, sizeof(o3)), 0);
	ok(memcmp(o1, o2, sizeof(o1)) != 0);
	ok(memcmp(o1, o3, sizeof(o1)) != 0);
	ok_eq(a1.bytes, ENTROPY_SEED_BYTES);
	ok_eq(b1.bytes, ENTROPY_SEED_BYTES);
	ok_eq(p1.last_seed_credit, 2 * ENTROPY_SEED_BYTES);
}

TEST(jitter_is_mixed_but_not_counted)
{
	struct entropy_pool p1, p2;
	struct entropy_source d1, j1, d2, j2;
	struct fake fd1, fj1, fd2, fj2;
	uint8_t o1[32], o2[32];

	entropy_pool_init(&p1);
	entropy_pool_init(&p2);
	src_init(&d1, &fd1, "dev", true);
	src_init(&j1, &fj1, "tsc", false);
	src_init(&d2, &fd2, "dev", true);
	src_init(&j2, &fj2, "tsc", false);
	fj2.next = 1;
	entropy_pool_add_source(&p1, &d1);
	entropy_pool_add_source(&p1, &j1);
	entropy_pool_add_source(&p2, &d2);
	entropy_pool_add_source(&p2, &j2);
	ok_eq(entropy_pool_read(&p1, o1, sizeof(o1)), 0);
	ok_eq(entropy_pool_read(&p2, o2, sizeof(o2)), 0);
	ok(memcmp(o1, o2, sizeof(o1)) != 0);		/* jitter reached the DRBG */
	ok_eq(p1.last_seed_credit, ENTROPY_SEED_BYTES); /* but was not credited */
	ok(j1.bytes > 0);
	/* A stuck jitter source is not rejected (it is not relied on) and does no harm. */
	fj1.stuck = true;
	ok_eq(entropy_pool_read(&p1, o1, sizeof(o1)), 0);
}

TEST(reseeds_on_schedule_and_fails_without_sources)
{
	struct entropy_pool p;
	struct entropy_source s;
	struct fake f;
	uint8_t out[16];

	entropy_pool_init(&p);
	src_init(&s, &f, "dev", true);
	entropy_pool_add_source(&p, &s);
	for (unsigned i = 0; i < ENTROPY_RESEED_REQUESTS; i++)
		if (!ok_eq(entropy_pool_read(&p, out, sizeof(out)), 0))
			break;
	ok_eq(p.seeds, 1);
	ok_eq(s.bytes, ENTROPY_SEED_BYTES);
	ok_eq(entropy_pool_read(&p, out, sizeof(out)), 0);
	ok_eq(p.seeds, 2);
	ok_eq(s.bytes, ENTROPY_SEED_BYTES + ENTROPY_RESEED_BYTES);
	/* The source dies: requests go on until the next reseed is due, then fail. */
	f.err = -EIO;
	for (unsigned i = 1; i < ENTROPY_RESEED_REQUESTS; i++)
		if (!ok_eq(entropy_pool_read(&p, out, sizeof(out)), 0))
			break;
	memset(out, 0xaa, sizeof(out));
	ok_eq(entropy_pool_read(&p, out, sizeof(out)), -EIO);
	ok(all_zero(out, sizeof(out)));
	ok_eq(entropy_pool_reseed(&p), -EIO);
	f.err = 0;
	ok_eq(entropy_pool_reseed(&p), 0);
	ok_eq(entropy_pool_read(&p, out, sizeof(out)), 0);
}

TEST(large_requests_span_drbg_calls)
{
	struct entropy_pool p;
	struct entropy_source s;
	struct fake f;
	size_t len = 3 * HMAC_DRBG_MAX_REQUEST + 100;
	uint8_t *out = malloc(len);

	entropy_pool_init(&p);
	src_init(&s, &f, "dev", true);
	entropy_pool_add_source(&p, &s);
	ok_eq(entropy_pool_read(&p, out, len), 0);
	ok_eq(p.bytes_out, len);
	/* Each DRBG call's output differs from the next (no repeated block). */
	ok(memcmp(out, out + HMAC_DRBG_MAX_REQUEST, 64) != 0);
	ok(!all_zero(out + len - 100, 100));
	free(out);
}

/* The host build's plat_random(): getrandom(), any length, two calls differ. */
TEST(host_plat_random)
{
	uint8_t a[32], b[32];
	static uint8_t big[1 << 20];

	ok_eq(plat_random(a, sizeof(a)), 0);
	ok_eq(plat_random(b, sizeof(b)), 0);
	ok(memcmp(a, b, sizeof(a)) != 0);
	ok_eq(plat_random(big, sizeof(big)), 0);
	ok(!all_zero(big + sizeof(big) - 64, 64));
	ok_eq(plat_random(NULL, 0), 0);
	ok_eq(plat_random(NULL, 1), -EINVAL);
}
