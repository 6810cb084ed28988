/* SPDX-License-Identifier: MIT */
/*
 * QEMU's fw_cfg device through its legacy I/O ports (0x510 selector, 0x511 data): how tests
 * pass strings to the firmware (-fw_cfg name=opt/thinbox/KEY,string=VALUE). Plain port I/O,
 * usable before and after ExitBootServices.
 */
#ifndef BOOT_FWCFG_H
#define BOOT_FWCFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when the fw_cfg signature "QEMU" answers. */
bool fwcfg_present(void);

struct fwcfg_file {
	uint32_t size;
	uint16_t select;
	char name[56]; /* NUL-terminated */
};

/*
 * Call @fn for each file in the fw_cfg directory, stopping early when it returns non-zero
 * (that value is returned). 0 after the last file, -ENODEV without fw_cfg, -EIO for a corrupt
 * directory. The directory is read as one stream, so @fn must not access fw_cfg itself: it
 * notes the files it wants and the caller reads them afterwards.
 */
int fwcfg_for_each(int (*fn)(const struct fwcfg_file *f, void *arg), void *arg);
/* Copy the first @len bytes of the item @select into @buf. */
void fwcfg_read(uint16_t select, void *buf, size_t len);

#endif
