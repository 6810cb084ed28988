/* SPDX-License-Identifier: MIT */
/*
 * SHA-256 against the FIPS 180-4 examples (NIST's "SHA256.pdf" example values: "abc", the
 * 448- and 896-bit messages, the empty message, one million 'a'), split at every offset to
 * exercise the block buffering; HMAC-SHA-256 against RFC 4231; HMAC_DRBG against NIST CAVP
 * HMAC_DRBG.rsp (SHA-256, 1024 returned bits, the CAVP procedure: instantiate, [reseed],
 * generate twice, compare the second output) and its limits.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/hmac_drbg.h"
#include "core/base/sha256.h"
#include "tests/support/harness.h"

static size_t unhex(uint8_t *out, size_t max, const char *hex)
{
	size_t n = 0;

	for (; hex[0] && hex[1] && n < max; hex += 2) {
		unsigned v;

		if (sscanf(hex, "%2x", &v) != 1)
			break;
		out[n++] = (uint8_t)v;
	}
	return n;
}

static bool digest_is(const uint8_t *d, const char *hex)
{
	uint8_t want[64];
	size_t n = unhex(want, sizeof(want), hex);

	return memcmp(d, want, n) == 0;
}

static const struct {
	const char *msg;
	const char *digest;
} fips[] = {
	{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
	{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
	{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
	  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	{ "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmn"
	  "opqrlmnopqrsmnopqrstnopqrstu",
	  "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1" },
};

TEST(sha256_fips_examples)
{
	uint8_t d[SHA256_DIGEST_SIZE];

	for (unsigned i = 0; i < sizeof(fips) / sizeof(fips[0]); i++) {
		size_t len = strlen(fips[i].msg);

		sha256(fips[i].msg, len, d);
		if (!ok(digest_is(d, fips[i].digest)))
			fail("message %u", i);
		/* The same message fed in two pieces, split everywhere. */
		for (size_t cut = 0; cut <= len; cut++) {
			struct sha256_ctx c;

			sha256_init(&c);
			sha256_update(&c, fips[i].msg, cut);
			sha256_update(&c, fips[i].msg + cut, len - cut);
			sha256_final(&c, d);
			if (!digest_is(d, fips[i].digest)) {
				fail("message %u split at %zu", i, cut);
				break;
			}
		}
	}
}

TEST(sha256_million_a)
{
	struct sha256_ctx c;
	uint8_t d[SHA256_DIGEST_SIZE], chunk[1000];

	/* In odd-sized pieces, so blocks straddle update calls. */
	memset(chunk, 'a', sizeof(chunk));
	sha256_init(&c);
	for (size_t done = 0; done < 1000000;) {
		size_t n = 1000000 - done < 997 ? 1000000 - done : 997;

		sha256_update(&c, chunk, n);
		done += n;
	}
	sha256_final(&c, d);
	ok(digest_is(d, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
}

/* The padding boundary: 55 bytes fit one block with the length, 56 need two. */
TEST(sha256_padding_boundaries)
{
	uint8_t m[130], d1[SHA256_DIGEST_SIZE], d2[SHA256_DIGEST_SIZE];

	for (unsigned i = 0; i < sizeof(m); i++)
		m[i] = (uint8_t)(i * 7 + 1);
	/* Byte-at-a-time and one-shot agree at every length around the boundaries. */
	for (size_t len = 50; len < sizeof(m); len++) {
		struct sha256_ctx c;

		sha256(m, len, d1);
		sha256_init(&c);
		for (size_t i = 0; i < len; i++)
			sha256_update(&c, m + i, 1);
		sha256_final(&c, d2);
		if (!ok(memcmp(d1, d2, sizeof(d1)) == 0))
			fail("length %zu", len);
	}
	/* 55 and 56 bytes of 'a', computed independently (Python hashlib). */
	memset(m, 'a', 56);
	sha256(m, 55, d1);
	ok(digest_is(d1, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"));
	sha256(m, 56, d1);
	ok(digest_is(d1, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"));
}

TEST(hmac_sha256_rfc4231)
{
	uint8_t key[131], d[SHA256_DIGEST_SIZE];

	/* Test case 1. */
	memset(key, 0x0b, 20);
	hmac_sha256(key, 20, "Hi There", 8, d);
	ok(digest_is(d, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"));
	/* Test case 2: a key shorter than the output. */
	hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, d);
	ok(digest_is(d, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
	/* Test case 6: a key longer than the block is hashed first. */
	memset(key, 0xaa, sizeof(key));
	hmac_sha256(key, sizeof(key), "Test Using Larger Than Block-Size Key - Hash Key First", 54,
		    d);
	ok(digest_is(d, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"));
}

/* ---- HMAC_DRBG (NIST CAVP HMAC_DRBG.rsp, SHA-256, PredictionResistance = False) ---------- */

struct cavp {
	const char *entropy, *nonce, *pers, *reseed, *returned;
};

static const struct cavp cavp_vectors[] = {
	/* no reseed, no personalization, COUNT = 0 */
	{ "ca851911349384bffe89de1cbdc46e6831e44d34a4fb935ee285dd14b71a7488",
	  "659ba96c601dc69fc902940805ec0ca8", "", NULL,
	  "e528e9abf2dece54d47c7e75e5fe302149f817ea9fb4bee6f4199697d04d5b89d54fbb978a15b5c443c9"
	  "ec21036d2460b6f73ebad0dc2aba6e624abf07745bc107694bb7547bb0995f70de25d6b29e2d3011bb19d2"
	  "7676c07162c8b5ccde0668961df86803482cb37ed6d5c0bb8d50cf1f50d476aa0458bdaba806f48be9dcb"
	  "8" },
	/* no reseed, with a personalization string, COUNT = 0 */
	{ "5cacc68165a2e2ee20812f35ec73a79dbf30fd475476ac0c44fc6174cdac2b55",
	  "6f885496c1e63af620becd9e71ecb824",
	  "e72dd8590d4ed5295515c35ed6199e9d211b8f069b3058caa6670b96ef1208d0", NULL,
	  "f1012cf543f94533df27fedfbf58e5b79a3dc517a9c402bdbfc9a0c0f721f9d53faf4aafdc4b8f7a1b58"
	  "0fcaa52338d4bd95f58966a243cdcd3f446ed4bc546d9f607b190dd69954450d16cd0e2d6437067d8b44d1"
	  "9a6af7a7cfa8794e5fbd728e8fb2f2e8db5dd4ff1aa275f35886098e80ff844886060da8b1e7137846b23"
	  "b" },
	/* with a reseed (EntropyInputReseed), COUNT = 0 */
	{ "06032cd5eed33f39265f49ecb142c511da9aff2af71203bffaf34a9ca5bd9c0d",
	  "0e66f71edc43e42a45ad3c6fc6cdc4df", "",
	  "01920a4e669ed3a85ae8a33b35a74ad7fb2a6bb4cf395ce00334a9c9a5a5d552",
	  "76fc79fe9b50beccc991a11b5635783a83536add03c157fb30645e611c2898bb2b1bc215000209208cd5"
	  "06cb28da2a51bdb03826aaf2bd2335d576d519160842e7158ad0949d1a9ec3e66ea1b1a064b005de914eac"
	  "2e9d4f2d72a8616a80225422918250ff66a41bd2f864a6a38cc5b6499dc43f7f2bd09e1e0f8f588593512"
	  "4" },
};

TEST(hmac_drbg_cavp)
{
	for (unsigned i = 0; i < sizeof(cavp_vectors) / sizeof(cavp_vectors[0]); i++) {
		const struct cavp *v = &cavp_vectors[i];
		uint8_t e[64], n[32], p[64], r[64], want[128], got[128];
		size_t el = unhex(e, sizeof(e), v->entropy), nl = unhex(n, sizeof(n), v->nonce),
		       pl = unhex(p, sizeof(p), v->pers);
		struct hmac_drbg d;

		ok_eq(unhex(want, sizeof(want), v->returned), 128);
		ok_eq(hmac_drbg_instantiate(&d, e, el, n, nl, p, pl, 0), 0);
		if (v->reseed)
			ok_eq(hmac_drbg_reseed(&d, r, unhex(r, sizeof(r), v->reseed), NULL, 0), 0);
		ok_eq(hmac_drbg_generate(&d, got, sizeof(got), NULL, 0), 0);
		ok_eq(hmac_drbg_generate(&d, got, sizeof(got), NULL, 0), 0);
		if (!ok(memcmp(got, want, sizeof(got)) == 0))
			fail("CAVP vector %u", i);
		hmac_drbg_wipe(&d);
		ok(!d.instantiated);
	}
}

TEST(hmac_drbg_limits)
{
	uint8_t seed[48], out[64];
	static uint8_t big[HMAC_DRBG_MAX_REQUEST + 1];
	struct hmac_drbg d;

	memset(seed, 0x5a, sizeof(seed));
	memset(&d, 0, sizeof(d));
	ok_eq(hmac_drbg_generate(&d, out, sizeof(out), NULL, 0), -EINVAL); /* not instantiated */
	ok_eq(hmac_drbg_instantiate(&d, seed, 31, NULL, 0, NULL, 0, 0), -EINVAL); /* < 256 bits */
	ok_eq(hmac_drbg_instantiate(&d, seed, 32, NULL, 0, NULL, 0, 3), 0);
	ok_eq(hmac_drbg_generate(&d, big, sizeof(big), NULL, 0), -EINVAL);
	ok_eq(hmac_drbg_generate(&d, big, sizeof(big) - 1, NULL, 0), 0);
	ok_eq(hmac_drbg_generate(&d, out, sizeof(out), "x", 1), 0);
	ok_eq(hmac_drbg_generate(&d, out, sizeof(out), NULL, 0), 0);
	/* Three generates used the interval: the fourth needs a reseed, and writes nothing. */
	memset(out, 0xee, sizeof(out));
	ok_eq(hmac_drbg_generate(&d, out, sizeof(out), NULL, 0), -EAGAIN);
	ok_eq(out[0], 0xee);
	ok_eq(hmac_drbg_reseed(&d, seed, 16, NULL, 0), -EINVAL);
	ok_eq(hmac_drbg_reseed(&d, seed, 32, NULL, 0), 0);
	ok_eq(hmac_drbg_generate(&d, out, sizeof(out), NULL, 0), 0);
	/* Additional input changes the output. */
	{
		struct hmac_drbg a, b;
		uint8_t oa[32], ob[32];

		hmac_drbg_instantiate(&a, seed, 32, NULL, 0, NULL, 0, 0);
		b = a;
		hmac_drbg_generate(&a, oa, sizeof(oa), NULL, 0);
		hmac_drbg_generate(&b, ob, sizeof(ob), "jitter", 6);
		ok(memcmp(oa, ob, sizeof(oa)) != 0);
	}
}
