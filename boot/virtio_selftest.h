/* SPDX-License-Identifier: MIT */
/*
 * Test-only shell commands for the virtio drivers, `vselftest` and `vbench` (what they do:
 * virtio_selftest.c; docs/virtio.md). boot/efi_main.c registers them under the fw_cfg switch
 * opt/thinbox/test-selftest. They find the devices through boot/devices.h; devices.c knows
 * nothing of them, so the dependency runs one way only.
 */
#ifndef BOOT_VIRTIO_SELFTEST_H
#define BOOT_VIRTIO_SELFTEST_H

struct shell;

/* Register `vselftest` and `vbench` with @sh. Call after devices_probe(). */
void virtio_selftest_init(struct shell *sh);

#endif
