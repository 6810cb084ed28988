/* SPDX-License-Identifier: MIT */
/*
 * LVM2 physical volumes on a struct blkdev (docs/lvm2-format.md §1-§5, §11): format a PV
 * (label sector and an empty metadata area), read its label and its committed metadata
 * copy, and write a new copy with lvm's two steps, precommit then commit, so that a crash
 * between them leaves the previous copy in force.
 *
 * Placement follows lvm's rules: a new copy starts at the first 512-byte boundary after the
 * committed one (or at 512 when fewer than 512 bytes remain before the end of the area),
 * wraps to offset 512 when it does not fit before the end, and may be at most
 * lvm_mda_max_text() bytes (NUL included) so that two copies always fit.
 *
 * Byte offsets are from the start of the device; the device's block size may be anything
 * core/blkdev.h allows (partial blocks are read, modified and written back).
 *
 * Errors: -ENODATA no LVM label in sectors 0..3, or no committed copy yet (a fresh PV);
 * -EILSEQ a checksum that does not match (label, mda header or text); -EINVAL malformed
 * structures or arguments; -ENOSPC text larger than the area allows; -EFBIG a committed
 * copy larger than LVM_PV_MAX_TEXT; -ENOMEM; the device's errors. Each fills @why (may be
 * NULL) with a message naming the device and what was wrong.
 */
#ifndef CORE_LVM_LVM_PV_H
#define CORE_LVM_LVM_PV_H

#include "core/blkdev.h"
#include "core/lvm/lvm_format.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest committed copy read back into memory (lvm's default area holds ~510 KiB). */
#define LVM_PV_MAX_TEXT (16u * 1024u * 1024u)

struct lvm_pv_opts {
	const char *id;	     /* PV UUID, dashes allowed */
	uint64_t mda_offset; /* bytes; 0: LVM_DEFAULT_MDA_OFFSET */
	uint64_t mda_size;   /* bytes, header included; 0: LVM_DEFAULT_MDA_SIZE */
	uint64_t pe_start;   /* sectors; 0: LVM_DEFAULT_PE_START */
	bool in_vg;	     /* set the extension's "belongs to a VG" flag */
};

/* What the label sector says. */
struct lvm_pv_label {
	char id[LVM_ID_LEN + 1];
	uint64_t sector;      /* where the label was found */
	uint64_t device_size; /* bytes, as written into the header */
	uint64_t pe_start;    /* bytes: the first data area's offset */
	uint64_t mda_offset;  /* bytes: the first metadata area; both 0 when none */
	uint64_t mda_size;
	uint32_t ext_version, ext_flags;
};

/* A raw location: offset from the area start, bytes including the NUL, crc, flags. */
struct lvm_mda_slot {
	uint64_t offset, size;
	uint32_t crc, flags;
};

struct lvm_mda_state {
	uint64_t start, size;
	struct lvm_mda_slot slot[2]; /* LVM_MDA_SLOT_COMMITTED, LVM_MDA_SLOT_PRECOMMIT */
};

/*
 * Write the label (sector 1; sectors 0, 2, 3 are cleared of any other label) and an empty
 * metadata area header. The data area is (pe_start, 0): to the end of the device.
 */
int lvm_pv_format(struct blkdev *dev, const struct lvm_pv_opts *o, char *why, size_t why_len);

int lvm_pv_read_label(struct blkdev *dev, struct lvm_pv_label *out, char *why, size_t why_len);
/* The first metadata area's header (checksum, magic, version, start and size checked). */
int lvm_mda_read(struct blkdev *dev, const struct lvm_pv_label *l, struct lvm_mda_state *out,
		 char *why, size_t why_len);

/*
 * The committed copy: *text malloc()ed and NUL terminated, *len its length without the NUL.
 * Checks the copy's bounds, its checksum (across the wrap), its NUL and that it starts with
 * a valid VG name (as lvm does).
 */
int lvm_pv_read_text(struct blkdev *dev, char **text, size_t *len, char *why, size_t why_len);

/*
 * Step 1: write @text (@len bytes, a NUL is added) after the committed copy, flush, then
 * point slot 1 at it and flush. Readers still see the committed copy.
 */
int lvm_pv_precommit(struct blkdev *dev, const char *text, size_t len, char *why, size_t why_len);
/* Step 2: make the precommitted copy the committed one (slot 0), clear slot 1, flush. */
int lvm_pv_commit(struct blkdev *dev, char *why, size_t why_len);

/*
 * lvm's protocol for a VG on @n devices: the same bytes precommitted on every device, then
 * committed on every device. The first error stops it (devices already committed keep the
 * new copy; lvm's readers take the highest seqno and repair the others).
 */
int lvm_vg_write_text(struct blkdev *const *devs, unsigned n, const char *text, size_t len,
		      char *why, size_t why_len);

#endif
