/* SPDX-License-Identifier: MIT */
/*
 * The dm-thin pool metadata format: the superblock and device-details records (layout of
 * struct thin_disk_superblock and struct disk_device_details in Linux's
 * drivers/md/dm-thin-metadata.c; see docs/thin-metadata.md and docs/dm-thin-format.md §2, §4).
 * Every integer is little-endian; structs are packed and read through get_le*()/put_le*().
 *
 * Mapping-tree leaf values pack a data block and a time: (block << 24) | time (24 bits).
 */
#ifndef CORE_THIN_THIN_FORMAT_H
#define CORE_THIN_THIN_FORMAT_H

#include "core/base/endian.h"

#include <stdint.h>

#define THIN_SUPERBLOCK_LOCATION 0
#define THIN_SUPERBLOCK_MAGIC	 27022010ull
#define THIN_SUPERBLOCK_CSUM_XOR 160774u
/* Version 2 only says the flags field may carry NEEDS_CHECK (Linux 3.14); layout as 1. */
#define THIN_VERSION		 2u
#define THIN_MIN_VERSION	 1u
#define THIN_MAX_VERSION	 2u
#define THIN_SPACE_MAP_ROOT_SIZE 128u
/* Metadata blocks are 4 KiB = 8 sectors, always. */
#define THIN_METADATA_BLOCK_SECTORS 8u

struct thin_disk_superblock {
	le32 csum; /* crc32c of bytes 4..4095, xor THIN_SUPERBLOCK_CSUM_XOR */
	le32 flags;
	le64 blocknr; /* self-location: 0, or the held copy's block */
	uint8_t uuid[16];
	le64 magic;
	le32 version;
	le32 time;
	le64 trans_id;
	le64 held_root; /* the held (metadata snapshot) superblock copy, 0 = none */
	uint8_t data_space_map_root[THIN_SPACE_MAP_ROOT_SIZE];
	uint8_t metadata_space_map_root[THIN_SPACE_MAP_ROOT_SIZE];
	le64 data_mapping_root;
	le64 device_details_root;
	le32 data_block_size;	  /* sectors */
	le32 metadata_block_size; /* sectors, always 8 */
	le64 metadata_nr_blocks;  /* at format time */
	le32 compat_flags;
	le32 compat_ro_flags;
	le32 incompat_flags;
} __attribute__((packed));
_Static_assert(sizeof(struct thin_disk_superblock) == 364, "thin superblock is 364 bytes");
/* The kernel writes the superblock as one sector, so a torn write cannot split the struct. */
_Static_assert(sizeof(struct thin_disk_superblock) <= 512, "thin superblock fits a sector");

struct disk_device_details {
	le64 mapped_blocks;
	le64 transaction_id; /* the pool's trans_id when the device was created */
	le32 creation_time;
	le32 snapshotted_time;
} __attribute__((packed));
_Static_assert(sizeof(struct disk_device_details) == 24, "device details are 24 bytes");

#define THIN_TIME_BITS 24
#define THIN_TIME_MASK ((1u << THIN_TIME_BITS) - 1)
/* 40 bits of data block number remain above the time. */
#define THIN_MAX_DATA_BLOCKS (1ull << 40)

static inline uint64_t thin_pack_block_time(uint64_t block, uint32_t time)
{
	return block << THIN_TIME_BITS | (time & THIN_TIME_MASK);
}

static inline void thin_unpack_block_time(uint64_t v, uint64_t *block, uint32_t *time)
{
	*block = v >> THIN_TIME_BITS;
	*time = (uint32_t)(v & THIN_TIME_MASK);
}

#endif
