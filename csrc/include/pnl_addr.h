#ifndef PNL_ADDR_H
#define PNL_ADDR_H
/* IPv4/IPv6 addresses and routes. Addresses are raw network-order bytes (4 or 16). */
#include "pnl_nl.h"

#define PNL_ADDR_NODAD 0x02        /* IFA_F_NODAD: usable at once, no duplicate detection */

struct pnl_addr_info {
	int ifindex;
	int family;
	int prefixlen;
	unsigned int flags;
	int scope;
	unsigned char addr[16];
};

struct pnl_route_req {
	int family;                     /* AF_INET or AF_INET6 */
	const unsigned char *dst;       /* NULL: the default route */
	int dst_len;                    /* prefix length of dst */
	const unsigned char *gateway;   /* NULL: an on-link (scope link) route */
	int oif;                        /* output ifindex; 0: let the kernel pick */
	unsigned int table;             /* 0: main */
	unsigned int priority;          /* metric; 0: none */
	int protocol;                   /* RTPROT_*; 0: RTPROT_BOOT */
};

int pnl_addr_add(struct pnl_sock *sock, int ifindex, int family, const unsigned char *addr,
		 int prefixlen, unsigned int flags, struct pnl_err *err);
int pnl_addr_delete(struct pnl_sock *sock, int ifindex, int family, const unsigned char *addr,
		    int prefixlen, struct pnl_err *err);
/* Addresses of ifindex (0: every device) and family (0: both); returns how many exist. */
int pnl_addr_list(struct pnl_sock *sock, int ifindex, int family, struct pnl_addr_info *out,
		  int max, struct pnl_err *err);

int pnl_route_add(struct pnl_sock *sock, const struct pnl_route_req *req, struct pnl_err *err);
int pnl_route_delete(struct pnl_sock *sock, const struct pnl_route_req *req,
		     struct pnl_err *err);

#endif
