#ifndef PNL_RTNL_BUILD_H
#define PNL_RTNL_BUILD_H
/* Internal: append address and route requests to a pipeline (used by attach). */
#include "nl_internal.h"
#include "pnl_addr.h"

int pnl_build_addr(struct pnl_req *r, uint16_t type, uint16_t flags, int ifindex, int family,
		   const unsigned char *addr, int prefixlen, unsigned int aflags);
int pnl_build_route(struct pnl_req *r, uint16_t type, uint16_t flags,
		    const struct pnl_route_req *req);

#endif
