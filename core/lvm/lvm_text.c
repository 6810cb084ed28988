/* SPDX-License-Identifier: MIT */
/*
 * The metadata-text parser and emitter (grammar and limits in lvm_text.h). The parser is
 * recursive descent over a one-token lexer; recursion only happens per nested section, so
 * max_depth bounds the stack.
 *
 * A tree's nodes, keys and strings live in its arena: a few large chunks, freed together by
 * lvm_tree_free(). A copy of 10,001 thin LVs is ~146,000 nodes; with a malloc() for every
 * node, key and token, parsing it took 233 ms under TCG and freeing it 30 ms
 * (docs/performance.md, "Boot at 10,000 volumes"). Nothing in a tree is ever freed alone.
 */
#include "core/lvm/lvm_text.h"
#include "core/base/hash.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Chunks grow from 64 KiB by doubling up to 1 MiB; a larger request gets its own. */
#define ARENA_FIRST (64u * 1024u)
#define ARENA_MAX   (1024u * 1024u)

struct chunk {
	struct chunk *next;
	size_t used, cap;
	max_align_t data[]; /* cap bytes */
};

struct lvm_tree {
	struct lvm_node root;
	struct lvm_text_limits lim;
	unsigned nodes;
	struct chunk *chunks; /* the newest first: allocations come from it */
};

/* ---- tree ------------------------------------------------------------------------------ */

/* @n bytes aligned to @a (a power of two) from @t's arena; NULL when out of memory. */
static void *arena_alloc(struct lvm_tree *t, size_t n, size_t a)
{
	struct chunk *c = t->chunks;
	size_t at;

	if (c) {
		at = (c->used + a - 1) & ~(a - 1);
		if (at <= c->cap && n <= c->cap - at) {
			c->used = at + n;
			return (char *)c->data + at;
		}
	}
	size_t cap = c ? (c->cap < ARENA_MAX ? c->cap * 2 : ARENA_MAX) : ARENA_FIRST;

	if (cap < n)
		cap = n;
	c = malloc(sizeof(*c) + cap);
	if (!c)
		return NULL;
	c->cap = cap;
	c->used = n;
	c->next = t->chunks;
	t->chunks = c;
	return c->data;
}

/* @n bytes of @s and a NUL, in @t's arena (unaligned: strings are most of its bytes). */
static char *arena_str(struct lvm_tree *t, const char *s, size_t n)
{
	struct chunk *c = t->chunks;
	char *d;

	/* Every token's text comes here: the common case without arena_alloc()'s call. */
	if (c && c->cap - c->used > n) {
		d = (char *)c->data + c->used;
		c->used += n + 1;
	} else {
		d = arena_alloc(t, n + 1, 1);
	}

	if (d) {
		memcpy(d, s, n);
		d[n] = 0;
	}
	return d;
}

static void limits_or_default(const struct lvm_text_limits *in, struct lvm_text_limits *out)
{
	out->max_len = in && in->max_len ? in->max_len : LVM_TEXT_DEFAULT_MAX_LEN;
	out->max_depth = in && in->max_depth ? in->max_depth : LVM_TEXT_DEFAULT_MAX_DEPTH;
	out->max_nodes = in && in->max_nodes ? in->max_nodes : LVM_TEXT_DEFAULT_MAX_NODES;
}

int lvm_tree_create(const struct lvm_text_limits *limits, struct lvm_tree **out)
{
	struct lvm_tree *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->root.type = LVM_NODE_SECTION;
	limits_or_default(limits, &t->lim);
	*out = t;
	return 0;
}

void lvm_tree_free(struct lvm_tree *t)
{
	if (!t)
		return;
	while (t->chunks) {
		struct chunk *c = t->chunks;

		t->chunks = c->next;
		free(c);
	}
	free(t);
}

struct lvm_node *lvm_tree_root(struct lvm_tree *t)
{
	return &t->root;
}

/* What may appear in a bare word, and what the lexer skips between tokens. */
#define CH_NAME	 0x1u
#define CH_SPACE 0x2u
#define CH_QUOTE 0x4u /* ends or interrupts a quoted string's plain run */

static uint8_t char_class[256];
static bool char_class_ready;

static void char_class_init(void)
{
	for (unsigned c = 0; c < 256; c++) {
		bool name = c > ' ' && c != '#' && c != '=' && c != '{' && c != '}' && c != '[' &&
			    c != ']' && c != ',' && c != '"' && c != '\'' && c != 0x7f;
		bool space = c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
		bool quote = c == '"' || c == '\'' || c == '\\' || c == '\n' || !c;

		/* Not bytes above 0x7f: the rule this table replaced compared a (signed) char
		 * with ' ', so they never were name bytes. */
		char_class[c] = (uint8_t)((name && c < 0x80 ? CH_NAME : 0) |
					  (space ? CH_SPACE : 0) | (quote ? CH_QUOTE : 0));
	}
	char_class_ready = true; /* single-threaded, as lvm_crc()'s table */
}

static bool name_char(char c)
{
	if (!char_class_ready)
		char_class_init();
	return char_class[(uint8_t)c] & CH_NAME;
}

static bool number_shaped(const char *s, size_t n, bool *dot);

bool lvm_text_bare_word(const char *s)
{
	bool dot;

	if (!s || !*s)
		return false;
	for (const char *c = s; *c; c++)
		if (!name_char(*c))
			return false;
	/* A word that looks like a number would be read back as one. */
	return !number_shaped(s, strlen(s), &dot);
}

/* Append a node; @key (NULL, or already in @t's arena) becomes its key as it is. */
static int add_node(struct lvm_tree *t, struct lvm_node *parent, enum lvm_node_type type, char *key,
		    struct lvm_node **out)
{
	struct lvm_node *n;

	if (!parent || (parent->type != LVM_NODE_SECTION && parent->type != LVM_NODE_ARRAY))
		return -EINVAL;
	if (parent->type == LVM_NODE_ARRAY &&
	    (key || type == LVM_NODE_SECTION || type == LVM_NODE_ARRAY))
		return -EINVAL;
	if (parent->type == LVM_NODE_SECTION && !key)
		return -EINVAL;
	if (t->nodes >= t->lim.max_nodes)
		return -E2BIG;
	n = arena_alloc(t, sizeof(*n), _Alignof(struct lvm_node));
	if (!n)
		return -ENOMEM;
	memset(n, 0, sizeof(*n));
	n->type = type;
	n->key = key;
	if (key)
		n->key_hash = hash_str(key);
	if (parent->last)
		parent->last->next = n;
	else
		parent->child = n;
	parent->last = n;
	t->nodes++;
	*out = n;
	return 0;
}

static int add_checked(struct lvm_tree *t, struct lvm_node *parent, enum lvm_node_type type,
		       const char *key, struct lvm_node **out)
{
	struct lvm_node *n;
	char *k = NULL;
	int rc;

	if (key && !lvm_text_bare_word(key))
		return -EINVAL;
	if (key && !(k = arena_str(t, key, strlen(key))))
		return -ENOMEM;
	rc = add_node(t, parent, type, k, &n);
	if (rc)
		return rc;
	if (out)
		*out = n;
	return 0;
}

int lvm_add_section(struct lvm_tree *t, struct lvm_node *parent, const char *key,
		    struct lvm_node **out)
{
	return add_checked(t, parent, LVM_NODE_SECTION, key, out);
}

int lvm_add_array(struct lvm_tree *t, struct lvm_node *parent, const char *key,
		  struct lvm_node **out)
{
	return add_checked(t, parent, LVM_NODE_ARRAY, key, out);
}

int lvm_add_int(struct lvm_tree *t, struct lvm_node *parent, const char *key, int64_t v)
{
	struct lvm_node *n;
	int rc = add_checked(t, parent, LVM_NODE_INT, key, &n);

	if (!rc)
		n->num = v;
	return rc;
}

int lvm_add_str(struct lvm_tree *t, struct lvm_node *parent, const char *key, const char *s)
{
	struct lvm_node *n;
	int rc;

	if (!s)
		return -EINVAL;
	rc = add_checked(t, parent, LVM_NODE_STR, key, &n);
	if (rc)
		return rc;
	n->str = arena_str(t, s, strlen(s));
	return n->str ? 0 : -ENOMEM; /* the node stays, freed with the tree */
}

const struct lvm_node *lvm_find(const struct lvm_node *sec, const char *key)
{
	uint32_t h;

	if (!sec || sec->type != LVM_NODE_SECTION)
		return NULL;
	/* The hashes first: the VG reader asks each LV's section for a dozen keys. */
	h = hash_str(key);
	for (const struct lvm_node *n = sec->child; n; n = n->next)
		if (n->key_hash == h && n->key && !strcmp(n->key, key))
			return n;
	return NULL;
}

static int get_typed(const struct lvm_node *sec, const char *key, enum lvm_node_type type,
		     const struct lvm_node **out)
{
	const struct lvm_node *n = lvm_find(sec, key);

	if (!n)
		return -ENOENT;
	if (n->type != type)
		return -EINVAL;
	*out = n;
	return 0;
}

int lvm_get_int(const struct lvm_node *sec, const char *key, int64_t *v)
{
	const struct lvm_node *n;
	int rc = get_typed(sec, key, LVM_NODE_INT, &n);

	if (!rc)
		*v = n->num;
	return rc;
}

int lvm_get_str(const struct lvm_node *sec, const char *key, const char **s)
{
	const struct lvm_node *n;
	int rc = get_typed(sec, key, LVM_NODE_STR, &n);

	if (!rc)
		*s = n->str;
	return rc;
}

int lvm_get_section(const struct lvm_node *sec, const char *key, const struct lvm_node **out)
{
	return get_typed(sec, key, LVM_NODE_SECTION, out);
}

int lvm_get_array(const struct lvm_node *sec, const char *key, const struct lvm_node **out)
{
	return get_typed(sec, key, LVM_NODE_ARRAY, out);
}

unsigned lvm_node_count(const struct lvm_node *n)
{
	unsigned c = 0;

	for (const struct lvm_node *m = n ? n->child : NULL; m; m = m->next)
		c++;
	return c;
}

/* ---- lexer ----------------------------------------------------------------------------- */

enum tok {
	T_EOF,
	T_LBRACE,
	T_RBRACE,
	T_LBRACKET,
	T_RBRACKET,
	T_COMMA,
	T_EQ,
	T_INT,
	T_FLOAT,
	T_STR,	/* quoted; value in buf */
	T_WORD, /* bare word; value in buf */
};

struct parser {
	const char *p, *end;
	unsigned line;
	struct lvm_tree *t;
	char *why;
	size_t why_len;
	/* the current token */
	enum tok tok;
	unsigned tok_line;
	int64_t num;
	char *buf; /* T_STR / T_WORD / T_FLOAT text, NUL terminated, in the tree's arena */
	size_t buf_len;
};

static int perr(struct parser *ps, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int perr(struct parser *ps, unsigned line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!ps->why || !ps->why_len)
		return -EINVAL;
	n = snprintf(ps->why, ps->why_len, "line %u: ", line);
	if (n >= 0 && (size_t)n < ps->why_len) {
		va_start(ap, fmt);
		vsnprintf(ps->why + n, ps->why_len - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* The token's text goes straight into the tree: keys and values point at it. */
static int set_buf(struct parser *ps, const char *s, size_t n)
{
	ps->buf = arena_str(ps->t, s, n);
	ps->buf_len = n;
	return ps->buf ? 0 : -ENOMEM;
}

/* A quoted string starting at ps->p (the quote). */
static int lex_string(struct parser *ps)
{
	char q = *ps->p++;
	const char *s = ps->p, *c = s;
	size_t n = 0;
	char *d;

	/* lvm's strings (ids, names, tags) hold no escape and no newline: one run up to the
	 * closing quote, copied as it is. Anything else takes the two passes below. */
	while (c < ps->end && !(char_class[(uint8_t)*c] & CH_QUOTE))
		c++;
	if (c < ps->end && *c == q) {
		if (set_buf(ps, s, (size_t)(c - s)))
			return -ENOMEM;
		ps->p = c + 1;
		ps->tok = T_STR;
		return 0;
	}
	/* First pass: find the end and the unescaped length, checking every escape. */
	for (c = s;; c++) {
		if (c >= ps->end || !*c)
			return perr(ps, ps->tok_line, "string not terminated");
		if (*c == q)
			break;
		if (q == '"' && *c == '\\') {
			if (c + 1 >= ps->end || !c[1])
				return perr(ps, ps->line, "string not terminated");
			if (c[1] != '"' && c[1] != '\\')
				return perr(
				    ps, ps->line,
				    "bad escape '\\%c' in string (only \\\" and \\\\ exist)",
				    c[1] >= ' ' && c[1] < 0x7f ? c[1] : '?');
			c++;
		}
		if (*c == '\n')
			ps->line++;
		n++;
	}
	ps->buf = d = arena_alloc(ps->t, n + 1, 1);
	if (!d)
		return -ENOMEM;
	ps->buf_len = n;
	while (*ps->p != q) {
		if (q == '"' && *ps->p == '\\')
			ps->p++;
		*d++ = *ps->p++;
	}
	*d = 0;
	ps->p++;
	ps->tok = T_STR;
	return 0;
}

/* [+-]digits with at most one '.': what lvm reads as a number rather than a word. */
static bool number_shaped(const char *s, size_t n, bool *dot)
{
	size_t i = 0, digits = 0;

	*dot = false;
	if (n && (s[0] == '+' || s[0] == '-'))
		i++;
	for (; i < n; i++) {
		if (s[i] == '.' && !*dot)
			*dot = true;
		else if (s[i] >= '0' && s[i] <= '9')
			digits++;
		else
			return false;
	}
	return digits > 0;
}

/* An integer token s[0..n) (number_shaped, no dot) into ps->num. */
static int lex_int(struct parser *ps, const char *s, size_t n)
{
	const char *c = s, *e = s + n;
	bool neg = false;
	uint64_t v = 0, limit;
	unsigned base = 10;
	int shown = n > 40 ? 40 : (int)n;

	if (*c == '+' || *c == '-')
		neg = *c++ == '-';
	if (*c == '0' && e - c > 1) {
		base = 8; /* what lvm's strtoll(, 0) makes of a leading zero */
		c++;
	}
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; c < e; c++) {
		unsigned d = (unsigned)(*c - '0');

		if (d >= base)
			return perr(ps, ps->line, "bad octal number '%.*s' (leading zero)", shown,
				    s);
		if (v > (limit - d) / base)
			return perr(ps, ps->line, "number '%.*s' out of 64-bit range", shown, s);
		v = v * base + d;
	}
	ps->num = neg ? (int64_t)(0 - v) : (int64_t)v;
	ps->tok = T_INT;
	return 0;
}

static int next(struct parser *ps)
{
	/* A local cursor: through ps, every byte read would reload it (a char may alias it). */
	const char *p = ps->p, *end = ps->end, *s;
	bool dot, shaped;

	for (;;) {
		if (p >= end || !*p) {
			ps->p = p;
			ps->tok = T_EOF;
			ps->tok_line = ps->line;
			return 0;
		}
		if (*p == '\n') {
			ps->line++;
			p++;
		} else if (char_class[(uint8_t)*p] & CH_SPACE) {
			p++;
		} else if (*p == '#') {
			while (p < end && *p && *p != '\n')
				p++;
		} else {
			break;
		}
	}
	ps->tok_line = ps->line;
	ps->p = p + 1;
	switch (*p) {
	case '{':
		ps->tok = T_LBRACE;
		return 0;
	case '}':
		ps->tok = T_RBRACE;
		return 0;
	case '[':
		ps->tok = T_LBRACKET;
		return 0;
	case ']':
		ps->tok = T_RBRACKET;
		return 0;
	case ',':
		ps->tok = T_COMMA;
		return 0;
	case '=':
		ps->tok = T_EQ;
		return 0;
	case '"':
	case '\'':
		ps->p = p;
		return lex_string(ps);
	default:
		break;
	}
	if (!(char_class[(uint8_t)*p] & CH_NAME)) {
		ps->p = p;
		return perr(ps, ps->line, "unexpected byte 0x%02x", (unsigned)(unsigned char)*p);
	}
	for (s = p; p < end && (char_class[(uint8_t)*p] & CH_NAME); p++)
		;
	ps->p = p;
	shaped = number_shaped(s, (size_t)(p - s), &dot);
	if (shaped && !dot)
		return lex_int(ps, s, (size_t)(p - s));
	ps->tok = shaped ? T_FLOAT : T_WORD;
	return set_buf(ps, s, (size_t)(p - s));
}

/* ---- parser ---------------------------------------------------------------------------- */

static int node_err(struct parser *ps, int rc)
{
	if (rc == -E2BIG)
		return perr(ps, ps->tok_line, "more than %u nodes", ps->t->lim.max_nodes);
	return rc;
}

/* The scalar in the current token, appended to @parent under @key (NULL in an array). */
static int scalar(struct parser *ps, struct lvm_node *parent, char *key)
{
	struct lvm_node *n;
	enum lvm_node_type type;
	int rc;

	switch (ps->tok) {
	case T_INT:
		type = LVM_NODE_INT;
		break;
	case T_FLOAT:
		type = LVM_NODE_FLOAT;
		break;
	case T_STR:
	case T_WORD:
		type = LVM_NODE_STR; /* never holds a NUL: a NUL ends the input (next()) */
		break;
	default:
		return perr(ps, ps->tok_line, "expected a value");
	}
	rc = add_node(ps->t, parent, type, key, &n);
	if (rc)
		return node_err(ps, rc);
	n->line = ps->tok_line;
	if (type == LVM_NODE_INT) {
		n->num = ps->num;
	} else {
		n->str = ps->buf; /* already in the tree's arena */
		ps->buf = NULL;
	}
	return next(ps);
}

static int value(struct parser *ps, struct lvm_node *sec, char *key, unsigned line)
{
	struct lvm_node *arr;
	int rc;

	if (ps->tok != T_LBRACKET)
		return scalar(ps, sec, key);
	rc = add_node(ps->t, sec, LVM_NODE_ARRAY, key, &arr);
	if (rc)
		return node_err(ps, rc);
	arr->line = line;
	rc = next(ps);
	while (!rc && ps->tok != T_RBRACKET) {
		if (ps->tok == T_EOF)
			return perr(ps, line, "array '%s' not closed", key);
		if (ps->tok == T_LBRACKET)
			return perr(ps, ps->tok_line, "arrays cannot nest");
		rc = scalar(ps, arr, NULL);
		if (!rc && ps->tok == T_COMMA)
			rc = next(ps);
	}
	return rc ? rc : next(ps);
}

static int items(struct parser *ps, struct lvm_node *sec, unsigned depth, unsigned open_line)
{
	int rc = 0;

	while (!rc) {
		char *key;
		unsigned line = ps->tok_line;

		if (ps->tok == T_EOF) {
			if (depth)
				return perr(ps, open_line, "section '%s' not closed", sec->key);
			return 0;
		}
		if (ps->tok == T_RBRACE) {
			if (!depth)
				return perr(ps, line, "'}' without a section");
			return next(ps);
		}
		if (ps->tok != T_WORD && ps->tok != T_STR)
			return perr(ps, line, "expected a name");
		if (!ps->buf_len)
			return perr(ps, line, "bad name");
		key = ps->buf;
		ps->buf = NULL;
		rc = next(ps);
		if (!rc && ps->tok == T_LBRACE) {
			struct lvm_node *sub;

			if (depth + 1 > ps->t->lim.max_depth)
				rc = perr(ps, line, "sections nested deeper than %u",
					  ps->t->lim.max_depth);
			else
				rc =
				    node_err(ps, add_node(ps->t, sec, LVM_NODE_SECTION, key, &sub));
			if (!rc) {
				sub->line = line;
				rc = next(ps);
			}
			if (!rc)
				rc = items(ps, sub, depth + 1, line);
		} else if (!rc && ps->tok == T_EQ) {
			rc = next(ps);
			if (!rc)
				rc = value(ps, sec, key, line);
		} else if (!rc) {
			rc = perr(ps, line, "expected '=' or '{' after '%.64s'", key);
		}
	}
	return rc;
}

int lvm_text_parse(const char *text, size_t len, const struct lvm_text_limits *limits,
		   struct lvm_tree **out, char *why, size_t why_len)
{
	struct parser ps = { .p = text, .line = 1, .why = why, .why_len = why_len };
	int rc;

	if (!char_class_ready)
		char_class_init();
	if (why && why_len)
		why[0] = 0;
	rc = lvm_tree_create(limits, &ps.t);
	if (rc)
		return rc;
	if (len > ps.t->lim.max_len) {
		/* Only the part before a NUL counts: a buffer may be larger than its text. */
		const char *nul = memchr(text, 0, ps.t->lim.max_len + 1);

		if (!nul) {
			rc = perr(&ps, 1, "text longer than %zu bytes", ps.t->lim.max_len);
			lvm_tree_free(ps.t);
			return rc;
		}
		len = (size_t)(nul - text);
	}
	ps.end = text + len;
	rc = next(&ps);
	if (!rc)
		rc = items(&ps, &ps.t->root, 0, 1);
	if (rc) {
		lvm_tree_free(ps.t);
		return rc;
	}
	*out = ps.t;
	return 0;
}

/* ---- emitter --------------------------------------------------------------------------- */

struct out {
	char *buf;
	size_t len, cap, max;
	int rc;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->rc)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;
		char *b;

		while (cap < o->len + n + 1)
			cap *= 2;
		if (o->len + n > o->max) {
			o->rc = -E2BIG;
			return;
		}
		b = realloc(o->buf, cap);
		if (!b) {
			o->rc = -ENOMEM;
			return;
		}
		o->buf = b;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = 0;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_quoted(struct out *o, const char *s)
{
	put(o, "\"", 1);
	/* Runs without a quote or backslash in one put(), each of those after its escape. */
	for (;;) {
		size_t n = strcspn(s, "\"\\");

		put(o, s, n);
		if (!s[n])
			break;
		put(o, "\\", 1);
		put(o, s + n, 1);
		s += n + 1;
	}
	put(o, "\"", 1);
}

static void put_name(struct out *o, const char *s)
{
	if (lvm_text_bare_word(s))
		puts_(o, s);
	else
		put_quoted(o, s);
}

static void put_scalar(struct out *o, const struct lvm_node *n)
{
	char num[24];

	switch (n->type) {
	case LVM_NODE_INT:
		snprintf(num, sizeof(num), "%lld", (long long)n->num);
		puts_(o, num);
		break;
	case LVM_NODE_FLOAT:
		puts_(o, n->str);
		break;
	default:
		put_quoted(o, n->str ? n->str : "");
		break;
	}
}

int lvm_text_emit(const struct lvm_tree *t, char **out, size_t *len)
{
	struct out o = { .max = t->lim.max_len };
	/* Iterative walk: a stack of open sections, bounded by the depth the builders allow. */
	const struct lvm_node *stack[LVM_TEXT_EMIT_MAX_DEPTH];
	unsigned sp = 0;
	const struct lvm_node *n = t->root.child;

	put(&o, "", 0);
	while (!o.rc) {
		if (!n) {
			if (!sp)
				break;
			puts_(&o, "}\n");
			n = stack[--sp]->next;
			continue;
		}
		put_name(&o, n->key);
		if (n->type == LVM_NODE_SECTION) {
			if (sp == sizeof(stack) / sizeof(stack[0])) {
				o.rc = -E2BIG;
				break;
			}
			puts_(&o, " {\n");
			stack[sp++] = n;
			n = n->child;
			continue;
		}
		puts_(&o, " = ");
		if (n->type == LVM_NODE_ARRAY) {
			puts_(&o, "[");
			for (const struct lvm_node *e = n->child; e; e = e->next) {
				put_scalar(&o, e);
				if (e->next)
					puts_(&o, ", ");
			}
			puts_(&o, "]");
		} else {
			put_scalar(&o, n);
		}
		puts_(&o, "\n");
		n = n->next;
	}
	if (o.rc) {
		free(o.buf);
		return o.rc;
	}
	*out = o.buf;
	*len = o.len;
	return 0;
}
