/* SPDX-License-Identifier: MIT */
/* The shell's editor, parser and dispatch, driven by scripted input on the host. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/shell.h"
#include "core/base/plat.h"
#include "core/base/util.h"
#include "core/base/walltime.h"
#include "tests/support/harness.h"

static char outbuf[65536];
static size_t outlen;

static void capture(void *ctx, const char *buf, size_t len)
{
	if (len > sizeof(outbuf) - 1 - outlen)
		len = sizeof(outbuf) - 1 - outlen;
	memcpy(outbuf + outlen, buf, len);
	outlen += len;
	outbuf[outlen] = '\0';
}

static struct shell *new_shell(void)
{
	static struct shell sh;

	shell_init(&sh, capture, NULL);
	outlen = 0;
	outbuf[0] = '\0';
	return &sh;
}

static void type(struct shell *sh, const char *s)
{
	while (*s)
		shell_input(sh, *s++);
}

static void clear_output(void)
{
	outlen = 0;
	outbuf[0] = '\0';
}

static int calls;
static int last_argc;
static char last_args[4][64];

static int cmd_echoargs(struct shell *sh, int argc, char **argv)
{
	calls++;
	last_argc = argc;
	for (int i = 0; i < argc && i < 4; i++)
		strncpy(last_args[i], argv[i], sizeof(last_args[i]) - 1);
	return argc > 3 ? shell_usage(sh, argv[0]) : 0;
}

static const struct shell_cmd test_cmds[] = {
	{ "echoargs", "[A] [B]", "record the arguments", cmd_echoargs },
};
static struct shell_cmd_table test_table = { test_cmds, 1, NULL };

static struct shell *shell_with_echo(void)
{
	struct shell *sh = new_shell();

	shell_add_commands(sh, &test_table);
	calls = 0;
	memset(last_args, 0, sizeof(last_args));
	return sh;
}

TEST(split_words_and_quotes)
{
	char line[128] = "  pool   format \"my vol\" a\\b \"q\\\"x\"  ";
	char *argv[8];

	ok_eq(shell_split(line, argv, 8), 5);
	ok(!strcmp(argv[0], "pool"));
	ok(!strcmp(argv[1], "format"));
	ok(!strcmp(argv[2], "my vol"));
	ok(!strcmp(argv[3], "a\\b"));
	ok(!strcmp(argv[4], "q\"x"));

	strcpy(line, "a \"unclosed");
	ok_eq(shell_split(line, argv, 8), -EINVAL);
	strcpy(line, "a b c");
	ok_eq(shell_split(line, argv, 2), -EINVAL);
	strcpy(line, "   ");
	ok_eq(shell_split(line, argv, 8), 0);
	strcpy(line, "x\"\"y");
	ok_eq(shell_split(line, argv, 8), 1);
	ok(!strcmp(argv[0], "xy"));
}

TEST(parse_sizes)
{
	unsigned long long v;

	ok(!shell_parse_size("4096", &v) && v == 4096);
	ok(!shell_parse_size("64K", &v) && v == 65536);
	ok(!shell_parse_size("10m", &v) && v == 10ull << 20);
	ok(!shell_parse_size("2G", &v) && v == 2ull << 30);
	ok(!shell_parse_size("1T", &v) && v == 1ull << 40);
	ok(!shell_parse_size("3GiB", &v) && v == 3ull << 30);
	ok(!shell_parse_size("5KB", &v) && v == 5120);
	ok(!shell_parse_size("12B", &v) && v == 12);
	ok_eq(shell_parse_size("", &v), -EINVAL);
	ok_eq(shell_parse_size("-1", &v), -EINVAL);
	ok_eq(shell_parse_size("1X", &v), -EINVAL);
	ok_eq(shell_parse_size("1.5G", &v), -EINVAL);
	ok_eq(shell_parse_size("G", &v), -EINVAL);
	ok_eq(shell_parse_size("18446744073709551616", &v), -ERANGE);
	ok_eq(shell_parse_size("17179869184G", &v), -ERANGE);
	ok(!shell_parse_size("16777215T", &v) && v == 16777215ull << 40);
}

TEST(format_sizes)
{
	char buf[32];

	format_size(512, buf, sizeof(buf));
	ok(!strcmp(buf, "512 B"));
	format_size(1536, buf, sizeof(buf));
	ok(!strcmp(buf, "1.5 KiB"));
	format_size(1ull << 30, buf, sizeof(buf));
	ok(!strcmp(buf, "1.0 GiB"));
	format_size(200ull << 20, buf, sizeof(buf));
	ok(!strcmp(buf, "200 MiB"));
}

TEST(unknown_command_is_an_error_and_the_shell_goes_on)
{
	struct shell *sh = shell_with_echo();

	type(sh, "frobnicate now\r");
	ok(strstr(outbuf, "error: unknown command 'frobnicate'") != NULL);
	ok_eq(sh->last_rc, -ENOENT);
	type(sh, "echoargs x\r");
	ok_eq(calls, 1);
	ok_eq(sh->last_rc, 0);
	ok(!strcmp(last_args[1], "x"));
}

TEST(bad_arguments_print_usage)
{
	struct shell *sh = shell_with_echo();

	type(sh, "version extra\r");
	ok(strstr(outbuf, "usage: version") != NULL);
	ok_eq(sh->last_rc, -EINVAL);
	clear_output();
	type(sh, "echoargs 1 2 3\r");
	ok(strstr(outbuf, "usage: echoargs [A] [B]") != NULL);
	clear_output();
	type(sh, "echoargs \"open\r");
	ok(strstr(outbuf, "error: unclosed quote") != NULL);
	ok_eq(calls, 1);
}

TEST(help_lists_every_command_and_explains_one)
{
	static const char *const names[] = { "help", "version",	 "uptime", "date",    "mem",
					     "pci",  "poweroff", "reboot", "echoargs" };
	struct shell *sh = shell_with_echo();

	type(sh, "help\r");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!ok(strstr(outbuf, names[i]) != NULL))
			fail("help does not list %s", names[i]);
	/* Built-ins come first, added tables after. */
	ok(strstr(outbuf, "help") < strstr(outbuf, "echoargs"));
	clear_output();
	type(sh, "help echoargs\r");
	ok(strstr(outbuf, "echoargs [A] [B]\r\n") != NULL || strstr(outbuf, "echoargs [A] [B]\n"));
	ok(strstr(outbuf, "record the arguments") != NULL);
	clear_output();
	type(sh, "help nosuch\r");
	ok(strstr(outbuf, "error: no command 'nosuch'") != NULL);
	ok_eq(sh->last_rc, -ENOENT);
}

TEST(version_and_uptime)
{
	struct shell *sh = new_shell();

	type(sh, "version\r");
	ok(strstr(outbuf, "thinbox ") != NULL);
	ok_eq(sh->last_rc, 0);
	clear_output();
	type(sh, "uptime\r");
	ok(strstr(outbuf, "up ") != NULL);
	ok_eq(sh->last_rc, 0);
}

/* `date` on the host: time() as UTC (within the command's own run) and the host name. */
TEST(date_prints_utc_and_host_name)
{
	struct shell *sh = new_shell();
	struct civil_time t;
	int y, mo, d, h, mi, sec, n = 0;
	char host[80] = "";
	uint64_t s, before = (uint64_t)time(NULL), after;

	type(sh, "date\r");
	after = (uint64_t)time(NULL);
	ok_eq(sh->last_rc, 0);
	if (!ok(sscanf(outbuf, "date%*[\r\n]%d-%d-%d %d:%d:%d UTC%*[\r\n]hostname %79s%n", &y, &mo,
		       &d, &h, &mi, &sec, host, &n) == 7)) {
		fail("output %s", outbuf);
		return;
	}
	t = (struct civil_time){ y, mo, d, h, mi, sec };
	ok_eq(civil_to_unix(&t, &s), 0);
	ok(s >= before && s <= after);
	ok(!strcmp(host, plat_hostname()));
	ok(hostname_valid(host));
	clear_output();
	type(sh, "date now\r");
	ok(strstr(outbuf, "usage: date") != NULL);
	ok_eq(sh->last_rc, -EINVAL);
}

TEST(hardware_commands_say_they_need_hardware_on_the_host)
{
	struct shell *sh = new_shell();

	type(sh, "mem\r");
	ok(strstr(outbuf, "mem: needs the appliance hardware") != NULL);
	ok_eq(sh->last_rc, -ENOTSUP);
	clear_output();
	type(sh, "pci\r");
	ok(strstr(outbuf, "pci: needs the appliance hardware") != NULL);
	clear_output();
	type(sh, "reboot\r");
	ok(strstr(outbuf, "reboot: needs the appliance hardware") != NULL);
	/* Still alive. */
	clear_output();
	type(sh, "version\r");
	ok(strstr(outbuf, "thinbox ") != NULL);
}

TEST(poweroff_stops_the_shell)
{
	struct shell *sh = new_shell();

	ok(!sh->stop);
	type(sh, "poweroff\r");
	ok(sh->stop);
	ok(strstr(outbuf, "powering off") != NULL);
}

TEST(backspace_and_ctrl_u_edit_the_line)
{
	struct shell *sh = shell_with_echo();

	type(sh, "echoargz\b\x7f"
		 "gs ab\bc\r");
	ok_eq(calls, 1);
	ok(!strcmp(last_args[0], "echoargs"));
	ok(!strcmp(last_args[1], "ac"));
	/* Ctrl-U throws the whole line away. */
	type(sh, "nonsense words\x15"
		 "echoargs y\r");
	ok_eq(calls, 2);
	ok(!strcmp(last_args[1], "y"));
	ok(strstr(outbuf, "unknown command") == NULL);
	/* Backspace on an empty line does nothing harmful. */
	type(sh, "\b\b\becho\x03");
	type(sh, "echoargs z\r");
	ok_eq(calls, 3);
	ok(!strcmp(last_args[1], "z"));
}

TEST(crlf_runs_a_line_once)
{
	struct shell *sh = shell_with_echo();

	type(sh, "echoargs a\r\n");
	type(sh, "echoargs b\n");
	type(sh, "\r\n\n");
	ok_eq(calls, 2);
}

TEST(history_up_and_down)
{
	struct shell *sh = shell_with_echo();

	type(sh, "echoargs first\r");
	type(sh, "echoargs second\r");
	/* Up, up, down: back to the newest, the second. */
	type(sh, "\x1b[A\x1b[A\x1b[B\r");
	ok_eq(calls, 3);
	ok(!strcmp(last_args[1], "second"));
	/* Repeating it added no copy: up twice reaches the first command. */
	type(sh, "\x1b[A\x1b[A\r");
	ok_eq(calls, 4);
	ok(!strcmp(last_args[1], "first"));
	/* Down past the newest gives an empty line; Up past the oldest stays there. */
	type(sh, "\x1b[A\x1b[B\r");
	ok_eq(calls, 4);
	type(sh, "\x1b[A\x1b[A\x1b[A\x1b[A\x1b[A\r");
	ok_eq(calls, 5);
	ok(!strcmp(last_args[1], "first"));
	/* An edited recalled line runs edited: "echoargs first" -> "echoargs firs" + "X". */
	type(sh, "\x1bOA\bX\r");
	ok(!strcmp(last_args[1], "firsX"));
}

TEST(history_keeps_the_newest_entries)
{
	struct shell *sh = shell_with_echo();
	char line[64];

	for (int i = 0; i < SHELL_HISTORY_MAX + 5; i++) {
		snprintf(line, sizeof(line), "echoargs %d\r", i);
		type(sh, line);
	}
	for (int i = 0; i < SHELL_HISTORY_MAX + 3; i++)
		type(sh, "\x1b[A");
	type(sh, "\r");
	snprintf(line, sizeof(line), "%d", 5);
	ok(!strcmp(last_args[1], line));
}

TEST(overlong_line_is_refused_not_truncated)
{
	struct shell *sh = shell_with_echo();
	char *line = malloc(SHELL_LINE_MAX + 20);

	memset(line, 'x', SHELL_LINE_MAX + 10);
	memcpy(line, "echoargs ", 9);
	line[SHELL_LINE_MAX + 10] = '\0';
	type(sh, line);
	type(sh, "\r");
	ok_eq(calls, 0);
	ok(strstr(outbuf, "line longer than") != NULL);
	type(sh, "echoargs ok\r");
	ok_eq(calls, 1);
	ok(shell_exec(sh, line) == -E2BIG);
	free(line);
}

TEST(binary_garbage_does_not_break_the_shell)
{
	struct shell *sh = shell_with_echo();
	uint64_t seed = test_seed();

	for (int i = 0; i < 200000; i++) {
		char c = (char)(test_rand(&seed) & 0xff);

		/* Garbage lines may run built-ins; never let them power the shell off. */
		if (c == '\r' || c == '\n')
			c = ' ';
		shell_input(sh, c);
	}
	shell_input(sh, '\x15');
	shell_input(sh, '\x1b');
	shell_input(sh, 'x');
	type(sh, "echoargs alive\r");
	ok(!strcmp(last_args[1], "alive"));
	ok(!sh->stop);
}
