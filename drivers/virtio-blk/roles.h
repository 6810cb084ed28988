/* SPDX-License-Identifier: MIT */
/*
 * Which virtio-blk disk holds the pool's metadata and which its data.
 *
 * Decided by address, never by content: the metadata disk is the one at PCI 00:04.0 and the
 * data disk the one at 00:05.0 (the slots `make run` and the QEMU tests use), unless the
 * configuration names other addresses (fw_cfg opt/thinbox/meta-disk=BB:DD.F, data-disk=...).
 * A role whose disk is missing, failed to start, or is smaller than its minimum stays empty,
 * with one clear line saying why; the firmware keeps running (the shell still works).
 * Pure code: the host unit tests run it.
 */
#ifndef DRIVERS_VIRTIO_BLK_ROLES_H
#define DRIVERS_VIRTIO_BLK_ROLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DISK_META_DEFAULT "00:04.0"
#define DISK_DATA_DEFAULT "00:05.0"
#define DISK_META_MIN	  (4ull << 20)	/* a few MiB hold a small pool's metadata */
#define DISK_DATA_MIN	  (16ull << 20) /* room for a handful of 64 KiB data blocks at least */

enum disk_role {
	DISK_ROLE_NONE,
	DISK_ROLE_META,
	DISK_ROLE_DATA,
};

struct disk_candidate {
	uint8_t bus, dev, fn;
	bool usable;	     /* the driver started */
	uint64_t bytes;	     /* capacity */
	enum disk_role role; /* output */
};

struct disk_roles_cfg {
	const char *meta_addr; /* "BB:DD.F" or "DD.F" (hex); NULL: DISK_META_DEFAULT */
	const char *data_addr;
	uint64_t meta_min, data_min; /* 0: the defaults above */
};

/*
 * Set .role on @disks[0..n) and the index of each role's disk in *meta / *data (-1 when the
 * role stays empty). Each problem is written as one line to @msg (may be NULL). Returns the
 * number of empty roles: 0 when both have a disk.
 */
int disk_roles_assign(struct disk_candidate *disks, size_t n, const struct disk_roles_cfg *cfg,
		      int *meta, int *data, void (*msg)(void *ctx, const char *line), void *ctx);

/* Parse "BB:DD.F" or "DD.F" (hex). 0, or -EINVAL. */
int disk_parse_addr(const char *s, uint8_t *bus, uint8_t *dev, uint8_t *fn);

const char *disk_role_name(enum disk_role r);

#endif
