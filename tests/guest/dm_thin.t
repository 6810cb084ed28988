#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Linux's dm-thin as an oracle for the appliance's pool (docs/linux-guest.md).

1. The host build makes a pool on two files (16 MiB metadata, 32 MiB data): vol0 (first
   boot), vol1 and its snapshot snap1, distinct data written to each over NBD; digests of
   every export read over NBD; stop.
2. One guest boot: dmsetup builds linear targets over exactly the pool's LVs (pool_tmeta
   and pool_tdata, found in the VG with thinbox-lvm show: dm-thin by hand, without lvm), a
   thin-pool on them, and a thin target per volume by thin id; md5 of each. Then it
   writes a pattern into vol1 with dd, takes a snapshot with the `create_snap` message,
   reads both, and removes every device (dm-thin commits its metadata).
   The negative control runs in the same boot: copies of the two images in which one byte
   of a data block vol1 maps is flipped; the guest reads vol1 from that pool too, and the
   comparison must tell it apart (it equals the digest of vol1 with that byte flipped).
3. On the host: thin_check; the metadata region did not grow and the LVM headers of both
   disks are untouched; thin_dump has the guest's snapshot. The appliance reopens: it
   reports the guest's snapshot (a thin device no LV names: docs/appliance.md, Starting)
   and keeps it, `pool check` is clean, vol1 reads the guest's data (digest), vol0 and snap1 are
   unchanged; thin_check after it stops."""
import hashlib
import os
import shutil
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "appliance"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import applib as al  # noqa: E402
import guest  # noqa: E402

MiB = 1 << 20
META_SIZE, DATA_SIZE = 16 * MiB, 32 * MiB
GUEST_TEXT = "thinbox-guest-wrote-this\n"  # `yes thinbox-guest-wrote-this` in the guest
GUEST_OFF, GUEST_LEN = 3 * MiB, 2 * MiB  # where the guest writes into vol1
FLIP = 100  # byte of vol1's first data block flipped in the negative control's copy

c = al.Checks("guest/dm_thin")
c.need_tools("qemu-system-x86_64", "thin_check", "thin_dump")
tmp = al.scratch()


def md5(b):
    return hashlib.md5(b).hexdigest()


def lv_places(meta, data):
    """{LV: (first sector on its PV, sectors)} of the linear LVs, from `thinbox-lvm show`
    (one segment each, as the appliance makes them: docs/appliance.md, Layout)."""
    r = al.run([al.LVM_TOOL, "show", meta, data])
    if r.returncode:
        raise al.Failure("thinbox-lvm show: " + r.stderr)
    pe_start, places = {}, {}
    extent = None
    for line in r.stdout.splitlines():
        w = line.split()
        if w[0] == "vg":
            extent = int(w[w.index("extent_size") + 1])
        elif w[0] == "pv":
            pe_start[w[1]] = int(w[w.index("pe_start") + 1])
        elif w[0] == "lv" and "linear" in w:
            pv, pe = w[w.index("pv") + 1], int(w[w.index("pe") + 1])
            places[w[1]] = (pe_start[pv] + pe * extent, int(w[w.index("sectors") + 1]))
    return places


def superblock_meta_blocks(path, offset):
    """nr_blocks of the metadata space map root in the dm-thin superblock (docs/dm-thin-format.md)."""
    with open(path, "rb") as f:
        f.seek(offset)
        sb = f.read(4096)
    return struct.unpack_from("<Q", sb, 192)[0]


def head(path):
    """The first MiB: the LVM label and metadata area."""
    with open(path, "rb") as f:
        return f.read(MiB)


def guest_script(p):
    """The guest's part; @p holds the numbers (sectors, ids) computed on the host."""
    vols = " ".join("%s:%d:%d" % (n, v["id"], v["sectors"]) for n, v in p["vols"].items())
    return r"""
set -e
meta=$(disk meta); data=$(disk data); badmeta=$(disk badmeta); baddata=$(disk baddata)
pool() {  # pool NAME METADISK DATADISK: linear over pool_tmeta and pool_tdata, then the thin-pool
	dmsetup create $1-meta --table "0 %(meta_sectors)d linear $2 %(meta_start)d"
	dmsetup create $1-data --table "0 %(data_sectors)d linear $3 %(data_start)d"
	dmsetup create $1 --table "0 %(data_sectors)d thin-pool /dev/mapper/$1-meta /dev/mapper/$1-data %(block_sectors)d 0"
	echo "status $1 $(dmsetup status $1)"
}
thin() {  # thin POOL NAME ID SECTORS
	dmsetup create $2 --table "0 $4 thin /dev/mapper/$1 $3"
}
digest() { echo "md5 ${2:-$1} $(md5sum </dev/mapper/$1 | cut -d' ' -f1)"; }  # DEV [LABEL]

pool pool $meta $data
for v in %(vols)s; do
	set -- $(echo $v | tr : ' ')
	thin pool $1 $2 $3
	digest $1
done

# Negative control: the same pool with one byte flipped in a data block of vol1.
pool bad $badmeta $baddata
thin bad bad-vol1 %(vol1_id)d %(vol1_sectors)d
digest bad-vol1
dmsetup remove bad-vol1 bad bad-meta bad-data

# Write into vol1 from a pattern, snapshot it with a message, read both.
yes %(text)s | head -c %(len)d >/tmp/pattern
dd if=/tmp/pattern of=/dev/mapper/vol1 bs=65536 seek=%(seek)d conv=notrunc,fsync 2>/dev/null
digest vol1 vol1-after
dmsetup suspend vol1
dmsetup message pool 0 "create_snap %(new_id)d %(vol1_id)d"
dmsetup resume vol1
thin pool guestsnap %(new_id)d %(vol1_sectors)d
digest guestsnap
echo "status pool $(dmsetup status pool)"
for d in guestsnap %(names)s pool pool-meta pool-data; do dmsetup remove $d; done
echo "left: $(dmsetup ls)"
echo done
""" % dict(p, vols=vols, names=" ".join(p["vols"]), text=GUEST_TEXT.strip(),
           len=GUEST_LEN, seek=GUEST_OFF // 65536)


try:
    # ---- 1. The appliance makes the pool --------------------------------------------------
    meta, data = al.blank_disks(tmp, META_SIZE, DATA_SIZE)
    h = al.Host(meta, data).start()
    for line in ("thin create vol1 8M", "export add vol1"):
        out = h.command(line)
        if "error" in out:
            raise al.Failure("%s: %s" % (line, out))
    al.write(h, "vol0", [(0, al.pattern("vol0-a", 3 * MiB)), (20 * MiB, al.pattern("vol0-b", MiB))])
    al.write(h, "vol1", [(0, al.pattern("vol1-a", 4 * MiB))])
    for line in ("thin snapshot vol1 snap1", "export add snap1"):
        out = h.command(line)
        if "error" in out:
            raise al.Failure("%s: %s" % (line, out))
    # Distinct data in the snapshot and the origin after the snapshot (copy-on-write both ways).
    al.write(h, "snap1", [(1 * MiB, al.pattern("snap1", MiB))])
    al.write(h, "vol1", [(2 * MiB, al.pattern("vol1-b", MiB))])
    content = {n: al.read_export(h, n) for n in ("vol0", "vol1", "snap1")}
    want = {n: md5(b) for n, b in content.items()}
    c.check("exports-hold-distinct-data", len(set(want.values())) == 3 and
            all(md5(bytes(len(b))) != want[n] for n, b in content.items()), str(want))
    vols = al.parse_thin_list(h.command("thin list"))
    txid = al.shell_txid(h.command("pool status"))
    c.check("appliance-stops", h.stop() == 0)

    # ---- The numbers the guest's tables need --------------------------------------------
    places = lv_places(meta, data)
    (meta_start, meta_sectors), (data_start, data_sectors) = places["pool_tmeta"], places["pool_tdata"]
    region = meta_sectors * 512
    c.check("metadata-region-is-what-the-superblock-says",
            superblock_meta_blocks(meta, meta_start * 512) * 4096 == region,
            "superblock %d blocks, region %d bytes" % (superblock_meta_blocks(meta, meta_start * 512), region))
    dump = al.thin_dump(meta)
    bs = dump["data_block_size"]
    c.check("data-lv-holds-the-pool", dump["nr_data_blocks"] * bs <= data_sectors, str(places))
    p = {"meta_sectors": meta_sectors, "meta_start": meta_start, "block_sectors": bs,
         "data_sectors": dump["nr_data_blocks"] * bs, "data_start": data_start,
         "vols": {n: {"id": vols[n]["id"], "sectors": len(content[n]) // 512}
                  for n in ("vol0", "vol1", "snap1")}}
    p["vol1_id"], p["vol1_sectors"] = p["vols"]["vol1"]["id"], p["vols"]["vol1"]["sectors"]
    p["new_id"] = max(dump["devices"]) + 1
    heads_before = (head(meta), head(data))

    # Negative control's copies: flip one byte of the data block vol1's block 0 maps to.
    badmeta, baddata = os.path.join(tmp, "badmeta.img"), os.path.join(tmp, "baddata.img")
    shutil.copyfile(meta, badmeta)
    shutil.copyfile(data, baddata)
    dblock = dump["devices"][p["vol1_id"]]["map"][0]
    with open(baddata, "r+b") as f:
        f.seek(data_start * 512 + dblock * bs * 512 + FLIP)
        b = f.read(1)
        f.seek(data_start * 512 + dblock * bs * 512 + FLIP)
        f.write(bytes([b[0] ^ 0xFF]))
    flipped = bytearray(content["vol1"])
    flipped[FLIP] ^= 0xFF

    # ---- 2. Linux reads, writes and snapshots -------------------------------------------
    r = guest.run(guest_script(p), name="guest_dm_thin", timeout=180,
                  disks=[("meta", meta), ("data", data), ("badmeta", badmeta),
                         ("baddata", baddata)])
    c.note("guest boot, dm-thin work and poweroff: %.1f s" % r.seconds)
    c.check("guest-script-succeeds", r.rc == 0 and "\ndone" in r.output, r.output[-3000:])
    got = {w[0]: w[1] for w in r.lines("md5 ") if len(w) == 2}
    for n in ("vol0", "vol1", "snap1"):
        c.check("linux-reads-%s-as-the-appliance" % n, got.get(n) == want[n],
                "guest %s, appliance %s" % (got.get(n), want[n]))
    c.check("negative-control-one-flipped-byte-is-seen",
            got.get("bad-vol1") not in (None, want["vol1"]) and got.get("bad-vol1") == md5(flipped),
            "guest %s, appliance %s, expected with the flip %s"
            % (got.get("bad-vol1"), want["vol1"], md5(flipped)))
    pat = (GUEST_TEXT * (GUEST_LEN // len(GUEST_TEXT) + 1)).encode()[:GUEST_LEN]
    after = bytearray(content["vol1"])
    after[GUEST_OFF:GUEST_OFF + GUEST_LEN] = pat
    after = bytes(after)
    c.check("guest-write-digest-is-the-expected", got.get("vol1-after") == md5(after),
            "guest %s, expected %s" % (got.get("vol1-after"), md5(after)))
    c.check("guest-snapshot-reads-as-its-origin", got.get("guestsnap") == md5(after),
            "guestsnap %s, vol1 %s" % (got.get("guestsnap"), md5(after)))
    c.check("guest-removed-every-device", "left: No devices found" in r.output, r.output[-500:])

    # ---- 3. Back on the host ------------------------------------------------------------
    rc, text = al.thin_check(meta)
    c.check("thin-check-after-linux", rc == 0, text)
    c.check("linux-did-not-grow-the-metadata",
            superblock_meta_blocks(meta, meta_start * 512) * 4096 == region,
            "%d blocks" % superblock_meta_blocks(meta, meta_start * 512))
    c.check("lvm-headers-untouched", (head(meta), head(data)) == heads_before)
    dump2 = al.thin_dump(meta)
    c.check("thin-dump-has-the-guest-snapshot", p["new_id"] in dump2["devices"] and
            dump2["devices"][p["new_id"]]["mapped"] == dump2["devices"][p["vol1_id"]]["mapped"]
            and dump2["transaction"] == txid, str({i: d["mapped"] for i, d in dump2["devices"].items()}))

    h = al.Host(meta, data).start()
    c.check("appliance-reports-and-keeps-the-unnamed-guest-snapshot",
            "have no LV (device %d)" % p["new_id"] in h.boot_log, h.boot_log)
    out = h.command("pool check", timeout=120)
    c.check("pool-check-clean", "pool check: clean" in out, out)
    c.check("appliance-reads-the-guest-data", md5(al.read_export(h, "vol1")) == md5(after))
    c.check("other-volumes-unchanged", all(md5(al.read_export(h, n)) == want[n] for n in ("vol0", "snap1")))
    c.check("appliance-stops-again", h.stop() == 0)
    rc, text = al.thin_check(meta)
    c.check("thin-check-at-the-end", rc == 0, text)
except (al.Failure, al.nbd.Error, guest.GuestError) as e:
    c.check("no-failure", False, str(e))
c.finish()
