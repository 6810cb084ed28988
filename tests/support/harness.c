/* SPDX-License-Identifier: MIT */
/* The runner behind tests/support/harness.h: one main() for every host test program. */
#include "tests/support/harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct test_case *cases, **cases_tail = &cases;
static const char *prog;
static bool cur_failed;
static int cur_reports;
static uint64_t cur_seed;
static bool seed_used;
static char tmpdir[256];
/* ok()/ok_eq() calls run, passed or not: lets a refactor of a test show it kept every check. */
static unsigned long long checks;

/* Checks that fail in a loop would flood the log; the first few say enough. */
#define MAX_REPORTS 10

void test_register(struct test_case *tc)
{
	/* Constructors run in link order; keep the file's order for readable output. */
	*cases_tail = tc;
	cases_tail = &tc->next;
}

static void report(const char *file, int line, const char *msg)
{
	cur_failed = true;
	if (++cur_reports <= MAX_REPORTS)
		printf("  %s:%d: %s\n", file, line, msg);
	else if (cur_reports == MAX_REPORTS + 1)
		printf("  (further failures not shown)\n");
}

bool test_check(bool cond, const char *expr, const char *file, int line)
{
	checks++;
	if (!cond) {
		char msg[512];

		snprintf(msg, sizeof(msg), "check failed: %s", expr);
		report(file, line, msg);
	}
	return cond;
}

bool test_check_eq(long long a, long long b, const char *ea, const char *eb, const char *file,
		   int line)
{
	checks++;
	if (a != b) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s == %s failed: %lld != %lld", ea, eb, a, b);
		report(file, line, msg);
	}
	return a == b;
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	report(file, line, msg);
}

bool test_failed(void)
{
	return cur_failed;
}

uint64_t test_seed(void)
{
	seed_used = true;
	return cur_seed;
}

const char *test_tmpdir(void)
{
	if (!tmpdir[0]) {
		const char *base = getenv("TMPDIR");

		snprintf(tmpdir, sizeof(tmpdir), "%s/thinbox-test-%s-%d", base ? base : "/tmp",
			 prog, (int)getpid());
		mkdir(tmpdir, 0700);
	}
	return tmpdir;
}

static bool selected(const char *name, int argc, char **argv)
{
	if (argc < 2)
		return true;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], name))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	const char *env_seed = getenv("SEED");
	int passed = 0, failed = 0;

	prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (struct test_case *tc = cases; tc; tc = tc->next) {
		if (!selected(tc->name, argc, argv))
			continue;
		cur_failed = false;
		cur_reports = 0;
		seed_used = false;
		if (env_seed) {
			cur_seed = strtoull(env_seed, NULL, 0);
		} else {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			cur_seed = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
				   ((uint64_t)getpid() << 32);
		}
		tc->fn();
		if (cur_failed) {
			failed++;
			if (seed_used)
				printf("  replay: SEED=%llu %s %s\n", (unsigned long long)cur_seed,
				       argv[0], tc->name);
			printf("FAIL %s/%s\n", prog, tc->name);
		} else {
			passed++;
			printf("PASS %s/%s\n", prog, tc->name);
		}
	}
	if (tmpdir[0] && !failed) {
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			printf("  note: could not remove %s\n", tmpdir);
	}
	printf("%s: %d passed, %d failed, %llu checks run\n", prog, passed, failed, checks);
	return failed ? 1 : 0;
}
