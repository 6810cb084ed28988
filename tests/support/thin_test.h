/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the thin-metadata tests: pools on memory disks, the core checker with its
 * problems printed, a hash of everything a pool shows (for crash tests), and running
 * thin-provisioning-tools' thin_check / thin_dump on a copy of a device.
 */
#ifndef TESTS_SUPPORT_THIN_TEST_H
#define TESTS_SUPPORT_THIN_TEST_H

#include <stdbool.h>
#include <stdint.h>

#include "core/thin/thin_check.h"
#include "core/thin/thin_metadata.h"
#include "host/hostdev.h"
#include "tests/support/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Open (or @format) thin metadata on @dev; THIN_DEBUG=1 prints why it fails. */
int md_open(struct blkdev *dev, bool format, uint64_t data_blocks, struct thin_md **md);
/* thin_check()'s problem callback: prints the first ten (@ctx: an unsigned count). */
void print_problem(void *ctx, const char *line);
/* The core checker on @dev (whatever is on the device: commit first). */
int check_dev(struct blkdev *dev);
/* A hash of everything the pool shows: superblock view, details and every mapping. */
int md_hash(struct thin_md *md, uint64_t *out);
/* Copy @dev into a file (the tools read files). */
int dev_to_file(struct blkdev *dev, const char *path);
/*
 * thin_check on @path: exit 0 and nothing on stderr but its four phase lines (no
 * warnings, no leaks). Returns 0 when so.
 */
int tpt_check(const char *path, const char *extra);
/* thin_dump of @path (with @extra options) equals thinbox-dump's (the same options). */
int tpt_dump_matches(const char *path, const char *extra);

#endif
