/* SPDX-License-Identifier: MIT */
/*
 * The err_t boundary: the only place lwIP's error codes and our negative errnos are
 * converted, both ways (docs/layout.md, "Errors"). Everything above net/lwip/ sees errnos.
 */
#ifndef NET_LWIP_LWIP_ERR_H
#define NET_LWIP_LWIP_ERR_H

#include "lwip/err.h"

/* lwIP's @err as a negative errno: 0 for ERR_OK, -EIO for ERR_IF and anything unknown. */
int net_errno(err_t err);
/*
 * A driver's 0 / -errno as the err_t a netif's linkoutput returns: ERR_MEM for -EAGAIN and
 * -ENOMEM (lwIP may retry), ERR_VAL for -EMSGSIZE and -EINVAL, ERR_IF otherwise.
 */
err_t net_err_from_errno(int rc);

#endif
