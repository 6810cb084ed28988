/* SPDX-License-Identifier: MIT */
/*
 * The server's export cap (NBD_DEFAULT_MAX_EXPORTS, 4,096: issue 16): that many exports are
 * taken, the next is refused with -ENOSPC and a removal makes room again. Before the cap
 * was raised, export 65 was refused.
 */
#include <errno.h>
#include <stdio.h>

#include "host/hostdev.h"
#include "net/nbd/nbd_server.h"
#include "tests/support/harness.h"

TEST(four_thousand_exports)
{
	struct nbd_server *srv = NULL;
	struct blkdev *mem = NULL;
	char name[32];
	unsigned n = 0;

	ok(NBD_DEFAULT_MAX_EXPORTS >= 4096);
	if (!ok_eq(memdisk_create(64, 512, &mem), 0) || !ok_eq(nbd_server_create(NULL, &srv), 0))
		goto out;
	for (unsigned i = 0; i < NBD_DEFAULT_MAX_EXPORTS; i++) {
		struct nbd_export_config c = { .name = name, .dev = mem };

		snprintf(name, sizeof(name), "e%u", i);
		if (nbd_server_add_export(srv, &c))
			break;
		n++;
	}
	ok_eq(n, NBD_DEFAULT_MAX_EXPORTS);
	snprintf(name, sizeof(name), "one-more");
	ok_eq(nbd_server_add_export(srv, &(struct nbd_export_config){ .name = name, .dev = mem }),
	      -ENOSPC);
	ok_eq(nbd_server_remove_export(srv, "e100", true), 0);
	ok_eq(nbd_server_add_export(srv, &(struct nbd_export_config){ .name = name, .dev = mem }),
	      0);
out:
	if (srv)
		nbd_server_destroy(srv);
	if (mem)
		blkdev_destroy(mem);
}
