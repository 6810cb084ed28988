/* SPDX-License-Identifier: MIT */
/* The configuration model. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "host/hostdev.h"
#include "tests/support/harness.h"

TEST(names)
{
	ok(cfg_name_valid("vol0"));
	ok(cfg_name_valid("a.b-c_d:e+f"));
	ok(!cfg_name_valid(""));
	ok(!cfg_name_valid(".hidden"));
	ok(!cfg_name_valid("-x"));
	ok(!cfg_name_valid("has space"));
	ok(!cfg_name_valid("slash/no"));
	ok(!cfg_name_valid("quote\""));
	char longname[140];

	/* LVM's limit for names (127): a thin LV's name is a volume's. */
	memset(longname, 'a', sizeof(longname));
	longname[127] = '\0';
	ok(cfg_name_valid(longname));
	longname[127] = 'a';
	longname[128] = '\0';
	ok(!cfg_name_valid(longname));
}

TEST(model_rules)
{
	struct cfg c;

	cfg_init(&c);
	ok_eq(cfg_add_volume(&c, "base", 0, 1 << 20, NULL), 0);
	ok_eq(cfg_add_volume(&c, "base", 1, 1 << 20, NULL), -EEXIST);
	ok_eq(cfg_add_volume(&c, "other", 0, 1 << 20, NULL), -EEXIST);
	ok_eq(cfg_add_volume(&c, "bad size", 1, 1 << 20, NULL), -EINVAL);
	ok_eq(cfg_add_volume(&c, "odd", 1, 1000, NULL), -EINVAL);
	ok_eq(cfg_add_volume(&c, "zero", 1, 0, NULL), -EINVAL);
	ok_eq(cfg_add_volume(&c, "bigid", 1u << 24, 4096, NULL), -EINVAL);
	ok_eq(cfg_add_volume(&c, "snap", 1, 1 << 20, "nosuch"), -EINVAL);
	ok_eq(cfg_add_volume(&c, "snap", 1, 1 << 20, "base"), 0);
	ok_eq(cfg_free_id(&c), 2);
	ok_eq(cfg_add_export(&c, "e", "nosuch", false), -ENOENT);
	ok_eq(cfg_add_export(&c, "e", "base", false), 0);
	ok_eq(cfg_add_export(&c, "e", "snap", true), -EEXIST);
	ok_eq(cfg_remove_volume(&c, "base"), -EBUSY);
	ok_eq(cfg_remove_export(&c, "e"), 0);
	ok_eq(cfg_remove_export(&c, "e"), -ENOENT);
	ok_eq(cfg_remove_volume(&c, "base"), 0);
	/* The snapshot survives its origin and no longer names it. */
	ok(cfg_find_volume(&c, "snap") && !cfg_find_volume(&c, "snap")->origin[0]);
	ok_eq(cfg_remove_volume(&c, "base"), -ENOENT);
	cfg_free(&c);
}

/*
 * 10,000 volumes and 4,096 exports: every lookup (hashed past 16 entries) agrees with the
 * entries through adds, removals (which drop the cache), renames and copies, and the first
 * free id is the gap a removal left. Quick because each lookup is O(1): a scan per lookup
 * would make this loop O(n^2).
 */
TEST(many_volumes_lookups)
{
	enum { N = 10000, E = CFG_MAX_EXPORTS };
	char name[32];
	struct cfg c, d;

	ok(CFG_MAX_VOLUMES >= N && CFG_MAX_EXPORTS >= 4096);
	cfg_init(&c);
	for (unsigned i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "v%u", i);
		if (!ok_eq(cfg_add_volume(&c, name, i, 1 << 20, i ? "v0" : NULL), 0))
			break;
	}
	ok_eq(cfg_add_volume(&c, "v5000", N, 1 << 20, NULL), -EEXIST);
	ok_eq(cfg_add_volume(&c, "new", 5000, 1 << 20, NULL), -EEXIST);
	for (unsigned i = 0; i < N; i += 7) {
		snprintf(name, sizeof(name), "v%u", i);
		ok(cfg_find_volume(&c, name) && cfg_find_volume(&c, name)->id == i);
		ok(cfg_find_volume_id(&c, i) && !strcmp(cfg_find_volume_id(&c, i)->name, name));
	}
	ok_eq(cfg_free_id(&c), N);
	for (unsigned i = 0; i < E; i++) {
		snprintf(name, sizeof(name), "v%u", i);
		if (!ok_eq(cfg_add_export(&c, name, name, false), 0))
			break;
	}
	ok_eq(cfg_add_export(&c, "v9999", "v9999", false), -ENOSPC);
	ok(cfg_find_export(&c, "v4095") && !cfg_find_export(&c, "v4096"));
	/* A removal in the middle: lookups still right, the id is free again. */
	ok_eq(cfg_remove_volume(&c, "v7000"), 0);
	ok(!cfg_find_volume(&c, "v7000") && !cfg_find_volume_id(&c, 7000));
	ok(cfg_find_volume(&c, "v9999") && cfg_find_volume(&c, "v9999")->id == 9999);
	ok_eq(cfg_free_id(&c), 7000);
	ok_eq(cfg_remove_export(&c, "v100"), 0);
	ok(!cfg_find_export(&c, "v100") && cfg_find_export(&c, "v4000"));
	/* A rename moves the exports and the snapshots' origins with it. */
	ok_eq(cfg_rename_volume(&c, "v0", "base"), 0);
	ok_eq(cfg_rename_volume(&c, "v1", "base"), -EEXIST);
	ok(!cfg_find_volume(&c, "v0") && cfg_find_volume(&c, "base")->id == 0);
	ok(!strcmp(cfg_find_volume(&c, "v9")->origin, "base"));
	ok(!strcmp(cfg_find_export(&c, "v0")->volume, "base"));
	ok_eq(cfg_copy(&d, &c), 0);
	ok(cfg_find_volume(&d, "v9999") && cfg_find_volume_id(&d, 42) &&
	   cfg_find_export(&d, "v4095") && !cfg_find_volume(&d, "v7000"));
	cfg_free(&d);
	cfg_free(&c);
}
