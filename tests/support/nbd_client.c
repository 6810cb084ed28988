/* SPDX-License-Identifier: MIT */
#include "tests/support/nbd_client.h"

#include <string.h>

#include "net/nbd/nbd_proto.h"

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
