# lwIP for the firmware: the NO_SYS IPv4 core and Ethernet layer, compiled from the source
# that scripts/setup fetched with `apt-get source lwip` into build/cache/lwip, with our
# net/lwip/lwipopts.h and net/lwip/arch/cc.h, into build/efi/liblwip.a. Only the firmware
# links it; the host build uses POSIX sockets.
#
# lwIP's own code is third-party: it is compiled with -Wall -Wextra -Werror but without our
# stricter additions (-Wshadow, -Wmissing-prototypes, ...), which it does not aim to pass.

ifndef LWIP_MK_INCLUDED
LWIP_MK_INCLUDED := 1

include mk/newlib.mk

LWIP_DIR := $(CACHE)/lwip/src
LWIP_CORE := init def dns inet_chksum ip mem memp netif pbuf raw stats sys altcp altcp_alloc \
	altcp_tcp tcp tcp_in tcp_out timeouts udp
LWIP_CORE4 := autoip dhcp etharp icmp igmp ip4_frag ip4 ip4_addr
LWIP_SRCS := $(addprefix $(LWIP_DIR)/core/,$(addsuffix .c,$(LWIP_CORE))) \
	$(addprefix $(LWIP_DIR)/core/ipv4/,$(addsuffix .c,$(LWIP_CORE4))) \
	$(LWIP_DIR)/netif/ethernet.c
LWIP_OBJS := $(patsubst $(LWIP_DIR)/%.c,$(EFIDIR)/lwip/%.o,$(LWIP_SRCS))
LWIP_LIB := $(EFIDIR)/liblwip.a
# Our port headers first (net/lwip/lwipopts.h, net/lwip/arch/cc.h), then lwIP's.
LWIP_INC := -Inet/lwip -I$(LWIP_DIR)/include
LWIP_CFLAGS := -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter \
	-ffreestanding -fpic -fno-stack-protector -mno-red-zone -maccumulate-outgoing-args \
	-fno-strict-aliasing -D__LINUX_ERRNO_EXTENSIONS__ -nostdinc -isystem $(NEWLIB_INC) \
	-isystem $(shell $(EFI_CC) -print-file-name=include) -I. $(LWIP_INC) -MMD -MP

$(LWIP_DIR)/core/tcp.c:
	@echo "lwIP source missing in $(LWIP_DIR): run scripts/setup" >&2; exit 1

$(EFIDIR)/lwip/%.o: $(LWIP_DIR)/%.c $(NEWLIB_STAMP) net/lwip/lwipopts.h net/lwip/arch/cc.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC(lwip) $(notdir $<)")
	$(Q)$(EFI_CC) $(LWIP_CFLAGS) -c $< -o $@

$(LWIP_LIB): $(LWIP_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^

endif
