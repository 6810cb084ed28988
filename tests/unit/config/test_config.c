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
