/* SPDX-License-Identifier: MIT */
/*
 * Counting every heap allocation of the process, through the sanitizer's malloc hook (the
 * host's ASan/UBSan test build): for the tests that check a data path allocates nothing in
 * steady state. A test that calls any of these links the hook in (it is installed by a
 * constructor of the same object file); the counters only grow.
 */
#ifndef TESTS_SUPPORT_ALLOC_COUNT_H
#define TESTS_SUPPORT_ALLOC_COUNT_H

/* malloc, calloc, realloc (and the like) since the program started. */
unsigned long alloc_count(void);
/* free() of a non-NULL pointer since the program started. */
unsigned long free_count(void);
/* Bytes allocated and not yet freed (since the program started). */
long alloc_live_bytes(void);

#endif
