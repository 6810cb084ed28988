/* SPDX-License-Identifier: MIT */
/*
 * The admin shell: line editor, word splitting, dispatch over command tables, and the
 * built-in machine commands. See config/shell.h for the contract.
 *
 * The editor is a small state machine over single bytes, because the serial console delivers
 * bytes, not lines, and a terminal's arrow keys arrive as three-byte escape sequences.
 */
#include "config/shell.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/base/plat.h"
#include "core/base/util.h"
#include "core/base/version.h"
#include "core/base/walltime.h"

#define CTRL(c) ((c)&0x1f)
#define ESC	0x1b
#define DEL	0x7f

/* ---- Output ---------------------------------------------------------------------------- */

static void out(struct shell *sh, const char *buf, size_t len)
{
	if (len)
		sh->write(sh->ctx, buf, len);
}

void shell_puts(struct shell *sh, const char *s)
{
	out(sh, s, strlen(s));
}

int shell_printf(struct shell *sh, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return n;
	/* A longer message is cut rather than split into a heap allocation: output is advisory. */
	out(sh, buf, MIN((size_t)n, sizeof(buf) - 1));
	return n;
}

/* ---- Command lookup -------------------------------------------------------------------- */

static const struct shell_cmd *find_cmd(const struct shell *sh, const char *name)
{
	for (const struct shell_cmd_table *t = sh->tables; t; t = t->next)
		for (size_t i = 0; i < t->count; i++)
			if (!strcmp(t->cmds[i].name, name))
				return &t->cmds[i];
	return NULL;
}

int shell_usage(struct shell *sh, const char *name)
{
	const struct shell_cmd *cmd = find_cmd(sh, name);

	if (cmd)
		shell_printf(sh, "usage: %s%s%s\n", cmd->name, cmd->usage[0] ? " " : "",
			     cmd->usage);
	return -EINVAL;
}

/* ---- Parsing --------------------------------------------------------------------------- */

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

int shell_split(char *line, char **argv, int max)
{
	char *r = line, *w = line;
	int argc = 0;

	for (;;) {
		while (is_space(*r))
			r++;
		if (!*r)
			break;
		if (argc == max)
			return -EINVAL;
		argv[argc++] = w;
		/* Copy one word, dropping quotes and escapes; w never overtakes r. */
		while (*r && !is_space(*r)) {
			if (*r != '"') {
				*w++ = *r++;
				continue;
			}
			r++;
			while (*r && *r != '"') {
				if (*r == '\\' && (r[1] == '"' || r[1] == '\\'))
					r++;
				*w++ = *r++;
			}
			if (*r != '"')
				return -EINVAL;
			r++;
		}
		if (*r)
			r++;
		*w++ = '\0';
	}
	return argc;
}

int shell_parse_size(const char *s, unsigned long long *out)
{
	unsigned long long v = 0, mult = 1;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (~0ull - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	switch (*p | 0x20) {
	case 'k':
		mult = 1ull << 10;
		break;
	case 'm':
		mult = 1ull << 20;
		break;
	case 'g':
		mult = 1ull << 30;
		break;
	case 't':
		mult = 1ull << 40;
		break;
	default:
		break;
	}
	if (mult != 1) {
		p++;
		if ((*p | 0x20) == 'i' && (p[1] | 0x20) == 'b')
			p += 2;
		else if ((*p | 0x20) == 'b')
			p++;
	} else if ((*p | 0x20) == 'b') {
		p++;
	}
	if (*p)
		return -EINVAL;
	if (v > ~0ull / mult)
		return -ERANGE;
	*out = v * mult;
	return 0;
}

/* ---- Dispatch -------------------------------------------------------------------------- */

static int run_words(struct shell *sh, int argc, char **argv)
{
	const struct shell_cmd *cmd;

	if (argc == 0)
		return 0;
	cmd = find_cmd(sh, argv[0]);
	if (!cmd) {
		shell_printf(sh, "error: unknown command '%s' (type 'help' for the list)\n",
			     argv[0]);
		return -ENOENT;
	}
	return cmd->fn(sh, argc, argv);
}

int shell_exec(struct shell *sh, const char *line)
{
	char buf[SHELL_LINE_MAX + 1];
	char *argv[SHELL_ARGS_MAX];
	size_t len = strlen(line);
	int argc;

	if (len > SHELL_LINE_MAX) {
		shell_printf(sh, "error: line longer than %d characters\n", SHELL_LINE_MAX);
		return sh->last_rc = -E2BIG;
	}
	memcpy(buf, line, len + 1);
	argc = shell_split(buf, argv, SHELL_ARGS_MAX);
	if (argc < 0) {
		shell_printf(sh, "error: unclosed quote or more than %d words\n", SHELL_ARGS_MAX);
		return sh->last_rc = argc;
	}
	return sh->last_rc = run_words(sh, argc, argv);
}

/* ---- Line editor ----------------------------------------------------------------------- */

void shell_prompt(struct shell *sh)
{
	shell_puts(sh, SHELL_PROMPT);
}

static void history_add(struct shell *sh, const char *line)
{
	unsigned newest = (sh->hist_head + SHELL_HISTORY_MAX - 1) % SHELL_HISTORY_MAX;

	/* Repeating the previous command should not fill the history with copies. */
	if (sh->hist_count && !strcmp(sh->history[newest], line))
		return;
	memcpy(sh->history[sh->hist_head], line, strlen(line) + 1);
	sh->hist_head = (sh->hist_head + 1) % SHELL_HISTORY_MAX;
	if (sh->hist_count < SHELL_HISTORY_MAX)
		sh->hist_count++;
}

/* Replace the line being edited with @s, redrawing it on the terminal. */
static void replace_line(struct shell *sh, const char *s)
{
	/* CR, prompt, new text, then erase whatever the old text left to the right. */
	shell_puts(sh, "\r" SHELL_PROMPT);
	sh->len = strlen(s);
	memcpy(sh->line, s, sh->len);
	out(sh, sh->line, sh->len);
	shell_puts(sh, "\x1b[K");
	sh->overflow = false;
}

static void history_step(struct shell *sh, int dir)
{
	int pos = sh->hist_pos + dir;

	if (pos < -1 || pos >= (int)sh->hist_count)
		return;
	sh->hist_pos = pos;
	if (pos == -1) {
		replace_line(sh, "");
		return;
	}
	replace_line(sh, sh->history[(sh->hist_head + SHELL_HISTORY_MAX - 1 - (unsigned)pos) %
				     SHELL_HISTORY_MAX]);
}

static void end_line(struct shell *sh)
{
	shell_puts(sh, "\r\n");
	if (sh->overflow) {
		shell_printf(sh, "error: line longer than %d characters, ignored\n",
			     SHELL_LINE_MAX);
	} else {
		sh->line[sh->len] = '\0';
		/* A blank line is not worth a history slot. */
		if (strspn(sh->line, " \t") != sh->len)
			history_add(sh, sh->line);
		shell_exec(sh, sh->line);
	}
	sh->len = 0;
	sh->overflow = false;
	sh->hist_pos = -1;
	if (!sh->stop)
		shell_prompt(sh);
}

void shell_input(struct shell *sh, char ch)
{
	unsigned char c = (unsigned char)ch;
	bool was_cr = sh->last_was_cr;

	sh->last_was_cr = false;
	if (sh->esc == 1) {
		sh->esc = c == '[' || c == 'O' ? 2 : 0;
		return;
	}
	if (sh->esc == 2) {
		/* Parameters and intermediates continue the sequence; a final byte ends it. */
		if (c >= 0x20 && c <= 0x3f)
			return;
		sh->esc = 0;
		if (c == 'A')
			history_step(sh, +1);
		else if (c == 'B')
			history_step(sh, -1);
		return;
	}

	switch (c) {
	case '\r':
		sh->last_was_cr = true;
		end_line(sh);
		return;
	case '\n':
		if (!was_cr)
			end_line(sh);
		return;
	case ESC:
		sh->esc = 1;
		return;
	case '\b':
	case DEL:
		if (sh->len) {
			sh->len--;
			shell_puts(sh, "\b \b");
		}
		return;
	case CTRL('U'):
		replace_line(sh, "");
		return;
	case CTRL('C'):
		shell_puts(sh, "^C\r\n");
		sh->len = 0;
		sh->overflow = false;
		sh->hist_pos = -1;
		shell_prompt(sh);
		return;
	default:
		break;
	}
	if (c < 0x20)
		return; /* other control bytes have no meaning here */
	if (sh->len == SHELL_LINE_MAX) {
		sh->overflow = true;
		return;
	}
	sh->line[sh->len++] = (char)c;
	out(sh, (const char *)&c, 1);
}

/* ---- Built-in commands ----------------------------------------------------------------- */

static int cmd_help(struct shell *sh, int argc, char **argv)
{
	if (argc > 2)
		return shell_usage(sh, argv[0]);
	if (argc == 2) {
		const struct shell_cmd *cmd = find_cmd(sh, argv[1]);

		if (!cmd) {
			shell_printf(sh, "error: no command '%s'\n", argv[1]);
			return -ENOENT;
		}
		shell_printf(sh, "%s%s%s\n  %s\n", cmd->name, cmd->usage[0] ? " " : "", cmd->usage,
			     cmd->help);
		return 0;
	}
	for (const struct shell_cmd_table *t = sh->tables; t; t = t->next)
		for (size_t i = 0; i < t->count; i++) {
			char head[64];

			snprintf(head, sizeof(head), "%s%s%s", t->cmds[i].name,
				 t->cmds[i].usage[0] ? " " : "", t->cmds[i].usage);
			shell_printf(sh, "  %-28s %s\n", head, t->cmds[i].help);
		}
	return 0;
}

static int no_args(struct shell *sh, int argc, char **argv)
{
	return argc == 1 ? 0 : shell_usage(sh, argv[0]);
}

static int cmd_version(struct shell *sh, int argc, char **argv)
{
	int rc = no_args(sh, argc, argv);

	if (!rc)
		shell_printf(sh, "%s %s on %s\n", THINBOX_NAME, THINBOX_VERSION, plat_name());
	return rc;
}

static int cmd_uptime(struct shell *sh, int argc, char **argv)
{
	int rc = no_args(sh, argc, argv);
	uint64_t ms = plat_now_ns() / NSEC_PER_MSEC;

	if (!rc)
		shell_printf(
		    sh, "up %" PRIu64 "d %02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 ".%03" PRIu64 "\n",
		    ms / 86400000, ms / 3600000 % 24, ms / 60000 % 60, ms / 1000 % 60, ms % 1000);
	return rc;
}

/* The wall clock (what LVM's creation_time records) and the host name (creation_host). */
static int cmd_date(struct shell *sh, int argc, char **argv)
{
	struct civil_time t;
	uint64_t now;
	int rc = no_args(sh, argc, argv);

	if (rc)
		return rc;
	rc = plat_wall_time(&now);
	if (!rc && unix_to_civil(now, &t))
		rc = -EIO; /* past year 9999: nonsense too */
	if (rc)
		shell_printf(sh, "unknown: %s (%s)\n",
			     rc == -ENOTSUP ? "no real-time clock"
					    : "the real-time clock reads nonsense",
			     strerror(-rc));
	else
		shell_printf(sh, "%04d-%02d-%02d %02d:%02d:%02d UTC\n", t.year, t.month, t.day,
			     t.hour, t.min, t.sec);
	shell_printf(sh, "hostname %s\n", plat_hostname());
	return rc;
}

static int needs_hardware(struct shell *sh, const char *what, int rc)
{
	if (rc == -ENOTSUP)
		shell_printf(sh, "%s: needs the appliance hardware (not available on %s)\n", what,
			     plat_name());
	else
		shell_printf(sh, "%s: failed: %s\n", what, strerror(-rc));
	return rc;
}

static int cmd_mem(struct shell *sh, int argc, char **argv)
{
	struct plat_mem_info mi;
	char total[32], free_[32], heap[32];
	int rc = no_args(sh, argc, argv);

	if (rc)
		return rc;
	rc = plat_mem_info(&mi);
	if (rc)
		return needs_hardware(sh, "mem", rc);
	format_size(mi.total_bytes, total, sizeof(total));
	format_size(mi.free_bytes, free_, sizeof(free_));
	format_size(mi.heap_bytes, heap, sizeof(heap));
	shell_printf(sh, "memory: %s total, %s free, %s heap, %u regions\n", total, free_, heap,
		     mi.regions);
	return 0;
}

static const char *pci_class_name(uint8_t class_code, uint8_t subclass)
{
	switch (class_code) {
	case 0x01:
		return subclass == 0x06 ? "SATA controller" : "storage controller";
	case 0x02:
		return "network controller";
	case 0x03:
		return "display controller";
	case 0x06:
		return subclass == 0x00	  ? "host bridge"
		       : subclass == 0x01 ? "ISA bridge"
					  : "bridge";
	case 0x0c:
		return subclass == 0x05 ? "SMBus controller" : "serial bus controller";
	default:
		return "device";
	}
}

static int cmd_pci(struct shell *sh, int argc, char **argv)
{
	struct plat_pci_info p;
	unsigned i;
	int rc = no_args(sh, argc, argv);

	if (rc)
		return rc;
	for (i = 0;; i++) {
		rc = plat_pci_get(i, &p);
		if (rc == -ENOENT)
			break;
		if (rc)
			return needs_hardware(sh, "pci", rc);
		shell_printf(sh, "%02x:%02x.%x %04x:%04x class %02x%02x%02x %s\n", p.bus, p.dev,
			     p.fn, p.vendor, p.device, p.class_code, p.subclass, p.prog_if,
			     pci_class_name(p.class_code, p.subclass));
		for (unsigned b = 0; b < ARRAY_SIZE(p.bar); b++) {
			char size[32];

			if (!p.bar[b].size)
				continue;
			format_size(p.bar[b].size, size, sizeof(size));
			shell_printf(sh, "    BAR%u %s%s%s 0x%" PRIx64 " (%s)\n", b,
				     p.bar[b].is_io ? "io" : "mem",
				     p.bar[b].is_io   ? ""
				     : p.bar[b].is_64 ? "64"
						      : "32",
				     p.bar[b].prefetch ? " prefetchable" : "", p.bar[b].addr, size);
		}
	}
	shell_printf(sh, "%u PCI functions\n", i);
	return 0;
}

static int cmd_poweroff(struct shell *sh, int argc, char **argv)
{
	int rc = no_args(sh, argc, argv);

	if (rc)
		return rc;
	shell_puts(sh, "powering off\n");
	rc = plat_poweroff();
	if (rc)
		return needs_hardware(sh, "poweroff", rc);
	sh->stop = true;
	return 0;
}

static int cmd_reboot(struct shell *sh, int argc, char **argv)
{
	int rc = no_args(sh, argc, argv);

	if (rc)
		return rc;
	shell_puts(sh, "rebooting\n");
	rc = plat_reboot();
	return rc ? needs_hardware(sh, "reboot", rc) : 0;
}

/*
 * `time CMD ...`: run CMD, then say how long it took ("time: 12.345 ms"), whatever its
 * result. A prefix rather than a line after every command, so that scripts that read the
 * output of the other commands see it unchanged.
 */
static int cmd_time(struct shell *sh, int argc, char **argv)
{
	uint64_t t0, ns;
	int rc;

	if (argc < 2)
		return shell_usage(sh, "time");
	t0 = plat_now_ns();
	rc = run_words(sh, argc - 1, argv + 1);
	ns = plat_now_ns() - t0;
	shell_printf(sh, "time: %" PRIu64 ".%03" PRIu64 " ms\n", ns / NSEC_PER_MSEC,
		     ns % NSEC_PER_MSEC / 1000);
	return rc;
}

static const struct shell_cmd builtin_cmds[] = {
	{ "help", "[COMMAND]", "list the commands, or show one command's usage", cmd_help },
	{ "time", "COMMAND [ARGS...]", "run a command and print how long it took", cmd_time },
	{ "version", "", "show the firmware version", cmd_version },
	{ "uptime", "", "time since the machine started", cmd_uptime },
	{ "date", "", "wall-clock time (UTC) and host name", cmd_date },
	{ "mem", "", "memory: total, free, heap", cmd_mem },
	{ "pci", "", "list PCI functions with their ids, class and BARs", cmd_pci },
	{ "poweroff", "", "power the appliance off", cmd_poweroff },
	{ "reboot", "", "restart the appliance", cmd_reboot },
};

void shell_init(struct shell *sh, void (*write)(void *ctx, const char *buf, size_t len), void *ctx)
{
	memset(sh, 0, sizeof(*sh));
	sh->write = write;
	sh->ctx = ctx;
	sh->hist_pos = -1;
	sh->builtin.cmds = builtin_cmds;
	sh->builtin.count = ARRAY_SIZE(builtin_cmds);
	sh->tables = &sh->builtin;
}

void shell_add_commands(struct shell *sh, struct shell_cmd_table *t)
{
	struct shell_cmd_table **pp = &sh->tables;

	/* Append, so that help lists groups in the order they were added. */
	while (*pp)
		pp = &(*pp)->next;
	t->next = NULL;
	*pp = t;
}
