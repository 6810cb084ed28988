/* SPDX-License-Identifier: MIT */
#include "tests/support/nbd_client.h"

#include <stdlib.h>
#include <string.h>

#include "net/nbd/nbd_proto.h"
#include "net/nbd/nbd_server.h"
#include "tests/support/harness.h"

size_t nbdc_put_opt(uint8_t *b, uint32_t opt, const void *data, uint32_t len)
{
	nbd_put_be64(b, NBD_OPT_MAGIC);
	nbd_put_be32(b + 8, opt);
	nbd_put_be32(b + 12, len);
	if (len)
		memcpy(b + 16, data, len);
	return 16 + len;
}

size_t nbdc_put_req(uint8_t *b, uint16_t type, uint16_t flags, uint64_t cookie, uint64_t off,
		    uint32_t len)
{
	nbd_put_be32(b, NBD_REQUEST_MAGIC);
	nbd_put_be16(b + 4, flags);
	nbd_put_be16(b + 6, type);
	nbd_put_be64(b + 8, cookie);
	nbd_put_be64(b + 16, off);
	nbd_put_be32(b + 24, len);
	return 28;
}

void nbdc_drain(struct nbd_conn *c, uint8_t **out, size_t *len)
{
	struct nbd_iov iov[16];
	unsigned n;

	for (;;) {
		nbd_conn_output(c, 0, iov, 16, &n);
		if (!n)
			break;
		for (unsigned i = 0; i < n; i++) {
			*out = realloc(*out, *len + iov[i].len);
			memcpy(*out + *len, iov[i].base, iov[i].len);
			*len += iov[i].len;
			nbd_conn_output_done(c, iov[i].len);
		}
	}
}

int64_t nbdc_simple_reply(struct nbd_conn *c, uint8_t **out, size_t *len, size_t *pos,
			  uint64_t cookie)
{
	const uint8_t *p;

	nbdc_drain(c, out, len);
	p = *out + *pos;
	if (!ok(*len - *pos >= 16))
		return -1;
	*pos += 16;
	ok_eq(nbd_get_be32(p), NBD_SIMPLE_REPLY_MAGIC);
	ok_eq(nbd_get_be64(p + 8), cookie);
	return nbd_get_be32(p + 4);
}
