/* SPDX-License-Identifier: MIT */
/*
 * Test-only shell commands for the virtio drivers, registered only when QEMU passes
 * opt/thinbox/test-selftest (tests/qemu/virtio_*.t, tests/bench/virtio.bench):
 *
 *   vselftest disks       on every disk: write a known pattern over the first 10 MiB with as
 *                         many requests in flight as the queue takes, flush, read it all back
 *                         the same way and compare, then DISCARD 8-9 MiB and WRITE_ZEROES
 *                         9-10 MiB, and check that requests beyond the capacity are refused.
 *                         The host then compares the image files with the same pattern.
 *   vselftest disk D      the same on disk D (BB:DD.F) only.
 *   vselftest timeout D   one read on disk D (BB:DD.F) with a 2 s timeout: for a device that
 *                         cannot complete (bus mastering off under iommu_platform=on).
 *   vselftest net         an ARP request for QEMU's user-network gateway, and its reply.
 *   vbench D seq|rand read|write BS QD SECONDS   throughput and IOPS through the driver.
 *
 * The pattern: 64-bit little-endian words, word w of 512-byte sector s on the disk in PCI
 * slot t is pat_word(t, s, w) below (tests/qemu/virtio_selftest.t has the same function).
 */
#include "boot/virtio_selftest.h"

#include "boot/devices.h"
#include "config/shell.h"
#include "core/base/plat.h"
#include "core/base/util.h"
#include "drivers/virtio-blk/vblk.h"
#include "drivers/virtio-net/vnet.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define ST_REGION (10u << 20) /* bytes of each disk the self-test covers */
#define ST_SEQ	  (1u << 20)
#define ST_SMALL  4096u

static uint64_t pat_word(unsigned tag, uint64_t sector, unsigned w)
{
	uint64_t x = ((uint64_t)tag << 56) ^ (sector << 6) ^ w;

	x *= 0x9e3779b97f4a7c15ull;
	x ^= x >> 29;
	return x;
}

static void pat_fill(uint8_t *buf, unsigned tag, uint64_t first_sector, size_t bytes)
{
	for (size_t off = 0; off < bytes; off += 8) {
		uint64_t v = pat_word(tag, first_sector + off / 512, (unsigned)(off % 512) / 8);

		for (unsigned i = 0; i < 8; i++)
			buf[off + i] = (uint8_t)(v >> (8 * i));
	}
}

static const char *disk_name(struct blkdev *bd)
{
	return vblk_from_blkdev(bd)->vdev->name;
}

static struct blkdev *find_disk(const char *name)
{
	struct blkdev *bd;

	for (unsigned i = 0; (bd = devices_disk(i)) != NULL; i++)
		if (strcmp(disk_name(bd), name) == 0)
			return bd;
	return NULL;
}

/* ---- A batch of asynchronous requests kept at a queue depth ---------------------------------- */

struct job {
	struct blkdev *bd;
	struct blkdev_req *reqs;
	unsigned n, next, done, inflight, max_inflight;
	int first_err;
};

static void job_done(struct blkdev_req *r, int rc)
{
	struct job *j = r->priv;

	j->done++;
	j->inflight--;
	if (rc && !j->first_err)
		j->first_err = rc;
}

/* Run every request with at most @qd in flight; the driver's own timeout bounds the wait. */
static int job_run(struct job *j, unsigned qd)
{
	uint64_t deadline = plat_now_ns() + 120000 * NSEC_PER_MSEC;
	int rc;

	while (j->done < j->n) {
		while (j->next < j->n && j->inflight < qd) {
			struct blkdev_req *r = &j->reqs[j->next];

			r->done = job_done;
			r->priv = j;
			rc = blkdev_submit(j->bd, r);
			if (rc == -EAGAIN)
				break;
			if (rc) {
				j->first_err = j->first_err ? j->first_err : rc;
				j->n = j->next; /* stop submitting; drain what is in flight */
				break;
			}
			j->next++;
			j->inflight++;
			if (j->inflight > j->max_inflight)
				j->max_inflight = j->inflight;
		}
		rc = blkdev_poll(j->bd);
		if (rc < 0 && !j->first_err)
			j->first_err = rc;
		if (plat_now_ns() > deadline)
			return -ETIMEDOUT;
	}
	return j->first_err;
}

/* The k'th of @n 4 KiB units in a scattered order (a stride coprime to n). */
static unsigned scatter(unsigned k, unsigned n)
{
	return (unsigned)(((uint64_t)k * 7919u) % n);
}

/* ---- vselftest disks --------------------------------------------------------------------------- */

static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static int selftest_disk(struct shell *sh, struct blkdev *bd)
{
	const char *name = disk_name(bd);
	unsigned tag;
	uint32_t bs = bd->block_size, per4k = ST_SMALL / bs;
	unsigned n4k = (4u << 20) / ST_SMALL, nall = ST_REGION / ST_SMALL;
	uint8_t *exp = NULL, *got = NULL, small[4096];
	struct blkdev_req *reqs = NULL, req;
	struct job j;
	unsigned n = 0;
	int rc = -ENOMEM;

	/* The tag is the PCI slot number: "00:04.0" -> 4. */
	tag = (unsigned)strtoul(name + 3, NULL, 16);
	if (bs > ST_SMALL || bd->nr_blocks * bs < ST_REGION) {
		shell_printf(sh, "vselftest: %s FAIL: too small or odd block size\n", name);
		return -EINVAL;
	}
	exp = malloc(ST_REGION);
	got = calloc(1, ST_REGION);
	reqs = calloc(nall, sizeof(*reqs));
	if (!exp || !got || !reqs)
		goto out;
	pat_fill(exp, tag, 0, ST_REGION);

	/* Writes: 1024 scattered 4 KiB requests, then six sequential 1 MiB ones, all at once. */
	memset(&j, 0, sizeof(j));
	for (unsigned k = 0; k < n4k; k++) {
		unsigned u = scatter(k, n4k);

		reqs[n++] = (struct blkdev_req){ .op = BLKDEV_WRITE,
						 .block = (uint64_t)u * per4k,
						 .count = per4k,
						 .buf = exp + (size_t)u * ST_SMALL };
	}
	for (uint32_t off = 4u << 20; off < ST_REGION; off += ST_SEQ)
		reqs[n++] = (struct blkdev_req){ .op = BLKDEV_WRITE,
						 .block = off / bs,
						 .count = ST_SEQ / bs,
						 .buf = exp + off };
	j.bd = bd;
	j.reqs = reqs;
	j.n = n;
	rc = job_run(&j, n);
	shell_printf(sh, "vselftest: %s write %u requests, max in flight %u: %d\n", name, n,
		     j.max_inflight, rc);
	if (rc)
		goto out;
	rc = blkdev_flush(bd);
	shell_printf(sh, "vselftest: %s flush: %d\n", name, rc);
	if (rc)
		goto out;

	/* Read everything back in 4 KiB pieces, scattered, as many in flight as fit. */
	memset(&j, 0, sizeof(j));
	for (unsigned k = 0; k < nall; k++) {
		unsigned u = scatter(k, nall);

		reqs[k] = (struct blkdev_req){ .op = BLKDEV_READ,
					       .block = (uint64_t)u * per4k,
					       .count = per4k,
					       .buf = got + (size_t)u * ST_SMALL };
	}
	j.bd = bd;
	j.reqs = reqs;
	j.n = nall;
	rc = job_run(&j, nall);
	shell_printf(sh, "vselftest: %s read %u requests, max in flight %u: %d\n", name, nall,
		     j.max_inflight, rc);
	if (rc)
		goto out;
	if (memcmp(exp, got, ST_REGION) != 0) {
		size_t i = 0;

		while (exp[i] == got[i])
			i++;
		shell_printf(sh, "vselftest: %s FAIL: data differs at byte %zu\n", name, i);
		rc = -EIO;
		goto out;
	}

	/* DISCARD 8-9 MiB and WRITE_ZEROES 9-10 MiB (the host expects zeroes in both). */
	rc = blkdev_discard(bd, (8u << 20) / bs, (1u << 20) / bs);
	shell_printf(sh, "vselftest: %s discard: %d\n", name, rc);
	if (rc)
		goto out;
	rc = blkdev_write_zeroes(bd, (9u << 20) / bs, (1u << 20) / bs);
	shell_printf(sh, "vselftest: %s write-zeroes: %d\n", name, rc);
	if (rc)
		goto out;
	rc = blkdev_flush(bd);
	if (rc)
		goto out;
	rc = blkdev_read(bd, (8u << 20) / bs, (2u << 20) / bs, got);
	if (rc)
		goto out;
	shell_printf(sh, "vselftest: %s discarded range reads as zeroes: %s\n", name,
		     all_zero(got, 1u << 20) ? "yes" : "no");
	if (!all_zero(got + (1u << 20), 1u << 20)) {
		shell_printf(sh, "vselftest: %s FAIL: write-zeroes range is not zero\n", name);
		rc = -EIO;
		goto out;
	}

	/* Beyond the capacity: refused, synchronously and asynchronously, without device I/O. */
	memset(&req, 0, sizeof(req));
	req.op = BLKDEV_READ;
	req.block = bd->nr_blocks;
	req.count = 1;
	req.buf = small;
	req.done = job_done;
	req.priv = &j;
	if (blkdev_read(bd, bd->nr_blocks, 1, small) != -EINVAL ||
	    blkdev_read(bd, bd->nr_blocks - 1, 2, small) != -EINVAL ||
	    blkdev_write(bd, bd->nr_blocks, 1, small) != -EINVAL ||
	    blkdev_submit(bd, &req) != -EINVAL || bd->ops->submit(bd, &req) != -EINVAL) {
		shell_printf(sh, "vselftest: %s FAIL: a request beyond capacity was accepted\n",
			     name);
		rc = -EIO;
		goto out;
	}
	shell_printf(sh, "vselftest: %s beyond capacity: refused\n", name);
	rc = blkdev_read(bd, bd->nr_blocks - 1, 1, small);
	if (rc)
		goto out;
	shell_printf(sh, "vselftest: %s PASS\n", name);
out:
	if (rc == -ENOMEM)
		shell_printf(sh, "vselftest: %s FAIL: no memory\n", name);
	else if (rc)
		shell_printf(sh, "vselftest: %s FAIL (%d)\n", name, rc);
	free(exp);
	free(got);
	free(reqs);
	return rc;
}

static int selftest_timeout(struct shell *sh, const char *name)
{
	struct blkdev *bd = find_disk(name);
	uint8_t *buf;
	uint64_t t0;
	int rc;

	if (!bd) {
		shell_printf(sh, "vselftest: no started disk %s\n", name);
		return -ENODEV;
	}
	buf = malloc(bd->block_size);
	if (!buf)
		return -ENOMEM;
	vblk_from_blkdev(bd)->timeout_ns = 2000 * NSEC_PER_MSEC;
	t0 = plat_now_ns();
	rc = blkdev_read(bd, 0, 1, buf);
	/* newlib's errno values differ from Linux's: the name is what the test matches. */
	shell_printf(sh, "vselftest: timeout %s rc=%d%s after %" PRIu64 " ms\n", name, rc,
		     rc == -ETIMEDOUT ? " (ETIMEDOUT)" : "", (plat_now_ns() - t0) / NSEC_PER_MSEC);
	rc = blkdev_read(bd, 0, 1, buf);
	shell_printf(sh, "vselftest: timeout %s then rc=%d%s\n", name, rc,
		     rc == -EIO ? " (EIO)" : "");
	free(buf);
	return 0;
}

/* ---- vselftest net ------------------------------------------------------------------------------ */

struct arp_wait {
	bool found;
	uint8_t mac[6];
};

static bool arp_rx(void *ctx, const struct vnet_rx_frame *fr)
{
	struct arp_wait *w = ctx;
	uint8_t f[64];
	size_t len = vnet_rx_copy(fr, f, sizeof(f));
	static const uint8_t gw[4] = { 10, 0, 2, 2 };

	/* Ethertype ARP, opcode 2 (reply), sender protocol address 10.0.2.2. */
	if (len >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[20] == 0 && f[21] == 2 &&
	    memcmp(f + 28, gw, 4) == 0) {
		w->found = true;
		memcpy(w->mac, f + 22, 6);
	}
	return false;
}

static int selftest_net(struct shell *sh)
{
	struct vnet *vn = devices_nic();
	struct arp_wait w = { false, { 0 } };
	uint8_t f[60];
	uint64_t t0, deadline;
	int rc;

	if (!vn) {
		shell_puts(sh, "vselftest: net FAIL: no NIC\n");
		return -ENODEV;
	}
	memset(f, 0, sizeof(f));
	memset(f, 0xff, 6);
	memcpy(f + 6, vn->mac, 6);
	f[12] = 0x08;
	f[13] = 0x06;
	f[15] = 1;    /* Ethernet */
	f[16] = 0x08; /* IPv4 */
	f[18] = 6;
	f[19] = 4;
	f[21] = 1; /* request */
	memcpy(f + 22, vn->mac, 6);
	memcpy(f + 28, (const uint8_t[]){ 10, 0, 2, 15 }, 4);
	memcpy(f + 38, (const uint8_t[]){ 10, 0, 2, 2 }, 4);
	t0 = plat_now_ns();
	rc = vnet_tx(vn, f, sizeof(f), NULL);
	if (rc) {
		shell_printf(sh, "vselftest: net FAIL: transmit %d\n", rc);
		return rc;
	}
	deadline = t0 + 3000 * NSEC_PER_MSEC;
	while (!w.found && plat_now_ns() < deadline) {
		vnet_poll(vn);
		vnet_rx_poll(vn, arp_rx, &w, 32);
	}
	if (!w.found) {
		shell_puts(sh, "vselftest: net FAIL: no ARP reply from 10.0.2.2 in 3 s\n");
		return -ETIMEDOUT;
	}
	shell_printf(
	    sh,
	    "vselftest: net ARP reply from 10.0.2.2 (%02x:%02x:%02x:%02x:%02x:%02x) in %" PRIu64
	    " ms; tx %" PRIu64 " rx %" PRIu64 "\n",
	    w.mac[0], w.mac[1], w.mac[2], w.mac[3], w.mac[4], w.mac[5],
	    (plat_now_ns() - t0) / NSEC_PER_MSEC, vn->stats.tx_packets, vn->stats.rx_packets);
	shell_puts(sh, "vselftest: net PASS\n");
	return 0;
}

static int cmd_vselftest(struct shell *sh, int argc, char **argv)
{
	struct blkdev *bd;
	int failed = 0;

	if (argc == 2 && strcmp(argv[1], "disks") == 0) {
		for (unsigned i = 0; (bd = devices_disk(i)) != NULL; i++)
			failed += selftest_disk(sh, bd) != 0;
		shell_printf(sh, "vselftest: disks done, %d failed\n", failed);
		return failed ? -EIO : 0;
	}
	if (argc == 3 && strcmp(argv[1], "disk") == 0) {
		bd = find_disk(argv[2]);
		if (!bd) {
			shell_printf(sh, "vselftest: no started disk %s\n", argv[2]);
			return -ENODEV;
		}
		return selftest_disk(sh, bd);
	}
	if (argc == 3 && strcmp(argv[1], "timeout") == 0)
		return selftest_timeout(sh, argv[2]);
	if (argc == 2 && strcmp(argv[1], "net") == 0)
		return selftest_net(sh);
	return shell_usage(sh, "vselftest");
}

/* ---- vbench ------------------------------------------------------------------------------------- */

struct bench {
	int err;
	unsigned inflight;
	uint64_t completed;
};

struct bench_slot {
	struct blkdev_req req;
	bool busy;
	struct bench *b;
};

static void bench_done(struct blkdev_req *r, int rc)
{
	struct bench_slot *s = r->priv;

	s->busy = false;
	s->b->inflight--;
	s->b->completed++;
	if (rc && !s->b->err)
		s->b->err = rc;
}

static int cmd_vbench(struct shell *sh, int argc, char **argv)
{
	struct blkdev *bd;
	struct bench_slot *slots;
	struct bench b = { 0, 0, 0 };
	uint8_t *bufs;
	unsigned long long bs, qd, secs;
	uint64_t span, pos = 0, seed = 0x243f6a8885a308d3ull, t0, end, ns, kib_s;
	bool rnd, wr;
	int rc = 0;

	if (argc != 7 || !(bd = find_disk(argv[1])) || shell_parse_size(argv[4], &bs) ||
	    shell_parse_size(argv[5], &qd) || shell_parse_size(argv[6], &secs) ||
	    bs % bd->block_size || !bs || bs > (4u << 20) || !qd || qd > 256 || !secs)
		return shell_usage(sh, "vbench");
	rnd = strcmp(argv[2], "rand") == 0;
	wr = strcmp(argv[3], "write") == 0;
	span = MIN(bd->nr_blocks * bd->block_size, 256ull << 20) / bs;
	slots = calloc(qd, sizeof(*slots));
	bufs = malloc(qd * bs);
	if (!slots || !bufs || !span) {
		free(slots);
		free(bufs);
		return -ENOMEM;
	}
	memset(bufs, 0x5a, qd * bs);
	t0 = plat_now_ns();
	end = t0 + secs * 1000 * NSEC_PER_MSEC;
	/* Keep @qd requests in flight: every completed slot is refilled until the time is up. */
	while (!b.err && (plat_now_ns() < end || b.inflight)) {
		for (unsigned i = 0; i < qd && plat_now_ns() < end; i++) {
			struct bench_slot *s = &slots[i];
			uint64_t unit;

			if (s->busy)
				continue;
			if (rnd) {
				seed ^= seed << 13;
				seed ^= seed >> 7;
				seed ^= seed << 17;
				unit = seed % span;
			} else {
				unit = pos++ % span;
			}
			s->req = (struct blkdev_req){ .op = wr ? BLKDEV_WRITE : BLKDEV_READ,
						      .block = unit * (bs / bd->block_size),
						      .count = (uint32_t)(bs / bd->block_size),
						      .buf = bufs + i * bs,
						      .done = bench_done,
						      .priv = s };
			s->b = &b;
			rc = blkdev_submit(bd, &s->req);
			if (rc == -EAGAIN)
				break;
			if (rc) {
				b.err = rc;
				break;
			}
			s->busy = true;
			b.inflight++;
		}
		rc = blkdev_poll(bd);
		if (rc < 0 && !b.err)
			b.err = rc;
	}
	ns = plat_now_ns() - t0;
	kib_s = ns ? b.completed * (bs / 1024) * NSEC_PER_SEC / ns : 0;
	shell_printf(sh,
		     "vbench: %s %s %s bs=%llu qd=%llu: %" PRIu64 ".%" PRIu64 " MiB/s %" PRIu64
		     " IOPS (%" PRIu64 " requests in %" PRIu64 " ms) rc=%d\n",
		     argv[1], rnd ? "rand" : "seq", wr ? "write" : "read", bs, qd, kib_s / 1024,
		     kib_s % 1024 * 10 / 1024, ns ? b.completed * NSEC_PER_SEC / ns : 0,
		     b.completed, ns / NSEC_PER_MSEC, b.err);
	free(slots);
	free(bufs);
	return b.err;
}

static const struct shell_cmd selftest_cmds[] = {
	{ "vselftest", "disks | disk BB:DD.F | timeout BB:DD.F | net",
	  "virtio driver self-test (test only)", cmd_vselftest },
	{ "vbench", "BB:DD.F seq|rand read|write BS QD SECONDS", "virtio-blk benchmark (test only)",
	  cmd_vbench },
};

static struct shell_cmd_table selftest_table = { selftest_cmds, ARRAY_SIZE(selftest_cmds), NULL };

void virtio_selftest_init(struct shell *sh)
{
	shell_add_commands(sh, &selftest_table);
}
