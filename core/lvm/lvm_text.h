/* SPDX-License-Identifier: MIT */
/*
 * lvm's metadata text (the config-tree syntax lvm2 shares with lvm.conf; docs/lvm2-format.md
 * §6): a bounded parser into a small tree, the tree API the VG layer reads and builds with,
 * and an emitter.
 *
 * Grammar accepted:
 *   items   := { NAME '{' items '}' | NAME '=' value }
 *   value   := INT | FLOAT | STRING | '[' [ scalar { [','] scalar } ] ']'
 *   NAME    := a bare word, or a quoted string (section names in lvm's files may be quoted)
 * INT is [+-]digits, 64-bit signed; a leading 0 makes it octal, as lvm's strtoll(..., 0)
 * reads it ("010" is 8). FLOAT is digits with one '.', kept as its text. A bare word that
 * only starts like a number ("2disk") is a word. STRING is "..."
 * with the escapes \" and \\ (any other backslash is refused: lvm never writes one), '...'
 * taken literally, or a bare word. '#' starts a comment to the end of the line; a NUL byte
 * ends the input. A key may appear twice in a section; lookups return the first.
 *
 * Every parse is bounded: the text length, the nesting depth of sections and the number of
 * nodes are limited (struct lvm_text_limits; NULL takes the defaults below), and a bad input
 * gives -EINVAL with "line N: what" in @why. Nothing here crashes on any byte sequence.
 */
#ifndef CORE_LVM_LVM_TEXT_H
#define CORE_LVM_LVM_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lvm_node_type {
	LVM_NODE_SECTION,
	LVM_NODE_INT,
	LVM_NODE_FLOAT, /* str holds the number's text */
	LVM_NODE_STR,
	LVM_NODE_ARRAY, /* children are unnamed INT / FLOAT / STR nodes */
};

/* Every node, key and string belongs to its tree (freed with it, never alone). */
struct lvm_node {
	enum lvm_node_type type;
	uint32_t key_hash;   /* hash_str(key) (core/base/hash.h): lvm_find() compares it first */
	char *key;	     /* NULL for array elements and the root */
	union {		     /* by type: 56 bytes a node, not 72 (~146,000 at 10,000 LVs) */
		int64_t num; /* LVM_NODE_INT */
		char *str;   /* LVM_NODE_FLOAT and LVM_NODE_STR (NULL only after -ENOMEM) */
	};
	struct lvm_node *child; /* first member of a section or element of an array */
	struct lvm_node *last;	/* last one, for appending */
	struct lvm_node *next;	/* next sibling */
	unsigned line;		/* where it was parsed (0 when built) */
};

struct lvm_text_limits {
	size_t max_len;	    /* bytes of text */
	unsigned max_depth; /* sections inside sections (the root's members are depth 1) */
	unsigned max_nodes; /* sections, assignments and array elements together */
};

/*
 * Room for the largest copy the appliance reads back (LVM_PV_MAX_TEXT: an area of 32 MiB, far
 * beyond lvm's default 1 MiB one) and its nodes: a thin LV is about 20 of them, so a VG of
 * LVM_VG_MAX_LVS LVs fits.
 */
#define LVM_TEXT_DEFAULT_MAX_LEN   (16u * 1024u * 1024u)
#define LVM_TEXT_DEFAULT_MAX_DEPTH 16u
#define LVM_TEXT_DEFAULT_MAX_NODES (1024u * 1024u)

struct lvm_tree;

/*
 * Parse @len bytes of @text (or up to its first NUL). 0 and *out, or -EINVAL (message in
 * @why, which may be NULL) or -ENOMEM.
 */
int lvm_text_parse(const char *text, size_t len, const struct lvm_text_limits *limits,
		   struct lvm_tree **out, char *why, size_t why_len);

/* An empty tree to build into; NULL limits take the defaults. 0, or -ENOMEM. */
int lvm_tree_create(const struct lvm_text_limits *limits, struct lvm_tree **out);
void lvm_tree_free(struct lvm_tree *t);
/* The root: an unnamed section holding the top-level items. */
struct lvm_node *lvm_tree_root(struct lvm_tree *t);

/*
 * Builders: append to @parent (a section, or an array for @key == NULL, which only scalars
 * may join). -EINVAL for a key that is not a bare word (or NULL in a section, non-NULL in
 * an array), a section key in an array, or a string with a NUL; -E2BIG past max_nodes;
 * -ENOMEM. @out, when not NULL, receives the new node.
 */
int lvm_add_section(struct lvm_tree *t, struct lvm_node *parent, const char *key,
		    struct lvm_node **out);
int lvm_add_array(struct lvm_tree *t, struct lvm_node *parent, const char *key,
		  struct lvm_node **out);
int lvm_add_int(struct lvm_tree *t, struct lvm_node *parent, const char *key, int64_t v);
int lvm_add_str(struct lvm_tree *t, struct lvm_node *parent, const char *key, const char *s);

/* The first member of @sec named @key, any type; NULL if none. */
const struct lvm_node *lvm_find(const struct lvm_node *sec, const char *key);
/* Typed lookups: 0, -ENOENT when absent, -EINVAL when of another type. */
int lvm_get_int(const struct lvm_node *sec, const char *key, int64_t *v);
int lvm_get_str(const struct lvm_node *sec, const char *key, const char **s);
int lvm_get_section(const struct lvm_node *sec, const char *key, const struct lvm_node **out);
int lvm_get_array(const struct lvm_node *sec, const char *key, const struct lvm_node **out);
/* Number of elements of an array or members of a section. */
unsigned lvm_node_count(const struct lvm_node *n);

/*
 * Write @t as text: sections as "name {" ... "}", assignments as "key = value", arrays on
 * one line, one item per line, no indentation (as lvm's on-disk copies). *out is a
 * NUL-terminated malloc()ed string of *len bytes (NUL not counted). 0, -E2BIG when longer
 * than the tree's max_len or nested deeper than LVM_TEXT_EMIT_MAX_DEPTH, or -ENOMEM.
 */
#define LVM_TEXT_EMIT_MAX_DEPTH 64u
int lvm_text_emit(const struct lvm_tree *t, char **out, size_t *len);

/* True when @s can be written without quotes as a name (section or key). */
bool lvm_text_bare_word(const char *s);

#endif
