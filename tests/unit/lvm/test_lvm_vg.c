/* SPDX-License-Identifier: MIT */
/*
 * The VG model: the appliance's VG to text and back (identical text the second time, every
 * field kept), lvm's writing rules, pending thin-pool messages, LVs of several linear
 * segments and their maps, and refusals with a clear message.
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
		"creates 'x', which is not a thin LV");
	refused("\"snap/daily\"", "\"bad tag\"", "bad word");
	refused("id = \"VVVVVV", "id = \"V..VVV", "bad id");
}

/*
 * After `lvm pvresize` of a device of 61 MiB (pe_start 1 MiB, 15 extents of 4 MiB), lvm2
 * 2.03.16 writes dev_size = 122880: the device's size less pe_start, so the extents end
 * exactly at dev_size. Such a VG is lvm's own and reads; extents past dev_size do not.
 */
TEST(pvresize_dev_size)
{
	struct lvm_vg *vg = demo_vg(), *back = NULL;
	char *t = vg ? text_of(vg) : NULL, *p, why[200] = "";
	char edited[16384];

	if (!ok(t) || !ok((p = strstr(t, "dev_size = 131072\n")) != NULL))
		goto out;
	snprintf(edited, sizeof(edited), "%.*sdev_size = 122880%s", (int)(p - t), t,
		 p + strlen("dev_size = 131072"));
	if (!ok_eq(lvm_vg_from_text(edited, strlen(edited), &back, why, sizeof(why)), 0))
		fail("%s", why);
	else
		ok_eq(back->pvs[0].dev_size, 122880);
	lvm_vg_free(back);
	refused("dev_size = 131072", "dev_size = 122879", "15 extents from sector 2048 do not fit");
out:
	free(t);
	lvm_vg_free(vg);
}

/*
 * A pool whose _tdata is two linear pieces on two PVs (lvextend after the data disk filled
 * up) and whose _tmeta is two pieces: kept, written back identically, and mapped piece by
 * piece in logical order.
 */
TEST(multi_segment_components)
{
	struct lvm_vg *vg = demo_vg(), *back = NULL;
	struct lvm_lv *lv;
	struct lvm_seg *s;
	struct lvm_piece p[4];
	unsigned nr = 99;
	char *t = NULL, *t2 = NULL, why[200];

	if (!ok(vg))
		return;
	/* _tdata: pv1 extents 0..19, then pv0 extents 5..15 (pv0 has 15: 2 for _tmeta). */
	lv = lvm_vg_find_lv(vg, "pool_tdata");
	lv->segs[0].extent_count = 20;
	ok_eq(lvm_lv_add_seg(lv, LVM_SEG_STRIPED, 10, &s), 0);
	s->pv = 0;
	s->pe = 5;
	ok_eq(lvm_lv_add_seg(lv, LVM_SEG_STRIPED, 1, &s), 0);
	s->pv = 1;
	s->pe = 30;
	/* _tmeta: pv0 extent 0, then pv0 extent 3 (extents 1-2 free, as after a repair swap). */
	lv = lvm_vg_find_lv(vg, "pool_tmeta");
	lv->segs[0].extent_count = 1;
	ok_eq(lvm_lv_add_seg(lv, LVM_SEG_STRIPED, 1, &s), 0);
	s->pv = 0;
	s->pe = 3;
	if (!ok_eq(lvm_vg_to_text(vg, &t, &(size_t){ 0 }, why, sizeof(why)), 0)) {
		fail("%s", why);
		goto out;
	}
	ok(strstr(t, "segment_count = 3\nsegment1 {\nstart_extent = 0\nextent_count = 20\n") !=
	   NULL);
	ok(strstr(t, "segment3 {\nstart_extent = 30\nextent_count = 1\ntype = \"striped\"\n"
		     "stripe_count = 1\nstripes = [\"pv1\", 30]\n") != NULL);
	if (!ok_eq(lvm_vg_from_text(t, strlen(t), &back, why, sizeof(why)), 0)) {
		fail("%s", why);
		goto out;
	}
	t2 = text_of(back);
	ok(t2 && !strcmp(t, t2));
	lv = lvm_vg_find_lv(back, "pool_tdata");
	ok_eq(lvm_lv_map(back, lv, p, 4, &nr), 0);
	ok_eq(nr, 3);
	ok_eq(p[0].pv, 1);
	ok_eq(p[0].pv_sector, 2048);
	ok_eq(p[0].sectors, 20 * 8192);
	ok_eq(p[1].pv, 0);
	ok_eq(p[1].pv_sector, 2048 + 5 * 8192);
	ok_eq(p[1].sectors, 10 * 8192);
	ok_eq(p[2].pv, 1);
	ok_eq(p[2].pv_sector, 2048 + 30 * 8192);
	ok_eq(p[2].sectors, 8192);
	ok_eq(lvm_lv_map(back, lv, p, 2, &nr), -E2BIG);
	ok_eq(nr, 3);
	lv = lvm_vg_find_lv(back, "pool_tmeta");
	ok_eq(lvm_lv_map(back, lv, p, 4, &nr), 0);
	ok_eq(nr, 2);
	ok(p[0].pv == 0 && p[0].pv_sector == 2048 && p[0].sectors == 8192);
	ok(p[1].pv == 0 && p[1].pv_sector == 2048 + 3 * 8192 && p[1].sectors == 8192);
	/* Not linear: a thin LV, a pool. */
	ok_eq(lvm_lv_map(back, lvm_vg_find_lv(back, "alpha"), p, 4, &nr), -EINVAL);
	ok_eq(lvm_lv_map(back, lvm_vg_find_lv(back, "pool"), p, 4, &nr), -EINVAL);
	/* A piece outside its PV is refused by the map too (not only by validation). */
	lv = lvm_vg_find_lv(back, "pool_tdata");
	lv->segs[2].pe = 31;
	ok_eq(lvm_lv_map(back, lv, p, 4, &nr), -EINVAL);
	/* Still refused: a component with a piece of another type. */
	lv->segs[2].pe = 30;
	lv->segs[2].type = LVM_SEG_THIN;
	ok_eq(lvm_vg_validate(back, why, sizeof(why)), -EINVAL);
out:
	free(t);
	free(t2);
	lvm_vg_free(back);
	lvm_vg_free(vg);
}

/* The demo VG with a pending create of alpha-snap and a delete of device 7, as lvm has them. */
static struct lvm_vg *vg_with_messages(void)
{
	struct lvm_vg *vg = demo_vg();
	struct lvm_seg *s;

	if (!vg)
		return NULL;
	s = &lvm_vg_find_lv(vg, "pool")->segs[0];
	s->transaction_id = 3;
	if (lvm_seg_add_message_create(s, "alpha-snap") || lvm_seg_add_message_delete(s, 7)) {
		lvm_vg_free(vg);
		return NULL;
	}
	return vg;
}

TEST(messages_round_trip)
{
	struct lvm_vg *vg = vg_with_messages(), *back = NULL, *back2 = NULL;
	const struct lvm_seg *s;
	char *t = NULL, *t2 = NULL, *t3 = NULL, why[200];
	/* lvm's own layout of the same messages: indented, a blank line before them. */
	char indented[16384];
	const char *p, *tail = "message2 {\ndelete = 7\n}\n";

	if (!ok(vg) || !ok((t = text_of(vg))))
		goto out;
	/* lvm2's _thin_pool_text_export(): after the pool's keys, message1..N in order. */
	ok(strstr(t, "zero_new_blocks = 0\nmessage1 {\ncreate = \"alpha-snap\"\n}\n"
		     "message2 {\ndelete = 7\n}\n}\n") != NULL);
	if (!ok_eq(lvm_vg_from_text(t, strlen(t), &back, why, sizeof(why)), 0)) {
		fail("%s", why);
		goto out;
	}
	s = &lvm_vg_find_lv(back, "pool")->segs[0];
	if (ok_eq(s->nr_msgs, 2)) {
		ok_eq(s->msgs[0].type, LVM_MSG_CREATE);
		ok(!strcmp(s->msgs[0].lv, "alpha-snap"));
		ok_eq(s->msgs[1].type, LVM_MSG_DELETE);
		ok_eq(s->msgs[1].device_id, 7);
	}
	t2 = text_of(back);
	ok(t2 && !strcmp(t, t2));
	/* The same text as lvm lays it out reads back to the same model. */
	p = strstr(t, "message1 {");
	if (ok(p)) {
		snprintf(indented, sizeof(indented),
			 "%.*s\n\t\t\t\tmessage1 {\n\t\t\t\t\tcreate = \"alpha-snap\"\n\t\t\t\t}"
			 "\n\t\t\t\tmessage2 {\n\t\t\t\t\tdelete = 7\n\t\t\t\t}\n%s",
			 (int)(p - t), t, strstr(p, tail) + strlen(tail));
		if (ok_eq(lvm_vg_from_text(indented, strlen(indented), &back2, why, sizeof(why)),
			  0)) {
			t3 = text_of(back2);
			ok(t3 && !strcmp(t3, t));
		} else {
			fail("%s", why);
		}
	}
	/* The second commit of lvm's protocol: the messages gone. */
	lvm_seg_clear_messages(&lvm_vg_find_lv(back, "pool")->segs[0]);
	free(t2);
	t2 = text_of(back);
	ok(t2 && !strstr(t2, "message"));
out:
	free(t);
	free(t2);
	free(t3);
	lvm_vg_free(back);
	lvm_vg_free(back2);
	lvm_vg_free(vg);
}

/* Insert @msgs after the pool's keys and expect a refusal naming @expect. */
static void message_refused(const char *msgs, const char *expect)
{
	char to[512];

	snprintf(to, sizeof(to), "zero_new_blocks = 0\n%s", msgs);
	refused("zero_new_blocks = 0\n", to, expect);
}

TEST(messages_refused)
{
	message_refused("message1 {\ncreate = \"nothere\"\n}\n", "creates 'nothere'");
	/* An LV that exists but is not a thin LV of the pool. */
	message_refused("message1 {\ncreate = \"pool_tmeta\"\n}\n",
			"creates 'pool_tmeta', which is not a thin LV");
	message_refused("message1 {\ndelete = 16777216\n}\n", "deletes device_id 16777216");
	message_refused("message1 {\ndelete = 4294967296\n}\n", "out of range");
	message_refused("message1 {\ndelete = -1\n}\n", "out of range");
	message_refused("message1 {\ncreate = \"alpha\"\ndelete = 3\n}\n", "either create");
	message_refused("message1 {\n}\n", "either create");
	message_refused("message1 {\ndelete = \"3\"\n}\n", "either create");
	message_refused("message1 {\ncreate = \"a b\"\n}\n", "not a valid LV name");
	message_refused("message1 {\ndelete = 5\n}\nmessage2 {\ndelete = 5\n}\n",
			"message2 repeats message1");
	message_refused("message1 {\ncreate = \"alpha\"\n}\nmessage2 {\ncreate = \"alpha\"\n}\n",
			"message2 repeats message1");
	/* Messages always come with the pool's id raised by one. */
	refused(
	    "transaction_id = 2\nchunk_size = 128\ndiscards = \"passdown\"\nzero_new_blocks = 0\n",
	    "transaction_id = 0\nchunk_size = 128\ndiscards = \"passdown\"\nzero_new_blocks = 0\n"
	    "message1 {\ndelete = 5\n}\n",
	    "transaction_id 0");
}

/* Messages belong to thin pools only: the builders and the checks say so. */
TEST(messages_on_a_non_pool)
{
	struct lvm_vg *vg = demo_vg();
	struct lvm_seg *thin, *pool;
	char why[200] = "", *t = NULL;

	if (!ok(vg))
		return;
	thin = &lvm_vg_find_lv(vg, "alpha")->segs[0];
	pool = &lvm_vg_find_lv(vg, "pool")->segs[0];
	ok_eq(lvm_seg_add_message_create(thin, "alpha"), -EINVAL);
	ok_eq(lvm_seg_add_message_delete(thin, 1), -EINVAL);
	ok_eq(lvm_seg_add_message_create(pool, "bad name"), -EINVAL);
	ok_eq(thin->nr_msgs, 0);
	/* A model that has them anyway (the type changed after the add) is refused. */
	ok_eq(lvm_seg_add_message_delete(pool, 9), 0);
	pool->type = LVM_SEG_THIN;
	ok_eq(lvm_vg_validate(vg, why, sizeof(why)), -EINVAL);
	ok(strstr(why, "LV pool: pending messages on a segment that is not a thin pool") != NULL);
	pool->type = LVM_SEG_THIN_POOL;
	/* Back on the pool, with transaction_id 2 (> 0): valid and written. */
	ok_eq(lvm_vg_validate(vg, why, sizeof(why)), 0);
	ok_eq(lvm_vg_to_text(vg, &t, &(size_t){ 0 }, why, sizeof(why)), 0);
	ok(t && strstr(t, "message1 {\ndelete = 9\n}\n"));
	free(t);
	for (unsigned i = 0; i < LVM_POOL_MAX_MSGS - 1; i++)
		ok_eq(lvm_seg_add_message_delete(pool, 100 + i), 0);
	ok_eq(lvm_seg_add_message_delete(pool, 5000), -E2BIG);
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

/* lvm_vg_copy(): a deep copy (same text; changing or freeing one leaves the other alone). */
TEST(copy_is_deep)
{
	struct lvm_vg *vg = vg_with_messages(), *c = NULL;
	char *t = NULL, *tc = NULL, *t2 = NULL, why[200];

	if (!ok(vg) || !ok_eq(lvm_vg_copy(vg, &c, why, sizeof(why)), 0))
		goto out;
	t = text_of(vg);
	tc = text_of(c);
	ok(t && tc && !strcmp(t, tc));
	/* Change the copy everywhere it owns memory, then free it: the original is intact. */
	lvm_seg_clear_messages(&lvm_vg_find_lv(c, "pool")->segs[0]);
	ok_eq(lvm_strs_add(&c->lvs[0].tags, "changed"), 0);
	snprintf(c->lvs[0].name, sizeof(c->lvs[0].name), "other");
	lvm_vg_remove_lv(c, &c->lvs[c->nr_lvs - 1]);
	lvm_vg_free(c);
	c = NULL;
	t2 = text_of(vg);
	ok(t && t2 && !strcmp(t, t2));
	/* An invalid model is refused with the reason, nothing allocated. */
	vg->extent_size = 0;
	ok_eq(lvm_vg_copy(vg, &c, why, sizeof(why)), -EINVAL);
	ok(strstr(why, "extent_size") != NULL);
out:
	free(t);
	free(tc);
	free(t2);
	lvm_vg_free(vg);
}

/* A VG without LVs read back, with and without an empty logical_volumes section (lvm writes
 * none; the reader sizes its LV array from the section, which may be empty). */
TEST(no_lvs)
{
	struct lvm_vg *vg = demo_vg(), *back = NULL;
	char *t = NULL, *p, edited[4096], why[200] = "";

	if (!ok(vg))
		return;
	while (vg->nr_lvs)
		lvm_vg_remove_lv(vg, &vg->lvs[0]);
	t = text_of(vg);
	if (!ok(t))
		goto out;
	ok(!strstr(t, "logical_volumes"));
	ok_eq(lvm_vg_from_text(t, strlen(t), &back, why, sizeof(why)), 0);
	ok(back && back->nr_lvs == 0);
	lvm_vg_free(back);
	back = NULL;
	p = strstr(t, "}\n}\ncontents");
	if (!ok(p))
		goto out;
	snprintf(edited, sizeof(edited), "%.*s}\nlogical_volumes {\n}\n%s", (int)(p - t), t, p + 2);
	if (!ok_eq(lvm_vg_from_text(edited, strlen(edited), &back, why, sizeof(why)), 0))
		fail("%s", why);
	ok(back && back->nr_lvs == 0);
	lvm_vg_free(back);
out:
	free(t);
	lvm_vg_free(vg);
}
