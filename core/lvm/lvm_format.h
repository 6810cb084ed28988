/* SPDX-License-Identifier: MIT */
/*
 * The LVM2 physical-volume format (lvm2's lib/format_text/layout.h and lib/label/label.h;
 * docs/lvm2-format.md §1-§5): the label sector, the PV header with its area lists and
 * extension, and the metadata-area (mda) header with its raw locations.
 *
 * Every integer is little-endian; structs are packed and read through get_le*()/put_le*().
 * Variable-length lists (data areas, metadata areas, bootloader areas) follow the fixed
 * parts inside the same 512-byte label sector and end at the first entry whose offset is 0.
 */
#ifndef CORE_LVM_LVM_FORMAT_H
#define CORE_LVM_LVM_FORMAT_H

#include "core/base/endian.h"

#include <stddef.h>
#include <stdint.h>

#define LVM_SECTOR 512u

/* lvm looks for the label in sectors 0..3 and writes it to sector 1. */
#define LVM_LABEL_SCAN_SECTORS 4u
#define LVM_LABEL_SECTOR       1u
#define LVM_LABEL_ID	       "LABELONE"
#define LVM_LABEL_TYPE	       "LVM2 001"
/* Where lvm puts the PV header: right after the 32-byte label header. */
#define LVM_PV_HEADER_OFFSET 32u

struct lvm_label_header {
	char id[8];   /* LVM_LABEL_ID, not NUL terminated */
	le64 sector;  /* the sector this label sits in */
	le32 crc;     /* lvm_crc() of bytes 20..511 of the sector */
	le32 offset;  /* offset of the PV header from the start of the sector */
	char type[8]; /* LVM_LABEL_TYPE */
} __attribute__((packed));
_Static_assert(sizeof(struct lvm_label_header) == 32, "label header is 32 bytes");
/* The CRC starts at the offset field and runs to the end of the sector. */
#define LVM_LABEL_CRC_START 20u

/* One (offset, size) pair, both in bytes from the start of the device. */
struct lvm_disk_locn {
	le64 offset;
	le64 size; /* 0 for a data area: "to the end of the device" */
} __attribute__((packed));
_Static_assert(sizeof(struct lvm_disk_locn) == 16, "disk_locn is 16 bytes");

#define LVM_ID_LEN 32u

/* Fixed part; then data areas, a zero entry, metadata areas, a zero entry, the extension. */
struct lvm_pv_header {
	char pv_uuid[LVM_ID_LEN]; /* no dashes, not NUL terminated */
	le64 device_size;	  /* bytes, when written; informational */
} __attribute__((packed));
_Static_assert(sizeof(struct lvm_pv_header) == 40, "pv header is 40 bytes");

/* Follows the metadata-area list's terminator; then bootloader areas and a zero entry. */
struct lvm_pv_header_extension {
	le32 version; /* 0 = no extension (old lvm) */
	le32 flags;
} __attribute__((packed));
_Static_assert(sizeof(struct lvm_pv_header_extension) == 8, "pv header extension is 8 bytes");

#define LVM_PV_EXT_VERSION 2u
/* Without it on a PV the VG lists, lvm rewrites the PV header at its next write. */
#define LVM_PV_EXT_USED 0x1u

#define LVM_MDA_MAGIC	"\040\114\126\115\062\040\170\133\065\101\045\162\060\116\052\076"
#define LVM_MDA_VERSION 1u
/* The header is the first sector of the area; the circular buffer is the rest. */
#define LVM_MDA_HEADER_SIZE 512u

struct lvm_mda_header {
	le32 crc;	   /* lvm_crc() of bytes 4..511 */
	uint8_t magic[16]; /* LVM_MDA_MAGIC */
	le32 version;	   /* LVM_MDA_VERSION */
	le64 start;	   /* absolute byte offset of this header */
	le64 size;	   /* bytes of the whole area, header included */
} __attribute__((packed));
_Static_assert(sizeof(struct lvm_mda_header) == 40, "mda header fixed part is 40 bytes");
#define LVM_MDA_CRC_START 4u

/* A copy of the metadata text in the circular buffer. */
struct lvm_raw_locn {
	le64 offset; /* from the start of the area (the header); >= 512 */
	le64 size;   /* bytes of text including its NUL; offset + size > area size: it wraps */
	le32 crc;    /* lvm_crc() of those size bytes, following the wrap */
	le32 flags;  /* LVM_RAW_LOCN_IGNORED */
} __attribute__((packed));
_Static_assert(sizeof(struct lvm_raw_locn) == 24, "raw_locn is 24 bytes");
#define LVM_RAW_LOCN_IGNORED 0x1u

/* Slot 0: the committed copy; slot 1: the precommitted one; then a zero entry. */
#define LVM_MDA_SLOT_COMMITTED 0u
#define LVM_MDA_SLOT_PRECOMMIT 1u
#define LVM_MDA_SLOT_OFFSET(n) (sizeof(struct lvm_mda_header) + (n) * sizeof(struct lvm_raw_locn))

/* pvcreate's defaults: area at 4 KiB up to 1 MiB, first extent at 1 MiB. */
#define LVM_DEFAULT_MDA_OFFSET	4096u
#define LVM_DEFAULT_MDA_SIZE	(1048576u - 4096u)
#define LVM_DEFAULT_PE_START	2048u /* sectors */
#define LVM_DEFAULT_EXTENT_SIZE 8192u /* sectors: 4 MiB */

/* The largest copy lvm accepts in an area of @mda_size bytes: two copies always fit. */
static inline uint64_t lvm_mda_max_text(uint64_t mda_size)
{
	if (mda_size < 4 * LVM_MDA_HEADER_SIZE)
		return 0;
	return (mda_size - LVM_MDA_HEADER_SIZE) / 2 - LVM_MDA_HEADER_SIZE;
}

/*
 * lvm's checksum (lvm2's calc_crc()): the reflected CRC-32 of zlib (polynomial 0xEDB88320)
 * started from @seed with no final inversion. core/base/crc32c.h is CRC-32C, another
 * polynomial, so it cannot be shared. Every lvm checksum starts from LVM_CRC_INITIAL; a
 * checksum over several pieces passes the previous result as @seed.
 * lvm_crc(LVM_CRC_INITIAL, "123456789", 9) == 0x4991CF02.
 */
#define LVM_CRC_INITIAL 0xF597A6CFu
uint32_t lvm_crc(uint32_t seed, const void *data, size_t len);

#endif
