/* SPDX-License-Identifier: MIT */
/*
 * Configuration inputs gathered before ExitBootServices and kept, raw, for the config layer:
 *   - QEMU fw_cfg files named opt/thinbox/KEY (tests pass switches this way), and
 *   - the text of \thinbox.cfg on the ESP we were booted from, if present.
 * Nothing here parses the configuration; boot/efi_main.c hands it on.
 */
#ifndef BOOT_BOOTCFG_H
#define BOOT_BOOTCFG_H

#include <stddef.h>

#define BOOTCFG_FWCFG_PREFIX "opt/thinbox/"
#define BOOTCFG_MAX_ITEMS    32	   /* fw_cfg items kept; more are ignored */
#define BOOTCFG_MAX_VALUE    65536 /* longer fw_cfg values are ignored */

struct bootcfg_item {
	const char *key;   /* without the opt/thinbox/ prefix */
	const char *value; /* NUL-terminated; may contain NULs before value + len */
	size_t len;
};

/*
 * Read every opt/thinbox/ fw_cfg item into memory from @alloc (which must return memory that
 * stays ours after ExitBootServices). 0 (also without fw_cfg), or -ENOMEM.
 */
int bootcfg_load_fwcfg(void *(*alloc)(size_t len));
/* Keep @text (@len bytes plus a NUL, owned by the caller for good) as \thinbox.cfg. */
void bootcfg_set_file(const char *text, size_t len);

/* The value of fw_cfg item opt/thinbox/@key, or NULL. */
const char *bootcfg_get(const char *key);
/* The @idx'th fw_cfg item, or NULL past the last. */
const struct bootcfg_item *bootcfg_item(unsigned idx);
/* The text of \thinbox.cfg (NUL-terminated) and its length, or NULL when there was none. */
const char *bootcfg_file(size_t *len);

#endif
