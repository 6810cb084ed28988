/* SPDX-License-Identifier: MIT */
/*
 * Shared by the LVM unit tests: the appliance's VG shape (two PVs, a thin pool with _tmeta
 * on the first and _tdata on the second, two thin volumes, one a snapshot, tags).
 */
#ifndef TESTS_SUPPORT_LVM_FIXTURE_H
#define TESTS_SUPPORT_LVM_FIXTURE_H

#include "core/lvm/lvm_pv.h"
#include "core/lvm/lvm_text.h"
#include "core/lvm/lvm_vg.h"
#include "host/hostdev.h"
#include "tests/support/harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c

/* 64 MiB and 128 MiB disks, 4 MiB extents: 15 and 31 extents after pe_start 1 MiB. */
#define DISK1_SECTORS (64u * 2048u)
#define DISK2_SECTORS (128u * 2048u)

/* A new VG of that shape (free with lvm_vg_free()), or NULL without memory. */
struct lvm_vg *demo_vg(void);

#endif
