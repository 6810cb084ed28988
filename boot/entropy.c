/* SPDX-License-Identifier: MIT */
/*
 * plat_random() for the firmware (the contract is in core/base/plat.h) and the `rng` command.
 *
 * Sources, in the order they are asked: virtio-rng (credited: the host's getrandom()), the
 * CPU's RDSEED/RDRAND (credited, after their start-up test), TSC jitter (never credited). The
 * pool needs 384 bits from the credited sources together to instantiate, 256 to reseed (every
 * 1024 calls); each credited source is asked for the full amount, so with both present the
 * seed holds both and neither has to be trusted alone.
 */
#include "boot/entropy.h"

#include "boot/cpu_rand.h"
#include "boot/devices.h"
#include "config/shell.h"
#include "core/base/entropy.h"
#include "core/base/plat.h"
#include "core/base/util.h"
#include "drivers/virtio-rng/vrng.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_SOURCE_MSG "no entropy source: no virtio-rng device and no RDRAND"
#define SAMPLE_MAX    64

static struct entropy_pool pool;
static struct entropy_source src_vrng, src_cpu, src_tsc;
static bool set_up;

static int vrng_source_read(void *ctx, uint8_t *buf, size_t len)
{
	return vrng_read(ctx, buf, len);
}

void entropy_setup(void)
{
	struct vrng *vr = devices_rng(NULL);
	int rc;

	entropy_pool_init(&pool);
	cpu_rand_detect();
	if (vr) {
		src_vrng = (struct entropy_source){
			.name = "virtio-rng", .read = vrng_source_read, .ctx = vr, .credited = true
		};
		entropy_pool_add_source(&pool, &src_vrng);
	}
	if (cpu_rand_usable()) {
		src_cpu = (struct entropy_source){ .name = cpu_rand.rdseed_ok ? "rdseed" : "rdrand",
						   .read = cpu_rand_read,
						   .credited = true };
		entropy_pool_add_source(&pool, &src_cpu);
	}
	src_tsc = (struct entropy_source){ .name = "tsc-jitter", .read = tsc_jitter_read };
	entropy_pool_add_source(&pool, &src_tsc);
	set_up = true;
	if (cpu_rand.has_rdrand && !cpu_rand.rdrand_ok)
		plat_printf("thinbox: WARNING: RDRAND failed its start-up test; not used\n");
	if (cpu_rand.has_rdseed && !cpu_rand.rdseed_ok)
		plat_printf("thinbox: WARNING: RDSEED failed its start-up test; not used\n");

	rc = entropy_pool_reseed(&pool);
	if (rc == -ENODEV) {
		plat_printf("thinbox: WARNING: " NO_SOURCE_MSG "; TLS will be refused\n");
		return;
	}
	if (rc) {
		plat_printf("thinbox: WARNING: entropy: the sources gave too little to seed (%d); "
			    "see `rng`\n",
			    rc);
		return;
	}
	pool.last_seed_ns = plat_now_ns();
	plat_printf("thinbox: entropy: seeded from %s%s%s\n", vr ? "virtio-rng" : "",
		    vr && cpu_rand_usable() ? " + " : "", cpu_rand_usable() ? src_cpu.name : "");
}

int plat_random(void *buf, size_t len)
{
	uint64_t seeds;
	int rc;

	if (!set_up)
		return -ENODEV; /* called before entropy_setup(): nothing registered yet */
	seeds = pool.seeds;
	rc = entropy_pool_read(&pool, buf, len);
	if (pool.seeds != seeds)
		pool.last_seed_ns = plat_now_ns();
	return rc;
}

/* ---- `rng` ----------------------------------------------------------------------------------- */

static void show_source(struct shell *sh, const struct entropy_source *s)
{
	shell_printf(
	    sh, "  %-10s %s  %" PRIu64 " bytes used, %" PRIu64 " reads, %" PRIu64 " failures",
	    s->name, s->credited ? "counted    " : "not counted", s->bytes, s->reads, s->failures);
	if (s->last_error)
		shell_printf(sh, " (last error %d)", s->last_error);
	shell_puts(sh, "\n");
}

static int cmd_rng_status(struct shell *sh)
{
	int vrc;
	struct vrng *vr = devices_rng(&vrc);
	const char *addr = devices_rng_addr();

	if (vr) {
		char feat[64];

		vrng_features_str(vr, feat, sizeof(feat));
		shell_printf(sh,
			     "virtio-rng %s%s\n"
			     "         features: %s\n"
			     "         requests %" PRIu64 ", bytes %" PRIu64 ", empty %" PRIu64
			     ", timeouts %" PRIu64 "\n",
			     vr->vdev->name, vr->dead ? "  DEAD" : "", feat, vr->stats.requests,
			     vr->stats.bytes, vr->stats.empty, vr->stats.timeouts);
	} else if (addr) {
		shell_printf(sh, "virtio-rng %s  not started (error %d)\n", addr, vrc);
	} else {
		shell_puts(sh, "no virtio-rng device\n");
	}
	shell_printf(sh, "RDRAND %s, RDSEED %s",
		     cpu_rand.rdrand_ok	   ? "present (used)"
		     : cpu_rand.has_rdrand ? "present (failed its self-test, not used)"
					   : "absent",
		     cpu_rand.rdseed_ok	   ? "present (used)"
		     : cpu_rand.has_rdseed ? "present (failed its self-test, not used)"
					   : "absent");
	if (cpu_rand_usable())
		shell_printf(sh,
			     "; words rdseed %" PRIu64 " rdrand %" PRIu64
			     ", out of retries %" PRIu64 ", repeats %" PRIu64,
			     cpu_rand.rdseed_words, cpu_rand.rdrand_words,
			     cpu_rand.rdseed_exhausted + cpu_rand.rdrand_exhausted,
			     cpu_rand.repeats);
	shell_puts(sh, "\n");
	if (!entropy_pool_has_credited(&pool)) {
		shell_puts(sh, NO_SOURCE_MSG "\n");
		return 0;
	}
	if (pool.seeded)
		shell_printf(sh,
			     "pool: seeded (HMAC_DRBG SHA-256), %" PRIu64 " seeds, last from %u "
			     "counted bytes %" PRIu64 " s ago; %" PRIu64 " requests, %" PRIu64
			     " bytes out; reseed in %" PRIu64 " requests\n",
			     pool.seeds, pool.last_seed_credit,
			     (plat_now_ns() - pool.last_seed_ns) / NSEC_PER_SEC, pool.requests,
			     pool.bytes_out, ENTROPY_RESEED_REQUESTS - pool.since_reseed);
	else
		shell_printf(sh, "pool: NOT SEEDED (%" PRIu64 " failed attempts, last error %d)\n",
			     pool.seed_failures, pool.last_error);
	if (pool.seeded && pool.last_error)
		shell_printf(sh, "      last error %d, %" PRIu64 " failed seed attempts\n",
			     pool.last_error, pool.seed_failures);
	shell_puts(sh, "sources:\n");
	for (unsigned i = 0; i < pool.nsrc; i++)
		show_source(sh, pool.src[i]);
	return 0;
}

/* `rng sample [N]`: N bytes (1..64, default 16) from plat_random(), in hex. */
static int cmd_rng_sample(struct shell *sh, const char *arg)
{
	uint8_t b[SAMPLE_MAX];
	unsigned long n = 16;
	char *end;
	int rc;

	if (arg) {
		n = strtoul(arg, &end, 10);
		if (*end || n == 0 || n > SAMPLE_MAX) {
			shell_printf(sh, "rng sample: N is 1..%d\n", SAMPLE_MAX);
			return -EINVAL;
		}
	}
	rc = plat_random(b, n);
	if (rc) {
		shell_printf(sh, "rng sample: %s (%d)\n",
			     rc == -ENODEV ? NO_SOURCE_MSG : "no random bytes", rc);
		return rc;
	}
	for (unsigned long i = 0; i < n; i++)
		shell_printf(sh, "%02x", b[i]);
	shell_puts(sh, "\n");
	return 0;
}

static int cmd_rng(struct shell *sh, int argc, char **argv)
{
	if (argc == 1)
		return cmd_rng_status(sh);
	if (strcmp(argv[1], "sample") == 0 && argc <= 3)
		return cmd_rng_sample(sh, argc == 3 ? argv[2] : NULL);
	return shell_usage(sh, "rng");
}

static const struct shell_cmd entropy_cmds[] = {
	{ "rng", "[sample [N]]",
	  "entropy: virtio-rng device, RDRAND/RDSEED, the random pool; `sample` prints N random "
	  "bytes",
	  cmd_rng },
};

static struct shell_cmd_table entropy_table = { entropy_cmds, ARRAY_SIZE(entropy_cmds), NULL };

void entropy_shell_init(struct shell *sh)
{
	shell_add_commands(sh, &entropy_table);
}
