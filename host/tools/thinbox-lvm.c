/* SPDX-License-Identifier: MIT */
/*
 * build/host/thinbox-lvm: the LVM2 format library (core/lvm/) on files, for tests against
 * lvm2 itself (tests/lvm/format.t, tests/guest/lvm_activate.t).
 *
 *   thinbox-lvm demo DISK1 DISK2   create DISK1 (64 MiB) and DISK2 (128 MiB) as the two PVs
 *                                  of VG "appvg": thin pool "pool" (pool_tmeta on DISK1,
 *                                  pool_tdata on DISK2), thin LV "alpha" and its snapshot
 *                                  "alpha-snap", with tags
 *   thinbox-lvm show DISK...       read every PV's committed copy, take the highest seqno,
 *                                  check it, print the VG one line per item (below)
 *   thinbox-lvm text DISK          print the committed metadata text of DISK
 *   thinbox-lvm vg META DATA VOL...
 *                                  create META (16 MiB) and DATA (49 MiB) as a complete VG
 *                                  "thinbox" the way the appliance will: PVs, then our thin
 *                                  pool inside pool0_tmeta (META, extent 0) and pool0_tdata
 *                                  (all of DATA) with the volumes VOL (NAME:MIB, a multiple
 *                                  of 4, or NAME@ORIGIN for a snapshot) written with
 *                                  patterns, then the VG metadata; prints the pool's numbers
 *                                  and "md5 NAME HEX device_id D sectors S [origin O]"
 *   thinbox-lvm pool DISK...       read the VG, open each thin pool read-only on the slices
 *                                  its _tmeta / _tdata LVs name, compare transaction_id and
 *                                  chunk_size with the superblock, run thin_pool_check, print
 *                                  md5 of every thin LV (tests/guest/lvm_activate.t)
 *   thinbox-lvm pending META DATA NAME ID [ORIGIN]
 *                                  leave the VG as the first commit of a thin create does
 *                                  (LV NAME, transaction_id + 1, a pending create message)
 *   thinbox-lvm extract DISK LV OUT
 *                                  copy linear LV LV out of PV file DISK into OUT (the
 *                                  appliance's pool_tmeta, for thin_check / thin_dump)
 *
 * show prints "vg NAME seqno N extent_size S pvs N lvs N", then per PV "pv KEY id ID
 * pe_start S pe_count N", per LV "lv NAME sectors N visible 0|1 type T [pool P] [device_id
 * D] [origin O] [tags a,b]". Exit 0, 1 on a refused or unreadable VG (the reason on
 * stderr), on a pool that fails its check or disagrees with the VG, 2 on bad usage.
 */
#include "core/base/endian.h"
#include "core/blkdev_slice.h"
#include "core/lvm/lvm_disks.h"
#include "core/lvm/lvm_pv.h"
#include "core/lvm/lvm_vg.h"
#include "core/thin/thin_pool.h"
#include "host/hostdev.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ID(c)	    c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c
#define MiB_SECTORS 2048u

static int usage(void)
{
	fprintf(stderr, "usage: thinbox-lvm demo DISK1 DISK2 | show DISK... | text DISK |\n"
			"       vg META DATA NAME:MIB|NAME@ORIGIN... | pool DISK... |\n"
			"       extract DISK LV OUT | pending META DATA NAME ID [ORIGIN]\n");
	return 2;
}

static int build_demo(struct lvm_vg **out)
{
	struct lvm_vg *vg;
	struct lvm_lv *lv;
	struct lvm_seg *s;
	const uint32_t rw = LVM_LV_READ | LVM_LV_WRITE, vis = rw | LVM_LV_VISIBLE;

	if (lvm_vg_create("appvg", "Vq3jXpSbfhwsM6iZ5iDg5XlfVfVKL7z0", LVM_DEFAULT_EXTENT_SIZE,
			  &vg))
		return -1;
	if (lvm_vg_add_pv(vg, "Pa1jXpSbfhwsM6iZ5iDg5XlfVfVKL7z1", 64 * MiB_SECTORS,
			  LVM_DEFAULT_PE_START, NULL) ||
	    lvm_vg_add_pv(vg, "Pb2jXpSbfhwsM6iZ5iDg5XlfVfVKL7z2", 128 * MiB_SECTORS,
			  LVM_DEFAULT_PE_START, NULL) ||
	    lvm_strs_add(&vg->tags, "thinbox"))
		goto fail;
	/* pool: 31 extents of data (all of DISK2), 2 extents of metadata on DISK1. */
	if (lvm_vg_add_lv(vg, "pool", ID("p"), vis, &lv) ||
	    lvm_lv_set_creation(lv, 1700000000, "thinbox") ||
	    lvm_lv_add_seg(lv, LVM_SEG_THIN_POOL, 31, &s))
		goto fail;
	snprintf(s->metadata, sizeof(s->metadata), "pool_tmeta");
	snprintf(s->pool, sizeof(s->pool), "pool_tdata");
	s->transaction_id = 2;
	s->chunk_size = 128;
	s->discards = LVM_DISCARDS_PASSDOWN;
	s->zero_new_blocks = 0;
	if (lvm_vg_add_lv(vg, "alpha", ID("a"), vis, &lv) ||
	    lvm_lv_set_creation(lv, 1700000001, "thinbox") ||
	    lvm_strs_add(&lv->tags, "thinbox.export=alpha") ||
	    lvm_strs_add(&lv->tags, "owner=alice") || lvm_lv_add_seg(lv, LVM_SEG_THIN, 16, &s))
		goto fail;
	snprintf(s->thin_pool, sizeof(s->thin_pool), "pool");
	s->transaction_id = 0;
	s->device_id = 1;
	if (lvm_vg_add_lv(vg, "alpha-snap", ID("s"), vis, &lv) ||
	    lvm_lv_set_creation(lv, 1700000002, "thinbox") ||
	    lvm_strs_add(&lv->tags, "snap/daily") || lvm_lv_add_seg(lv, LVM_SEG_THIN, 16, &s))
		goto fail;
	snprintf(s->thin_pool, sizeof(s->thin_pool), "pool");
	snprintf(s->origin, sizeof(s->origin), "alpha");
	s->transaction_id = 1;
	s->device_id = 2;
	if (lvm_vg_add_lv(vg, "pool_tmeta", ID("m"), rw, &lv) ||
	    lvm_lv_set_creation(lv, 1700000000, "thinbox") ||
	    lvm_lv_add_seg(lv, LVM_SEG_STRIPED, 2, &s))
		goto fail;
	s->pv = 0;
	if (lvm_vg_add_lv(vg, "pool_tdata", ID("d"), rw, &lv) ||
	    lvm_lv_set_creation(lv, 1700000000, "thinbox") ||
	    lvm_lv_add_seg(lv, LVM_SEG_STRIPED, 31, &s))
		goto fail;
	s->pv = 1;
	vg->seqno = 1;
	*out = vg;
	return 0;
fail:
	lvm_vg_free(vg);
	return -1;
}

static int demo(const char *p1, const char *p2)
{
	struct blkdev *d[2] = { NULL, NULL };
	struct lvm_vg *vg = NULL;
	char *text = NULL, why[256] = "";
	size_t len;
	int rc = build_demo(&vg);

	if (rc)
		goto out;
	rc = filedisk_open(p1, 512, true, 64 * MiB_SECTORS, &d[0]);
	if (!rc)
		rc = filedisk_open(p2, 512, true, 128 * MiB_SECTORS, &d[1]);
	for (unsigned i = 0; i < 2 && !rc; i++)
		rc =
		    lvm_pv_format(d[i], &(struct lvm_pv_opts){ .id = vg->pvs[i].id, .in_vg = true },
				  why, sizeof(why));
	if (!rc)
		rc = lvm_vg_to_text(vg, &text, &len, why, sizeof(why));
	if (!rc)
		rc = lvm_vg_write_text(d, 2, text, len, why, sizeof(why));
out:
	if (rc)
		fprintf(stderr, "thinbox-lvm: demo: %s (%d)\n", why, rc);
	free(text);
	lvm_vg_free(vg);
	blkdev_destroy(d[0]);
	blkdev_destroy(d[1]);
	return rc ? 1 : 0;
}

static const char *seg_type(const struct lvm_lv *lv)
{
	switch (lv->segs[0].type) {
	case LVM_SEG_STRIPED:
		return "linear";
	case LVM_SEG_THIN_POOL:
		return "thin-pool";
	default:
		return "thin";
	}
}

static void print_vg(const struct lvm_vg *vg)
{
	printf("vg %s seqno %u extent_size %u pvs %u lvs %u\n", vg->name, vg->seqno,
	       vg->extent_size, vg->nr_pvs, vg->nr_lvs);
	for (unsigned i = 0; i < vg->nr_pvs; i++)
		printf("pv %s id %s pe_start %llu pe_count %llu\n", vg->pvs[i].key, vg->pvs[i].id,
		       (unsigned long long)vg->pvs[i].pe_start,
		       (unsigned long long)vg->pvs[i].pe_count);
	for (unsigned i = 0; i < vg->nr_lvs; i++) {
		const struct lvm_lv *lv = &vg->lvs[i];
		const struct lvm_seg *s = &lv->segs[0];

		printf("lv %s sectors %llu visible %d type %s", lv->name,
		       (unsigned long long)(lvm_lv_extents(lv) * vg->extent_size),
		       !!(lv->status & LVM_LV_VISIBLE), seg_type(lv));
		if (s->type == LVM_SEG_THIN)
			printf(" pool %s device_id %u", s->thin_pool, s->device_id);
		if (s->type == LVM_SEG_THIN && s->origin[0])
			printf(" origin %s", s->origin);
		if (s->type == LVM_SEG_STRIPED)
			printf(" pv %s pe %llu", vg->pvs[s->pv].key, (unsigned long long)s->pe);
		for (unsigned t = 0; t < lv->tags.n; t++)
			printf("%s%s", t ? "," : " tags ", lv->tags.v[t]);
		printf("\n");
	}
}

static int show(int n, char **paths, bool raw)
{
	struct lvm_vg *best = NULL;
	int rc = 0;

	for (int i = 0; i < n && !rc; i++) {
		struct blkdev *d;
		struct lvm_vg *vg;
		char *text, why[256] = "";
		size_t len;

		rc = filedisk_open(paths[i], 512, false, 0, &d);
		if (rc) {
			fprintf(stderr, "thinbox-lvm: %s: cannot open (%d)\n", paths[i], rc);
			break;
		}
		d->name = paths[i];
		rc = lvm_pv_read_text(d, &text, &len, why, sizeof(why));
		blkdev_destroy(d);
		if (rc) {
			fprintf(stderr, "thinbox-lvm: %s (%d)\n", why, rc);
			break;
		}
		if (raw) {
			fwrite(text, 1, len, stdout);
			free(text);
			continue;
		}
		rc = lvm_vg_from_text(text, len, &vg, why, sizeof(why));
		free(text);
		if (rc) {
			fprintf(stderr, "thinbox-lvm: %s: %s (%d)\n", paths[i], why, rc);
			break;
		}
		/* The highest seqno wins, as in lvm. */
		if (!best || vg->seqno > best->seqno) {
			lvm_vg_free(best);
			best = vg;
		} else {
			lvm_vg_free(vg);
		}
	}
	if (!rc && best)
		print_vg(best);
	lvm_vg_free(best);
	return rc ? 1 : 0;
}

/* ---- md5 (RFC 1321): the digest md5sum prints, so Linux's reads compare with ours ---------- */

struct md5 {
	uint32_t h[4];
	uint64_t len;
	uint8_t buf[64];
};

static const uint32_t md5_k[64] = {
	0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
	0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
	0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
	0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
	0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
	0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
	0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
	0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
	0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
	0xeb86d391,
};
static const uint8_t md5_r[16] = { 7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21 };

static void md5_init(struct md5 *m)
{
	*m = (struct md5){ .h = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476 } };
}

static void md5_block(struct md5 *m, const uint8_t *p)
{
	uint32_t w[16], a = m->h[0], b = m->h[1], c = m->h[2], d = m->h[3];

	for (unsigned i = 0; i < 16; i++)
		w[i] = get_le32(p + 4 * i);
	for (unsigned i = 0; i < 64; i++) {
		uint32_t f, t;
		unsigned g;

		if (i < 16)
			f = (b & c) | (~b & d), g = i;
		else if (i < 32)
			f = (d & b) | (~d & c), g = (5 * i + 1) % 16;
		else if (i < 48)
			f = b ^ c ^ d, g = (3 * i + 5) % 16;
		else
			f = c ^ (b | ~d), g = (7 * i) % 16;
		t = d;
		d = c;
		c = b;
		f += a + md5_k[i] + w[g];
		b += (f << md5_r[i / 16 * 4 + i % 4]) | (f >> (32 - md5_r[i / 16 * 4 + i % 4]));
		a = t;
	}
	m->h[0] += a;
	m->h[1] += b;
	m->h[2] += c;
	m->h[3] += d;
}

static void md5_update(struct md5 *m, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t have = m->len % 64;

	m->len += len;
	if (have) {
		size_t n = 64 - have < len ? 64 - have : len;

		memcpy(m->buf + have, p, n);
		p += n;
		len -= n;
		if (have + n < 64)
			return;
		md5_block(m, m->buf);
	}
	for (; len >= 64; p += 64, len -= 64)
		md5_block(m, p);
	memcpy(m->buf, p, len);
}

static void md5_hex(struct md5 *m, char out[33])
{
	uint8_t pad[72] = { 0x80 };
	uint64_t bits = m->len * 8;
	size_t n = (m->len % 64 < 56 ? 56 : 120) - m->len % 64;

	put_le64(pad + n, bits);
	md5_update(m, pad, n + 8);
	for (unsigned i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", (m->h[i / 4] >> (8 * (i % 4))) & 0xff);
}

/* ---- vg: a complete VG made the way the appliance will make it --------------------------- */

#define VG_NAME	      "thinbox"
#define POOL_NAME     "pool0"
#define TMETA_NAME    POOL_NAME "_tmeta"
#define TDATA_NAME    POOL_NAME "_tdata"
#define TMETA_EXTENTS 1u /* 4 MiB of pool metadata: 1024 blocks, far more than the test needs */
#define MAX_VOLS      16u
#define CHUNK	      65536u /* the pool's data block: 128 sectors (the pool's default) */
#define HOST_NAME     "thinbox"

struct vol {
	const char *name;
	int origin; /* index of the origin in the list, -1 for a thin volume */
	uint64_t bytes;
	thin_id_t id;
	uint64_t txid; /* the pool's transaction id before the volume was created, as lvm */
	uint32_t seed;
	char md5[33];
};

static uint32_t fnv1a(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

/* Chunk @i of the pattern @seed: xorshift64 from a per-chunk state, never all zeroes. */
static void fill_chunk(uint8_t *buf, uint32_t seed, uint64_t i)
{
	uint64_t x = ((uint64_t)seed << 32 | 0x9e3779b9u) ^ (i + 1) * 0x9e3779b97f4a7c15ull;

	for (size_t o = 0; o < CHUNK; o += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		put_le64(buf + o, x);
	}
}

/*
 * Write @seed's pattern into every chunk @pick() selects, through the pool's own data path.
 * Every fifth selected chunk gets only 12 KiB at 4 KiB, so the pool's zeroing of the rest
 * of a new block is part of what Linux must read back.
 */
static int write_pattern(struct thin_pool *pool, const struct vol *v, uint32_t seed,
			 bool (*pick)(uint64_t i, uint64_t n, uint32_t seed))
{
	struct thin_volume *tv;
	uint64_t n = v->bytes / CHUNK;
	uint8_t *buf = malloc(CHUNK);
	int rc = buf ? thin_volume_open(pool, v->id, v->bytes, false, &tv) : -ENOMEM;

	if (rc) {
		free(buf);
		return rc;
	}
	for (uint64_t i = 0, k = 0; i < n && !rc; i++) {
		struct blkdev *b = thin_volume_blkdev(tv);

		if (!pick(i, n, seed))
			continue;
		fill_chunk(buf, seed, i);
		if (k++ % 5 == 4)
			rc = blkdev_write(b, (i * CHUNK + 4096) / 512, 12288 / 512, buf);
		else
			rc = blkdev_write(b, i * CHUNK / 512, CHUNK / 512, buf);
	}
	if (!rc)
		rc = blkdev_flush(thin_volume_blkdev(tv));
	thin_volume_close(tv);
	free(buf);
	return rc;
}

/* Thin volumes: three chunks in four of the first three quarters; the rest stays unmapped. */
static bool pick_first(uint64_t i, uint64_t n, uint32_t seed)
{
	return i < n * 3 / 4 && (i + seed) % 4 != 0;
}

/* After the snapshots: one chunk in six of the first half, in the snapshot or its origin. */
static bool pick_snap(uint64_t i, uint64_t n, uint32_t seed)
{
	return i < n / 2 && i % 6 == 1;
}

static bool pick_origin_again(uint64_t i, uint64_t n, uint32_t seed)
{
	return i < n / 2 && i % 6 == 4;
}

/* md5 of the whole volume as the pool reads it (unmapped blocks read as zeroes). */
static int volume_md5(struct thin_pool *pool, thin_id_t id, uint64_t bytes, char out[33])
{
	const size_t piece = 1u << 20;
	struct thin_volume *tv;
	struct md5 m;
	uint8_t *buf = malloc(piece);
	int rc = buf ? thin_volume_open(pool, id, bytes, true, &tv) : -ENOMEM;

	if (rc) {
		free(buf);
		return rc;
	}
	md5_init(&m);
	for (uint64_t off = 0; off < bytes && !rc; off += piece) {
		size_t n = bytes - off < piece ? (size_t)(bytes - off) : piece;

		rc = blkdev_read(thin_volume_blkdev(tv), off / 512, (uint32_t)(n / 512), buf);
		md5_update(&m, buf, n);
	}
	if (!rc)
		md5_hex(&m, out);
	thin_volume_close(tv);
	free(buf);
	return rc;
}

static int random_id(char out[LVM_ID_LEN + 1])
{
	uint8_t b[LVM_ID_LEN];
	FILE *f = fopen("/dev/urandom", "rb");
	size_t n = f ? fread(b, 1, sizeof(b), f) : 0;

	if (f)
		fclose(f);
	if (n != sizeof(b))
		return -EIO;
	lvm_id_from_bytes(b, out);
	return 0;
}

/* NAME:MIB (a thin volume, a whole number of extents) or NAME@ORIGIN (its snapshot). */
static int parse_vols(int argc, char **argv, struct vol *v, unsigned *nr)
{
	const uint64_t extent = (uint64_t)LVM_DEFAULT_EXTENT_SIZE * 512;

	if (argc < 1 || (unsigned)argc > MAX_VOLS)
		return -EINVAL;
	for (int i = 0; i < argc; i++) {
		char *s = argv[i], *sep = strpbrk(s, ":@"), *end;

		if (!sep)
			return -EINVAL;
		v[i] = (struct vol){ .name = s, .origin = -1, .id = (thin_id_t)i + 1 };
		if (*sep == ':') {
			unsigned long long mib = strtoull(sep + 1, &end, 10);

			if (*end || !mib || mib > 1024 || mib * 1048576 % extent)
				return -EINVAL;
			v[i].bytes = mib * 1048576;
		}
		*sep = '\0';
		if (v[i].bytes == 0) {
			for (int o = 0; o < i; o++)
				if (v[o].origin < 0 && !strcmp(v[o].name, sep + 1))
					v[i].origin = o;
			if (v[i].origin < 0)
				return -EINVAL;
			v[i].bytes = v[v[i].origin].bytes;
		}
		if (!lvm_name_valid(s) || !strncmp(s, POOL_NAME, strlen(POOL_NAME)))
			return -EINVAL;
		for (int o = 0; o < i; o++)
			if (!strcmp(v[o].name, s))
				return -EINVAL;
		v[i].seed = fnv1a(s);
	}
	*nr = (unsigned)argc;
	return 0;
}

/* The pool: thin volumes written, then snapshots taken and both sides written again. */
static int make_pool(struct blkdev *tmeta, struct blkdev *tdata, const struct thin_pool_opts *o,
		     struct vol *v, unsigned nr, uint64_t *txid, char *why, size_t why_len)
{
	struct thin_pool *pool;
	int rc = thin_pool_format(tmeta, tdata, o, false);

	if (!rc)
		rc = thin_pool_open(tmeta, tdata, o, why, why_len, &pool);
	if (rc)
		return rc;
	*txid = 0;
	/* lvm changes the pool's transaction id by one with every thin device it creates. */
	for (int pass = 0; pass < 2 && !rc; pass++)
		for (unsigned i = 0; i < nr && !rc; i++) {
			if ((v[i].origin >= 0) != pass)
				continue;
			v[i].txid = *txid;
			rc = pass ? thin_pool_create_snap(pool, v[i].id, v[v[i].origin].id)
				  : thin_pool_create_thin(pool, v[i].id);
			if (!rc)
				rc = thin_pool_set_transaction_id(pool, *txid, *txid + 1);
			if (!rc)
				++*txid;
			if (!rc && !pass)
				rc = write_pattern(pool, &v[i], v[i].seed, pick_first);
		}
	for (unsigned i = 0; i < nr && !rc; i++)
		if (v[i].origin >= 0) {
			rc = write_pattern(pool, &v[i], v[i].seed, pick_snap);
			if (!rc)
				rc = write_pattern(pool, &v[v[i].origin], v[i].seed ^ 0x5a5a5a5au,
						   pick_origin_again);
		}
	for (unsigned i = 0; i < nr && !rc; i++)
		rc = volume_md5(pool, v[i].id, v[i].bytes, v[i].md5);
	if (!rc)
		rc = thin_pool_commit(pool);
	if (rc)
		snprintf(why, why_len, "thin pool: %s", strerror(-rc));
	int rc2 = thin_pool_close(pool);

	return rc ? rc : rc2;
}

static int add_linear(struct lvm_vg *vg, const char *name, unsigned pv, uint64_t extents,
		      uint64_t now)
{
	struct lvm_lv *lv;
	struct lvm_seg *s;
	char id[LVM_ID_LEN + 1];
	int rc = random_id(id);

	if (!rc)
		rc = lvm_vg_add_lv(vg, name, id, LVM_LV_READ | LVM_LV_WRITE, &lv);
	if (!rc)
		rc = lvm_lv_set_creation(lv, now, HOST_NAME);
	if (!rc)
		rc = lvm_lv_add_seg(lv, LVM_SEG_STRIPED, extents, &s);
	if (!rc)
		s->pv = pv, s->pe = 0;
	return rc;
}

/* The VG around the pool: lvm's names, the pool's numbers, one thin LV per volume. */
static int build_vg(struct lvm_vg *vg, const struct thin_pool_opts *o, const struct vol *v,
		    unsigned nr, uint64_t txid, uint64_t tdata_extents)
{
	const uint32_t rw = LVM_LV_READ | LVM_LV_WRITE, vis = rw | LVM_LV_VISIBLE;
	const uint64_t now = (uint64_t)time(NULL), extent = (uint64_t)vg->extent_size * 512;
	struct lvm_lv *lv;
	struct lvm_seg *s;
	char id[LVM_ID_LEN + 1], tag[LVM_NAME_MAX + 32];
	int rc = random_id(id);

	if (!rc)
		rc = lvm_vg_add_lv(vg, POOL_NAME, id, vis, &lv);
	if (!rc)
		rc = lvm_lv_set_creation(lv, now, HOST_NAME);
	if (!rc)
		rc = lvm_lv_add_seg(lv, LVM_SEG_THIN_POOL, tdata_extents, &s);
	if (rc)
		return rc;
	snprintf(s->metadata, sizeof(s->metadata), TMETA_NAME);
	snprintf(s->pool, sizeof(s->pool), TDATA_NAME);
	s->transaction_id = txid; /* must equal the superblock's, or lvm refuses the pool */
	s->chunk_size = o->data_block_sectors;
	s->discards = o->discard_passdown ? LVM_DISCARDS_PASSDOWN : LVM_DISCARDS_NOPASSDOWN;
	s->zero_new_blocks = o->zero_new_blocks;
	for (unsigned i = 0; i < nr && !rc; i++) {
		rc = random_id(id);
		if (!rc)
			rc = lvm_vg_add_lv(vg, v[i].name, id, vis, &lv);
		if (!rc)
			rc = lvm_lv_set_creation(lv, now, HOST_NAME);
		snprintf(tag, sizeof(tag), "thinbox_export=%s", v[i].name);
		if (!rc)
			rc = lvm_strs_add(&lv->tags, tag);
		/* lvm's default for thin snapshots (lvcreate -s): activated only with -K. */
		if (!rc && v[i].origin >= 0)
			rc = lvm_strs_add(&lv->flags, "ACTIVATION_SKIP");
		if (!rc)
			rc = lvm_lv_add_seg(lv, LVM_SEG_THIN, v[i].bytes / extent, &s);
		if (rc)
			break;
		snprintf(s->thin_pool, sizeof(s->thin_pool), POOL_NAME);
		s->transaction_id = v[i].txid;
		s->device_id = (uint32_t)v[i].id;
		if (v[i].origin >= 0)
			snprintf(s->origin, sizeof(s->origin), "%s", v[v[i].origin].name);
	}
	if (!rc)
		rc = add_linear(vg, TMETA_NAME, 0, TMETA_EXTENTS, now);
	if (!rc)
		rc = add_linear(vg, TDATA_NAME, 1, tdata_extents, now);
	return rc;
}

/*
 * thinbox-lvm vg META DATA SPEC...: META and DATA (created, META_MIB and DATA_MIB) become the
 * two PVs of VG "thinbox". Order, as the appliance will do it: PV labels first, then the
 * pool inside the extents of pool0_tmeta (META, extent 0) and pool0_tdata (all of DATA),
 * then the VG metadata last, so that lvm never sees a VG whose pool is not complete.
 */
#define VG_META_MIB 16u
#define VG_DATA_MIB 49u /* 1 MiB of PV header and metadata area, then 12 extents */

static int make_vg(const char *mpath, const char *dpath, int argc, char **argv)
{
	struct blkdev *d[2] = { NULL, NULL }, *tmeta = NULL, *tdata = NULL;
	struct lvm_vg *vg = NULL;
	struct thin_pool_opts o;
	struct vol v[MAX_VOLS];
	unsigned nr;
	uint64_t txid = 0, tdata_extents = 0;
	char *text = NULL, why[256] = "", id[LVM_ID_LEN + 1];
	size_t len;
	int rc;

	if (parse_vols(argc, argv, v, &nr)) {
		fprintf(stderr,
			"thinbox-lvm: vg: volumes are NAME:MIB (a multiple of 4) or "
			"NAME@ORIGIN, at most %u, names unique and not %s*\n",
			MAX_VOLS, POOL_NAME);
		return 2;
	}
	thin_pool_default_opts(&o);
	rc = random_id(id);
	if (!rc)
		rc = lvm_vg_create(VG_NAME, id, LVM_DEFAULT_EXTENT_SIZE, &vg);
	if (!rc)
		rc = filedisk_open(mpath, 512, true, VG_META_MIB * MiB_SECTORS, &d[0]);
	if (!rc)
		rc = filedisk_open(dpath, 512, true, VG_DATA_MIB * MiB_SECTORS, &d[1]);
	for (unsigned i = 0; i < 2 && !rc; i++) {
		d[i]->name = i ? dpath : mpath;
		rc = random_id(id);
		if (!rc)
			rc = lvm_vg_add_pv(vg, id, d[i]->nr_blocks, LVM_DEFAULT_PE_START, NULL);
		if (!rc)
			rc = lvm_pv_format(d[i], &(struct lvm_pv_opts){ .id = id, .in_vg = true },
					   why, sizeof(why));
	}
	if (!rc && (vg->pvs[0].pe_count < TMETA_EXTENTS || vg->pvs[1].pe_count < 1))
		rc = -ENOSPC;
	if (rc)
		goto out;
	/* Both LVs start at extent 0 of their PV: disk sector pe_start + 0 * extent_size. */
	tdata_extents = vg->pvs[1].pe_count;
	rc = blkdev_slice_create(d[0], vg->pvs[0].pe_start,
				 (uint64_t)TMETA_EXTENTS * vg->extent_size, &tmeta);
	if (!rc)
		rc = blkdev_slice_create(d[1], vg->pvs[1].pe_start, tdata_extents * vg->extent_size,
					 &tdata);
	if (!rc)
		rc = make_pool(tmeta, tdata, &o, v, nr, &txid, why, sizeof(why));
	if (!rc)
		rc = build_vg(vg, &o, v, nr, txid, tdata_extents);
	if (!rc)
		rc = lvm_vg_to_text(vg, &text, &len, why, sizeof(why));
	if (!rc)
		rc = lvm_vg_write_text(d, 2, text, len, why, sizeof(why));
	if (rc)
		goto out;
	printf("pool %s transaction_id %llu chunk_size %u tmeta pv0 pe 0 extents %u tdata pv1 pe "
	       "0 extents %llu\n",
	       POOL_NAME, (unsigned long long)txid, o.data_block_sectors, TMETA_EXTENTS,
	       (unsigned long long)tdata_extents);
	for (unsigned i = 0; i < nr; i++)
		printf("md5 %s %s device_id %llu sectors %llu%s%s\n", v[i].name, v[i].md5,
		       (unsigned long long)v[i].id, (unsigned long long)(v[i].bytes / 512),
		       v[i].origin >= 0 ? " origin " : "",
		       v[i].origin >= 0 ? v[v[i].origin].name : "");
out:
	if (rc)
		fprintf(stderr, "thinbox-lvm: vg: %s (%s)\n", why[0] ? why : "failed",
			strerror(-rc));
	free(text);
	lvm_vg_free(vg);
	blkdev_destroy(tmeta);
	blkdev_destroy(tdata);
	blkdev_destroy(d[0]);
	blkdev_destroy(d[1]);
	return rc ? 1 : 0;
}

/* ---- pool: the pool found through the VG metadata, read back with our code -------------- */

struct pool_ctx {
	unsigned problems;
};

static void print_problem(void *ctx, const char *msg)
{
	if (strncmp(msg, "warning:", 8))
		((struct pool_ctx *)ctx)->problems++;
	printf("problem %s\n", msg);
}

/* The slice of the disk holding linear LV @name (one segment, as lvm_vg validates). */
static int lv_slice(const struct lvm_vg *vg, struct blkdev *const *pv_dev, const char *name,
		    struct blkdev **out)
{
	const struct lvm_lv *lv = lvm_vg_find_lv(vg, name);
	const struct lvm_seg *s;
	const struct lvm_pv *pv;

	if (!lv || lv->nr_segs != 1 || lv->segs[0].type != LVM_SEG_STRIPED)
		return -EINVAL;
	s = &lv->segs[0];
	pv = &vg->pvs[s->pv];
	if (!pv_dev[s->pv])
		return -ENODEV;
	printf("lv %s pv %s pe %llu extents %llu sector %llu\n", name, pv->key,
	       (unsigned long long)s->pe, (unsigned long long)s->extent_count,
	       (unsigned long long)(pv->pe_start + s->pe * vg->extent_size));
	return blkdev_slice_create(pv_dev[s->pv], pv->pe_start + s->pe * vg->extent_size,
				   s->extent_count * vg->extent_size, out);
}

/*
 * thinbox-lvm pool DISK...: read the VG (highest seqno), find each PV's file by its label's
 * id, open every thin pool read-only on the slices its _tmeta and _tdata LVs name, compare
 * the VG's transaction_id and chunk_size with the pool's, run thin_pool_check, and print
 * md5 of every thin LV of it, opened by device_id with the LV's size. Writes nothing.
 */
static int read_pool(int n, char **paths)
{
	struct blkdev *dev[LVM_VG_MAX_PVS] = { NULL }, *pv_dev[LVM_VG_MAX_PVS] = { NULL };
	char ids[LVM_VG_MAX_PVS][LVM_ID_LEN + 1];
	struct lvm_vg *vg = NULL;
	char why[256] = "";
	int rc = 0, bad = 0;

	if (n > (int)LVM_VG_MAX_PVS)
		return usage();
	for (int i = 0; i < n && !rc; i++) {
		struct lvm_pv_label l;
		struct lvm_vg *cand;
		char *text;
		size_t len;

		rc = filedisk_open(paths[i], 512, false, 0, &dev[i]);
		if (rc) {
			snprintf(why, sizeof(why), "%s: cannot open", paths[i]);
			break;
		}
		dev[i]->name = paths[i];
		dev[i]->read_only = true; /* a check: nothing here may change the disks */
		rc = lvm_pv_read_label(dev[i], &l, why, sizeof(why));
		if (!rc)
			rc = lvm_pv_read_text(dev[i], &text, &len, why, sizeof(why));
		if (rc)
			break;
		memcpy(ids[i], l.id, sizeof(ids[i]));
		rc = lvm_vg_from_text(text, len, &cand, why, sizeof(why));
		free(text);
		if (rc)
			break;
		if (!vg || cand->seqno > vg->seqno) {
			lvm_vg_free(vg);
			vg = cand;
		} else {
			lvm_vg_free(cand);
		}
	}
	if (rc)
		goto out;
	printf("vg %s seqno %u\n", vg->name, vg->seqno);
	for (unsigned p = 0; p < vg->nr_pvs; p++)
		for (int i = 0; i < n; i++)
			if (!strcmp(vg->pvs[p].id, ids[i]))
				pv_dev[p] = dev[i];
	for (unsigned i = 0; i < vg->nr_lvs && !rc; i++) {
		const struct lvm_seg *ps = &vg->lvs[i].segs[0];
		struct blkdev *tmeta = NULL, *tdata = NULL;
		struct thin_pool_opts o;
		struct thin_pool_status st;
		struct thin_pool *pool = NULL;
		struct pool_ctx ctx = { 0 };

		if (ps->type != LVM_SEG_THIN_POOL)
			continue;
		thin_pool_default_opts(&o);
		o.read_only = true;
		rc = lv_slice(vg, pv_dev, ps->metadata, &tmeta);
		if (!rc)
			rc = lv_slice(vg, pv_dev, ps->pool, &tdata);
		if (rc)
			snprintf(why, sizeof(why),
				 "%s: its _tmeta or _tdata PV is not among the disks",
				 vg->lvs[i].name);
		if (!rc)
			rc = thin_pool_open(tmeta, tdata, &o, why, sizeof(why), &pool);
		if (!rc)
			rc = thin_pool_get_status(pool, &st);
		if (!rc) {
			printf(
			    "pool %s transaction_id %llu superblock %llu chunk_size %u data_block "
			    "%u\n",
			    vg->lvs[i].name, (unsigned long long)ps->transaction_id,
			    (unsigned long long)st.transaction_id, ps->chunk_size,
			    st.data_block_sectors);
			bad |= st.transaction_id != ps->transaction_id ||
			       st.data_block_sectors != ps->chunk_size;
			rc = thin_pool_check(pool, NULL, print_problem, &ctx);
			printf("check %s %s\n", vg->lvs[i].name, rc ? "problems" : "clean");
			bad |= rc != 0;
			rc = 0;
		}
		for (unsigned t = 0; t < vg->nr_lvs && !rc; t++) {
			const struct lvm_lv *lv = &vg->lvs[t];
			uint64_t bytes = lvm_lv_extents(lv) * vg->extent_size * 512;
			char md5[33];

			if (lv->segs[0].type != LVM_SEG_THIN ||
			    strcmp(lv->segs[0].thin_pool, vg->lvs[i].name))
				continue;
			rc = volume_md5(pool, lv->segs[0].device_id, bytes, md5);
			if (rc) {
				snprintf(why, sizeof(why), "%s: device_id %u: cannot read",
					 lv->name, lv->segs[0].device_id);
				break;
			}
			printf("md5 %s %s device_id %u sectors %llu%s%s\n", lv->name, md5,
			       lv->segs[0].device_id, (unsigned long long)(bytes / 512),
			       lv->segs[0].origin[0] ? " origin " : "", lv->segs[0].origin);
		}
		if (pool)
			thin_pool_close(pool);
		blkdev_destroy(tmeta);
		blkdev_destroy(tdata);
	}
out:
	if (rc)
		fprintf(stderr, "thinbox-lvm: pool: %s (%s)\n", why[0] ? why : "failed",
			strerror(-rc));
	lvm_vg_free(vg);
	for (int i = 0; i < n; i++)
		blkdev_destroy(dev[i]);
	return rc || bad ? 1 : 0;
}

/*
 * thinbox-lvm extract DISK LV OUT: copy linear LV @LV (every segment, in order) out of PV
 * file DISK into the new file OUT, so that thin_check and thin_dump can read a pool's
 * _tmeta as the plain metadata image they expect. Reads the VG copy on DISK alone: every
 * segment must be on it. Writes nothing to DISK.
 */
static int extract(const char *path, const char *name, const char *out_path)
{
	struct blkdev *dev = NULL;
	struct lvm_pv_label l;
	struct lvm_vg *vg = NULL;
	const struct lvm_lv *lv;
	char *text = NULL, why[256] = "";
	uint8_t *buf = NULL;
	size_t len;
	FILE *out = NULL;
	int rc = filedisk_open(path, 512, false, 0, &dev);

	if (rc) {
		snprintf(why, sizeof(why), "%s: cannot open", path);
		goto done;
	}
	dev->name = path;
	dev->read_only = true;
	rc = lvm_pv_read_label(dev, &l, why, sizeof(why));
	if (!rc)
		rc = lvm_pv_read_text(dev, &text, &len, why, sizeof(why));
	if (!rc)
		rc = lvm_vg_from_text(text, len, &vg, why, sizeof(why));
	if (rc)
		goto done;
	lv = lvm_vg_find_lv(vg, name);
	rc = -EINVAL;
	if (!lv) {
		snprintf(why, sizeof(why), "no LV %s in VG %s", name, vg->name);
		goto done;
	}
	buf = malloc((size_t)vg->extent_size * 512);
	out = fopen(out_path, "wb");
	if (!buf || !out) {
		snprintf(why, sizeof(why), "%s: cannot create", out_path);
		goto done;
	}
	for (unsigned i = 0; i < lv->nr_segs; i++) {
		const struct lvm_seg *s = &lv->segs[i];
		const struct lvm_pv *pv = &vg->pvs[s->pv];

		if (s->type != LVM_SEG_STRIPED || strcmp(pv->id, l.id)) {
			snprintf(why, sizeof(why), "LV %s segment %u is not linear on %s", name, i,
				 path);
			goto done;
		}
		for (uint64_t e = 0; e < s->extent_count; e++) {
			rc = blkdev_read(dev, pv->pe_start + (s->pe + e) * vg->extent_size,
					 vg->extent_size, buf);
			if (rc || fwrite(buf, 512, vg->extent_size, out) != vg->extent_size) {
				rc = rc ? rc : -EIO;
				snprintf(why, sizeof(why), "copying LV %s failed", name);
				goto done;
			}
		}
	}
	rc = 0;
done:
	if (out && fclose(out) && !rc)
		rc = -EIO;
	if (rc)
		fprintf(stderr, "thinbox-lvm: extract: %s (%s)\n", why[0] ? why : "failed",
			strerror(-rc));
	free(buf);
	free(text);
	lvm_vg_free(vg);
	blkdev_destroy(dev);
	return rc ? 1 : 0;
}

/*
 * thinbox-lvm pending META DATA NAME ID [ORIGIN]: the VG as lvm (or the appliance) leaves it
 * after the first commit of a thin create: thin LV NAME (one extent, device_id ID, a
 * snapshot of ORIGIN when given) added, the pool's transaction_id + 1 and a pending
 * `create` message; the pool itself untouched (tests/guest/lvm_interrupted.t).
 */
static int pending(const char *mpath, const char *dpath, const char *name, const char *id,
		   const char *origin)
{
	struct lvm_disk dk[2] = { { 0 }, { 0 } };
	struct lvm_vg *vg = NULL;
	struct lvm_lv *lv, *pool = NULL;
	struct lvm_seg *s;
	unsigned missing;
	char why[256] = "", lvid[LVM_ID_LEN + 1];
	int rc = filedisk_open(mpath, 512, false, 0, &dk[0].dev);

	if (!rc)
		rc = filedisk_open(dpath, 512, false, 0, &dk[1].dev);
	if (!rc)
		rc = lvm_disks_read(dk, 2, NULL, &vg, &missing, why, sizeof(why));
	for (unsigned i = 0; !rc && i < vg->nr_lvs; i++)
		if (vg->lvs[i].nr_segs == 1 && vg->lvs[i].segs[0].type == LVM_SEG_THIN_POOL)
			pool = &vg->lvs[i];
	if (!rc && !pool)
		rc = -ENOENT;
	if (!rc)
		rc = random_id(lvid);
	if (!rc) {
		char pname[LVM_NAME_MAX + 1];
		uint64_t txid = pool->segs[0].transaction_id + 1;

		snprintf(pname, sizeof(pname), "%s", pool->name);
		rc =
		    lvm_vg_add_lv(vg, name, lvid, LVM_LV_READ | LVM_LV_WRITE | LVM_LV_VISIBLE, &lv);
		if (!rc)
			rc = lvm_lv_set_creation(lv, (uint64_t)time(NULL), HOST_NAME);
		if (!rc)
			rc = lvm_lv_add_seg(lv, LVM_SEG_THIN, 1, &s);
		if (!rc) {
			snprintf(s->thin_pool, sizeof(s->thin_pool), "%s", pname);
			s->device_id = (uint32_t)strtoul(id, NULL, 10);
			s->transaction_id = txid;
			if (origin)
				snprintf(s->origin, sizeof(s->origin), "%s", origin);
			pool = lvm_vg_find_lv(vg, pname);
			pool->segs[0].transaction_id = txid;
			rc = lvm_seg_add_message_create(&pool->segs[0], name);
		}
	}
	if (!rc)
		rc = lvm_disks_write(vg, dk, 2, why, sizeof(why));
	if (rc)
		fprintf(stderr, "thinbox-lvm: pending: %s (%s)\n", why[0] ? why : "failed",
			strerror(-rc));
	lvm_vg_free(vg);
	blkdev_destroy(dk[0].dev);
	blkdev_destroy(dk[1].dev);
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	if ((argc == 6 || argc == 7) && !strcmp(argv[1], "pending"))
		return pending(argv[2], argv[3], argv[4], argv[5], argc == 7 ? argv[6] : NULL);
	if (argc == 5 && !strcmp(argv[1], "extract"))
		return extract(argv[2], argv[3], argv[4]);
	if (argc == 4 && !strcmp(argv[1], "demo"))
		return demo(argv[2], argv[3]);
	if (argc >= 3 && !strcmp(argv[1], "show"))
		return show(argc - 2, argv + 2, false);
	if (argc >= 5 && !strcmp(argv[1], "vg"))
		return make_vg(argv[2], argv[3], argc - 4, argv + 4);
	if (argc >= 3 && !strcmp(argv[1], "pool"))
		return read_pool(argc - 2, argv + 2);
	if (argc == 3 && !strcmp(argv[1], "text"))
		return show(1, argv + 2, true);
	return usage();
}
