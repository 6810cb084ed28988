/* SPDX-License-Identifier: MIT */
/*
 * `tls selftest`: in the firmware, an mbedTLS client and server talk over in-memory pipes
 * (net/tls/tls_selftest.c, the code the host's unit test runs): a PSK handshake with the
 * configuration's default suites, one with ECDHE-PSK and ChaCha20-Poly1305, one with plain
 * PSK and AES-256-GCM, 64 KiB echoed after each; then a wrong key, which must be refused.
 * Last it prints the date mbedTLS would check certificates against (newlib's time() over
 * plat_wall_time()).
 *
 * Randomness: the DRBG is seeded from the TSC through a mixing function, which is NOT an
 * entropy source. That is enough to check that the library computes correctly here and
 * nothing leaves the machine; real connections will be seeded from plat_random() (issue 13),
 * and the command says so when it runs.
 */
#include "boot/tls_cmd.h"

#include "config/shell.h"
#include "core/base/plat.h"
#include "core/base/util.h"
#include "core/base/walltime.h"
#include "net/tls/tls_selftest.h"

#include <errno.h>
#include <string.h>

#define ECHO_BYTES (64u * 1024u)

/* splitmix64 over a counter started from the TSC: deterministic mixing, no entropy. */
static int tsc_test_seed(void *ctx, unsigned char *buf, size_t len)
{
	uint64_t *state = ctx;

	for (size_t i = 0; i < len; i++) {
		uint64_t z;

		if (i % 8 == 0) {
			*state += 0x9e3779b97f4a7c15ull;
			z = *state;
			z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
			z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
			z ^= z >> 31;
			memcpy(buf + i, &z, len - i < 8 ? len - i : 8);
		}
	}
	return 0;
}

static const unsigned char key_good[16] = { 0x4a, 0x1f, 0x09, 0x77, 0xc2, 0x3e, 0x55, 0x10,
					    0x8b, 0xd4, 0x61, 0x2a, 0xf0, 0x93, 0x0c, 0xee };
static const unsigned char key_bad[16] = { 0x4a, 0x1f, 0x09, 0x77, 0xc2, 0x3e, 0x55, 0x10,
					   0x8b, 0xd4, 0x61, 0x2a, 0xf0, 0x93, 0x0c, 0xef };

/* One run; prints one line and returns true when the outcome is the expected one. */
static bool run_case(struct shell *sh, uint64_t *seed, const char *label, const char *suite,
		     bool wrong_key)
{
	struct tls_selftest_psk o = {
		.entropy = tsc_test_seed,
		.entropy_ctx = seed,
		.identity = "thinbox-selftest",
		.client_key = key_good,
		.client_key_len = sizeof(key_good),
		.server_key = wrong_key ? key_bad : key_good,
		.server_key_len = sizeof(key_good),
		.suite = suite,
		.echo_bytes = wrong_key ? 0 : ECHO_BYTES,
	};
	struct tls_selftest_result r;
	uint64_t t0 = plat_now_ns();
	int rc = tls_selftest_psk_run(&o, &r);
	unsigned ms = (unsigned)((plat_now_ns() - t0) / 1000000u);

	if (wrong_key) {
		bool refused = rc == -EPROTO && r.echoed == 0;

		shell_printf(sh, "tls: %s: %s (%s), %u ms\n", label,
			     refused ? "refused" : "NOT refused", r.error[0] ? r.error : "no error",
			     ms);
		return refused;
	}
	if (rc == 0 && r.echoed == ECHO_BYTES) {
		shell_printf(sh, "tls: %s: %s %s, %zu bytes echoed, %u ms: ok\n", label, r.version,
			     r.suite, r.echoed, ms);
		return true;
	}
	shell_printf(sh, "tls: %s: FAILED (%d): client %d, server %d: %s\n", label, rc,
		     r.client_ret, r.server_ret, r.error);
	return false;
}

static int tls_selftest(struct shell *sh)
{
	uint64_t seed = plat_now_ns();
	long long now = tls_clock_now();
	struct civil_time ct;
	bool good = true;

	shell_printf(sh, "tls: mbedTLS %s: TLS 1.2 (this version has no TLS 1.3)\n",
		     tls_library_version());
	shell_puts(sh, "tls: randomness: a TSC-derived test seed, NOT an entropy source "
		       "(checks the library, not the randomness)\n");
	good &= run_case(sh, &seed, "psk default", NULL, false);
	good &=
	    run_case(sh, &seed, "ecdhe-psk", "TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256", false);
	good &= run_case(sh, &seed, "psk", "TLS-PSK-WITH-AES-256-GCM-SHA384", false);
	good &= run_case(sh, &seed, "wrong key", NULL, true);
	if (now >= 0 && unix_to_civil((uint64_t)now, &ct) == 0)
		shell_printf(sh,
			     "tls: certificate clock %lld (%04d-%02d-%02d %02d:%02d:%02d UTC)\n",
			     now, ct.year, ct.month, ct.day, ct.hour, ct.min, ct.sec);
	else
		shell_printf(sh,
			     "tls: certificate clock %lld: no date, certificates will not "
			     "verify\n",
			     now);
	shell_printf(sh, "tls selftest: %s\n", good ? "passed" : "FAILED");
	return good ? 0 : -EIO;
}

static int cmd_tls(struct shell *sh, int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "selftest") == 0)
		return tls_selftest(sh);
	return shell_usage(sh, argv[0]);
}

static const struct shell_cmd tls_cmds[] = {
	{ "tls", "selftest", "TLS library self-test (in-memory PSK handshake)", cmd_tls },
};

static struct shell_cmd_table tls_table = { tls_cmds, ARRAY_SIZE(tls_cmds), NULL };

void tls_cmd_init(struct shell *sh)
{
	shell_add_commands(sh, &tls_table);
}
