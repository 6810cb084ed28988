/* SPDX-License-Identifier: MIT */
/* The product's name and version, shown by the shell's `version` command. */
#ifndef CORE_BASE_VERSION_H
#define CORE_BASE_VERSION_H

#define THINBOX_NAME	"thinbox"
#define THINBOX_VERSION "0.1.0"

#endif
