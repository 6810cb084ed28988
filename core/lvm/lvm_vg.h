/* SPDX-License-Identifier: MIT */
/*
 * The volume-group model: what one copy of lvm's metadata text says about the VG, its
 * physical volumes and its logical volumes (docs/lvm2-format.md §7-§10), read from text
 * with every check the appliance relies on, and written back as text the way lvm2 writes
 * it (the VG section first, so the text starts with the VG name; decimal numbers without
 * leading zeros; status words lvm knows; creation_time and creation_host together).
 *
 * Segment types kept: "striped" with one stripe (a linear piece of one PV), "thin-pool"
 * (with its pending messages) and "thin". A pool's _tmeta and _tdata may be any number of
 * linear pieces (lvextend adds some, lvconvert --repair swaps in the spare's); lvm_lv_map()
 * lists them. Anything else the appliance cannot serve is refused with a message naming
 * the VG part and the reason: other segment types, several stripes, exported / clustered /
 * shared VGs, system ids, lock types, PVs marked missing, unknown status words.
 * Unknown keys are dropped, as lvm drops them. Flags words (compatible by definition) are
 * kept as they are.
 *
 * Ids are kept without dashes (32 characters of lvm's id alphabet); the text has them in
 * lvm's 6-4-4-4-4-4-6 groups. Sizes and extents are in 512-byte sectors and extents, as in
 * the text.
 */
#ifndef CORE_LVM_LVM_VG_H
#define CORE_LVM_LVM_VG_H

#include "core/lvm/lvm_format.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LVM_NAME_MAX 127u /* VG and LV names */
/* Bounds on what one VG may hold here; lvm's own VGs for the appliance are far smaller. */
#define LVM_VG_MAX_PVS	    64u
#define LVM_VG_MAX_LVS	    32768u /* 10,000+ thin volumes: docs/appliance.md, "Limits" */
#define LVM_LV_MAX_SEGS	    256u
#define LVM_MAX_TAGS	    256u
#define LVM_THIN_MAX_DEV_ID 0xFFFFFFu
#define LVM_POOL_MAX_MSGS   256u     /* lvm sends one or two per command */
#define LVM_CHUNK_MIN	    128u     /* sectors: 64 KiB */
#define LVM_CHUNK_MAX	    2097152u /* sectors: 1 GiB */

/* VG status */
#define LVM_VG_RESIZEABLE 0x1u
#define LVM_VG_READ	  0x2u
#define LVM_VG_WRITE	  0x4u
/* PV status */
#define LVM_PV_ALLOCATABLE 0x1u
/* LV status */
#define LVM_LV_READ    0x1u
#define LVM_LV_WRITE   0x2u
#define LVM_LV_VISIBLE 0x4u

struct lvm_strs {
	unsigned n;
	char **v;
};

enum lvm_seg_type {
	LVM_SEG_STRIPED, /* one stripe: a linear piece of a PV */
	LVM_SEG_THIN_POOL,
	LVM_SEG_THIN,
};

enum lvm_discards {
	LVM_DISCARDS_UNSET, /* not written: dm-thin's ignore */
	LVM_DISCARDS_IGNORE,
	LVM_DISCARDS_NOPASSDOWN,
	LVM_DISCARDS_PASSDOWN,
};

/*
 * A pending thin-pool message (lvm2's thin_messages; docs/lvm2-format.md §7): lvm commits
 * the VG with the pool's transaction_id raised by one and these messages, then sends them
 * to dm-thin followed by set_transaction_id (id - 1 -> id), then commits the VG again
 * without them. Whoever activates the pool while its superblock's id is one below the VG's
 * sends them; when the ids are equal they were sent already.
 */
enum lvm_msg_type {
	LVM_MSG_CREATE, /* `create = "LV"`: create_thin of that thin LV's device_id, or
			 * create_snap of it from its origin's device_id when it has `origin` */
	LVM_MSG_DELETE, /* `delete = ID`: delete of thin device ID */
};

struct lvm_thin_msg {
	enum lvm_msg_type type;
	char lv[LVM_NAME_MAX + 1]; /* create: a thin LV of this pool */
	uint32_t device_id;	   /* delete: <= LVM_THIN_MAX_DEV_ID */
};

struct lvm_seg {
	uint64_t start_extent;
	uint64_t extent_count;
	enum lvm_seg_type type;
	/* striped */
	unsigned pv; /* index into vg->pvs */
	uint64_t pe; /* first physical extent on it */
	/* thin-pool */
	char metadata[LVM_NAME_MAX + 1]; /* the _tmeta LV */
	char pool[LVM_NAME_MAX + 1];	 /* the _tdata LV */
	uint64_t transaction_id;	 /* thin-pool and thin */
	uint32_t chunk_size;		 /* sectors */
	enum lvm_discards discards;
	int zero_new_blocks;	   /* -1 when absent (no zeroing), else 0 or 1 */
	unsigned nr_msgs;	   /* pending messages, in the order they are sent */
	struct lvm_thin_msg *msgs; /* malloc()ed; freed by lvm_vg_free() */
	/* thin */
	char thin_pool[LVM_NAME_MAX + 1];
	uint32_t device_id;
	char origin[LVM_NAME_MAX + 1]; /* empty: not a snapshot */
};

struct lvm_lv {
	char name[LVM_NAME_MAX + 1];
	char id[LVM_ID_LEN + 1];
	uint32_t status; /* LVM_LV_* */
	struct lvm_strs flags, tags;
	bool has_creation; /* creation_time and creation_host are both present */
	uint64_t creation_time;
	char *creation_host;
	unsigned nr_segs;
	struct lvm_seg *segs; /* in logical order, contiguous from extent 0 */
};

struct lvm_pv {
	char key[LVM_NAME_MAX + 1]; /* the name segments refer to ("pv0") */
	char id[LVM_ID_LEN + 1];
	char *device; /* last known path, a hint; NULL when absent */
	uint32_t status;
	struct lvm_strs tags;
	uint64_t dev_size; /* sectors; 0 when absent */
	uint64_t pe_start; /* sectors */
	uint64_t pe_count;
};

struct lvm_vg {
	char name[LVM_NAME_MAX + 1];
	char id[LVM_ID_LEN + 1];
	uint32_t seqno;
	uint32_t status; /* LVM_VG_* */
	struct lvm_strs flags, tags;
	uint32_t extent_size; /* sectors */
	uint32_t max_lv, max_pv;
	unsigned nr_pvs;
	struct lvm_pv *pvs;
	unsigned nr_lvs;
	struct lvm_lv *lvs;
	unsigned lv_cap; /* elements allocated at lvs (lvm_vg_add_lv() grows it by doubling) */
	/* The text's top-level keys after the VG section (optional, informational). */
	char *description;
	bool has_creation;
	uint64_t creation_time;
	char *creation_host;
};

/*
 * Read one metadata copy. 0 and *out; -EINVAL with the reason in @why (may be NULL) for
 * text that is malformed, breaks lvm's rules, or holds what the appliance cannot serve;
 * -ENOMEM.
 */
int lvm_vg_from_text(const char *text, size_t len, struct lvm_vg **out, char *why, size_t why_len);
/*
 * The same from a copy lvm_text_parse() already parsed (lvm_disks_read() parses each copy
 * once: its VG name, id and seqno choose the copy in use, which is then read from the same
 * tree). @t is not changed and stays the caller's.
 */
struct lvm_tree;
int lvm_vg_from_tree(struct lvm_tree *t, struct lvm_vg **out, char *why, size_t why_len);
/*
 * Write @vg as lvm writes a metadata copy (after lvm_vg_validate(): -EINVAL with nothing
 * written if it fails). *text is malloc()ed, NUL terminated, *len bytes without the NUL.
 * -E2BIG when longer than LVM_TEXT_DEFAULT_MAX_LEN; -ENOMEM.
 */
int lvm_vg_to_text(const struct lvm_vg *vg, char **text, size_t *len, char *why, size_t why_len);
/*
 * All the checks of lvm_vg_from_text() on a model: 0 or -EINVAL with the reason; -ENOMEM for
 * its lookup tables. O(n) in the LVs (name, id and device_id lookups are hashed).
 */
int lvm_vg_validate(const struct lvm_vg *vg, char *why, size_t why_len);
void lvm_vg_free(struct lvm_vg *vg);

/*
 * Builders for a new VG (seqno 1, status RESIZEABLE READ WRITE). Pointers they return stay
 * valid until the next add of the same kind. -EINVAL for a bad name or id, -E2BIG past the
 * bounds above, -ENOMEM. Nothing is cross-checked until lvm_vg_validate().
 */
int lvm_vg_create(const char *name, const char *id, uint32_t extent_size, struct lvm_vg **out);
int lvm_vg_add_pv(struct lvm_vg *vg, const char *id, uint64_t dev_size, uint64_t pe_start,
		  struct lvm_pv **out);
int lvm_vg_add_lv(struct lvm_vg *vg, const char *name, const char *id, uint32_t status,
		  struct lvm_lv **out);
/* A zeroed segment of @type appended after the LV's last one (start_extent set). */
int lvm_lv_add_seg(struct lvm_lv *lv, enum lvm_seg_type type, uint64_t extent_count,
		   struct lvm_seg **out);
int lvm_lv_set_creation(struct lvm_lv *lv, uint64_t time, const char *host);
/*
 * Pending messages of a thin-pool segment, appended in the order they will be sent (at most
 * LVM_POOL_MAX_MSGS). -EINVAL when @seg is not a thin pool or @name is not a valid LV name,
 * -E2BIG, -ENOMEM. What they name is checked by lvm_vg_validate(). The caller raises the
 * pool's transaction_id by one with the first message, as lvm does.
 */
int lvm_seg_add_message_create(struct lvm_seg *seg, const char *name);
int lvm_seg_add_message_delete(struct lvm_seg *seg, uint32_t device_id);
/* Drop every pending message (the second commit of lvm's protocol). */
void lvm_seg_clear_messages(struct lvm_seg *seg);
/* Append a copy of @s (checked as a tag: -EINVAL). */
int lvm_strs_add(struct lvm_strs *l, const char *s);

/* A scan: O(n). Callers that look up many names build an index (below). */
struct lvm_lv *lvm_vg_find_lv(const struct lvm_vg *vg, const char *name);

/*
 * A hashed index of a VG's LVs by name, for callers that look up many: built in O(n), valid
 * until an LV of @vg is added, removed or renamed. A name held twice finds the first, as
 * lvm_vg_find_lv() does. Build: 0 or -ENOMEM.
 */
struct lvm_lv_index;
int lvm_lv_index_build(const struct lvm_vg *vg, struct lvm_lv_index **out);
struct lvm_lv *lvm_lv_index_find(const struct lvm_lv_index *ix, const char *name);
void lvm_lv_index_free(struct lvm_lv_index *ix);
/* Remove @lv (an element of vg->lvs; pointers to later LVs move down by one). Nothing else
 * is changed: references to it (origin, pool components, messages) are the caller's. */
void lvm_vg_remove_lv(struct lvm_vg *vg, struct lvm_lv *lv);
/* Remove entry @i (< l->n) of a tag or flag list. */
void lvm_strs_remove(struct lvm_strs *l, unsigned i);
/* A deep copy of a valid model (lvm_vg_validate() first): 0, -EINVAL (why), -ENOMEM. */
int lvm_vg_copy(const struct lvm_vg *vg, struct lvm_vg **out, char *why, size_t why_len);

/* Extents of the LV: the sum of its segments. */
uint64_t lvm_lv_extents(const struct lvm_lv *lv);

/* One linear piece of an LV: @sectors 512-byte sectors from @pv_sector of PV vg->pvs[@pv]. */
struct lvm_piece {
	unsigned pv;
	uint64_t pv_sector; /* pe_start + pe * extent_size */
	uint64_t sectors;   /* extent_count * extent_size */
};

/*
 * Where a linear LV (every segment "striped", as _tmeta and _tdata are) lives: one piece per
 * segment in logical order, the LV's sector 0 first. 0 and *nr pieces in @out; -EINVAL for
 * an LV with no segment, a segment of another type, or one that is not inside its PV
 * (a model lvm_vg_validate() refuses); -E2BIG when it has more than @max segments (*nr is
 * then the number needed).
 */
int lvm_lv_map(const struct lvm_vg *vg, const struct lvm_lv *lv, struct lvm_piece *out,
	       unsigned max, unsigned *nr);

/* lvm's rules (docs/lvm2-format.md §8). */
bool lvm_name_valid(const char *name);
bool lvm_tag_valid(const char *tag);
/* lvm_name_valid() and not a name lvm reserves for visible LVs ("snapshot*", "*_tmeta", ...). */
bool lvm_lv_name_valid(const char *name);
/* 32 characters of the id alphabet, dashes ignored; @out (33 bytes) gets them undashed. */
bool lvm_id_parse(const char *text, char out[LVM_ID_LEN + 1]);
/* The 6-4-4-4-4-4-6 dashed form (39 bytes with the NUL) of a valid 32-character id. */
void lvm_id_format(const char *id, char out[39]);
/* An id from 32 random bytes (lvm's generator uses the first 62 alphabet characters). */
void lvm_id_from_bytes(const uint8_t bytes[LVM_ID_LEN], char out[LVM_ID_LEN + 1]);

#endif
