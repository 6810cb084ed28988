/* SPDX-License-Identifier: MIT */
/*
 * lvm's checksum against its test vectors, and the metadata-text parser and emitter: round
 * trips, lvm's number and string rules, and bad input (each a -EINVAL with a line number,
 * never a crash).
 */
#include "tests/support/lvm_fixture.h"

static int parse(const char *s, struct lvm_tree **t, char *why, size_t why_len)
{
	return lvm_text_parse(s, strlen(s), NULL, t, why, why_len);
}

TEST(crc_vectors)
{
	uint8_t zeros[492] = { 0 };

	ok_eq(lvm_crc(LVM_CRC_INITIAL, "", 0), 0xF597A6CFu);
	ok_eq(lvm_crc(LVM_CRC_INITIAL, "123456789", 9), 0x4991CF02u);
	ok_eq(lvm_crc(LVM_CRC_INITIAL, zeros, sizeof(zeros)), 0x02C81F10u);
	/* In pieces: the first result seeds the second. */
	ok_eq(lvm_crc(lvm_crc(LVM_CRC_INITIAL, "1234", 4), "56789", 5), 0x4991CF02u);
}

TEST(parse_and_lookup)
{
	static const char text[] = "vg0 {\n"
				   "id = \"abc\"   # a comment\n"
				   "seqno = 12\n"
				   "octal = 010\n"
				   "neg = -5\n"
				   "f = 1.5\n"
				   "status = [\"READ\", \"WRITE\" 'x\\y']\n"
				   "empty = []\n"
				   "esc = \"a\\\"b\\\\c\"\n"
				   "bare = word\n"
				   "\"quoted name\" {\n}\n"
				   "}\n"
				   "contents = \"Text Format Volume Group\"\n"
				   "version = 1\n";
	struct lvm_tree *t;
	const struct lvm_node *vg, *a, *sec;
	const char *s;
	int64_t v;
	char why[128];

	if (!ok_eq(parse(text, &t, why, sizeof(why)), 0)) {
		fail("%s", why);
		return;
	}
	vg = lvm_find(lvm_tree_root(t), "vg0");
	ok(vg && vg->type == LVM_NODE_SECTION);
	ok_eq(lvm_get_int(vg, "seqno", &v), 0);
	ok_eq(v, 12);
	ok_eq(lvm_get_int(vg, "octal", &v), 0);
	ok_eq(v, 8);
	ok_eq(lvm_get_int(vg, "neg", &v), 0);
	ok_eq(v, -5);
	ok_eq(lvm_get_int(vg, "id", &v), -EINVAL);
	ok_eq(lvm_get_int(vg, "nothere", &v), -ENOENT);
	ok(lvm_find(vg, "f") && lvm_find(vg, "f")->type == LVM_NODE_FLOAT);
	ok_eq(lvm_get_array(vg, "status", &a), 0);
	ok_eq(lvm_node_count(a), 3);
	ok(!strcmp(a->child->next->next->str, "x\\y")); /* '...' has no escapes */
	ok_eq(lvm_get_array(vg, "empty", &a), 0);
	ok_eq(lvm_node_count(a), 0);
	ok_eq(lvm_get_str(vg, "esc", &s), 0);
	ok(!strcmp(s, "a\"b\\c"));
	ok_eq(lvm_get_str(vg, "bare", &s), 0);
	ok(!strcmp(s, "word"));
	ok_eq(lvm_get_section(vg, "quoted name", &sec), 0);
	ok_eq(lvm_get_int(lvm_tree_root(t), "version", &v), 0);
	ok_eq(v, 1);
	lvm_tree_free(t);
}

/* parse -> emit -> parse -> emit gives the same text the second time. */
TEST(round_trip)
{
	static const char text[] = "vg0 { id = \"x\" a = [1, -2, \"s\\\"q\"] b { c = 'lit\\' } "
				   "big = 9223372036854775807 small = -9223372036854775808 }\n"
				   "x = 1.25 name = \"two words\"\n";
	struct lvm_tree *t, *t2;
	char *out, *out2;
	size_t len, len2;
	char why[128];

	if (!ok_eq(parse(text, &t, why, sizeof(why)), 0) || !ok_eq(lvm_text_emit(t, &out, &len), 0))
		return;
	ok_eq(strlen(out), len);
	if (!ok_eq(parse(out, &t2, why, sizeof(why)), 0)) {
		fail("%s in\n%s", why, out);
		return;
	}
	ok_eq(lvm_text_emit(t2, &out2, &len2), 0);
	ok(len == len2 && !strcmp(out, out2));
	ok(strstr(out, "big = 9223372036854775807\n") != NULL);
	ok(strstr(out, "small = -9223372036854775808\n") != NULL);
	ok(strstr(out, "c = \"lit\\\\\"\n") != NULL);
	ok(strncmp(out, "vg0 {\n", 6) == 0);
	free(out);
	free(out2);
	lvm_tree_free(t);
	lvm_tree_free(t2);
}

TEST(builders)
{
	struct lvm_tree *t;
	struct lvm_node *s, *a;
	char *out;
	size_t len;

	if (!ok_eq(lvm_tree_create(&(struct lvm_text_limits){ .max_nodes = 4 }, &t), 0))
		return;
	ok_eq(lvm_add_section(t, lvm_tree_root(t), "2disk", &s), 0); /* a word, not a number */
	ok_eq(lvm_add_int(t, s, "n", 7), 0);
	ok_eq(lvm_add_array(t, s, "a", &a), 0);
	ok_eq(lvm_add_str(t, a, NULL, "x"), 0);
	ok_eq(lvm_add_str(t, a, NULL, "y"), -E2BIG);
	ok_eq(lvm_add_int(t, s, "bad key", 1), -EINVAL);
	ok_eq(lvm_add_int(t, s, "12", 1), -EINVAL);
	ok_eq(lvm_add_int(t, s, NULL, 1), -EINVAL);
	ok_eq(lvm_add_section(t, a, NULL, NULL), -EINVAL);
	ok_eq(lvm_text_emit(t, &out, &len), 0);
	ok(!strcmp(out, "2disk {\nn = 7\na = [\"x\"]\n}\n"));
	free(out);
	lvm_tree_free(t);
}

static void bad(const char *text, size_t len, const char *expect)
{
	struct lvm_tree *t = NULL;
	char why[160];
	int rc = lvm_text_parse(text, len, NULL, &t, why, sizeof(why));

	if (!ok_eq(rc, -EINVAL)) {
		lvm_tree_free(t);
		return;
	}
	if (!ok(strstr(why, expect) != NULL && !strncmp(why, "line ", 5)))
		fail("message '%s' lacks '%s'", why, expect);
}

TEST(bad_input)
{
	static char deep[4096], huge[4096];
	size_t n = 0;

	bad("vg {\nid = \"abc", 13, "string not terminated");
	bad("vg {\nid = 1\n", 12, "not closed");
	bad("vg {\nid = \n}", 12, "expected a value");
	bad("vg\n", 3, "expected '=' or '{'");
	bad("}", 1, "without a section");
	bad("a = [1, [2]]", 12, "cannot nest");
	bad("a = [1, 2", 9, "not closed");
	bad("a = 99999999999999999999", 24, "out of 64-bit range");
	bad("a = -9223372036854775809", 24, "out of 64-bit range");
	bad("a = 09", 6, "bad octal");
	bad("a = \"x\\n\"", 9, "bad escape");
	bad("a = \"x\\", 7, "not terminated");
	bad("a = \x01", 5, "unexpected byte");
	bad("= 1", 3, "expected a name");
	/* Nesting beyond the limit. */
	for (int i = 0; i < 100; i++)
		n += (size_t)snprintf(deep + n, sizeof(deep) - n, "s%d {\n", i);
	bad(deep, n, "nested deeper");
	/* Too long, too many nodes. */
	memset(huge, 'a', sizeof(huge));
	{
		struct lvm_tree *t;
		char why[128];

		ok_eq(lvm_text_parse(huge, sizeof(huge),
				     &(struct lvm_text_limits){ .max_len = 1000 }, &t, why,
				     sizeof(why)),
		      -EINVAL);
		ok(strstr(why, "longer than") != NULL);
		ok_eq(lvm_text_parse("a=1 b=2 c=3", 11, &(struct lvm_text_limits){ .max_nodes = 2 },
				     &t, why, sizeof(why)),
		      -EINVAL);
		ok(strstr(why, "more than 2 nodes") != NULL);
		/* A NUL ends the input: what follows is not parsed. */
		ok_eq(lvm_text_parse("a = 1\0garbage {", 15, NULL, &t, why, sizeof(why)), 0);
		lvm_tree_free(t);
	}
}

/* Random bytes and random cuts of a valid text: only 0 or -EINVAL, never a crash. */
TEST(random_input)
{
	static const char good[] = "vg { id = \"a\\\"b\" n = [1, \"x\", 2.5] s { k = 'v' } }\n"
				   "contents = \"Text Format Volume Group\" version = 1 # c\n";
	static const char alphabet[] = "{}[]=,\"'\\#\n 0123456789.-+abc\x01";
	uint64_t st = test_seed();
	char buf[256];

	for (int i = 0; i < 20000; i++) {
		struct lvm_tree *t = NULL;
		size_t len = test_rand(&st) % sizeof(buf);
		int rc;

		if (i & 1) {
			for (size_t k = 0; k < len; k++)
				buf[k] = alphabet[test_rand(&st) % (sizeof(alphabet) - 1)];
		} else {
			len = test_rand(&st) % sizeof(good);
			memcpy(buf, good, len);
			if (len)
				buf[test_rand(&st) % len] = alphabet[test_rand(&st) % 30];
		}
		rc = lvm_text_parse(buf, len, NULL, &t, NULL, 0);
		if (!ok(rc == 0 || rc == -EINVAL))
			return;
		if (!rc) {
			char *out;
			size_t olen;

			if (!ok_eq(lvm_text_emit(t, &out, &olen), 0))
				return;
			free(out);
			lvm_tree_free(t);
		}
	}
}

/*
 * The tree's arena (lvm_text.c): 100,000 nodes over many chunks, a string larger than a chunk
 * (its own chunk, between ordinary ones), a string with escapes next to plain ones (the two
 * string paths), all read back intact, and emit -> parse -> emit the same bytes. Under ASan a
 * node or string that outlived its chunk, or a chunk freed twice, shows here.
 */
TEST(arena_many_nodes_and_a_large_string)
{
	enum { N = 50000, BIG = (3u << 20) / 2 };
	size_t cap = (size_t)N * 64 + BIG + 4096, len = 0;
	char *text = malloc(cap), *out = NULL, *out2 = NULL;
	size_t out_len, out2_len;
	struct lvm_tree *t = NULL, *t2 = NULL;
	const struct lvm_node *s, *n;
	const char *v;
	char why[128];
	int64_t x;

	if (!ok(text))
		return;
	len += (size_t)snprintf(text + len, cap - len, "a {\n");
	for (unsigned i = 0; i < N; i++) {
		len += (size_t)snprintf(text + len, cap - len, "k%u = %u\ns%u = \"v%u\"\n", i, i, i,
					i);
		if (i == N / 2) {
			len += (size_t)snprintf(text + len, cap - len, "big = \"");
			memset(text + len, 'x', BIG);
			len += BIG;
			len +=
			    (size_t)snprintf(text + len, cap - len, "\"\nesc = \"q\\\"b\\\\s\"\n");
		}
	}
	len += (size_t)snprintf(text + len, cap - len, "}\n");
	if (!ok_eq(lvm_text_parse(text, len, NULL, &t, why, sizeof(why)), 0)) {
		fail("%s", why);
		free(text);
		return;
	}
	s = lvm_find(lvm_tree_root(t), "a");
	ok_eq(lvm_node_count(s), 2 * N + 2);
	ok_eq(lvm_get_int(s, "k0", &x), 0);
	ok_eq(x, 0);
	ok_eq(lvm_get_int(s, "k49999", &x), 0);
	ok_eq(x, 49999);
	ok_eq(lvm_get_str(s, "s31337", &v), 0);
	ok(v && !strcmp(v, "v31337"));
	ok_eq(lvm_get_str(s, "esc", &v), 0);
	ok(v && !strcmp(v, "q\"b\\s"));
	n = lvm_find(s, "big");
	ok(n && n->type == LVM_NODE_STR && strlen(n->str) == BIG && n->str[0] == 'x' &&
	   n->str[BIG - 1] == 'x');
	/* Keys that are equal but for one character: the hash only filters, strcmp decides. */
	ok(lvm_find(s, "k4999") != lvm_find(s, "k49999"));
	ok_eq(lvm_text_emit(t, &out, &out_len), 0);
	ok_eq(lvm_text_parse(out, out_len, NULL, &t2, why, sizeof(why)), 0);
	if (t2)
		ok_eq(lvm_text_emit(t2, &out2, &out2_len), 0);
	ok(out && out2 && out_len == out2_len && !memcmp(out, out2, out_len));
	free(out);
	free(out2);
	lvm_tree_free(t);
	lvm_tree_free(t2);
	free(text);
}
