#!/usr/bin/env bash
# The LVM2 format against lvm2 itself (Debian's lvm2, metadata commands only: this kernel
# has no device-mapper, so nothing is activated). Both directions on two loop devices:
#   - thinbox-lvm writes a two-PV VG (thin pool, thin LV, snapshot, tags); pvs, vgs, lvs
#     and vgck read it and must show every name, size, origin, tag and thin id;
#   - lvm writes (pvcreate, vgcreate, lvcreate of a linear LV, then vgcfgrestore of a
#     hand-written metadata file with a thin pool, thin LVs and a snapshot, since lvcreate
#     cannot make thin LVs without device-mapper); thinbox-lvm reads it back.
# lvm is kept away from udev, its devices file and every other device of the machine.
set -u
. tests/lib/tap.sh
tool=build/host/thinbox-lvm
export LVM_SUPPRESS_FD_WARNINGS=1

if ! command -v pvs >/dev/null || ! command -v losetup >/dev/null; then
	scripts/setup >/dev/null || true
fi
need_tool pvs vgs lvs vgck pvcreate vgcreate lvcreate vgcfgrestore losetup
[ -x $tool ] || { fail built "$tool missing (make host)"; finish; }
[ "$(id -u)" -eq 0 ] || { fail root "losetup needs root"; finish; }

tmp=$(mktemp -d)
loops=()
cleanup() {
	local l
	for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT

# attach FILE...: loop devices in $L1 $L2 and the lvm config that sees only them.
attach() {
	local f l
	loops=()
	for f in "$@"; do
		l=$(losetup -f --show "$f") || { fail losetup "cannot attach $f"; finish; }
		loops+=("$l")
	done
	L1=${loops[0]}
	L2=${loops[1]}
	local acc="\"a|^$L1\$|\", \"a|^$L2\$|\", \"r|.*|\""
	CFG="devices { filter = [ $acc ] global_filter = [ $acc ] obtain_device_list_from_udev = 0
		use_devicesfile = 0 scan = [ \"/dev\" ] }
		global { use_lvmetad = 0 activation = 0 }
		activation { udev_sync = 0 udev_rules = 0 }
		backup { backup = 0 archive = 0 }"
}
detach() {
	local l
	for l in "${loops[@]}"; do losetup -d "$l"; done
	loops=()
}
lvm_() { "$@" --config "$CFG" 2>"$tmp/lvm.err" | grep -v "successfully\|created\|Restored" ; return ${PIPESTATUS[0]}; }

# ---- ours -> lvm ---------------------------------------------------------------------------
check demo-writes $tool demo "$tmp/d1" "$tmp/d2"
attach "$tmp/d1" "$tmp/d2"
out=$(lvm_ pvs --noheadings --units s -o pv_name,vg_name,pv_size,pv_pe_count,pv_uuid)
check pvs-sees-both [ "$(grep -c ' appvg ' <<<"$out")" -eq 2 ]
check pvs-pe-counts bash -c 'grep -q "'"$L1"' .* 15 Pa1jXp-Sbfh-wsM6-iZ5i-Dg5X-lfVf-VKL7z1" <<<"$1" &&
	grep -q "'"$L2"' .* 31 Pb2jXp-Sbfh-wsM6-iZ5i-Dg5X-lfVf-VKL7z2" <<<"$1"' _ "$out"
out=$(lvm_ vgs --noheadings --units s -o vg_name,pv_count,lv_count,vg_size,vg_extent_size,vg_tags,vg_seqno appvg)
check vgs-shape bash -c '[ "$(echo $1)" = "appvg 2 3 376832S 8192S thinbox 1" ]' _ "$out"
out=$(lvm_ lvs -a --noheadings --units s --separator '|' \
	-o lv_name,lv_attr,lv_size,pool_lv,origin,lv_tags,thin_id,data_lv,metadata_lv appvg)
echo "$out" | sed 's/^ */  /' >"$tmp/lvs"
row() { grep -q "^ *$1|" "$tmp/lvs" && grep "^ *$1|" "$tmp/lvs" | grep -q -- "$2"; }
check lvs-pool row pool '^ *pool|tw.*|253952S|||||\[pool_tdata\]|\[pool_tmeta\]$'
check lvs-alpha row alpha '^ *alpha|Vw.*|131072S|pool||owner=alice,thinbox.export=alpha|1||$'
check lvs-snapshot row alpha-snap '^ *alpha-snap|Vw.*|131072S|pool|alpha|snap/daily|2||$'
check lvs-tmeta row '\[pool_tmeta\]' '|ew.*|16384S|'
check lvs-tdata row '\[pool_tdata\]' '|Tw.*|253952S|'
lvm_ vgck appvg
rc=$?
check vgck-clean bash -c '[ $1 -eq 0 ] && ! grep -qi "error\|inconsistent\|checksum\|ignoring" "$2"' _ $rc "$tmp/lvm.err"
out=$(lvm_ lvs --noheadings -o lv_time,lv_host appvg/alpha)
check lvs-creation grep -q 'thinbox' <<<"$out"
detach

# ---- lvm -> ours ---------------------------------------------------------------------------
truncate -s 64M "$tmp/e1"
truncate -s 128M "$tmp/e2"
attach "$tmp/e1" "$tmp/e2"
check pvcreate lvm_ pvcreate -q "$L1" "$L2"
check vgcreate lvm_ vgcreate -q 2disk "$L1" "$L2"
check lvcreate-linear lvm_ lvcreate -q -an -Zn -L 8M -n lin --addtag x=1 2disk
out=$($tool show "$tmp/e1" "$tmp/e2" 2>&1)
check reads-lvm-linear bash -c 'grep -q "^vg 2disk seqno 2 extent_size 8192 pvs 2 lvs 1$" <<<"$1" &&
	grep -q "^lv lin sectors 16384 visible 1 type linear pv pv0 pe 0 tags x=1$" <<<"$1"' _ "$out"

# A metadata file written by hand (backup-file style: header keys first, tabs, comments),
# with the PV ids lvm chose; vgcfgrestore writes it to both PVs in lvm's own way.
u1=$(lvm_ pvs --noheadings -o pv_uuid "$L1" | tr -d ' ')
u2=$(lvm_ pvs --noheadings -o pv_uuid "$L2" | tr -d ' ')
vgid=$(lvm_ vgs --noheadings -o vg_uuid 2disk | tr -d ' ')
cat >"$tmp/vg.conf" <<EOT
# written by hand for format.t
contents = "Text Format Volume Group"
version = 1
description = "format.t"
creation_host = "tester"	# a comment after a value
creation_time = 1700000000

2disk {
	id = "$vgid"
	seqno = 7
	format = "lvm2"
	status = ["RESIZEABLE", "READ", "WRITE"]
	flags = []
	extent_size = 8192
	max_lv = 0
	max_pv = 0
	metadata_copies = 0
	physical_volumes {
		pv0 { id = "$u1" status = ["ALLOCATABLE"] flags = [] dev_size = 131072 pe_start = 2048 pe_count = 15 }
		pv1 { id = "$u2" status = ["ALLOCATABLE"] flags = [] dev_size = 262144 pe_start = 2048 pe_count = 31 }
	}
	logical_volumes {
		tp {
			id = "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaa1"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			creation_time = 1700000000
			creation_host = "tester"
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 30
				type = "thin-pool"
				metadata = "tp_tmeta"
				pool = "tp_tdata"
				transaction_id = 3
				chunk_size = 256
				discards = "nopassdown"
				zero_new_blocks = 1
			}
		}
		vol {
			id = "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaa2"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			tags = ["thinbox.export=vol", "owner=bob"]
			creation_time = 1700000001
			creation_host = "tester"
			segment_count = 1
			segment1 { start_extent = 0 extent_count = 25 type = "thin" thin_pool = "tp" transaction_id = 0 device_id = 5 }
		}
		vol-snap {
			id = "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaa3"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = ["ACTIVATION_SKIP"]
			creation_time = 1700000002
			creation_host = "tester"
			segment_count = 1
			segment1 { start_extent = 0 extent_count = 25 type = "thin" thin_pool = "tp" transaction_id = 1 origin = "vol" device_id = 6 }
		}
		tp_tmeta {
			id = "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaa4"
			status = ["READ", "WRITE"]
			flags = []
			segment_count = 1
			segment1 { start_extent = 0 extent_count = 1 type = "striped" stripe_count = 1 stripes = [ "pv0", 2 ] }
		}
		tp_tdata {
			id = "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaa5"
			status = ["READ", "WRITE"]
			flags = []
			segment_count = 1
			segment1 { start_extent = 0 extent_count = 30 type = "striped" stripe_count = 1 stripes = [ "pv1", 1 ] }
		}
	}
}
EOT
lvm_ vgcfgrestore -q --force -f "$tmp/vg.conf" 2disk
check vgcfgrestore-thin [ $? -eq 0 ] || cat "$tmp/lvm.err"
out=$(lvm_ lvs -a --noheadings --units s --separator '|' -o lv_name,lv_size,origin,thin_id 2disk)
check lvm-reads-restored bash -c 'grep -q "vol-snap|204800S|vol|6" <<<"$1"' _ "$out"
out=$($tool show "$tmp/e1" "$tmp/e2" 2>&1)
echo "$out" >"$tmp/show"
check reads-lvm-vg grep -q '^vg 2disk seqno 8 extent_size 8192 pvs 2 lvs 5$' "$tmp/show"
check reads-lvm-pool grep -q '^lv tp sectors 245760 visible 1 type thin-pool$' "$tmp/show"
check reads-lvm-thin grep -q '^lv vol sectors 204800 visible 1 type thin pool tp device_id 5 tags thinbox.export=vol,owner=bob$' "$tmp/show"
check reads-lvm-snapshot grep -q '^lv vol-snap sectors 204800 visible 1 type thin pool tp device_id 6 origin vol$' "$tmp/show"
check reads-lvm-tmeta grep -q '^lv tp_tmeta sectors 8192 visible 0 type linear pv pv0 pe 2$' "$tmp/show"
check reads-lvm-tdata grep -q '^lv tp_tdata sectors 245760 visible 0 type linear pv pv1 pe 1$' "$tmp/show"
# Both PVs carry the same committed copy, byte for byte.
check identical-copies cmp -s <($tool text "$tmp/e1") <($tool text "$tmp/e2")
detach
finish
