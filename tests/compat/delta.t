#!/usr/bin/env bash
# run-tests: shares the machine
# thinbox-delta (the core diff, docs/backup.md) against thin_delta 0.9.0 on metadata that
# thin-provisioning-tools built (thin_restore from generated XML: other tree shapes than
# ours, devices sharing stretches of data blocks): the whole output, byte for byte, for
# pairs of devices both ways and a device with itself; an unknown device is refused by both.
. tests/lib/tap.sh
export PATH=$PATH:/usr/sbin:/sbin
need_tool thin_restore thin_delta python3 cmp
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

for spec in "11 4 400" "12 9 6000" "13 20 60000"; do
	set -- $spec
	n="seed$1-$2dev-$3map"
	python3 tests/compat/gen_xml.py "$1" "$2" "$3" >"$T/in.xml"
	rm -f "$T/m.bin"
	truncate -s 64M "$T/m.bin"
	thin_restore -q -i "$T/in.xml" -o "$T/m.bin"
	ids=$(grep -o 'dev_id="[0-9]*"' "$T/in.xml" | tr -dc '0-9\n' | head -6)
	bad=""
	pairs=0
	for a in $ids; do
		for b in $ids; do
			thin_delta --thin1 "$a" --thin2 "$b" "$T/m.bin" >"$T/tpt.txt" 2>&1
			build/host/thinbox-delta --thin1 "$a" --thin2 "$b" "$T/m.bin" >"$T/ours.txt" 2>&1
			cmp -s "$T/tpt.txt" "$T/ours.txt" || bad="$bad $a/$b"
			cat "$T/tpt.txt" >>"$T/all.txt"
			pairs=$((pairs + 1))
		done
	done
	if [ -z "$bad" ] && [ $pairs -gt 1 ]; then
		pass "$n/$pairs-pairs-equal-thin_delta"
	else
		fail "$n/pairs-equal-thin_delta" "differ:$bad; first: $(diff "$T/tpt.txt" "$T/ours.txt" | head -4)"
	fi
done

# Changed ranges exist in these (not all "same"), or the comparison above proves little.
for k in same left_only right_only different; do
	check "some-$k-ranges" grep -q "<$k " "$T/all.txt"
done

thin_delta --thin1 4999999 --thin2 "$a" "$T/m.bin" >/dev/null 2>&1
rc_t=$?
build/host/thinbox-delta --thin1 4999999 --thin2 "$a" "$T/m.bin" >"$T/out" 2>"$T/err"
rc_o=$?
check "unknown-device-refused" test $rc_t -ne 0 -a $rc_o -eq 1 -a ! -s "$T/out"
check "unknown-device-named" grep -q "thin device 4999999: no such device" "$T/err"
finish
