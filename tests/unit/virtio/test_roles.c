/* SPDX-License-Identifier: MIT */
/* Disk roles: by fixed slot or configured address, with a clear line for each problem. */
#include "tests/support/harness.h"

#include "drivers/virtio-blk/roles.h"

#include <errno.h>
#include <string.h>

struct msgs {
	unsigned n;
	char last[2][200];
};

static void collect(void *ctx, const char *line)
{
	struct msgs *m = ctx;

	if (m->n < 2)
		strncpy(m->last[m->n], line, sizeof(m->last[0]) - 1);
	m->n++;
}

static const struct disk_candidate two[2] = {
	{ 0, 4, 0, true, 16 << 20, DISK_ROLE_NONE },
	{ 0, 5, 0, true, 64 << 20, DISK_ROLE_NONE },
};

TEST(default_slots)
{
	struct disk_candidate d[2];
	struct disk_roles_cfg cfg = { 0 };
	struct msgs m = { 0 };
	int meta, data;

	memcpy(d, two, sizeof(d));
	ok_eq(disk_roles_assign(d, 2, &cfg, &meta, &data, collect, &m), 0);
	ok_eq(meta, 0);
	ok_eq(data, 1);
	ok_eq(d[0].role, DISK_ROLE_META);
	ok_eq(d[1].role, DISK_ROLE_DATA);
	ok_eq(m.n, 0);
}

TEST(configured_addresses_win)
{
	struct disk_candidate d[2];
	struct disk_roles_cfg cfg = { "00:05.0", "4.0", 0, 0 };
	int meta, data;

	memcpy(d, two, sizeof(d));
	d[0].bytes = d[1].bytes = 64 << 20;
	ok_eq(disk_roles_assign(d, 2, &cfg, &meta, &data, NULL, NULL), 0);
	ok_eq(meta, 1);
	ok_eq(data, 0);
}

TEST(missing_undersized_broken_and_bad_config_are_reported)
{
	struct disk_candidate d[2];
	struct disk_roles_cfg cfg = { 0 };
	struct msgs m = { 0 };
	int meta, data;

	memcpy(d, two, sizeof(d));
	d[0].bytes = 1 << 20;
	ok_eq(disk_roles_assign(d, 1, &cfg, &meta, &data, collect, &m), 2);
	ok(meta < 0 && data < 0);
	ok_eq(m.n, 2);
	ok(strstr(m.last[0], "metadata disk: 00:04.0 is too small: 1048576 bytes") != NULL);
	ok(strstr(m.last[1], "data disk: missing: no virtio-blk device at PCI 00:05.0") != NULL);

	memcpy(d, two, sizeof(d));
	d[1].usable = false;
	memset(&m, 0, sizeof(m));
	ok_eq(disk_roles_assign(d, 2, &cfg, &meta, &data, collect, &m), 1);
	ok(strstr(m.last[0], "did not start") != NULL);

	memcpy(d, two, sizeof(d));
	memset(&m, 0, sizeof(m));
	cfg.meta_addr = "zz";
	cfg.data_addr = "00:04.0";
	ok_eq(disk_roles_assign(d, 2, &cfg, &meta, &data, collect, &m), 1);
	ok_eq(m.n, 1);
	ok(strstr(m.last[0], "bad PCI address 'zz'") != NULL);
	ok_eq(data, 0); /* 16 MiB is exactly the data minimum */
}

TEST(same_disk_cannot_hold_both)
{
	struct disk_candidate d[2];
	struct disk_roles_cfg cfg = { "00:05.0", "00:05.0", 0, 0 };
	struct msgs m = { 0 };
	int meta, data;

	memcpy(d, two, sizeof(d));
	ok_eq(disk_roles_assign(d, 2, &cfg, &meta, &data, collect, &m), 1);
	ok_eq(meta, 1);
	ok(strstr(m.last[0], "already the metadata disk") != NULL);
}

TEST(parse_addresses)
{
	uint8_t b, d, f;

	ok_eq(disk_parse_addr("00:04.0", &b, &d, &f), 0);
	ok(b == 0 && d == 4 && f == 0);
	ok_eq(disk_parse_addr("1f:1a.7", &b, &d, &f), 0);
	ok(b == 0x1f && d == 0x1a && f == 7);
	ok_eq(disk_parse_addr("5.1", &b, &d, &f), 0);
	ok(b == 0 && d == 5 && f == 1);
	ok_eq(disk_parse_addr("00:20.0", &b, &d, &f), -EINVAL);
	ok_eq(disk_parse_addr("00:04.8", &b, &d, &f), -EINVAL);
	ok_eq(disk_parse_addr("00:04", &b, &d, &f), -EINVAL);
	ok_eq(disk_parse_addr("", &b, &d, &f), -EINVAL);
	ok_eq(disk_parse_addr("100:04.0", &b, &d, &f), -EINVAL);
}
