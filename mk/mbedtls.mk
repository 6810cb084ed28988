# mbedTLS for both builds: Debian's `mbedtls` source package (2.28 on Debian 12), fetched by
# scripts/setup with `apt-get source mbedtls` into build/cache/mbedtls-DEBIAN_VERSION/ (e.g.
# mbedtls-2.28.3-1), compiled with our rules (not its CMake) and our configuration
# net/tls/mbedtls_config.h into one archive per build:
#
#   build/host/libmbedtls.a   the host build: host compiler, -O1 with ASan/UBSan like every
#                             host object, so the unit tests check the library too
#   build/efi/libmbedtls.a    the firmware: freestanding on newlib's headers with the
#                             firmware's code-generation flags (-mno-red-zone, -fpic, ...)
#
# The archive holds crypto, X.509 and TLS together (upstream splits them into three; for a
# static link that changes nothing). Every library/*.c is compiled: what the configuration
# leaves out compiles to an empty object. Like lwIP's, mbedTLS's code is compiled with
# -Wall -Wextra -Werror but not our stricter additions. docs/tls.md has the details.
#
# Who sees mbedTLS's headers: net/tls/ (both builds) and the unit tests in tests/unit/tls/;
# scripts/lint keeps mbedtls/ includes there.

ifndef MBEDTLS_MK_INCLUDED
MBEDTLS_MK_INCLUDED := 1

include mk/newlib.mk

# The newest complete tree in the cache, mbedtls-DEBIAN_VERSION (build/cache is shared: a
# newer Debian release adds a directory beside the old one). Before scripts/setup has run, a
# name that says so.
MBEDTLS_DIR := $(shell ls -d $(CACHE)/mbedtls-[0-9]*/library/ssl_tls.c 2>/dev/null | \
	sed 's|/library/ssl_tls.c$$||' | sort -V | tail -n 1)
ifeq ($(MBEDTLS_DIR),)
MBEDTLS_DIR := $(CACHE)/mbedtls-missing-run-scripts-setup
endif
MBEDTLS_SRCS := $(sort $(wildcard $(MBEDTLS_DIR)/library/*.c))
MBEDTLS_CONFIG := net/tls/mbedtls_config.h
MBEDTLS_INC := -I$(MBEDTLS_DIR)/include -DMBEDTLS_CONFIG_FILE='"$(MBEDTLS_CONFIG)"'
# A header every user of the library includes: its absence means setup has not fetched it.
MBEDTLS_HDR := $(MBEDTLS_DIR)/include/mbedtls/ssl.h

MBEDTLS_WARN := -Wall -Wextra -Werror -Wno-unused-parameter
MBEDTLS_HOST_CFLAGS := -std=gnu11 -g -O1 $(SAN) $(MBEDTLS_WARN) -D_GNU_SOURCE -I. $(MBEDTLS_INC) \
	-MMD -MP
# The release build (the benchmarks' thinbox): optimised, no sanitizers.
MBEDTLS_REL_CFLAGS := -std=gnu11 -g -O2 -DNDEBUG $(MBEDTLS_WARN) -D_GNU_SOURCE -I. $(MBEDTLS_INC) \
	-MMD -MP
# The fuzz build (tests/fuzz/fuzz_tls.c): clang with ASan/UBSan; the protocol and parsing code
# (TLS records and handshake, X.509, keys, ASN.1, PEM) also with the fuzzer's coverage, which
# is what libFuzzer steers by. The arithmetic (bignum, curves, ciphers, hashes) goes without
# it at -O2: with coverage's comparison tracing in its loops one ECDHE handshake took over a
# second, leaving a handful of runs a second. THINBOX_FUZZING turns on the fixed clock of
# mbedtls_config.h (a handshake is then a function of the input alone).
MBEDTLS_FUZZ_COVERED := ssl_% x509% pkparse pk pk_wrap asn1parse pem oid
MBEDTLS_FUZZ_SAN := -O1 -fsanitize=fuzzer-no-link,address,undefined
MBEDTLS_FUZZ_CFLAGS = -std=gnu11 -g $(MBEDTLS_FUZZ_SAN) $(MBEDTLS_WARN) \
	-Wno-unknown-warning-option -DTHINBOX_FUZZING -D_GNU_SOURCE -I. $(MBEDTLS_INC) -MMD -MP
MBEDTLS_EFI_CFLAGS := -std=gnu11 -O2 -g $(MBEDTLS_WARN) -ffreestanding -fpic -fno-stack-protector \
	-mno-red-zone -maccumulate-outgoing-args -fno-strict-aliasing -D__LINUX_ERRNO_EXTENSIONS__ \
	-nostdinc -isystem $(NEWLIB_INC) -isystem $(shell $(EFI_CC) -print-file-name=include) \
	-I. $(MBEDTLS_INC) -MMD -MP

# Objects in a directory named after the tree, so another version is compiled afresh.
MBEDTLS_HOST_OBJDIR := $(HOSTDIR)/$(notdir $(MBEDTLS_DIR))
MBEDTLS_EFI_OBJDIR := $(EFIDIR)/$(notdir $(MBEDTLS_DIR))
MBEDTLS_REL_OBJDIR := $(RELDIR)/$(notdir $(MBEDTLS_DIR))
MBEDTLS_FUZZ_OBJDIR := $(FUZZDIR)/$(notdir $(MBEDTLS_DIR))
MBEDTLS_FUZZ_OBJS := $(patsubst $(MBEDTLS_DIR)/library/%.c,$(MBEDTLS_FUZZ_OBJDIR)/%.o,\
	$(MBEDTLS_SRCS))
MBEDTLS_FUZZ_LIB := $(FUZZDIR)/libmbedtls.a
$(filter-out $(patsubst %,$(MBEDTLS_FUZZ_OBJDIR)/%.o,$(MBEDTLS_FUZZ_COVERED)),\
	$(MBEDTLS_FUZZ_OBJS)): MBEDTLS_FUZZ_SAN := -O2 -fsanitize=address,undefined
MBEDTLS_REL_OBJS := $(patsubst $(MBEDTLS_DIR)/library/%.c,$(MBEDTLS_REL_OBJDIR)/%.o,$(MBEDTLS_SRCS))
MBEDTLS_REL_LIB := $(RELDIR)/libmbedtls.a
MBEDTLS_HOST_OBJS := $(patsubst $(MBEDTLS_DIR)/library/%.c,$(MBEDTLS_HOST_OBJDIR)/%.o,\
	$(MBEDTLS_SRCS))
MBEDTLS_EFI_OBJS := $(patsubst $(MBEDTLS_DIR)/library/%.c,$(MBEDTLS_EFI_OBJDIR)/%.o,$(MBEDTLS_SRCS))
MBEDTLS_HOST_LIB := $(HOSTDIR)/libmbedtls.a
MBEDTLS_EFI_LIB := $(EFIDIR)/libmbedtls.a

$(MBEDTLS_HDR):
	@echo "mbedTLS source missing in $(MBEDTLS_DIR): run scripts/setup" >&2; exit 1

# Built once per build directory. A fresh clone's `make test` pays it, so the time is
# printed: .start is made before the first object (an order-only prerequisite, so only when
# missing) and removed once the archive is written.
$(MBEDTLS_HOST_OBJDIR)/.start $(MBEDTLS_EFI_OBJDIR)/.start $(MBEDTLS_REL_OBJDIR)/.start \
$(MBEDTLS_FUZZ_OBJDIR)/.start:
	@mkdir -p $(@D) && touch $@

$(MBEDTLS_HOST_OBJDIR)/%.o: $(MBEDTLS_DIR)/library/%.c $(MBEDTLS_CONFIG) | $(MBEDTLS_HDR) \
		$(MBEDTLS_HOST_OBJDIR)/.start
	@$(if $(Q),echo "  CC(tls) $(notdir $<)")
	$(Q)$(HOST_CC) $(MBEDTLS_HOST_CFLAGS) -c $< -o $@

$(MBEDTLS_REL_OBJDIR)/%.o: $(MBEDTLS_DIR)/library/%.c $(MBEDTLS_CONFIG) | $(MBEDTLS_HDR) \
		$(MBEDTLS_REL_OBJDIR)/.start
	@$(if $(Q),echo "  CC(tls,rel) $(notdir $<)")
	$(Q)$(HOST_CC) $(MBEDTLS_REL_CFLAGS) -c $< -o $@

$(MBEDTLS_FUZZ_OBJDIR)/%.o: $(MBEDTLS_DIR)/library/%.c $(MBEDTLS_CONFIG) | $(MBEDTLS_HDR) \
		$(MBEDTLS_FUZZ_OBJDIR)/.start
	@$(if $(Q),echo "  CC(tls,fuz) $(notdir $<)")
	$(Q)$(FUZZ_CC) $(MBEDTLS_FUZZ_CFLAGS) -c $< -o $@

$(MBEDTLS_EFI_OBJDIR)/%.o: $(MBEDTLS_DIR)/library/%.c $(MBEDTLS_CONFIG) $(NEWLIB_STAMP) | \
		$(MBEDTLS_HDR) $(MBEDTLS_EFI_OBJDIR)/.start
	@$(if $(Q),echo "  CC(tls,efi) $(notdir $<)")
	$(Q)$(EFI_CC) $(MBEDTLS_EFI_CFLAGS) -c $< -o $@

# archive WHICH START: write $@ from $^, then say how long the objects took.
mbedtls_archive = rm -f $@ && ar rcs $@ $^ && \
	if [ -f $(2) ]; then echo "  mbedTLS $(notdir $(MBEDTLS_DIR)) ($(1)): $@, \
	$(words $^) files in $$(( $$(date +%s) - $$(stat -c %Y $(2)) )) s"; rm -f $(2); fi

$(MBEDTLS_HOST_LIB): $(MBEDTLS_HOST_OBJS)
	$(Q)$(call mbedtls_archive,host,$(MBEDTLS_HOST_OBJDIR)/.start)

$(MBEDTLS_REL_LIB): $(MBEDTLS_REL_OBJS)
	$(Q)$(call mbedtls_archive,release,$(MBEDTLS_REL_OBJDIR)/.start)

$(MBEDTLS_FUZZ_LIB): $(MBEDTLS_FUZZ_OBJS)
	$(Q)$(call mbedtls_archive,fuzz,$(MBEDTLS_FUZZ_OBJDIR)/.start)

$(MBEDTLS_EFI_LIB): $(MBEDTLS_EFI_OBJS)
	$(Q)$(call mbedtls_archive,firmware,$(MBEDTLS_EFI_OBJDIR)/.start)

# Our files that include mbedTLS's headers get its include path and configuration, in every
# build that compiles them (HOST_EXTRA: the host, release and fuzz rules of the Makefile;
# EFI_EXTRA: mk/efi.mk's), and wait for the source to be fetched.
MBEDTLS_USERS := $(wildcard net/tls/*.c tests/unit/tls/*.c tests/fuzz/fuzz_tls.c)
$(HOSTDIR)/obj/net/tls/%.o $(RELDIR)/obj/net/tls/%.o $(FUZZDIR)/obj/net/tls/%.o \
$(HOSTDIR)/obj/tests/unit/tls/%.o $(FUZZDIR)/obj/tests/fuzz/fuzz_tls.o: HOST_EXTRA := $(MBEDTLS_INC)
$(EFIDIR)/obj/net/tls/%.o: EFI_EXTRA := $(MBEDTLS_INC)
$(foreach d,$(HOSTDIR) $(RELDIR) $(FUZZDIR) $(EFIDIR),$(patsubst %.c,$(d)/obj/%.o,\
	$(MBEDTLS_USERS))): | $(MBEDTLS_HDR)

# The TLS unit tests link the library after libthinbox.a (net/tls/ calls into it).
$(HOSTDIR)/tests/tls/%: $(HOSTDIR)/obj/tests/unit/tls/%.o $(HOSTDIR)/libtestsupport.a \
		$(HOSTDIR)/libthinbox.a $(MBEDTLS_HOST_LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(HOST_CC) $(HOST_LDFLAGS) -o $@ $^ $(HOST_LIBS)

# The TLS fuzzer (tests/fuzz/fuzz_tls.c) links the fuzz build's archive.
$(FUZZDIR)/fuzz_tls: $(FUZZDIR)/obj/tests/fuzz/fuzz_tls.o $(FUZZDIR)/libthinbox.a $(MBEDTLS_FUZZ_LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $^

.PRECIOUS: $(MBEDTLS_HOST_OBJDIR)/%.o $(MBEDTLS_EFI_OBJDIR)/%.o $(MBEDTLS_REL_OBJDIR)/%.o \
	$(MBEDTLS_FUZZ_OBJDIR)/%.o

.PHONY: mbedtls mbedtls-dir
mbedtls: $(MBEDTLS_HOST_LIB) $(MBEDTLS_EFI_LIB)
mbedtls-dir:
	@echo $(MBEDTLS_DIR)

endif
