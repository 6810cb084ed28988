/* SPDX-License-Identifier: MIT */
/* The dm-btree node layout, shared by btree*.c and the checker (dm-btree-internal.h). */
#ifndef CORE_PDATA_BTREE_INTERNAL_H
#define CORE_PDATA_BTREE_INTERNAL_H

#include "core/base/endian.h"
#include "core/pdata/btree.h"

enum node_flags {
	INTERNAL_NODE = 1,
	LEAF_NODE = 1 << 1,
};

#define BTREE_CSUM_XOR 121107u

struct node_header {
	le32 csum;
	le32 flags;
	le64 blocknr; /* self-location */
	le32 nr_entries;
	le32 max_entries;
	le32 value_size;
	le32 padding;
} __attribute__((packed));
_Static_assert(sizeof(struct node_header) == 32, "node_header is 32 bytes on disk");

/* keys[max_entries] follow the header, then values[max_entries]. */
struct btree_node {
	struct node_header header;
	le64 keys[];
} __attribute__((packed));

static inline uint32_t node_nr(const struct btree_node *n)
{
	return get_le32(&n->header.nr_entries);
}

static inline uint32_t node_max(const struct btree_node *n)
{
	return get_le32(&n->header.max_entries);
}

static inline uint32_t node_vsize(const struct btree_node *n)
{
	return get_le32(&n->header.value_size);
}

static inline uint32_t node_flags(const struct btree_node *n)
{
	return get_le32(&n->header.flags);
}

static inline uint64_t node_key(const struct btree_node *n, uint32_t i)
{
	return get_le64(&n->keys[i]);
}

static inline void *value_ptr(struct btree_node *n, uint32_t i)
{
	return (uint8_t *)n + sizeof(struct node_header) + 8u * node_max(n) +
	       (size_t)i * node_vsize(n);
}

static inline uint64_t value64(struct btree_node *n, uint32_t i)
{
	return get_le64(value_ptr(n, i));
}

/*
 * What a node of tree @info at @level must be beyond what the block validator checks (any
 * node): the level's value size, the exact max_entries, and an internal node not empty.
 * 0 or -EILSEQ.
 */
struct dm_btree_info;
int node_fits(struct dm_btree_info *info, unsigned level, struct btree_node *n);

/* Largest i with keys[i] <= key, or -1. */
int btree_lower_bound(const struct btree_node *n, uint64_t key);

#endif
