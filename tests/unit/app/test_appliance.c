/* SPDX-License-Identifier: MIT */
/*
 * app/appliance: first boot, persistence, the transaction protocol under power cuts,
 * a stale configuration, the metadata layout, and every shell command with good and bad
 * input (driven through shell_exec(), output captured).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/appliance.h"
#include "config/appliance_cmds.h"
#include "config/shell.h"
#include "core/base/endian.h"
#include "core/base/util.h"
#include "core/lvm/lvm_disks.h"
#include "core/pdata/block_manager.h"
#include "host/hostdev.h"
#include "tests/support/app_fixture.h"
#include "tests/support/harness.h"

#define META_BYTES (16ull << 20)
/* lvm's first extent (pe_start) on both PVs, in 512-byte sectors. */
#define PE_START_SECTORS 2048u
#define DATA_BYTES	 (64ull << 20)

/* ---- Fixture: tests/support/app_fixture.h --------------------------------------------------- */

static bool has(const struct fx *f, const char *s)
{
	if (strstr(f->out, s))
		return true;
	fprintf(stderr, "output lacks '%s':\n%s\n", s, f->out);
	return false;
}

static uint64_t txid(struct fx *f)
{
	struct thin_pool_status st;

	if (thin_pool_get_status(appliance_pool(f->a), &st))
		return ~0ull;
	return st.transaction_id;
}

/* Every volume's thin device exists, and the pool has no device no volume names. */
static int count_dev(void *ctx, thin_id_t id, const struct thin_dev_details *d)
{
	(*(unsigned *)ctx)++;
	return 0;
}

static bool pool_matches_config(struct fx *f)
{
	const struct cfg *c = appliance_config(f->a);
	struct thin_md_view v;
	unsigned n = 0;

	for (size_t i = 0; i < c->nvols; i++) {
		struct thin_dev_details d;

		if (thin_md_view_current(thin_pool_md(appliance_pool(f->a)), &v) ||
		    thin_view_get_details(&v, c->vols[i].id, &d)) {
			fprintf(stderr, "volume %s (id %u) has no thin device\n", c->vols[i].name,
				c->vols[i].id);
			return false;
		}
	}
	if (thin_md_view_current(thin_pool_md(appliance_pool(f->a)), &v) ||
	    thin_view_for_each_device(&v, count_dev, &n))
		return false;
	if (n != c->nvols)
		fprintf(stderr, "pool has %u devices, configuration %zu volumes\n", n, c->nvols);
	return n == c->nvols;
}

/* ---- First boot ------------------------------------------------------------------------------ */

TEST(first_boot_formats_and_exports_vol0)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	struct nbd_export_info ei;
	const struct cfg_volume *v;

	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	v = cfg_find_volume(appliance_config(f->a), "vol0");
	if (!ok(v))
		goto out;
	/* As big as the pool's data LV: the data disk after the LVM header, in whole extents. */
	ok_eq(v->size, (DATA_BYTES - (1 << 20)) / (4 << 20) * (4 << 20));
	ok(cfg_find_export(appliance_config(f->a), "vol0"));
	ok_eq(nbd_server_export_info(f->srv, 0, &ei), 0);
	ok(!strcmp(ei.name, "vol0"));
	ok_eq(ei.size, v->size);
	ok(!ei.read_only);
	ok(strstr(f->log, "first boot"));
	ok_eq(txid(f), 1);
	ok(pool_matches_config(f));
	/* The disks are VG "thinbox": the pool on pool_tmeta (half of the metadata PV's
	 * extents, lvol0_pmspare the other half) and pool_tdata (all of the data PV's). The VG
	 * was written at the format (seqno 1) and twice for vol0 (with, then without, its
	 * create message). */
	{
		struct appliance_vg_info vi;

		ok_eq(appliance_vg_info(f->a, &vi), 0);
		ok(!strcmp(vi.vg, "thinbox") && !strcmp(vi.pool, "pool"));
		ok_eq(vi.seqno, 3);
		ok_eq(vi.lvs, 5);
		ok_eq(vi.transaction_id, 1);
		ok_eq(vi.messages, 0);
		ok_eq(vi.extent_bytes, 4u << 20);
		/* 3 extents: pool_tmeta 1, lvol0_pmspare 1 (as big), 1 free */
		ok_eq(vi.meta_bytes, 4u << 20);
		ok_eq(vi.data_bytes, (DATA_BYTES - (1 << 20)) / (4 << 20) * (4 << 20));
	}

	/* The second boot is not a first boot. */
	shutdown_app(f);
	ok_eq(boot_on(f, true), 0);
	ok(!strstr(f->log, "first boot"));
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok_eq(appliance_config(f->a)->nvols, 1);
	ok_eq(txid(f), 1);
out:
	fx_free(f);
}

TEST(first_boot_off_leaves_blank_disk_alone)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	uint8_t b0[512];

	ok_eq(boot_on(f, false), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_NO_POOL);
	ok(!appliance_pool(f->a));
	ok_eq(blkdev_read(f->meta, 0, 1, b0), 0);
	for (size_t i = 0; i < sizeof(b0); i++)
		if (b0[i])
			fail("block 0 written");
	/* The shell says what to do, and pool format works on a blank disk without --force. */
	ok(sh(f, "thin list") != 0);
	ok(has(f, "no pool"));
	ok_eq(sh(f, "pool format"), 0);
	ok(has(f, "pool formatted"));
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok_eq(appliance_config(f->a)->nvols, 0);
	/* A reboot after an explicit format does not make vol0. */
	shutdown_app(f);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok_eq(appliance_config(f->a)->nvols, 0);
	fx_free(f);
}

TEST(never_formats_a_disk_with_data)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	uint8_t b0[512], chk[512];

	memset(b0, 0x42, sizeof(b0));
	ok_eq(blkdev_write(f->meta, 0, 1, b0), 0);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_NO_POOL);
	ok(strlen(appliance_problem(f->a)) > 0);
	ok_eq(blkdev_read(f->meta, 0, 1, chk), 0);
	ok(!memcmp(b0, chk, sizeof(b0)));
	ok(sh(f, "pool format") == -EEXIST);
	ok(has(f, "--force"));
	ok_eq(blkdev_read(f->meta, 0, 1, chk), 0);
	ok(!memcmp(b0, chk, sizeof(b0)));
	ok(sh(f, "pool status") != 0);
	ok(has(f, "no pool"));
	ok_eq(sh(f, "pool format --force --block-size 128K --no-zero"), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok_eq(sh(f, "pool status"), 0);
	ok(has(f, "128 KiB"));
	ok(has(f, "skip_block_zeroing"));
	/* The format's options outlive a reboot. */
	shutdown_app(f);
	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "pool status"), 0);
	ok(has(f, "128 KiB"));
	ok(has(f, "skip_block_zeroing"));
	/* A VG is erased only when the format names it. */
	ok_eq(sh(f, "pool format"), -ENOTEMPTY);
	ok(has(f, "pool format --force --confirm thinbox"));
	ok_eq(sh(f, "pool format --force"), -ENOTEMPTY);
	ok_eq(sh(f, "pool format --force --confirm other"), -ENOTEMPTY);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	/* Without --block-size a new format gets the default 64 KiB, not the previous size. */
	ok_eq(sh(f, "pool format --force --confirm thinbox --block-size 128K --vg vg2"), 0);
	ok(has(f, "volume group vg2"));
	ok_eq(sh(f, "pool format --force --confirm vg2"), 0);
	ok_eq(sh(f, "pool status"), 0);
	ok(has(f, "64.0 KiB"));
	ok(!strstr(f->out, "128 KiB"));
	fx_free(f);
}

/*
 * A VG the appliance cannot serve is someone's all the same: here the data disk still holds
 * VG thinbox (its PV label and copies) while the metadata disk was replaced by one with
 * other data. --force alone erases the metadata disk's data, not the VG: that takes its name.
 */
TEST(format_names_a_vg_it_cannot_serve)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	enum { HDR = PE_START_SECTORS };
	uint8_t *hdr = malloc(HDR * 512), *chk = malloc(HDR * 512), junk[4 * 512];

	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	shutdown_app(f);
	memset(junk, 0x42, sizeof(junk));
	ok_eq(blkdev_write(f->meta, 0, 4, junk), 0);
	ok_eq(blkdev_read(f->data, 0, HDR, hdr), 0);
	ok(!memcmp(hdr + 512, "LABELONE", 8));
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_NO_POOL);
	ok(strstr(appliance_problem(f->a), "volume group thinbox") != NULL);
	ok_eq(sh(f, "pool format"), -ENOTEMPTY);
	ok_eq(sh(f, "pool format --force"), -ENOTEMPTY);
	ok(has(f, "--confirm"));
	ok_eq(sh(f, "pool format --force --confirm other"), -ENOTEMPTY);
	/* Nothing was written: the data PV's label and VG copies, the metadata disk's data. */
	ok_eq(blkdev_read(f->data, 0, HDR, chk), 0);
	ok(!memcmp(hdr, chk, HDR * 512));
	ok_eq(blkdev_read(f->meta, 0, 4, chk), 0);
	ok(!memcmp(junk, chk, sizeof(junk)));
	ok_eq(sh(f, "pool format --force --confirm thinbox"), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	free(hdr);
	free(chk);
	fx_free(f);
}

/* ---- Commands and persistence ------------------------------------------------------------- */

TEST(commands_and_persistence)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	uint64_t t;

	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "thin create data 1G"), 0);
	ok(has(f, "created data"));
	ok_eq(sh(f, "thin snapshot data data-snap1"), 0);
	ok_eq(sh(f, "export add data-snap1 --read-only"), 0);
	ok_eq(sh(f, "export add data --name d2"), 0);
	ok_eq(sh(f, "thin resize data 2G"), 0);
	ok_eq(sh(f, "thin list"), 0);
	ok(has(f, "data-snap1"));
	/* CREATED is the LV's creation_time, the wall clock's date (UTC), not the pool's counter. */
	{
		time_t now = time(NULL);
		struct tm tm;
		char today[16];

		gmtime_r(&now, &tm);
		strftime(today, sizeof(today), "%Y-%m-%d", &tm);
		ok(has(f, today));
		ok(!strstr(f->out, "time 0"));
	}
	ok(has(f, "2.0 GiB"));
	ok(has(f, "3 volume(s)"));
	ok_eq(sh(f, "thin info data-snap1"), 0);
	ok(has(f, "origin            data"));
	ok(has(f, "(read-only)"));
	ok_eq(sh(f, "export list"), 0);
	ok(has(f, "d2"));
	ok(has(f, "ro"));
	ok(has(f, "(default export)"));
	ok_eq(sh(f, "nbd clients"), 0);
	ok(has(f, "0 connection(s)"));
	ok_eq(sh(f, "pool status"), 0);
	ok(has(f, "status: "));
	ok(has(f, "transaction id"));
	ok(has(f, "needs_check     no"));
	ok(has(f, "metadata cache  at most "));
	t = txid(f);
	ok_eq(t, 3); /* the thin devices made: vol0, data and its snapshot (lvm's rule: only
		      * creates and deletes move the pool's transaction id) */
	ok(pool_matches_config(f));

	shutdown_app(f);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok_eq(txid(f), t);
	ok_eq(appliance_config(f->a)->nvols, 3);
	ok_eq(appliance_config(f->a)->nexps, 3);
	ok_eq(cfg_find_volume(appliance_config(f->a), "data")->size, 2ull << 30);
	ok(cfg_find_export(appliance_config(f->a), "data-snap1")->read_only);
	ok(pool_matches_config(f));

	/* Delete refuses an exported volume, then works once the export is gone. */
	ok_eq(sh(f, "thin delete data-snap1"), -EBUSY);
	ok(has(f, "export remove data-snap1"));
	ok_eq(sh(f, "export remove data-snap1"), 0);
	ok_eq(sh(f, "thin delete data-snap1"), 0);
	ok(!cfg_find_volume(appliance_config(f->a), "data-snap1"));
	ok(pool_matches_config(f));
	ok_eq(sh(f, "pool commit"), 0);
	ok_eq(sh(f, "pool check"), 0);
	ok(has(f, "100%"));
	ok(has(f, "clean"));
	ok_eq(sh(f, "pool reserve-metadata-snap"), 0);
	ok(has(f, "held root: block"));
	ok_eq(sh(f, "pool reserve-metadata-snap"), -EBUSY);
	ok_eq(sh(f, "pool status"), 0);
	ok(has(f, "held root       block"));
	ok_eq(sh(f, "pool release-metadata-snap"), 0);
	ok(sh(f, "pool release-metadata-snap") != 0);
	ok(has(f, "no metadata snapshot is held"));
	ok_eq(sh(f, "pool resize-data"), 0);
	fx_free(f);
}

/*
 * `pool check` on a pool whose data space map root miscounts its allocated blocks (a
 * counter only): clean, the warning said; after the next commit, clean with nothing said.
 */
TEST(pool_check_says_counter_warnings)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	uint8_t *sb = malloc(4096);
	/* struct thin_disk_superblock: the data space map root at 64, nr_allocated at +8. */
	const size_t nr_alloc_off = 64 + 8;

	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "thin create data 1G"), 0);
	shutdown_app(f);
	/* The superblock is block 0 of pool_tmeta: the metadata PV's first extent. */
	ok_eq(blkdev_read(f->meta, PE_START_SECTORS, 8, sb), 0);
	put_le64(sb + nr_alloc_off, get_le64(sb + nr_alloc_off) + 2);
	put_le32(sb, dm_bm_checksum(sb + 4, 4092, 160774u));
	ok_eq(blkdev_write(f->meta, PE_START_SECTORS, 8, sb), 0);
	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "pool check"), 0);
	ok(has(f, "  warning: data space map: root says"));
	ok(has(f, "pool check: clean, 1 warning(s)"));
	ok(!strstr(f->out, "problem"));
	ok_eq(sh(f, "thin create more 1G"), 0);
	ok_eq(sh(f, "pool check"), 0);
	ok(has(f, "pool check: clean\n"));
	ok(!strstr(f->out, "warning"));
	free(sb);
	fx_free(f);
}

TEST(set_transaction_id_keeps_config_in_step)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);

	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "pool set-transaction-id 0 5"), -EINVAL);
	ok(has(f, "mismatched transaction id"));
	ok_eq(sh(f, "pool set-transaction-id 1 1"), -EINVAL);
	ok_eq(sh(f, "pool set-transaction-id 1 x"), -EINVAL);
	ok_eq(sh(f, "pool set-transaction-id 1"), -EINVAL);
	ok_eq(sh(f, "pool set-transaction-id 1 100"), 0);
	ok_eq(txid(f), 100);
	shutdown_app(f);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok_eq(appliance_config(f->a)->nvols, 1);
	ok_eq(txid(f), 100);
	fx_free(f);
}

TEST(stale_config_is_reported_and_recoverable)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);

	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "thin create a 1M"), 0);
	/* Someone moves the pool's transaction id behind the appliance's back. */
	ok_eq(thin_pool_set_transaction_id(appliance_pool(f->a), 2, 7), 0);
	shutdown_app(f);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_STALE);
	ok(strstr(appliance_problem(f->a), "transaction"));
	ok_eq(nbd_server_export_info(f->srv, 0, &(struct nbd_export_info){ 0 }), -ENOENT);
	/* Pool commands work; volume and export changes are refused with the reason. */
	ok_eq(sh(f, "pool status"), 0);
	ok(has(f, "is at transaction 7, the volume group expects 2"));
	ok(sh(f, "thin create b 1M") != 0);
	ok(has(f, "transaction"));
	ok(sh(f, "export list") != 0);
	ok(sh(f, "thin list") != 0);
	/* Moving the pool back to the configuration's id adopts it. */
	ok_eq(sh(f, "pool set-transaction-id 7 2"), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok(cfg_find_volume(appliance_config(f->a), "a"));
	ok_eq(nbd_server_export_info(f->srv, 0, &(struct nbd_export_info){ 0 }), 0);
	fx_free(f);
}

TEST(bad_input_never_crashes)
{
	static const char *const lines[] = {
		"pool",
		"pool bogus",
		"pool format --block-size",
		"pool format --block-size 4K",
		"pool format --block-size 100K",
		"pool format --block-size x",
		"pool format --what",
		"pool status extra",
		"pool commit now",
		"pool set-transaction-id -1 2",
		"pool set-transaction-id 99999999999999999999999 2",
		"thin",
		"thin create",
		"thin create x",
		"thin create x 1M extra",
		"thin create .bad 1M",
		"thin create -bad 1M",
		"thin create has/slash 1M",
		"thin create \"\" 1M",
		"thin create x 0",
		"thin create x 513",
		"thin create x 12Q",
		"thin create x -5",
		"thin create x 2048T",
		"thin create x 99999999999999999999999",
		"thin create "
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 1M",
		"thin create has:colon 1M",
		"thin create snapshot1 1M",
		"thin create x_tmeta 1M",
		"thin create pool 1M",
		"thin rename",
		"thin rename vol0",
		"thin rename nosuch x",
		"thin rename vol0 bad/name",
		"thin rename vol0 vol0",
		"thin rename vol0 pool_tdata",
		"pool format",
		"pool format --force",
		"pool format --force --confirm",
		"pool format --force --confirm wrong",
		"pool format --vg bad/name --force --confirm thinbox",
		"thin create vol0 1M",
		"thin snapshot nosuch s",
		"thin snapshot vol0 vol0",
		"thin snapshot vol0 bad/name",
		"thin delete nosuch",
		"thin delete vol0",
		"thin resize nosuch 1M",
		"thin resize vol0 0",
		"thin info",
		"thin info nosuch",
		"thin list --bogus",
		"export",
		"export add",
		"export add nosuch",
		"export add vol0",
		"export add vol0 --name",
		"export add vol0 --name bad/name",
		"export add vol0 --bogus",
		"export remove nosuch",
		"export remove",
		"nbd",
		"nbd bogus",
		"\"unclosed",
	};
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	uint64_t t;

	ok_eq(boot_on(f, true), 0);
	t = txid(f);
	for (size_t i = 0; i < ARRAY_SIZE(lines); i++) {
		int rc = sh(f, "%s", lines[i]);

		if (rc == 0 || (!strstr(f->out, "error") && !strstr(f->out, "usage"))) {
			fail("'%s' gave %d and printed: %s", lines[i], rc, f->out);
		}
	}
	/* Nothing changed, and the appliance still works. */
	ok_eq(txid(f), t);
	ok_eq(appliance_config(f->a)->nvols, 1);
	ok_eq(sh(f, "thin create ok 1M"), 0);
	ok(pool_matches_config(f));
	fx_free(f);
}

/* ---- Power cuts during administration ----------------------------------------------------- */

/* A fixed script of changes; returns how far it got. */
static int admin_script(struct fx *f)
{
	static const char *const steps[] = {
		"thin create a 64M", "thin snapshot a s1",	"export add s1 --read-only",
		"thin create b 1G",  "thin resize a 128M",	"export remove s1",
		"thin delete s1",    "thin snapshot b b1",	"pool set-transaction-id %T 50",
		"thin delete a",     "export add b1 --name bb", "thin create c 4M",
	};
	for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
		char line[80];
		const char *p = strstr(steps[i], "%T");

		if (p)
			snprintf(line, sizeof(line), "pool set-transaction-id %llu 50",
				 (unsigned long long)txid(f));
		else
			snprintf(line, sizeof(line), "%s", steps[i]);
		if (sh(f, "%s", line))
			return (int)i;
	}
	return (int)ARRAY_SIZE(steps);
}

/* A small data disk keeps the ~400 runs quick: the script's volumes are thin. */
#define CUT_DATA_BYTES (16ull << 20)

/* Both disks behind crashdevs that lose power together (the VG is on both). */
static void wrap_disks(struct fx *f, struct blkdev *mem[2], struct blkdev *crash[2])
{
	mem[0] = f->meta;
	mem[1] = f->data;
	if (crashdev_create(mem[0], &crash[0]) || crashdev_create(mem[1], &crash[1]))
		abort();
	crashdev_share_power(crash[0], crash[1]);
	f->meta = crash[0];
	f->data = crash[1];
}

/*
 * A power cut at every write and flush of either disk during a first boot and an admin
 * script (VG commits on both PVs, pool commits, lvm's two-commit protocol): afterwards the
 * appliance starts READY, the VG names exactly the pool's devices, every export is served,
 * and the pool works and checks clean.
 */
TEST(power_cut_during_admin_keeps_names_and_pool_in_step)
{
	struct blkdev *mem[2], *crash[2];
	uint64_t events[2] = { 0, 0 };
	unsigned runs = 0;

	/* One clean run counts each disk's writes and flushes. */
	{
		struct fx *f = fx_new(META_BYTES, CUT_DATA_BYTES);

		wrap_disks(f, mem, crash);
		ok_eq(boot_on(f, true), 0);
		ok_eq(admin_script(f), 12);
		shutdown_app(f);
		for (int d = 0; d < 2; d++) {
			events[d] = crashdev_events(crash[d]);
			blkdev_destroy(crash[d]);
		}
		f->meta = mem[0];
		f->data = mem[1];
		fx_free(f);
	}
	ok(events[0] > 20 && events[1] > 10);
	for (int d = 0; d < 2 && !test_failed(); d++) {
		for (uint64_t cut = 1; cut <= events[d]; cut++, runs++) {
			struct fx *f = fx_new(META_BYTES, CUT_DATA_BYTES);

			wrap_disks(f, mem, crash);
			crashdev_cut_at(crash[d], cut);
			ok_eq(boot_on(f, true), 0);
			if (appliance_state(f->a) == APPLIANCE_READY)
				admin_script(f);
			/* Shut down on the dead disks (every write fails), then the power goes. */
			shutdown_app(f);
			for (int k = 0; k < 2; k++) {
				crashdev_power_cut(crash[k], cut * 7919 + (uint64_t)k);
				crashdev_revive(crash[k]);
			}
			f->meta = mem[0];
			f->data = mem[1];
			nbd_server_destroy(f->srv);
			ok_eq(nbd_server_create(NULL, &f->srv), 0);

			ok_eq(boot_on(f, true), 0);
			if (appliance_state(f->a) != APPLIANCE_READY) {
				fail("%s cut %llu: not ready after the cut: %s",
				     d ? "data" : "meta", (unsigned long long)cut,
				     appliance_problem(f->a));
			} else if (!pool_matches_config(f)) {
				fail("%s cut %llu: names and pool disagree", d ? "data" : "meta",
				     (unsigned long long)cut);
			} else {
				/* Whatever survived, it is usable and every export is served. */
				const struct cfg *c = appliance_config(f->a);
				struct nbd_export_info ei;
				unsigned n = 0;

				while (!nbd_server_export_info(f->srv, n, &ei))
					n++;
				if (n != c->nexps)
					fail("cut %llu: %u exports served, %zu configured",
					     (unsigned long long)cut, n, c->nexps);
				if (sh(f, "thin create after-cut 1M"))
					fail("cut %llu: cannot create after the cut: %s",
					     (unsigned long long)cut, f->out);
				if (sh(f, "pool check"))
					fail("cut %llu: pool check: %s", (unsigned long long)cut,
					     f->out);
			}
			shutdown_app(f);
			blkdev_destroy(crash[0]);
			blkdev_destroy(crash[1]);
			fx_free(f);
			if (test_failed())
				break;
		}
	}
	fprintf(stderr, "# %u power cuts\n", runs);
}

/* ---- Limits ------------------------------------------------------------------------------- */

TEST(tiny_metadata_disk_fills_with_a_clear_error)
{
	/* The smallest disk: one 4 MiB extent of pool_tmeta, and data space to spare, so that it
	 * is the metadata that runs out (a full data device would instead queue the writes for
	 * dm's 60 s no-space timeout). A volume (not exported, so the test may open it) maps
	 * 2,048 consecutive blocks, some 16 mapping leaves; each snapshot of it then writes one
	 * block in each of them, so shares none of its 16 leaves with the origin or with another
	 * snapshot: each snapshot costs its own leaves, and a few dozen fill the metadata. */
	struct fx *f = fx_new(APPLIANCE_MIN_META_BYTES, 512ull << 20);
	struct thin_pool_status st;
	const struct cfg_volume *v;
	struct thin_volume *tv;
	uint8_t buf[4096];
	int rc = 0, made = 0;

	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	memset(buf, 0x77, sizeof(buf));
	ok_eq(sh(f, "thin create base 128M"), 0);
	v = cfg_find_volume(appliance_config(f->a), "base");
	if (!v || thin_volume_open(appliance_pool(f->a), v->id, v->size, false, &tv)) {
		fail("cannot open base");
		fx_free(f);
		return;
	}
	/* 4 KiB at the start of each 64 KiB block: the rest is zeroed (provisioning). */
	for (uint64_t b = 0; b < 2048 && !rc; b++)
		rc = blkdev_write(thin_volume_blkdev(tv), b * 128, 8, buf);
	if (!rc)
		rc = blkdev_flush(thin_volume_blkdev(tv));
	thin_volume_close(tv);
	ok_eq(rc, 0);
	for (int i = 0; i < 3000 && !rc; i++) {
		char name[16];

		rc = sh(f, "thin snapshot base s%d", i);
		if (rc)
			break;
		made++;
		snprintf(name, sizeof(name), "s%d", i);
		v = cfg_find_volume(appliance_config(f->a), name);
		if (!v || thin_volume_open(appliance_pool(f->a), v->id, v->size, false, &tv)) {
			fail("cannot open s%d", i);
			break;
		}
		for (int k = 0; k < 16 && !rc; k++)
			rc = blkdev_write(thin_volume_blkdev(tv), (uint64_t)k * 128 * 128, 8, buf);
		if (!rc)
			rc = blkdev_flush(thin_volume_blkdev(tv));
		thin_volume_close(tv);
		if (rc) {
			ok(rc == -ENOSPC || rc == -EROFS || rc == -EIO);
			break;
		}
	}
	fprintf(stderr, "# %d snapshots before the metadata was full\n", made);
	ok(made > 5);
	ok(rc != 0);
	/* It was the metadata: every metadata block used, data to spare, no write queued. */
	ok_eq(thin_pool_get_status(appliance_pool(f->a), &st), 0);
	ok_eq(st.meta_used, st.meta_total);
	ok(st.data_used < st.data_total / 2);
	ok_eq(st.queued_for_space, 0);
	/* The shell says so clearly, keeps running, and reading still works. */
	rc = sh(f, "thin snapshot base one-more");
	if (rc) {
		ok(has(f, "error:"));
	}
	ok_eq(sh(f, "pool status"), 0);
	ok(has(f, "metadata"));
	ok(sh(f, "thin list") == 0 || has(f, "error"));
	fx_free(f);
}

TEST(too_small_metadata_disk_is_refused)
{
	struct fx *f = fx_new(1 << 20, DATA_BYTES);
	struct appliance_opts o;
	struct appliance *a;

	appliance_default_opts(&o);
	o.meta_disk = f->meta;
	o.data_disk = f->data;
	ok_eq(appliance_create(&o, &a), -EINVAL);
	o.meta_disk = NULL;
	ok_eq(appliance_create(&o, &a), -EINVAL);
	fx_free(f);
}

/* The out-of-data-space policy: pool set, status, bad input, kept across reboots and format. */
static uint32_t no_space_timeout(struct fx *f, bool *error_if_no_space)
{
	struct thin_pool_status st;

	if (thin_pool_get_status(appliance_pool(f->a), &st))
		return ~0u;
	*error_if_no_space = st.error_if_no_space;
	return st.no_space_timeout_ms;
}

TEST(pool_set_no_space_policy)
{
	static const char *const bad[] = {
		"pool set",
		"pool set no-space-timeout",
		"pool set no-space-timeout -1",
		"pool set no-space-timeout abc",
		"pool set no-space-timeout 1.5",
		"pool set no-space-timeout 10s",
		"pool set no-space-timeout 4294968",
		"pool set no-space-timeout 99999999999999999999999",
		"pool set no-space-timeout \"\"",
		"pool set no-space-timeout 5 extra",
		"pool set error-if-no-space",
		"pool set error-if-no-space maybe",
		"pool set error-if-no-space ON",
		"pool set bogus 1",
		"pool set zeroing off",
	};
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	bool e = true;

	ok_eq(boot_on(f, true), 0);
	/* dm's defaults. */
	ok_eq(no_space_timeout(f, &e), 60000);
	ok(!e);
	ok_eq(sh(f, "pool status"), 0);
	ok(has(f, " queue_if_no_space "));
	ok(has(f, "when full       queue writes for 60 s, then error"));
	ok_eq(sh(f, "pool format --force --confirm thinbox --no-zero"), 0);
	ok_eq(sh(f, "pool set no-space-timeout 30"), 0);
	ok(has(f, "when full: queue writes for 30 s, then error"));
	ok_eq(no_space_timeout(f, &e), 30000);
	ok(!e);
	ok_eq(sh(f, "pool set error-if-no-space on"), 0);
	ok(has(f, "when full: error at once"));
	ok_eq(no_space_timeout(f, &e), 30000);
	ok(e);
	ok_eq(sh(f, "pool status"), 0);
	ok(has(f, " error_if_no_space "));
	/* Kept in lvm's own words: the pool LV's ERROR_WHEN_FULL flag (lvchange
	 * --errorwhenfull), zero_new_blocks = 0 (--no-zero), and our tag for the timeout. */
	{
		struct lvm_disk dk[2] = { { .dev = f->meta }, { .dev = f->data } };
		struct lvm_vg *vg = NULL;
		const struct lvm_lv *pool;
		unsigned missing;
		char why[200];
		bool ewf = false, tag = false;

		if (ok_eq(lvm_disks_read(dk, 2, NULL, &vg, &missing, why, sizeof(why)), 0)) {
			pool = lvm_vg_find_lv(vg, "pool");
			for (unsigned i = 0; i < pool->flags.n; i++)
				ewf |= !strcmp(pool->flags.v[i], "ERROR_WHEN_FULL");
			for (unsigned i = 0; i < pool->tags.n; i++)
				tag |=
				    !strcmp(pool->tags.v[i], "thinbox_no_space_timeout_ms=30000");
			ok(ewf && tag);
			ok_eq(pool->segs[0].zero_new_blocks, 0);
			ok_eq(pool->segs[0].discards, LVM_DISCARDS_PASSDOWN);
		}
		lvm_vg_free(vg);
	}
	ok(has(f, "when full       error at once (error-if-no-space on)"));
	/* Bad input: a clear error, nothing changed. */
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int rc = sh(f, "%s", bad[i]);

		if (rc != -EINVAL || (!strstr(f->out, "error:") && !strstr(f->out, "usage:")))
			fail("'%s' gave %d: %s", bad[i], rc, f->out);
		ok_eq(no_space_timeout(f, &e), 30000);
		ok(e);
	}
	ok_eq(sh(f, "pool set no-space-timeout abc"), -EINVAL);
	ok(has(f, "error: bad no-space timeout 'abc'"));
	ok_eq(sh(f, "pool set error-if-no-space maybe"), -EINVAL);
	ok(has(f, "error: error-if-no-space is on or off, not 'maybe'"));
	ok_eq(sh(f, "pool set bogus 1"), -EINVAL);
	ok(has(f, "error: unknown pool setting 'bogus'"));
	/* Kept across a reboot, and the format's skip_block_zeroing with it. */
	shutdown_app(f);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_READY);
	ok_eq(no_space_timeout(f, &e), 30000);
	ok(e);
	ok_eq(sh(f, "pool status"), 0);
	ok(has(f, "skip_block_zeroing"));
	ok(has(f, "when full       error at once"));
	ok_eq(sh(f, "pool set error-if-no-space off"), 0);
	ok_eq(sh(f, "pool set no-space-timeout 0"), 0);
	ok(has(f, "when full: queue writes until space appears"));
	/* And across a format. */
	ok_eq(sh(f, "pool format --force --confirm thinbox"), 0);
	shutdown_app(f);
	ok_eq(boot_on(f, true), 0);
	ok_eq(no_space_timeout(f, &e), 0);
	ok(!e);
	ok_eq(sh(f, "pool status"), 0);
	ok(has(f, " queue_if_no_space "));
	ok(has(f, "when full       queue writes until space appears (no-space-timeout 0)"));
	ok(has(f, "features        zeroing"));
	fx_free(f);
}

/*
 * A pending delete message that names a device an LV still uses (not something lvm writes:
 * it removes the LV in the same commit) is never sent: the volume survives, the state says
 * why, nothing is exported.
 */
TEST(pending_delete_of_a_named_device_is_refused)
{
	struct fx *f = fx_new(META_BYTES, DATA_BYTES);
	struct lvm_disk dk[2] = { { .dev = NULL }, { .dev = NULL } };
	struct lvm_vg *vg = NULL;
	struct lvm_seg *ps;
	unsigned missing;
	char why[200];

	ok_eq(boot_on(f, true), 0);
	ok_eq(sh(f, "thin create keep 1M"), 0);
	shutdown_app(f);
	dk[0].dev = f->meta;
	dk[1].dev = f->data;
	if (!ok_eq(lvm_disks_read(dk, 2, NULL, &vg, &missing, why, sizeof(why)), 0))
		goto out;
	ps = &lvm_vg_find_lv(vg, "pool")->segs[0];
	ps->transaction_id++;
	ok_eq(lvm_seg_add_message_delete(ps, lvm_vg_find_lv(vg, "keep")->segs[0].device_id), 0);
	ok_eq(lvm_disks_write(vg, dk, 2, why, sizeof(why)), 0);
	ok_eq(boot_on(f, true), 0);
	ok_eq(appliance_state(f->a), APPLIANCE_STALE);
	ok(strstr(appliance_problem(f->a), "names a thin device an LV still uses") != NULL);
	ok_eq(nbd_server_export_info(f->srv, 0, &(struct nbd_export_info){ 0 }), -ENOENT);
	/* The device is still there. */
	ok_eq(thin_md_device_exists(thin_pool_md(appliance_pool(f->a)),
				    lvm_vg_find_lv(vg, "keep")->segs[0].device_id),
	      1);
out:
	lvm_vg_free(vg);
	fx_free(f);
}
