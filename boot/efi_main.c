/* SPDX-License-Identifier: MIT */
/*
 * The firmware's entry point and composition root.
 *
 * Boot sequence (docs/firmware.md has the long version):
 *   1. Boot services still up: watchdog off, COM1, banner; PMBASE and TSC calibration;
 *      configuration inputs (fw_cfg opt/thinbox/..., \thinbox.cfg on our ESP) copied into
 *      loader-data memory, which stays ours afterwards.
 *   2. Memory map and ExitBootServices, retried when the map key went stale.
 *   3. On our own: IDT, the page allocator over all conventional memory (newlib's malloc
 *      sits on it), PCI enumeration, the virtio devices, the shell, the network (lwIP and the
 *      NBD server), the appliance (thin pool, volumes, exports), and the polled main loop.
 *
 * efi_main is called by gnu-efi's crt0 with the SysV ABI, so it must NOT be EFIAPI. Only this
 * file uses EFI types; boot services are gone once step 2 succeeds.
 */
#include <efi.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot/acpi.h"
#include "boot/bootcfg.h"
#include "boot/devices.h"
#include "boot/entropy.h"
#include "boot/exceptions.h"
#include "boot/io.h"
#include "boot/irq.h"
#include "boot/page_alloc.h"
#include "boot/perf_cmd.h"
#include "drivers/bus/pci.h"
#include "boot/plat_efi.h"
#include "boot/serial.h"
#include "boot/tls_cmd.h"
#include "boot/virtio_selftest.h"
#include "app/appliance.h"
#include "config/appliance_cmds.h"
#include "config/shell.h"
#include "core/base/perf.h"
#include "core/base/plat.h"
#include "core/base/sha256.h"
#include "core/base/util.h"
#include "core/base/version.h"
#include "core/base/walltime.h"
#include "net/nbd/nbd_server.h"
#include "net/lwip/nbd_lwip.h"
#include "net/lwip/netif_vnet.h"

EFI_STATUS efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st);

#define EBS_MAX_ATTEMPTS 8
#define MAP_SLACK_DESCS	 16 /* room for the map to grow between sizing and fetching it */
#define MAX_REGIONS	 256
#define ESP_CFG_MAX	 (64 * 1024)
#define TSC_CALIBRATE_MS 10 /* paired readings (boot/plat_efi.c), refined later */
#define TSC_STALL_MS	 50
#define STACK_PAGES	 256 /* 1 MiB */
/*
 * NBD limits for the firmware's memory (256 MiB machines, about 209 MiB of it conventional):
 * the server's defaults (64 MiB requests, 64 MiB of buffers per connection, 1 GiB for all)
 * are sized for the host build. Request buffers come from the heap, which only grows (sbrk),
 * beside the pool's buffers and caches, lwIP and the virtio rings: all connections together
 * hold at most 64 MiB (then requests wait), one connection 8 MiB (plus the request that
 * passes it), so several clients can each keep 8 MiB in flight. 4 MiB requests are plenty for nbdcopy, qemu-img, fio (they split to the
 * advertised maximum); a 64 MiB one would take the whole budget from every other client.
 */
#define NBD_FW_MAX_PAYLOAD	(4u << 20)
#define NBD_FW_MAX_CONN_BYTES	(8u << 20)
#define NBD_FW_MAX_SERVER_BYTES (64u << 20)

static EFI_BOOT_SERVICES *bs;

/* The NBD server: the appliance adds the thin volumes' exports to it (or the whole-disk test
 * switch its disk); nbd_tcp serves it over lwIP. NULL without a network. */
static struct nbd_server *nbd_srv;
static struct nbd_lwip *nbd_tcp;
/* The appliance: pool, configuration, volumes, exports (app/appliance.h). NULL without
 * both disks, or when a test switch exports a whole disk instead. */
static struct appliance *app;
/* Its shell commands, linked into the shell for as long as it runs. */
static struct appliance_cmds app_cmds;
/*
 * The boot breakdown (docs/firmware.md): TSC readings at the banner and at each stage up to
 * `thinbox: ready`, printed then, so a slower boot says where its time went.
 */
static uint64_t tsc_banner, tsc_app;
/* thinbox.cfg's TLS keys and the ESP files they name, read before ExitBootServices. */
static struct tls_fw_input tls_in;

static const char *config_value(const char *key, char *buf, size_t size);
static bool config_file_find(const char *key, const char **val, size_t *vlen);

/* ---- EFI helpers (boot services only) --------------------------------------------------- */

/* The one place EFI_STATUS becomes a negative errno. */
static int efi_errno(EFI_STATUS s)
{
	switch (s) {
	case EFI_SUCCESS:
		return 0;
	case EFI_INVALID_PARAMETER:
		return -EINVAL;
	case EFI_UNSUPPORTED:
		return -ENOTSUP;
	case EFI_BUFFER_TOO_SMALL:
	case EFI_BAD_BUFFER_SIZE:
		return -ENOBUFS;
	case EFI_OUT_OF_RESOURCES:
		return -ENOMEM;
	case EFI_NOT_FOUND:
		return -ENOENT;
	case EFI_ACCESS_DENIED:
	case EFI_WRITE_PROTECTED:
		return -EACCES;
	case EFI_NO_MEDIA:
	case EFI_MEDIA_CHANGED:
		return -ENODEV;
	case EFI_TIMEOUT:
		return -ETIMEDOUT;
	case EFI_NOT_READY:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

/* Loader-data memory: it stays ours after ExitBootServices (not conventional memory). */
static void *efi_alloc(size_t len)
{
	void *p = NULL;

	if (bs->AllocatePool(EfiLoaderData, len, &p) != EFI_SUCCESS)
		return NULL;
	return p;
}

/*
 * Read the file at ASCII @path (backslashes) on @root into loader memory, NUL-terminated:
 * 0, -ENOENT, -EFBIG when it holds more than @max bytes (refused, not cut short),
 * -ENAMETOOLONG, -ENOMEM, -EIO.
 */
static int esp_read(EFI_FILE_HANDLE root, const char *path, size_t max, char **out, size_t *outlen)
{
	CHAR16 wpath[160];
	EFI_FILE_HANDLE f;
	char *text;
	size_t len = 0, i;
	int rc;

	for (i = 0; path[i]; i++) {
		if (i + 1 >= sizeof(wpath) / sizeof(wpath[0]))
			return -ENAMETOOLONG;
		wpath[i] = (CHAR16)(unsigned char)path[i];
	}
	wpath[i] = 0;
	rc = efi_errno(root->Open(root, &f, wpath, EFI_FILE_MODE_READ, 0));
	if (rc)
		return rc;
	text = efi_alloc(max + 1);
	if (!text) {
		rc = -ENOMEM;
		goto out;
	}
	/* Read until end of file; a file that fills the buffer is refused, not cut short. */
	for (;;) {
		UINTN n = max + 1 - len;

		rc = efi_errno(f->Read(f, &n, text + len));
		if (rc)
			break;
		if (n == 0)
			break;
		len += n;
		if (len > max) {
			rc = -EFBIG;
			break;
		}
	}
	if (rc) {
		/* It may hold key bytes: wiped before it goes back to the firmware. */
		secure_wipe(text, max + 1);
		bs->FreePool(text);
	} else {
		text[len] = '\0';
		*out = text;
		*outlen = len;
	}
out:
	f->Close(f);
	return rc;
}

static int esp_open(EFI_HANDLE device, EFI_FILE_HANDLE *root)
{
	EFI_GUID fs_guid = SIMPLE_FILE_SYSTEM_PROTOCOL;
	EFI_FILE_IO_INTERFACE *fs;
	int rc;

	rc = efi_errno(bs->HandleProtocol(device, &fs_guid, (void **)&fs));
	if (rc)
		return rc;
	return efi_errno(fs->OpenVolume(fs, root));
}

/* Read \thinbox.cfg from the volume we were loaded from, if it is there. */
static int read_esp_config(EFI_HANDLE device)
{
	EFI_FILE_HANDLE root;
	char *text;
	size_t len;
	int rc;

	rc = esp_open(device, &root);
	if (rc)
		return rc;
	rc = esp_read(root, "\\thinbox.cfg", ESP_CFG_MAX, &text, &len);
	if (!rc)
		bootcfg_set_file(text, len);
	root->Close(root);
	return rc;
}

/*
 * As config_value(), but a value too long for @buf is returned whole from loader memory, so
 * it is refused as a bad value instead of being taken for an absent key (TLS off).
 */
static const char *tls_value(const char *key, char *buf, size_t size)
{
	const char *v = bootcfg_get(key), *p;
	size_t len;
	char *out = buf;

	if (v)
		return v;
	if (!config_file_find(key, &p, &len))
		return NULL;
	if (len >= size && !(out = efi_alloc(len + 1)))
		return NULL;
	memcpy(out, p, len);
	out[len] = '\0';
	return out;
}

/*
 * The TLS keys of the configuration and the files they name, read from the ESP now: it is
 * gone after ExitBootServices. Errors are kept per file for tls_fw_setup() to report (and
 * refuse TLS) once the console and entropy are up; nothing about the files is printed here.
 */
static void read_esp_tls(EFI_HANDLE device)
{
	static char mode[16], psk[TLS_FW_PATH_MAX], certs[TLS_FW_PATH_MAX], verify[16];
	EFI_FILE_HANDLE root = NULL;
	int rc;

	tls_in.mode = tls_value("tls", mode, sizeof(mode));
	tls_in.psk = tls_value("tls-psk", psk, sizeof(psk));
	tls_in.certs = tls_value("tls-certificates", certs, sizeof(certs));
	tls_in.verify = tls_value("tls-verify-peer", verify, sizeof(verify));
	tls_fw_plan(&tls_in);
	rc = device ? esp_open(device, &root) : -ENODEV;
	for (unsigned i = 0; i < TLS_FW_NFILES; i++) {
		struct tls_fw_file *f = &tls_in.files[i];

		if (!f->path[0])
			continue;
		f->rc = rc ? rc : esp_read(root, f->path, TLS_FW_FILE_MAX, &f->data, &f->len);
	}
	if (root)
		root->Close(root);
}

/*
 * Fetch the memory map and leave boot services. If the map changed after we fetched it
 * (EFI_INVALID_PARAMETER: stale key), fetch it again; only memory services are used between
 * attempts, and nothing is printed between the last GetMemoryMap and ExitBootServices.
 * @stale_key_test makes the first two attempts fail on purpose (test switch). *attempts is the
 * number of ExitBootServices calls made.
 */
static int exit_boot_services(EFI_HANDLE image, bool stale_key_test, EFI_MEMORY_DESCRIPTOR **map,
			      UINTN *map_size, UINTN *desc_size, int *attempts)
{
	EFI_MEMORY_DESCRIPTOR *buf = NULL;
	UINTN buf_size = 0;
	EFI_STATUS s = EFI_SUCCESS;
	int calls = 0; /* ExitBootServices calls made */

	for (int a = 1; a <= EBS_MAX_ATTEMPTS; a++) {
		UINTN size = buf_size, key, dsize;
		UINT32 ver;

		s = bs->GetMemoryMap(&size, buf, &key, &dsize, &ver);
		if (s == EFI_BUFFER_TOO_SMALL) {
			/* Growing the buffer changes the map itself: size it with slack, retry. */
			if (buf)
				bs->FreePool(buf);
			buf_size = size + MAP_SLACK_DESCS * dsize;
			buf = efi_alloc(buf_size);
			if (!buf)
				return -ENOMEM;
			continue;
		}
		if (s != EFI_SUCCESS)
			return efi_errno(s);
		if (stale_key_test && calls < 2) {
			EFI_PHYSICAL_ADDRESS page;

			/* Change the map behind our own back, as a driver's event could. */
			bs->AllocatePages(AllocateAnyPages, EfiLoaderData, 1, &page);
		}
		s = bs->ExitBootServices(image, key);
		calls++;
		if (s == EFI_SUCCESS) {
			*map = buf;
			*map_size = size;
			*desc_size = dsize;
			*attempts = calls;
			return 0;
		}
		if (s != EFI_INVALID_PARAMETER)
			return efi_errno(s);
	}
	return efi_errno(s);
}

/* ---- After ExitBootServices ------------------------------------------------------------- */

/* Hand every conventional-memory range to the page allocator (merging neighbours). */
static int take_memory(EFI_MEMORY_DESCRIPTOR *map, UINTN map_size, UINTN desc_size)
{
	struct page_region regions[MAX_REGIONS] = { 0 };
	size_t n = 0, dropped = 0;
	int rc;

	for (UINTN off = 0; off + desc_size <= map_size; off += desc_size) {
		EFI_MEMORY_DESCRIPTOR *d = (EFI_MEMORY_DESCRIPTOR *)((char *)map + off);
		uint64_t base = d->PhysicalStart, np = d->NumberOfPages;

		if (d->Type != EfiConventionalMemory || np == 0)
			continue;
		/* Never hand out page 0: a NULL pointer must stay an error, not memory. */
		if (base == 0) {
			base += PAGE_SIZE;
			np--;
		}
		if (np == 0)
			continue;
		if (n > 0 && regions[n - 1].base + regions[n - 1].npages * PAGE_SIZE == base) {
			regions[n - 1].npages += np;
		} else if (n < MAX_REGIONS) {
			regions[n++] = (struct page_region){ .base = base, .npages = np };
		} else {
			dropped += np;
		}
	}
	rc = page_alloc_init(regions, n);
	if (rc)
		return rc;
	if (dropped)
		plat_printf("thinbox: memory: %zu pages in regions past the first %d ignored\n",
			    dropped, MAX_REGIONS);
	return 0;
}

static void shell_write(void *ctx, const char *buf, size_t len)
{
	(void)ctx;
	plat_console_write(buf, len);
}

static void print_config_summary(void)
{
	const struct bootcfg_item *it;
	size_t len;

	for (unsigned i = 0; (it = bootcfg_item(i)) != NULL; i++)
		plat_printf("thinbox: fw_cfg %s%s (%zu bytes)\n", BOOTCFG_FWCFG_PREFIX, it->key,
			    it->len);
	if (bootcfg_file(&len))
		plat_printf("thinbox: config file \\thinbox.cfg (%zu bytes)\n", len);
	else
		plat_printf("thinbox: no config file \\thinbox.cfg on the ESP\n");
}

/*
 * The value of @key in a "@key=value" line of \thinbox.cfg (blanks around '=' allowed, '#'
 * starts a comment line; blanks around the value trimmed): its bytes at *@val, *@vlen. The
 * config layer will own the file's syntax; until then this is the whole of it.
 */
static bool config_file_find(const char *key, const char **val, size_t *vlen)
{
	const char *text, *line, *end;
	size_t klen = strlen(key), len;

	text = bootcfg_file(&len);
	for (line = text; line && line < text + len; line = end + 1) {
		const char *p = line, *q;

		end = memchr(line, '\n', (size_t)(text + len - line));
		if (!end)
			end = text + len;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if ((size_t)(end - p) <= klen || memcmp(p, key, klen) != 0)
			continue;
		p += klen;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p == end || *p++ != '=')
			continue;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		q = end;
		while (q > p && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\r'))
			q--;
		*val = p;
		*vlen = (size_t)(q - p);
		return true;
	}
	return false;
}

/*
 * A configuration value: fw_cfg opt/thinbox/@key first, else \thinbox.cfg's (config_file_find)
 * copied into @buf; NULL when absent or too long for @buf.
 */
static const char *config_value(const char *key, char *buf, size_t size)
{
	const char *v = bootcfg_get(key), *p;
	size_t len;

	if (v)
		return v;
	if (!config_file_find(key, &p, &len) || len >= size)
		return NULL;
	memcpy(buf, p, len);
	buf[len] = '\0';
	return buf;
}

/*
 * The configuration key @key as a whole number in [@min, @max]: true with *@out set; false
 * when the key is not set, or (after saying so, with @dflt as what is used instead) when its
 * value is not such a number.
 */
static bool config_uint(const char *key, unsigned long min, unsigned long max, unsigned long dflt,
			unsigned long *out)
{
	char buf[16];
	const char *v = config_value(key, buf, sizeof(buf));
	unsigned long n;
	char *end;

	if (!v)
		return false;
	n = strtoul(v, &end, 10);
	if (v[0] < '0' || v[0] > '9' || *end || n < min || n > max) {
		plat_printf("thinbox: %s = %s: want %lu..%lu; %lu is used\n", key, v, min, max,
			    dflt);
		return false;
	}
	*out = n;
	return true;
}

/* The ACPI RSDP from the EFI configuration table (2.0 preferred over 1.0), or NULL. */
static const void *find_rsdp(EFI_SYSTEM_TABLE *st)
{
	static const EFI_GUID acpi20 = ACPI_20_TABLE_GUID, acpi10 = ACPI_TABLE_GUID;
	const void *v1 = NULL;

	for (UINTN i = 0; i < st->NumberOfTableEntries; i++) {
		const EFI_CONFIGURATION_TABLE *t = &st->ConfigurationTable[i];

		if (memcmp(&t->VendorGuid, &acpi20, sizeof(acpi20)) == 0)
			return t->VendorTable;
		if (memcmp(&t->VendorGuid, &acpi10, sizeof(acpi10)) == 0)
			v1 = t->VendorTable;
	}
	return v1;
}

/*
 * The wall clock (the CMOS RTC, read once here; plat_wall_time() counts on from it with the
 * TSC) and the host name (configuration key `hostname`, checked for LVM's creation_host).
 */
static void clock_and_name_setup(void)
{
	static char name[256];
	struct civil_time t;
	const char *v = config_value("hostname", name, sizeof(name));
	int rc = rtc_boot_read(&t);

	if (rc)
		plat_printf("thinbox: clock: no wall time, the CMOS clock %s (%d)\n",
			    rc == -ENOTSUP ? "is missing" : "reads nonsense", rc);
	else
		plat_printf("thinbox: clock %04d-%02d-%02d %02d:%02d:%02d UTC (CMOS; century %s)\n",
			    t.year, t.month, t.day, t.hour, t.min, t.sec,
			    acpi_rtc_century() ? "register from the FADT" : "20 assumed");
	if (plat_set_hostname(v)) {
		/* Shown with anything unprintable as '?': it came from outside. */
		char shown[HOSTNAME_MAX + 2];
		size_t i;

		for (i = 0; v[i] && i < sizeof(shown) - 1; i++)
			shown[i] = v[i] >= 0x20 && v[i] < 0x7f ? v[i] : '?';
		shown[i] = '\0';
		plat_printf("thinbox: hostname '%s%s' is not 1..%d of [A-Za-z0-9.-]: using %s\n",
			    shown, v[i] ? "..." : "", HOSTNAME_MAX, plat_hostname());
	} else {
		plat_printf("thinbox: hostname %s\n", plat_hostname());
	}
}

static void appliance_log(void *ctx, const char *line)
{
	plat_printf("thinbox: %s\n", line);
}

/*
 * The appliance on the metadata and data disks, serving its exports on nbd_srv (NULL without
 * a network: the shell still manages the pool). First boot formats blank disks. Not started
 * when a test switch owns the raw disks (test-export-disk, test-selftest): those tests read
 * and write the disks themselves.
 */
/*
 * `poweroff` / `reboot` (plat_set_power_hook): commit the pool first, so writes the clients
 * saw acknowledged survive a clean shutdown even without their FLUSH; the periodic commit
 * would otherwise leave up to a commit interval of them behind, as a power cut does.
 */
static void appliance_power_hook(void)
{
	int rc;

	if (!app)
		return;
	rc = appliance_commit(app);
	if (rc)
		plat_printf("thinbox: pool commit before power-off failed (%d): writes since the "
			    "last commit may be lost\n",
			    rc);
	else
		plat_printf("thinbox: pool committed before power-off\n");
}

/*
 * The pool's metadata cache: an eighth of memory, between 4 and 32 MiB of 4 KiB blocks (6.5k
 * blocks with -m 256). Random I/O over a terabyte looks up leaves all over the mapping tree:
 * each miss is a synchronous read of the metadata disk, and 200,000 mappings need about 3,500
 * blocks (docs/firmware.md "Memory at 1 TiB").
 */
static unsigned meta_cache_blocks(void)
{
	struct plat_mem_info mi;
	uint64_t n;

	if (plat_mem_info(&mi))
		return 0; /* the metadata layer's default */
	n = mi.total_bytes / 8 / 4096;
	return (unsigned)MIN(MAX(n, (uint64_t)1024), (uint64_t)8192);
}

static void appliance_setup(struct shell *sh)
{
	struct appliance_opts ao;
	int rc;

	if (app)
		return;
	if (!devices_meta_disk() || !devices_data_disk()) {
		plat_printf("thinbox: appliance: needs a metadata and a data disk\n");
		return;
	}
	appliance_default_opts(&ao);
	ao.meta_disk = devices_meta_disk();
	ao.data_disk = devices_data_disk();
	ao.srv = nbd_srv;
	ao.log = appliance_log;
	/* Test switch: a long commit interval, so a test can tell the shutdown's commit from
	 * the periodic one (tests/qemu/appliance_session.t). */
	if (bootcfg_get("test-commit-interval-ms"))
		ao.pool_opts.commit_interval_ms =
		    (uint32_t)strtoul(bootcfg_get("test-commit-interval-ms"), NULL, 10);
	ao.pool_opts.meta_cache_blocks = meta_cache_blocks();
	tsc_app = rdtsc();
	rc = appliance_create(&ao, &app);
	tsc_app = rdtsc() - tsc_app;
	if (rc) {
		plat_printf("thinbox: appliance: not started (%d)\n", rc);
		return;
	}
	appliance_cmds_register(&app_cmds, app, sh);
	plat_set_power_hook(appliance_power_hook);
}

/*
 * The network: lwIP on the NIC, the NBD server on port 10809, the appliance's exports added
 * before it listens (without a network the appliance still starts, with no exports). Test
 * switch opt/thinbox/test-export-disk=data|meta exports that whole disk as "disk" (the
 * default export) instead, and the appliance is not started, so NBD is tested on a raw disk;
 * test-csum-offload=1 takes the TCP checksum offload path without a device that offers it
 * (docs/network.md).
 */
static void net_setup(struct shell *sh)
{
	static char ip[64], gw[64], host[64];
	struct net_config cfg = {
		.ip = config_value("ip", ip, sizeof(ip)),
		.gateway = config_value("gateway", gw, sizeof(gw)),
		.hostname = config_value("hostname", host, sizeof(host)),
		.test_csum_offload = bootcfg_get("test-csum-offload") != NULL,
	};
	unsigned long per_client;
	struct nbd_limits lim = { .max_payload = NBD_FW_MAX_PAYLOAD,
				  .max_conn_bytes = NBD_FW_MAX_CONN_BYTES,
				  .max_server_bytes = NBD_FW_MAX_SERVER_BYTES };
	const char *which = bootcfg_get("test-export-disk");
	int rc, tls_rc;

	if (config_uint("nbd-max-per-client", 1, NBD_DEFAULT_MAX_CONNS, NBD_DEFAULT_MAX_PER_CLIENT,
			&per_client))
		lim.max_per_client = (unsigned)per_client;
	if (!devices_nic()) {
		tls_fw_discard(&tls_in);
		plat_printf("thinbox: net: no NIC, no network\n");
		if (!which && !bootcfg_get("test-selftest"))
			appliance_setup(sh);
		return;
	}
	rc = net_start(devices_nic(), &cfg);
	if (rc) {
		tls_fw_discard(&tls_in);
		plat_printf("thinbox: net: not started (%d)\n", rc);
		if (!which && !bootcfg_get("test-selftest"))
			appliance_setup(sh);
		return;
	}
	devices_set_rx_handler(net_rx_frame, net_rx_batch_end, NULL);
	rc = nbd_server_create(&lim, &nbd_srv);
	if (rc)
		plat_panic("NBD server (%d)", rc);
	/* TLS as thinbox.cfg asks, before anyone can connect; refused TLS serves nothing. */
	tls_rc = tls_fw_setup(&tls_in, nbd_srv);
	/* Refusals (allow lists, the per-client cap) on the console. */
	nbd_server_set_log(nbd_srv, appliance_log, NULL);
	if (which) {
		struct blkdev *dev = strcmp(which, "meta") == 0	  ? devices_meta_disk()
				     : strcmp(which, "data") == 0 ? devices_data_disk()
								  : NULL;
		struct nbd_export_config ex = {
			.name = "disk",
			.description = "whole disk (test-export-disk)",
			.dev = dev,
		};

		rc = dev ? nbd_server_add_export(nbd_srv, &ex) : -ENODEV;
		plat_printf("thinbox: test-export-disk %s: %s (%d)\n", which,
			    rc ? "not exported" : "exported as disk", rc);
	}
	if (!which && !bootcfg_get("test-selftest"))
		appliance_setup(sh);
	if (tls_rc) {
		plat_printf("thinbox: nbd: not listening: TLS was configured and refused (%d)\n",
			    tls_rc);
		return;
	}
	rc = nbd_lwip_listen(nbd_srv, NBD_LWIP_PORT, &nbd_tcp);
	if (rc)
		plat_printf("thinbox: nbd: cannot listen on port %u (%d)\n", NBD_LWIP_PORT, rc);
	else
		plat_printf("thinbox: nbd listening on port %u\n", NBD_LWIP_PORT);
}

/*
 * Idle: after IDLE_SPELL_NS without progress the loop halts until an interrupt (docs/firmware.md,
 * "Idle"). 2 ms is above the gap between two requests of one client at queue depth 1 under
 * TCG (its whole round trip took 1.0-1.5 ms in the bench, most of it outside the guest), so
 * such a client seldom meets a halt, and an idle machine spends at most one spell polling after
 * each burst of work; idle-spell-ms makes it longer. A halt lasts at most CONSOLE_TICK_NS
 * (DEEP_TICK_NS once the machine has been quiet for DEEP_IDLE_NS, below): the serial console
 * has no interrupt wired, so a typed byte waits up to one tick, and every other deadline
 * (lwIP's timers are capped below; the pool's commit interval and no-space timeout count in
 * seconds) is met within it.
 */
#define IDLE_SPELL_NS	  (2 * NSEC_PER_MSEC)
#define IDLE_SPELL_MAX_MS 1000
#define IDLE_SPELL_GROWTH 16 /* the spell grows up to this many times its base */
#define CONSOLE_TICK_NS	  (10 * NSEC_PER_MSEC)
/*
 * After DEEP_IDLE_NS without any work the halt lasts up to DEEP_TICK_NS instead: each timer
 * wake-up costs QEMU's process some host CPU, and an appliance idle for long made 100 of them
 * a second for nothing. Only the first byte typed into such a quiet machine waits the longer
 * tick (the next pass reads the console again at once); a device still ends the halt at once.
 */
#define DEEP_IDLE_NS (1 * NSEC_PER_SEC)
#define DEEP_TICK_NS (50 * NSEC_PER_MSEC)
/*
 * The UART's line status is read at most every CONSOLE_POLL_NS, not on every pass: each read
 * is a port-I/O exit (600-9,000 cycles under TCG, 2-12% of the wall in the bench's jobs,
 * docs/performance.md). After a byte the next pass reads again, so typed or pasted input
 * drains at the loop's pace; a 16550's 16-byte FIFO holds 1.4 ms at 115200 baud, and QEMU's
 * holds the rest back in its character device until the FIFO has room, so nothing is lost.
 */
#define CONSOLE_POLL_NS (1 * NSEC_PER_MSEC)

/*
 * The wait spell: when the loop has nothing to do but wait on its disks (requests in flight,
 * every one announced by the disk's interrupt), it halts after WAIT_SPELL_NS without progress
 * instead of spinning until the completion (docs/firmware.md, "Idle"). Under TCG each
 * spinning pass is host CPU charged to the vCPU and taken from QEMU's own threads, which do
 * the disk I/O and the networking; a data-disk request takes ~1-2 ms there.
 * 200 us is above what a 4 KiB read from a cached image takes, so a QD1 client's reads seldom
 * meet a halt: a shorter spell (50 us) halted on such waits, whose wake-up cost more than it
 * saved (docs/performance.md). The configuration key wait-spell-us (0..10000) sets it; 0
 * spins as before.
 */
#define WAIT_SPELL_NS	  (200 * NSEC_PER_USEC)
#define WAIT_SPELL_MAX_US 10000
static uint64_t wait_spell_ns = WAIT_SPELL_NS;
static bool wait_halt = true;

/* Poll for ever, never halt: `idle poll`, or from boot the test switch opt/thinbox/test-no-hlt
 * (the bench's "before" figures, as before the idle halt). */
static bool idle_no_hlt;
/*
 * The idle spell's base: IDLE_SPELL_NS, or the configuration key idle-spell-ms (1..1000); and
 * the spell now, which adapts as KVM's halt polling does: a halt that a device ended means
 * traffic is flowing and the halt came too early (on a loaded host a halted vCPU thread also
 * waits to be scheduled again), so the spell doubles, up to IDLE_SPELL_GROWTH times the base;
 * a halt that the timer ended means the machine is idle, so it halves, down to the base.
 */
static uint64_t idle_spell_ns = IDLE_SPELL_NS;
static uint64_t idle_spell_now = IDLE_SPELL_NS;

/* The configuration key idle-spell-ms, when set: a host under heavy load may want longer. */
static void idle_spell_setup(void)
{
	unsigned long ms;

	if (!config_uint("idle-spell-ms", 1, IDLE_SPELL_MAX_MS, IDLE_SPELL_NS / NSEC_PER_MSEC, &ms))
		return;
	idle_spell_ns = ms * NSEC_PER_MSEC;
	idle_spell_now = idle_spell_ns;
}

/* The configuration key wait-spell-us, when set. */
static void wait_spell_setup(void)
{
	unsigned long us;

	if (!config_uint("wait-spell-us", 0, WAIT_SPELL_MAX_US, WAIT_SPELL_NS / NSEC_PER_USEC, &us))
		return;
	wait_halt = us > 0;
	wait_spell_ns = us * NSEC_PER_USEC;
}

/* What the loop does when it has no work, as one line (the boot log and `idle`). */
static void idle_describe(char *buf, size_t size)
{
	if (!irq_ready())
		snprintf(buf, size, "no local APIC wake-ups; the loop polls");
	else if (idle_no_hlt)
		snprintf(buf, size, "the loop polls, never halts");
	else
		snprintf(buf, size, "halt after %u ms without work, %u us waiting on disks",
			 (unsigned)(idle_spell_ns / NSEC_PER_MSEC),
			 wait_halt ? (unsigned)(wait_spell_ns / NSEC_PER_USEC) : 0);
}

/*
 * `idle [poll|halt]`: how the loop idles, and a switch for it. Polling for ever suits a host
 * that gives the appliance a core of its own and wants no wake-up in any request's path; it
 * also lets one boot compare the two (linux-vm.bench, QD1 in one boot), where separate boots
 * differ by more than the halt does. Without wake-ups there is no halting to switch on.
 */
static int cmd_idle(struct shell *sh, int argc, char **argv)
{
	char line[96];

	if (argc == 2 && strcmp(argv[1], "poll") == 0) {
		idle_no_hlt = true;
	} else if (argc == 2 && strcmp(argv[1], "halt") == 0) {
		if (!irq_ready()) {
			shell_printf(sh, "idle: cannot halt: no local APIC wake-ups\n");
			return -ENODEV;
		}
		idle_no_hlt = false;
	} else if (argc != 1) {
		return shell_usage(sh, argv[0]);
	}
	idle_describe(line, sizeof(line));
	shell_printf(sh, "idle: %s\n", line);
	return 0;
}

static int cmd_clock(struct shell *sh, int argc, char **argv)
{
	char line[160];

	if (argc != 1)
		return shell_usage(sh, argv[0]);
	tsc_describe(line, sizeof(line));
	shell_printf(sh, "clock: %s\n", line);
	return 0;
}

/* The main loop's and the clock's commands. */
static const struct shell_cmd loop_cmds[] = {
	{ "idle", "[poll|halt]",
	  "how the loop idles: halt after a spell without work (the default) or poll for ever",
	  cmd_idle },
	{ "clock", "", "the TSC's rate and how it was measured", cmd_clock },
};

static struct shell_cmd_table loop_table = { loop_cmds, ARRAY_SIZE(loop_cmds), NULL };

/*
 * Halt until a device, the console tick or lwIP's next timer needs the CPU; @quiet_ns is how
 * long the loop has found no work (the tick is longer after DEEP_IDLE_NS). 1 when a device
 * (or anything but the timer) ended the halt, 0 when the timer did, -1 when there was no halt.
 */
static int idle_sleep(uint64_t quiet_ns)
{
	uint64_t ns = quiet_ns >= DEEP_IDLE_NS ? DEEP_TICK_NS : CONSOLE_TICK_NS;
	uint32_t ms = net_next_timer_ms();
	int rc = -1;

	if (ms == 0)
		return -1;
	if ((uint64_t)ms * NSEC_PER_MSEC < ns)
		ns = (uint64_t)ms * NSEC_PER_MSEC;
	/* Armed first, then checked: a completion that slipped in is polled, not slept on. */
	if (!devices_wake_arm()) {
		bool timer;

		perf_begin();
		timer = irq_sleep(ns);
		perf_end(PERF_HALT, 0);
		/* Ended by the timer with a completion waiting: its interrupt did not come. */
		if (timer && devices_wake_arm())
			irq_count_late_wake();
		rc = !timer;
	}
	devices_wake_disarm();
	return rc;
}

/*
 * The main loop: everything is polled. Console bytes go to the shell; then the drivers
 * (received frames go into lwIP from here), the NBD connections and server, lwIP's timers.
 * Nothing sleeps while the NBD server or the pool has work for the CPU, or waits on a device
 * that does not announce its completions. While it only waits on the disks, the CPU halts
 * after the wait spell without progress; with nothing at all in flight, after the idle spell
 * (both idle_sleep()).
 */
__attribute__((noreturn)) static void main_loop(struct shell *sh)
{
	uint64_t last_progress = plat_now_ns();
	uint64_t next_console = 0;
	int c = -1;

	perf_reset(); /* `perf` counts from the first pass until `perf reset` */

	for (;;) {
		struct perf_pass pass;
		bool busy, progress;
		uint64_t now;
		int n;

		/* The pass is measured, and each poll in it; a pass that found nothing counts
		 * whole as idle-poll (core/base/perf.h). */
		perf_pass_begin(&pass);
		if (c >= 0 || plat_now_ns() >= next_console) {
			perf_poll_begin();
			c = plat_console_getc();
			perf_poll_end(PERF_CONSOLE);
			next_console = plat_now_ns() + CONSOLE_POLL_NS;
			tsc_refine(); /* on the console's slow cadence: mostly one TSC read */
		} else {
			c = -1;
		}
		/* Work for the CPU: a request inside a disk that will interrupt is not. */
		busy = (nbd_srv && nbd_server_busy(nbd_srv)) || (app && appliance_needs_cpu(app));
		progress = c >= 0 || busy;
		if (c >= 0)
			shell_input(sh, (char)c);
		else if (!busy && !devices_io_pending())
			cpu_relax(); /* a wait polls as before until its spell is over */
		perf_poll_begin();
		n = devices_poll();
		perf_poll_end(PERF_DEV_POLL);
		if (n > 0)
			progress = true;
		if (nbd_tcp) {
			perf_poll_begin();
			nbd_lwip_poll(nbd_tcp);
			perf_poll_end(PERF_NBD_POLL);
		}
		/* The pool's I/O and its periodic commit. */
		if (app) {
			perf_poll_begin();
			if (appliance_poll(app) > 0)
				progress = true;
			perf_poll_end(PERF_POOL_POLL);
		}
		perf_poll_begin();
		net_poll();
		perf_poll_end(PERF_LWIP_TIMERS);
		/* One doorbell per queue for what this pass placed on the rings. */
		devices_flush();

		now = plat_now_ns();
		if (progress) {
			/* Diagnostics (perf): work after a long quiet spell, halted or not. */
			if (now - last_progress >= CONSOLE_TICK_NS)
				irq_count_long_spell();
			last_progress = now;
			perf_pass_work();
			continue;
		}
		/* Only the disks are awaited: their interrupt ends the halt (or the halt's timer). */
		if (devices_io_pending()) {
			if (wait_halt && !idle_no_hlt && now - last_progress >= wait_spell_ns &&
			    idle_sleep(now - last_progress) >= 0)
				irq_count_wait_sleep(plat_now_ns() - now);
			perf_pass_wait(&pass);
			continue;
		}
		if (!idle_no_hlt && now - last_progress >= idle_spell_now) {
			int woke = idle_sleep(now - last_progress);

			if (woke > 0 && idle_spell_now < idle_spell_ns * IDLE_SPELL_GROWTH)
				idle_spell_now *= 2;
			else if (woke == 0 && idle_spell_now > idle_spell_ns)
				idle_spell_now /= 2;
		}
		perf_pass_idle(&pass);
	}
}

/* Milliseconds and tenths of @cycles TSC counts, as "%u.%u". */
#define BOOT_MS(cycles)                                                                            \
	(unsigned)((cycles)*10 / (tsc_hz() / 1000) / 10),                                          \
	    (unsigned)((cycles)*10 / (tsc_hz() / 1000) % 10)

/* The rest of the boot, on our own stack. */
__attribute__((noreturn)) static void after_ebs(void *arg)
{
	const char *fault;
	char idle_line[96];
	struct shell *sh;
	uint64_t t_ebs = rdtsc(), t_dev, t_net, t_ready;
	int rc;

	(void)arg;
	print_config_summary();
	clock_and_name_setup();

	fault = bootcfg_get("test-fault");
	if (fault) {
		plat_printf("thinbox: test-fault %s\n", fault);
		rc = exceptions_trigger(fault);
		plat_printf("thinbox: test-fault %s did not fault (%d)\n", fault, rc);
	}

	rc = pci_scan();
	if (rc)
		plat_panic("PCI scan failed (%d)", rc);
	plat_printf("thinbox: pci %u functions\n", pci_count());
	/* Wake-ups before the devices, whose MSI-X entries aim at them. */
	rc = irq_init();
	idle_no_hlt = bootcfg_get("test-no-hlt") != NULL;
	idle_spell_setup();
	wait_spell_setup();
	idle_describe(idle_line, sizeof(idle_line));
	if (rc)
		plat_printf("thinbox: idle: %s (%d)\n", idle_line, rc);
	else
		plat_printf("thinbox: idle: %s%s; APIC timer %llu kHz\n", idle_line,
			    idle_no_hlt ? " (test-no-hlt)" : "",
			    (unsigned long long)irq_timer_per_ms());
	/* The virtio drivers; a missing disk is reported and the shell still comes up. */
	devices_probe();
	t_dev = rdtsc();
	/* Entropy next: virtio-rng is up, and TLS (later) must know before it listens. */
	entropy_setup();

	/* The shell is about 17 KiB: from the heap, since .bss would sit in the .efi file. */
	sh = malloc(sizeof(*sh));
	if (!sh)
		plat_panic("no memory for the shell");
	shell_init(sh, shell_write, NULL);
	devices_shell_init(sh);
	entropy_shell_init(sh);
	tls_cmd_init(sh);
	perf_cmd_init(sh);
	shell_add_commands(sh, &loop_table);
	/* Test switch: the virtio self-test commands (tests/qemu/virtio_*.t, virtio.bench). */
	if (bootcfg_get("test-selftest"))
		virtio_selftest_init(sh);
	t_net = rdtsc();
	net_setup(sh);
	/* One reading: BOOT_MS() evaluates its argument twice (milliseconds, then tenths). */
	t_ready = rdtsc();
	plat_printf("thinbox: boot: firmware %u.%u ms, pci and devices %u.%u ms, entropy and "
		    "shell %u.%u ms, appliance %u.%u ms, net %u.%u ms; banner to ready %u.%u ms\n",
		    BOOT_MS(t_ebs - tsc_banner), BOOT_MS(t_dev - t_ebs), BOOT_MS(t_net - t_dev),
		    BOOT_MS(tsc_app), BOOT_MS(t_ready - t_net - tsc_app),
		    BOOT_MS(t_ready - tsc_banner));
	plat_printf("thinbox: ready\n");
	shell_prompt(sh);
	main_loop(sh);
}

/* Continue in @fn(@arg) on the stack ending at @top (16-byte aligned); never returns. */
__attribute__((noreturn)) static void switch_stack(void *top, void (*fn)(void *), void *arg)
{
	/* After `call`, fn sees rsp % 16 == 8 as the ABI wants; rbp = 0 ends backtraces. */
	__asm__ volatile("mov %0, %%rsp\n\t"
			 "xor %%ebp, %%ebp\n\t"
			 "call *%1\n\t"
			 "ud2"
			 :
			 : "r"(top), "r"(fn), "D"(arg)
			 : "memory");
	__builtin_unreachable();
}

EFI_STATUS efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st)
{
	EFI_GUID li_guid = LOADED_IMAGE_PROTOCOL;
	EFI_LOADED_IMAGE *li = NULL;
	EFI_MEMORY_DESCRIPTOR *map = NULL;
	UINTN map_size = 0, desc_size = 1;
	uint64_t image_base = 0;
	struct page_stats ps;
	char *stack;
	int rc, attempts = 0;

	bs = st->BootServices;
	/* The boot manager armed a 5-minute watchdog for us; we never return to it. */
	bs->SetWatchdogTimer(0, 0, 0, NULL);

	serial_init();
	serial_puts("\nthinbox: BANNER " THINBOX_NAME " " THINBOX_VERSION "\n");
	tsc_banner = rdtsc();

	rc = acpi_init();
	if (rc == 0)
		rc = tsc_calibrate_pm(TSC_CALIBRATE_MS);
	if (rc) {
		/* No PM timer: time boot services' Stall() instead (it overshoots under load). */
		uint64_t t0 = rdtsc();

		bs->Stall(TSC_STALL_MS * 1000);
		tsc_set_hz((rdtsc() - t0) * 1000 / TSC_STALL_MS);
		plat_printf("thinbox: no ACPI PM timer (%d); TSC calibrated with Stall()\n", rc);
	}

	/* The tables stay in ACPI memory after ExitBootServices; only one byte is wanted. */
	rc = acpi_tables_init(find_rsdp(st));
	if (rc)
		plat_printf("thinbox: no ACPI FADT (%d): the RTC's century is assumed 20\n", rc);

	if (bs->HandleProtocol(image, &li_guid, (void **)&li) == EFI_SUCCESS && li) {
		image_base = (uint64_t)(uintptr_t)li->ImageBase;
		rc = read_esp_config(li->DeviceHandle);
		if (rc && rc != -ENOENT)
			plat_printf("thinbox: reading \\thinbox.cfg failed (%d)\n", rc);
	}
	rc = bootcfg_load_fwcfg(efi_alloc);
	if (rc)
		plat_printf("thinbox: reading fw_cfg failed (%d)\n", rc);
	/* After both configuration sources: the TLS keys may come from either. */
	read_esp_tls(li ? li->DeviceHandle : NULL);

	rc = exit_boot_services(image, bootcfg_get("test-stalekey") != NULL, &map, &map_size,
				&desc_size, &attempts);
	if (rc) {
		plat_printf("thinbox: ExitBootServices failed (%d)\n", rc);
		return EFI_ABORTED;
	}
	bs = NULL;
	plat_printf("thinbox: EBS OK attempts=%d map=%zu descriptors\n", attempts,
		    (size_t)(map_size / desc_size));

	/* Where this image runs: exception reports and scripts/tbprof map addresses with it. */
	plat_printf("thinbox: image at %#llx\n", (unsigned long long)image_base);
	exceptions_init(image_base);
	rc = take_memory(map, map_size, desc_size);
	if (rc)
		plat_panic("no usable memory for the page allocator (%d)", rc);
	page_alloc_stats(&ps);
	plat_printf("thinbox: memory %llu MiB conventional in %u regions; TSC %llu MHz\n",
		    (unsigned long long)(ps.total_pages * PAGE_SIZE >> 20), ps.regions,
		    (unsigned long long)(tsc_hz() / 1000000));

	/* Leave OVMF's stack (the spec promises only 128 KiB) for a 1 MiB one of our own. */
	stack = page_alloc(STACK_PAGES);
	if (!stack)
		plat_panic("no memory for the stack");
	switch_stack(stack + STACK_PAGES * PAGE_SIZE, after_ebs, NULL);
}
