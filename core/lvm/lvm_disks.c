/* SPDX-License-Identifier: MIT */
/*
 * A VG on several devices (contracts in lvm_disks.h): which copy is in use, what every
 * device is, and lvm's write of one text to all of them.
 */
#include "core/lvm/lvm_disks.h"
#include "core/lvm/lvm_pv.h"
#include "core/lvm/lvm_text.h"

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

/*
 * The VG name, id and seqno of a copy, without the model's checks (those are for the copy
 * in use only: an older copy lvm_vg_from_tree() would refuse is merely stale). *out keeps
 * the parsed copy when its header is good, for lvm_vg_from_tree(): each copy is parsed once
 * (a copy of 10,000 thin LVs is ~3.3 MB of text; parsing it took 89 ms under TCG).
 */
static int copy_header(struct lvm_disk *d, const char *text, size_t len, struct lvm_tree **out)
{
	char msg[160];
	struct lvm_tree *t;
	const struct lvm_node *vg = NULL;
	const char *id;
	int64_t seqno;
	int rc = lvm_text_parse(text, len, NULL, &t, msg, sizeof(msg));

	if (rc == -ENOMEM)
		return rc;
	if (rc)
		return why_set(-EINVAL, d->why, sizeof(d->why), "%s: metadata copy unreadable: %s",
			       dname(d->dev), msg);
	for (const struct lvm_node *m = lvm_tree_root(t)->child; m && !vg; m = m->next)
		if (m->type == LVM_NODE_SECTION)
			vg = m;
	rc = -EINVAL;
	if (!vg || strlen(vg->key) > LVM_NAME_MAX || !lvm_name_valid(vg->key))
		why_set(rc, d->why, sizeof(d->why), "%s: metadata copy has no VG section",
			dname(d->dev));
	else if (lvm_get_str(vg, "id", &id) || !lvm_id_parse(id, d->vg_id))
		why_set(rc, d->why, sizeof(d->why), "%s: metadata copy of VG %s has no valid id",
			dname(d->dev), vg->key);
	else if (lvm_get_int(vg, "seqno", &seqno) || seqno < 0 || seqno > UINT32_MAX)
		why_set(rc, d->why, sizeof(d->why), "%s: metadata copy of VG %s has no valid seqno",
			dname(d->dev), vg->key);
	else
		rc = 0;
	if (!rc) {
		snprintf(d->vg_name, sizeof(d->vg_name), "%s", vg->key);
		d->seqno = (uint32_t)seqno;
		*out = t;
		return 0;
	}
	d->vg_id[0] = 0;
	lvm_tree_free(t);
	return rc;
}

/*
 * Label and committed copy of one device; *text (malloc()ed) when it holds a readable one,
 * and its parse: *tree, or *same, the index of the earlier device whose copy is byte for
 * byte this one (@prev_texts/@prev_lens/@prev are the devices read before this one, same
 * arrays; both disks normally hold the same copy): its header and tree serve both.
 */
static int read_one(struct lvm_disk *d, char **text, size_t *len, struct lvm_tree **tree, int *same,
		    char *const *prev_texts, const size_t *prev_lens, const struct lvm_disk *prev)
{
	struct lvm_pv_label l;
	int rc;

	memset(d->pv_id, 0, sizeof(d->pv_id));
	d->vg_name[0] = d->vg_id[0] = 0;
	d->has_mda = false;
	d->seqno = 0;
	d->pv = -1;
	d->rc = 0;
	d->why[0] = 0;
	*text = NULL;
	*tree = NULL;
	*same = -1;
	rc = lvm_pv_read_label(d->dev, &l, d->why, sizeof(d->why));
	if (rc == -ENOMEM)
		return rc;
	if (rc) {
		d->state = rc == -ENODATA ? LVM_DISK_NOT_PV : LVM_DISK_BAD;
		d->rc = rc;
		return 0;
	}
	memcpy(d->pv_id, l.id, sizeof(d->pv_id));
	d->has_mda = l.mda_offset != 0;
	rc = lvm_pv_read_text(d->dev, text, len, d->why, sizeof(d->why));
	if (rc == -ENOMEM)
		return rc;
	if (rc) {
		d->state = rc == -ENODATA ? LVM_DISK_NO_COPY : LVM_DISK_BAD;
		d->rc = rc;
		return 0;
	}
	for (const struct lvm_disk *p = prev; p < d; p++) {
		size_t k = (size_t)(p - prev);

		if (prev_texts[k] && prev_lens[k] == *len && !memcmp(prev_texts[k], *text, *len)) {
			memcpy(d->vg_name, p->vg_name, sizeof(d->vg_name));
			memcpy(d->vg_id, p->vg_id, sizeof(d->vg_id));
			d->seqno = p->seqno;
			*same = (int)k;
			return 0;
		}
	}
	rc = copy_header(d, *text, *len, tree);
	if (rc == -ENOMEM)
		return rc;
	if (rc) {
		d->state = LVM_DISK_BAD;
		d->rc = rc;
		free(*text);
		*text = NULL;
	}
	return 0;
}

int lvm_disks_find_pv(const struct lvm_disk *disks, unsigned n, unsigned pv)
{
	for (unsigned i = 0; i < n; i++)
		if (disks[i].pv >= 0 && (unsigned)disks[i].pv == pv)
			return (int)i;
	return -ENOENT;
}

int lvm_disks_read(struct lvm_disk *disks, unsigned n, const char *vg_name, struct lvm_vg **out,
		   unsigned *nr_missing, char *why, size_t why_len)
{
	char **texts = calloc(n ? n : 1, sizeof(*texts));
	size_t *lens = calloc(n ? n : 1, sizeof(*lens));
	struct lvm_tree **trees = calloc(n ? n : 1, sizeof(*trees));
	int *same = calloc(n ? n : 1, sizeof(*same));
	enum { NO_COPY, COPY_IN_USE, COPY_OTHER } *copy = calloc(n ? n : 1, sizeof(*copy));
	struct lvm_vg *vg = NULL;
	char msg[200];
	int rc = 0, first = -1, use = -1, parsed;

	*out = NULL;
	*nr_missing = 0;
	if (!texts || !lens || !trees || !same || !copy) {
		rc = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < n && !rc; i++)
		rc = read_one(&disks[i], &texts[i], &lens[i], &trees[i], &same[i], texts, lens,
			      disks);
	if (rc)
		goto out;
	/* The VG: by name, or the first device's; then its newest copy, the first device's. */
	for (unsigned i = 0; i < n && first < 0; i++)
		if (texts[i] && (!vg_name || !strcmp(disks[i].vg_name, vg_name)))
			first = (int)i;
	if (first < 0) {
		rc = why_set(-ENODATA, why, why_len, "no device holds a metadata copy of VG %s",
			     vg_name ? vg_name : "(any)");
		goto out;
	}
	use = first;
	for (unsigned i = 0; i < n; i++)
		if (texts[i] && !strcmp(disks[i].vg_id, disks[first].vg_id) &&
		    disks[i].seqno > disks[use].seqno)
			use = (int)i;
	/*
	 * Only the copy in use is read further: the others' trees, and every text (the tree
	 * holds what the model needs), go before its model is made, which then takes their
	 * memory (under TCG, memory touched for the first time costs more than the work).
	 */
	parsed = same[use] >= 0 ? same[use] : use;
	for (unsigned i = 0; i < n; i++) {
		/* read_one() compared the bytes: a copy equal to an earlier one names the
		 * earliest (same[]), so two copies are equal when they name the same one. */
		if (texts[i])
			copy[i] =
			    (same[i] >= 0 ? same[i] : (int)i) == parsed ? COPY_IN_USE : COPY_OTHER;
		if ((int)i != parsed) {
			lvm_tree_free(trees[i]);
			trees[i] = NULL;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		free(texts[i]);
		texts[i] = NULL;
	}
	rc = lvm_vg_from_tree(trees[parsed], &vg, msg, sizeof(msg));
	if (rc == -EINVAL)
		why_set(rc, why, why_len, "%s: VG %s seqno %u: %s", dname(disks[use].dev),
			disks[use].vg_name, disks[use].seqno, msg);
	if (rc)
		goto out;
	for (unsigned i = 0; i < n; i++) {
		struct lvm_disk *d = &disks[i];
		const char *dn = dname(d->dev);
		int pv = -1;

		if (d->pv_id[0])
			for (unsigned p = 0; p < vg->nr_pvs && pv < 0; p++)
				if (!strcmp(vg->pvs[p].id, d->pv_id))
					pv = (int)p;
		if (copy[i] && strcmp(d->vg_id, vg->id)) {
			d->state = LVM_DISK_OTHER_VG;
			why_set(0, d->why, sizeof(d->why), "%s: a PV of another VG (%s)", dn,
				d->vg_name);
			continue;
		}
		if (copy[i] && pv < 0) {
			d->state = LVM_DISK_OTHER_VG;
			why_set(0, d->why, sizeof(d->why),
				"%s: holds a copy of VG %s (seqno %u) but the VG does not list its "
				"PV",
				dn, d->vg_name, d->seqno);
			continue;
		}
		d->pv = pv;
		if (!copy[i]) {
			/* NOT_PV, NO_COPY and BAD keep read_one()'s message. */
			if (d->state == LVM_DISK_NO_COPY && pv >= 0)
				why_set(0, d->why, sizeof(d->why), "%s: PV %s of VG %s, %s", dn,
					vg->pvs[pv].key, vg->name,
					d->has_mda ? "without a metadata copy (the next write "
						     "gives it one)"
						   : "without a metadata area");
			continue;
		}
		if (d->seqno < vg->seqno) {
			d->state = LVM_DISK_STALE;
			why_set(0, d->why, sizeof(d->why),
				"%s: PV %s of VG %s holds seqno %u, older than %u on %s; the next "
				"write repairs it",
				dn, vg->pvs[pv].key, vg->name, d->seqno, vg->seqno,
				dname(disks[use].dev));
		} else if (copy[i] == COPY_OTHER) {
			d->state = LVM_DISK_MISMATCH;
			why_set(
			    0, d->why, sizeof(d->why),
			    "%s: PV %s of VG %s holds seqno %u with other text than %s; treated "
			    "as bad (the copy on %s is used), the next write repairs it",
			    dn, vg->pvs[pv].key, vg->name, d->seqno, dname(disks[use].dev),
			    dname(disks[use].dev));
		} else {
			d->state = LVM_DISK_CURRENT;
			why_set(0, d->why, sizeof(d->why), "%s: PV %s of VG %s, seqno %u", dn,
				vg->pvs[pv].key, vg->name, d->seqno);
		}
	}
	/* Two devices with one PV's id (a cloned disk): lvm would have to choose; we do not. */
	for (unsigned i = 0; i < n; i++)
		for (unsigned j = i + 1; j < n; j++)
			if (disks[i].pv >= 0 && disks[i].pv == disks[j].pv) {
				rc = why_set(-EINVAL, why, why_len,
					     "%s and %s both carry PV %s of VG %s",
					     dname(disks[i].dev), dname(disks[j].dev),
					     vg->pvs[disks[i].pv].key, vg->name);
				goto out;
			}
	for (unsigned p = 0; p < vg->nr_pvs; p++)
		if (lvm_disks_find_pv(disks, n, p) < 0)
			++*nr_missing;
	*out = vg;
	vg = NULL;
out:
	for (unsigned i = 0; texts && i < n; i++)
		free(texts[i]);
	for (unsigned i = 0; trees && i < n; i++)
		lvm_tree_free(trees[i]);
	free(texts);
	free(lens);
	free(trees);
	free(same);
	free(copy);
	lvm_vg_free(vg);
	return rc;
}

int lvm_disks_write(struct lvm_vg *vg, struct lvm_disk *disks, unsigned n, char *why,
		    size_t why_len)
{
	struct blkdev **devs = NULL;
	unsigned nr = 0;
	char *text = NULL;
	size_t len;
	uint32_t old = vg->seqno;
	int rc;

	for (unsigned p = 0; p < vg->nr_pvs; p++)
		if (lvm_disks_find_pv(disks, n, p) < 0)
			return why_set(-ENODEV, why, why_len, "VG %s: PV %s has no device",
				       vg->name, vg->pvs[p].key);
	devs = calloc(n ? n : 1, sizeof(*devs));
	if (!devs)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		struct lvm_disk *d = &disks[i];
		struct lvm_pv_label l;

		if (d->pv < 0)
			continue;
		if ((unsigned)d->pv >= vg->nr_pvs ||
		    lvm_disks_find_pv(disks, n, (unsigned)d->pv) != (int)i) {
			rc = why_set(-EINVAL, why, why_len,
				     "%s: PV index %d is out of range or given to two devices",
				     dname(d->dev), d->pv);
			goto out;
		}
		/* Never write one PV's metadata onto another disk. */
		rc = lvm_pv_read_label(d->dev, &l, why, why_len);
		if (rc)
			goto out;
		if (strcmp(l.id, vg->pvs[d->pv].id)) {
			rc = why_set(-EINVAL, why, why_len,
				     "%s: its label is PV id %s, not that of PV %s of VG %s",
				     dname(d->dev), l.id, vg->pvs[d->pv].key, vg->name);
			goto out;
		}
		d->has_mda = l.mda_offset != 0;
		if (d->has_mda)
			devs[nr++] = d->dev;
	}
	if (!nr) {
		rc = why_set(-EINVAL, why, why_len, "VG %s: no PV has a metadata area", vg->name);
		goto out;
	}
	rc = lvm_vg_validate(vg, why, why_len);
	if (rc)
		goto out;
	if (vg->seqno == UINT32_MAX) {
		rc = why_set(-EOVERFLOW, why, why_len, "VG %s: seqno at its maximum", vg->name);
		goto out;
	}
	vg->seqno++;
	rc = lvm_vg_to_text(vg, &text, &len, why, why_len);
	if (rc) {
		vg->seqno = old;
		goto out;
	}
	rc = lvm_vg_write_text(devs, nr, text, len, why, why_len);
	if (rc)
		goto out;
	for (unsigned i = 0; i < n; i++) {
		struct lvm_disk *d = &disks[i];

		if (d->pv < 0 || !d->has_mda)
			continue;
		d->state = LVM_DISK_CURRENT;
		d->rc = 0;
		d->seqno = vg->seqno;
		snprintf(d->vg_name, sizeof(d->vg_name), "%s", vg->name);
		memcpy(d->vg_id, vg->id, sizeof(d->vg_id));
		why_set(0, d->why, sizeof(d->why), "%s: PV %s of VG %s, seqno %u", dname(d->dev),
			vg->pvs[d->pv].key, vg->name, vg->seqno);
	}
out:
	free(text);
	free(devs);
	return rc;
}
