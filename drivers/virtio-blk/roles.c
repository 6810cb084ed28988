/* SPDX-License-Identifier: MIT */
/* Disk roles by PCI address (see roles.h). */
#include "drivers/virtio-blk/roles.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int hex_field(const char **s, char end, unsigned max, uint8_t *out)
{
	const char *p = *s;
	unsigned v = 0, digits = 0;

	for (; *p && *p != end; p++, digits++) {
		int d;

		if (*p >= '0' && *p <= '9')
			d = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			d = *p - 'a' + 10;
		else if (*p >= 'A' && *p <= 'F')
			d = *p - 'A' + 10;
		else
			return -EINVAL;
		v = v * 16 + (unsigned)d;
		if (v > max || digits >= 2)
			return -EINVAL;
	}
	if (digits == 0 || *p != end)
		return -EINVAL;
	*out = (uint8_t)v;
	*s = *p ? p + 1 : p;
	return 0;
}

int disk_parse_addr(const char *s, uint8_t *bus, uint8_t *dev, uint8_t *fn)
{
	const char *colon;
	uint8_t b = 0, d, f;

	if (!s)
		return -EINVAL;
	for (colon = s; *colon && *colon != ':'; colon++)
		;
	if (*colon == ':' && hex_field(&s, ':', 0xff, &b))
		return -EINVAL;
	if (hex_field(&s, '.', 0x1f, &d) || hex_field(&s, '\0', 7, &f))
		return -EINVAL;
	*bus = b;
	*dev = d;
	*fn = f;
	return 0;
}

const char *disk_role_name(enum disk_role r)
{
	switch (r) {
	case DISK_ROLE_META:
		return "metadata";
	case DISK_ROLE_DATA:
		return "data";
	default:
		return "-";
	}
}

static void say(void (*msg)(void *, const char *), void *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(void (*msg)(void *, const char *), void *ctx, const char *fmt, ...)
{
	char line[160];
	va_list ap;

	if (!msg)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	msg(ctx, line);
}

/* The disk for one role: its index, or -1 with the reason said. */
static int pick(struct disk_candidate *disks, size_t n, enum disk_role role, const char *addr,
		const char *fallback, uint64_t min, void (*msg)(void *, const char *), void *ctx)
{
	const char *name = disk_role_name(role);
	uint8_t b, d, f;

	if (!addr)
		addr = fallback;
	if (disk_parse_addr(addr, &b, &d, &f)) {
		say(msg, ctx, "%s disk: bad PCI address '%s' in the configuration (want BB:DD.F)",
		    name, addr);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		struct disk_candidate *c = &disks[i];

		if (c->bus != b || c->dev != d || c->fn != f)
			continue;
		if (c->role != DISK_ROLE_NONE) {
			say(msg, ctx, "%s disk: %02x:%02x.%x is already the %s disk", name, b, d, f,
			    disk_role_name(c->role));
			return -1;
		}
		if (!c->usable) {
			say(msg, ctx,
			    "%s disk: the virtio-blk device at %02x:%02x.%x did not start", name, b,
			    d, f);
			return -1;
		}
		if (c->bytes < min) {
			say(msg, ctx,
			    "%s disk: %02x:%02x.%x is too small: %llu bytes, needs at least %llu",
			    name, b, d, f, (unsigned long long)c->bytes, (unsigned long long)min);
			return -1;
		}
		c->role = role;
		return (int)i;
	}
	say(msg, ctx, "%s disk: missing: no virtio-blk device at PCI %02x:%02x.%x", name, b, d, f);
	return -1;
}

int disk_roles_assign(struct disk_candidate *disks, size_t n, const struct disk_roles_cfg *cfg,
		      int *meta, int *data, void (*msg)(void *ctx, const char *line), void *ctx)
{
	for (size_t i = 0; i < n; i++)
		disks[i].role = DISK_ROLE_NONE;
	*meta = pick(disks, n, DISK_ROLE_META, cfg->meta_addr, DISK_META_DEFAULT,
		     cfg->meta_min ? cfg->meta_min : DISK_META_MIN, msg, ctx);
	*data = pick(disks, n, DISK_ROLE_DATA, cfg->data_addr, DISK_DATA_DEFAULT,
		     cfg->data_min ? cfg->data_min : DISK_DATA_MIN, msg, ctx);
	return (*meta < 0) + (*data < 0);
}
