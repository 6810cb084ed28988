/* SPDX-License-Identifier: MIT */
/*
 * mbedTLS 2.28's configuration for thinbox, the same for the host build and the firmware
 * (mk/mbedtls.mk passes -DMBEDTLS_CONFIG_FILE="net/tls/mbedtls_config.h" to the library and
 * to every file that includes an mbedTLS header). It replaces the library's own
 * mbedtls/config.h entirely: what is not switched on here is not compiled. docs/tls.md says
 * why each group is here.
 *
 * What issue 13 (NBD over TLS) needs: a TLS 1.2 server (and a client, for the tests), PSK
 * and ECDHE-PSK key exchange (psktool keys), X.509 server certificates with ECDSA or RSA keys
 * and verification of client certificates (nbdkit's ca-cert.pem / server-cert.pem /
 * server-key.pem), a CTR_DRBG seeded from an entropy source we add at run time, SHA-256/384,
 * AES-GCM and ChaCha20-Poly1305 (and AES-CBC, which GnuTLS's ECDHE-PSK suites need).
 *
 * Not here: file and socket I/O (we hand the library buffers and callbacks), the platform's
 * own entropy (there is none in the firmware: sources are added with
 * mbedtls_entropy_add_source(), and without a strong one seeding fails), TLS 1.0/1.1, SSL 3,
 * renegotiation, session tickets and caches, DTLS, RC4/3DES/CCM/ARIA/Camellia, static RSA
 * key exchange (no forward secrecy), finite-field DH.
 *
 * TLS 1.3: mbedTLS 2.28 has none. Its MBEDTLS_SSL_PROTO_TLS1_3_EXPERIMENTAL holds only pieces
 * of a prototype (key schedule, no handshake) and is documented as not usable, so it stays
 * off; a client that offers TLS 1.3 and 1.2 (GnuTLS's default) negotiates 1.2.
 */
#ifndef NET_TLS_MBEDTLS_CONFIG_H
#define NET_TLS_MBEDTLS_CONFIG_H

/* ---- System ---------------------------------------------------------------------------- */

/* Inline assembly for bignum multiplication (x86_64), and AES-NI where CPUID offers it (the
 * choice is made at run time; the firmware runs with SSE enabled, as UEFI leaves it). */
#define MBEDTLS_HAVE_ASM
#define MBEDTLS_AESNI_C
/*
 * Time: certificate validity needs the date, which the library takes from the C library's
 * time() and gmtime(): glibc's on the host; in the firmware newlib's, whose time() asks
 * gettimeofday() in boot/newlib_stubs.c, which reads plat_wall_time() (the CMOS clock read at
 * boot). Without a clock time() is -1 (1969): every certificate is then "not yet valid" and
 * verification fails, never passes.
 */
#define MBEDTLS_HAVE_TIME
#define MBEDTLS_HAVE_TIME_DATE
#ifdef THINBOX_FUZZING
/*
 * The fuzz build only (mk/mbedtls.mk compiles a separate archive for tests/fuzz/fuzz_tls.c):
 * the clock is the fuzzer's fixed date, so the 4 time bytes of each hello's random do not
 * vary and a handshake is a function of the input alone (libFuzzer replays what it found).
 * The host, release and firmware builds never define THINBOX_FUZZING.
 */
#include <time.h>
time_t thinbox_fuzz_time(time_t *t);
#define MBEDTLS_PLATFORM_C
#define MBEDTLS_PLATFORM_TIME_MACRO thinbox_fuzz_time
#endif
/* No /dev/urandom or getrandom(): entropy sources are added by the caller. */
#define MBEDTLS_NO_PLATFORM_ENTROPY
/* Short error strings for the console (mbedtls_strerror()) and the version string. */
#define MBEDTLS_ERROR_C
#define MBEDTLS_VERSION_C

/* ---- Randomness ------------------------------------------------------------------------ */

#define MBEDTLS_ENTROPY_C
#define MBEDTLS_CTR_DRBG_C

/* ---- Symmetric crypto and hashes -------------------------------------------------------- */

#define MBEDTLS_CIPHER_C
#define MBEDTLS_AES_C
#define MBEDTLS_GCM_C
#define MBEDTLS_CIPHER_MODE_CBC
#define MBEDTLS_CHACHA20_C
#define MBEDTLS_POLY1305_C
#define MBEDTLS_CHACHAPOLY_C
#define MBEDTLS_MD_C
#define MBEDTLS_SHA256_C
#define MBEDTLS_SHA512_C /* and SHA-384; no SHA-1 (the default X.509 profile refuses it) */

/* ---- Public-key crypto ------------------------------------------------------------------ */

#define MBEDTLS_BIGNUM_C
#define MBEDTLS_GENPRIME /* RSA key generation: the tests make RSA certificates */
#define MBEDTLS_RSA_C
#define MBEDTLS_PKCS1_V15
#define MBEDTLS_PKCS1_V21
#define MBEDTLS_ECP_C
#define MBEDTLS_ECP_NIST_OPTIM
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED
#define MBEDTLS_ECP_DP_SECP384R1_ENABLED
#define MBEDTLS_ECP_DP_SECP521R1_ENABLED
#define MBEDTLS_ECP_DP_CURVE25519_ENABLED
#define MBEDTLS_ECDH_C
#define MBEDTLS_ECDSA_C
#define MBEDTLS_ECDSA_DETERMINISTIC
#define MBEDTLS_HMAC_DRBG_C /* deterministic ECDSA (RFC 6979) */

/* ---- Keys and certificates -------------------------------------------------------------- */

#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C
#define MBEDTLS_OID_C
#define MBEDTLS_BASE64_C
#define MBEDTLS_PEM_PARSE_C
#define MBEDTLS_PK_C
#define MBEDTLS_PK_PARSE_C
#define MBEDTLS_X509_USE_C
#define MBEDTLS_X509_CRT_PARSE_C
/*
 * Writing keys and certificates: the tests make their CA and certificates at run time with
 * these. They cost the firmware nothing while it does not call them (each module is its own
 * archive member, linked only when referenced).
 */
#define MBEDTLS_PK_WRITE_C
#define MBEDTLS_PEM_WRITE_C
#define MBEDTLS_X509_CREATE_C
#define MBEDTLS_X509_CRT_WRITE_C

/* ---- TLS -------------------------------------------------------------------------------- */

#define MBEDTLS_SSL_TLS_C
#define MBEDTLS_SSL_SRV_C
#define MBEDTLS_SSL_CLI_C
#define MBEDTLS_SSL_PROTO_TLS1_2
#define MBEDTLS_KEY_EXCHANGE_PSK_ENABLED
#define MBEDTLS_KEY_EXCHANGE_ECDHE_PSK_ENABLED
#define MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA_ENABLED
#define MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED
#define MBEDTLS_SSL_EXTENDED_MASTER_SECRET
#define MBEDTLS_SSL_ENCRYPT_THEN_MAC
#define MBEDTLS_SSL_SERVER_NAME_INDICATION
/* The client's certificate stays readable after the handshake: who connected. */
#define MBEDTLS_SSL_KEEP_PEER_CERTIFICATE

/*
 * The suites offered, best first (the server's order decides): forward secrecy and AEAD
 * first, then plain PSK (what psktool users get from a client configured for PSK only), and
 * the ECDHE-PSK CBC suites last because GnuTLS (qemu, nbdkit, libnbd) has no ECDHE-PSK with
 * GCM. Within each group ChaCha20-Poly1305 comes first, then AES-128-GCM: mbedTLS 2.28's
 * software AEAD runs them at about 290 and 180 MiB/s against 150 for AES-256-GCM
 * (docs/tls.md "Throughput"), and all three are strong.
 */
#define MBEDTLS_SSL_CIPHERSUITES                                                                   \
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,                                     \
	    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,                                       \
	    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,                                       \
	    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,                                   \
	    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,                                         \
	    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,                                         \
	    MBEDTLS_TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256,                                   \
	    MBEDTLS_TLS_PSK_WITH_CHACHA20_POLY1305_SHA256,                                         \
	    MBEDTLS_TLS_PSK_WITH_AES_128_GCM_SHA256, MBEDTLS_TLS_PSK_WITH_AES_256_GCM_SHA384,      \
	    MBEDTLS_TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA384,                                         \
	    MBEDTLS_TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256

#include "mbedtls/check_config.h"

#endif
