/* SPDX-License-Identifier: MIT */
/*
 * The CPU's random-number instructions (Intel SDM vol. 1 §7.3.17, "Random Number Generator
 * Instructions"; Intel DRNG Software Implementation Guide): RDRAND (CPUID.01H:ECX bit 30), a
 * DRBG output reseeded by the on-chip entropy source, and RDSEED (CPUID.(EAX=07H,ECX=0):EBX
 * bit 18), the conditioned entropy source itself.
 *
 * Both may fail transiently (CF = 0: the hardware is momentarily out); every call retries a
 * bounded number of times (RDRAND 10, as Intel's guide recommends, RDSEED more, with a pause
 * between) and then reports -EAGAIN. Neither is trusted blindly: cpu_rand_detect() runs a
 * start-up test (the instruction must work and not return a constant, a known failure of
 * some AMD parts after a suspend: all ones with CF = 1) and the entropy source
 * rejects a word equal to the one before it. Their output only ever reaches plat_random()
 * through the entropy pool's DRBG, mixed with virtio-rng when that exists.
 */
#ifndef BOOT_CPU_RAND_H
#define BOOT_CPU_RAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RDRAND_RETRIES 10
#define RDSEED_RETRIES 100

struct cpu_rand {
	bool has_rdrand, has_rdseed;		     /* CPUID says so */
	bool rdrand_ok, rdseed_ok;		     /* and the start-up test passed */
	uint64_t rdrand_words, rdseed_words;	     /* 64-bit words delivered */
	uint64_t rdrand_exhausted, rdseed_exhausted; /* calls that ran out of retries */
	uint64_t repeats; /* words rejected for repeating the previous one */
	uint64_t last;	  /* the previous word (repeat test) */
};

extern struct cpu_rand cpu_rand;

/* CPUID, then the start-up test of each instruction found. Call once at boot. */
void cpu_rand_detect(void);
/* True when RDSEED or RDRAND passed its start-up test. */
bool cpu_rand_usable(void);
/*
 * The entropy pool's read callback (struct entropy_source): up to @len bytes, RDSEED words
 * first and RDRAND when RDSEED is absent or exhausted. The byte count (short or 0 when both
 * ran out of retries), or -EIO for a repeated word (nothing of that call is used).
 */
int cpu_rand_read(void *ctx, uint8_t *buf, size_t len);
/* Uncredited jitter: low bits of TSC deltas around a CPUID (a VM exit under KVM). */
int tsc_jitter_read(void *ctx, uint8_t *buf, size_t len);

#endif
