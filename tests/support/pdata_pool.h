/* SPDX-License-Identifier: MIT */
/*
 * Test fixture for the persistent-data tests: a miniature thin pool built only from the
 * core/pdata API, the way dm-thin-metadata uses it. Block 0 holds a superblock in the
 * dm-thin layout (magic, both space-map roots, mapping and details roots), the mapping tree
 * has two levels (device, virtual block) -> (data block << 24 | time), and its leaf values
 * hold references in the data space map.
 *
 * pool_check() is an independent checker in the manner of thin_check: it walks every tree
 * from the superblock, checks the B-tree rules (key order, fill, parent keys, depth), counts
 * the references to every metadata and data block, and compares them with the counts it
 * decodes itself from the on-disk bitmaps and overflow trees.
 */
#ifndef TESTS_SUPPORT_PDATA_POOL_H
#define TESTS_SUPPORT_PDATA_POOL_H

#include "core/base/endian.h"
#include "core/base/util.h"
#include "core/base/crc32c.h"
#include "core/pdata/btree_internal.h"
#include "core/pdata/space_map_common.h"
#include "core/pdata/space_map_disk.h"
#include "core/pdata/space_map_metadata.h"
#include "host/hostdev.h"
#include "tests/support/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SB_MAGIC       27022010ull
#define SB_CSUM_XOR    160774u
#define SB_OFF_DATA_SM 64
#define SB_OFF_META_SM 192
#define SB_OFF_MAPPING 320
#define SB_OFF_DETAILS 328

struct pool {
	struct blkdev *dev;
	struct dm_block_manager *bm;
	struct dm_transaction_manager *tm;
	struct dm_space_map *msm, *dsm;
	struct dm_btree_info map_info;	   /* 2 levels */
	struct dm_btree_info details_info; /* 24-byte values */
	dm_block_t map_root, details_root;
	uint64_t trans_id;
	unsigned cache;
};

extern const struct dm_block_validator sb_validator;
int pool_commit(struct pool *p);
int pool_format(struct pool *p, struct blkdev *dev, unsigned cache, dm_block_t nr_data_blocks);
int pool_open(struct pool *p, struct blkdev *dev, unsigned cache);
int pool_abort(struct pool *p);
void pool_close(struct pool *p);
int pool_new_mapping(struct pool *p, uint32_t time, uint8_t value_le[8]);
/* Check @p as described above; @entries (optional) gets the mapping entries seen. */
int pool_check_ex(struct pool *p, uint64_t *entries);
int pool_check(struct pool *p);

#endif
