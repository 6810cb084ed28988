/* SPDX-License-Identifier: MIT */
/*
 * A VG on several devices, read and written as lvm does (docs/lvm2-format.md §7):
 *
 * Reading: every device's label and committed copy is read; the copies are grouped by VG id
 * and the copy in use is the one with the highest seqno (the first such device in the
 * caller's order when several hold it). A copy with a lower seqno is stale: lvm warns and
 * its next write brings the device up to date, and so does lvm_disks_write(). A copy with
 * the same seqno but other bytes is a mismatch, which lvm treats as a bad copy: it is
 * reported (LVM_DISK_MISMATCH), the copy of the earlier device is used, and the next write
 * replaces it. Devices are matched to the model's PVs by the PV id in their label; a PV of
 * the VG that no device carries is missing.
 *
 * Writing: the model's seqno goes up by exactly one, the text is serialised once and the
 * same bytes are precommitted on every PV of the VG, then committed on every one
 * (lvm_vg_write_text()), so a crash leaves each device with the old copy or the new one.
 *
 * Each device's report names it (blkdev.name).
 */
#ifndef CORE_LVM_LVM_DISKS_H
#define CORE_LVM_LVM_DISKS_H

#include "core/blkdev.h"
#include "core/lvm/lvm_vg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lvm_disk_state {
	LVM_DISK_NOT_PV,   /* no LVM label (rc -ENODATA) */
	LVM_DISK_NO_COPY,  /* a PV without a committed copy: new, or no metadata area */
	LVM_DISK_CURRENT,  /* holds the copy in use */
	LVM_DISK_STALE,	   /* this VG, a lower seqno: the next write repairs it */
	LVM_DISK_MISMATCH, /* this VG, the same seqno, other bytes: a bad copy, the next
			    * write repairs it */
	LVM_DISK_OTHER_VG, /* a copy of another VG (another VG id), or of this VG on a PV
			    * the VG does not list */
	LVM_DISK_BAD,	   /* unreadable or damaged (rc: -EILSEQ checksum, -EINVAL malformed,
			    * -EFBIG, the device's error) */
};

#define LVM_DISK_WHY 200u

struct lvm_disk {
	struct blkdev *dev; /* set by the caller; everything below is filled in */
	enum lvm_disk_state state;
	int rc;				/* 0, or the error behind NOT_PV, NO_COPY or BAD */
	char pv_id[LVM_ID_LEN + 1];	/* the label's PV id; empty without a valid label */
	bool has_mda;			/* the label lists a metadata area */
	char vg_name[LVM_NAME_MAX + 1]; /* the copy's VG, empty without a readable copy */
	char vg_id[LVM_ID_LEN + 1];
	uint32_t seqno;
	int pv;			/* index into vg->pvs, -1 when not a PV of the VG read */
	char why[LVM_DISK_WHY]; /* what the device is, naming it */
};

/*
 * Read the VG named @vg_name (NULL: the VG of the first device, in order, that holds a
 * readable copy) from @n devices. Fills every disks[i] (dev set by the caller), *out with
 * the model of the copy in use and *nr_missing with the number of the VG's PVs no device
 * carries (lvm_disks_find_pv() tells which).
 *
 * Errors (@why says which device and what): -ENODATA no device holds a readable copy of the
 * VG; -EINVAL the copy in use is one lvm_vg_from_text() refuses, or two devices carry the
 * same PV of the VG; -ENOMEM. A device's own trouble is in its state, not an error.
 */
int lvm_disks_read(struct lvm_disk *disks, unsigned n, const char *vg_name, struct lvm_vg **out,
		   unsigned *nr_missing, char *why, size_t why_len);

/* The index of the device carrying vg->pvs[@pv], or -ENOENT (a missing PV). */
int lvm_disks_find_pv(const struct lvm_disk *disks, unsigned n, unsigned pv);

/*
 * Write @vg to its PVs: disks[i].pv (from lvm_disks_read(), or set by the caller) says which
 * PV each device is; devices with pv < 0 are left alone, as are PVs without a metadata area.
 * Each device's label is read again and must carry that PV's id. vg->seqno is raised by one;
 * when the devices' write fails it stays raised (a device may already hold the new copy: a
 * retry must use a higher seqno, never the same one with other text); on any earlier error
 * nothing was written and it is restored. On success every device written is
 * LVM_DISK_CURRENT with the new seqno.
 *
 * Errors: -ENODEV a PV of the VG has no device (lvm would need it marked missing);
 * -EINVAL a device index out of range, two devices for one PV, a device whose label is not
 * that PV's id, or a model lvm_vg_validate() refuses; -EOVERFLOW seqno at its maximum;
 * -E2BIG / -ENOSPC text too large; -ENOMEM; the devices' errors (lvm_vg_write_text(): a
 * failure before the first commit leaves the old copy in force everywhere).
 */
int lvm_disks_write(struct lvm_vg *vg, struct lvm_disk *disks, unsigned n, char *why,
		    size_t why_len);

#endif
