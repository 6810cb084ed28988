# newlib for the firmware, built from Debian's newlib-source into build/cache/.
#
# The cache directory is named after a hash of everything that changes the result (tarball,
# compiler version, flags, configure options, the build script), so changing any of them
# builds a fresh copy and an unchanged setup is a no-op. The build takes minutes; it logs to
# build/cache/newlib-<hash>.log and prints one line.
#
# wchar_t: newlib and the firmware are both built WITHOUT -fshort-wchar (4-byte wchar_t, the
# gcc default). UEFI strings in boot/ are written as u"..." (char16_t == CHAR16) instead.

# mk/efi.mk includes this file first (it needs the paths below while it is read); the top-level
# Makefile includes it again, which the guard turns into a no-op.
ifndef NEWLIB_MK_INCLUDED
NEWLIB_MK_INCLUDED := 1

EFI_CC ?= gcc
NEWLIB_TARBALL := /usr/src/newlib/newlib-3.3.0.tar.xz
NEWLIB_CFLAGS := -O2 -g -D__LINUX_ERRNO_EXTENSIONS__ -ffreestanding -fno-stack-protector -fpic -mno-red-zone \
	-maccumulate-outgoing-args
# Full (non-nano) formatted IO: nano mis-parses %zu/%llu (see the newlib notes).
NEWLIB_CONFIG := --disable-multilib --disable-nls --disable-newlib-supplied-syscalls \
	--disable-newlib-multithread --enable-newlib-io-c99-formats --enable-newlib-io-long-long

NEWLIB_KEY := $(shell { echo '$(NEWLIB_TARBALL) $(NEWLIB_CFLAGS) $(NEWLIB_CONFIG)'; \
	sha256sum < $(NEWLIB_TARBALL); $(EFI_CC) --version; \
	cat scripts/build-newlib; } 2>&1 | sha256sum | cut -c1-12)
NEWLIB_DIR := $(CACHE)/newlib-$(NEWLIB_KEY)
NEWLIB_STAMP := $(NEWLIB_DIR)/.done
NEWLIB_INC := $(NEWLIB_DIR)/x86_64-elf/include
NEWLIB_LIB := $(NEWLIB_DIR)/x86_64-elf/lib

$(NEWLIB_STAMP):
	$(Q)NEWLIB_TARBALL='$(NEWLIB_TARBALL)' NEWLIB_CC='$(EFI_CC)' \
		NEWLIB_CFLAGS='$(NEWLIB_CFLAGS)' NEWLIB_CONFIG='$(NEWLIB_CONFIG)' \
		scripts/build-newlib $(NEWLIB_DIR)

.PHONY: newlib newlib-dir
newlib: $(NEWLIB_STAMP)

# The cache directory for the current flags and compiler (tests/cli/newlib-cache.t).
newlib-dir:
	@echo $(NEWLIB_DIR)

endif
