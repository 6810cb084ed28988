/* SPDX-License-Identifier: MIT */
/*
 * err_t <-> errno (see lwip_err.h): the two conversions, side by side, so that a code added
 * to one direction is seen next to the other.
 */
#include "net/lwip/lwip_err.h"

#include <errno.h>

int net_errno(err_t err)
{
	switch (err) {
	case ERR_OK:
		return 0;
	case ERR_MEM:
	case ERR_BUF:
		return -ENOMEM;
	case ERR_TIMEOUT:
		return -ETIMEDOUT;
	case ERR_RTE:
		return -EHOSTUNREACH;
	case ERR_INPROGRESS:
		return -EINPROGRESS;
	case ERR_VAL:
	case ERR_ARG:
		return -EINVAL;
	case ERR_WOULDBLOCK:
		return -EAGAIN;
	case ERR_USE:
		return -EADDRINUSE;
	case ERR_ALREADY:
		return -EALREADY;
	case ERR_ISCONN:
		return -EISCONN;
	case ERR_CONN:
		return -ENOTCONN;
	case ERR_ABRT:
		return -ECONNABORTED;
	case ERR_RST:
		return -ECONNRESET;
	case ERR_CLSD:
		return -ENOTCONN;
	case ERR_IF:
	default:
		return -EIO;
	}
}

err_t net_err_from_errno(int rc)
{
	switch (rc) {
	case 0:
		return ERR_OK;
	case -EAGAIN:
	case -ENOMEM:
		return ERR_MEM;
	case -EMSGSIZE:
	case -EINVAL:
		return ERR_VAL;
	default:
		return ERR_IF;
	}
}
