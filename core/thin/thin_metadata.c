/* SPDX-License-Identifier: MIT */
/*
 * Thin-pool metadata on persistent-data (after Linux's drivers/md/dm-thin-metadata.c; the
 * format and the rules it keeps are in docs/thin-metadata.md).
 *
 * Key invariant: the committed state is exactly what block 0 describes; every change goes
 * to shadowed or new blocks, and block 0 is rewritten only by __commit() (plus the flag
 * word by set/clear_needs_check). Device details of touched devices are kept in core (a
 * struct thin_dev each) and written into the details tree at commit, as the kernel does,
 * so a mapping insert costs one B-tree update, not two.
 */
#include "core/thin/thin_metadata.h"
#include "core/thin/thin_format.h"

#include "core/base/endian.h"
#include "core/base/plat.h"
#include "core/base/util.h"
#include "core/pdata/btree_diff.h"
#include "core/pdata/space_map_common.h"
#include "core/pdata/space_map_disk.h"
#include "core/pdata/space_map_metadata.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CACHE_BLOCKS 1024u

struct thin_dev {
	struct thin_md *md;
	thin_id_t id;
	struct thin_dev_details d;
	bool open;
	bool changed;	    /* changed in this transaction */
	bool details_dirty; /* d differs from the details tree */
	bool aborted_with_changes;
	bool deleted; /* an abort undid the device's creation while it was open */
	struct thin_dev *next;
};

struct thin_md {
	struct blkdev *dev;
	struct dm_block_manager *bm;
	struct dm_transaction_manager *tm;
	struct dm_space_map *msm, *dsm;
	struct dm_btree_info info;	   /* (dev, vblock) -> block_time */
	struct dm_btree_info nb_info;	   /* one device's tree: vblock -> block_time */
	struct dm_btree_info tl_info;	   /* top level alone: dev -> subtree root */
	struct dm_btree_info details_info; /* dev -> disk_device_details */
	dm_block_t root, details_root;
	uint32_t time, flags, version, data_block_size;
	uint64_t trans_id, held_root, metadata_nr_blocks;
	uint32_t compat_flags, compat_ro_flags, incompat_flags;
	uint8_t uuid[16];
	bool opened_ro, read_only;
	bool fail;  /* a modifying call failed half way: only abort helps */
	bool dirty; /* anything changed since the last commit */
	struct thin_dev *devs;
	uint64_t open_load_ns, open_recount_ns; /* thin_md_open()'s stages (the boot breakdown) */
};

/*----------------------------------------------------------------*/
/* Superblock validator */

static void sb_prepare_for_write(const struct dm_block_validator *v, struct dm_block *b,
				 size_t block_size)
{
	struct thin_disk_superblock *sb = dm_block_data(b);

	put_le64(&sb->blocknr, dm_block_location(b));
	put_le32(&sb->csum,
		 dm_bm_checksum((uint8_t *)sb + 4, block_size - 4, THIN_SUPERBLOCK_CSUM_XOR));
}

static int sb_check(const struct dm_block_validator *v, struct dm_block *b, size_t block_size)
{
	struct thin_disk_superblock *sb = dm_block_data(b);

	if (get_le64(&sb->blocknr) != dm_block_location(b))
		return -ENOTBLK;
	if (get_le64(&sb->magic) != THIN_SUPERBLOCK_MAGIC)
		return -EILSEQ;
	if (get_le32(&sb->csum) !=
	    dm_bm_checksum((uint8_t *)sb + 4, block_size - 4, THIN_SUPERBLOCK_CSUM_XOR))
		return -EILSEQ;
	return 0;
}

static const struct dm_block_validator sb_validator = {
	.name = "superblock",
	.prepare_for_write = sb_prepare_for_write,
	.check = sb_check,
};

/*----------------------------------------------------------------*/
/* Value types */

/* Bottom-level leaves hold references to data blocks. */
static int data_inc(void *ctx, const void *v)
{
	struct thin_md *md = ctx;

	return dm_sm_inc_block(md->dsm, get_le64(v) >> THIN_TIME_BITS);
}

static int data_dec(void *ctx, const void *v)
{
	struct thin_md *md = ctx;

	return dm_sm_dec_block(md->dsm, get_le64(v) >> THIN_TIME_BITS);
}

/* The same data block is the same reference, whatever the time (data_block_equal). */
static int data_equal(void *ctx, const void *a, const void *b)
{
	return get_le64(a) >> THIN_TIME_BITS == get_le64(b) >> THIN_TIME_BITS;
}

/* Top-level leaves hold references to whole device trees (subtree_inc/dec). */
static int subtree_inc(void *ctx, const void *v)
{
	struct thin_md *md = ctx;

	return dm_tm_inc(md->tm, get_le64(v));
}

static int subtree_dec(void *ctx, const void *v)
{
	struct thin_md *md = ctx;

	return dm_btree_del(&md->nb_info, get_le64(v));
}

static int subtree_equal(void *ctx, const void *a, const void *b)
{
	return get_le64(a) == get_le64(b);
}

static void setup_infos(struct thin_md *md)
{
	struct dm_btree_value_type data_vt = { md, 8, data_inc, data_dec, data_equal };
	struct dm_btree_value_type tl_vt = { md, 8, subtree_inc, subtree_dec, subtree_equal };
	struct dm_btree_value_type details_vt = { NULL, sizeof(struct disk_device_details), NULL,
						  NULL, NULL };

	md->info = (struct dm_btree_info){ md->tm, 2, data_vt };
	md->nb_info = (struct dm_btree_info){ md->tm, 1, data_vt };
	md->tl_info = (struct dm_btree_info){ md->tm, 1, tl_vt };
	md->details_info = (struct dm_btree_info){ md->tm, 1, details_vt };
}

static void pack_details(const struct thin_dev_details *d, struct disk_device_details *le)
{
	put_le64(&le->mapped_blocks, d->mapped_blocks);
	put_le64(&le->transaction_id, d->transaction_id);
	put_le32(&le->creation_time, d->creation_time);
	put_le32(&le->snapshotted_time, d->snapshotted_time);
}

static void unpack_details(const struct disk_device_details *le, struct thin_dev_details *d)
{
	d->mapped_blocks = get_le64(&le->mapped_blocks);
	d->transaction_id = get_le64(&le->transaction_id);
	d->creation_time = get_le32(&le->creation_time);
	d->snapshotted_time = get_le32(&le->snapshotted_time);
}

/*----------------------------------------------------------------*/
/* State helpers */

static void why(const struct thin_md_open_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void why(const struct thin_md_open_opts *o, const char *fmt, ...)
{
	va_list ap;

	if (!o->why || !o->why_len)
		return;
	va_start(ap, fmt);
	vsnprintf(o->why, o->why_len, fmt, ap);
	va_end(ap);
}

static int check_rw(struct thin_md *md)
{
	if (md->fail)
		return -EIO;
	return md->read_only ? -EROFS : 0;
}

/*
 * For read-only calls: after a failed modifying call (the in-memory transaction is half
 * done) or a failed abort (the transaction manager and space maps are gone), nothing can be
 * read safely until an abort succeeds.
 */
static int check_usable(const struct thin_md *md)
{
	return md->fail ? -EIO : 0;
}

/* A modifying step failed: unless it changed nothing, only an abort can recover. */
static int failed(struct thin_md *md, int r)
{
	if (r)
		md->fail = true;
	return r;
}

static struct thin_dev *find_td(struct thin_md *md, thin_id_t id)
{
	for (struct thin_dev *td = md->devs; td; td = td->next)
		if (td->id == id)
			return td;
	return NULL;
}

static void unlink_td(struct thin_md *md, struct thin_dev *td)
{
	for (struct thin_dev **p = &md->devs; *p; p = &(*p)->next)
		if (*p == td) {
			*p = td->next;
			return;
		}
}

static int lookup_details(struct thin_md *md, thin_id_t id, struct thin_dev_details *d)
{
	struct disk_device_details le;
	int r = dm_btree_lookup(&md->details_info, md->details_root, &id, &le);

	if (!r)
		unpack_details(&le, d);
	return r;
}

/* The in-core record of @id, loading it from the details tree if needed; -ENODATA. */
static int get_td(struct thin_md *md, thin_id_t id, struct thin_dev **out)
{
	struct thin_dev *td = find_td(md, id);
	int r;

	if (!td) {
		td = calloc(1, sizeof(*td));
		if (!td)
			return -ENOMEM;
		r = lookup_details(md, id, &td->d);
		if (r) {
			free(td);
			return r;
		}
		td->md = md;
		td->id = id;
		td->next = md->devs;
		md->devs = td;
	}
	*out = td;
	return 0;
}

/* Drop closed, clean records (they can be reloaded from the tree). */
static void prune_tds(struct thin_md *md)
{
	struct thin_dev **p = &md->devs;

	while (*p) {
		struct thin_dev *td = *p;

		if (!td->open && !td->details_dirty) {
			*p = td->next;
			free(td);
		} else {
			p = &td->next;
		}
	}
}

static int subtree_root(struct thin_md *md, dm_block_t root, thin_id_t id, dm_block_t *out)
{
	uint8_t v[8];
	int r = dm_btree_lookup(&md->tl_info, root, &id, v);

	if (!r)
		*out = get_le64(v);
	return r;
}

/*----------------------------------------------------------------*/
/* Load, format, commit */

static void destroy_pd(struct thin_md *md)
{
	dm_sm_destroy(md->dsm);
	dm_tm_destroy(md->tm);
	dm_sm_destroy(md->msm);
	md->dsm = md->msm = NULL;
	md->tm = NULL;
}

static void sb_to_md(struct thin_md *md, const struct thin_disk_superblock *sb)
{
	md->flags = get_le32(&sb->flags);
	md->version = get_le32(&sb->version);
	md->time = get_le32(&sb->time);
	md->trans_id = get_le64(&sb->trans_id);
	md->held_root = get_le64(&sb->held_root);
	md->root = get_le64(&sb->data_mapping_root);
	md->details_root = get_le64(&sb->device_details_root);
	md->data_block_size = get_le32(&sb->data_block_size);
	md->metadata_nr_blocks = get_le64(&sb->metadata_nr_blocks);
	md->compat_flags = get_le32(&sb->compat_flags);
	md->compat_ro_flags = get_le32(&sb->compat_ro_flags);
	md->incompat_flags = get_le32(&sb->incompat_flags);
	memcpy(md->uuid, sb->uuid, sizeof(md->uuid));
}

/* Open the space maps and roots from the committed superblock. */
static int load(struct thin_md *md)
{
	struct thin_disk_superblock *sb;
	struct dm_block *b;
	dm_block_t nr;
	int r;

	r = dm_bm_read_lock(md->bm, THIN_SUPERBLOCK_LOCATION, &sb_validator, &b);
	if (r)
		return r;
	sb = dm_block_data(b);
	sb_to_md(md, sb);
	r = dm_tm_open_with_sm(md->bm, THIN_SUPERBLOCK_LOCATION, sb->metadata_space_map_root,
			       THIN_SPACE_MAP_ROOT_SIZE, &md->tm, &md->msm);
	if (!r)
		r = dm_sm_disk_open(md->tm, sb->data_space_map_root, THIN_SPACE_MAP_ROOT_SIZE,
				    &md->dsm);
	dm_bm_unlock(b);
	if (!r)
		r = dm_sm_get_nr_blocks(md->msm, &nr);
	/* Roots must lie inside the metadata space map (we never assert on disk data). */
	if (!r && (md->root == 0 || md->root >= nr || md->details_root == 0 ||
		   md->details_root >= nr || md->held_root >= nr))
		r = -EILSEQ;
	if (r) {
		destroy_pd(md);
		return r;
	}
	setup_infos(md);
	return 0;
}

static int write_changed_details(struct thin_md *md)
{
	for (struct thin_dev *td = md->devs; td; td = td->next) {
		struct disk_device_details le;
		int r;

		if (!td->details_dirty || td->deleted)
			continue;
		pack_details(&td->d, &le);
		r = dm_btree_insert(&md->details_info, md->details_root, &td->id, &le,
				    &md->details_root);
		if (r)
			return failed(md, r);
		td->details_dirty = false;
	}
	return 0;
}

/*
 * Commit sequence of dm-thin (docs/dm-thin-format.md §6.2): details, data sm, metadata sm,
 * superblock last.
 */
static int __commit(struct thin_md *md)
{
	struct thin_disk_superblock *sb;
	struct dm_block *b;
	int r;

	r = write_changed_details(md);
	if (!r)
		r = dm_sm_commit(md->dsm);
	if (!r)
		r = dm_tm_pre_commit(md->tm);
	if (!r)
		r = dm_bm_write_lock(md->bm, THIN_SUPERBLOCK_LOCATION, &sb_validator, &b);
	if (r)
		return failed(md, r);
	sb = dm_block_data(b);
	put_le32(&sb->flags, md->flags);
	put_le32(&sb->time, md->time);
	put_le64(&sb->trans_id, md->trans_id);
	put_le64(&sb->held_root, md->held_root);
	put_le64(&sb->data_mapping_root, md->root);
	put_le64(&sb->device_details_root, md->details_root);
	memset(sb->data_space_map_root, 0, THIN_SPACE_MAP_ROOT_SIZE);
	memset(sb->metadata_space_map_root, 0, THIN_SPACE_MAP_ROOT_SIZE);
	r = dm_sm_copy_root(md->dsm, sb->data_space_map_root, THIN_SPACE_MAP_ROOT_SIZE);
	if (!r)
		r = dm_sm_copy_root(md->msm, sb->metadata_space_map_root, THIN_SPACE_MAP_ROOT_SIZE);
	if (r) {
		dm_bm_unlock(b);
		return failed(md, r);
	}
	r = dm_tm_commit(md->tm, b);
	if (r)
		return failed(md, r);
	for (struct thin_dev *td = md->devs; td; td = td->next)
		td->changed = false;
	prune_tds(md);
	md->dirty = false;
	return 0;
}

static int format(struct thin_md *md, const struct thin_md_open_opts *o)
{
	struct thin_disk_superblock *sb;
	dm_block_t root, details_root;
	struct dm_block *b;
	int r;

	r = dm_tm_create_with_sm(md->bm, THIN_SUPERBLOCK_LOCATION, &md->tm, &md->msm);
	if (r)
		return r;
	r = dm_sm_disk_create(md->tm, o->data_dev_blocks, &md->dsm);
	if (r)
		goto bad;
	setup_infos(md);
	r = dm_btree_empty(&md->info, &root);
	if (!r)
		r = dm_btree_empty(&md->details_info, &details_root);
	if (!r)
		r = dm_bm_write_lock_zero(md->bm, THIN_SUPERBLOCK_LOCATION, &sb_validator, &b);
	if (r)
		goto bad;
	sb = dm_block_data(b);
	put_le64(&sb->magic, THIN_SUPERBLOCK_MAGIC);
	put_le32(&sb->version, THIN_VERSION);
	put_le32(&sb->data_block_size, o->data_block_sectors);
	put_le32(&sb->metadata_block_size, THIN_METADATA_BLOCK_SECTORS);
	put_le64(&sb->metadata_nr_blocks,
		 MIN(dm_bm_nr_blocks(md->bm), (dm_block_t)DM_SM_METADATA_MAX_BLOCKS));
	sb_to_md(md, sb);
	dm_bm_unlock(b);
	/* The trees' roots reach the superblock at the first commit. */
	md->root = root;
	md->details_root = details_root;
	return __commit(md);
bad:
	destroy_pd(md);
	return r;
}

static bool block_size_ok(uint32_t s)
{
	return s >= THIN_DATA_BLOCK_SECTORS_MIN && s <= THIN_DATA_BLOCK_SECTORS_MAX &&
	       !(s & (THIN_DATA_BLOCK_SECTORS_MIN - 1));
}

static bool block_is_blank(const uint8_t *bytes)
{
	for (size_t i = 0; i < THIN_METADATA_BLOCK_SIZE; i++)
		if (bytes[i])
			return false;
	return true;
}

int thin_md_is_blank(struct blkdev *meta, bool *blank)
{
	uint8_t *b0;
	int r;

	if (meta->block_size > THIN_METADATA_BLOCK_SIZE)
		return -EINVAL;
	b0 = malloc(THIN_METADATA_BLOCK_SIZE);
	if (!b0)
		return -ENOMEM;
	r = blkdev_read(meta,
			THIN_SUPERBLOCK_LOCATION * (THIN_METADATA_BLOCK_SIZE / meta->block_size),
			THIN_METADATA_BLOCK_SIZE / meta->block_size, b0);
	if (!r)
		*blank = block_is_blank(b0);
	free(b0);
	return r;
}

int thin_md_erase(struct blkdev *meta)
{
	uint8_t *b0;
	int r;

	if (meta->block_size > THIN_METADATA_BLOCK_SIZE)
		return -EINVAL;
	b0 = calloc(1, THIN_METADATA_BLOCK_SIZE);
	if (!b0)
		return -ENOMEM;
	r = blkdev_write(meta,
			 THIN_SUPERBLOCK_LOCATION * (THIN_METADATA_BLOCK_SIZE / meta->block_size),
			 THIN_METADATA_BLOCK_SIZE / meta->block_size, b0);
	if (!r)
		r = blkdev_flush(meta);
	free(b0);
	return r;
}

/* Look at block 0 before trusting it, so each kind of bad device gets its own answer. */
static int examine_superblock(struct thin_md *md, const struct thin_md_open_opts *o, bool *blank)
{
	const struct thin_disk_superblock *sb;
	const uint8_t *bytes;
	struct dm_block *b;
	uint32_t v, unknown;
	int r;

	r = dm_bm_read_lock(md->bm, THIN_SUPERBLOCK_LOCATION, NULL, &b);
	if (r) {
		why(o, "cannot read the superblock (%d)", r);
		return r;
	}
	bytes = dm_block_data(b);
	sb = (const void *)bytes;
	*blank = block_is_blank(bytes);
	r = 0;
	if (*blank) {
		/* nothing to check */
	} else if (get_le64(&sb->magic) != THIN_SUPERBLOCK_MAGIC) {
		why(o, "not dm-thin metadata (superblock magic %llu, expected %llu)",
		    (unsigned long long)get_le64(&sb->magic), THIN_SUPERBLOCK_MAGIC);
		r = -EILSEQ;
	} else if (get_le32(&sb->csum) != dm_bm_checksum(bytes + 4, THIN_METADATA_BLOCK_SIZE - 4,
							 THIN_SUPERBLOCK_CSUM_XOR)) {
		why(o, "bad checksum in superblock");
		r = -EILSEQ;
	} else if (get_le64(&sb->blocknr) != THIN_SUPERBLOCK_LOCATION) {
		why(o, "superblock says it is block %llu",
		    (unsigned long long)get_le64(&sb->blocknr));
		r = -ENOTBLK;
	} else if ((v = get_le32(&sb->version)) < THIN_MIN_VERSION || v > THIN_MAX_VERSION) {
		why(o, "unsupported metadata version %u", v);
		r = -EILSEQ;
	} else if (get_le32(&sb->metadata_block_size) != THIN_METADATA_BLOCK_SECTORS) {
		why(o, "metadata block size %u sectors, expected %u",
		    get_le32(&sb->metadata_block_size), THIN_METADATA_BLOCK_SECTORS);
		r = -EILSEQ;
	} else if ((unknown = get_le32(&sb->incompat_flags) & ~THIN_FEATURE_INCOMPAT_SUPP)) {
		why(o, "unsupported incompatible features 0x%x", unknown);
		r = -EOPNOTSUPP;
	} else if (!o->read_only &&
		   (unknown = get_le32(&sb->compat_ro_flags) & ~THIN_FEATURE_COMPAT_RO_SUPP)) {
		why(o, "unsupported read-only-compatible features 0x%x: open read-only", unknown);
		r = -EOPNOTSUPP;
	} else if (!block_size_ok(v = get_le32(&sb->data_block_size))) {
		why(o, "stored data block size %u sectors is out of range", v);
		r = -EILSEQ;
	} else if (o->data_block_sectors && o->data_block_sectors != v) {
		why(o, "changing the data block size (from %u to %u) is not supported", v,
		    o->data_block_sectors);
		r = -EINVAL;
	}
	dm_bm_unlock(b);
	return r;
}

/* The data blocks at or past @from that are in use; 0 when none. */
static int count_used_from(struct thin_md *md, uint64_t from, uint64_t *used)
{
	uint64_t nr;
	int r = dm_sm_get_nr_blocks(md->dsm, &nr);

	*used = 0;
	for (uint64_t b = from; b < nr && !r; b++) {
		uint32_t c;

		r = dm_sm_get_count(md->dsm, b, &c);
		if (!r && c)
			(*used)++;
	}
	return r;
}

/*
 * Space-map counters that disagree with their bitmaps (index entries' nr_free and
 * none_free_before, roots' nr_allocated: thin_restore 0.9.0 writes such pools, and the
 * checker warns about them) are corrected in the first transaction, so the next commit
 * writes them right. If that fails part-way, carry on from the committed state without
 * the correction: allocation reads the bitmaps themselves.
 */
static int recount_space_maps(struct thin_md *md)
{
	bool mc = false, dc = false;
	int r = dm_sm_metadata_recount(md->msm, &mc);

	if (!r)
		r = dm_sm_disk_recount(md->dsm, &dc);
	if (r)
		return thin_md_abort(md);
	if (mc || dc)
		md->dirty = true;
	return 0;
}

int thin_md_open(struct blkdev *meta, const struct thin_md_open_opts *o, struct thin_md **out)
{
	struct thin_md *md;
	bool blank;
	int r;

	if (o->data_block_sectors && !block_size_ok(o->data_block_sectors)) {
		why(o, "data block size %u sectors: must be %u..%u and a multiple of %u",
		    o->data_block_sectors, THIN_DATA_BLOCK_SECTORS_MIN, THIN_DATA_BLOCK_SECTORS_MAX,
		    THIN_DATA_BLOCK_SECTORS_MIN);
		return -EINVAL;
	}
	if (o->data_dev_blocks > THIN_MAX_DATA_BLOCKS) {
		why(o, "data device of %llu blocks is beyond the format's 2^40",
		    (unsigned long long)o->data_dev_blocks);
		return -EINVAL;
	}
	md = calloc(1, sizeof(*md));
	if (!md)
		return -ENOMEM;
	md->dev = meta;
	r = dm_block_manager_create(meta, o->cache_blocks ? o->cache_blocks : DEFAULT_CACHE_BLOCKS,
				    &md->bm);
	if (r) {
		free(md);
		return r;
	}
	if (dm_bm_nr_blocks(md->bm) < 16) {
		why(o, "metadata device too small (%llu blocks)",
		    (unsigned long long)dm_bm_nr_blocks(md->bm));
		r = -EINVAL;
		goto bad_bm;
	}
	r = examine_superblock(md, o, &blank);
	if (r)
		goto bad_bm;
	if (blank) {
		if (!o->format) {
			why(o, "metadata device is not formatted");
			r = -ENODATA;
			goto bad_bm;
		}
		if (o->read_only || !o->data_block_sectors) {
			why(o, "formatting needs read-write and a data block size");
			r = -EINVAL;
			goto bad_bm;
		}
		r = format(md, o);
		if (r) {
			why(o, "format failed (%d)", r);
			goto bad_pd;
		}
	} else {
		uint64_t t0 = plat_now_ns();

		r = load(md);
		md->open_load_ns = plat_now_ns() - t0;
		if (r) {
			why(o, "cannot open the space maps or roots (%d)", r);
			goto bad_bm;
		}
	}
	md->opened_ro = o->read_only;
	md->read_only = o->read_only || (md->flags & THIN_METADATA_NEEDS_CHECK_FLAG);
	if (!blank && !md->read_only) {
		uint64_t t0 = plat_now_ns();

		r = recount_space_maps(md);
		md->open_recount_ns = plat_now_ns() - t0;
		if (r) {
			why(o, "cannot go back to the committed state (%d)", r);
			goto bad_pd;
		}
	}
	if (o->data_dev_blocks) {
		uint64_t nr, used;

		r = dm_sm_get_nr_blocks(md->dsm, &nr);
		if (!r && o->data_dev_blocks < nr) {
			r = count_used_from(md, o->data_dev_blocks, &used);
			if (!r && used) {
				why(o,
				    "data device too small: %llu blocks, but %llu allocated "
				    "blocks lie at or past that",
				    (unsigned long long)o->data_dev_blocks,
				    (unsigned long long)used);
				r = -ENOSPC;
			}
		}
		if (!r && o->data_dev_blocks != nr) {
			r = md->read_only ? -EROFS
					  : thin_md_resize_data_dev(md, o->data_dev_blocks);
			if (r)
				why(o, "cannot resize the data space map (%d)", r);
		}
		if (r)
			goto bad_pd;
	}
	*out = md;
	return 0;
bad_pd:
	destroy_pd(md);
bad_bm:
	dm_block_manager_destroy(md->bm);
	free(md);
	return r;
}

int thin_md_close(struct thin_md *md)
{
	if (!md)
		return 0;
	for (struct thin_dev *td = md->devs; td; td = td->next)
		if (td->open)
			return -EBUSY;
	while (md->devs) {
		struct thin_dev *td = md->devs;

		md->devs = td->next;
		free(td);
	}
	destroy_pd(md);
	dm_block_manager_destroy(md->bm);
	free(md);
	return 0;
}

int thin_md_commit(struct thin_md *md)
{
	int r = check_rw(md);

	return r ? r : __commit(md);
}

int thin_md_abort(struct thin_md *md)
{
	int r;

	destroy_pd(md);
	r = dm_bm_drop_dirty(md->bm);
	if (!r)
		r = load(md);
	if (r) {
		md->fail = true;
		return r;
	}
	md->fail = false;
	md->dirty = false;
	md->read_only = md->opened_ro || (md->flags & THIN_METADATA_NEEDS_CHECK_FLAG);
	for (struct thin_dev *td = md->devs; td; td = td->next) {
		if (td->changed)
			td->aborted_with_changes = true;
		td->changed = false;
		td->details_dirty = false;
		if (td->deleted)
			continue;
		r = lookup_details(md, td->id, &td->d);
		if (r == -ENODATA) {
			td->deleted = true;
			r = 0;
		} else if (r) {
			md->fail = true;
			return r;
		}
	}
	prune_tds(md);
	return 0;
}

/*----------------------------------------------------------------*/
/* Devices */

int thin_md_device_exists(struct thin_md *md, thin_id_t id)
{
	dm_block_t root;
	int r = check_usable(md);

	if (!r)
		r = subtree_root(md, md->root, id, &root);

	return r == -ENODATA ? 0 : r ? r : 1;
}

static struct thin_dev *new_td(struct thin_md *md, thin_id_t id)
{
	struct thin_dev *td = calloc(1, sizeof(*td));

	if (td) {
		td->md = md;
		td->id = id;
		td->d.transaction_id = md->trans_id;
		td->d.creation_time = td->d.snapshotted_time = md->time;
		td->changed = td->details_dirty = true;
	}
	return td;
}

static int check_new_id(struct thin_md *md, thin_id_t id)
{
	int r;

	if (id > THIN_MAX_DEV_ID)
		return -EINVAL;
	r = thin_md_device_exists(md, id);
	return r < 0 ? r : r ? -EEXIST : 0;
}

int thin_md_create_thin(struct thin_md *md, thin_id_t id)
{
	struct thin_dev *td;
	dm_block_t dev_root;
	uint8_t v[8];
	int r;

	r = check_rw(md);
	if (!r)
		r = check_new_id(md, id);
	if (r)
		return r;
	td = new_td(md, id);
	if (!td)
		return -ENOMEM;
	md->dirty = true;
	r = dm_btree_empty(&md->nb_info, &dev_root);
	if (!r) {
		put_le64(v, dev_root);
		r = dm_btree_insert(&md->tl_info, md->root, &id, v, &md->root);
	}
	if (r) {
		free(td);
		return failed(md, r);
	}
	td->next = md->devs;
	md->devs = td;
	return 0;
}

int thin_md_create_snap(struct thin_md *md, thin_id_t id, thin_id_t origin)
{
	struct thin_dev *td, *otd;
	dm_block_t origin_root;
	uint8_t v[8];
	int r;

	r = check_rw(md);
	if (!r)
		r = check_new_id(md, id);
	if (!r)
		r = subtree_root(md, md->root, origin, &origin_root);
	if (!r && md->time >= THIN_TIME_MASK)
		r = -EOVERFLOW; /* the 24-bit mapping time would wrap */
	if (!r)
		r = get_td(md, origin, &otd);
	if (r)
		return r;
	td = new_td(md, id);
	if (!td)
		return -ENOMEM;
	md->dirty = true;
	/* Share the origin's whole tree: one more reference to its root, nothing copied. */
	r = dm_tm_inc(md->tm, origin_root);
	if (!r) {
		put_le64(v, origin_root);
		r = dm_btree_insert(&md->tl_info, md->root, &id, v, &md->root);
	}
	if (r) {
		free(td);
		return failed(md, r);
	}
	md->time++;
	td->d.mapped_blocks = otd->d.mapped_blocks;
	td->d.creation_time = td->d.snapshotted_time = md->time;
	otd->d.snapshotted_time = md->time;
	otd->changed = otd->details_dirty = true;
	td->next = md->devs;
	md->devs = td;
	return 0;
}

int thin_md_delete_thin(struct thin_md *md, thin_id_t id)
{
	struct thin_dev *td = find_td(md, id);
	dm_block_t root;
	int r;

	r = check_rw(md);
	if (r)
		return r;
	if (td && td->open)
		return -EBUSY;
	r = subtree_root(md, md->root, id, &root);
	if (r)
		return r;
	md->dirty = true;
	/* A device created in this transaction has no details entry yet. */
	r = dm_btree_remove(&md->details_info, md->details_root, &id, &md->details_root);
	if (r && r != -ENODATA)
		return failed(md, r);
	/* Dropping the top-level entry deletes the tree as far as nobody else shares it. */
	r = dm_btree_remove(&md->tl_info, md->root, &id, &md->root);
	if (r)
		return failed(md, r);
	if (td) {
		unlink_td(md, td);
		free(td);
	}
	return 0;
}

/*----------------------------------------------------------------*/
/* Transaction id, held root */

int thin_md_set_transaction_id(struct thin_md *md, uint64_t current, uint64_t new_id)
{
	int r = check_rw(md);

	if (r)
		return r;
	if (md->trans_id != current)
		return -EINVAL;
	md->trans_id = new_id;
	md->dirty = true;
	return 0;
}

int thin_md_get_transaction_id(struct thin_md *md, uint64_t *out)
{
	*out = md->trans_id;
	return 0;
}

int thin_md_reserve_metadata_snap(struct thin_md *md)
{
	struct thin_disk_superblock *sb;
	struct dm_block *copy;
	int r, inc;

	r = check_rw(md);
	if (r)
		return r;
	if (md->held_root)
		return -EBUSY;
	/* Commit first so the copy holds current roots (Linux 49e99fc717f6). */
	r = __commit(md);
	if (r)
		return r;
	md->dirty = true;
	/* Shadowing block 0 with a count of 2 copies it into a new block. */
	r = dm_tm_inc(md->tm, THIN_SUPERBLOCK_LOCATION);
	if (!r)
		r = dm_tm_shadow_block(md->tm, THIN_SUPERBLOCK_LOCATION, &sb_validator, &copy,
				       &inc);
	if (r)
		return failed(md, r);
	sb = dm_block_data(copy);
	/* The copy publishes trees only: no space maps, no held root of its own. */
	memset(sb->data_space_map_root, 0, THIN_SPACE_MAP_ROOT_SIZE);
	memset(sb->metadata_space_map_root, 0, THIN_SPACE_MAP_ROOT_SIZE);
	put_le64(&sb->held_root, 0);
	md->held_root = dm_block_location(copy);
	dm_tm_unlock(md->tm, copy);
	r = dm_tm_inc(md->tm, md->root);
	if (!r)
		r = dm_tm_inc(md->tm, md->details_root);
	return failed(md, r);
}

int thin_md_release_metadata_snap(struct thin_md *md)
{
	struct thin_disk_superblock *sb;
	dm_block_t held = md->held_root, map_root, details_root;
	struct dm_block *b;
	int r;

	r = check_rw(md);
	if (r)
		return r;
	if (!held)
		return -EINVAL;
	r = dm_tm_read_lock(md->tm, held, &sb_validator, &b);
	if (r)
		return r;
	sb = dm_block_data(b);
	map_root = get_le64(&sb->data_mapping_root);
	details_root = get_le64(&sb->device_details_root);
	dm_tm_unlock(md->tm, b);
	md->dirty = true;
	/* Deep delete: whatever only the held copy referenced is freed (Linux 7f518ad0a212). */
	r = dm_btree_del(&md->info, map_root);
	if (!r)
		r = dm_btree_del(&md->details_info, details_root);
	if (!r)
		r = dm_tm_dec(md->tm, held);
	if (!r)
		md->held_root = 0;
	return failed(md, r);
}

int thin_md_get_metadata_snap(struct thin_md *md, uint64_t *out)
{
	*out = md->held_root;
	return 0;
}

/*----------------------------------------------------------------*/
/* Thin devices */

int thin_md_open_thin(struct thin_md *md, thin_id_t id, struct thin_dev **out)
{
	struct thin_dev *td;
	int r;

	if (md->fail)
		return -EIO;
	td = find_td(md, id);
	if (td && td->open)
		return -EBUSY;
	r = get_td(md, id, &td);
	if (r)
		return r;
	td->open = true;
	td->aborted_with_changes = false;
	*out = td;
	return 0;
}

void thin_md_close_thin(struct thin_dev *td)
{
	struct thin_md *md;

	if (!td)
		return;
	md = td->md;
	td->open = false;
	if (td->deleted || (!td->details_dirty && !td->changed)) {
		unlink_td(md, td);
		free(td);
	}
}

thin_id_t thin_dev_id(const struct thin_dev *td)
{
	return td->id;
}

static int td_usable(struct thin_dev *td)
{
	if (td->md->fail)
		return -EIO;
	return td->deleted ? -ENODEV : 0;
}

int thin_find_block(struct thin_dev *td, uint64_t vblock, bool can_block,
		    struct thin_lookup_result *out)
{
	struct thin_md *md = td->md;
	uint64_t keys[2] = { td->id, vblock }, v;
	uint8_t le[8];
	uint32_t time;
	int r = td_usable(td);

	if (r)
		return r;
	r = can_block ? dm_btree_lookup(&md->info, md->root, keys, le)
		      : dm_btree_lookup_nonblocking(&md->info, md->root, keys, le);
	if (r)
		return r;
	v = get_le64(le);
	thin_unpack_block_time(v, &out->block, &time);
	/* Written before the device's last snapshot: another device may still see it. */
	out->shared = td->d.snapshotted_time > time;
	return 0;
}

int thin_find_mapped_range(struct thin_dev *td, uint64_t begin, uint64_t end, uint64_t *vbegin,
			   uint64_t *vend, uint64_t *pbegin, bool *shared)
{
	struct thin_md *md = td->md;
	struct thin_lookup_result lr;
	uint64_t keys[2] = { td->id, begin }, k;
	uint8_t le[8];
	uint32_t time;
	int r = td_usable(td);

	if (r)
		return r;
	if (begin >= end)
		return -ENODATA;
	r = dm_btree_lookup_next(&md->info, md->root, keys, &k, le);
	if (r)
		return r;
	if (k >= end)
		return -ENODATA;
	*vbegin = k;
	thin_unpack_block_time(get_le64(le), pbegin, &time);
	*shared = td->d.snapshotted_time > time;
	for (*vend = k + 1; *vend < end; (*vend)++) {
		r = thin_find_block(td, *vend, true, &lr);
		if (r == -ENODATA)
			break;
		if (r)
			return r;
		if (lr.block != *pbegin + (*vend - k) || lr.shared != *shared)
			break;
	}
	return 0;
}

int thin_md_alloc_data_block(struct thin_md *md, uint64_t *out)
{
	dm_block_t b, nr;
	int r = check_rw(md);

	if (r)
		return r;
	r = dm_sm_new_block(md->dsm, &b);
	if (r == -ENOSPC && !dm_sm_get_nr_free(md->dsm, &nr) && !nr)
		return r; /* no data block is free; nothing changed */
	/*
	 * A block was free, so the -ENOSPC came from the metadata space map while recording
	 * the allocation: a half-done metadata failure, not a full data device.
	 */
	if (r == -ENOSPC)
		r = -EIO;
	if (r)
		return failed(md, r);
	md->dirty = true;
	*out = b;
	return 0;
}

int thin_md_alloc_data_block_near(struct thin_md *md, uint64_t hint, uint64_t *out)
{
	int r = check_rw(md);

	if (r)
		return r;
	dm_sm_disk_set_alloc_hint(md->dsm, hint);
	return thin_md_alloc_data_block(md, out);
}

static int insert(struct thin_dev *td, uint64_t vblock, uint64_t data_block, uint32_t time)
{
	struct thin_md *md = td->md;
	uint64_t keys[2] = { td->id, vblock }, nr;
	uint8_t v[8];
	int r, inserted;

	r = check_rw(md);
	if (!r)
		r = td_usable(td);
	if (!r)
		r = dm_sm_get_nr_blocks(md->dsm, &nr);
	if (r)
		return r;
	if (data_block >= nr)
		return -EINVAL;
	put_le64(v, thin_pack_block_time(data_block, time));
	md->dirty = true;
	r = dm_btree_insert_notify(&md->info, md->root, keys, v, &md->root, &inserted);
	if (r)
		return failed(md, r);
	if (inserted)
		td->d.mapped_blocks++;
	td->changed = td->details_dirty = true;
	return 0;
}

int thin_insert_block(struct thin_dev *td, uint64_t vblock, uint64_t data_block)
{
	return insert(td, vblock, data_block, td->md->time);
}

int thin_insert_block_time(struct thin_dev *td, uint64_t vblock, uint64_t data_block, uint32_t time)
{
	if (time > td->md->time)
		return -EINVAL;
	return insert(td, vblock, data_block, time);
}

int thin_set_details(struct thin_dev *td, uint64_t transaction_id, uint32_t creation_time,
		     uint32_t snapshotted_time)
{
	struct thin_md *md = td->md;
	int r = check_rw(md);

	if (!r)
		r = td_usable(td);
	if (r)
		return r;
	if (creation_time > md->time || snapshotted_time > md->time ||
	    transaction_id > md->trans_id)
		return -EINVAL;
	td->d.transaction_id = transaction_id;
	td->d.creation_time = creation_time;
	td->d.snapshotted_time = snapshotted_time;
	td->changed = td->details_dirty = true;
	md->dirty = true;
	return 0;
}

int thin_md_set_time(struct thin_md *md, uint32_t time)
{
	int r = check_rw(md);

	if (r)
		return r;
	if (time > THIN_TIME_MASK)
		return -EINVAL;
	md->time = time;
	md->dirty = true;
	return 0;
}

static int data_range(struct thin_md *md, uint64_t begin, uint64_t end, bool inc)
{
	dm_block_t nr;
	int r = check_rw(md);

	if (!r)
		r = dm_sm_get_nr_blocks(md->dsm, &nr);
	if (r)
		return r;
	if (begin > end || end > nr)
		return -EINVAL;
	md->dirty = true;
	r = inc ? dm_sm_inc_blocks(md->dsm, begin, end) : dm_sm_dec_blocks(md->dsm, begin, end);
	return failed(md, r);
}

int thin_md_inc_data_range(struct thin_md *md, uint64_t begin, uint64_t end)
{
	return data_range(md, begin, end, true);
}

int thin_md_dec_data_range(struct thin_md *md, uint64_t begin, uint64_t end)
{
	return data_range(md, begin, end, false);
}

static int remove_one(struct thin_dev *td, uint64_t vblock)
{
	struct thin_md *md = td->md;
	uint64_t keys[2] = { td->id, vblock };
	int r = dm_btree_remove(&md->info, md->root, keys, &md->root);

	if (r == -ENODATA)
		return r; /* the tree looked first: nothing changed */
	if (r)
		return failed(md, r);
	md->dirty = true;
	td->d.mapped_blocks--;
	td->changed = td->details_dirty = true;
	return 0;
}

int thin_remove_block(struct thin_dev *td, uint64_t vblock)
{
	int r = check_rw(td->md);

	if (!r)
		r = td_usable(td);
	return r ? r : remove_one(td, vblock);
}

int thin_remove_range(struct thin_dev *td, uint64_t begin, uint64_t end)
{
	struct thin_md *md = td->md;
	int r = check_rw(md);

	if (!r)
		r = td_usable(td);
	while (!r && begin < end) {
		uint64_t keys[2] = { td->id, begin }, k;
		uint8_t le[8];

		r = dm_btree_lookup_next(&md->info, md->root, keys, &k, le);
		if (r == -ENODATA || (!r && k >= end))
			return 0;
		if (!r)
			r = remove_one(td, k);
		if (k == UINT64_MAX)
			break;
		begin = k + 1;
	}
	return r;
}

int thin_get_highest_mapped_block(struct thin_dev *td, uint64_t *out)
{
	struct thin_md *md = td->md;
	dm_block_t root;
	int r = td_usable(td);

	if (!r)
		r = subtree_root(md, md->root, td->id, &root);
	if (!r)
		r = dm_btree_find_highest_key(&md->nb_info, root, out);
	return r;
}

int thin_get_mapped_count(struct thin_dev *td, uint64_t *out)
{
	int r = td_usable(td);

	if (!r)
		*out = td->d.mapped_blocks;
	return r;
}

bool thin_changed_this_transaction(const struct thin_dev *td)
{
	return td->changed;
}

bool thin_aborted_with_changes(const struct thin_dev *td)
{
	return td->aborted_with_changes;
}

/*----------------------------------------------------------------*/
/* Pool-wide figures, resizing */

/* One space-map figure, unless the metadata cannot be read (check_usable()). */
static int sm_figure(struct thin_md *md, struct dm_space_map *sm,
		     int (*get)(struct dm_space_map *sm, dm_block_t *n), uint64_t *out)
{
	dm_block_t n;
	int r = check_usable(md);

	if (!r)
		r = get(sm, &n);
	if (!r)
		*out = n;
	return r;
}

int thin_md_get_free_data_blocks(struct thin_md *md, uint64_t *out)
{
	return sm_figure(md, md->dsm, dm_sm_get_nr_free, out);
}

int thin_md_get_data_dev_size(struct thin_md *md, uint64_t *out)
{
	return sm_figure(md, md->dsm, dm_sm_get_nr_blocks, out);
}

int thin_md_get_free_metadata_blocks(struct thin_md *md, uint64_t *out)
{
	dm_block_t nr, free_blocks, reserve;
	int r = check_usable(md);

	if (!r)
		r = dm_sm_get_nr_blocks(md->msm, &nr);
	if (!r)
		r = dm_sm_get_nr_free(md->msm, &free_blocks);
	if (r)
		return r;
	/* Kept back for commits, as __set_metadata_reserve: min(16 MiB, 10%). */
	reserve = MIN((dm_block_t)4096, nr / 10);
	*out = free_blocks > reserve ? free_blocks - reserve : 0;
	return 0;
}

int thin_md_get_metadata_dev_size(struct thin_md *md, uint64_t *out)
{
	return sm_figure(md, md->msm, dm_sm_get_nr_blocks, out);
}

uint32_t thin_md_data_block_sectors(const struct thin_md *md)
{
	return md->data_block_size;
}

int thin_md_data_block_refcount(struct thin_md *md, uint64_t block, uint32_t *out)
{
	int r = check_usable(md);

	return r ? r : dm_sm_get_count(md->dsm, block, out);
}

int thin_md_data_block_is_shared(struct thin_md *md, uint64_t block)
{
	int shared, r = check_usable(md);

	if (!r)
		r = dm_sm_count_is_more_than_one(md->dsm, block, &shared);
	return r ? r : !!shared;
}

/* The data space map's index-tree values point at bitmap blocks. */
static int bitmap_dec(void *ctx, const void *v)
{
	const struct disk_index_entry *ie = v;

	return dm_tm_dec(ctx, get_le64(&ie->blocknr));
}

/*
 * Space maps never shrink, so a smaller data space map is built afresh from the counts of
 * the blocks that remain, and the old one's blocks are released. Done between two commits
 * so that no block freed in the rebuilding transaction can be handed out before a commit.
 */
static int rebuild_data_sm(struct thin_md *md, uint64_t new_blocks)
{
	struct dm_btree_info idx = { md->tm, 1, { md->tm, 16, NULL, bitmap_dec, NULL } };
	struct dm_btree_info rc = { md->tm, 1, { NULL, 4, NULL, NULL, NULL } };
	struct disk_sm_root old_root;
	struct dm_space_map *nsm;
	int r;

	r = dm_sm_copy_root(md->dsm, &old_root, sizeof(old_root));
	if (!r)
		r = dm_sm_disk_create(md->tm, new_blocks, &nsm);
	if (r)
		return r;
	for (uint64_t b = 0; b < new_blocks && !r; b++) {
		uint32_t c;

		r = dm_sm_get_count(md->dsm, b, &c);
		if (!r && c)
			r = dm_sm_set_count(nsm, b, c);
	}
	if (!r)
		r = dm_btree_del(&idx, get_le64(&old_root.bitmap_root));
	if (!r)
		r = dm_btree_del(&rc, get_le64(&old_root.ref_count_root));
	if (r) {
		dm_sm_destroy(nsm);
		return r;
	}
	dm_sm_destroy(md->dsm);
	md->dsm = nsm;
	setup_infos(md);
	return 0;
}

int thin_md_resize_data_dev(struct thin_md *md, uint64_t new_blocks)
{
	dm_block_t old;
	uint64_t used;
	int r = check_rw(md);

	if (r)
		return r;
	if (new_blocks > THIN_MAX_DATA_BLOCKS)
		return -EINVAL;
	r = dm_sm_get_nr_blocks(md->dsm, &old);
	if (r || new_blocks == old)
		return r;
	if (new_blocks > old) {
		md->dirty = true;
		return failed(md, dm_sm_extend(md->dsm, new_blocks - old));
	}
	/* Shrink: refuse before touching anything if an allocated block would be lost. */
	r = count_used_from(md, new_blocks, &used);
	if (r)
		return r;
	if (used)
		return -ENOSPC;
	r = __commit(md);
	if (r)
		return r;
	md->dirty = true;
	r = rebuild_data_sm(md, new_blocks);
	if (r)
		return failed(md, r);
	return __commit(md);
}

int thin_md_resize_metadata_dev(struct thin_md *md, uint64_t new_blocks)
{
	dm_block_t old;
	int r = check_rw(md);

	if (!r)
		r = dm_sm_get_nr_blocks(md->msm, &old);
	if (r)
		return r;
	if (new_blocks < old || new_blocks > dm_bm_nr_blocks(md->bm))
		return -EINVAL;
	new_blocks = MIN(new_blocks, (uint64_t)DM_SM_METADATA_MAX_BLOCKS);
	if (new_blocks == old)
		return 0;
	md->dirty = true;
	return failed(md, dm_sm_extend(md->msm, new_blocks - old));
}

/*----------------------------------------------------------------*/
/* needs_check, read-only */

/* Rewrite only the flags word of the committed superblock, in place, and flush. */
static int write_sb_flags(struct thin_md *md)
{
	struct dm_block *b;
	int r = dm_bm_write_lock(md->bm, THIN_SUPERBLOCK_LOCATION, &sb_validator, &b);

	if (r)
		return r;
	put_le32(&((struct thin_disk_superblock *)dm_block_data(b))->flags, md->flags);
	dm_bm_unlock(b);
	return dm_bm_flush(md->bm);
}

void thin_md_cache_info(struct thin_md *md, struct thin_md_cache_info *out)
{
	struct dm_bm_stats st;

	dm_bm_get_stats(md->bm, &st);
	out->capacity = st.capacity;
	out->cached = st.cached;
	out->bytes_per_block = st.bytes_per_block;
	out->hits = st.hits;
	out->misses = st.misses;
}

static bool bm_has_dirty(struct dm_block_manager *bm)
{
	struct dm_bm_stats st;

	dm_bm_get_stats(bm, &st);
	return st.dirty != 0;
}

int thin_md_set_needs_check(struct thin_md *md)
{
	struct dm_block *b;
	struct thin_disk_superblock *sb;
	int r = 0, r2;

	if (md->opened_ro)
		return -EROFS;
	md->flags |= THIN_METADATA_NEEDS_CHECK_FLAG;
	md->read_only = true;
	/*
	 * Only the flag may reach the disk, on the last committed state: a failed or unfinished
	 * transaction's blocks (after a failed commit, its half-built superblock) are dropped
	 * first. If dropping them failed, writing anything could make them durable: refuse.
	 */
	if (md->dirty || md->fail || bm_has_dirty(md->bm)) {
		r = thin_md_abort(md);
		md->flags |= THIN_METADATA_NEEDS_CHECK_FLAG;
		md->read_only = true;
		if (bm_has_dirty(md->bm))
			return r ? r : -EIO;
	}
	/* The committed superblock's own flags (md->flags is unset if the reload failed). */
	r2 = dm_bm_write_lock(md->bm, THIN_SUPERBLOCK_LOCATION, &sb_validator, &b);
	if (!r2) {
		sb = dm_block_data(b);
		put_le32(&sb->flags, get_le32(&sb->flags) | THIN_METADATA_NEEDS_CHECK_FLAG);
		dm_bm_unlock(b);
		r2 = dm_bm_flush(md->bm);
	}
	return r ? r : r2;
}

bool thin_md_needs_check(const struct thin_md *md)
{
	return md->flags & THIN_METADATA_NEEDS_CHECK_FLAG;
}

int thin_md_clear_needs_check(struct thin_md *md)
{
	int r;

	if (md->opened_ro)
		return -EROFS;
	if (md->dirty || md->fail)
		return -EBUSY;
	md->flags &= ~THIN_METADATA_NEEDS_CHECK_FLAG;
	r = write_sb_flags(md);
	if (!r)
		md->read_only = false;
	/* Read-write from now on: what a read-write open does. */
	if (!r)
		r = recount_space_maps(md);
	return r;
}

void thin_md_set_read_only(struct thin_md *md)
{
	md->read_only = true;
}

int thin_md_set_read_write(struct thin_md *md)
{
	if (md->opened_ro || (md->flags & THIN_METADATA_NEEDS_CHECK_FLAG))
		return -EROFS;
	md->read_only = false;
	return 0;
}

void thin_md_open_times(const struct thin_md *md, uint64_t *load_ns, uint64_t *recount_ns)
{
	*load_ns = md->open_load_ns;
	*recount_ns = md->open_recount_ns;
}

bool thin_md_is_read_only(const struct thin_md *md)
{
	return md->read_only;
}

/*----------------------------------------------------------------*/
/* Views */

static void md_sb_info(struct thin_md *md, struct thin_md_sb_info *s)
{
	dm_block_t n = 0;

	memset(s, 0, sizeof(*s));
	s->flags = md->flags;
	s->version = md->version;
	s->time = md->time;
	s->trans_id = md->trans_id;
	s->held_root = md->held_root;
	s->data_block_sectors = md->data_block_size;
	if (md->dsm)
		dm_sm_get_nr_blocks(md->dsm, &n);
	s->nr_data_blocks = n;
	s->metadata_nr_blocks = md->metadata_nr_blocks;
	s->compat_flags = md->compat_flags;
	s->compat_ro_flags = md->compat_ro_flags;
	s->incompat_flags = md->incompat_flags;
	memcpy(s->uuid, md->uuid, sizeof(s->uuid));
}

int thin_md_view_current(struct thin_md *md, struct thin_md_view *out)
{
	int r;

	if (md->fail)
		return -EIO;
	if (!md->read_only) {
		r = write_changed_details(md);
		if (r)
			return r;
	}
	out->md = md;
	out->mapping_root = md->root;
	out->details_root = md->details_root;
	md_sb_info(md, &out->sb);
	return 0;
}

int thin_md_view_committed(struct thin_md *md, struct thin_md_view *out)
{
	struct thin_disk_superblock *sb;
	struct thin_md tmp;
	struct dm_block *b;
	int r;

	if (check_usable(md))
		return -EIO;
	/* Block 0 is rewritten only by a commit: the cached or read copy is the committed one. */
	r = dm_tm_read_lock(md->tm, THIN_SUPERBLOCK_LOCATION, &sb_validator, &b);
	if (r)
		return r;
	sb = dm_block_data(b);
	memset(&tmp, 0, sizeof(tmp));
	sb_to_md(&tmp, sb);
	dm_tm_unlock(md->tm, b);
	md_sb_info(&tmp, &out->sb);
	out->sb.nr_data_blocks = 0;
	out->md = md;
	out->mapping_root = tmp.root;
	out->details_root = tmp.details_root;
	return 0;
}

int thin_md_view_held(struct thin_md *md, uint64_t block, struct thin_md_view *out)
{
	struct thin_disk_superblock *sb;
	struct thin_md tmp;
	struct dm_block *b;
	int r;

	if (check_usable(md))
		return -EIO;
	if (!md->held_root)
		return -ENODATA;
	if (block && block != md->held_root)
		return -EINVAL;
	r = dm_tm_read_lock(md->tm, md->held_root, &sb_validator, &b);
	if (r)
		return r;
	sb = dm_block_data(b);
	memset(&tmp, 0, sizeof(tmp));
	sb_to_md(&tmp, sb);
	dm_tm_unlock(md->tm, b);
	md_sb_info(&tmp, &out->sb);
	out->md = md;
	out->mapping_root = tmp.root;
	out->details_root = tmp.details_root;
	return 0;
}

struct dev_walk {
	int (*fn)(void *ctx, thin_id_t id, const struct thin_dev_details *d);
	void *ctx;
};

static int dev_walk_fn(void *ctx, const uint64_t *keys, void *value_le)
{
	struct dev_walk *w = ctx;
	struct thin_dev_details d;

	unpack_details(value_le, &d);
	return w->fn(w->ctx, keys[0], &d);
}

int thin_view_for_each_device(const struct thin_md_view *v,
			      int (*fn)(void *ctx, thin_id_t id, const struct thin_dev_details *d),
			      void *ctx)
{
	struct dev_walk w = { fn, ctx };

	if (check_usable(v->md))
		return -EIO;
	return dm_btree_walk(&v->md->details_info, v->details_root, dev_walk_fn, &w);
}

struct map_walk {
	int (*fn)(void *ctx, uint64_t vblock, uint64_t data_block, uint32_t time);
	void *ctx;
};

static int map_walk_fn(void *ctx, const uint64_t *keys, void *value_le)
{
	struct map_walk *w = ctx;
	uint64_t block;
	uint32_t time;

	thin_unpack_block_time(get_le64(value_le), &block, &time);
	return w->fn(w->ctx, keys[0], block, time);
}

int thin_view_for_each_mapping(const struct thin_md_view *v, thin_id_t id,
			       int (*fn)(void *ctx, uint64_t vblock, uint64_t data_block,
					 uint32_t time),
			       void *ctx)
{
	struct map_walk w = { fn, ctx };
	dm_block_t root;
	int r = check_usable(v->md);

	if (!r)
		r = subtree_root(v->md, v->mapping_root, id, &root);
	return r ? r : dm_btree_walk(&v->md->nb_info, root, map_walk_fn, &w);
}

int thin_view_lookup(const struct thin_md_view *v, thin_id_t id, uint64_t vblock,
		     uint64_t *data_block, uint32_t *time)
{
	uint64_t keys[2] = { id, vblock };
	uint8_t le[8];
	int r = check_usable(v->md);

	if (!r)
		r = dm_btree_lookup(&v->md->info, v->mapping_root, keys, le);
	if (!r)
		thin_unpack_block_time(get_le64(le), data_block, time);
	return r;
}

int thin_view_get_details(const struct thin_md_view *v, thin_id_t id, struct thin_dev_details *out)
{
	struct disk_device_details le;
	int r = check_usable(v->md);

	if (!r)
		r = dm_btree_lookup(&v->md->details_info, v->details_root, &id, &le);
	if (!r)
		unpack_details(&le, out);
	return r;
}

/*----------------------------------------------------------------*/
/* Diff */

struct diff_run {
	int (*fn)(void *ctx, const struct thin_diff_range *r);
	void *ctx;
	struct thin_diff_range cur; /* pending run; cur.end == cur.begin: none */
	struct thin_diff_stats *st;
};

static int diff_flush(struct diff_run *d)
{
	struct thin_diff_range out = d->cur;

	if (out.end == out.begin)
		return 0;
	d->st->ranges++;
	d->st->blocks[out.kind] += out.end - out.begin;
	d->cur.begin = d->cur.end;
	return d->fn(d->ctx, &out);
}

static int diff_key(void *ctx, uint64_t key, const void *l, const void *r)
{
	struct diff_run *d = ctx;
	enum thin_diff_kind k;
	int rc;

	if (!l)
		k = THIN_DIFF_RIGHT_ONLY;
	else if (!r)
		k = THIN_DIFF_LEFT_ONLY;
	else
		k = data_equal(NULL, l, r) ? THIN_DIFF_SAME : THIN_DIFF_DIFFERENT;
	if (d->cur.end != d->cur.begin && d->cur.kind == k && d->cur.end == key) {
		d->cur.end++;
		return 0;
	}
	rc = diff_flush(d);
	if (rc)
		return rc;
	d->cur = (struct thin_diff_range){ k, key, key + 1 };
	return 0;
}

int thin_view_diff(const struct thin_md_view *v, thin_id_t left, thin_id_t right, uint64_t begin,
		   unsigned flags, int (*fn)(void *ctx, const struct thin_diff_range *r), void *ctx,
		   struct thin_diff_stats *stats)
{
	struct thin_diff_stats st;
	struct dm_btree_diff_stats bst = { 0 };
	struct diff_run d = { fn, ctx, { THIN_DIFF_SAME, 0, 0 }, &st };
	dm_block_t lroot, rroot;
	int r = check_usable(v->md);

	memset(&st, 0, sizeof(st));
	if (!r && !fn)
		r = -EINVAL;
	if (!r)
		r = subtree_root(v->md, v->mapping_root, left, &lroot);
	if (!r)
		r = subtree_root(v->md, v->mapping_root, right, &rroot);
	if (!r)
		r = dm_btree_diff(&v->md->nb_info, lroot, rroot, begin, flags & THIN_DIFF_WANT_SAME,
				  diff_key, &d, &bst);
	if (!r)
		r = diff_flush(&d);
	st.nodes_read = bst.nodes_read;
	st.subtrees_skipped = bst.subtrees_skipped;
	if (stats)
		*stats = st;
	return r;
}
