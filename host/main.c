/* SPDX-License-Identifier: MIT */
/*
 * build/host/thinbox: the appliance as a Linux program. The composition root of the host
 * build, as boot/efi_main.c is of the firmware: it parses the command line, opens the disks,
 * and runs one polled main loop over the console (and, in later issues, the network).
 *
 * It runs until `poweroff`, SIGINT or SIGTERM. At the end of its input it stops too, unless
 * it also serves network clients; then it keeps serving until told to stop.
 *
 * With --meta and --data it runs the appliance (app/appliance.h) on those two files, with
 * the firmware's first-boot behaviour, serving its exports on --listen (default
 * 127.0.0.1:10809). With --listen/--export it also serves plain files. The main loop polls
 * the console, the sockets and the pool together.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "app/appliance.h"
#include "config/appliance_cmds.h"
#include "config/shell.h"
#include "core/base/plat.h"
#include "core/base/util.h"
#include "core/base/version.h"
#include "host/hostdev.h"
#include "host/nbd_sock.h"
#include "host/plat_host.h"
#include "net/nbd/nbd_server.h"
#include "net/tls/tls_server.h"

#define DEFAULT_LISTEN	"127.0.0.1:10809"
#define MAX_EXPORT_ARGS 64
/*
 * After a pass that found work, the loop keeps polling without sleeping for up to
 * DEFAULT_SPIN_US before poll() may block (--spin-us). A client at queue depth 1 sends its next
 * request microseconds after our reply; asleep by then, we pay a wake-up from another core,
 * which on a virtual machine whose idle cores halt took about 40 us (4 KiB random reads at QD1
 * here: 18k IOPS, against nbdkit's 33k, whose thread the scheduler mostly ran on the client's
 * core; polling on for 20-100 us gave 40-45k). The cost is bounded: at most the spin after each
 * burst of work, nothing while idle (docs/nbd.md "--spin-us", docs/performance.md "Queue
 * depth 1").
 */
#define DEFAULT_SPIN_US 50
#define MAX_SPIN_US	10000

struct options {
	const char *meta_path;
	const char *data_path;
	bool serving; /* network clients are served: end of input does not stop us */
	const char *listen;
	const char *exports[MAX_EXPORT_ARGS]; /* NAME=FILE[,ro][,tls] */
	unsigned nexports;
	/* nbdkit's names: --tls, --tls-psk, --tls-certificates, --tls-verify-peer */
	enum nbd_tls_mode tls;
	const char *tls_psk;
	const char *tls_certs;
	bool tls_verify_peer;
	unsigned max_per_client; /* 0: the server's default */
	unsigned spin_us;	 /* polling on after work before sleeping (0: never) */
};

/* A file served over NBD: the device, and a second descriptor for SEEK_DATA/SEEK_HOLE. */
struct file_export {
	struct blkdev *dev;
	int fd;
};

static struct termios saved_tio;
static bool tio_saved;

static void usage(FILE *f)
{
	fprintf(
	    f, "usage: thinbox [--meta FILE] [--data FILE] [--listen ADDR:PORT]\n"
	       "               [--export NAME=FILE[,ro][,tls]]... [--tls=off|on|require]\n"
	       "               [--tls-psk=FILE] [--tls-certificates=DIR] [--tls-verify-peer]\n"
	       "               [--max-per-client N] [--spin-us N]\n"
	       "  --meta FILE               the metadata disk (a file)\n"
	       "  --data FILE               the data disk (a file); with --meta: run the\n"
	       "                            appliance (a blank pair is formatted at first boot)\n"
	       "  --listen ADDR:PORT        serve NBD on this address (default " DEFAULT_LISTEN "\n"
	       "                            with the disks or --export); port 0 picks a free port\n"
	       "  --export NAME=FILE[,ro][,tls]  serve FILE as NBD export NAME (read-only with\n"
	       "                            ,ro; over TLS only with ,tls); repeatable, the first\n"
	       "                            one is the default export\n"
	       "  --tls=off|on|require      NBD over TLS (STARTTLS): off (default), on (plain\n"
	       "                            and TLS clients), require (TLS before anything else)\n"
	       "  --tls-psk=FILE            PSK keys, psktool's IDENTITY:HEXKEY lines\n"
	       "  --tls-certificates=DIR    X.509: DIR/server-cert.pem, DIR/server-key.pem,\n"
	       "                            DIR/ca-cert.pem (for --tls-verify-peer)\n"
	       "  --tls-verify-peer         clients must present a certificate signed by\n"
	       "                            ca-cert.pem\n"
	       "  --max-per-client N        NBD connections at once from one client address\n"
	       "                            (default 16; `nbd set max-per-client` changes it)\n"
	       "  --spin-us N               after work, poll this long before sleeping: a\n"
	       "                            client's next request finds the loop awake\n"
	       "                            (0..10000, default 50; 0: sleep at once)\n"
	       "  --help                    this text\n"
	       "Runs the admin shell on this terminal until 'poweroff', SIGINT or SIGTERM.\n"
	       "While serving NBD, the end of input does not stop it.\n");
}

/* @arg as a whole number in [@min, @max] into *@out; -EINVAL (said) for anything else. */
static int parse_uint_opt(const char *name, const char *arg, unsigned long min, unsigned long max,
			  unsigned *out)
{
	char *end;
	unsigned long n = strtoul(arg, &end, 10);

	if (arg[0] < '0' || arg[0] > '9' || *end || n < min || n > max) {
		fprintf(stderr, "thinbox: --%s wants %lu..%lu\n", name, min, max);
		return -EINVAL;
	}
	*out = (unsigned)n;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "meta", required_argument, NULL, 'm' },
		{ "data", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		{ "export", required_argument, NULL, 'e' },
		{ "tls", required_argument, NULL, 't' },
		{ "tls-psk", required_argument, NULL, 'p' },
		{ "tls-certificates", required_argument, NULL, 'c' },
		{ "tls-verify-peer", no_argument, NULL, 'v' },
		{ "max-per-client", required_argument, NULL, 'n' },
		{ "spin-us", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->spin_us = DEFAULT_SPIN_US;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			o->meta_path = optarg;
			break;
		case 'd':
			o->data_path = optarg;
			break;
		case 'l':
			o->listen = optarg;
			break;
		case 'e':
			if (o->nexports == MAX_EXPORT_ARGS) {
				fprintf(stderr, "thinbox: at most %d exports\n", MAX_EXPORT_ARGS);
				return -EINVAL;
			}
			o->exports[o->nexports++] = optarg;
			break;
		case 't':
			if (!strcmp(optarg, "off"))
				o->tls = NBD_TLS_OFF;
			else if (!strcmp(optarg, "on"))
				o->tls = NBD_TLS_ON;
			else if (!strcmp(optarg, "require"))
				o->tls = NBD_TLS_REQUIRE;
			else {
				fprintf(stderr,
					"thinbox: --tls wants off, on or require, not '%s'\n",
					optarg);
				return -EINVAL;
			}
			break;
		case 'p':
			o->tls_psk = optarg;
			break;
		case 'c':
			o->tls_certs = optarg;
			break;
		case 'v':
			o->tls_verify_peer = true;
			break;
		case 'n':
			if (parse_uint_opt("max-per-client", optarg, 1, NBD_DEFAULT_MAX_CONNS,
					   &o->max_per_client))
				return -EINVAL;
			break;
		case 's':
			if (parse_uint_opt("spin-us", optarg, 0, MAX_SPIN_US, &o->spin_us))
				return -EINVAL;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "thinbox: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return -EINVAL;
	}
	if (!o->meta_path != !o->data_path) {
		fprintf(stderr, "thinbox: --meta and --data go together\n");
		return -EINVAL;
	}
	/* Credentials without --tls would leave a plain server the user thinks is protected. */
	if (o->tls == NBD_TLS_OFF && (o->tls_psk || o->tls_certs || o->tls_verify_peer)) {
		fprintf(stderr, "thinbox: --tls-psk, --tls-certificates and --tls-verify-peer need "
				"--tls=on or --tls=require\n");
		return -EINVAL;
	}
	if (o->tls != NBD_TLS_OFF && !o->tls_psk && !o->tls_certs) {
		fprintf(stderr,
			"thinbox: --tls=%s needs --tls-psk=FILE or --tls-certificates=DIR\n",
			o->tls == NBD_TLS_ON ? "on" : "require");
		return -EINVAL;
	}
	if (o->tls_verify_peer && !o->tls_certs) {
		fprintf(stderr, "thinbox: --tls-verify-peer needs --tls-certificates=DIR\n");
		return -EINVAL;
	}
	if ((o->nexports || o->meta_path) && !o->listen)
		o->listen = DEFAULT_LISTEN;
	o->serving = o->listen != NULL;
	return 0;
}

/* base:allocation for a file: its holes, from SEEK_DATA/SEEK_HOLE. */
static int file_extents(void *ctx, uint64_t offset, uint64_t length, struct nbd_extent *ext,
			unsigned max)
{
	struct file_export *fe = ctx;
	uint64_t end = offset + length, pos = offset;
	unsigned n = 0;

	while (pos < end && n < max) {
		off_t data = lseek(fe->fd, (off_t)pos, SEEK_DATA);
		off_t next;

		if (data < 0 && errno != ENXIO)
			break;
		if (data < 0 || (uint64_t)data >= end) {
			/* A hole to the end of the range (ENXIO: no data after pos at all). */
			ext[n++] =
			    (struct nbd_extent){ end - pos, NBD_STATE_HOLE | NBD_STATE_ZERO };
			pos = end;
			break;
		}
		if ((uint64_t)data > pos) {
			ext[n++] = (struct nbd_extent){ (uint64_t)data - pos,
							NBD_STATE_HOLE | NBD_STATE_ZERO };
			pos = (uint64_t)data;
			continue;
		}
		next = lseek(fe->fd, (off_t)pos, SEEK_HOLE);
		if (next < 0 || (uint64_t)next <= pos)
			next = (off_t)end;
		ext[n++] = (struct nbd_extent){ MIN((uint64_t)next, end) - pos, 0 };
		pos = MIN((uint64_t)next, end);
	}
	if (!n) /* the file system cannot tell: report data, which is always safe */
		ext[n++] = (struct nbd_extent){ length, 0 };
	return (int)n;
}

static void file_release(void *ctx, struct blkdev *dev)
{
	struct file_export *fe = ctx;

	blkdev_destroy(fe->dev);
	close(fe->fd);
	free(fe);
}

/* --export NAME=FILE[,ro][,tls] */
static int add_file_export(struct nbd_server *srv, const char *arg, bool tls_on)
{
	struct nbd_export_config cfg;
	struct file_export *fe;
	char name[NBD_MAX_NAME + 1], path[4096];
	const char *eq = strchr(arg, '=');
	size_t pl;
	bool ro = false, tls_only = false;
	int rc;

	if (!eq || eq == arg || (size_t)(eq - arg) > NBD_MAX_NAME) {
		fprintf(stderr, "thinbox: --export wants NAME=FILE[,ro], not '%s'\n", arg);
		return -EINVAL;
	}
	memcpy(name, arg, (size_t)(eq - arg));
	name[eq - arg] = '\0';
	pl = strlen(eq + 1);
	/* The suffixes, in either order. */
	for (;;) {
		if (pl >= 3 && !strncmp(eq + 1 + pl - 3, ",ro", 3) && !ro) {
			ro = true;
			pl -= 3;
		} else if (pl >= 4 && !strncmp(eq + 1 + pl - 4, ",tls", 4) && !tls_only) {
			tls_only = true;
			pl -= 4;
		} else {
			break;
		}
	}
	if (tls_only && !tls_on) {
		fprintf(stderr,
			"thinbox: --export %s: a TLS-only export needs --tls=on or "
			"--tls=require\n",
			arg);
		return -EINVAL;
	}
	if (!pl || pl >= sizeof(path)) {
		fprintf(stderr, "thinbox: --export %s: no file\n", arg);
		return -EINVAL;
	}
	memcpy(path, eq + 1, pl);
	path[pl] = '\0';
	fe = calloc(1, sizeof(*fe));
	if (!fe)
		return -ENOMEM;
	rc = filedisk_open(path, 512, false, 0, &fe->dev);
	if (rc) {
		fprintf(stderr, "thinbox: cannot serve '%s': %s\n", path,
			rc == -EINVAL ? "empty or not a file" : strerror(-rc));
		free(fe);
		return rc;
	}
	/* Which backend serves it: io_uring, or the worker threads where the kernel refuses. */
	plat_printf("nbd: export '%s': file I/O through %s\n", name,
		    filedisk_backend_name(filedisk_backend(fe->dev)));
	fe->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fe->fd < 0) {
		rc = -errno;
		blkdev_destroy(fe->dev);
		free(fe);
		return rc;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.name = name;
	cfg.description = path;
	cfg.dev = fe->dev;
	cfg.read_only = ro;
	cfg.tls_only = tls_only;
	cfg.extents = file_extents;
	cfg.release = file_release;
	cfg.ctx = fe;
	rc = nbd_server_add_export(srv, &cfg);
	if (rc) {
		fprintf(stderr, "thinbox: cannot add export '%s': %s\n", name,
			rc == -EEXIST ? "name already used" : strerror(-rc));
		file_release(fe, fe->dev);
		return rc;
	}
	return 0;
}

/* Open one of the appliance's disks (512-byte blocks, as virtio-blk in the firmware). */
static int open_disk(const char *role, const char *path, struct blkdev **out)
{
	int rc = filedisk_open(path, 512, false, 0, out);

	if (rc)
		fprintf(stderr, "thinbox: cannot open %s disk '%s': %s\n", role, path,
			rc == -EINVAL ? "empty or not a file" : strerror(-rc));
	return rc;
}

/* `pool resize-data`: the data file may have grown since it was opened. */
static int data_size_changed(void *ctx, struct blkdev *data)
{
	const char *path = ctx;
	struct stat stbuf;

	if (stat(path, &stbuf))
		return -errno;
	/* filedisk does positioned I/O on the file: a larger nr_blocks is all it needs. */
	data->nr_blocks = (uint64_t)stbuf.st_size / data->block_size;
	return 0;
}

/* A credentials file, whole: at most 1 MiB (keys and certificates are a few KiB). */
static int read_whole(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 1024 * 1024, n;
	char *buf;
	int rc;

	if (!f)
		return -errno;
	buf = malloc(cap + 1);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(buf, 1, cap + 1, f);
	rc = ferror(f) ? -EIO : n > cap ? -EFBIG : 0;
	fclose(f);
	if (rc) {
		free(buf);
		return rc;
	}
	*out = buf;
	*len = n;
	return 0;
}

static void tls_log(void *ctx, const char *line)
{
	plat_printf("%s\n", line);
}

/* The path DIR/NAME into @buf. */
static const char *in_dir(char *buf, size_t size, const char *dir, const char *name)
{
	snprintf(buf, size, "%s/%s", dir, name);
	return buf;
}

/* --tls-psk, --tls-certificates: the TLS server and its credentials; messages on stderr. */
static int setup_tls(const struct options *o, struct tls_server **out)
{
	struct tls_server_opts to = { .log = tls_log };
	char err[256], path[3][4200];
	char *file[3] = { NULL, NULL, NULL };
	size_t len[3] = { 0, 0, 0 };
	struct tls_server *ts;
	int rc, i;

	rc = tls_server_create(&to, &ts, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "thinbox: --tls: %s\n", err);
		return rc;
	}
	if (o->tls_psk) {
		rc = read_whole(o->tls_psk, &file[0], &len[0]);
		if (rc) {
			fprintf(stderr, "thinbox: --tls-psk: cannot read '%s': %s\n", o->tls_psk,
				strerror(-rc));
			goto fail;
		}
		rc = tls_server_load_psk(ts, file[0], len[0], err, sizeof(err));
		memset(file[0], 0, len[0]);
		free(file[0]);
		file[0] = NULL;
		if (rc) {
			fprintf(stderr, "thinbox: --tls-psk: %s: %s\n", o->tls_psk, err);
			goto fail;
		}
	}
	if (o->tls_certs) {
		static const char *const names[3] = { "server-cert.pem", "server-key.pem",
						      "ca-cert.pem" };

		for (i = 0; i < 3; i++) {
			in_dir(path[i], sizeof(path[i]), o->tls_certs, names[i]);
			rc = read_whole(path[i], &file[i], &len[i]);
			/* ca-cert.pem is needed only to verify clients. */
			if (rc == -ENOENT && i == 2 && !o->tls_verify_peer) {
				rc = 0;
				continue;
			}
			if (rc) {
				fprintf(stderr,
					"thinbox: --tls-certificates: cannot read '%s': %s\n",
					path[i], strerror(-rc));
				goto fail;
			}
		}
		rc = tls_server_load_x509(ts, file[2], len[2], file[0], len[0], file[1], len[1],
					  o->tls_verify_peer, err, sizeof(err));
		if (rc) {
			fprintf(stderr, "thinbox: --tls-certificates: %s: %s\n", o->tls_certs, err);
			goto fail;
		}
	}
	*out = ts;
	rc = 0;
	goto done;
fail:
	tls_server_destroy(ts);
done:
	for (i = 0; i < 3; i++) {
		if (file[i])
			memset(file[i], 0, len[i]);
		free(file[i]);
	}
	return rc;
}

static void appliance_log(void *ctx, const char *line)
{
	plat_printf("%s\n", line);
}

static void on_signal(int sig)
{
	plat_host_request_stop();
}

static void restore_terminal(void)
{
	if (tio_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
}

/* On a terminal, take bytes as they are typed so the shell's line editor sees every key. */
static void setup_terminal(void)
{
	struct termios tio;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tio))
		return;
	tio_saved = true;
	atexit(restore_terminal);
	tio = saved_tio;
	tio.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ISIG);
	tio.c_iflag &= ~(tcflag_t)(ICRNL | IXON);
	tio.c_cc[VMIN] = 1;
	tio.c_cc[VTIME] = 0;
	tcsetattr(STDIN_FILENO, TCSANOW, &tio);
}

static void console_write(void *ctx, const char *buf, size_t len)
{
	plat_console_write(buf, len);
}

int main(int argc, char **argv)
{
	struct options opt;
	struct sigaction sa;
	struct nbd_server *srv = NULL;
	struct tls_server *tls = NULL;
	struct nbd_sock *ns = NULL;
	struct blkdev *meta = NULL, *data = NULL;
	struct appliance *app = NULL;
	struct appliance_cmds app_cmds;
	struct pollfd *fds = NULL;
	struct shell *sh = NULL;
	bool input_open = true;
	bool worked = false; /* the last pass found work: poll on before sleeping */
	unsigned i, maxfds = 1;
	int rc, status = 1;

	rc = parse_options(argc, argv, &opt);
	if (rc)
		return 2;
	/*
	 * The NBD server keeps finished requests' buffers (up to 64 MiB each) on its own free
	 * lists and frees them only past its buffer limit or at exit (docs/nbd.md "Memory").
	 * What it does free, glibc would give back to the kernel at once (a trim of the heap's
	 * top, or munmap) and fault in again at the next allocation: before the free lists,
	 * measured as one brk() per request and fresh zeroed pages under every read. Keep freed
	 * memory; 32 MiB is the largest mmap threshold glibc takes.
	 */
	mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
	plat_printf("%s %s (host build)\n", THINBOX_NAME, THINBOX_VERSION);
	if (opt.meta_path && (open_disk("metadata", opt.meta_path, &meta) ||
			      open_disk("data", opt.data_path, &data)))
		goto out;

	if (opt.serving) {
		struct nbd_limits lim = { .max_per_client = opt.max_per_client };

		rc = nbd_server_create(&lim, &srv);
		if (rc) {
			fprintf(stderr, "thinbox: nbd: %s\n", strerror(-rc));
			goto out;
		}
		if (opt.tls != NBD_TLS_OFF) {
			struct nbd_tls_config tc;

			if (setup_tls(&opt, &tls))
				goto out;
			rc = tls_server_nbd_config(tls, opt.tls, &tc);
			if (!rc)
				rc = nbd_server_set_tls(srv, &tc);
			if (rc) {
				fprintf(stderr, "thinbox: --tls: %s\n", strerror(-rc));
				goto out;
			}
		}
		/* Refusals (allow lists, the per-client cap) on the console. */
		nbd_server_set_log(srv, appliance_log, NULL);
		for (i = 0; i < opt.nexports; i++)
			if (add_file_export(srv, opt.exports[i], opt.tls != NBD_TLS_OFF))
				goto out;
		rc = nbd_sock_listen(srv, opt.listen, &ns);
		if (rc) {
			fprintf(stderr, "thinbox: cannot listen on '%s': %s\n", opt.listen,
				rc == -EINVAL ? "bad address (want ADDR:PORT)" : strerror(-rc));
			goto out;
		}
		maxfds += nbd_sock_max_fds(ns);
	}
	if (meta) {
		struct appliance_opts ao;

		appliance_default_opts(&ao);
		ao.meta_disk = meta;
		ao.data_disk = data;
		ao.srv = srv;
		ao.log = appliance_log;
		ao.data_size_changed = data_size_changed;
		ao.data_size_ctx = (void *)opt.data_path;
		rc = appliance_create(&ao, &app);
		if (rc) {
			if (rc == -EINVAL)
				fprintf(
				    stderr,
				    "thinbox: the metadata disk is too small (at least %u MiB)\n",
				    APPLIANCE_MIN_META_BYTES >> 20);
			else
				fprintf(stderr, "thinbox: %s\n", strerror(-rc));
			goto out;
		}
	}
	fds = calloc(maxfds, sizeof(*fds));
	if (!fds)
		goto out;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	setup_terminal();
	fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);

	/* The shell holds its history inline (~16 KiB): keep it off the stack. */
	sh = malloc(sizeof(*sh));
	if (!sh)
		goto out;
	shell_init(sh, console_write, NULL);
	if (app)
		appliance_cmds_register(&app_cmds, app, sh);
	if (ns && opt.tls != NBD_TLS_OFF) {
		const char *id;

		plat_printf("nbd: tls %s:", opt.tls == NBD_TLS_ON ? "on" : "require");
		for (i = 0; (id = tls_server_psk_identity(tls, i)); i++)
			plat_printf("%s PSK identity '%s'", i ? "," : "", id);
		if (opt.tls_certs)
			plat_printf("%s X.509 from %s%s", i ? "," : "", opt.tls_certs,
				    opt.tls_verify_peer ? ", client certificates verified" : "");
		plat_printf("\n");
	}
	if (ns)
		plat_printf("nbd: listening on %s\n", nbd_sock_address(ns));
	shell_prompt(sh);

	while (!plat_host_stop_requested() && !sh->stop) {
		unsigned nfds = 0, nsock = 0;
		int c, n, timeout = 100;

		if (!input_open && !opt.serving)
			break;
		if (input_open) {
			fds[0] = (struct pollfd){ .fd = STDIN_FILENO, .events = POLLIN };
			nfds = 1;
		}
		if (ns) {
			nsock = nbd_sock_pollfds(ns, fds + nfds, maxfds - nfds);
			timeout = nbd_sock_timeout_ms(ns, timeout);
		}
		if (app && appliance_busy(app))
			timeout = 0;
		n = plat_host_poll(fds, nfds + nsock, timeout, worked ? opt.spin_us * 1000ull : 0);
		if (n < 0 && errno != EINTR)
			break;
		worked = n > 0 || timeout == 0;
		if (ns)
			nbd_sock_process(ns, fds + nfds, nsock);
		if (app)
			appliance_poll(app);
		while (input_open && !sh->stop && (c = plat_console_getc()) != -EAGAIN) {
			if (c < 0) {
				/* A last line without its newline still counts. */
				if (sh->len)
					shell_input(sh, '\n');
				input_open = false;
				break;
			}
			shell_input(sh, (char)c);
		}
	}
	plat_printf("\nthinbox: stopped\n");
	status = 0;
out:
	nbd_sock_close(ns);
	/* The appliance commits and closes the pool once the connections are gone. */
	appliance_destroy(app);
	nbd_server_destroy(srv);
	tls_server_destroy(tls);
	blkdev_destroy(data);
	blkdev_destroy(meta);
	free(fds);
	free(sh);
	return status;
}
