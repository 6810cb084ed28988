/* SPDX-License-Identifier: MIT */
/*
 * The host unit-test harness (in the spirit of iPXE's okx() and SQLite's testing culture).
 *
 * A test file defines cases with TEST(name) { ... } and checks with ok(), ok_eq() and
 * friends; it has no main(): tests/support/harness.c supplies one that runs every case (or those
 * named on the command line), prints "PASS <prog>/<case>" or "FAIL <prog>/<case>" for each,
 * then "<prog>: N passed, M failed", and exits 1 when any case failed. tests/run-tests
 * counts those PASS/FAIL lines across all test programs.
 *
 * Randomised tests take their seed from test_seed(): the SEED environment variable when set,
 * otherwise a fresh one; a failing case prints the seed so "SEED=n prog case" replays it.
 */
#ifndef TESTS_SUPPORT_HARNESS_H
#define TESTS_SUPPORT_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

struct test_case {
	const char *name;
	void (*fn)(void);
	struct test_case *next;
};

void test_register(struct test_case *tc);
/* Record one check; returns @cond so callers can stop early: if (!ok(x)) return; */
bool test_check(bool cond, const char *expr, const char *file, int line);
bool test_check_eq(long long a, long long b, const char *ea, const char *eb, const char *file,
		   int line);
/* Mark the running case failed with a formatted reason. */
void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The seed for this case (see above); printed if the case fails. */
uint64_t test_seed(void);
/* True when the running case has failed so far. */
bool test_failed(void);
/* Directory for scratch files of the running program (created on first use). */
const char *test_tmpdir(void);

#define TEST(name)                                                                                 \
	static void name(void);                                                                    \
	static struct test_case tc_##name = { #name, name, 0 };                                    \
	__attribute__((constructor)) static void reg_##name(void)                                  \
	{                                                                                          \
		test_register(&tc_##name);                                                         \
	}                                                                                          \
	static void name(void)

#define ok(cond)    test_check(!!(cond), #cond, __FILE__, __LINE__)
#define ok_eq(a, b) test_check_eq((long long)(a), (long long)(b), #a, #b, __FILE__, __LINE__)
#define fail(...)   test_fail(__FILE__, __LINE__, __VA_ARGS__)

/* A small deterministic PRNG (xorshift64*) for model tests. */
static inline uint64_t test_rand(uint64_t *state)
{
	uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dull;
}

#endif
