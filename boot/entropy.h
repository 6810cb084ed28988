/* SPDX-License-Identifier: MIT */
/*
 * The firmware's entropy: the pool (core/base/entropy.h) fed by the virtio-rng device
 * (boot/devices.c), RDSEED/RDRAND (boot/cpu_rand.h) and TSC jitter (never counted), and
 * plat_random() on top of it; the `rng` shell command shows all of it.
 */
#ifndef BOOT_ENTROPY_H
#define BOOT_ENTROPY_H

struct shell;

/*
 * After devices_probe(): detect RDRAND/RDSEED, register the sources and seed the pool once,
 * printing where the entropy comes from, or a WARNING that there is none ("no entropy
 * source: no virtio-rng device and no RDRAND"), in which case plat_random() answers -ENODEV.
 */
void entropy_setup(void);
/* Register `rng`. */
void entropy_shell_init(struct shell *sh);

#endif
