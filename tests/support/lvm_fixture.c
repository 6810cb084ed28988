/* SPDX-License-Identifier: MIT */
/* The LVM unit tests' VG (tests/support/lvm_fixture.h). */
#include "tests/support/lvm_fixture.h"

struct lvm_vg *demo_vg(void)
{
	struct lvm_vg *vg;
	struct lvm_lv *lv;
	struct lvm_seg *s;

	if (lvm_vg_create("appvg", ID("V"), LVM_DEFAULT_EXTENT_SIZE, &vg))
		return NULL;
	if (lvm_vg_add_pv(vg, ID("a"), DISK1_SECTORS, LVM_DEFAULT_PE_START, NULL) ||
	    lvm_vg_add_pv(vg, ID("b"), DISK2_SECTORS, LVM_DEFAULT_PE_START, NULL))
		goto fail;
	if (lvm_vg_add_lv(vg, "pool", ID("P"), LVM_LV_READ | LVM_LV_WRITE | LVM_LV_VISIBLE, &lv) ||
	    lvm_lv_set_creation(lv, 1700000000, "thinbox") ||
	    lvm_lv_add_seg(lv, LVM_SEG_THIN_POOL, 31, &s))
		goto fail;
	snprintf(s->metadata, sizeof(s->metadata), "pool_tmeta");
	snprintf(s->pool, sizeof(s->pool), "pool_tdata");
	s->transaction_id = 2;
	s->chunk_size = 128;
	s->discards = LVM_DISCARDS_PASSDOWN;
	s->zero_new_blocks = 0;
	if (lvm_vg_add_lv(vg, "alpha", ID("A"), LVM_LV_READ | LVM_LV_WRITE | LVM_LV_VISIBLE, &lv) ||
	    lvm_lv_set_creation(lv, 1700000001, "thinbox") ||
	    lvm_strs_add(&lv->tags, "thinbox.export=alpha") ||
	    lvm_strs_add(&lv->tags, "owner=alice") || lvm_lv_add_seg(lv, LVM_SEG_THIN, 16, &s))
		goto fail;
	snprintf(s->thin_pool, sizeof(s->thin_pool), "pool");
	s->transaction_id = 0;
	s->device_id = 1;
	if (lvm_vg_add_lv(vg, "alpha-snap", ID("S"), LVM_LV_READ | LVM_LV_WRITE | LVM_LV_VISIBLE,
			  &lv) ||
	    lvm_lv_set_creation(lv, 1700000002, "thinbox") ||
	    lvm_strs_add(&lv->tags, "snap/daily") || lvm_lv_add_seg(lv, LVM_SEG_THIN, 16, &s))
		goto fail;
	snprintf(s->thin_pool, sizeof(s->thin_pool), "pool");
	snprintf(s->origin, sizeof(s->origin), "alpha");
	s->transaction_id = 1;
	s->device_id = 2;
	if (lvm_vg_add_lv(vg, "pool_tmeta", ID("M"), LVM_LV_READ | LVM_LV_WRITE, &lv) ||
	    lvm_lv_set_creation(lv, 1700000000, "thinbox") ||
	    lvm_lv_add_seg(lv, LVM_SEG_STRIPED, 2, &s))
		goto fail;
	s->pv = 0;
	s->pe = 0;
	if (lvm_vg_add_lv(vg, "pool_tdata", ID("D"), LVM_LV_READ | LVM_LV_WRITE, &lv) ||
	    lvm_lv_set_creation(lv, 1700000000, "thinbox") ||
	    lvm_lv_add_seg(lv, LVM_SEG_STRIPED, 31, &s))
		goto fail;
	s->pv = 1;
	s->pe = 0;
	return vg;
fail:
	lvm_vg_free(vg);
	return NULL;
}
