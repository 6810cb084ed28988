/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: LVM2 VG metadata text, as the appliance reads it from disks that Linux's
 * lvm (or anyone) may have written (docs/lvm2-format.md, docs/appliance.md).
 *
 * Input: the text of one metadata copy. Optionally "\x01" then one control byte first:
 *   bit 0  4096-byte blocks instead of 512
 *   bit 1  first_boot off
 *   bit 2  the text on the metadata disk only (the data disk: see bit 3, else no copy)
 *   bit 3  the other disk gets the appliance's own last text (BASE below) instead
 *   bit 4  when the appliance comes up READY: make changes (create, snapshot, export,
 *          rename, delete), then boot again, which must come up READY
 *
 * Each run:
 *  (a) the text layer and the VG model: lvm_text_parse() then emit must be a fixed point
 *      after one round; when lvm_vg_from_text() accepts the text, lvm_vg_validate() must
 *      accept the model and lvm_vg_to_text() -> lvm_vg_from_text() -> lvm_vg_to_text()
 *      must give the same bytes;
 *  (b) the text is committed (precommit + commit, so every checksum is right and the parser
 *      is reached) on two memory disks laid out as the appliance's: 16 MiB metadata disk
 *      and 32 MiB data disk, PV labels with the fixed ids PV_META / PV_DATA below, and the
 *      pool the appliance made at its first boot in pool_tmeta (pv0 extent 0), after a
 *      few changes: thin ids 0, 1 and 2 (a snapshot of 1), transaction id 5 (BASE, the
 *      seed "base"). Then appliance_create() (with an NBD server, no connections) and
 *      appliance_destroy().
 *      The sanitizers and libFuzzer's leak and timeout checks are the oracle, plus: a boot
 *      that ends in NO_POOL wrote nothing to either disk (bad metadata never makes the
 *      appliance write over what is committed).
 *
 * The disks are set up once and reset between runs by copying back only the 64 KiB chunks
 * a run wrote.
 *
 * Environment: FUZZ_LVM_VERBOSE prints the appliance's log; FUZZ_LVM_DUMP=DIR writes the
 * seed texts the set-up produced into DIR (most of tests/fuzz/corpus/fuzz_lvm/ was made
 * that way; docs/lvm2-format.md, "Fuzzing").
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/appliance.h"
#include "core/base/util.h"
#include "core/lvm/lvm_pv.h"
#include "core/lvm/lvm_text.h"
#include "core/lvm/lvm_vg.h"
#include "net/nbd/nbd_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define META_BYTES (16u << 20)
#define DATA_BYTES (32u << 20)
#define CHUNK	   (64u << 10)
/* The PV ids of the two labels; the seed texts name them. */
#define PV_META "FuzzMetaPV0000000000000000000000"
#define PV_DATA "FuzzDataPV1111111111111111111111"

#define CTL_4K	       0x01
#define CTL_NO_FIRST   0x02
#define CTL_META_ONLY  0x04
#define CTL_OTHER_BASE 0x08
#define CTL_CHANGES    0x10

/* A memory disk that remembers which chunks were written, to be reset cheaply. */
struct rdisk {
	struct blkdev dev;
	size_t bytes;
	uint8_t *mem, *pristine;
	uint8_t dirty[DATA_BYTES / CHUNK];
	uint64_t writes;
};

static struct rdisk *rd(struct blkdev *d)
{
	return container_of(d, struct rdisk, dev);
}

static void mark(struct blkdev *d, uint64_t block, uint32_t count)
{
	struct rdisk *r = rd(d);
	uint64_t b = block * d->block_size, e = b + (uint64_t)count * d->block_size;

	for (uint64_t c = b / CHUNK; c <= (e - 1) / CHUNK; c++)
		r->dirty[c] = 1;
	r->writes++;
}

static int r_read(struct blkdev *d, uint64_t block, uint32_t count, void *buf)
{
	memcpy(buf, rd(d)->mem + block * d->block_size, (size_t)count * d->block_size);
	return 0;
}

static int r_write(struct blkdev *d, uint64_t block, uint32_t count, const void *buf)
{
	mark(d, block, count);
	memcpy(rd(d)->mem + block * d->block_size, buf, (size_t)count * d->block_size);
	return 0;
}

static int r_flush(struct blkdev *d)
{
	return 0;
}

static int r_zero(struct blkdev *d, uint64_t block, uint32_t count)
{
	mark(d, block, count);
	memset(rd(d)->mem + block * d->block_size, 0, (size_t)count * d->block_size);
	return 0;
}

static const struct blkdev_ops r_ops = {
	.read = r_read,
	.write = r_write,
	.flush = r_flush,
	.discard = r_zero,
	.write_zeroes = r_zero,
};

static struct rdisk meta_disk, data_disk;
static struct nbd_server *srv;
static char *base_text; /* the appliance's own last text, with PV_META / PV_DATA */
static size_t base_len;

static void rdisk_init(struct rdisk *r, const char *name, size_t bytes)
{
	r->bytes = bytes;
	r->mem = calloc(1, bytes);
	r->pristine = malloc(bytes);
	if (!r->mem || !r->pristine)
		abort();
	r->dev.ops = &r_ops;
	r->dev.name = name;
	r->dev.discard_zeroes = true;
}

static void rdisk_geometry(struct rdisk *r, uint32_t bs)
{
	r->dev.block_size = bs;
	r->dev.nr_blocks = r->bytes / bs;
}

/* What is on the disk now becomes what every run starts from. */
static void rdisk_keep(struct rdisk *r)
{
	memcpy(r->pristine, r->mem, r->bytes);
	memset(r->dirty, 0, sizeof(r->dirty));
}

static void rdisk_reset(struct rdisk *r)
{
	for (size_t c = 0; c < r->bytes / CHUNK; c++)
		if (r->dirty[c])
			memcpy(r->mem + c * CHUNK, r->pristine + c * CHUNK, CHUNK);
	memset(r->dirty, 0, sizeof(r->dirty));
	r->writes = 0;
}

static bool dumping, verbose;
static char dump_dir[256];

static void dump(const char *name, const char *text, size_t len)
{
	char path[512];
	FILE *f;

	if (!dumping)
		return;
	snprintf(path, sizeof(path), "%s/%s", dump_dir, name);
	f = fopen(path, "w");
	if (!f || fwrite(text, 1, len, f) != len || fclose(f))
		abort();
}

/*
 * The committed text of the metadata disk made deterministic: our PV ids (the labels are
 * rewritten with them), fixed VG and LV ids and creation times (the appliance draws ids
 * from the clock), so that the seeds and BASE are the same in every process.
 */
static char *committed_text(size_t *len)
{
	static const char alnum[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
	struct lvm_vg *vg;
	char *t;

	if (lvm_pv_read_text(&meta_disk.dev, &t, len, NULL, 0) ||
	    lvm_vg_from_text(t, *len, &vg, NULL, 0) || vg->nr_pvs != 2)
		abort();
	free(t);
	memcpy(vg->id, "FuzzVG00000000000000000000000000", LVM_ID_LEN);
	memcpy(vg->pvs[0].id, PV_META, LVM_ID_LEN);
	memcpy(vg->pvs[1].id, PV_DATA, LVM_ID_LEN);
	for (unsigned i = 0; i < vg->nr_lvs; i++) {
		struct lvm_lv *lv = &vg->lvs[i];

		memcpy(lv->id, "FuzzLV00000000000000000000000000", LVM_ID_LEN);
		lv->id[LVM_ID_LEN - 2] = alnum[i / 36 % 36];
		lv->id[LVM_ID_LEN - 1] = alnum[i % 36];
		if (lv->has_creation && lvm_lv_set_creation(lv, 1700000000 + i, "thinbox"))
			abort();
	}
	vg->has_creation = false;
	free(vg->creation_host);
	vg->creation_host = NULL;
	if (lvm_vg_to_text(vg, &t, len, NULL, 0))
		abort();
	lvm_vg_free(vg);
	return t;
}

static void log_line(void *ctx, const char *line)
{
	fprintf(stderr, "  %s\n", line);
}

static void app_opts(struct appliance_opts *o, bool first_boot)
{
	appliance_default_opts(o);
	o->meta_disk = &meta_disk.dev;
	o->data_disk = &data_disk.dev;
	o->srv = srv;
	o->first_boot = first_boot;
	o->log = verbose ? log_line : NULL;
}

/* Seeds derived from the base VG: lvm's pending messages, a _tdata of several segments. */
static void dump_derived(void)
{
	struct lvm_vg *vg;
	struct lvm_lv *lv, *pool;
	struct lvm_seg *s;
	char *t;
	size_t len;

	if (!dumping)
		return;
	/* A create cut short after lvm's first commit: the VG one ahead with its message. */
	if (lvm_vg_from_text(base_text, base_len, &vg, NULL, 0))
		abort();
	pool = lvm_vg_find_lv(vg, "pool");
	if (lvm_vg_add_lv(vg, "fromlinux", "FuzzLV0000000000000000000000000A",
			  LVM_LV_READ | LVM_LV_WRITE | LVM_LV_VISIBLE, &lv) ||
	    lvm_lv_set_creation(lv, 1700000000, "linux") || lvm_lv_add_seg(lv, LVM_SEG_THIN, 2, &s))
		abort();
	pool = lvm_vg_find_lv(vg, "pool");
	snprintf(s->thin_pool, sizeof(s->thin_pool), "pool");
	s->device_id = 7;
	s->transaction_id = pool->segs[0].transaction_id;
	pool->segs[0].transaction_id++;
	if (lvm_seg_add_message_create(&pool->segs[0], "fromlinux") ||
	    lvm_vg_to_text(vg, &t, &len, NULL, 0))
		abort();
	dump("pending-create", t, len);
	free(t);
	/* The same with the messages already sent (ids equal: they are cleared). */
	pool->segs[0].transaction_id--;
	if (lvm_vg_to_text(vg, &t, &len, NULL, 0))
		abort();
	dump("pending-sent", t, len);
	free(t);
	lvm_vg_free(vg);

	/* A delete cut short: snap1 gone from the VG, its id in a message. */
	if (lvm_vg_from_text(base_text, base_len, &vg, NULL, 0))
		abort();
	lvm_vg_remove_lv(vg, lvm_vg_find_lv(vg, "snap1"));
	pool = lvm_vg_find_lv(vg, "pool");
	pool->segs[0].transaction_id++;
	if (lvm_seg_add_message_delete(&pool->segs[0], 2) || lvm_vg_to_text(vg, &t, &len, NULL, 0))
		abort();
	dump("pending-delete", t, len);
	free(t);
	lvm_vg_free(vg);

	/* _tdata in three linear pieces, in order (what lvextend leaves). */
	if (lvm_vg_from_text(base_text, base_len, &vg, NULL, 0))
		abort();
	lv = lvm_vg_find_lv(vg, "pool_tdata");
	{
		uint64_t total = lv->segs[0].extent_count, done = 0;
		uint64_t part[3] = { 2, 3, total - 5 };

		lv->nr_segs = 0;
		for (unsigned i = 0; i < 3; i++) {
			if (lvm_lv_add_seg(lv, LVM_SEG_STRIPED, part[i], &s))
				abort();
			s->pv = 1;
			s->pe = done;
			done += part[i];
		}
	}
	if (lvm_vg_to_text(vg, &t, &len, NULL, 0))
		abort();
	dump("multi-segment-tdata", t, len);
	free(t);
	lvm_vg_free(vg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct appliance_opts o;
	struct appliance *a;
	char *t;
	size_t len;
	const char *d = getenv("FUZZ_LVM_DUMP");

	verbose = getenv("FUZZ_LVM_VERBOSE") != NULL;
	if (d) {
		dumping = true;
		snprintf(dump_dir, sizeof(dump_dir), "%s", d);
	}
	rdisk_init(&meta_disk, "meta", META_BYTES);
	rdisk_init(&data_disk, "data", DATA_BYTES);
	rdisk_geometry(&meta_disk, 512);
	rdisk_geometry(&data_disk, 512);
	if (nbd_server_create(NULL, &srv))
		abort();
	/* The appliance's first boot and a few changes, as an administrator would make them. */
	app_opts(&o, true);
	if (appliance_create(&o, &a) || appliance_state(a) != APPLIANCE_READY)
		abort();
	t = committed_text(&len);
	dump("first-boot", t, len);
	free(t);
	if (appliance_create_volume(a, "vol1", 8u << 20) ||
	    appliance_add_export(a, "vol1", NULL, false) ||
	    appliance_snapshot_volume(a, "vol1", "snap1") ||
	    appliance_add_export(a, "snap1", "snap1-ro", true) ||
	    appliance_create_volume(a, "odd", (3u << 20) + 512))
		abort();
	t = committed_text(&len);
	dump("changes-before-delete", t, len);
	free(t);
	if (appliance_delete_volume(a, "odd") || appliance_rename_volume(a, "vol0", "data0"))
		abort();
	appliance_destroy(a);
	base_text = committed_text(&base_len);
	dump("base", base_text, base_len);
	/* Our own PV ids (the text names them), empty metadata areas; the pool stays. */
	if (lvm_pv_format(&meta_disk.dev, &(struct lvm_pv_opts){ .id = PV_META, .in_vg = true },
			  NULL, 0) ||
	    lvm_pv_format(&data_disk.dev, &(struct lvm_pv_opts){ .id = PV_DATA, .in_vg = true },
			  NULL, 0))
		abort();
	rdisk_keep(&meta_disk);
	rdisk_keep(&data_disk);
	dump_derived();
	return 0;
}

/* (a): the text layer and the model on their own. */
static void check_text(const char *text, size_t len)
{
	struct lvm_tree *t1 = NULL, *t2 = NULL;
	struct lvm_vg *vg = NULL, *vg2 = NULL;
	char *s1 = NULL, *s2 = NULL;
	size_t l1, l2;
	char why[200];
	int rc;

	if (!lvm_text_parse(text, len, NULL, &t1, why, sizeof(why))) {
		/* The emitter's output parses back and is written the same way again. */
		rc = lvm_text_emit(t1, &s1, &l1);
		if (!rc) {
			if (lvm_text_parse(s1, l1, NULL, &t2, why, sizeof(why)) ||
			    lvm_text_emit(t2, &s2, &l2) || l1 != l2 || memcmp(s1, s2, l1))
				abort();
		} else if (rc != -E2BIG) {
			abort();
		}
		lvm_tree_free(t1);
		lvm_tree_free(t2);
		free(s1);
		free(s2);
		s1 = s2 = NULL;
	}
	if (lvm_vg_from_text(text, len, &vg, why, sizeof(why)))
		return;
	if (lvm_vg_validate(vg, why, sizeof(why)))
		abort(); /* read, but refused by the same checks */
	rc = lvm_vg_to_text(vg, &s1, &l1, why, sizeof(why));
	if (rc == 0) {
		if (lvm_vg_from_text(s1, l1, &vg2, why, sizeof(why)) ||
		    lvm_vg_to_text(vg2, &s2, &l2, why, sizeof(why)) || l1 != l2 ||
		    memcmp(s1, s2, l1))
			abort();
	} else if (rc != -E2BIG) {
		abort();
	}
	free(s1);
	free(s2);
	lvm_vg_free(vg);
	lvm_vg_free(vg2);
}

/* Changes an administrator makes; the appliance writes the VG from the fuzzed one. */
static void make_changes(struct appliance *a)
{
	appliance_create_volume(a, "fz1", 4u << 20);
	appliance_add_export(a, "fz1", "fz1x", false);
	appliance_snapshot_volume(a, "fz1", "fz2");
	appliance_rename_volume(a, "fz2", "fz3");
	appliance_remove_export(a, "fz1x");
	appliance_delete_volume(a, "fz1");
	appliance_resize_volume(a, "fz3", 8u << 20);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct blkdev *both[2] = { &meta_disk.dev, &data_disk.dev };
	struct appliance_opts o;
	struct appliance *a;
	const char *text = (const char *)data;
	uint8_t ctl = 0;
	int rc;

	if (size >= 2 && data[0] == 0x01) {
		ctl = data[1];
		text += 2;
		size -= 2;
	}
	check_text(text, size);

	rdisk_reset(&meta_disk);
	rdisk_reset(&data_disk);
	rdisk_geometry(&meta_disk, (ctl & CTL_4K) ? 4096 : 512);
	rdisk_geometry(&data_disk, (ctl & CTL_4K) ? 4096 : 512);
	if (ctl & CTL_META_ONLY) {
		rc = lvm_vg_write_text(both, 1, text, size, NULL, 0);
		if (!rc && (ctl & CTL_OTHER_BASE))
			rc = lvm_vg_write_text(both + 1, 1, base_text, base_len, NULL, 0);
	} else if (ctl & CTL_OTHER_BASE) {
		rc = lvm_vg_write_text(both, 1, base_text, base_len, NULL, 0);
		if (!rc)
			rc = lvm_vg_write_text(both + 1, 1, text, size, NULL, 0);
	} else {
		rc = lvm_vg_write_text(both, 2, text, size, NULL, 0);
	}
	if (rc)
		return 0; /* not something a PV can hold */
	meta_disk.writes = data_disk.writes = 0;

	app_opts(&o, !(ctl & CTL_NO_FIRST));
	if (appliance_create(&o, &a))
		abort(); /* only -EINVAL for bad disks, -ENOMEM */
	if (appliance_state(a) == APPLIANCE_NO_POOL && (meta_disk.writes || data_disk.writes))
		abort(); /* nothing usable, yet something was written */
	if ((ctl & CTL_CHANGES) && appliance_state(a) == APPLIANCE_READY) {
		make_changes(a);
		appliance_destroy(a);
		/* What the appliance wrote from the fuzzed VG must bring it up again. */
		if (appliance_create(&o, &a))
			abort();
		if (appliance_state(a) != APPLIANCE_READY) {
			fprintf(stderr, "not READY after our own changes: %s\n",
				appliance_problem(a));
			abort();
		}
	}
	{
		uint64_t w = meta_disk.writes + data_disk.writes;
		bool no_pool = appliance_state(a) == APPLIANCE_NO_POOL;

		appliance_destroy(a);
		if (no_pool && meta_disk.writes + data_disk.writes != w)
			abort(); /* closing an appliance without a pool wrote */
	}
	return 0;
}
