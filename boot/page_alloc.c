/* SPDX-License-Identifier: MIT */
/*
 * A bitmap page allocator over the conventional memory left at ExitBootServices.
 *
 * The bitmap covers [lo, hi), the span of all regions, with one bit per page (1 = in use);
 * pages between regions are marked used once at init and never freed. At 256 MiB of guest
 * memory that is 8 KiB of bitmap; a 4 GiB guest with RAM above 4 GiB needs about 200 KiB.
 * page_alloc() searches top-down (first fit from the highest address), the heap grows up from
 * the bottom of the largest region; the two meet only when memory is nearly full.
 */
#include "boot/page_alloc.h"

#include <errno.h>
#include <string.h>

#include "core/base/plat.h"

static uint64_t lo_page, nr_pages; /* bitmap span, in pages */
static uint64_t *bitmap;
static uint64_t total_pages, free_pages, heap_pages;
static uint32_t nr_regions;
static uint64_t heap_base, heap_brk, heap_end; /* byte addresses; brk is byte-exact */
static uint64_t heap_mapped;		       /* end of pages already taken for the heap */

static int test_bit(uint64_t i)
{
	return (bitmap[i / 64] >> (i % 64)) & 1;
}

static void set_bits(uint64_t first, uint64_t n, int used)
{
	for (uint64_t i = first; i < first + n; i++) {
		if (used)
			bitmap[i / 64] |= 1ull << (i % 64);
		else
			bitmap[i / 64] &= ~(1ull << (i % 64));
	}
}

int page_alloc_init(const struct page_region *regions, size_t n)
{
	uint64_t lo = UINT64_MAX, hi = 0, words, bm_pages;
	size_t largest = 0, bm_region = n;

	for (size_t i = 0; i < n; i++) {
		uint64_t b = regions[i].base / PAGE_SIZE;

		if (regions[i].npages == 0)
			continue;
		lo = b < lo ? b : lo;
		hi = b + regions[i].npages > hi ? b + regions[i].npages : hi;
		if (regions[i].npages > regions[largest].npages)
			largest = i;
	}
	if (hi == 0)
		return -EINVAL;
	lo_page = lo;
	nr_pages = hi - lo;
	words = (nr_pages + 63) / 64;
	bm_pages = (words * 8 + PAGE_SIZE - 1) / PAGE_SIZE;

	/* The bitmap goes into the smallest region that holds it, to keep the big ones whole. */
	for (size_t i = 0; i < n; i++) {
		if (regions[i].npages >= bm_pages &&
		    (bm_region == n || regions[i].npages < regions[bm_region].npages))
			bm_region = i;
	}
	if (bm_region == n)
		return -ENOMEM;
	bitmap = (uint64_t *)(uintptr_t)regions[bm_region].base;

	/* Everything used, then each region free, then the bitmap's own pages used again. */
	memset(bitmap, 0xff, words * 8);
	total_pages = free_pages = 0;
	for (size_t i = 0; i < n; i++) {
		set_bits(regions[i].base / PAGE_SIZE - lo_page, regions[i].npages, 0);
		total_pages += regions[i].npages;
	}
	set_bits(regions[bm_region].base / PAGE_SIZE - lo_page, bm_pages, 1);
	free_pages = total_pages - bm_pages;
	nr_regions = (uint32_t)n;

	/* The heap starts at the bottom of the largest region (after the bitmap if it is there). */
	heap_base = regions[largest].base + (largest == bm_region ? bm_pages * PAGE_SIZE : 0);
	heap_brk = heap_mapped = heap_base;
	heap_end = regions[largest].base + regions[largest].npages * PAGE_SIZE;
	heap_pages = 0;
	return 0;
}

void *page_alloc(size_t npages)
{
	uint64_t run = 0;

	if (npages == 0 || !bitmap || npages > free_pages)
		return NULL;
	/* Top-down first fit: count free pages walking down; a long enough run ends at i. */
	for (uint64_t i = nr_pages; i-- > 0;) {
		/* A fully used word at a word boundary: skip its 64 pages at once. */
		if (i % 64 == 63 && bitmap[i / 64] == UINT64_MAX) {
			run = 0;
			i -= 63;
			continue;
		}
		if (test_bit(i)) {
			run = 0;
			continue;
		}
		if (++run == npages) {
			void *p = (void *)(uintptr_t)((lo_page + i) * PAGE_SIZE);

			set_bits(i, npages, 1);
			free_pages -= npages;
			memset(p, 0, npages * PAGE_SIZE);
			return p;
		}
	}
	return NULL;
}

void page_free(void *p, size_t npages)
{
	uint64_t first = (uintptr_t)p / PAGE_SIZE;

	if ((uintptr_t)p % PAGE_SIZE || first < lo_page || first - lo_page + npages > nr_pages)
		plat_panic("page_free: bad range %p + %zu pages", p, npages);
	first -= lo_page;
	for (uint64_t i = first; i < first + npages; i++) {
		if (!test_bit(i))
			plat_panic("page_free: page %p is not allocated",
				   (void *)(uintptr_t)((lo_page + i) * PAGE_SIZE));
	}
	set_bits(first, npages, 0);
	free_pages += npages;
}

void *page_heap_grow(size_t incr)
{
	uint64_t old = heap_brk, want = heap_brk + incr;

	if (!bitmap || incr > heap_end - heap_brk)
		return NULL;
	/* Claim each new page; stop if page_alloc() got there first. */
	while (heap_mapped < want) {
		uint64_t i = heap_mapped / PAGE_SIZE - lo_page;

		if (test_bit(i))
			return NULL;
		set_bits(i, 1, 1);
		free_pages--;
		heap_pages++;
		heap_mapped += PAGE_SIZE;
	}
	heap_brk = want;
	return (void *)(uintptr_t)old;
}

void page_alloc_stats(struct page_stats *out)
{
	out->total_pages = total_pages;
	out->free_pages = free_pages;
	out->heap_pages = heap_pages;
	out->regions = nr_regions;
}
