# The firmware: GNU-EFI application build/efi/BOOTX64.EFI and a bootable ESP image.
#
# Sources: boot/ (entry, platform, machine bring-up), drivers/*/ (when they exist), and the
# portable code $(PORTABLE_SRCS) compiled a second time with these freestanding flags, so it
# has to compile here as well as on the host. Objects go to build/efi/obj/.
#
# Only boot/ gets the EFI headers on its include path, so core/, config/, app/, net/ and drivers/
# cannot include <efi.h> even by accident. They come in as system headers because they do
# not pass our warning set (old-style declarations).
#
# Link (see docs/firmware.md): gnu-efi's crt0 and libgnuefi (self-relocation) only, no
# libefi (its strong byte-loop memcpy/memset would clash with newlib's); newlib's libc;
# libgcc for any helper gcc emits; --no-undefined because ld -shared would otherwise accept
# missing symbols silently.

include mk/newlib.mk
include mk/lwip.mk
include mk/mbedtls.mk

EFI_ARCH_INC := /usr/include/efi
EFI_LDS := /usr/lib/elf_x86_64_efi.lds
EFI_CRT0 := /usr/lib/crt0-efi-x86_64.o
EFI_GCC_INC := $(shell $(EFI_CC) -print-file-name=include)
EFI_LIBGCC := $(shell $(EFI_CC) -print-libgcc-file-name)

# WARN comes from the top-level Makefile: the same warning set as the host build.
# __LINUX_ERRNO_EXTENSIONS__: newlib hides ENOTBLK and a few other codes we use (as dm does)
# behind it; newlib itself is built with it too, so its strerror() knows them.
# No -fshort-wchar: newlib is built without it too (mk/newlib.mk); UEFI strings use u"".
EFI_CFLAGS := -std=gnu11 -O2 -g $(WARN) -I. -ffreestanding -fpic -fno-stack-protector \
	-mno-red-zone -maccumulate-outgoing-args -fno-strict-aliasing \
	-nostdinc -isystem $(NEWLIB_INC) -isystem $(EFI_GCC_INC) \
	-DGNU_EFI_USE_MS_ABI -DTHINBOX_FIRMWARE -D__LINUX_ERRNO_EXTENSIONS__ -MMD -MP
EFI_BOOT_CFLAGS := -isystem $(EFI_ARCH_INC) -isystem $(EFI_ARCH_INC)/x86_64 \
	-isystem $(EFI_ARCH_INC)/protocol
EFI_LDFLAGS := -nostdlib -znocombreloc -z noexecstack -T $(EFI_LDS) -shared -Bsymbolic \
	--no-undefined
# The heap's allocation counters (boot/heap_count.c, `perf`): every call goes through a wrapper.
EFI_LDFLAGS += --wrap=malloc --wrap=calloc --wrap=realloc --wrap=free

# net/lwip/*.c is the firmware's network glue (lwIP port, netif, NBD over lwIP); net/nbd/ is
# portable and already in PORTABLE_SRCS.
EFI_SRCS := $(sort $(wildcard boot/*.c boot/*.S drivers/*/*.c net/lwip/*.c)) $(PORTABLE_SRCS)
EFI_OBJS := $(patsubst %,$(EFIDIR)/obj/%.o,$(basename $(EFI_SRCS)))
EFI_SO := $(EFIDIR)/thinbox.so
EFI_APP := $(EFIDIR)/BOOTX64.EFI
EFI_ESP := $(EFIDIR)/esp.img
ESP_SIZE ?= 32M
# Set ESP_CFG=path/to/file to put it on the ESP as \thinbox.cfg.
ESP_CFG ?=

# Every object depends on newlib's stamp: a rebuilt newlib (new flags or compiler) gets a new
# cache directory and stamp, so everything is recompiled against its headers (gcc -MMD does
# not list -isystem headers in the .d files).
$(EFIDIR)/obj/boot/%.o: EFI_EXTRA := $(EFI_BOOT_CFLAGS) $(LWIP_INC)
# lwIP's include path only for the glue: net/nbd/ cannot include an lwIP header even by accident.
$(EFIDIR)/obj/net/lwip/%.o: EFI_EXTRA := $(LWIP_INC)

$(EFIDIR)/obj/%.o: %.c $(NEWLIB_STAMP)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC(efi) $<")
	$(Q)$(EFI_CC) $(EFI_CFLAGS) $(EFI_EXTRA) -c $< -o $@

$(EFIDIR)/obj/%.o: %.S $(NEWLIB_STAMP)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  AS(efi) $<")
	$(Q)$(EFI_CC) $(EFI_CFLAGS) $(EFI_EXTRA) -c $< -o $@

$(EFI_SO): $(EFI_OBJS) $(LWIP_LIB) $(MBEDTLS_EFI_LIB) $(NEWLIB_STAMP) $(MAKEFILE_LIST)
	@$(if $(Q),echo "  LD(efi) $@")
	$(Q)ld $(EFI_LDFLAGS) -Map=$(EFIDIR)/thinbox.map $(EFI_CRT0) $(EFI_OBJS) $(LWIP_LIB) \
		$(MBEDTLS_EFI_LIB) \
		-L$(NEWLIB_LIB) -L/usr/lib -lc -lgnuefi $(EFI_LIBGCC) -o $@
	@# A PE image is relocated by gnu-efi's _relocate, which handles RELATIVE only.
	$(Q)if readelf -rW $@ | awk 'NR>3 && $$3 ~ /^R_X86_64/ && $$3 != "R_X86_64_RELATIVE"' | \
		grep -q .; then echo "$@: relocations other than R_X86_64_RELATIVE" >&2; \
		rm -f $@; exit 1; fi

$(EFI_APP): $(EFI_SO)
	@$(if $(Q),echo "  OBJCOPY $@")
	$(Q)objcopy -j .text -j .sdata -j .data -j .dynamic -j .dynsym -j .rel -j .rela \
		-j .rel.* -j .rela.* -j .reloc --target efi-app-x86_64 --subsystem=10 $< $@

# FAT without a partition table ("superfloppy"): OVMF boots \EFI\BOOT\BOOTX64.EFI from it.
$(EFI_ESP): $(EFI_APP) $(ESP_CFG)
	@$(if $(Q),echo "  ESP     $@")
	$(Q)rm -f $@.tmp && truncate -s $(ESP_SIZE) $@.tmp && \
		mkfs.vfat -n THINBOX $@.tmp >/dev/null && \
		mmd -i $@.tmp ::/EFI ::/EFI/BOOT && \
		mcopy -i $@.tmp $(EFI_APP) ::/EFI/BOOT/BOOTX64.EFI && \
		$(if $(ESP_CFG),mcopy -i $@.tmp $(ESP_CFG) ::/thinbox.cfg &&) \
		mv $@.tmp $@

EFI_ALL += $(EFI_APP) $(EFI_ESP)
