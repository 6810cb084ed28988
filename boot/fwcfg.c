/* SPDX-License-Identifier: MIT */
/*
 * fw_cfg over I/O ports, as described in QEMU's docs/specs/fw_cfg.txt: write a 16-bit
 * selector to 0x510, then read the item's bytes one at a time from 0x511. The file directory
 * (selector 0x19) is a big-endian count followed by 64-byte entries.
 */
#include "boot/fwcfg.h"

#include <errno.h>
#include <string.h>

#include "boot/io.h"

#define FWCFG_PORT_SEL	0x510
#define FWCFG_PORT_DATA 0x511

#define FWCFG_SIGNATURE 0x0000
#define FWCFG_FILE_DIR	0x0019

/* A directory that claims more entries than this is treated as corrupt. */
#define FWCFG_MAX_FILES 4096

static void fwcfg_select(uint16_t sel)
{
	outw(FWCFG_PORT_SEL, sel);
}

static void read_bytes(void *buf, size_t len)
{
	uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		p[i] = inb(FWCFG_PORT_DATA);
}

bool fwcfg_present(void)
{
	char sig[4];

	fwcfg_select(FWCFG_SIGNATURE);
	read_bytes(sig, sizeof(sig));
	return memcmp(sig, "QEMU", 4) == 0;
}

void fwcfg_read(uint16_t select, void *buf, size_t len)
{
	fwcfg_select(select);
	read_bytes(buf, len);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int fwcfg_for_each(int (*fn)(const struct fwcfg_file *f, void *arg), void *arg)
{
	uint8_t raw[64];
	uint32_t count;

	if (!fwcfg_present())
		return -ENODEV;
	fwcfg_select(FWCFG_FILE_DIR);
	read_bytes(raw, 4);
	count = be32(raw);
	if (count > FWCFG_MAX_FILES)
		return -EIO;

	for (uint32_t i = 0; i < count; i++) {
		struct fwcfg_file f;
		int rc;

		/* Entry: be32 size, be16 select, be16 reserved, char name[56]. */
		read_bytes(raw, 64);
		f.size = be32(raw);
		f.select = (uint16_t)(raw[4] << 8 | raw[5]);
		memcpy(f.name, raw + 8, 55);
		f.name[55] = '\0';
		rc = fn(&f, arg);
		if (rc)
			return rc;
	}
	return 0;
}
