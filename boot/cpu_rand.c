/* SPDX-License-Identifier: MIT */
/* RDRAND, RDSEED and TSC jitter as entropy sources (see cpu_rand.h). */
#include "boot/cpu_rand.h"

#include "boot/io.h"
#include "core/base/sha256.h"

#include <errno.h>
#include <string.h>

struct cpu_rand cpu_rand;

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid"
			 : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}

/* One attempt: true with *v when the hardware had a value (CF = 1). */
static inline bool rdrand_once(uint64_t *v)
{
	unsigned char ok;

	__asm__ volatile("rdrand %0; setc %1" : "=r"(*v), "=qm"(ok)::"cc");
	return ok;
}

static inline bool rdseed_once(uint64_t *v)
{
	unsigned char ok;

	__asm__ volatile("rdseed %0; setc %1" : "=r"(*v), "=qm"(ok)::"cc");
	return ok;
}

static int rdrand64(uint64_t *v)
{
	for (unsigned i = 0; i < RDRAND_RETRIES; i++)
		if (rdrand_once(v))
			return 0;
	cpu_rand.rdrand_exhausted++;
	return -EAGAIN;
}

static int rdseed64(uint64_t *v)
{
	for (unsigned i = 0; i < RDSEED_RETRIES; i++) {
		if (rdseed_once(v))
			return 0;
		/* RDSEED runs dry under load; give the conditioner time to refill. */
		cpu_relax();
	}
	cpu_rand.rdseed_exhausted++;
	return -EAGAIN;
}

/* Start-up test: 8 words must arrive and not all be equal (nor all ones or zeros). */
static bool selftest(int (*get)(uint64_t *))
{
	uint64_t w[8];

	for (unsigned i = 0; i < 8; i++)
		if (get(&w[i]))
			return false;
	for (unsigned i = 1; i < 8; i++)
		if (w[i] != w[0] && w[i] != ~0ull && w[i] != 0) {
			secure_wipe(w, sizeof(w));
			return true;
		}
	return false;
}

void cpu_rand_detect(void)
{
	uint32_t r[4];
	uint32_t max;

	memset(&cpu_rand, 0, sizeof(cpu_rand));
	cpuid(0, 0, r);
	max = r[0];
	cpuid(1, 0, r);
	cpu_rand.has_rdrand = (r[2] >> 30) & 1;
	if (max >= 7) {
		cpuid(7, 0, r);
		cpu_rand.has_rdseed = (r[1] >> 18) & 1;
	}
	/* Only execute what CPUID announced: the instructions #UD otherwise. */
	cpu_rand.rdrand_ok = cpu_rand.has_rdrand && selftest(rdrand64);
	cpu_rand.rdseed_ok = cpu_rand.has_rdseed && selftest(rdseed64);
}

bool cpu_rand_usable(void)
{
	return cpu_rand.rdrand_ok || cpu_rand.rdseed_ok;
}

int cpu_rand_read(void *ctx, uint8_t *buf, size_t len)
{
	size_t got = 0;

	(void)ctx;
	while (got < len) {
		uint64_t w;
		size_t n;

		if (cpu_rand.rdseed_ok && rdseed64(&w) == 0) {
			cpu_rand.rdseed_words++;
		} else if (cpu_rand.rdrand_ok && rdrand64(&w) == 0) {
			cpu_rand.rdrand_words++;
		} else {
			break; /* both out of retries: what we have, the pool asks again */
		}
		/* A word equal to the last is a stuck generator far more likely than chance
		 * (2^-64): drop this call's bytes. */
		if (w == cpu_rand.last) {
			cpu_rand.repeats++;
			secure_wipe(buf, got);
			return -EIO;
		}
		cpu_rand.last = w;
		n = len - got < sizeof(w) ? len - got : sizeof(w);
		memcpy(buf + got, &w, n);
		got += n;
	}
	return (int)got;
}

int tsc_jitter_read(void *ctx, uint8_t *buf, size_t len)
{
	uint32_t r[4];

	(void)ctx;
	for (size_t i = 0; i < len; i++) {
		uint64_t t0 = rdtsc(), t1;

		cpuid(0, 0, r);
		t1 = rdtsc();
		buf[i] = (uint8_t)((t1 - t0) ^ (t1 >> 8) ^ t0);
	}
	return (int)len;
}
