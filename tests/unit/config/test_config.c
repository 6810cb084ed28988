/* SPDX-License-Identifier: MIT */
/* The configuration model, its text form, and the transaction-tied two-slot store. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/store.h"
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
	char longname[80];

	memset(longname, 'a', sizeof(longname));
	longname[63] = '\0';
	ok(cfg_name_valid(longname));
	longname[63] = 'a';
	longname[64] = '\0';
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

static bool same(const struct cfg *a, const struct cfg *b)
{
	if (a->nvols != b->nvols || a->nexps != b->nexps)
		return false;
	for (size_t i = 0; i < a->nvols; i++) {
		const struct cfg_volume *v = cfg_find_volume(b, a->vols[i].name);

		if (!v || v->id != a->vols[i].id || v->size != a->vols[i].size ||
		    strcmp(v->origin, a->vols[i].origin))
			return false;
	}
	for (size_t i = 0; i < a->nexps; i++)
		if (strcmp(a->exps[i].name, b->exps[i].name) ||
		    strcmp(a->exps[i].volume, b->exps[i].volume) ||
		    a->exps[i].read_only != b->exps[i].read_only)
			return false;
	return true;
}

TEST(text_round_trip_with_a_deep_snapshot_chain)
{
	struct cfg c, d;
	char name[32], prev[32] = "";
	char err[128];
	char *text;
	size_t len;

	cfg_init(&c);
	/* Added deepest-first in the array order after a shuffle-like swap, so the writer has
	 * to order origins before snapshots itself. */
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "v%d", i);
		ok_eq(cfg_add_volume(&c, name, (uint32_t)i, (uint64_t)(i + 1) * 4096,
				     i ? prev : NULL),
		      0);
		memcpy(prev, name, sizeof(prev));
	}
	for (size_t i = 0; i < c.nvols / 2; i++) {
		struct cfg_volume t = c.vols[i];

		c.vols[i] = c.vols[c.nvols - 1 - i];
		c.vols[c.nvols - 1 - i] = t;
	}
	ok_eq(cfg_add_export(&c, "first", "v0", false), 0);
	ok_eq(cfg_add_export(&c, "snap", "v199", true), 0);
	if (!ok_eq(cfg_format(&c, &text, &len), 0))
		return;
	ok_eq(strlen(text), len);
	if (!ok_eq(cfg_parse(text, len, &d, err, sizeof(err)), 0))
		fail("parse: %s", err);
	ok(same(&c, &d));
	/* Export order is kept: the first is the default export. */
	ok(d.nexps == 2 && !strcmp(d.exps[0].name, "first"));
	free(text);
	cfg_free(&c);
	cfg_free(&d);
}

static int parse_err(const char *text, char *err, size_t errlen)
{
	struct cfg c;
	int rc = cfg_parse(text, strlen(text), &c, err, errlen);

	if (!rc)
		cfg_free(&c);
	return rc;
}

TEST(bad_text_is_refused_with_the_line)
{
	static const struct {
		const char *text, *msg;
	} cases[] = {
		{ "volume a id=0 size=4096\nvolume b id=x size=4096\n", "line 2: bad thin id 'x'" },
		{ "volume a id=0 size=4095\n", "line 1: bad size '4095'" },
		{ "volume a id=0\n", "needs id= and size=" },
		{ "volume a id=16777216 size=4096\n", "bad thin id" },
		{ "volume a id=0 size=4096 colour=red\n", "unknown volume attribute" },
		{ "volume .a id=0 size=4096\n", "bad volume name" },
		{ "volume a id=0 size=4096\nvolume a id=1 size=4096\n", "used twice" },
		{ "volume a id=0 size=4096\nvolume b id=0 size=4096\n", "used twice" },
		{ "volume b id=1 size=4096 origin=a\nvolume a id=0 size=4096\n", "origin 'a'" },
		{ "export e volume=nosuch\n", "no volume 'nosuch'" },
		{ "export e\n", "needs volume=" },
		{ "frobnicate\n", "line 1: unknown item 'frobnicate'" },
		{ "volume a id=0 size=99999999999999999999999\n", "bad size" },
		{ "volume a id=0 size=4096 a b c d e f g h i\n", "too many words" },
	};
	char err[160];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = parse_err(cases[i].text, err, sizeof(err));

		if (!ok_eq(rc, -EINVAL) || !ok(strstr(err, cases[i].msg) != NULL))
			fail("case %zu: rc %d, message '%s'", i, rc, err);
	}
	/* Comments, blank lines and CRLF are fine. */
	ok_eq(parse_err("# c\n\r\n  \nvolume a id=0 size=4096\r\n", err, sizeof(err)), 0);
	/* A NUL in the text is refused, not silently cut. */
	struct cfg c;

	ok_eq(cfg_parse("volume a id=0 size=4096\n\0x", 26, &c, err, sizeof(err)), -EINVAL);
}

TEST(random_bytes_never_crash_the_parser)
{
	uint64_t seed = test_seed();
	char buf[600], err[128];

	for (int round = 0; round < 3000; round++) {
		size_t n = test_rand(&seed) % sizeof(buf);
		struct cfg c;

		for (size_t i = 0; i < n; i++) {
			static const char alphabet[] =
			    "volume export id=size=origin=ro 0123ab\n\t#";
			uint64_t r = test_rand(&seed);

			buf[i] = (r & 3) ? alphabet[r % (sizeof(alphabet) - 1)] : (char)(r >> 8);
		}
		if (!cfg_parse(buf, n, &c, err, sizeof(err)))
			cfg_free(&c);
	}
	ok(true);
}

/* ---- The store -------------------------------------------------------------------------- */

static struct cfg one_volume(const char *name, uint32_t id)
{
	struct cfg c;

	cfg_init(&c);
	cfg_add_volume(&c, name, id, 1 << 20, NULL);
	return c;
}

TEST(store_follows_the_pool_transaction_id)
{
	struct blkdev *dev;
	struct cfg_store st;
	struct cfg a = one_volume("a", 0), b = one_volume("b", 1), got;
	char err[160];

	if (!ok_eq(memdisk_create(64, 4096, &dev), 0))
		return;
	ok_eq(cfg_store_init(&st, dev, 40, 24), 0);
	ok_eq(cfg_store_load(&st, 0, &got, err, sizeof(err)), -ENODATA);

	/* Transaction 1: a. */
	ok_eq(cfg_store_save(&st, &a, 1), 0);
	cfg_store_committed(&st);
	ok_eq(cfg_store_load(&st, 1, &got, err, sizeof(err)), 0);
	ok(cfg_find_volume(&got, "a"));
	cfg_free(&got);

	/* Saved for 2 but the pool never committed 2 (crash): still a at 1. */
	ok_eq(cfg_store_save(&st, &b, 2), 0);
	ok_eq(cfg_store_load(&st, 1, &got, err, sizeof(err)), 0);
	ok(cfg_find_volume(&got, "a") && !cfg_find_volume(&got, "b"));
	cfg_free(&got);
	/* ...or the pool did commit 2: b. */
	ok_eq(cfg_store_load(&st, 2, &got, err, sizeof(err)), 0);
	ok(cfg_find_volume(&got, "b") && !cfg_find_volume(&got, "a"));
	cfg_free(&got);

	/* A pool at an id nothing was written for: a clear error naming both. */
	ok_eq(cfg_store_load(&st, 7, &got, err, sizeof(err)), -ESTALE);
	ok(strstr(err, "the pool is at 7") != NULL);

	/* Retrying a failed transaction does not overwrite the committed slot. */
	ok_eq(cfg_store_load(&st, 1, &got, err, sizeof(err)), 0);
	cfg_free(&got);
	ok_eq(cfg_store_save(&st, &b, 2), 0);
	ok_eq(cfg_store_save(&st, &b, 2), 0);
	ok_eq(cfg_store_load(&st, 1, &got, err, sizeof(err)), 0);
	ok(cfg_find_volume(&got, "a"));
	cfg_free(&got);

	ok_eq(cfg_store_wipe(&st), 0);
	ok_eq(cfg_store_load(&st, 1, &got, err, sizeof(err)), -ENODATA);
	cfg_free(&a);
	cfg_free(&b);
	blkdev_destroy(dev);
}

TEST(store_survives_torn_saves)
{
	struct cfg a = one_volume("a", 0), b = one_volume("b", 1), got;
	char name[40];

	/* Several sectors of text, so a write torn at a sector boundary can split it. */
	for (uint32_t i = 2; i < 60; i++) {
		snprintf(name, sizeof(name), "a-rather-long-volume-name-%u", i);
		cfg_add_volume(&b, name, i, 1 << 20, NULL);
	}
	uint64_t seed = test_seed();
	char err[160];

	for (int cut = 0; cut < 40; cut++) {
		struct blkdev *mem, *crash;
		struct cfg_store st;

		if (!ok_eq(memdisk_create(64, 512, &mem), 0) ||
		    !ok_eq(crashdev_create(mem, &crash), 0))
			return;
		ok_eq(cfg_store_init(&st, crash, 0, 32), 0);
		ok_eq(cfg_store_save(&st, &a, 5), 0);
		cfg_store_committed(&st);
		/* The save for 6 loses power before its flush: its write is kept, dropped or torn. */
		crashdev_cut_at(crash, 2);
		cfg_store_save(&st, &b, 6);
		crashdev_power_cut(crash, seed + (uint64_t)cut);
		crashdev_revive(crash);
		ok_eq(cfg_store_init(&st, crash, 0, 32), 0);
		/* The committed configuration is intact whatever happened to the other slot. */
		if (!ok_eq(cfg_store_load(&st, 5, &got, err, sizeof(err)), 0))
			fail("cut %d: %s", cut, err);
		else
			ok(cfg_find_volume(&got, "a") != NULL);
		cfg_free(&got);
		/* The interrupted one is either whole or absent, never a damaged text. */
		int rc = cfg_store_load(&st, 6, &got, err, sizeof(err));

		if (rc == 0)
			ok(cfg_find_volume(&got, "b") && !cfg_find_volume(&got, "a"));
		else if (!ok_eq(rc, -ESTALE))
			fail("cut %d: load(6) gave %d: %s", cut, rc, err);
		cfg_free(&got);
		blkdev_destroy(crash);
		blkdev_destroy(mem);
	}
	cfg_free(&a);
	cfg_free(&b);
}

TEST(store_refuses_what_does_not_fit)
{
	struct blkdev *dev;
	struct cfg_store st;
	struct cfg big;
	char name[32];

	if (!ok_eq(memdisk_create(16, 4096, &dev), 0))
		return;
	ok_eq(cfg_store_init(&st, dev, 0, 1), -EINVAL);
	ok_eq(cfg_store_init(&st, dev, 10, 8), -EINVAL);
	ok_eq(cfg_store_init(&st, dev, 14, 2), 0);
	cfg_init(&big);
	for (uint32_t i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "volume-number-%u", i);
		cfg_add_volume(&big, name, i, 1ull << 40, NULL);
	}
	ok_eq(cfg_store_save(&st, &big, 1), -ENOSPC);
	cfg_free(&big);
	blkdev_destroy(dev);
}
