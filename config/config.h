/* SPDX-License-Identifier: MIT */
/*
 * The appliance's configuration model: named thin volumes and NBD exports. Pure data: no
 * I/O here (the appliance keeps it in its LVM2 volume group, app/app_vg.c).
 *
 * Names are 1..127 characters of [A-Za-z0-9_.:+-], not starting with '.' or '-' (volume
 * names must also be valid LVM LV names: the appliance checks that). Thin ids are dm-thin
 * device ids (0 .. 2^24-1); sizes are bytes, a multiple of 512.
 */
#ifndef CONFIG_CONFIG_H
#define CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/netaddr.h"

#define CFG_NAME_MAX 127
/* Sized for 10,000+ volumes in one VG (docs/appliance.md, "Limits"); each lookup below is
 * hashed, so no command costs more than O(n) in them. */
#define CFG_MAX_VOLUMES 16384
#define CFG_MAX_EXPORTS 4096
#define CFG_MAX_THIN_ID ((1u << 24) - 1)
/* Prefixes in one export's allow list. */
#define CFG_MAX_ALLOW 16

struct cfg_volume {
	char name[CFG_NAME_MAX + 1];
	uint32_t id;
	uint64_t size;		       /* bytes */
	char origin[CFG_NAME_MAX + 1]; /* "" unless created as a snapshot */
};

struct cfg_export {
	char name[CFG_NAME_MAX + 1];
	char volume[CFG_NAME_MAX + 1];
	bool read_only;
	/* Only over TLS (NBD_TLS_ON: plain clients are refused it and do not see it listed). */
	bool tls_only;
	/* Who may use it: clients whose address is inside one of these; none: everyone. */
	unsigned nallow;
	struct net_prefix allow[CFG_MAX_ALLOW];
};

struct cfg {
	struct cfg_volume *vols;
	size_t nvols, cap_vols;
	struct cfg_export *exps;
	size_t nexps, cap_exps;
	/*
	 * A cache for the lookups (volume by name, by id; export by name): open-addressing
	 * tables of index + 1 (0: empty), ix_vslots / ix_eslots of them (0: not built; built
	 * at the first lookup that needs it). The functions below keep it; code that changes
	 * a name or an id in place must call cfg_reindex().
	 */
	uint32_t *ix_vname, *ix_vid, *ix_ename;
	size_t ix_vslots, ix_eslots;
};

/* An empty configuration. */
void cfg_init(struct cfg *c);
/* Free what @c holds; it is empty afterwards. */
void cfg_free(struct cfg *c);
/* Deep copy. 0 or -ENOMEM (then @dst is empty). */
int cfg_copy(struct cfg *dst, const struct cfg *src);

/* Forget the lookup cache (after a name or id was changed in place). */
void cfg_reindex(struct cfg *c);

/* True when @name is a valid volume or export name (see above). */
bool cfg_name_valid(const char *name);

/* Lookups: the entry, or NULL. Hashed: O(1), after an O(n) rebuild when the cache was
 * dropped (a removal or a rename drops it). */
struct cfg_volume *cfg_find_volume(const struct cfg *c, const char *name);
struct cfg_volume *cfg_find_volume_id(const struct cfg *c, uint32_t id);
struct cfg_export *cfg_find_export(const struct cfg *c, const char *name);

/*
 * Add a volume. -EINVAL for a bad name, id or size (or an origin that is not a volume),
 * -EEXIST when the name or the id is taken, -ENOSPC past CFG_MAX_VOLUMES, -ENOMEM.
 */
int cfg_add_volume(struct cfg *c, const char *name, uint32_t id, uint64_t size, const char *origin);
/*
 * Rename volume @name to @new_name, with its exports and the snapshots that name it as
 * origin. -ENOENT, -EEXIST (the new name is taken), -EINVAL (bad name).
 */
int cfg_rename_volume(struct cfg *c, const char *name, const char *new_name);
/* Remove a volume: -ENOENT if absent, -EBUSY while an export uses it. */
int cfg_remove_volume(struct cfg *c, const char *name);
/* Add an export of @volume: -EINVAL, -EEXIST, -ENOENT (no such volume), -ENOSPC, -ENOMEM. */
int cfg_add_export(struct cfg *c, const char *name, const char *volume, bool read_only);
/* -ENOENT if absent. */
int cfg_remove_export(struct cfg *c, const char *name);
/*
 * Add @p to export @name's allow list (a prefix already there: nothing changes, 0), or
 * remove it. -ENOENT (no such export; disallow: the prefix is not in the list), -ENOSPC
 * (CFG_MAX_ALLOW prefixes already), -EINVAL (a prefix with bits set past its length).
 */
int cfg_export_allow(struct cfg *c, const char *name, const struct net_prefix *p);
int cfg_export_disallow(struct cfg *c, const char *name, const struct net_prefix *p);
/* The lowest thin id not used by any volume, or -ENOSPC. O(n log n). */
int64_t cfg_free_id(const struct cfg *c);

#endif
