/* SPDX-License-Identifier: MIT */
/*
 * The admin shell: a line editor and a table of commands, fed one byte at a time.
 *
 * The shell is pure: it never touches a device. Bytes come in through shell_input() (from
 * the serial port in the firmware, the terminal in the host build, or a test's script), and
 * everything it prints goes out through the write callback given to shell_init(). Commands
 * that need hardware reach it through core/base/plat.h and say so when the platform has none.
 *
 * Line editing: printable bytes insert at the end of the line; Backspace (0x08 or 0x7f)
 * deletes one; Ctrl-U clears the line; Ctrl-C abandons it; Up/Down (ESC [ A / ESC [ B) walk
 * the history; CR, LF or CR LF ends the line. Lines longer than SHELL_LINE_MAX are refused
 * with a message, not truncated into a different command.
 */
#ifndef CONFIG_SHELL_H
#define CONFIG_SHELL_H

#include <stdbool.h>
#include <stddef.h>

#define SHELL_LINE_MAX	  512
#define SHELL_ARGS_MAX	  32
#define SHELL_HISTORY_MAX 32
#define SHELL_PROMPT	  "thinbox> "

struct shell;

/*
 * One command. fn returns 0 on success or a negative errno; the shell prints nothing extra
 * for errors, so fn prints its own clear message (shell_usage() for bad arguments).
 */
struct shell_cmd {
	const char *name;
	const char *usage; /* arguments, e.g. "[COMMAND]" */
	const char *help;  /* one line */
	int (*fn)(struct shell *sh, int argc, char **argv);
};

/* A group of commands, e.g. the pool commands; registered with shell_add_commands(). */
struct shell_cmd_table {
	const struct shell_cmd *cmds;
	size_t count;
	struct shell_cmd_table *next;
};

struct shell {
	void (*write)(void *ctx, const char *buf, size_t len);
	void *ctx;
	struct shell_cmd_table *tables;
	char line[SHELL_LINE_MAX + 1];
	size_t len;
	bool overflow;	  /* the current line grew past SHELL_LINE_MAX */
	bool last_was_cr; /* swallow the LF of a CR LF pair */
	int esc;	  /* 0, 1 after ESC, 2 after ESC [ */
	char history[SHELL_HISTORY_MAX][SHELL_LINE_MAX + 1];
	unsigned hist_count; /* entries stored (at most SHELL_HISTORY_MAX) */
	unsigned hist_head;  /* slot the next entry goes into */
	int hist_pos;	     /* -1 when editing a new line, else steps back from the newest */
	bool stop;	     /* a command asked the main loop to stop (host poweroff) */
	int last_rc;	     /* the last command's result */
	struct shell_cmd_table builtin; /* the built-in commands, listed first */
};

/* Set up @sh with the built-in commands (help, version, uptime, date, mem, pci, poweroff,
 * reboot). */
void shell_init(struct shell *sh, void (*write)(void *ctx, const char *buf, size_t len), void *ctx);
/* Add a table of commands; @t must stay valid while the shell lives. */
void shell_add_commands(struct shell *sh, struct shell_cmd_table *t);
/* Print the prompt. */
void shell_prompt(struct shell *sh);
/* Feed one byte of input. */
void shell_input(struct shell *sh, char c);
/* Run one complete line as if typed (no echo, no history); returns the command's result. */
int shell_exec(struct shell *sh, const char *line);

/* Output helpers for commands. */
int shell_printf(struct shell *sh, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void shell_puts(struct shell *sh, const char *s);
/* Print "usage: NAME USAGE" for @cmd's name and return -EINVAL. */
int shell_usage(struct shell *sh, const char *name);

/*
 * Split @line in place into at most @max words (whitespace separated; "double quotes" group,
 * \" and \\ escape inside quotes). Returns the number of words, or -EINVAL for an unclosed
 * quote or too many words.
 */
int shell_split(char *line, char **argv, int max);

/*
 * Parse a size such as "4096", "64K", "10M", "2G", "1T" (binary units, case-insensitive,
 * optional trailing "B"/"iB"). -EINVAL for anything else, -ERANGE on overflow.
 */
int shell_parse_size(const char *s, unsigned long long *out);

#endif
