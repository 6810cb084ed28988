# SPDX-License-Identifier: MIT
#
# thinbox: one non-recursive Makefile for both builds.
#
#   make             firmware (build/efi/BOOTX64.EFI, build/efi/esp.img) and host build (build/host/)
#   make run         boot the appliance in QEMU with the default disks (see README.md)
#   make test        install what is missing, build everything, run every test (host + QEMU)
#   make check       host tests only (unit, shell, tool and NBD tests); T=NAME runs one test
#   make check-qemu  QEMU tests only (the firmware in QEMU, and the Linux test guest)
#   make bench       benchmarks, printed next to peers measured in the same run
#   make soak        SOAK_MINUTES (default 30) of mixed NBD load on the firmware in QEMU
#   make fuzz        run the libFuzzer targets (FUZZ_SECONDS each)
#   make lint        formatting and include layering
#   make clean       remove build/ (keeps the third-party cache in build/cache/)
#
# V=1 shows the commands. Sources are found by directory: a new .c file in a module joins the
# build without editing this file. mk/*.mk add the firmware build and other pieces.

.DEFAULT_GOAL := all
SHELL := /bin/bash

ifeq ($(V),1)
Q :=
else
Q := @
endif

BUILD   := build
HOSTDIR := $(BUILD)/host
RELDIR  := $(BUILD)/host-release
FUZZDIR := $(BUILD)/fuzz
EFIDIR  := $(BUILD)/efi
CACHE   := $(BUILD)/cache

# ---- Sources ------------------------------------------------------------------------------

# Portable code: compiled into the firmware and the host build alike.
# net/tls/ is mbedTLS's glue (mk/mbedtls.mk gives it the library's headers).
PORTABLE_SRCS := $(sort $(wildcard core/*.c core/*/*.c config/*.c app/*.c net/nbd/*.c net/tls/*.c))
# The host build's platform and devices (Linux: files as disks, POSIX sockets).
HOST_LIB_SRCS := $(sort $(filter-out host/main.c,$(wildcard host/*.c)))
# The portable parts of the virtio drivers, for their host unit tests (no PCI, no MMIO).
HOST_LIB_SRCS += drivers/virtio/virtqueue.c drivers/virtio/virtio.c drivers/virtio-blk/vblk.c \
	drivers/virtio-blk/roles.c drivers/virtio-net/vnet.c \
	drivers/virtio-rng/vrng.c
# Host programs: thinbox itself, and one tool per file in host/tools/.
HOST_TOOL_SRCS := $(sort $(wildcard host/tools/*.c))
HOST_TOOLS := $(patsubst host/tools/%.c,$(HOSTDIR)/%,$(HOST_TOOL_SRCS))
# Test support shared by the unit tests (harness, fixtures, test doubles): compiled once into
# build/host/libtestsupport.a, from which each test program links what it uses.
TEST_SUPPORT_SRCS := $(sort $(wildcard tests/support/*.c))
# One unit-test program per tests/unit/<layer>/test_<module>.c.
UNIT_TEST_SRCS := $(sort $(wildcard tests/unit/*/test_*.c))
UNIT_TESTS := $(patsubst tests/unit/%.c,$(HOSTDIR)/tests/%,$(UNIT_TEST_SRCS))
# Script tests: executable tests/<area>/*.t, run from the top directory after `make all`;
# those that boot QEMU (tests/qemu/, tests/guest/) run with `make check-qemu`.
SCRIPT_TESTS := $(sort $(filter-out tests/qemu/% tests/guest/%,$(wildcard tests/*/*.t)))
QEMU_TESTS := $(sort $(wildcard tests/qemu/*.t tests/guest/*.t))
# Host tests in the order make check and make test run them: first the script tests that can
# share the machine (their first lines say "# run-tests: shares the machine") and the unit
# tests, which tests/run-tests --jobs runs one per core; then the rest, one at a time.
SHARED_SCRIPT_TESTS := $(sort $(shell grep -lx '\# run-tests: shares the machine' $(SCRIPT_TESTS) /dev/null))
HOST_TESTS := $(SHARED_SCRIPT_TESTS) $(UNIT_TESTS) $(filter-out $(SHARED_SCRIPT_TESTS),$(SCRIPT_TESTS))
# Fuzz targets: tests/fuzz/fuzz_<name>.c, each defining LLVMFuzzerTestOneInput.
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(FUZZDIR)/%,$(FUZZ_SRCS))
# Benchmark programs: tests/bench/bench_<name>.c, built optimised and without sanitizers;
# tests/bench/*.bench scripts run them (and the peers) for `make bench`.
BENCH_SRCS := $(sort $(wildcard tests/bench/bench_*.c))
BENCH_PROGS := $(patsubst tests/bench/%.c,$(RELDIR)/bench/%,$(BENCH_SRCS))

# ---- Host flags ---------------------------------------------------------------------------

WARN := -Wall -Wextra -Werror -Wno-unused-parameter -Wstrict-prototypes -Wmissing-prototypes \
	-Wshadow -Wvla
HOST_CC ?= gcc
HOST_BASE_CFLAGS := -std=gnu11 -g -I. $(WARN) -D_GNU_SOURCE -MMD -MP
SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
HOST_CFLAGS := $(HOST_BASE_CFLAGS) -O1 $(SAN)
HOST_LDFLAGS := $(SAN)
# host/filedisk.c: io_uring through Debian's liburing (static: nothing to find at run time),
# and the worker-thread fallback. Every host link takes them after its objects.
HOST_LIBS := -l:liburing.a -lpthread
REL_CFLAGS := $(HOST_BASE_CFLAGS) -O2 -DNDEBUG
FUZZ_CC ?= clang
FUZZ_CFLAGS := -std=gnu11 -g -O1 -I. $(WARN) -Wno-unknown-warning-option -D_GNU_SOURCE \
	-DTHINBOX_FUZZING -fsanitize=fuzzer-no-link,address,undefined -MMD -MP
FUZZ_SECONDS ?= 60

HOST_LIB_OBJS := $(patsubst %.c,$(HOSTDIR)/obj/%.o,$(PORTABLE_SRCS) $(HOST_LIB_SRCS))
TEST_SUPPORT_OBJS := $(patsubst %.c,$(HOSTDIR)/obj/%.o,$(TEST_SUPPORT_SRCS))
REL_LIB_OBJS := $(patsubst %.c,$(RELDIR)/obj/%.o,$(PORTABLE_SRCS) $(HOST_LIB_SRCS))
FUZZ_LIB_OBJS := $(patsubst %.c,$(FUZZDIR)/obj/%.o,$(PORTABLE_SRCS) $(HOST_LIB_SRCS))

$(HOSTDIR)/obj/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(HOST_CC) $(HOST_CFLAGS) $(HOST_EXTRA) -c $< -o $@

$(RELDIR)/obj/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC(rel) $<")
	$(Q)$(HOST_CC) $(REL_CFLAGS) $(HOST_EXTRA) -c $< -o $@

$(FUZZDIR)/obj/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC(fuz) $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(HOST_EXTRA) -c $< -o $@

$(HOSTDIR)/libthinbox.a: $(HOST_LIB_OBJS)
	@mkdir -p $(@D)
	$(Q)rm -f $@ && ar rcs $@ $^

$(RELDIR)/libthinbox.a: $(REL_LIB_OBJS)
	@mkdir -p $(@D)
	$(Q)rm -f $@ && ar rcs $@ $^

$(FUZZDIR)/libthinbox.a: $(FUZZ_LIB_OBJS)
	@mkdir -p $(@D)
	$(Q)rm -f $@ && ar rcs $@ $^

$(HOSTDIR)/libtestsupport.a: $(TEST_SUPPORT_OBJS)
	@mkdir -p $(@D)
	$(Q)rm -f $@ && ar rcs $@ $^

# thinbox serves NBD over TLS: it links mbedTLS (mk/mbedtls.mk) after libthinbox.a.
$(HOSTDIR)/thinbox: $(HOSTDIR)/obj/host/main.o $(HOSTDIR)/libthinbox.a $(HOSTDIR)/libmbedtls.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(HOST_CC) $(HOST_LDFLAGS) -o $@ $^ $(HOST_LIBS)

$(RELDIR)/thinbox: $(RELDIR)/obj/host/main.o $(RELDIR)/libthinbox.a $(RELDIR)/libmbedtls.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(HOST_CC) -o $@ $^ $(HOST_LIBS)

$(HOSTDIR)/%: $(HOSTDIR)/obj/host/tools/%.o $(HOSTDIR)/libthinbox.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(HOST_CC) $(HOST_LDFLAGS) -o $@ $^ $(HOST_LIBS)

$(RELDIR)/%: $(RELDIR)/obj/host/tools/%.o $(RELDIR)/libthinbox.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(HOST_CC) -o $@ $^ $(HOST_LIBS)

# tests/unit/net/: the firmware's lwIP glue against a fake of lwIP's raw API, compiled with
# our lwIP configuration and lwIP's own headers (the source scripts/setup fetched).
$(HOSTDIR)/obj/tests/unit/net/%.o $(HOSTDIR)/obj/net/lwip/%.o: HOST_EXTRA = -Inet/lwip \
	-isystem $(CACHE)/lwip/src/include
$(HOSTDIR)/tests/net/test_nbd_lwip: $(HOSTDIR)/obj/net/lwip/nbd_lwip.o \
	$(HOSTDIR)/obj/net/lwip/lwip_err.o
$(HOSTDIR)/tests/net/test_lwip_alloc: $(HOSTDIR)/obj/net/lwip/lwip_alloc.o
$(HOSTDIR)/tests/net/test_inet_sum: $(HOSTDIR)/obj/net/lwip/inet_sum.o
$(HOSTDIR)/tests/net/test_ack_merge: $(HOSTDIR)/obj/net/lwip/ack_merge.o
# test_perf counts the clock's reads (timing off must read it never).
$(HOSTDIR)/tests/core/test_perf: HOST_LDFLAGS += -Wl,--wrap=plat_cycles

$(HOSTDIR)/tests/%: $(HOSTDIR)/obj/tests/unit/%.o $(HOSTDIR)/libtestsupport.a $(HOSTDIR)/libthinbox.a
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(HOST_CC) $(HOST_LDFLAGS) -o $@ $^ $(HOST_LIBS)

$(RELDIR)/bench/%: $(RELDIR)/obj/tests/bench/%.o $(RELDIR)/libthinbox.a
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(HOST_CC) -o $@ $^ $(HOST_LIBS)

$(FUZZDIR)/%: $(FUZZDIR)/obj/tests/fuzz/%.o $(FUZZDIR)/libthinbox.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $^ $(HOST_LIBS)

# The NBD fuzzer's out-of-order device is the unit tests' (tests/support/queued_dev.c), compiled
# in the fuzz build; listed before the archive, which supplies what it calls.
$(FUZZDIR)/fuzz_nbd: $(FUZZDIR)/obj/tests/fuzz/fuzz_nbd.o $(FUZZDIR)/obj/tests/support/queued_dev.o \
	$(FUZZDIR)/libthinbox.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $^ $(HOST_LIBS)

.PRECIOUS: $(HOSTDIR)/obj/%.o $(RELDIR)/obj/%.o $(FUZZDIR)/obj/%.o

HOST_ALL := $(HOSTDIR)/thinbox $(HOST_TOOLS) $(UNIT_TESTS)

# ---- Firmware and the rest (mk/*.mk) ------------------------------------------------------

EFI_ALL :=
include $(sort $(wildcard mk/*.mk))

# ---- Top-level targets --------------------------------------------------------------------

.PHONY: all host efi setup run test check check-unknown check-qemu bench fuzz fuzz-build lint clean

all: host efi
host: $(HOST_ALL)
efi: $(EFI_ALL)

setup:
	$(Q)scripts/setup

# The build behind each entry point below runs one job per core unless make was given -j
# itself: serial, building everything took some 4.5 of CI's 30 minutes on two cores.
BUILD_JOBS ?= $(shell nproc)
# Tests that can share the machine run one per core too (tests/run-tests --jobs).
TEST_JOBS ?= $(shell nproc)
SUBMAKE = $(MAKE) --no-print-directory $(if $(filter -j%,$(MAKEFLAGS)),,-j$(BUILD_JOBS))

# Each entry point that needs packages runs the setup script first, then builds.
ifeq ($(T),)
check: setup
	$(Q)$(SUBMAKE) host $(FUZZ_TARGETS) $(RELDIR)/thinbox
	$(Q)tests/run-tests --jobs $(TEST_JOBS) $(HOST_TESTS)
else
# `make check T=NAME`: one test. NAME is a unit-test program (test_pool, thin/test_pool,
# tests/unit/thin/test_pool.c, build/host/tests/thin/test_pool) or a script test (nbd/raw,
# raw, nbd/raw.t, tests/nbd/raw.t, qemu/boot). It builds what that test needs, then runs it
# (the firmware too for tests/qemu/ and tests/guest/*_fw.t, which boot it).
T_NAME := $(patsubst unit/%,%,$(patsubst tests/%,%,$(patsubst $(HOSTDIR)/tests/%,%,$(basename $(T)))))
T_SEL := $(sort $(filter %/$(T_NAME),$(UNIT_TESTS)) \
	$(filter %/$(T_NAME).t,$(SCRIPT_TESTS) $(QEMU_TESTS)))
T_BUILD := $(if $(filter tests/qemu/% tests/guest/%_fw.t,$(T_SEL)),all,$(if $(filter tests/%,$(T_SEL)),host \
	$(FUZZ_TARGETS) $(RELDIR)/thinbox,$(T_SEL)))
check: $(if $(T_SEL),setup,check-unknown)
	$(Q)$(SUBMAKE) $(T_BUILD)
	$(Q)tests/run-tests $(T_SEL)
endif

check-unknown:
	@echo "make check: no test named '$(T)': give a unit test (test_pool, thin/test_pool) or a" \
		"script test (nbd/raw, tests/nbd/raw.t); they are tests/unit/*/test_*.c and" \
		"tests/*/*.t" >&2
	@exit 1

check-qemu: setup
	$(Q)$(SUBMAKE) all
	$(Q)tests/run-tests $(QEMU_TESTS)

test: setup
	$(Q)$(SUBMAKE) all $(FUZZ_TARGETS) $(RELDIR)/thinbox
	$(Q)tests/run-tests --jobs $(TEST_JOBS) $(HOST_TESTS) $(QEMU_TESTS)

fuzz-build: $(FUZZ_TARGETS)

fuzz: setup
	$(Q)$(SUBMAKE) fuzz-build
	$(Q)for f in $(FUZZ_TARGETS); do \
		n=$$(basename $$f); mkdir -p $(BUILD)/fuzz-corpus/$$n; \
		echo "fuzzing $$n for $(FUZZ_SECONDS)s"; \
		$$f -max_total_time=$(FUZZ_SECONDS) $(BUILD)/fuzz-corpus/$$n tests/fuzz/corpus/$$n || exit 1; \
	done

bench: setup
	$(Q)$(SUBMAKE) all $(RELDIR)/thinbox $(patsubst $(HOSTDIR)/%,$(RELDIR)/%,$(HOST_TOOLS)) \
		$(BENCH_PROGS)
	$(Q)for b in $(sort $(wildcard tests/bench/*.bench)); do echo "== $$b"; $$b || exit 1; done

# Not part of `make test`: tests/qemu/soak.py says what it runs and when it fails; its short
# form, tests/qemu/soak.t, is. SOAK_SECONDS, if set, overrides SOAK_MINUTES.
SOAK_MINUTES ?= 30
.PHONY: soak
soak: setup
	$(Q)$(SUBMAKE) efi $(HOSTDIR)/thinbox-lvm
	$(Q)SOAK_MINUTES=$(SOAK_MINUTES) tests/qemu/soak.py

lint:
	$(Q)scripts/lint

clean:
	rm -rf $(HOSTDIR) $(RELDIR) $(FUZZDIR) $(EFIDIR) $(BUILD)/test-logs

# Our dependency files only: the cache holds third-party trees (mbedTLS has a ChangeLog.d
# directory) and is not ours to read as makefiles.
-include $(shell find $(BUILD) -path $(CACHE) -prune -o -type f -name '*.d' -print 2>/dev/null)
