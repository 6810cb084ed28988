/* SPDX-License-Identifier: MIT */
/* Two-slot configuration store tied to the pool transaction id; see config/store.h. */
#include "config/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/crc32c.h"
#include "core/base/endian.h"

#define SLOT_MAGIC   "THNBXCFG"
#define SLOT_VERSION 1u
#define HDR_SIZE     sizeof(struct cfg_slot_header)

int cfg_store_init(struct cfg_store *st, struct blkdev *dev, uint64_t first, uint64_t nr_blocks)
{
	memset(st, 0, sizeof(*st));
	if (!dev || !dev->block_size || nr_blocks < 2 || first > dev->nr_blocks ||
	    nr_blocks > dev->nr_blocks - first || (nr_blocks / 2) * dev->block_size < 4096)
		return -EINVAL;
	st->dev = dev;
	st->first = first;
	st->slot_blocks = nr_blocks / 2;
	st->committed_slot = -1;
	st->pending_slot = -1;
	return 0;
}

uint64_t cfg_store_capacity(const struct cfg_store *st)
{
	return st->slot_blocks * st->dev->block_size - HDR_SIZE;
}

static uint32_t header_crc(const uint8_t *hdr)
{
	uint8_t tmp[HDR_SIZE];

	memcpy(tmp, hdr, HDR_SIZE);
	memset(tmp + offsetof(struct cfg_slot_header, header_crc), 0, 4);
	return crc32c(tmp, HDR_SIZE);
}

struct slot {
	bool valid;
	uint64_t generation, trans_id;
	uint32_t length;
	uint8_t *buf; /* the whole slot */
};

/* Read slot @i and check it; a torn or empty slot is simply not valid. */
static int read_slot(struct cfg_store *st, int i, struct slot *s)
{
	size_t bytes = st->slot_blocks * st->dev->block_size;
	const uint8_t *h;
	int rc;

	memset(s, 0, sizeof(*s));
	s->buf = malloc(bytes);
	if (!s->buf)
		return -ENOMEM;
	rc = blkdev_read(st->dev, st->first + (uint64_t)i * st->slot_blocks,
			 (uint32_t)st->slot_blocks, s->buf);
	if (rc)
		return rc;
	h = s->buf;
	if (memcmp(h, SLOT_MAGIC, 8) || get_le32(h + 8) != SLOT_VERSION ||
	    get_le32(h + offsetof(struct cfg_slot_header, header_crc)) != header_crc(h))
		return 0;
	s->length = get_le32(h + offsetof(struct cfg_slot_header, length));
	if (s->length > bytes - HDR_SIZE ||
	    get_le32(h + offsetof(struct cfg_slot_header, text_crc)) !=
		crc32c(h + HDR_SIZE, s->length))
		return 0;
	s->generation = get_le64(h + offsetof(struct cfg_slot_header, generation));
	s->trans_id = get_le64(h + offsetof(struct cfg_slot_header, transaction_id));
	s->valid = true;
	return 0;
}

int cfg_store_load(struct cfg_store *st, uint64_t trans_id, struct cfg *out, char *err,
		   size_t errlen)
{
	struct slot s[2];
	int best = -1, rc;

	cfg_init(out);
	if (err && errlen)
		err[0] = '\0';
	rc = read_slot(st, 0, &s[0]);
	if (!rc)
		rc = read_slot(st, 1, &s[1]);
	else
		s[1].buf = NULL;
	if (rc)
		goto out;
	for (int i = 0; i < 2; i++) {
		if (!s[i].valid)
			continue;
		if (s[i].generation > st->generation)
			st->generation = s[i].generation;
		if (s[i].trans_id == trans_id && (best < 0 || s[i].generation > s[best].generation))
			best = i;
	}
	if (best < 0) {
		if (!s[0].valid && !s[1].valid) {
			rc = -ENODATA;
		} else {
			rc = -ESTALE;
			if (err && errlen)
				snprintf(err, errlen,
					 "configuration is for pool transaction %s%" PRIu64
					 "%s%s%" PRIu64 ", the pool is at %" PRIu64,
					 s[0].valid ? "" : "-", s[0].valid ? s[0].trans_id : 0,
					 " / ", s[1].valid ? "" : "-",
					 s[1].valid ? s[1].trans_id : 0, trans_id);
		}
		goto out;
	}
	rc = cfg_parse((const char *)s[best].buf + HDR_SIZE, s[best].length, out, err, errlen);
	if (!rc) {
		st->committed_slot = best;
		st->pending_slot = -1;
	}
out:
	free(s[0].buf);
	free(s[1].buf);
	return rc;
}

int cfg_store_save(struct cfg_store *st, const struct cfg *c, uint64_t trans_id)
{
	size_t bytes = st->slot_blocks * st->dev->block_size;
	int slot = st->committed_slot == 0 ? 1 : 0;
	uint8_t *buf;
	char *text;
	size_t len;
	int rc;

	rc = cfg_format(c, &text, &len);
	if (rc)
		return rc;
	if (len > cfg_store_capacity(st)) {
		free(text);
		return -ENOSPC;
	}
	buf = calloc(1, bytes);
	if (!buf) {
		free(text);
		return -ENOMEM;
	}
	memcpy(buf, SLOT_MAGIC, 8);
	put_le32(buf + 8, SLOT_VERSION);
	put_le32(buf + offsetof(struct cfg_slot_header, length), (uint32_t)len);
	put_le64(buf + offsetof(struct cfg_slot_header, generation), st->generation + 1);
	put_le64(buf + offsetof(struct cfg_slot_header, transaction_id), trans_id);
	put_le32(buf + offsetof(struct cfg_slot_header, text_crc), crc32c(text, len));
	memcpy(buf + HDR_SIZE, text, len);
	put_le32(buf + offsetof(struct cfg_slot_header, header_crc), header_crc(buf));
	free(text);

	rc = blkdev_write(st->dev, st->first + (uint64_t)slot * st->slot_blocks,
			  (uint32_t)st->slot_blocks, buf);
	free(buf);
	/* The flush is what lets the pool commit next: the pool must never reach a transaction
	 * id whose configuration is not durable. */
	if (!rc)
		rc = blkdev_flush(st->dev);
	if (rc)
		return rc;
	st->generation++;
	st->pending_slot = slot;
	return 0;
}

void cfg_store_committed(struct cfg_store *st)
{
	if (st->pending_slot >= 0) {
		st->committed_slot = st->pending_slot;
		st->pending_slot = -1;
	}
}

int cfg_store_wipe(struct cfg_store *st)
{
	size_t bytes = st->slot_blocks * st->dev->block_size;
	uint8_t *buf = calloc(1, bytes);
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (int i = 0; i < 2 && !rc; i++)
		rc = blkdev_write(st->dev, st->first + (uint64_t)i * st->slot_blocks,
				  (uint32_t)st->slot_blocks, buf);
	free(buf);
	if (!rc)
		rc = blkdev_flush(st->dev);
	if (!rc) {
		st->committed_slot = -1;
		st->pending_slot = -1;
	}
	return rc;
}
