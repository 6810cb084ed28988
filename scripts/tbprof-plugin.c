/* SPDX-License-Identifier: MIT */
/*
 * A QEMU TCG plugin for scripts/tbprof: how many guest instructions each translation block ran.
 *
 * Every block translated gets a counter that an inline add (no callback: cheap) bumps each time
 * the block runs; at exit, every block that ran is written to the file named by the `out`
 * argument as "vaddr instructions-per-run runs". A block translated twice (flushed and
 * retranslated) has two entries; the script adds them up. Built by scripts/tbprof against the
 * plugin header of Debian's QEMU source (API version 1, QEMU 7.2).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

struct block {
	uint64_t vaddr;
	uint64_t runs;
	uint32_t insns;
};

/* Blocks in chunks that never move: the inline add keeps a pointer to each counter. */
#define CHUNK 65536

struct chunk {
	struct chunk *next;
	unsigned used;
	struct block b[CHUNK];
};

static struct chunk *chunks;
static char out_path[4096];

static struct block *block_new(void)
{
	if (!chunks || chunks->used == CHUNK) {
		struct chunk *c = calloc(1, sizeof(*c));

		if (!c)
			abort();
		c->next = chunks;
		chunks = c;
	}
	return &chunks->b[chunks->used++];
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	struct block *b = block_new();

	(void)id;
	b->vaddr = qemu_plugin_tb_vaddr(tb);
	b->insns = (uint32_t)qemu_plugin_tb_n_insns(tb);
	qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->runs, 1);
}

static void dump_counts(qemu_plugin_id_t id, void *p)
{
	FILE *f = fopen(out_path, "w");

	(void)id;
	(void)p;
	if (!f)
		return;
	for (struct chunk *c = chunks; c; c = c->next)
		for (unsigned i = 0; i < c->used; i++)
			if (c->b[i].runs)
				fprintf(f, "%" PRIx64 " %u %" PRIu64 "\n", c->b[i].vaddr,
					c->b[i].insns, c->b[i].runs);
	fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
					   char **argv)
{
	(void)info;
	for (int i = 0; i < argc; i++)
		if (strncmp(argv[i], "out=", 4) == 0)
			snprintf(out_path, sizeof(out_path), "%s", argv[i] + 4);
	if (!out_path[0]) {
		fprintf(stderr, "tbprof-plugin: no out=FILE argument\n");
		return -1;
	}
	qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
	qemu_plugin_register_atexit_cb(id, dump_counts, NULL);
	return 0;
}
