/* SPDX-License-Identifier: MIT */
/*
 * Persistent configuration, kept consistent with the thin pool's transaction id.
 *
 * The configuration text (config/config.h) lives in two slots in a region of a block device
 * (the appliance uses the tail of the metadata disk, outside the blocks the pool metadata
 * uses, so thin_check and thin_dump see ordinary dm-thin metadata). Each slot carries the
 * pool transaction id it belongs to, a generation number and checksums.
 *
 * The protocol that makes a configuration change and a pool change atomic together (the
 * way LVM pairs its metadata with dm-thin's transaction id):
 *   1. cfg_store_save(st, new_cfg, T + 1): written to the slot that does not hold the
 *      committed configuration, and flushed;
 *   2. change the pool, set its transaction id from T to T + 1, commit;
 *   3. cfg_store_committed(st): the new slot becomes the committed one.
 * After a crash anywhere, the pool is at T or at T + 1 and cfg_store_load() picks the slot
 * written for exactly that id, so the names and exports always match the pool.
 */
#ifndef CONFIG_STORE_H
#define CONFIG_STORE_H

#include <stdint.h>

#include "config/config.h"
#include "core/base/endian.h"
#include "core/blkdev.h"

/* Slot header, little-endian on disk; the text follows it in the slot. */
struct cfg_slot_header {
	uint8_t magic[8];    /* "THNBXCFG" */
	le32 version;	     /* 1 */
	le32 length;	     /* bytes of text after the header */
	le64 generation;     /* increases with every save */
	le64 transaction_id; /* the pool transaction id this configuration belongs to */
	le32 text_crc;	     /* crc32c of the text */
	le32 header_crc;     /* crc32c of this header with header_crc = 0 */
	uint8_t reserved[24];
};
_Static_assert(sizeof(struct cfg_slot_header) == 64, "on-disk slot header");

struct cfg_store {
	struct blkdev *dev;
	uint64_t first;	      /* first device block of the region */
	uint64_t slot_blocks; /* device blocks per slot */
	uint64_t generation;  /* newest generation seen or written */
	int committed_slot;   /* 0 or 1: the slot matching the pool; -1 when none */
	int pending_slot;     /* the slot written by the last save, -1 when none */
};

/*
 * Use device blocks [first, first + nr_blocks) of @dev for the two slots. -EINVAL when the
 * region is outside the device or smaller than two 4 KiB slots.
 */
int cfg_store_init(struct cfg_store *st, struct blkdev *dev, uint64_t first, uint64_t nr_blocks);

/* The largest configuration text a slot holds. */
uint64_t cfg_store_capacity(const struct cfg_store *st);

/*
 * Read the configuration that belongs to pool transaction @trans_id into @out. -ENODATA when
 * neither slot holds a valid configuration (a new appliance); -ESTALE when valid slots exist
 * but none is for @trans_id (the message in @err names what was found); -EINVAL with a
 * message when the matching text does not parse; -EIO and friends from the device.
 */
int cfg_store_load(struct cfg_store *st, uint64_t trans_id, struct cfg *out, char *err,
		   size_t errlen);

/*
 * Write @c for pool transaction @trans_id into the slot that does not hold the committed
 * configuration, and flush the device. -ENOSPC when the text does not fit, -ENOMEM, device
 * errors. Nothing is committed until cfg_store_committed().
 */
int cfg_store_save(struct cfg_store *st, const struct cfg *c, uint64_t trans_id);

/* The pool committed the transaction the last save was for: that slot is now committed. */
void cfg_store_committed(struct cfg_store *st);

/* Zero both slots (when a pool is formatted) and flush. */
int cfg_store_wipe(struct cfg_store *st);

#endif
