/* SPDX-License-Identifier: MIT */
/* The appliance tests' fixture (tests/support/app_fixture.h). */
#include "tests/support/app_fixture.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "host/hostdev.h"

static void cap_write(void *ctx, const char *buf, size_t len)
{
	struct fx *f = ctx;
	size_t n = MIN(len, sizeof(f->out) - 1 - f->outlen);

	memcpy(f->out + f->outlen, buf, n);
	f->outlen += n;
	f->out[f->outlen] = '\0';
}

static void cap_log(void *ctx, const char *line)
{
	struct fx *f = ctx;
	int n = snprintf(f->log + f->loglen, sizeof(f->log) - f->loglen, "%s\n", line);

	if (n > 0)
		f->loglen = MIN(f->loglen + (size_t)n, sizeof(f->log) - 1);
}

int boot_on(struct fx *f, bool first_boot)
{
	struct appliance_opts o;
	int rc;

	appliance_default_opts(&o);
	o.meta_disk = f->meta;
	o.data_disk = f->data;
	o.srv = f->srv;
	o.first_boot = first_boot;
	o.log = cap_log;
	o.log_ctx = f;
	f->loglen = 0;
	f->log[0] = '\0';
	rc = appliance_create(&o, &f->a);
	if (rc)
		return rc;
	shell_init(&f->sh, cap_write, f);
	appliance_cmds_register(&f->cmds, f->a, &f->sh);
	return 0;
}

struct fx *fx_new(uint64_t meta_bytes, uint64_t data_bytes)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (memdisk_create(meta_bytes / 512, 512, &f->meta) ||
	    memdisk_create(data_bytes / 512, 512, &f->data) || nbd_server_create(NULL, &f->srv))
		abort();
	return f;
}

void shutdown_app(struct fx *f)
{
	appliance_destroy(f->a);
	f->a = NULL;
}

void fx_free(struct fx *f)
{
	if (f->a)
		shutdown_app(f);
	nbd_server_destroy(f->srv);
	blkdev_destroy(f->meta);
	blkdev_destroy(f->data);
	free(f);
}

/* Run a shell line; the output is in f->out. */
int sh(struct fx *f, const char *fmt, ...)
{
	char line[SHELL_LINE_MAX + 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	f->outlen = 0;
	f->out[0] = '\0';
	return shell_exec(&f->sh, line);
}
