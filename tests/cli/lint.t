#!/usr/bin/env bash
# run-tests: shares the machine
# Formatting and include layering hold for the whole tree (scripts/lint), and the layering
# rules do catch a forbidden include: lint runs on a scratch tree (a copy of scripts/lint and
# .clang-format in a fresh git repository) holding one include per rule.
set -u
. tests/lib/tap.sh
need_tool clang-format git
out=$(scripts/lint 2>&1)
rc=$?
[ $rc -eq 0 ] || echo "$out"
check lint-clean [ $rc -eq 0 ]

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/scripts"
cp scripts/lint "$tmp/scripts/"
cp .clang-format "$tmp/"
git -C "$tmp" init -q
# src FILE INCLUDE...: a clang-formatted source file with these #include lines.
src() {
	local f=$1 i
	shift
	mkdir -p "$(dirname "$tmp/$f")"
	for i in "$@"; do echo "#include $i"; done >"$tmp/$f"
	echo "int x;" >>"$tmp/$f"
}

# Allowed: the composition root includes anything, the lwIP glue the drivers and lwIP, a
# driver the PCI code below it, the host and the unit tests the shell, a shell command the
# application's public header, the application the configuration, the pool and NBD.
src boot/root.c '"boot/devices.h"' '"config/shell.h"' '"drivers/bus/pci.h"' \
	'"net/lwip/netif_vnet.h"' '"lwip/tcp.h"'
src net/lwip/glue.c '"drivers/virtio-net/vnet.h"' '"net/nbd/nbd_server.h"' '"lwip/tcp.h"' \
	'"netif/ethernet.h"'
src drivers/virtio/transport.c '"drivers/bus/pci.h"' '"core/base/plat.h"'
src host/main.c '"config/shell.h"' '"net/nbd/nbd_server.h"'
src tests/unit/config/test_shell.c '"config/shell.h"'
src config/cmd_x.c '"app/appliance.h"' '"config/shell.h"'
src app/app_x.c '"config/store.h"' '"core/thin/thin_pool.h"' '"net/nbd/nbd_server.h"' \
	'"app/appliance_internal.h"'
src net/tls/tls_x.c '"mbedtls/ssl.h"' '"core/base/plat.h"'
src tests/unit/tls/test_x.c '"mbedtls/x509_crt.h"' '"net/tls/tls_pair.h"'
src boot/tls_x.c '"net/tls/tls_selftest.h"'
out=$(bash "$tmp/scripts/lint" 2>&1)
check allowed-includes-pass [ $? -eq 0 ]
[ -z "$(grep -v 'files clean' <<<"$out")" ] || echo "$out"

# Forbidden, one per rule: each must fail lint with this message.
src drivers/virtio/bad.c '"boot/pci.h"'
src drivers/virtio-net/shell.c '"config/shell.h"'
src net/lwip/bad_config.c '"config/shell.h"'
src net/lwip/bad_boot.c '"boot/devices.h"'
src net/nbd/bad_lwip.c '"lwip/tcp.h"'
src net/nbd/bad_glue.c '"net/lwip/nbd_lwip.h"'
src core/bad_shell.c '"config/shell.h"'
src config/bad_glue.c '"net/lwip/netif_vnet.h"'
src host/bad_boot.c '"boot/io.h"'
src tests/unit/virtio/bad_boot.c '"boot/devices.h"'
src tests/unit/virtio/bad_lwip.c '"lwip/pbuf.h"'
src tests/unit/virtio/bad_efi.c '<efi.h>'
src net/nbd/bad_shell.c '"config/shell.h"'
src config/bad_app.c '"app/appliance_internal.h"'
src app/bad_glue.c '"net/lwip/nbd_lwip.h"'
src app/bad_driver.c '"drivers/virtio-blk/vblk.h"'
src app/bad_host.c '"host/hostdev.h"'
src app/bad_cmds.c '"config/appliance_cmds.h"'
src app/bad_shell.c '"config/shell.h"'
src app/bad_lwip.c '"lwip/tcp.h"'
src core/bad_app.c '"app/appliance.h"'
src net/tls/bad_boot.c '"boot/devices.h"'
src net/tls/bad_lwip.c '"lwip/tcp.h"'
src app/bad_mbedtls.c '"mbedtls/ssl.h"'
src boot/bad_mbedtls.c '"mbedtls/ssl.h"'
out=$(bash "$tmp/scripts/lint" 2>&1)
check forbidden-includes-fail [ $? -ne 0 ]
# caught NAME FILE INCLUDE WHY: lint named FILE's include line and the rule.
caught() {
	local want="lint: $2:1:#include $3  ($4)"
	grep -qxF "$want" <<<"$out" && pass "$1" || fail "$1" "no line: $want"
}
caught drivers-no-boot drivers/virtio/bad.c '"boot/pci.h"' 'not allowed in drivers/'
caught drivers-no-shell drivers/virtio-net/shell.c '"config/shell.h"' 'not allowed in drivers/'
caught lwip-glue-no-config net/lwip/bad_config.c '"config/shell.h"' 'not allowed in net/lwip/'
caught lwip-glue-no-boot net/lwip/bad_boot.c '"boot/devices.h"' 'not allowed in net/lwip/'
caught nbd-no-lwip net/nbd/bad_lwip.c '"lwip/tcp.h"' 'not allowed in net/nbd/'
caught nbd-no-lwip-glue net/nbd/bad_glue.c '"net/lwip/nbd_lwip.h"' 'not allowed in net/nbd/'
caught core-no-shell core/bad_shell.c '"config/shell.h"' 'not allowed in core/'
caught config-no-lwip-glue config/bad_glue.c '"net/lwip/netif_vnet.h"' 'not allowed in config/'
caught host-no-boot host/bad_boot.c '"boot/io.h"' 'not allowed in host/'
caught tests-no-boot tests/unit/virtio/bad_boot.c '"boot/devices.h"' \
	'boot/ headers only in boot/, the composition root'
caught tests-no-lwip tests/unit/virtio/bad_lwip.c '"lwip/pbuf.h"' \
	'lwIP headers only in net/lwip/, boot/ and tests/unit/net/'
caught tests-no-efi tests/unit/virtio/bad_efi.c '<efi.h>' 'EFI headers only in boot/'
caught nbd-no-shell net/nbd/bad_shell.c '"config/shell.h"' 'not allowed in net/nbd/'
caught config-no-app-internals config/bad_app.c '"app/appliance_internal.h"' \
	'not allowed in config/'
caught app-no-lwip-glue app/bad_glue.c '"net/lwip/nbd_lwip.h"' 'not allowed in app/'
caught app-no-drivers app/bad_driver.c '"drivers/virtio-blk/vblk.h"' 'not allowed in app/'
caught app-no-host app/bad_host.c '"host/hostdev.h"' 'not allowed in app/'
caught app-no-shell-commands app/bad_cmds.c '"config/appliance_cmds.h"' 'not allowed in app/'
caught app-no-lwip app/bad_lwip.c '"lwip/tcp.h"' 'not allowed in app/'
caught app-no-shell app/bad_shell.c '"config/shell.h"' 'not allowed in app/'
caught core-no-app core/bad_app.c '"app/appliance.h"' 'not allowed in core/'
caught tls-no-boot net/tls/bad_boot.c '"boot/devices.h"' 'not allowed in net/tls/'
caught tls-no-lwip net/tls/bad_lwip.c '"lwip/tcp.h"' 'not allowed in net/tls/'
caught app-no-mbedtls app/bad_mbedtls.c '"mbedtls/ssl.h"' \
	'mbedTLS headers only in net/tls/, tests/unit/tls/ and tests/fuzz/fuzz_tls.c'
caught boot-no-mbedtls boot/bad_mbedtls.c '"mbedtls/ssl.h"' \
	'mbedTLS headers only in net/tls/, tests/unit/tls/ and tests/fuzz/fuzz_tls.c'
# One line per offending include (the directory's rule), and nothing about the allowed files.
check one-line-per-include [ "$(grep -c '^lint: ' <<<"$out")" -eq 25 ]
check allowed-files-not-named [ -z "$(grep -E ' (boot/root|net/lwip/glue|drivers/virtio/transport|host/main|tests/unit/config/test_shell|config/cmd_x|app/app_x|net/tls/tls_x|tests/unit/tls/test_x|boot/tls_x)\.c:' <<<"$out")" ]
finish
