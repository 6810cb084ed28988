/* SPDX-License-Identifier: MIT */
/*
 * Shared by the appliance's unit tests: two memory disks, an NBD server, the appliance on
 * them and its shell, with the shell's output and the appliance's log captured.
 */
#ifndef TESTS_SUPPORT_APP_FIXTURE_H
#define TESTS_SUPPORT_APP_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app/appliance.h"
#include "config/appliance_cmds.h"
#include "config/shell.h"

struct fx {
	struct blkdev *meta, *data;
	struct nbd_server *srv;
	struct appliance *a;
	struct shell sh;
	struct appliance_cmds cmds;
	char out[65536]; /* the last sh() line's output */
	size_t outlen;
	char log[8192]; /* the appliance's log since the last boot_on() */
	size_t loglen;
};

/* Memory disks of these sizes (512-byte blocks) and a server; aborts without memory. */
struct fx *fx_new(uint64_t meta_bytes, uint64_t data_bytes);
/* Start the appliance on f's disks (appliance_create's result) and register its commands. */
int boot_on(struct fx *f, bool first_boot);
/* appliance_destroy(); the disks and the server stay. */
void shutdown_app(struct fx *f);
void fx_free(struct fx *f);
/* Run a shell line; its output is in f->out. The shell's result. */
int sh(struct fx *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
