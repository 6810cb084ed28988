#!/usr/bin/env bash
# image/thinbox.xml, the appliance as a libvirt domain: valid for libvirt's own schema
# (virt-xml-validate from Debian's libvirt-clients), and the same machine as `make run`
# (mk/qemu.mk): memory, machine type, OVMF as a ROM, the ESP as the boot disk, and the PCI
# slots the firmware looks for.
set -u
. tests/lib/tap.sh
need_tool virt-xml-validate xmllint python3
xml=image/thinbox.xml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check validates-against-libvirt-schema bash -c 'virt-xml-validate "$1" domain >/dev/null 2>&1' _ "$xml"
# The validator is not a rubber stamp: the same file with an unknown element fails.
sed 's|<memballoon model=.none./>|<memballoon model="none"/><frobnicator/>|' "$xml" >"$tmp/bad.xml"
check validator-refuses-a-broken-copy bash -c '! virt-xml-validate "$1" domain >/dev/null 2>&1' _ "$tmp/bad.xml"

# The same machine as mk/qemu.mk's QEMU_RUN_ARGS.
check matches-make-run python3 - "$xml" mk/qemu.mk <<'PY'
import re, sys
import xml.etree.ElementTree as ET

dom = ET.parse(sys.argv[1]).getroot()
mk = open(sys.argv[2]).read()

def slot(el):
    a = el.find("address")
    assert a is not None and a.get("type") == "pci", ET.tostring(el)
    assert int(a.get("bus"), 16) == 0 and int(a.get("function"), 16) == 0
    return int(a.get("slot"), 16)

# Slots from mk/qemu.mk: -device virtio-blk-pci,drive=meta,...,addr=0x4 etc.
mkslot = {m.group(1): int(m.group(2), 16)
          for m in re.finditer(r"-device (virtio-[a-z]+-pci),(?:drive=(?:meta|data),)?[^ ]*addr=(0x[0-9a-f]+)", mk)}
blk = [int(m.group(2), 16) for m in re.finditer(r"drive=(meta|data),disable-legacy=on,addr=(0x[0-9a-f]+)", mk)]
assert len(blk) == 2, blk

mem = re.search(r"QEMU_MEM \?= (\d+)M", mk).group(1)
m = dom.find("memory")
assert m.get("unit") == "MiB" and m.text == mem, (m.attrib, m.text, mem)
t = dom.find("os/type")
assert t.get("machine") == "q35" and t.get("arch") == "x86_64"
ovmf = re.search(r"OVMF \?= (\S+)", mk).group(1)
loader = dom.find("os/loader")
assert loader.get("type") == "rom" and loader.text == ovmf, (loader.attrib, loader.text)

disks = dom.findall("devices/disk")
esp = [d for d in disks if d.find("target").get("bus") == "sata"]
assert len(esp) == 1 and esp[0].find("boot").get("order") == "1"
virt = [d for d in disks if d.find("target").get("bus") == "virtio"]
# Metadata first, then data, at the slots the firmware assigns those roles by.
assert [slot(d) for d in virt] == blk, ([slot(d) for d in virt], blk)
assert [d.find("source").get("file").rsplit("/", 1)[1] for d in virt] == ["meta.img", "data.img"]
# Modern-only virtio (disable-legacy=on): the firmware drives virtio 1.x only.
for el in virt + dom.findall("devices/rng"):
    assert el.get("model") == "virtio-non-transitional", ET.tostring(el)
net = dom.find("devices/interface")
assert net.find("model").get("type") == "virtio-non-transitional"
assert slot(net) == mkslot["virtio-net-pci"], (slot(net), mkslot)
assert net.find("rom").get("enabled") == "no"  # romfile= : OVMF must not bind the NIC
port = re.search(r"NBD_PORT \?= (\d+)", mk).group(1)
fwd = net.find("portForward")
assert fwd.get("address") == "127.0.0.1" and fwd.find("range").get("start") == port
assert slot(dom.find("devices/rng")) == mkslot["virtio-rng-pci"]
# Nothing the firmware would have to ignore.
assert dom.find("devices/memballoon").get("model") == "none"
assert dom.find("devices/controller[@type='usb']").get("model") == "none"
assert dom.find("devices/graphics") is None and dom.find("devices/video") is None
PY
finish
