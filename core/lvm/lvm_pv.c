/* SPDX-License-Identifier: MIT */
/*
 * PV label, metadata-area header and circular buffer (contracts in lvm_pv.h). Every
 * structure is parsed from a local copy of its sector with explicit bounds; nothing from
 * the disk is trusted to size a buffer before it was checked against the area.
 */
#include "core/lvm/lvm_pv.h"
#include "core/lvm/lvm_vg.h"
#include "core/base/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int why_set(int rc, char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int why_set(int rc, char *why, size_t why_len, const char *fmt, ...)
{
	va_list ap;

	if (why && why_len) {
		va_start(ap, fmt);
		vsnprintf(why, why_len, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static const char *dname(const struct blkdev *dev)
{
	return dev->name ? dev->name : "disk";
}

static uint64_t dev_bytes(const struct blkdev *dev)
{
	return dev->nr_blocks * dev->block_size;
}

/* Byte-granular I/O over whole blocks: partial blocks are read, patched and written back. */
static int dev_io(struct blkdev *dev, uint64_t off, void *buf, size_t len, bool write)
{
	uint32_t bs = dev->block_size;
	uint8_t *p = buf, *bounce = NULL;
	int rc = 0;

	if (off > dev_bytes(dev) || len > dev_bytes(dev) - off)
		return -EINVAL;
	while (len && !rc) {
		uint64_t blk = off / bs;
		size_t in = (size_t)(off % bs);

		if (!in && len >= bs) {
			/* Whole blocks straight from / to the caller's buffer, at most 1 MiB. */
			uint32_t n = (uint32_t)MIN(len / bs, (1u << 20) / bs);

			rc = write ? blkdev_write(dev, blk, n, p) : blkdev_read(dev, blk, n, p);
			off += (uint64_t)n * bs;
			p += (size_t)n * bs;
			len -= (size_t)n * bs;
			continue;
		}
		if (!bounce && !(bounce = malloc(bs)))
			return -ENOMEM;
		size_t n = MIN(len, bs - in);

		rc = blkdev_read(dev, blk, 1, bounce);
		if (!rc && write) {
			memcpy(bounce + in, p, n);
			rc = blkdev_write(dev, blk, 1, bounce);
		} else if (!rc) {
			memcpy(p, bounce + in, n);
		}
		off += n;
		p += n;
		len -= n;
	}
	free(bounce);
	return rc;
}

/* ---- label ----------------------------------------------------------------------------- */

static bool id_chars_ok(const char *id)
{
	char tmp[LVM_ID_LEN + 1];

	memcpy(tmp, id, LVM_ID_LEN);
	tmp[LVM_ID_LEN] = 0;
	return strlen(tmp) == LVM_ID_LEN && lvm_id_parse(tmp, tmp);
}

/* Parse the PV header at @off of @sec; 0 or -EINVAL. */
static int parse_pv_header(const uint8_t *sec, uint32_t off, struct lvm_pv_label *l)
{
	uint32_t p = off + (uint32_t)sizeof(struct lvm_pv_header);
	unsigned list = 0;

	if (off < sizeof(struct lvm_label_header) ||
	    off > LVM_SECTOR - sizeof(struct lvm_pv_header))
		return -EINVAL;
	if (!id_chars_ok((const char *)sec + off))
		return -EINVAL;
	memcpy(l->id, sec + off, LVM_ID_LEN);
	l->id[LVM_ID_LEN] = 0;
	l->device_size = get_le64(sec + off + LVM_ID_LEN);
	/* Two lists (data areas, metadata areas), each ended by a zero offset inside the sector. */
	for (list = 0; list < 2; list++) {
		bool first = true;

		for (;;) {
			uint64_t o, s;

			if (p + sizeof(struct lvm_disk_locn) > LVM_SECTOR)
				return -EINVAL;
			o = get_le64(sec + p);
			s = get_le64(sec + p + 8);
			p += sizeof(struct lvm_disk_locn);
			if (!o)
				break;
			if (first && list == 0)
				l->pe_start = o;
			if (first && list == 1) {
				l->mda_offset = o;
				l->mda_size = s;
			}
			first = false;
		}
	}
	/* The extension is absent on PVs written by old lvm versions. */
	if (p + sizeof(struct lvm_pv_header_extension) <= LVM_SECTOR) {
		l->ext_version = get_le32(sec + p);
		l->ext_flags = get_le32(sec + p + 4);
	}
	return 0;
}

int lvm_pv_read_label(struct blkdev *dev, struct lvm_pv_label *out, char *why, size_t why_len)
{
	uint8_t buf[LVM_LABEL_SCAN_SECTORS * LVM_SECTOR];
	int rc, bad = 0;

	if (dev_bytes(dev) < sizeof(buf))
		return why_set(-ENODATA, why, why_len, "%s: too small for an LVM label",
			       dname(dev));
	rc = dev_io(dev, 0, buf, sizeof(buf), false);
	if (rc)
		return why_set(rc, why, why_len, "%s: reading the label sectors failed",
			       dname(dev));
	for (unsigned i = 0; i < LVM_LABEL_SCAN_SECTORS; i++) {
		const uint8_t *sec = buf + i * LVM_SECTOR;
		const struct lvm_label_header *h = (const void *)sec;

		if (memcmp(h->id, LVM_LABEL_ID, 8))
			continue;
		/* lvm ignores a label that does not say where it is, or with a bad checksum. */
		if (get_le64(sec + 8) != i ||
		    get_le32(sec + 16) != lvm_crc(LVM_CRC_INITIAL, sec + LVM_LABEL_CRC_START,
						  LVM_SECTOR - LVM_LABEL_CRC_START)) {
			bad = -EILSEQ;
			continue;
		}
		if (memcmp(h->type, LVM_LABEL_TYPE, 8)) {
			bad = bad ? bad : -EINVAL;
			continue;
		}
		memset(out, 0, sizeof(*out));
		out->sector = i;
		if (parse_pv_header(sec, get_le32(sec + 20), out))
			return why_set(-EINVAL, why, why_len, "%s: bad PV header in sector %u",
				       dname(dev), i);
		if (!out->pe_start)
			return why_set(-EINVAL, why, why_len, "%s: PV header has no data area",
				       dname(dev));
		return 0;
	}
	if (bad == -EILSEQ)
		return why_set(-EILSEQ, why, why_len, "%s: LVM label with a bad checksum or sector",
			       dname(dev));
	if (bad)
		return why_set(-EINVAL, why, why_len, "%s: label of another type than LVM2 001",
			       dname(dev));
	return why_set(-ENODATA, why, why_len, "%s: no LVM label in sectors 0-3", dname(dev));
}

/* ---- mda header ------------------------------------------------------------------------ */

static void slot_get(const uint8_t *h, unsigned n, struct lvm_mda_slot *s)
{
	const uint8_t *p = h + LVM_MDA_SLOT_OFFSET(n);

	s->offset = get_le64(p);
	s->size = get_le64(p + 8);
	s->crc = get_le32(p + 16);
	s->flags = get_le32(p + 20);
}

static void slot_put(uint8_t *h, unsigned n, const struct lvm_mda_slot *s)
{
	uint8_t *p = h + LVM_MDA_SLOT_OFFSET(n);

	put_le64(p, s->offset);
	put_le64(p + 8, s->size);
	put_le32(p + 16, s->crc);
	put_le32(p + 20, s->flags);
}

int lvm_mda_read(struct blkdev *dev, const struct lvm_pv_label *l, struct lvm_mda_state *out,
		 char *why, size_t why_len)
{
	uint8_t h[LVM_MDA_HEADER_SIZE];
	int rc;

	if (!l->mda_offset)
		return why_set(-ENODATA, why, why_len, "%s: PV has no metadata area", dname(dev));
	if (l->mda_size < 2 * LVM_MDA_HEADER_SIZE || l->mda_offset > dev_bytes(dev) ||
	    l->mda_size > dev_bytes(dev) - l->mda_offset)
		return why_set(-EINVAL, why, why_len,
			       "%s: metadata area %llu+%llu is outside the device", dname(dev),
			       (unsigned long long)l->mda_offset, (unsigned long long)l->mda_size);
	rc = dev_io(dev, l->mda_offset, h, sizeof(h), false);
	if (rc)
		return why_set(rc, why, why_len, "%s: reading the metadata area header failed",
			       dname(dev));
	if (get_le32(h) !=
	    lvm_crc(LVM_CRC_INITIAL, h + LVM_MDA_CRC_START, sizeof(h) - LVM_MDA_CRC_START))
		return why_set(-EILSEQ, why, why_len, "%s: metadata area header checksum mismatch",
			       dname(dev));
	if (memcmp(h + 4, LVM_MDA_MAGIC, 16) || get_le32(h + 20) != LVM_MDA_VERSION ||
	    get_le64(h + 24) != l->mda_offset || get_le64(h + 32) != l->mda_size)
		return why_set(-EINVAL, why, why_len,
			       "%s: metadata area header has a wrong magic, version, start or "
			       "size",
			       dname(dev));
	out->start = l->mda_offset;
	out->size = l->mda_size;
	slot_get(h, LVM_MDA_SLOT_COMMITTED, &out->slot[0]);
	slot_get(h, LVM_MDA_SLOT_PRECOMMIT, &out->slot[1]);
	return 0;
}

static int mda_write(struct blkdev *dev, const struct lvm_mda_state *m)
{
	uint8_t h[LVM_MDA_HEADER_SIZE] = { 0 };

	memcpy(h + 4, LVM_MDA_MAGIC, 16);
	put_le32(h + 20, LVM_MDA_VERSION);
	put_le64(h + 24, m->start);
	put_le64(h + 32, m->size);
	slot_put(h, LVM_MDA_SLOT_COMMITTED, &m->slot[0]);
	slot_put(h, LVM_MDA_SLOT_PRECOMMIT, &m->slot[1]);
	put_le32(h, lvm_crc(LVM_CRC_INITIAL, h + LVM_MDA_CRC_START, sizeof(h) - LVM_MDA_CRC_START));
	/* One sector: a torn write leaves either the old or the new header (or a bad CRC). */
	return dev_io(dev, m->start, h, sizeof(h), true);
}

/* ---- format ---------------------------------------------------------------------------- */

int lvm_pv_format(struct blkdev *dev, const struct lvm_pv_opts *o, char *why, size_t why_len)
{
	uint8_t sec[LVM_SECTOR] = { 0 }, old[LVM_SECTOR];
	uint64_t mda_off = o->mda_offset ? o->mda_offset : LVM_DEFAULT_MDA_OFFSET;
	uint64_t mda_size = o->mda_size ? o->mda_size : LVM_DEFAULT_MDA_SIZE;
	uint64_t pe_start = (o->pe_start ? o->pe_start : LVM_DEFAULT_PE_START) * LVM_SECTOR;
	char id[LVM_ID_LEN + 1];
	struct lvm_mda_state m = { .start = mda_off, .size = mda_size };
	uint32_t p;
	int rc;

	if (!o->id || !lvm_id_parse(o->id, id))
		return why_set(-EINVAL, why, why_len, "%s: bad PV id", dname(dev));
	if (mda_off < LVM_LABEL_SCAN_SECTORS * LVM_SECTOR || mda_off % LVM_SECTOR ||
	    mda_size % LVM_SECTOR || !lvm_mda_max_text(mda_size) || mda_off + mda_size > pe_start ||
	    pe_start >= dev_bytes(dev))
		return why_set(-EINVAL, why, why_len,
			       "%s: metadata area %llu+%llu and first extent at %llu do not fit a "
			       "%llu-byte device",
			       dname(dev), (unsigned long long)mda_off,
			       (unsigned long long)mda_size, (unsigned long long)pe_start,
			       (unsigned long long)dev_bytes(dev));
	/* Label header, PV header, one data area, one metadata area, the extension. */
	memcpy(sec, LVM_LABEL_ID, 8);
	put_le64(sec + 8, LVM_LABEL_SECTOR);
	put_le32(sec + 20, LVM_PV_HEADER_OFFSET);
	memcpy(sec + 24, LVM_LABEL_TYPE, 8);
	p = LVM_PV_HEADER_OFFSET;
	memcpy(sec + p, id, LVM_ID_LEN);
	put_le64(sec + p + LVM_ID_LEN, dev_bytes(dev));
	p += sizeof(struct lvm_pv_header);
	put_le64(sec + p, pe_start); /* size 0: to the end of the device */
	p += 2 * sizeof(struct lvm_disk_locn);
	put_le64(sec + p, mda_off);
	put_le64(sec + p + 8, mda_size);
	p += 2 * sizeof(struct lvm_disk_locn);
	put_le32(sec + p, LVM_PV_EXT_VERSION);
	put_le32(sec + p + 4, o->in_vg ? LVM_PV_EXT_USED : 0);
	/* The bootloader-area list is empty: its terminator is already zero. */
	put_le32(sec + 16, lvm_crc(LVM_CRC_INITIAL, sec + LVM_LABEL_CRC_START,
				   LVM_SECTOR - LVM_LABEL_CRC_START));
	/* lvm takes the first valid label of sectors 0..3: no other may remain. */
	for (unsigned i = 0; i < LVM_LABEL_SCAN_SECTORS; i++) {
		if (i == LVM_LABEL_SECTOR)
			continue;
		rc = dev_io(dev, (uint64_t)i * LVM_SECTOR, old, sizeof(old), false);
		if (!rc && !memcmp(old, LVM_LABEL_ID, 8)) {
			memset(old, 0, sizeof(old));
			rc = dev_io(dev, (uint64_t)i * LVM_SECTOR, old, sizeof(old), true);
		}
		if (rc)
			return why_set(rc, why, why_len, "%s: clearing sector %u failed",
				       dname(dev), i);
	}
	/* The area first and durable: a label must never point at an area not yet written. */
	rc = mda_write(dev, &m);
	if (!rc)
		rc = blkdev_flush(dev);
	if (!rc)
		rc = dev_io(dev, LVM_LABEL_SECTOR * LVM_SECTOR, sec, sizeof(sec), true);
	if (!rc)
		rc = blkdev_flush(dev);
	if (rc)
		return why_set(rc, why, why_len, "%s: writing the PV label failed", dname(dev));
	return 0;
}

/* ---- metadata text --------------------------------------------------------------------- */

static int read_state(struct blkdev *dev, struct lvm_pv_label *l, struct lvm_mda_state *m,
		      char *why, size_t why_len)
{
	int rc = lvm_pv_read_label(dev, l, why, why_len);

	return rc ? rc : lvm_mda_read(dev, l, m, why, why_len);
}

/* A slot's copy lies in the buffer [512, size) and, wrapped, does not run into itself. */
static bool slot_ok(const struct lvm_mda_state *m, const struct lvm_mda_slot *s)
{
	uint64_t room = m->size - LVM_MDA_HEADER_SIZE;

	return s->offset >= LVM_MDA_HEADER_SIZE && s->offset < m->size && s->size &&
	       s->size <= room;
}

int lvm_pv_read_text(struct blkdev *dev, char **text, size_t *len, char *why, size_t why_len)
{
	struct lvm_pv_label l;
	struct lvm_mda_state m;
	const struct lvm_mda_slot *s = &m.slot[LVM_MDA_SLOT_COMMITTED];
	uint64_t first;
	char *t;
	size_t name;
	char vgname[LVM_NAME_MAX + 1];
	int rc = read_state(dev, &l, &m, why, why_len);

	if (rc)
		return rc;
	if (!s->offset && !s->size)
		return why_set(-ENODATA, why, why_len, "%s: PV holds no metadata yet", dname(dev));
	if (s->flags & LVM_RAW_LOCN_IGNORED)
		return why_set(-ENODATA, why, why_len, "%s: metadata area is marked ignored",
			       dname(dev));
	if (!slot_ok(&m, s))
		return why_set(-EINVAL, why, why_len,
			       "%s: committed copy %llu+%llu lies outside the metadata area",
			       dname(dev), (unsigned long long)s->offset,
			       (unsigned long long)s->size);
	if (s->size > LVM_PV_MAX_TEXT)
		return why_set(-EFBIG, why, why_len, "%s: metadata copy of %llu bytes is too large",
			       dname(dev), (unsigned long long)s->size);
	t = malloc((size_t)s->size + 1);
	if (!t)
		return -ENOMEM;
	first = MIN(s->size, m.size - s->offset);
	rc = dev_io(dev, m.start + s->offset, t, (size_t)first, false);
	if (!rc && first < s->size)
		rc = dev_io(dev, m.start + LVM_MDA_HEADER_SIZE, t + first,
			    (size_t)(s->size - first), false);
	if (rc) {
		free(t);
		return why_set(rc, why, why_len, "%s: reading the metadata copy failed",
			       dname(dev));
	}
	t[s->size] = 0;
	if (lvm_crc(LVM_CRC_INITIAL, t, (size_t)s->size) != s->crc) {
		free(t);
		return why_set(-EILSEQ, why, why_len, "%s: metadata copy checksum mismatch",
			       dname(dev));
	}
	/* The text ends at its NUL (the last byte of the copy, as lvm writes it). */
	*len = strlen(t);
	if (*len == s->size) {
		free(t);
		return why_set(-EINVAL, why, why_len, "%s: metadata copy is not NUL terminated",
			       dname(dev));
	}
	/* lvm rejects a copy that does not start with a VG name. */
	name = strcspn(t, " \t\r\n{");
	if (name <= LVM_NAME_MAX) {
		memcpy(vgname, t, name);
		vgname[name] = 0;
	}
	if (name > LVM_NAME_MAX || !lvm_name_valid(vgname)) {
		free(t);
		return why_set(-EINVAL, why, why_len,
			       "%s: metadata copy does not start with a VG name", dname(dev));
	}
	*text = t;
	return 0;
}

int lvm_pv_precommit(struct blkdev *dev, const char *text, size_t len, char *why, size_t why_len)
{
	struct lvm_pv_label l;
	struct lvm_mda_state m;
	const struct lvm_mda_slot *c = &m.slot[LVM_MDA_SLOT_COMMITTED];
	struct lvm_mda_slot n = { 0 };
	uint64_t off, padded, first;
	uint8_t *buf;
	int rc = read_state(dev, &l, &m, why, why_len);

	if (rc)
		return rc;
	if (memchr(text, 0, len))
		return why_set(-EINVAL, why, why_len, "metadata text holds a NUL byte");
	n.size = (uint64_t)len + 1;
	if (n.size > lvm_mda_max_text(m.size))
		return why_set(-ENOSPC, why, why_len,
			       "%s: metadata text of %zu bytes exceeds the %llu a copy may use",
			       dname(dev), len, (unsigned long long)lvm_mda_max_text(m.size) - 1);
	/* After the committed copy's last byte (its wrapped tail when it wraps). */
	off = LVM_MDA_HEADER_SIZE;
	if (c->size && slot_ok(&m, c)) {
		off = c->offset + c->size;
		if (off > m.size)
			off = off - m.size + LVM_MDA_HEADER_SIZE;
		off = ALIGN_UP(off, (uint64_t)LVM_SECTOR);
		if (off + LVM_SECTOR > m.size)
			off = LVM_MDA_HEADER_SIZE;
	}
	n.offset = off;
	padded = ALIGN_UP(n.size, (uint64_t)LVM_SECTOR);
	buf = calloc(1, (size_t)padded);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, text, len);
	n.crc = lvm_crc(LVM_CRC_INITIAL, buf, (size_t)n.size);
	first = MIN(padded, m.size - off);
	rc = dev_io(dev, m.start + off, buf, (size_t)first, true);
	if (!rc && first < padded)
		rc = dev_io(dev, m.start + LVM_MDA_HEADER_SIZE, buf + first,
			    (size_t)(padded - first), true);
	free(buf);
	/* The text must be durable before any header points at it. */
	if (!rc)
		rc = blkdev_flush(dev);
	if (!rc) {
		m.slot[LVM_MDA_SLOT_PRECOMMIT] = n;
		rc = mda_write(dev, &m);
	}
	if (!rc)
		rc = blkdev_flush(dev);
	if (rc)
		return why_set(rc, why, why_len, "%s: writing the metadata copy failed",
			       dname(dev));
	return 0;
}

int lvm_pv_commit(struct blkdev *dev, char *why, size_t why_len)
{
	struct lvm_pv_label l;
	struct lvm_mda_state m;
	int rc = read_state(dev, &l, &m, why, why_len);

	if (rc)
		return rc;
	if (!m.slot[LVM_MDA_SLOT_PRECOMMIT].size || !slot_ok(&m, &m.slot[LVM_MDA_SLOT_PRECOMMIT]))
		return why_set(-ENODATA, why, why_len, "%s: no precommitted metadata to commit",
			       dname(dev));
	m.slot[LVM_MDA_SLOT_COMMITTED] = m.slot[LVM_MDA_SLOT_PRECOMMIT];
	memset(&m.slot[LVM_MDA_SLOT_PRECOMMIT], 0, sizeof(m.slot[0]));
	rc = mda_write(dev, &m);
	if (!rc)
		rc = blkdev_flush(dev);
	if (rc)
		return why_set(rc, why, why_len, "%s: committing the metadata failed", dname(dev));
	return 0;
}

int lvm_vg_write_text(struct blkdev *const *devs, unsigned n, const char *text, size_t len,
		      char *why, size_t why_len)
{
	int rc = 0;

	for (unsigned i = 0; i < n && !rc; i++)
		rc = lvm_pv_precommit(devs[i], text, len, why, why_len);
	for (unsigned i = 0; i < n && !rc; i++)
		rc = lvm_pv_commit(devs[i], why, why_len);
	return rc;
}
