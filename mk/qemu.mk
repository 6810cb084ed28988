# `make run`: boot the firmware in QEMU with the default disks, serial on the terminal.
#
# The machine matches the QEMU tests (tests/qemu/qemu_harness.py): q35, OVMF as -bios,
# -nodefaults, the ESP on AHCI with bootindex=0 (OVMF boots it first and tries nothing else),
# virtio devices at fixed PCI slots, virtio-net with user networking forwarding
# 127.0.0.1:$(NBD_PORT) to the guest's port 10809, virtio-rng (the entropy source) at 00:10.0.
# The serial port is multiplexed with the QEMU monitor: Ctrl-A X quits, Ctrl-A C toggles the
# monitor.
#
# The disks are created sparse on first use and kept between runs; META_SIZE/DATA_SIZE only
# apply when a disk is created (delete it, or qemu-img resize it, to change its size).
#
#   make run META_SIZE=128M DATA_SIZE=8G NBD_PORT=10810 QEMU_EXTRA='-fw_cfg name=opt/thinbox/x,string=y'

QEMU ?= qemu-system-x86_64
OVMF ?= /usr/share/ovmf/OVMF.fd
QEMU_MEM ?= 256M
DISKDIR ?= $(BUILD)/disks
META_IMG ?= $(DISKDIR)/meta.img
DATA_IMG ?= $(DISKDIR)/data.img
META_SIZE ?= 64M
DATA_SIZE ?= 1G
NBD_PORT ?= 10809
QEMU_EXTRA ?=

# Fixed slots: the firmware and the tests rely on the same layout (see docs/firmware.md).
QEMU_RUN_ARGS = -machine q35 -m $(QEMU_MEM) -smp 1 -nodefaults -display none \
	-bios $(OVMF) \
	-drive if=none,id=esp,format=raw,file=$(EFI_ESP),snapshot=on \
	-device ide-hd,drive=esp,bus=ide.0,bootindex=0 \
	-drive if=none,id=meta,format=raw,file=$(META_IMG) \
	-device virtio-blk-pci,drive=meta,disable-legacy=on,addr=0x4 \
	-drive if=none,id=data,format=raw,file=$(DATA_IMG) \
	-device virtio-blk-pci,drive=data,disable-legacy=on,addr=0x5 \
	-netdev user,id=n0,hostfwd=tcp:127.0.0.1:$(NBD_PORT)-:10809 \
	-device virtio-net-pci,netdev=n0,disable-legacy=on,addr=0x6,romfile= \
	-device virtio-rng-pci,disable-legacy=on,addr=0x10 \
	-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
	-serial mon:stdio $(QEMU_EXTRA)

$(META_IMG):
	@mkdir -p $(@D)
	@echo "  DISK    $@ ($(META_SIZE), sparse)"
	$(Q)truncate -s $(META_SIZE) $@

$(DATA_IMG):
	@mkdir -p $(@D)
	@echo "  DISK    $@ ($(DATA_SIZE), sparse)"
	$(Q)truncate -s $(DATA_SIZE) $@

.PHONY: run-disks run-qemu
run-disks: $(META_IMG) $(DATA_IMG)

# Without the setup step, for when everything is known to be installed.
run-qemu: $(EFI_ALL) run-disks
	@echo "  QEMU    serial on this terminal; Ctrl-A X quits"
	$(Q)$(QEMU) $(QEMU_RUN_ARGS)

run: setup
	$(Q)$(MAKE) --no-print-directory run-qemu
