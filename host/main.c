/* SPDX-License-Identifier: MIT */
/*
 * build/host/thinbox: the appliance as a Linux program. The composition root of the host
 * build, as boot/efi_main.c is of the firmware: it parses the command line, opens the disks,
 * and runs one polled main loop over the console (and, in later issues, the network).
 *
 * It runs until `poweroff`, SIGINT or SIGTERM. At the end of its input it stops too, unless
 * it also serves network clients; then it keeps serving until told to stop.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "config/shell.h"
#include "core/base/plat.h"
#include "core/base/version.h"
#include "host/plat_host.h"

struct options {
	const char *meta_path;
	const char *data_path;
	bool serving; /* network clients are served: end of input does not stop us */
};

static struct termios saved_tio;
static bool tio_saved;

static void usage(FILE *f)
{
	fprintf(f, "usage: thinbox [--meta FILE] [--data FILE]\n"
		   "  --meta FILE   the metadata disk (a file)\n"
		   "  --data FILE   the data disk (a file)\n"
		   "  --help        this text\n"
		   "Runs the admin shell on this terminal until 'poweroff', SIGINT or SIGTERM.\n");
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "meta", required_argument, NULL, 'm' },
		{ "data", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			o->meta_path = optarg;
			break;
		case 'd':
			o->data_path = optarg;
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
	return 0;
}

/* The disks are only checked here; the pool that uses them arrives with later issues. */
static int check_disk(const char *role, const char *path)
{
	int fd;

	if (!path)
		return 0;
	fd = open(path, O_RDWR);
	if (fd < 0) {
		int rc = -errno;

		fprintf(stderr, "thinbox: cannot open %s disk '%s': %s\n", role, path,
			strerror(errno));
		return rc;
	}
	close(fd);
	return 0;
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
	struct shell *sh;
	bool input_open = true;
	int rc;

	rc = parse_options(argc, argv, &opt);
	if (rc)
		return 2;
	if (check_disk("metadata", opt.meta_path) || check_disk("data", opt.data_path))
		return 1;

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
		return 1;
	shell_init(sh, console_write, NULL);
	plat_printf("%s %s (host build)\n", THINBOX_NAME, THINBOX_VERSION);
	shell_prompt(sh);

	while (!plat_host_stop_requested() && !sh->stop) {
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		int c;

		if (!input_open && !opt.serving)
			break;
		if (poll(&pfd, input_open ? 1 : 0, 100) < 0 && errno != EINTR)
			break;
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
	free(sh);
	return 0;
}
