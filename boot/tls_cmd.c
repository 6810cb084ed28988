/* SPDX-License-Identifier: MIT */
/*
 * The firmware's NBD over TLS and the `tls` command (contract: tls_cmd.h; docs/tls.md).
 *
 * thinbox.cfg's TLS keys become a tls_server (net/tls/tls_server.h) over plat_random() and
 * the NBD server's TLS mode. The rule throughout: when TLS was asked for (or a TLS key was
 * set) and cannot be had, nothing is served, since a plain server where the user configured
 * TLS would leak what the user meant to protect. Messages name files and lines, never keys.
 *
 * `tls selftest`: an mbedTLS client and server talk over in-memory pipes
 * (net/tls/tls_selftest.c, the code the host's unit test runs): a PSK handshake with the
 * configuration's default suites, one with ECDHE-PSK and ChaCha20-Poly1305, one with plain
 * PSK and AES-256-GCM, 64 KiB echoed after each; then a wrong key, which must be refused.
 * Last it prints the date mbedTLS would check certificates against (newlib's time() over
 * plat_wall_time()). Its DRBG is seeded from plat_random(), the entropy the NBD server's
 * sessions use; without an entropy source it fails and says why.
 */
#include "boot/tls_cmd.h"

#include "config/shell.h"
#include "core/base/plat.h"
#include "core/base/sha256.h"
#include "core/base/util.h"
#include "core/base/walltime.h"
#include "net/nbd/nbd_server.h"
#include "net/tls/tls_psk.h"
#include "net/tls/tls_selftest.h"
#include "net/tls/tls_server.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define ECHO_BYTES (64u * 1024u)

static const char *const file_names[TLS_FW_NFILES] = {
	[TLS_FW_PSK] = NULL,
	[TLS_FW_CERT] = "server-cert.pem",
	[TLS_FW_KEY] = "server-key.pem",
	[TLS_FW_CA] = "ca-cert.pem",
};

/* What tls_fw_setup() made of the configuration, for `tls` and `net`. */
static struct {
	struct tls_fw_input *in; /* NULL: tls_fw_setup() never ran (no network) */
	struct tls_server *ts;	 /* NULL: TLS off or refused */
	enum nbd_tls_mode mode;
	bool asked;	   /* a TLS key was set: TLS off is then not what the user meant */
	bool verify_peer;  /* tls-verify-peer = on */
	char refused[256]; /* the first reason TLS was refused; "" when it was not */
	char shown[36];	   /* the mode as configured, printable and cut, for messages */
} fw;

/* ---- Configuration ----------------------------------------------------------------------- */

/*
 * @v as it may be shown: at most 32 characters (then "..."), anything unprintable as '?'.
 * Values come from outside; a value is never a key (keys live in the files).
 */
static const char *printable(const char *v, char *buf, size_t size)
{
	size_t i;

	for (i = 0; v[i] && i < 32 && i + 4 < size; i++)
		buf[i] = v[i] >= 0x20 && v[i] < 0x7f ? v[i] : '?';
	if (v[i] && i + 4 <= size) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

/* @dir (may be NULL) and @name joined as an ESP path into @out; false when too long. */
static bool esp_path(char *out, const char *dir, const char *name)
{
	size_t n = 0;

	out[n++] = '\\';
	for (const char *parts[2] = { dir, name }, **p = parts; p < parts + 2; p++) {
		const char *s = *p;

		if (!s)
			continue;
		while (*s == '\\' || *s == '/')
			s++;
		if (n > 1 && out[n - 1] != '\\' && *s) {
			if (n + 1 >= TLS_FW_PATH_MAX)
				return false;
			out[n++] = '\\';
		}
		for (; *s; s++) {
			if (n + 1 >= TLS_FW_PATH_MAX)
				return false;
			/* Unprintable: '?' (not a FAT name character, so the file is not found,
			 * and the path can be printed). */
			out[n++] = *s == '/' ? '\\' : *s >= 0x20 && *s < 0x7f ? *s : '?';
		}
	}
	/* "\dir\" (a trailing separator) names the directory: drop it. */
	while (n > 1 && out[n - 1] == '\\')
		n--;
	out[n] = '\0';
	return true;
}

void tls_fw_plan(struct tls_fw_input *in)
{
	for (unsigned i = 0; i < TLS_FW_NFILES; i++) {
		struct tls_fw_file *f = &in->files[i];
		const char *dir = i == TLS_FW_PSK ? NULL : in->certs;
		const char *name = i == TLS_FW_PSK ? in->psk : file_names[i];

		f->path[0] = '\0';
		f->data = NULL;
		f->len = 0;
		f->rc = 0;
		if (i == TLS_FW_PSK ? !in->psk : !in->certs)
			continue;
		if (!esp_path(f->path, dir, name)) {
			f->path[0] = '\0';
			f->rc = -ENAMETOOLONG;
		}
	}
}

/* Print one refusal reason (the first one is kept for the shell). */
static void refuse(const char *fmt, const char *a, const char *b)
{
	char line[384];
	size_t used;

	snprintf(line, sizeof(line), fmt, a, b);
	plat_printf("thinbox: tls: %s\n", line);
	/* Kept for `tls`, every reason on its own line while they fit. */
	used = strlen(fw.refused);
	if (used + strlen(line) + 8 < sizeof(fw.refused))
		snprintf(fw.refused + used, sizeof(fw.refused) - used, "%s%s",
			 used ? "\n        " : "", line);
}

static const char *read_error(int rc)
{
	switch (rc) {
	case -ENOENT:
		return "not found on the ESP";
	case -EFBIG:
		return "larger than 65536 bytes: refused";
	case -ENAMETOOLONG:
		return "path too long";
	case -ENOMEM:
		return "out of memory reading it";
	default:
		return "cannot be read from the ESP";
	}
}

/* The key's name for a file, for messages: "tls-psk" or "tls-certificates". */
static const char *key_of(unsigned i)
{
	return i == TLS_FW_PSK ? "tls-psk" : "tls-certificates";
}

/* A file's state: true when it was read (ca-cert.pem may be missing without verify). */
static bool file_ok(const struct tls_fw_input *in, unsigned i, bool optional)
{
	const struct tls_fw_file *f = &in->files[i];
	char what[TLS_FW_PATH_MAX + 32], v[36];

	if (f->rc == 0 && f->data)
		return true;
	if (optional && f->rc == -ENOENT)
		return false;
	/* The planned path (made of printable characters), or the value that made none. */
	snprintf(what, sizeof(what), "%s %s", key_of(i),
		 f->path[0] ? f->path
			    : printable(i == TLS_FW_PSK ? in->psk : in->certs, v, sizeof(v)));
	refuse("%s: %s", what, read_error(f->rc ? f->rc : -EIO));
	return false;
}

/* Wipe every file's bytes: the keys must not stay in memory once loaded (or refused). */
static void wipe_files(struct tls_fw_input *in)
{
	for (unsigned i = 0; i < TLS_FW_NFILES; i++) {
		struct tls_fw_file *f = &in->files[i];

		if (f->data)
			secure_wipe(f->data, f->len);
		f->data = NULL;
	}
}

void tls_fw_discard(struct tls_fw_input *in)
{
	wipe_files(in);
}

static void tls_log(void *ctx, const char *line)
{
	(void)ctx;
	plat_printf("thinbox: %s\n", line);
}

/* Parse the four values into fw; false (with the reasons printed) when one is bad. */
static bool parse_values(const struct tls_fw_input *in)
{
	bool good = true;
	char v[36];

	printable(in->mode ? in->mode : "off", fw.shown, sizeof(fw.shown));
	if (!in->mode || strcmp(in->mode, "off") == 0)
		fw.mode = NBD_TLS_OFF;
	else if (strcmp(in->mode, "on") == 0)
		fw.mode = NBD_TLS_ON;
	else if (strcmp(in->mode, "require") == 0)
		fw.mode = NBD_TLS_REQUIRE;
	else {
		/* Shown: it is a mode word, not a key. Unknown means TLS was meant. */
		refuse("tls = %s: want off, on or require", fw.shown, NULL);
		fw.mode = NBD_TLS_REQUIRE;
		good = false;
	}
	if (!in->verify || strcmp(in->verify, "off") == 0) {
		fw.verify_peer = false;
	} else if (strcmp(in->verify, "on") == 0) {
		fw.verify_peer = true;
	} else {
		refuse("tls-verify-peer = %s: want on or off", printable(in->verify, v, sizeof(v)),
		       NULL);
		good = false;
	}
	fw.asked = fw.mode != NBD_TLS_OFF || in->psk || in->certs || fw.verify_peer || !good;
	if (!good)
		return false;
	if (fw.mode == NBD_TLS_OFF && fw.asked) {
		refuse("tls-psk, tls-certificates and tls-verify-peer need tls = on or "
		       "tls = require%s%s",
		       "", "");
		return false;
	}
	if (fw.mode != NBD_TLS_OFF && !in->psk && !in->certs) {
		refuse("tls = %s needs tls-psk (a keys file) or tls-certificates (a directory)",
		       fw.shown, NULL);
		return false;
	}
	if (fw.verify_peer && !in->certs) {
		refuse("tls-verify-peer = on needs tls-certificates%s%s", "", "");
		return false;
	}
	return true;
}

int tls_fw_setup(struct tls_fw_input *in, struct nbd_server *srv)
{
	struct tls_server_opts to = { .log = tls_log };
	struct tls_server *ts = NULL;
	struct nbd_tls_config tc;
	bool good, psk_read, certs_read = false;
	char err[256];
	int rc, why_rc = -EINVAL; /* what the caller gets when TLS is refused */

	fw.in = in;
	good = parse_values(in);
	if (!fw.asked) {
		wipe_files(in);
		return 0;
	}
	/* Every problem is reported, not only the first: one boot shows them all. */
	psk_read = in->psk && file_ok(in, TLS_FW_PSK, false);
	if (in->psk && !psk_read)
		good = false;
	if (in->certs) {
		certs_read = file_ok(in, TLS_FW_CERT, false);
		certs_read &= file_ok(in, TLS_FW_KEY, false);
		if (!file_ok(in, TLS_FW_CA, !fw.verify_peer) && fw.verify_peer)
			certs_read = false;
		if (!certs_read)
			good = false;
	}
	rc = tls_server_create(&to, &ts, err, sizeof(err));
	if (rc) {
		refuse("%s%s", err, "");
		good = false;
		ts = NULL;
		why_rc = rc;
	}
	if (psk_read) {
		const struct tls_fw_file *f = &in->files[TLS_FW_PSK];
		struct tls_psk_keys k = { 0 };

		/* Checked even without a TLS server (no entropy): the file's own mistakes too. */
		rc = ts ? tls_server_load_psk(ts, f->data, f->len, err, sizeof(err))
			: tls_psk_parse(f->data, f->len, &k, err, sizeof(err));
		tls_psk_free(&k);
		if (rc) {
			refuse("tls-psk %s: %s", f->path, err);
			good = false;
		}
	}
	if (ts && certs_read) {
		const struct tls_fw_file *c = in->files;

		rc = tls_server_load_x509(ts, c[TLS_FW_CA].data, c[TLS_FW_CA].len,
					  c[TLS_FW_CERT].data, c[TLS_FW_CERT].len,
					  c[TLS_FW_KEY].data, c[TLS_FW_KEY].len, fw.verify_peer,
					  err, sizeof(err));
		if (rc) {
			refuse("tls-certificates %s: %s", in->files[TLS_FW_CERT].path, err);
			good = false;
		}
	}
	wipe_files(in);
	if (good) {
		rc = tls_server_nbd_config(ts, fw.mode, &tc);
		if (!rc)
			rc = nbd_server_set_tls(srv, &tc);
		if (rc) {
			snprintf(err, sizeof(err), "cannot set up the NBD server's TLS (%d)", rc);
			refuse("%s%s", err, "");
			good = false;
			why_rc = rc;
		}
	}
	if (!good) {
		tls_server_destroy(ts);
		plat_printf("thinbox: tls: TLS refused (tls = %s): NBD is NOT served, not even in "
			    "plain; fix thinbox.cfg or the entropy source and reboot\n",
			    fw.shown);
		return why_rc;
	}
	fw.ts = ts;
	plat_printf("thinbox: tls: %s%s%s%s\n", fw.mode == NBD_TLS_ON ? "on" : "require",
		    in->psk ? ", PSK" : "", in->certs ? ", X.509" : "",
		    fw.verify_peer ? ", client certificates verified" : "");
	return 0;
}

/* ---- Shell --------------------------------------------------------------------------------- */

static const char *mode_name(enum nbd_tls_mode m)
{
	return m == NBD_TLS_ON ? "on" : m == NBD_TLS_REQUIRE ? "require" : "off";
}

void tls_fw_net_line(struct shell *sh)
{
	if (!fw.in)
		shell_puts(sh, "nbd tls: not set up (no NBD server)\n");
	else if (fw.refused[0])
		shell_printf(sh, "nbd tls: REFUSED (tls = %s): NBD not served; `tls` says why\n",
			     fw.shown);
	else if (!fw.ts)
		shell_puts(sh, "nbd tls: off (plain NBD)\n");
	else
		shell_printf(sh, "nbd tls: %s (%s%s%s)\n", mode_name(fw.mode),
			     fw.in->psk ? "PSK" : "", fw.in->psk && fw.in->certs ? ", " : "",
			     fw.in->certs ? "X.509" : "");
}

static int tls_show(struct shell *sh)
{
	struct tls_server_stats st;
	struct tls_cert_info ci;
	const char *id;
	unsigned i;

	if (!fw.in) {
		shell_puts(sh, "tls: not set up: the NBD server did not start (no network)\n");
		return 0;
	}
	if (fw.refused[0]) {
		shell_printf(sh,
			     "mode: REFUSED (tls = %s)\n"
			     "  why: %s\n"
			     "  NBD is not served, not even in plain: fix thinbox.cfg or the "
			     "entropy source and reboot\n",
			     fw.shown, fw.refused);
		return 0;
	}
	if (!fw.ts) {
		shell_puts(sh, "mode: off (plain NBD; STARTTLS answered NBD_REP_ERR_UNSUP)\n");
		return 0;
	}
	shell_printf(sh, "mode: %s (%s)\n", mode_name(fw.mode),
		     fw.mode == NBD_TLS_REQUIRE ? "every client must start TLS before anything else"
						: "plain and TLS clients");
	if (fw.in->psk) {
		shell_printf(sh, "psk: %s, identities:", fw.in->files[TLS_FW_PSK].path);
		for (i = 0; (id = tls_server_psk_identity(fw.ts, i)) != NULL; i++)
			shell_printf(sh, "%s %s", i ? "," : "", id);
		shell_puts(sh, "\n");
	} else {
		shell_puts(sh, "psk: none\n");
	}
	if (fw.in->certs) {
		const char *cert = fw.in->files[TLS_FW_CERT].path, *slash = strrchr(cert, '\\');

		/* The directory, as tls-certificates names it (the path planned from it). */
		shell_printf(sh, "certificates: %.*s\n", (int)(slash > cert ? slash - cert : 1),
			     cert);
		for (i = 0; tls_server_cert_info(fw.ts, i, &ci) == 0; i++)
			shell_printf(sh,
				     "  %s #%u: subject %s\n"
				     "    issuer %s\n"
				     "    valid %s to %s UTC%s\n",
				     ci.file, ci.pos, ci.subject, ci.issuer, ci.not_before,
				     ci.not_after,
				     ci.expired		? "  EXPIRED"
				     : ci.not_yet_valid ? "  NOT YET VALID"
							: "");
		shell_printf(sh, "client certificates: %s\n",
			     fw.verify_peer ? "required, verified against ca-cert.pem"
					    : "not verified");
	} else {
		shell_puts(sh, "certificates: none\n");
	}
	tls_server_get_stats(fw.ts, &st);
	shell_printf(sh, "handshakes: %llu ok, %llu failed\n", st.handshakes_ok,
		     st.handshakes_failed);
	return 0;
}

/* plat_random() as the selftest's entropy: the firmware's pool, or a failure. */
static int selftest_entropy(void *ctx, unsigned char *buf, size_t len)
{
	(void)ctx;
	return plat_random(buf, len);
}

static const unsigned char key_good[16] = { 0x4a, 0x1f, 0x09, 0x77, 0xc2, 0x3e, 0x55, 0x10,
					    0x8b, 0xd4, 0x61, 0x2a, 0xf0, 0x93, 0x0c, 0xee };
static const unsigned char key_bad[16] = { 0x4a, 0x1f, 0x09, 0x77, 0xc2, 0x3e, 0x55, 0x10,
					   0x8b, 0xd4, 0x61, 0x2a, 0xf0, 0x93, 0x0c, 0xef };

/* One run; prints one line and returns true when the outcome is the expected one. */
static bool run_case(struct shell *sh, const char *label, const char *suite, bool wrong_key)
{
	struct tls_selftest_psk o = {
		.entropy = selftest_entropy,
		.identity = "thinbox-selftest",
		.client_key = key_good,
		.client_key_len = sizeof(key_good),
		.server_key = wrong_key ? key_bad : key_good,
		.server_key_len = sizeof(key_good),
		.suite = suite,
		.echo_bytes = wrong_key ? 0 : ECHO_BYTES,
	};
	struct tls_selftest_result r;
	uint64_t t0 = plat_now_ns();
	int rc = tls_selftest_psk_run(&o, &r);
	unsigned ms = (unsigned)((plat_now_ns() - t0) / 1000000u);

	if (wrong_key) {
		bool refused = rc == -EPROTO && r.echoed == 0;

		shell_printf(sh, "tls: %s: %s (%s), %u ms\n", label,
			     refused ? "refused" : "NOT refused", r.error[0] ? r.error : "no error",
			     ms);
		return refused;
	}
	if (rc == 0 && r.echoed == ECHO_BYTES) {
		shell_printf(sh, "tls: %s: %s %s, %zu bytes echoed, %u ms: ok\n", label, r.version,
			     r.suite, r.echoed, ms);
		return true;
	}
	shell_printf(sh, "tls: %s: FAILED (%d): client %d, server %d: %s\n", label, rc,
		     r.client_ret, r.server_ret, r.error);
	return false;
}

static int tls_selftest(struct shell *sh)
{
	long long now = tls_clock_now();
	struct civil_time ct;
	unsigned char probe;
	bool good = true;
	int rc;

	shell_printf(sh, "tls: mbedTLS %s: TLS 1.2 (this version has no TLS 1.3)\n",
		     tls_library_version());
	rc = plat_random(&probe, 1);
	if (rc) {
		shell_printf(sh,
			     "tls: randomness: no entropy source (plat_random() %d): the selftest "
			     "cannot run\ntls selftest: FAILED\n",
			     rc);
		return -EIO;
	}
	shell_puts(sh, "tls: randomness: plat_random() (the entropy pool NBD's TLS uses)\n");
	good &= run_case(sh, "psk default", NULL, false);
	good &= run_case(sh, "ecdhe-psk", "TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256", false);
	good &= run_case(sh, "psk", "TLS-PSK-WITH-AES-256-GCM-SHA384", false);
	good &= run_case(sh, "wrong key", NULL, true);
	if (now >= 0 && unix_to_civil((uint64_t)now, &ct) == 0)
		shell_printf(sh,
			     "tls: certificate clock %lld (%04d-%02d-%02d %02d:%02d:%02d UTC)\n",
			     now, ct.year, ct.month, ct.day, ct.hour, ct.min, ct.sec);
	else
		shell_printf(sh,
			     "tls: certificate clock %lld: no date, certificates will not "
			     "verify\n",
			     now);
	shell_printf(sh, "tls selftest: %s\n", good ? "passed" : "FAILED");
	return good ? 0 : -EIO;
}

static int cmd_tls(struct shell *sh, int argc, char **argv)
{
	if (argc == 1)
		return tls_show(sh);
	if (argc == 2 && strcmp(argv[1], "selftest") == 0)
		return tls_selftest(sh);
	return shell_usage(sh, argv[0]);
}

static const struct shell_cmd tls_cmds[] = {
	{ "tls", "[selftest]",
	  "NBD over TLS: mode, PSK identities, certificates, handshakes; selftest: "
	  "in-memory PSK handshake",
	  cmd_tls },
};

static struct shell_cmd_table tls_table = { tls_cmds, ARRAY_SIZE(tls_cmds), NULL };

void tls_cmd_init(struct shell *sh)
{
	shell_add_commands(sh, &tls_table);
}
