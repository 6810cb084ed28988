/* SPDX-License-Identifier: MIT */
/*
 * What the firmware's `tls` command shows of a tls_server (net/tls/tls_server.h): each loaded
 * certificate's subject, issuer and validity, with expiry against the library's clock, and
 * the handshake counters. The certificates below were made once for this test (EC P-256,
 * self-signed, with fixed dates): a server certificate valid 2020-01-02 03:04:05 to
 * 2099-12-31 23:59:59, and an "old CA" that expired on 2021-01-01.
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "net/tls/tls_server.h"
#include "tests/support/harness.h"

#define ok_str(a, b)                                                                               \
	do {                                                                                       \
		if (!ok(strcmp((a), (b)) == 0))                                                    \
			fail("got '%s', want '%s'", (a), (b));                                     \
	} while (0)

static const char CERT[] = "-----BEGIN CERTIFICATE-----\n"
			   "MIIBLTCB1KADAgECAhRcEwpce3PK3OC1nFJ/S9wBvkyzdjAKBggqhkjOPQQDAjAW\n"
			   "MRQwEgYDVQQDDAt1bml0IHNlcnZlcjAgFw0yMDAxMDIwMzA0MDVaGA8yMDk5MTIz\n"
			   "MTIzNTk1OVowFjEUMBIGA1UEAwwLdW5pdCBzZXJ2ZXIwWTATBgcqhkjOPQIBBggq\n"
			   "hkjOPQMBBwNCAAQQ+cWQyWYEd0y8bXkdHBlu9BGXvIxkbGXWW1AtUbp0VymHd75k\n"
			   "nvA+UGHdZHUwenudJYX0HNUxHZGfb/vJCDGKMAoGCCqGSM49BAMCA0gAMEUCIAQp\n"
			   "g315FirEj+sb7XinjIW/W77NNTzRsEdIq6s4XmQpAiEAzMefLeO0ez34z6UIzHG6\n"
			   "tSe1tx4O27qovG3Fo9GvuGY=\n"
			   "-----END CERTIFICATE-----\n";

static const char KEY[] = "-----BEGIN PRIVATE KEY-----\n"
			  "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgugwsh1cJHPgRPMVp\n"
			  "iQ167kPF/jix8aBgqd9WJQHzmIWhRANCAAQQ+cWQyWYEd0y8bXkdHBlu9BGXvIxk\n"
			  "bGXWW1AtUbp0VymHd75knvA+UGHdZHUwenudJYX0HNUxHZGfb/vJCDGK\n"
			  "-----END PRIVATE KEY-----\n";

static const char OLD_CA[] = "-----BEGIN CERTIFICATE-----\n"
			     "MIIBKzCB0qADAgECAhRhvWeKnCDRNN6rCjkBGaeH5TxGTDAKBggqhkjOPQQDAjAW\n"
			     "MRQwEgYDVQQDDAt1bml0IG9sZCBDQTAeFw0yMDAxMDEwMDAwMDBaFw0yMTAxMDEw\n"
			     "MDAwMDBaMBYxFDASBgNVBAMMC3VuaXQgb2xkIENBMFkwEwYHKoZIzj0CAQYIKoZI\n"
			     "zj0DAQcDQgAEXt9NeNJmzwOCrq0b9HSlWxq9oHVKLJMDn3yo+VHSBzVt0dDT/OFl\n"
			     "4/KAgQXB6aF6zFRmze/ZHYCN9KomQnLWNzAKBggqhkjOPQQDAgNIADBFAiEAsZfu\n"
			     "LAYdhepdf2dLoKrsqvgG+ie5axeaiogPZ11GiGQCIHIcnvSNCy5vImXHwi+0oVb6\n"
			     "QA6y33ttfe6H5eCE7UOb\n"
			     "-----END CERTIFICATE-----\n";

static int host_entropy(void *buf, size_t len)
{
	return getrandom(buf, len, 0) == (ssize_t)len ? 0 : -EIO;
}

static struct tls_server *make(void)
{
	struct tls_server_opts to = { .entropy = host_entropy };
	struct tls_server *ts = NULL;
	char err[200];

	ok_eq(tls_server_create(&to, &ts, err, sizeof(err)), 0);
	return ts;
}

TEST(cert_info_subject_issuer_dates)
{
	struct tls_server *ts = make();
	struct tls_cert_info ci;
	char err[200];

	if (!ts)
		return;
	if (!ok_eq(tls_server_load_x509(ts, OLD_CA, strlen(OLD_CA), CERT, strlen(CERT), KEY,
					strlen(KEY), false, err, sizeof(err)),
		   0))
		goto out;
	ok_eq(tls_server_cert_info(ts, 0, &ci), 0);
	ok_str(ci.file, "server-cert.pem");
	ok_eq(ci.pos, 0);
	ok_str(ci.subject, "CN=unit server");
	ok_str(ci.issuer, "CN=unit server");
	ok_str(ci.not_before, "2020-01-02 03:04:05");
	ok_str(ci.not_after, "2099-12-31 23:59:59");
	ok(!ci.expired && !ci.not_yet_valid);
	ok_eq(tls_server_cert_info(ts, 1, &ci), 0);
	ok_str(ci.file, "ca-cert.pem");
	ok_eq(ci.pos, 0);
	ok_str(ci.subject, "CN=unit old CA");
	ok_str(ci.not_after, "2021-01-01 00:00:00");
	ok(ci.expired && !ci.not_yet_valid);
	ok_eq(tls_server_cert_info(ts, 2, &ci), -ENOENT);
out:
	tls_server_destroy(ts);
}

/* Without ca-cert.pem only the server's certificate; with PSK only, none at all. */
TEST(cert_info_without_ca_and_psk_only)
{
	static const char keys[] = "alice:000102030405060708090a0b0c0d0e0f\n";
	struct tls_server *ts = make();
	struct tls_cert_info ci;
	char err[200];

	if (!ts)
		return;
	ok_eq(tls_server_load_x509(ts, NULL, 0, CERT, strlen(CERT), KEY, strlen(KEY), false, err,
				   sizeof(err)),
	      0);
	ok_eq(tls_server_cert_info(ts, 0, &ci), 0);
	ok_str(ci.subject, "CN=unit server");
	ok_eq(tls_server_cert_info(ts, 1, &ci), -ENOENT);
	tls_server_destroy(ts);
	ts = make();
	if (!ts)
		return;
	ok_eq(tls_server_load_psk(ts, keys, strlen(keys), err, sizeof(err)), 0);
	ok_eq(tls_server_cert_info(ts, 0, &ci), -ENOENT);
	tls_server_destroy(ts);
}

TEST(stats_start_at_zero)
{
	struct tls_server *ts = make();
	struct tls_server_stats st = { 1, 1 };

	if (!ts)
		return;
	tls_server_get_stats(ts, &st);
	ok_eq(st.handshakes_ok, 0);
	ok_eq(st.handshakes_failed, 0);
	tls_server_destroy(ts);
}
