/* SPDX-License-Identifier: MIT */
/*
 * PVs on memory disks: format, label and mda header as lvm writes them, a VG written to two
 * PVs and read back identically, the circular buffer's placement and wrap, corruption, and
 * a crash between the metadata write and the header update.
 */
#include "tests/support/lvm_fixture.h"
#include "core/base/endian.h"

static struct blkdev *disk(uint64_t sectors, uint32_t bs, const char *id)
{
	struct blkdev *d;
	char why[160];
	struct lvm_pv_opts o = { .id = id, .in_vg = true };

	if (!ok_eq(memdisk_create(sectors * 512 / bs, bs, &d), 0))
		return NULL;
	if (!ok_eq(lvm_pv_format(d, &o, why, sizeof(why)), 0)) {
		fail("%s", why);
		blkdev_destroy(d);
		return NULL;
	}
	return d;
}

TEST(format_layout)
{
	struct blkdev *d = disk(DISK1_SECTORS, 512, ID("a"));
	uint8_t s[512];
	struct lvm_pv_label l;
	struct lvm_mda_state m;
	char *t, why[160];
	size_t len;

	if (!d)
		return;
	ok_eq(blkdev_read(d, 1, 1, s), 0);
	ok(!memcmp(s, "LABELONE", 8));
	ok_eq(get_le64(s + 8), 1);
	ok_eq(get_le32(s + 20), 32);
	ok(!memcmp(s + 24, "LVM2 001", 8));
	/* The reference PV's byte positions (docs/lvm2-format.md §3), relative to sector 1. */
	ok_eq(get_le64(s + 72), 1048576); /* data area */
	ok_eq(get_le64(s + 104), 4096);	  /* metadata area */
	ok_eq(get_le64(s + 112), LVM_DEFAULT_MDA_SIZE);
	ok_eq(get_le32(s + 136), 2); /* extension version */
	ok_eq(get_le32(s + 140), 1); /* in a VG */
	ok_eq(lvm_pv_read_label(d, &l, why, sizeof(why)), 0);
	ok(!strcmp(l.id, ID("a")));
	ok_eq(l.pe_start, 1048576);
	ok_eq(lvm_mda_read(d, &l, &m, why, sizeof(why)), 0);
	ok_eq(m.slot[0].size, 0);
	ok_eq(lvm_pv_read_text(d, &t, &len, why, sizeof(why)), -ENODATA);
	blkdev_destroy(d);
}

TEST(vg_on_two_pvs)
{
	struct lvm_vg *vg = demo_vg(), *back;
	struct blkdev *d[2] = { disk(DISK1_SECTORS, 512, ID("a")),
				disk(DISK2_SECTORS, 4096, ID("b")) };
	char *t = NULL, *r0 = NULL, *r1 = NULL, *t2 = NULL, why[200];
	size_t len, l0, l1;

	if (!ok(vg && d[0] && d[1]))
		goto out;
	ok_eq(lvm_vg_to_text(vg, &t, &len, why, sizeof(why)), 0);
	ok_eq(lvm_vg_write_text(d, 2, t, len, why, sizeof(why)), 0);
	ok_eq(lvm_pv_read_text(d[0], &r0, &l0, why, sizeof(why)), 0);
	ok_eq(lvm_pv_read_text(d[1], &r1, &l1, why, sizeof(why)), 0);
	ok(r0 && r1 && l0 == len && l1 == len && !strcmp(r0, t) && !strcmp(r1, t));
	if (!ok_eq(lvm_vg_from_text(r1, l1, &back, why, sizeof(why)), 0))
		goto out;
	ok_eq(lvm_vg_to_text(back, &t2, &len, why, sizeof(why)), 0);
	ok(t2 && !strcmp(t2, t));
	lvm_vg_free(back);
out:
	free(t);
	free(t2);
	free(r0);
	free(r1);
	lvm_vg_free(vg);
	blkdev_destroy(d[0]);
	blkdev_destroy(d[1]);
}

/* Successive copies follow lvm's placement; one wraps and still reads back. */
TEST(circular_buffer_wrap)
{
	struct blkdev *d;
	struct lvm_pv_label l;
	struct lvm_mda_state m;
	char why[200], *text, *r;
	size_t len, rl;
	/* A small area: 8 KiB, so copies of 3000 bytes wrap soon. */
	struct lvm_pv_opts o = { .id = ID("c"), .mda_size = 8192, .pe_start = 64 };
	uint64_t expect = 512;
	bool wrapped = false;

	if (!ok_eq(memdisk_create(256, 512, &d), 0))
		return;
	ok_eq(lvm_pv_format(d, &o, why, sizeof(why)), 0);
	ok_eq(lvm_mda_max_text(8192), 3328);
	text = malloc(4000);
	for (int i = 0; i < 12; i++) {
		len = 1500 + (size_t)i * 150;
		memset(text, 'x', len);
		memcpy(text, "vg0 {", 5);
		text[len - 1] = (char)('a' + i);
		text[len] = 0;
		if (!ok_eq(lvm_vg_write_text(&d, 1, text, len, why, sizeof(why)), 0)) {
			fail("%s", why);
			break;
		}
		ok_eq(lvm_pv_read_label(d, &l, why, sizeof(why)), 0);
		ok_eq(lvm_mda_read(d, &l, &m, why, sizeof(why)), 0);
		ok_eq(m.slot[0].offset, expect);
		ok_eq(m.slot[0].size, len + 1);
		ok_eq(m.slot[1].size, 0);
		wrapped |= m.slot[0].offset + m.slot[0].size > m.size;
		ok_eq(lvm_pv_read_text(d, &r, &rl, why, sizeof(why)), 0);
		ok(rl == len && !memcmp(r, text, len));
		free(r);
		/* lvm's rule for the next one. */
		expect = m.slot[0].offset + m.slot[0].size;
		if (expect > m.size)
			expect = expect - m.size + 512;
		expect = (expect + 511) / 512 * 512;
		if (expect + 512 > m.size)
			expect = 512;
	}
	ok(wrapped);
	/* Too big for two copies to fit. */
	memset(text, 'y', 3400);
	text[3400] = 0;
	ok_eq(lvm_pv_precommit(d, text, 3400, why, sizeof(why)), -ENOSPC);
	free(text);
	blkdev_destroy(d);
}

TEST(corruption_detected)
{
	struct blkdev *d = disk(DISK1_SECTORS, 512, ID("a"));
	struct lvm_pv_label l;
	struct lvm_mda_state m;
	uint8_t s[512];
	char *r, why[200];
	size_t rl;
	static const char text[] = "vg0 {\n}\n";

	if (!d)
		return;
	ok_eq(lvm_vg_write_text(&d, 1, text, strlen(text), why, sizeof(why)), 0);
	ok_eq(lvm_pv_read_label(d, &l, why, sizeof(why)), 0);
	ok_eq(lvm_mda_read(d, &l, &m, why, sizeof(why)), 0);
	/* A flipped byte in the text. */
	ok_eq(blkdev_read(d, (4096 + m.slot[0].offset) / 512, 1, s), 0);
	s[2] ^= 1;
	ok_eq(blkdev_write(d, (4096 + m.slot[0].offset) / 512, 1, s), 0);
	ok_eq(lvm_pv_read_text(d, &r, &rl, why, sizeof(why)), -EILSEQ);
	ok(strstr(why, "checksum") != NULL);
	/* A flipped byte in the mda header. */
	ok_eq(blkdev_read(d, 8, 1, s), 0);
	s[100] ^= 1;
	ok_eq(blkdev_write(d, 8, 1, s), 0);
	ok_eq(lvm_pv_read_text(d, &r, &rl, why, sizeof(why)), -EILSEQ);
	/* A flipped byte in the label: no valid label left. */
	ok_eq(blkdev_read(d, 1, 1, s), 0);
	s[200] ^= 1;
	ok_eq(blkdev_write(d, 1, 1, s), 0);
	ok_eq(lvm_pv_read_label(d, &l, why, sizeof(why)), -EILSEQ);
	/* No label at all. */
	memset(s, 0, sizeof(s));
	ok_eq(blkdev_write(d, 1, 1, s), 0);
	ok_eq(lvm_pv_read_label(d, &l, why, sizeof(why)), -ENODATA);
	blkdev_destroy(d);
}

/* A PV header whose lists run past the sector is refused, not read out of bounds. */
TEST(pv_header_bounds)
{
	struct blkdev *d = disk(DISK1_SECTORS, 512, ID("a"));
	struct lvm_pv_label l;
	uint8_t s[512];
	char why[200];

	if (!d)
		return;
	ok_eq(blkdev_read(d, 1, 1, s), 0);
	for (unsigned p = 72; p < 512; p += 8)
		put_le64(s + p, 0x1000);
	put_le32(s + 16, lvm_crc(LVM_CRC_INITIAL, s + 20, 492));
	ok_eq(blkdev_write(d, 1, 1, s), 0);
	ok_eq(lvm_pv_read_label(d, &l, why, sizeof(why)), -EINVAL);
	ok(strstr(why, "bad PV header") != NULL);
	/* Header offset pointing outside the sector. */
	ok_eq(blkdev_read(d, 1, 1, s), 0);
	put_le32(s + 20, 500);
	put_le32(s + 16, lvm_crc(LVM_CRC_INITIAL, s + 20, 492));
	ok_eq(blkdev_write(d, 1, 1, s), 0);
	ok_eq(lvm_pv_read_label(d, &l, why, sizeof(why)), -EINVAL);
	blkdev_destroy(d);
}

/*
 * Power cut at every write/flush of an update: the copy read back is the old one or the
 * new one, never anything else, and precommit alone leaves the old one in force.
 */
TEST(crash_between_write_and_commit)
{
	static const char old_text[] = "vg0 {\nseqno = 1\n}\n";
	char new_text[3000];
	char why[200];

	memset(new_text, 'n', sizeof(new_text) - 1);
	memcpy(new_text, "vg0 {\n", 6);
	new_text[sizeof(new_text) - 1] = 0;
	for (uint64_t cut = 1; cut < 40; cut++) {
		struct blkdev *lower = disk(DISK1_SECTORS, 512, ID("a")), *c;
		char *r = NULL;
		size_t rl;
		int rc;

		if (!lower)
			return;
		ok_eq(lvm_vg_write_text(&lower, 1, old_text, strlen(old_text), why, sizeof(why)),
		      0);
		ok_eq(crashdev_create(lower, &c), 0);
		crashdev_cut_at(c, cut);
		rc = lvm_vg_write_text(&c, 1, new_text, strlen(new_text), why, sizeof(why));
		crashdev_power_cut(c, cut * 7919);
		blkdev_destroy(c);
		ok_eq(lvm_pv_read_text(lower, &r, &rl, why, sizeof(why)), 0);
		if (r && !rc)
			ok(!strcmp(r, new_text));
		else if (r)
			ok(!strcmp(r, old_text) || !strcmp(r, new_text));
		free(r);
		blkdev_destroy(lower);
		if (!rc)
			break;
	}
	/* Precommit without commit: readers keep the old copy; the next write goes after it. */
	{
		struct blkdev *d = disk(DISK1_SECTORS, 512, ID("a"));
		char *r = NULL;
		size_t rl;

		if (!d)
			return;
		ok_eq(lvm_vg_write_text(&d, 1, old_text, strlen(old_text), why, sizeof(why)), 0);
		ok_eq(lvm_pv_precommit(d, new_text, strlen(new_text), why, sizeof(why)), 0);
		ok_eq(lvm_pv_read_text(d, &r, &rl, why, sizeof(why)), 0);
		ok(r && !strcmp(r, old_text));
		free(r);
		ok_eq(lvm_pv_commit(d, why, sizeof(why)), 0);
		ok_eq(lvm_pv_read_text(d, &r, &rl, why, sizeof(why)), 0);
		ok(r && !strcmp(r, new_text));
		free(r);
		ok_eq(lvm_pv_commit(d, why, sizeof(why)), -ENODATA);
		blkdev_destroy(d);
	}
}
