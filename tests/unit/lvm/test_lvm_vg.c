/* SPDX-License-Identifier: MIT */
/*
 * The VG model: the appliance's VG to text and back (identical text the second time, every
 * field kept), lvm's writing rules, and refusals with a clear message.
 */
#include "tests/support/lvm_fixture.h"

static char *text_of(const struct lvm_vg *vg)
{
	char *t = NULL, why[200];
	size_t len;

	if (!ok_eq(lvm_vg_to_text(vg, &t, &len, why, sizeof(why)), 0))
		fail("%s", why);
	return t;
}

TEST(demo_round_trip)
{
	struct lvm_vg *vg = demo_vg(), *back;
	char *t, *t2, why[200];
	struct lvm_lv *lv;

	if (!ok(vg) || !ok((t = text_of(vg))))
		return;
	/* lvm's rules: the text starts with the VG name, ids dashed, visible LVs first. */
	ok(!strncmp(t, "appvg {\n", 8));
	ok(strstr(t, "id = \"VVVVVV-VVVV-VVVV-VVVV-VVVV-VVVV-VVVVVV\"\n") != NULL);
	ok(strstr(t, "alpha-snap {") < strstr(t, "pool_tmeta {"));
	ok(strstr(t, "stripes = [\"pv1\", 0]\n") != NULL);
	ok(strstr(t, "origin = \"alpha\"\n") != NULL);
	ok(strstr(t, "contents = \"Text Format Volume Group\"\nversion = 1\n") != NULL);
	if (!ok_eq(lvm_vg_from_text(t, strlen(t), &back, why, sizeof(why)), 0)) {
		fail("%s\n%s", why, t);
		return;
	}
	t2 = text_of(back);
	ok(t2 && !strcmp(t, t2));
	ok_eq(back->nr_pvs, 2);
	ok_eq(back->nr_lvs, 5);
	ok_eq(back->seqno, 1);
	lv = lvm_vg_find_lv(back, "alpha-snap");
	if (ok(lv)) {
		ok(!strcmp(lv->segs[0].origin, "alpha"));
		ok_eq(lv->segs[0].device_id, 2);
		ok_eq(lv->tags.n, 1);
		ok(!strcmp(lv->tags.v[0], "snap/daily"));
		ok_eq(lv->creation_time, 1700000002);
		ok(!strcmp(lv->creation_host, "thinbox"));
	}
	lv = lvm_vg_find_lv(back, "pool");
	if (ok(lv)) {
		ok_eq(lv->segs[0].chunk_size, 128);
		ok_eq(lv->segs[0].transaction_id, 2);
		ok_eq(lv->segs[0].discards, LVM_DISCARDS_PASSDOWN);
		ok_eq(lv->segs[0].zero_new_blocks, 0);
	}
	free(t);
	free(t2);
	lvm_vg_free(back);
	lvm_vg_free(vg);
}

/* Replace the first @from in the demo text by @to and expect a refusal naming @expect. */
static void refused(const char *from, const char *to, const char *expect)
{
	struct lvm_vg *vg = demo_vg(), *back = NULL;
	char *t = vg ? text_of(vg) : NULL, *p, why[200] = "";
	char edited[16384];
	int n;

	if (!ok(t))
		goto out;
	p = strstr(t, from);
	if (!ok(p)) {
		fail("'%s' not in the text", from);
		goto out;
	}
	n = snprintf(edited, sizeof(edited), "%.*s%s%s", (int)(p - t), t, to, p + strlen(from));
	ok(n > 0 && (size_t)n < sizeof(edited));
	if (!ok_eq(lvm_vg_from_text(edited, strlen(edited), &back, why, sizeof(why)), -EINVAL)) {
		fail("accepted: '%s' -> '%s'", from, to);
		lvm_vg_free(back);
	} else if (!ok(strstr(why, expect) != NULL))
		fail("message '%s' lacks '%s'", why, expect);
out:
	free(t);
	lvm_vg_free(vg);
}

TEST(refusals)
{
	refused("\"RESIZEABLE\"", "\"EXPORTED\"", "vgimport");
	refused("\"RESIZEABLE\"", "\"BOGUS\"", "unknown status word 'BOGUS'");
	refused("format = \"lvm2\"", "system_id = \"other\"", "belongs to host 'other'");
	refused("\"ALLOCATABLE\"", "\"MISSING\"", "missing");
	refused("type = \"thin\"\n", "type = \"raid1\"\n", "segment type 'raid1'");
	refused("stripe_count = 1", "stripe_count = 2", "2 stripes");
	refused("device_id = 2", "device_id = 1", "share device_id 1");
	refused("device_id = 2", "device_id = 16777216", "device_id");
	refused("chunk_size = 128", "chunk_size = 100", "chunk_size 100");
	refused("origin = \"alpha\"", "origin = \"nothere\"", "origin 'nothere'");
	refused("metadata = \"pool_tmeta\"", "metadata = \"pool_tdata\"", "the same LV");
	refused("segment_count = 1\nsegment1 {\nstart_extent = 0\nextent_count = 2",
		"segment_count = 2\nsegment1 {\nstart_extent = 0\nextent_count = 2",
		"segment_count is 2");
	refused("creation_host = \"thinbox\"\n", "", "go together");
	refused("stripes = [\"pv1\", 0]", "stripes = [\"pv1\", 1]", "past the end of PV pv1");
	refused("stripes = [\"pv0\", 0]", "stripes = [\"pv1\", 5]", "same extents");
	refused("stripes = [\"pv1\", 0]", "stripes = [\"pv7\", 0]", "unknown PV 'pv7'");
	refused("seqno = 1", "seqno = 4294967296", "seqno");
	refused("version = 1", "version = 2", "version is not 1");
	refused("transaction_id = 2\n", "transaction_id = 2\nmessage1 {\ncreate = \"x\"\n}\n",
		"pending messages");
	refused("\"snap/daily\"", "\"bad tag\"", "bad word");
	refused("id = \"VVVVVV", "id = \"V..VVV", "bad id");
}

/* A pool whose _tdata is two linear pieces is valid for lvm but not served here. */
TEST(multi_segment_tdata_refused)
{
	struct lvm_vg *vg = demo_vg();
	struct lvm_lv *lv;
	struct lvm_seg *s;
	char *t, why[200];

	if (!ok(vg))
		return;
	lv = lvm_vg_find_lv(vg, "pool_tdata");
	lv->segs[0].extent_count = 20;
	ok_eq(lvm_lv_add_seg(lv, LVM_SEG_STRIPED, 11, &s), 0);
	s->pv = 1;
	s->pe = 20;
	ok_eq(lvm_vg_to_text(vg, &t, &(size_t){ 0 }, why, sizeof(why)), -EINVAL);
	ok(strstr(why, "pool_tdata has 2 segments") != NULL);
	lvm_vg_free(vg);
}

TEST(names_and_ids)
{
	char id[LVM_ID_LEN + 1], dashed[39];
	uint8_t bytes[LVM_ID_LEN];

	ok(lvm_name_valid("empty.vol+1"));
	ok(lvm_name_valid("2disk"));
	ok(!lvm_name_valid("-x"));
	ok(!lvm_name_valid(".."));
	ok(!lvm_name_valid("a b"));
	ok(!lvm_name_valid(""));
	ok(lvm_tag_valid("owner=alice"));
	ok(!lvm_tag_valid("a b"));
	ok(lvm_id_parse("7Fy3jX-pSbf-hwsM-6iZ5-iDg5-XlfV-fVKL7z", id));
	lvm_id_format(id, dashed);
	ok(!strcmp(dashed, "7Fy3jX-pSbf-hwsM-6iZ5-iDg5-XlfV-fVKL7z"));
	ok(!lvm_id_parse("7Fy3jX-pSbf-hwsM-6iZ5-iDg5-XlfV-fVKL7", id));
	for (unsigned i = 0; i < LVM_ID_LEN; i++)
		bytes[i] = (uint8_t)(i * 37);
	lvm_id_from_bytes(bytes, id);
	ok(lvm_id_parse(id, id));
}

/* Random edits of a valid text: 0 or -EINVAL, never a crash (ASan/UBSan watch). */
TEST(random_edits)
{
	struct lvm_vg *vg = demo_vg(), *back;
	char *t = vg ? text_of(vg) : NULL;
	uint64_t st = test_seed();
	size_t len;

	if (!ok(t))
		return;
	len = strlen(t);
	for (int i = 0; i < 3000; i++) {
		char *c = malloc(len + 1);
		int rc;

		memcpy(c, t, len + 1);
		for (int k = 0; k < 3; k++)
			c[test_rand(&st) % len] = "0123456789\"{}=[]x-_ "[test_rand(&st) % 20];
		rc = lvm_vg_from_text(c, len, &back, NULL, 0);
		if (!ok(rc == 0 || rc == -EINVAL)) {
			free(c);
			break;
		}
		if (!rc)
			lvm_vg_free(back);
		free(c);
	}
	free(t);
	lvm_vg_free(vg);
}
