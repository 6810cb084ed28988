/* SPDX-License-Identifier: MIT */
/*
 * The pool metadata checker (behind thinbox-check and the shell's `pool check`).
 *
 * It reads the metadata device through its own block-manager cache and trusts nothing: it
 * verifies every superblock field the kernel relies on, every B-tree node of every tree
 * (checksum, location, node type, value size, exact max_entries, entry count, minimum fill
 * of non-root nodes, key order, parent key ranges, equal leaf depth), both space maps
 * (index and bitmap blocks, nr_free and none_free_before hints, overflow entries exactly
 * where a bitmap says 3, nr_allocated), the held root's copy and trees, and then compares
 * the reference count of every metadata block and every data block with what the trees
 * imply (docs/dm-thin-format.md §5.7). It also checks what thin_check 0.9.0 skips: data reference
 * counts, mapped_blocks against the mappings, the details and mapping trees naming the
 * same devices, times and transaction ids not beyond the superblock's, and mappings inside
 * the data device.
 *
 * Each problem is reported through @report as one line of text (no newline). Nothing is
 * written to the device.
 *
 * Classes, following thin_check 0.9.0 (which exits 1 on any error, fatal damage or a leak,
 * and does not look at space-map counters at all): every problem is an error (damage, an
 * undercounted block, a leak); a space-map counter that disagrees with the bitmaps (an
 * index entry's nr_free or none_free_before, a root's nr_allocated not above its size)
 * cannot lose data and is a warning: reported through @report as "warning: ...", counted
 * in stats->warnings, and the result stays 0. The pool recounts those counters when it
 * opens the metadata read-write and writes them at its next commit.
 */
#ifndef CORE_THIN_THIN_CHECK_H
#define CORE_THIN_THIN_CHECK_H

#include "core/blkdev.h"

#include <stdint.h>

struct thin_check_stats {
	uint64_t problems; /* lines reported (plus those left out after the per-kind limit) */
	uint64_t warnings; /* "warning: " lines reported (counters only; not problems) */
	uint64_t devices, mappings;
	uint64_t metadata_blocks, metadata_used;
	uint64_t data_blocks, data_used;
	uint64_t trans_id;
	bool needs_check; /* the superblock asks for a check (not a problem in itself) */
	bool held_root;
};

typedef void (*thin_check_report_fn)(void *ctx, const char *line);
/* Progress: @done of @total units of work (metadata blocks read); ends with done == total. */
typedef void (*thin_check_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/*
 * Check the pool metadata on @meta. Returns 0 when the pool is clean (warnings allowed),
 * -EILSEQ when problems were reported, or -ENOMEM / a device error when the check itself could not run. @stats
 * may be NULL.
 */
int thin_check(struct blkdev *meta, thin_check_report_fn report, void *ctx,
	       struct thin_check_stats *stats);
/* The same, calling @progress (may be NULL) as it goes; @ctx is passed to both callbacks. */
int thin_check_progress(struct blkdev *meta, thin_check_report_fn report,
			thin_check_progress_fn progress, void *ctx, struct thin_check_stats *stats);

#endif
