/* SPDX-License-Identifier: MIT */
/*
 * The NBD wire protocol: constants and the fixed-size message layouts, as
 * NetworkBlockDevice/nbd doc/proto.md (master) defines them. Wire data only: no state, no
 * functions beyond the byte-order helpers the server and the tests share.
 *
 * Every integer on the wire is big-endian. The structs below are documentation of the
 * layouts and their sizes (checked by _Static_assert); the code never casts received bytes to
 * them, it reads and writes fields at the stated offsets with nbd_get/put_be*(), so alignment
 * and host byte order never matter.
 */
#ifndef NET_NBD_NBD_PROTO_H
#define NET_NBD_NBD_PROTO_H

#include <stdint.h>

/* ---- Handshake --------------------------------------------------------------------------- */

#define NBD_MAGIC	   0x4e42444d41474943ull /* ASCII "NBDMAGIC" */
#define NBD_OPT_MAGIC	   0x49484156454f5054ull /* ASCII "IHAVEOPT" */
#define NBD_REP_MAGIC	   0x0003e889045565a9ull /* every fixed-newstyle option reply */
#define NBD_OLDSTYLE_MAGIC 0x0000420281861253ull /* oldstyle only: never sent by us */

/* Handshake flags (server, u16) */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES	(1u << 1)
/* Client flags (u32) */
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES	  (1u << 1)

/* Options (u32) */
#define NBD_OPT_EXPORT_NAME	  1
#define NBD_OPT_ABORT		  2
#define NBD_OPT_LIST		  3
#define NBD_OPT_PEEK_EXPORT	  4 /* withdrawn */
#define NBD_OPT_STARTTLS	  5
#define NBD_OPT_INFO		  6
#define NBD_OPT_GO		  7
#define NBD_OPT_STRUCTURED_REPLY  8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT  10
#define NBD_OPT_EXTENDED_HEADERS  11 /* experimental extension branch */

/* Option reply types (u32); errors have bit 31 set */
#define NBD_REP_ACK		    1
#define NBD_REP_SERVER		    2
#define NBD_REP_INFO		    3
#define NBD_REP_META_CONTEXT	    4
#define NBD_REP_FLAG_ERROR	    (1u << 31)
#define NBD_REP_ERR_UNSUP	    (NBD_REP_FLAG_ERROR | 1)
#define NBD_REP_ERR_POLICY	    (NBD_REP_FLAG_ERROR | 2)
#define NBD_REP_ERR_INVALID	    (NBD_REP_FLAG_ERROR | 3)
#define NBD_REP_ERR_PLATFORM	    (NBD_REP_FLAG_ERROR | 4)
#define NBD_REP_ERR_TLS_REQD	    (NBD_REP_FLAG_ERROR | 5)
#define NBD_REP_ERR_UNKNOWN	    (NBD_REP_FLAG_ERROR | 6)
#define NBD_REP_ERR_SHUTDOWN	    (NBD_REP_FLAG_ERROR | 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (NBD_REP_FLAG_ERROR | 8)
#define NBD_REP_ERR_TOO_BIG	    (NBD_REP_FLAG_ERROR | 9)

/* NBD_REP_INFO payload types (u16) */
#define NBD_INFO_EXPORT	     0 /* u64 size, u16 transmission flags */
#define NBD_INFO_NAME	     1 /* name (no length field) */
#define NBD_INFO_DESCRIPTION 2 /* description (no length field) */
#define NBD_INFO_BLOCK_SIZE  3 /* u32 minimum, u32 preferred, u32 maximum payload */

/* Transmission flags (u16) */
#define NBD_FLAG_HAS_FLAGS	      (1u << 0)
#define NBD_FLAG_READ_ONLY	      (1u << 1)
#define NBD_FLAG_SEND_FLUSH	      (1u << 2)
#define NBD_FLAG_SEND_FUA	      (1u << 3)
#define NBD_FLAG_ROTATIONAL	      (1u << 4)
#define NBD_FLAG_SEND_TRIM	      (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES    (1u << 6)
#define NBD_FLAG_SEND_DF	      (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN	      (1u << 8)
#define NBD_FLAG_SEND_RESIZE	      (1u << 9)
#define NBD_FLAG_SEND_CACHE	      (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO	      (1u << 11)
#define NBD_FLAG_BLOCK_STATUS_PAYLOAD (1u << 12)

/* The greeting: magic, IHAVEOPT, handshake flags. */
struct nbd_greeting {
	uint64_t magic;	  /* NBD_MAGIC */
	uint64_t version; /* NBD_OPT_MAGIC */
	uint16_t gflags;  /* NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_greeting) == 18, "greeting is 18 bytes");

/* An option request header, followed by optlen bytes of data. */
struct nbd_option_hdr {
	uint64_t magic;	 /* NBD_OPT_MAGIC */
	uint32_t option; /* NBD_OPT_* */
	uint32_t optlen; /* bytes of data that follow */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_option_hdr) == 16, "option header is 16 bytes");

/* An option reply header, followed by replylen bytes of data. */
struct nbd_option_reply {
	uint64_t magic;	   /* NBD_REP_MAGIC */
	uint32_t option;   /* echo of the option */
	uint32_t reply;	   /* NBD_REP_* */
	uint32_t replylen; /* bytes of data that follow */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_option_reply) == 20, "option reply header is 20 bytes");

/* The answer to NBD_OPT_EXPORT_NAME (followed by 124 zero bytes unless NO_ZEROES). */
struct nbd_export_name_reply {
	uint64_t size;	 /* export size in bytes */
	uint16_t eflags; /* transmission flags */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_export_name_reply) == 10, "export-name reply is 10 bytes");
#define NBD_EXPORT_NAME_ZEROES 124

/* ---- Transmission ------------------------------------------------------------------------ */

#define NBD_REQUEST_MAGIC	   0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC	   0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu
#define NBD_EXTENDED_REQUEST_MAGIC 0x21e41c71u /* experimental: refused like bad magic */

/* Commands (u16) */
#define NBD_CMD_READ	     0
#define NBD_CMD_WRITE	     1
#define NBD_CMD_DISC	     2
#define NBD_CMD_FLUSH	     3
#define NBD_CMD_TRIM	     4
#define NBD_CMD_CACHE	     5
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_BLOCK_STATUS 7
#define NBD_CMD_RESIZE	     8 /* experimental extension branch */

/* Command flags (u16) */
#define NBD_CMD_FLAG_FUA	 (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE	 (1u << 1)
#define NBD_CMD_FLAG_DF		 (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE	 (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO	 (1u << 4)
#define NBD_CMD_FLAG_PAYLOAD_LEN (1u << 5) /* extended headers only */

/* A request; a WRITE is followed by length bytes of data. */
struct nbd_request {
	uint32_t magic;	 /* NBD_REQUEST_MAGIC */
	uint16_t flags;	 /* NBD_CMD_FLAG_*: a separate u16, not part of the type */
	uint16_t type;	 /* NBD_CMD_* */
	uint64_t cookie; /* opaque, echoed in the reply */
	uint64_t offset;
	uint32_t length;
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_request) == 28, "request is 28 bytes");

/* A simple reply; a successful READ is followed by its data. */
struct nbd_simple_reply {
	uint32_t magic; /* NBD_SIMPLE_REPLY_MAGIC */
	uint32_t error; /* NBD_E* */
	uint64_t cookie;
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_simple_reply) == 16, "simple reply is 16 bytes");

/* A structured reply chunk header, followed by length bytes of payload. */
struct nbd_structured_reply {
	uint32_t magic; /* NBD_STRUCTURED_REPLY_MAGIC */
	uint16_t flags; /* NBD_REPLY_FLAG_DONE on the last chunk */
	uint16_t type;	/* NBD_REPLY_TYPE_* */
	uint64_t cookie;
	uint32_t length;
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_structured_reply) == 20, "chunk header is 20 bytes");

#define NBD_REPLY_FLAG_DONE (1u << 0)

/* Structured reply chunk types (u16): the final numbering (proto.md), not the drafts. */
#define NBD_REPLY_TYPE_NONE	    0
#define NBD_REPLY_TYPE_OFFSET_DATA  1	  /* u64 offset, data */
#define NBD_REPLY_TYPE_OFFSET_HOLE  2	  /* u64 offset, u32 hole size */
#define NBD_REPLY_TYPE_BLOCK_STATUS 5	  /* u32 context id, n x (u32 length, u32 flags) */
#define NBD_REPLY_TYPE_ERROR	    32769 /* u32 error, u16 message length, message */
#define NBD_REPLY_TYPE_ERROR_OFFSET 32770 /* as ERROR, then u64 offset */

/* Error values (u32) */
#define NBD_EPERM     1
#define NBD_EIO	      5
#define NBD_ENOMEM    12
#define NBD_EINVAL    22
#define NBD_ENOSPC    28
#define NBD_EOVERFLOW 75
#define NBD_ENOTSUP   95
#define NBD_ESHUTDOWN 108

/* base:allocation extent flags (u32) */
#define NBD_STATE_HOLE (1u << 0)
#define NBD_STATE_ZERO (1u << 1)

/* qemu:dirty-bitmap:NAME extent flag (u32; qemu's docs/interop/nbd.txt) */
#define NBD_STATE_DIRTY (1u << 0)

#define NBD_META_BASE_ALLOCATION "base:allocation"

/* Strings (names, descriptions, queries) MUST NOT exceed 4096 bytes (proto.md). */
#define NBD_MAX_STRING 4096

/* ---- Byte order -------------------------------------------------------------------------- */

static inline uint16_t nbd_get_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t nbd_get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t nbd_get_be64(const uint8_t *p)
{
	return ((uint64_t)nbd_get_be32(p) << 32) | nbd_get_be32(p + 4);
}

static inline void nbd_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void nbd_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void nbd_put_be64(uint8_t *p, uint64_t v)
{
	nbd_put_be32(p, (uint32_t)(v >> 32));
	nbd_put_be32(p + 4, (uint32_t)v);
}

#endif
