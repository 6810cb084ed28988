#!/usr/bin/env bash
# run-tests: shares the machine
# Tool-level compatibility with thin-provisioning-tools 0.9.0:
#  - generated XML -> thin_restore -> thinbox-dump equals thin_dump byte for byte;
#  - the same XML -> thinbox-restore -> thin_check exit 0 with only its phase lines on
#    stderr, thin_dump equals the first dump, thinbox-check clean;
#  - thinbox-dump -m behaves as thin_dump -m without a held root;
#  - malformed XML: thinbox-restore fails with a message naming the line, exits 1, never
#    crashes (ASan build) and leaves the output file untouched.
. tests/lib/tap.sh
export PATH=$PATH:/usr/sbin:/sbin
need_tool thin_restore thin_dump thin_check python3 cmp
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

phases_only() { ! grep -qv -e '^examining superblock$' -e '^examining devices tree$' \
	-e '^examining mapping tree$' -e '^checking space map counts$' "$1"; }

for spec in "1 1 50" "2 7 3000" "3 25 40000" "4 60 120000"; do
	set -- $spec
	n="seed$1-$2dev-$3map"
	python3 tests/compat/gen_xml.py "$1" "$2" "$3" >"$T/in.xml"
	rm -f "$T/tpt.bin" "$T/our.bin"
	truncate -s 64M "$T/tpt.bin" "$T/our.bin"
	thin_restore -q -i "$T/in.xml" -o "$T/tpt.bin"
	thin_dump "$T/tpt.bin" >"$T/tpt.xml"
	build/host/thinbox-dump "$T/tpt.bin" >"$T/ours-of-tpt.xml"
	check "$n/dump-equals-thin_dump" cmp -s "$T/tpt.xml" "$T/ours-of-tpt.xml"
	check "$n/thinbox-restore" build/host/thinbox-restore -i "$T/in.xml" -o "$T/our.bin"
	thin_check "$T/our.bin" >/dev/null 2>"$T/check.err"
	rc=$?
	check "$n/thin_check-clean" test $rc -eq 0
	check "$n/thin_check-no-warnings" phases_only "$T/check.err"
	thin_dump "$T/our.bin" >"$T/tpt-of-ours.xml"
	check "$n/same-pool" cmp -s "$T/tpt.xml" "$T/tpt-of-ours.xml"
	build/host/thinbox-dump "$T/our.bin" >"$T/ours.xml"
	check "$n/dump-of-ours" cmp -s "$T/tpt.xml" "$T/ours.xml"
	check "$n/thinbox-check" build/host/thinbox-check -q "$T/our.bin"
done

# thinbox-check on damaged metadata: exit 1 and one line per problem (a clean pool exits 0
# above). A byte changed inside the superblock's checksummed area, and one inside a B-tree
# node the superblock points to.
cp "$T/our.bin" "$T/bad.bin"
printf '\x5a' | dd of="$T/bad.bin" bs=1 seek=1000 conv=notrunc status=none
build/host/thinbox-check "$T/bad.bin" >"$T/bad.out" 2>&1
check "thinbox-check-damaged-superblock-exit-1" test $? -eq 1
check "thinbox-check-damaged-superblock-says-so" grep -qi 'superblock.*checksum\|checksum.*superblock' "$T/bad.out"
cp "$T/our.bin" "$T/bad.bin"
root=$(python3 -c 'import struct,sys; d=open(sys.argv[1],"rb").read(4096); print(struct.unpack_from("<Q", d, 0x148)[0])' "$T/bad.bin")
printf '\x5a' | dd of="$T/bad.bin" bs=1 seek=$((root * 4096 + 2000)) conv=notrunc status=none
build/host/thinbox-check "$T/bad.bin" >"$T/bad.out" 2>&1
check "thinbox-check-damaged-node-exit-1" test $? -eq 1
check "thinbox-check-damaged-node-one-line-each" test "$(grep -c . "$T/bad.out")" -ge 1

# No held root: both tools refuse -m the same way.
thin_dump -m "$T/our.bin" >/dev/null 2>&1
a=$?
build/host/thinbox-dump -m "$T/our.bin" >/dev/null 2>"$T/m.err"
b=$?
check "no-held-root" test $a -ne 0 -a $b -ne 0
check "no-held-root-message" grep -q "no current metadata snap" "$T/m.err"

# Malformed XML.
python3 tests/compat/gen_xml.py 5 3 400 >"$T/good.xml"
truncate -s 8M "$T/victim.bin"
thin_restore -q -i "$T/good.xml" -o "$T/victim.bin"
cp "$T/victim.bin" "$T/victim.orig"
bad() { # NAME XML-TEXT EXPECTED-WORDS
	printf '%s' "$2" >"$T/bad.xml"
	build/host/thinbox-restore -i "$T/bad.xml" -o "$T/victim.bin" >/dev/null 2>"$T/bad.err"
	local rc=$?
	if [ $rc -eq 1 ] && grep -q "$3" "$T/bad.err" && cmp -s "$T/victim.bin" "$T/victim.orig"; then
		pass "bad-xml/$1"
	else
		fail "bad-xml/$1" "rc=$rc: $(head -c 300 "$T/bad.err")"
	fi
	cp "$T/victim.orig" "$T/victim.bin"
}
SB='<superblock uuid="" time="3" transaction="2" flags="0" version="2" data_block_size="128" nr_data_blocks="100">'
bad empty "" "empty document"
bad not-xml "hello" "text outside"
bad wrong-root '<device dev_id="1"/>' "expected <superblock>"
bad unterminated "$SB"'<device dev_id="1" transaction="1" creation_time="0" snap_time="0"' "unterminated"
bad no-end "$SB" "ends inside"
bad unknown-attr '<superblock bogus="1"/>' "unknown attribute"
bad missing-attr '<superblock time="1" transaction="1"></superblock>' "lacks attribute"
bad not-number "${SB/time=\"3\"/time=\"x3\"}</superblock>" "not a decimal"
bad overflow "${SB/transaction=\"2\"/transaction=\"99999999999999999999999\"}</superblock>" "too big"
bad repeated '<superblock time="1" time="2"></superblock>' "repeated"
bad block-size "${SB/data_block_size=\"128\"/data_block_size=\"100\"}</superblock>" "data_block_size"
bad beyond-data "$SB"'<device dev_id="1" transaction="1" creation_time="0" snap_time="0"><single_mapping origin_block="0" data_block="100" time="0"/></device></superblock>' "beyond end of data device"
bad out-of-order "$SB"'<device dev_id="1" transaction="1" creation_time="0" snap_time="0"><single_mapping origin_block="5" data_block="1" time="0"/><single_mapping origin_block="4" data_block="2" time="0"/></device></superblock>' "out of order"
bad late-time "$SB"'<device dev_id="1" transaction="1" creation_time="0" snap_time="0"><single_mapping origin_block="5" data_block="1" time="9"/></device></superblock>' "later than"
bad dup-device "$SB"'<device dev_id="1" transaction="1" creation_time="0" snap_time="0"/><device dev_id="1" transaction="1" creation_time="0" snap_time="0"/></superblock>' "already exists"
bad bad-nesting "$SB"'<single_mapping origin_block="5" data_block="1" time="0"/></superblock>' "expected <device>"
bad trailing "$SB"'</superblock><superblock>' "after </superblock>"
bad zero-length "$SB"'<device dev_id="1" transaction="1" creation_time="0" snap_time="0"><range_mapping origin_begin="0" data_begin="0" length="0" time="0"/></device></superblock>' "length 0"

# Random damage to a valid document: refused or restored, never a crash. The 150 damaged
# copies are made first, by one Python process.
python3 - "$T/good.xml" "$T/mut" 150 <<'PY'
import random, sys
good = open(sys.argv[1], "rb").read()
for i in range(1, int(sys.argv[3]) + 1):
    data = bytearray(good)
    r = random.Random(i)
    for _ in range(r.randint(1, 8)):
        k = r.randrange(3)
        p = r.randrange(len(data))
        if k == 0:
            data[p] = r.choice(b'<>/="0123456789 \n\x00abz')
        elif k == 1:
            del data[p:p + r.randint(1, 40)]
        else:
            data[p:p] = bytes(r.choice(b'<>"=9') for _ in range(r.randint(1, 5)))
    open("%s%d.xml" % (sys.argv[2], i), "wb").write(data)
PY
crashes=0
for i in $(seq 1 150); do
	build/host/thinbox-restore -i "$T/mut$i.xml" -o "$T/victim.bin" >/dev/null 2>"$T/mut.err"
	rc=$?
	if [ $rc -gt 1 ] || grep -q -e Sanitizer -e 'runtime error' "$T/mut.err"; then
		crashes=$((crashes + 1))
		echo "mutation $i: rc=$rc $(head -c 300 "$T/mut.err")"
	fi
	# Whatever it did, the file is either untouched or valid metadata.
	if [ $rc -eq 0 ]; then thin_check -q "$T/victim.bin" || crashes=$((crashes + 1)); fi
	cp "$T/victim.orig" "$T/victim.bin"
done
check "mutated-xml-never-crashes" test $crashes -eq 0
finish
