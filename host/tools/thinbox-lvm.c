/* SPDX-License-Identifier: MIT */
/*
 * build/host/thinbox-lvm: the LVM2 format library (core/lvm/) on files, for tests against
 * lvm2 itself (tests/lvm/format.t).
 *
 *   thinbox-lvm demo DISK1 DISK2   create DISK1 (64 MiB) and DISK2 (128 MiB) as the two PVs
 *                                  of VG "appvg": thin pool "pool" (pool_tmeta on DISK1,
 *                                  pool_tdata on DISK2), thin LV "alpha" and its snapshot
 *                                  "alpha-snap", with tags
 *   thinbox-lvm show DISK...       read every PV's committed copy, take the highest seqno,
 *                                  check it, print the VG one line per item (below)
 *   thinbox-lvm text DISK          print the committed metadata text of DISK
 *
 * show prints "vg NAME seqno N extent_size S pvs N lvs N", then per PV "pv KEY id ID
 * pe_start S pe_count N", per LV "lv NAME sectors N visible 0|1 type T [pool P] [device_id
 * D] [origin O] [tags a,b]". Exit 0, 1 on a refused or unreadable VG (the reason on
 * stderr), 2 on bad usage.
 */
#include "core/lvm/lvm_pv.h"
#include "core/lvm/lvm_vg.h"
#include "host/hostdev.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID(c)	    c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c
#define MiB_SECTORS 2048u

static int usage(void)
{
	fprintf(stderr, "usage: thinbox-lvm demo DISK1 DISK2 | show DISK... | text DISK\n");
	return 2;
}

static int build_demo(struct lvm_vg **out)
{
	struct lvm_vg *vg;
	struct lvm_lv *lv;
	struct lvm_seg *s;
	const uint32_t rw = LVM_LV_READ | LVM_LV_WRITE, vis = rw | LVM_LV_VISIBLE;

	if (lvm_vg_create("appvg", "Vq3jXpSbfhwsM6iZ5iDg5XlfVfVKL7z0", LVM_DEFAULT_EXTENT_SIZE,
			  &vg))
		return -1;
	if (lvm_vg_add_pv(vg, "Pa1jXpSbfhwsM6iZ5iDg5XlfVfVKL7z1", 64 * MiB_SECTORS,
			  LVM_DEFAULT_PE_START, NULL) ||
	    lvm_vg_add_pv(vg, "Pb2jXpSbfhwsM6iZ5iDg5XlfVfVKL7z2", 128 * MiB_SECTORS,
			  LVM_DEFAULT_PE_START, NULL) ||
	    lvm_strs_add(&vg->tags, "thinbox"))
		goto fail;
	/* pool: 31 extents of data (all of DISK2), 2 extents of metadata on DISK1. */
	if (lvm_vg_add_lv(vg, "pool", ID("p"), vis, &lv) ||
	    lvm_lv_set_creation(lv, 1700000000, "thinbox") ||
	    lvm_lv_add_seg(lv, LVM_SEG_THIN_POOL, 31, &s))
		goto fail;
	snprintf(s->metadata, sizeof(s->metadata), "pool_tmeta");
	snprintf(s->pool, sizeof(s->pool), "pool_tdata");
	s->transaction_id = 2;
	s->chunk_size = 128;
	s->discards = LVM_DISCARDS_PASSDOWN;
	s->zero_new_blocks = 0;
	if (lvm_vg_add_lv(vg, "alpha", ID("a"), vis, &lv) ||
	    lvm_lv_set_creation(lv, 1700000001, "thinbox") ||
	    lvm_strs_add(&lv->tags, "thinbox.export=alpha") ||
	    lvm_strs_add(&lv->tags, "owner=alice") || lvm_lv_add_seg(lv, LVM_SEG_THIN, 16, &s))
		goto fail;
	snprintf(s->thin_pool, sizeof(s->thin_pool), "pool");
	s->transaction_id = 0;
	s->device_id = 1;
	if (lvm_vg_add_lv(vg, "alpha-snap", ID("s"), vis, &lv) ||
	    lvm_lv_set_creation(lv, 1700000002, "thinbox") ||
	    lvm_strs_add(&lv->tags, "snap/daily") || lvm_lv_add_seg(lv, LVM_SEG_THIN, 16, &s))
		goto fail;
	snprintf(s->thin_pool, sizeof(s->thin_pool), "pool");
	snprintf(s->origin, sizeof(s->origin), "alpha");
	s->transaction_id = 1;
	s->device_id = 2;
	if (lvm_vg_add_lv(vg, "pool_tmeta", ID("m"), rw, &lv) ||
	    lvm_lv_set_creation(lv, 1700000000, "thinbox") ||
	    lvm_lv_add_seg(lv, LVM_SEG_STRIPED, 2, &s))
		goto fail;
	s->pv = 0;
	if (lvm_vg_add_lv(vg, "pool_tdata", ID("d"), rw, &lv) ||
	    lvm_lv_set_creation(lv, 1700000000, "thinbox") ||
	    lvm_lv_add_seg(lv, LVM_SEG_STRIPED, 31, &s))
		goto fail;
	s->pv = 1;
	vg->seqno = 1;
	*out = vg;
	return 0;
fail:
	lvm_vg_free(vg);
	return -1;
}

static int demo(const char *p1, const char *p2)
{
	struct blkdev *d[2] = { NULL, NULL };
	struct lvm_vg *vg = NULL;
	char *text = NULL, why[256] = "";
	size_t len;
	int rc = build_demo(&vg);

	if (rc)
		goto out;
	rc = filedisk_open(p1, 512, true, 64 * MiB_SECTORS, &d[0]);
	if (!rc)
		rc = filedisk_open(p2, 512, true, 128 * MiB_SECTORS, &d[1]);
	for (unsigned i = 0; i < 2 && !rc; i++)
		rc =
		    lvm_pv_format(d[i], &(struct lvm_pv_opts){ .id = vg->pvs[i].id, .in_vg = true },
				  why, sizeof(why));
	if (!rc)
		rc = lvm_vg_to_text(vg, &text, &len, why, sizeof(why));
	if (!rc)
		rc = lvm_vg_write_text(d, 2, text, len, why, sizeof(why));
out:
	if (rc)
		fprintf(stderr, "thinbox-lvm: demo: %s (%d)\n", why, rc);
	free(text);
	lvm_vg_free(vg);
	blkdev_destroy(d[0]);
	blkdev_destroy(d[1]);
	return rc ? 1 : 0;
}

static const char *seg_type(const struct lvm_lv *lv)
{
	switch (lv->segs[0].type) {
	case LVM_SEG_STRIPED:
		return "linear";
	case LVM_SEG_THIN_POOL:
		return "thin-pool";
	default:
		return "thin";
	}
}

static void print_vg(const struct lvm_vg *vg)
{
	printf("vg %s seqno %u extent_size %u pvs %u lvs %u\n", vg->name, vg->seqno,
	       vg->extent_size, vg->nr_pvs, vg->nr_lvs);
	for (unsigned i = 0; i < vg->nr_pvs; i++)
		printf("pv %s id %s pe_start %llu pe_count %llu\n", vg->pvs[i].key, vg->pvs[i].id,
		       (unsigned long long)vg->pvs[i].pe_start,
		       (unsigned long long)vg->pvs[i].pe_count);
	for (unsigned i = 0; i < vg->nr_lvs; i++) {
		const struct lvm_lv *lv = &vg->lvs[i];
		const struct lvm_seg *s = &lv->segs[0];

		printf("lv %s sectors %llu visible %d type %s", lv->name,
		       (unsigned long long)(lvm_lv_extents(lv) * vg->extent_size),
		       !!(lv->status & LVM_LV_VISIBLE), seg_type(lv));
		if (s->type == LVM_SEG_THIN)
			printf(" pool %s device_id %u", s->thin_pool, s->device_id);
		if (s->type == LVM_SEG_THIN && s->origin[0])
			printf(" origin %s", s->origin);
		if (s->type == LVM_SEG_STRIPED)
			printf(" pv %s pe %llu", vg->pvs[s->pv].key, (unsigned long long)s->pe);
		for (unsigned t = 0; t < lv->tags.n; t++)
			printf("%s%s", t ? "," : " tags ", lv->tags.v[t]);
		printf("\n");
	}
}

static int show(int n, char **paths, bool raw)
{
	struct lvm_vg *best = NULL;
	int rc = 0;

	for (int i = 0; i < n && !rc; i++) {
		struct blkdev *d;
		struct lvm_vg *vg;
		char *text, why[256] = "";
		size_t len;

		rc = filedisk_open(paths[i], 512, false, 0, &d);
		if (rc) {
			fprintf(stderr, "thinbox-lvm: %s: cannot open (%d)\n", paths[i], rc);
			break;
		}
		d->name = paths[i];
		rc = lvm_pv_read_text(d, &text, &len, why, sizeof(why));
		blkdev_destroy(d);
		if (rc) {
			fprintf(stderr, "thinbox-lvm: %s (%d)\n", why, rc);
			break;
		}
		if (raw) {
			fwrite(text, 1, len, stdout);
			free(text);
			continue;
		}
		rc = lvm_vg_from_text(text, len, &vg, why, sizeof(why));
		free(text);
		if (rc) {
			fprintf(stderr, "thinbox-lvm: %s: %s (%d)\n", paths[i], why, rc);
			break;
		}
		/* The highest seqno wins, as in lvm. */
		if (!best || vg->seqno > best->seqno) {
			lvm_vg_free(best);
			best = vg;
		} else {
			lvm_vg_free(vg);
		}
	}
	if (!rc && best)
		print_vg(best);
	lvm_vg_free(best);
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "demo"))
		return demo(argv[2], argv[3]);
	if (argc >= 3 && !strcmp(argv[1], "show"))
		return show(argc - 2, argv + 2, false);
	if (argc == 3 && !strcmp(argv[1], "text"))
		return show(1, argv + 2, true);
	return usage();
}
