/* SPDX-License-Identifier: MIT */
/*
 * A VG read from and written to several memory-disk PVs (core/lvm/lvm_disks.h): the copy
 * lvm would use and what each device is (current, stale after a crash between the two
 * commits, precommitted only, same seqno with other text, blank, another VG's, damaged),
 * PVs matched by id, missing PVs, and lvm's write that repairs the others; a power cut at
 * every write and flush of that write leaves the old or the new VG, never an error.
 */
#include "tests/support/lvm_fixture.h"
#include "core/lvm/lvm_disks.h"

#define WHY 300

/* A PV on a memory disk named @name (not formatted when @id is NULL). */
static struct blkdev *pv_disk(uint64_t sectors, const char *id, const char *name)
{
	struct blkdev *d;
	char why[WHY];
	struct lvm_pv_opts o = { .id = id, .in_vg = true };

	if (!ok_eq(memdisk_create(sectors, 512, &d), 0))
		return NULL;
	d->name = name;
	if (id && !ok_eq(lvm_pv_format(d, &o, why, sizeof(why)), 0)) {
		fail("%s", why);
		blkdev_destroy(d);
		return NULL;
	}
	return d;
}

/* The demo VG's text with seqno @seqno and, when @tag, one more VG tag. */
static char *demo_text(uint32_t seqno, const char *tag, size_t *len)
{
	struct lvm_vg *vg = demo_vg();
	char *t = NULL, why[WHY];

	if (!ok(vg))
		return NULL;
	vg->seqno = seqno;
	if (tag)
		ok_eq(lvm_strs_add(&vg->tags, tag), 0);
	if (!ok_eq(lvm_vg_to_text(vg, &t, len, why, sizeof(why)), 0))
		fail("%s", why);
	lvm_vg_free(vg);
	return t;
}

static void write_copy(struct blkdev *d, uint32_t seqno, const char *tag, bool commit)
{
	size_t len;
	char *t = demo_text(seqno, tag, &len), why[WHY];

	if (!t)
		return;
	if (!ok_eq(lvm_pv_precommit(d, t, len, why, sizeof(why)), 0))
		fail("%s", why);
	if (commit && !ok_eq(lvm_pv_commit(d, why, sizeof(why)), 0))
		fail("%s", why);
	free(t);
}

struct two {
	struct blkdev *d[2];
	struct lvm_disk disks[2];
};

/* Two PVs of the demo VG ("meta" pv0, "data" pv1), both committed at seqno 1. */
static bool two_setup(struct two *t)
{
	memset(t, 0, sizeof(*t));
	t->d[0] = pv_disk(DISK1_SECTORS, ID("a"), "meta");
	t->d[1] = pv_disk(DISK2_SECTORS, ID("b"), "data");
	if (!ok(t->d[0] && t->d[1]))
		return false;
	write_copy(t->d[0], 1, NULL, true);
	write_copy(t->d[1], 1, NULL, true);
	t->disks[0].dev = t->d[0];
	t->disks[1].dev = t->d[1];
	return true;
}

static void two_free(struct two *t)
{
	blkdev_destroy(t->d[0]);
	blkdev_destroy(t->d[1]);
}

/* Read both; 0 expected; returns the model (NULL on failure). */
static struct lvm_vg *read2(struct two *t, unsigned *missing)
{
	struct lvm_vg *vg = NULL;
	char why[WHY];

	if (!ok_eq(lvm_disks_read(t->disks, 2, "appvg", &vg, missing, why, sizeof(why)), 0))
		fail("%s", why);
	return vg;
}

static bool has_tag(const struct lvm_vg *vg, const char *tag)
{
	for (unsigned i = 0; i < vg->tags.n; i++)
		if (!strcmp(vg->tags.v[i], tag))
			return true;
	return false;
}

TEST(both_equal)
{
	struct two t;
	struct lvm_vg *vg;
	unsigned missing = 9;

	if (!two_setup(&t))
		goto out;
	vg = read2(&t, &missing);
	if (ok(vg)) {
		ok_eq(vg->seqno, 1);
		ok_eq(missing, 0);
		ok_eq(t.disks[0].state, LVM_DISK_CURRENT);
		ok_eq(t.disks[1].state, LVM_DISK_CURRENT);
		ok_eq(t.disks[0].pv, 0);
		ok_eq(t.disks[1].pv, 1);
		ok(!strcmp(t.disks[1].pv_id, ID("b")));
		ok(strstr(t.disks[1].why, "data: PV pv1 of VG appvg, seqno 1") != NULL);
		ok_eq(lvm_disks_find_pv(t.disks, 2, 1), 1);
	}
	lvm_vg_free(vg);
	/* In the other order: matched by id, not by position. */
	t.disks[0].dev = t.d[1];
	t.disks[1].dev = t.d[0];
	vg = read2(&t, &missing);
	if (ok(vg)) {
		ok_eq(t.disks[0].pv, 1);
		ok_eq(t.disks[1].pv, 0);
		ok_eq(lvm_disks_find_pv(t.disks, 2, 0), 1);
	}
	lvm_vg_free(vg);
	/* NULL name: the first device's VG. */
	ok_eq(lvm_disks_read(t.disks, 2, NULL, &vg, &missing, NULL, 0), 0);
	lvm_vg_free(vg);
	ok_eq(lvm_disks_read(t.disks, 2, "novg", &vg, &missing, NULL, 0), -ENODATA);
out:
	two_free(&t);
}

/* A crash between the commit on one PV and the commit on the other. */
TEST(one_stale_then_repaired)
{
	struct two t;
	struct lvm_vg *vg;
	unsigned missing;
	char why[WHY];

	if (!two_setup(&t))
		goto out;
	write_copy(t.d[0], 2, "v2", false);
	write_copy(t.d[1], 2, "v2", false);
	ok_eq(lvm_pv_commit(t.d[0], why, sizeof(why)), 0);
	/* Whichever device comes first, the newest copy is used. */
	t.disks[0].dev = t.d[1];
	t.disks[1].dev = t.d[0];
	vg = read2(&t, &missing);
	if (!ok(vg))
		goto out;
	ok_eq(vg->seqno, 2);
	ok(has_tag(vg, "v2"));
	ok_eq(t.disks[0].state, LVM_DISK_STALE);
	ok_eq(t.disks[0].seqno, 1);
	ok_eq(t.disks[0].pv, 1);
	ok(strstr(t.disks[0].why, "data: PV pv1 of VG appvg holds seqno 1, older than 2 on meta") !=
	   NULL);
	ok_eq(t.disks[1].state, LVM_DISK_CURRENT);
	/* lvm's next write brings both to seqno + 1 with the same bytes. */
	if (!ok_eq(lvm_disks_write(vg, t.disks, 2, why, sizeof(why)), 0))
		fail("%s", why);
	ok_eq(vg->seqno, 3);
	ok_eq(t.disks[0].state, LVM_DISK_CURRENT);
	ok_eq(t.disks[0].seqno, 3);
	lvm_vg_free(vg);
	vg = read2(&t, &missing);
	if (ok(vg)) {
		ok_eq(vg->seqno, 3);
		ok(has_tag(vg, "v2"));
		ok_eq(t.disks[0].state, LVM_DISK_CURRENT);
		ok_eq(t.disks[1].state, LVM_DISK_CURRENT);
	}
	lvm_vg_free(vg);
	{
		char *a, *b;
		size_t la, lb;

		ok_eq(lvm_pv_read_text(t.d[0], &a, &la, why, sizeof(why)), 0);
		ok_eq(lvm_pv_read_text(t.d[1], &b, &lb, why, sizeof(why)), 0);
		ok(la == lb && !memcmp(a, b, la));
		free(a);
		free(b);
	}
out:
	two_free(&t);
}

/* Precommitted but not committed (on one or both): the old copy stays in force. */
TEST(precommit_only)
{
	struct two t;
	struct lvm_vg *vg;
	unsigned missing;

	if (!two_setup(&t))
		goto out;
	write_copy(t.d[1], 2, "v2", false);
	vg = read2(&t, &missing);
	if (ok(vg)) {
		ok_eq(vg->seqno, 1);
		ok(!has_tag(vg, "v2"));
		ok_eq(t.disks[0].state, LVM_DISK_CURRENT);
		ok_eq(t.disks[1].state, LVM_DISK_CURRENT);
	}
	lvm_vg_free(vg);
	write_copy(t.d[0], 2, "v2", false);
	vg = read2(&t, &missing);
	if (ok(vg))
		ok_eq(vg->seqno, 1);
	lvm_vg_free(vg);
out:
	two_free(&t);
}

/*
 * Same seqno, other text: the copy of the first device in the caller's order is used, the
 * other is reported as a mismatch (a bad copy for lvm), and the next write replaces it.
 */
TEST(same_seqno_other_text)
{
	struct two t;
	struct lvm_vg *vg;
	unsigned missing;
	char why[WHY];

	if (!two_setup(&t))
		goto out;
	write_copy(t.d[1], 1, "other", true);
	vg = read2(&t, &missing);
	if (!ok(vg))
		goto out;
	ok(!has_tag(vg, "other"));
	ok_eq(t.disks[0].state, LVM_DISK_CURRENT);
	ok_eq(t.disks[1].state, LVM_DISK_MISMATCH);
	ok_eq(t.disks[1].pv, 1);
	ok(strstr(t.disks[1].why, "data: PV pv1 of VG appvg holds seqno 1 with other text than "
				  "meta") != NULL);
	lvm_vg_free(vg);
	/* The other order: the data disk's copy wins, the meta disk's is the bad one. */
	t.disks[0].dev = t.d[1];
	t.disks[1].dev = t.d[0];
	vg = read2(&t, &missing);
	if (!ok(vg))
		goto out;
	ok(has_tag(vg, "other"));
	ok_eq(t.disks[0].state, LVM_DISK_CURRENT);
	ok_eq(t.disks[1].state, LVM_DISK_MISMATCH);
	ok_eq(lvm_disks_write(vg, t.disks, 2, why, sizeof(why)), 0);
	lvm_vg_free(vg);
	vg = read2(&t, &missing);
	if (ok(vg)) {
		ok_eq(vg->seqno, 2);
		ok(has_tag(vg, "other"));
		ok_eq(t.disks[0].state, LVM_DISK_CURRENT);
		ok_eq(t.disks[1].state, LVM_DISK_CURRENT);
	}
	lvm_vg_free(vg);
out:
	two_free(&t);
}

/* A blank device (no label), then a PV without a copy: the VG's pv1 is missing / present. */
TEST(blank_and_empty_pv)
{
	struct two t;
	struct blkdev *blank = pv_disk(DISK2_SECTORS, NULL, "blank");
	struct blkdev *empty = pv_disk(DISK2_SECTORS, ID("b"), "fresh");
	struct lvm_vg *vg;
	unsigned missing = 0;
	char why[WHY];

	if (!two_setup(&t) || !ok(blank && empty))
		goto out;
	t.disks[1].dev = blank;
	vg = read2(&t, &missing);
	if (!ok(vg))
		goto out;
	ok_eq(missing, 1);
	ok_eq(t.disks[1].state, LVM_DISK_NOT_PV);
	ok_eq(t.disks[1].rc, -ENODATA);
	ok_eq(t.disks[1].pv, -1);
	ok(strstr(t.disks[1].why, "blank: no LVM label") != NULL);
	ok_eq(lvm_disks_find_pv(t.disks, 2, 1), -ENOENT);
	/* lvm would need pv1 marked missing; the write refuses and changes nothing. */
	ok_eq(lvm_disks_write(vg, t.disks, 2, why, sizeof(why)), -ENODEV);
	ok(strstr(why, "PV pv1 has no device") != NULL);
	ok_eq(vg->seqno, 1);
	lvm_vg_free(vg);
	/* A formatted PV with pv1's id and no copy yet: matched, and the write gives it one. */
	t.disks[1].dev = empty;
	vg = read2(&t, &missing);
	if (!ok(vg))
		goto out;
	ok_eq(missing, 0);
	ok_eq(t.disks[1].state, LVM_DISK_NO_COPY);
	ok_eq(t.disks[1].pv, 1);
	ok(strstr(t.disks[1].why, "fresh: PV pv1 of VG appvg, without a metadata copy") != NULL);
	ok_eq(lvm_disks_write(vg, t.disks, 2, why, sizeof(why)), 0);
	ok_eq(t.disks[1].state, LVM_DISK_CURRENT);
	lvm_vg_free(vg);
	vg = read2(&t, &missing);
	if (ok(vg)) {
		ok_eq(vg->seqno, 2);
		ok_eq(t.disks[1].state, LVM_DISK_CURRENT);
	}
	lvm_vg_free(vg);
	/* No device with a copy at all. */
	t.disks[0].dev = blank;
	t.disks[1].dev = blank;
	ok_eq(lvm_disks_read(t.disks, 2, NULL, &vg, &missing, why, sizeof(why)), -ENODATA);
	ok_eq(t.disks[0].state, LVM_DISK_NOT_PV);
out:
	blkdev_destroy(blank);
	blkdev_destroy(empty);
	two_free(&t);
}

/* One device holds another VG: reported, and the VG's pv1 is missing. */
TEST(device_of_another_vg)
{
	struct two t;
	struct blkdev *o = pv_disk(DISK2_SECTORS, ID("c"), "foreign");
	struct lvm_vg *ovg = NULL, *vg = NULL;
	char *text = NULL, why[WHY];
	size_t len;
	unsigned missing = 0;

	if (!two_setup(&t) || !ok(o))
		goto out;
	ok_eq(lvm_vg_create("othervg", ID("O"), LVM_DEFAULT_EXTENT_SIZE, &ovg), 0);
	ok_eq(lvm_vg_add_pv(ovg, ID("c"), DISK2_SECTORS, LVM_DEFAULT_PE_START, NULL), 0);
	ok_eq(lvm_vg_to_text(ovg, &text, &len, why, sizeof(why)), 0);
	ok_eq(lvm_vg_write_text(&o, 1, text, len, why, sizeof(why)), 0);
	/* The other VG first: asking for appvg still finds it on the second device. */
	t.disks[0].dev = o;
	t.disks[1].dev = t.d[0];
	vg = read2(&t, &missing);
	if (!ok(vg))
		goto out;
	ok_eq(missing, 1);
	ok_eq(t.disks[0].state, LVM_DISK_OTHER_VG);
	ok_eq(t.disks[0].pv, -1);
	ok(!strcmp(t.disks[0].vg_name, "othervg"));
	ok(strstr(t.disks[0].why, "foreign: a PV of another VG (othervg)") != NULL);
	ok_eq(t.disks[1].state, LVM_DISK_CURRENT);
	lvm_vg_free(vg);
	vg = NULL;
	/* No name: the first device's VG, of which appvg's disk is not a part. */
	ok_eq(lvm_disks_read(t.disks, 2, NULL, &vg, &missing, why, sizeof(why)), 0);
	if (ok(vg)) {
		ok(!strcmp(vg->name, "othervg"));
		ok_eq(t.disks[0].state, LVM_DISK_CURRENT);
		ok_eq(t.disks[1].state, LVM_DISK_OTHER_VG);
	}
out:
	free(text);
	lvm_vg_free(ovg);
	lvm_vg_free(vg);
	blkdev_destroy(o);
	two_free(&t);
}

/* A damaged copy (one flipped byte of the text): bad, still pv1, repaired by the next write. */
TEST(damaged_checksum)
{
	struct two t;
	struct lvm_pv_label l;
	struct lvm_mda_state m;
	struct lvm_vg *vg;
	uint8_t s[512];
	unsigned missing = 9;
	char why[WHY];

	if (!two_setup(&t))
		goto out;
	ok_eq(lvm_pv_read_label(t.d[1], &l, why, sizeof(why)), 0);
	ok_eq(lvm_mda_read(t.d[1], &l, &m, why, sizeof(why)), 0);
	ok_eq(blkdev_read(t.d[1], (m.start + m.slot[0].offset) / 512 + 1, 1, s), 0);
	s[7] ^= 0x20;
	ok_eq(blkdev_write(t.d[1], (m.start + m.slot[0].offset) / 512 + 1, 1, s), 0);
	vg = read2(&t, &missing);
	if (!ok(vg))
		goto out;
	ok_eq(missing, 0);
	ok_eq(t.disks[1].state, LVM_DISK_BAD);
	ok_eq(t.disks[1].rc, -EILSEQ);
	ok_eq(t.disks[1].pv, 1);
	ok(strstr(t.disks[1].why, "data: metadata copy checksum mismatch") != NULL);
	ok_eq(lvm_disks_write(vg, t.disks, 2, why, sizeof(why)), 0);
	lvm_vg_free(vg);
	vg = read2(&t, &missing);
	if (ok(vg)) {
		ok_eq(vg->seqno, 2);
		ok_eq(t.disks[1].state, LVM_DISK_CURRENT);
	}
	lvm_vg_free(vg);
	/* A damaged newest copy is not used: the older good one is (lvm ignores bad copies). */
	write_copy(t.d[0], 3, "v3", true);
	ok_eq(lvm_pv_read_label(t.d[0], &l, why, sizeof(why)), 0);
	ok_eq(lvm_mda_read(t.d[0], &l, &m, why, sizeof(why)), 0);
	ok_eq(blkdev_read(t.d[0], (m.start + m.slot[0].offset) / 512, 1, s), 0);
	s[100] ^= 0x01;
	ok_eq(blkdev_write(t.d[0], (m.start + m.slot[0].offset) / 512, 1, s), 0);
	vg = read2(&t, &missing);
	if (ok(vg)) {
		ok_eq(vg->seqno, 2);
		ok_eq(t.disks[0].state, LVM_DISK_BAD);
		ok_eq(t.disks[1].state, LVM_DISK_CURRENT);
	}
	lvm_vg_free(vg);
out:
	two_free(&t);
}

/* The newest copy holds what the model refuses: an error naming the device, no fallback. */
TEST(newest_copy_refused)
{
	struct two t;
	struct lvm_vg *vg = NULL;
	unsigned missing;
	size_t len;
	char *text = NULL, *p, why[WHY];

	if (!two_setup(&t))
		goto out;
	text = demo_text(2, NULL, &len);
	if (!ok(text) || !ok((p = strstr(text, "type = \"thin\"\n"))))
		goto out;
	memcpy(p, "type = \"zero\"\n", 14);
	ok_eq(lvm_vg_write_text(&t.d[1], 1, text, len, why, sizeof(why)), 0);
	ok_eq(lvm_disks_read(t.disks, 2, "appvg", &vg, &missing, why, sizeof(why)), -EINVAL);
	ok(vg == NULL);
	ok(strstr(why, "data: VG appvg seqno 2: ") && strstr(why, "segment type 'zero'"));
out:
	free(text);
	two_free(&t);
}

/* Two devices with one PV's id (a cloned disk); a mapping that names the wrong disk. */
TEST(duplicate_and_wrong_mapping)
{
	struct two t;
	struct blkdev *clone = pv_disk(DISK2_SECTORS, ID("b"), "clone");
	struct lvm_disk three[3];
	struct lvm_vg *vg = NULL;
	unsigned missing;
	char why[WHY];

	if (!two_setup(&t) || !ok(clone))
		goto out;
	write_copy(clone, 1, NULL, true);
	memset(three, 0, sizeof(three));
	three[0].dev = t.d[0];
	three[1].dev = t.d[1];
	three[2].dev = clone;
	ok_eq(lvm_disks_read(three, 3, "appvg", &vg, &missing, why, sizeof(why)), -EINVAL);
	ok(strstr(why, "data and clone both carry PV pv1") != NULL);
	vg = read2(&t, &missing);
	if (!ok(vg))
		goto out;
	/* The caller's mapping swapped: the labels say otherwise, nothing is written. */
	t.disks[0].pv = 1;
	t.disks[1].pv = 0;
	ok_eq(lvm_disks_write(vg, t.disks, 2, why, sizeof(why)), -EINVAL);
	ok(strstr(why, "meta: its label is PV id") != NULL);
	ok_eq(vg->seqno, 1);
	t.disks[0].pv = 0;
	t.disks[1].pv = 0;
	ok_eq(lvm_disks_write(vg, t.disks, 2, why, sizeof(why)), -ENODEV);
	t.disks[1].pv = 5;
	ok_eq(lvm_disks_write(vg, t.disks, 2, why, sizeof(why)), -ENODEV);
	/* A model the checks refuse: nothing written, seqno unchanged. */
	t.disks[1].pv = 1;
	vg->extent_size = 1000;
	ok_eq(lvm_disks_write(vg, t.disks, 2, why, sizeof(why)), -EINVAL);
	ok_eq(vg->seqno, 1);
	vg->extent_size = LVM_DEFAULT_EXTENT_SIZE;
	vg->seqno = UINT32_MAX;
	ok_eq(lvm_disks_write(vg, t.disks, 2, why, sizeof(why)), -EOVERFLOW);
out:
	lvm_vg_free(vg);
	blkdev_destroy(clone);
	two_free(&t);
}

/*
 * A power cut before each write or flush of lvm_disks_write() (the two disks share the
 * power): reading back gives seqno 1 or 2, each device current or stale, never an error;
 * once the write returned 0, seqno 2 on both. Some cuts fall between the two commits.
 */
TEST(power_cut_during_write)
{
	bool done = false, saw_old = false, saw_stale = false;

	for (uint64_t cut = 1; cut < 60 && !done; cut++) {
		struct two t;
		struct blkdev *c[2] = { NULL, NULL };
		struct lvm_vg *vg = NULL, *back = NULL;
		unsigned missing;
		char why[WHY];
		int rc;

		if (!two_setup(&t))
			break;
		vg = read2(&t, &missing);
		if (!ok(vg) || !ok_eq(crashdev_create(t.d[0], &c[0]), 0) ||
		    !ok_eq(crashdev_create(t.d[1], &c[1]), 0))
			goto next;
		c[0]->name = "meta";
		c[1]->name = "data";
		crashdev_share_power(c[0], c[1]);
		crashdev_cut_at(c[cut % 2], (cut + 1) / 2);
		t.disks[0].dev = c[0];
		t.disks[1].dev = c[1];
		ok_eq(lvm_strs_add(&vg->tags, "v2"), 0);
		rc = lvm_disks_write(vg, t.disks, 2, why, sizeof(why));
		done = !rc && !crashdev_tripped(c[0]) && !crashdev_tripped(c[1]);
		crashdev_power_cut(c[0], cut * 31);
		crashdev_power_cut(c[1], cut * 37);
		blkdev_destroy(c[0]);
		blkdev_destroy(c[1]);
		c[0] = c[1] = NULL;
		t.disks[0].dev = t.d[0];
		t.disks[1].dev = t.d[1];
		back = read2(&t, &missing);
		if (!ok(back)) {
			fail("cut %llu", (unsigned long long)cut);
			goto next;
		}
		ok(back->seqno == 1 || back->seqno == 2);
		ok_eq(has_tag(back, "v2"), back->seqno == 2);
		for (unsigned i = 0; i < 2; i++) {
			ok(t.disks[i].state == LVM_DISK_CURRENT ||
			   t.disks[i].state == LVM_DISK_STALE);
			saw_stale |= t.disks[i].state == LVM_DISK_STALE;
		}
		saw_old |= back->seqno == 1;
		if (!rc) {
			ok_eq(back->seqno, 2);
			ok_eq(t.disks[0].state, LVM_DISK_CURRENT);
			ok_eq(t.disks[1].state, LVM_DISK_CURRENT);
		}
	next:
		for (unsigned i = 0; i < 2; i++)
			if (c[i])
				blkdev_destroy(c[i]);
		lvm_vg_free(vg);
		lvm_vg_free(back);
		two_free(&t);
	}
	/* The cuts covered the old copy in force and the crash between the two commits. */
	ok(done && saw_old && saw_stale);
}
