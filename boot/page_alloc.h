/* SPDX-License-Identifier: MIT */
/*
 * The page allocator: owns every page of conventional memory the UEFI memory map listed at
 * ExitBootServices, in 4 KiB pages, one bit per page.
 *
 * Two users grow towards each other inside each run of free pages: the C heap (newlib's
 * malloc, through sbrk) takes pages upwards from the bottom of the largest region, and
 * page_alloc() hands out page runs top-down, so the heap can keep growing contiguously for as
 * long as possible.
 */
#ifndef BOOT_PAGE_ALLOC_H
#define BOOT_PAGE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#define PAGE_SIZE 4096u

struct page_region {
	uint64_t base; /* physical (= virtual) address, page aligned */
	uint64_t npages;
};

/*
 * Take ownership of @n regions (sorted or not; overlaps are not allowed). The bitmap itself
 * is carved out of the regions. Returns 0, -EINVAL for no usable memory, -ENOMEM when no
 * region can hold the bitmap.
 */
int page_alloc_init(const struct page_region *regions, size_t n);
/* @npages contiguous zeroed pages, or NULL. */
void *page_alloc(size_t npages);
/* Give back a run from page_alloc(); freeing pages that are not allocated is a panic. */
void page_free(void *p, size_t npages);
/*
 * Grow the heap by @incr bytes (rounded up to pages internally) and return the old break,
 * sbrk-style, or NULL when the pages above the break are taken or absent.
 */
void *page_heap_grow(size_t incr);

struct page_stats {
	uint64_t total_pages; /* pages handed to the allocator, bitmap included */
	uint64_t free_pages;
	uint64_t heap_pages;
	uint32_t regions;
};
void page_alloc_stats(struct page_stats *out);

#endif
