/* SPDX-License-Identifier: MIT */
/*
 * Storage for the boot-time configuration inputs (see bootcfg.h). Memory comes from the
 * caller's allocator because this runs before the page allocator exists.
 */
#include "boot/bootcfg.h"

#include <errno.h>
#include <string.h>

#include "boot/fwcfg.h"

static struct bootcfg_item *items;
static unsigned nr_items;
static const char *file_text;
static size_t file_len;

struct wanted {
	struct fwcfg_file files[BOOTCFG_MAX_ITEMS];
	unsigned n;
};

static int note_file(const struct fwcfg_file *f, void *arg)
{
	struct wanted *w = arg;
	size_t plen = strlen(BOOTCFG_FWCFG_PREFIX);

	if (strncmp(f->name, BOOTCFG_FWCFG_PREFIX, plen) != 0 || f->name[plen] == '\0')
		return 0;
	if (w->n < BOOTCFG_MAX_ITEMS && f->size <= BOOTCFG_MAX_VALUE)
		w->files[w->n++] = *f;
	return 0;
}

int bootcfg_load_fwcfg(void *(*alloc)(size_t len))
{
	/* 32 x 64 bytes: small enough for the stack of the boot path. */
	struct wanted w = { .n = 0 };
	size_t plen = strlen(BOOTCFG_FWCFG_PREFIX);
	int rc;

	rc = fwcfg_for_each(note_file, &w);
	if (rc == -ENODEV || w.n == 0)
		return 0;
	if (rc)
		return rc;
	items = alloc(w.n * sizeof(*items));
	if (!items)
		return -ENOMEM;
	for (unsigned i = 0; i < w.n; i++) {
		const struct fwcfg_file *f = &w.files[i];
		size_t klen = strlen(f->name) - plen;
		char *key = alloc(klen + 1), *val = alloc(f->size + 1);

		if (!key || !val)
			return -ENOMEM;
		memcpy(key, f->name + plen, klen + 1);
		fwcfg_read(f->select, val, f->size);
		val[f->size] = '\0';
		items[i] = (struct bootcfg_item){ .key = key, .value = val, .len = f->size };
		nr_items = i + 1;
	}
	return 0;
}

void bootcfg_set_file(const char *text, size_t len)
{
	file_text = text;
	file_len = len;
}

const char *bootcfg_get(const char *key)
{
	for (unsigned i = 0; i < nr_items; i++) {
		if (strcmp(items[i].key, key) == 0)
			return items[i].value;
	}
	return NULL;
}

const struct bootcfg_item *bootcfg_item(unsigned idx)
{
	return idx < nr_items ? &items[idx] : NULL;
}

const char *bootcfg_file(size_t *len)
{
	if (len)
		*len = file_text ? file_len : 0;
	return file_text;
}
