#ifndef PNL_ATTACH_H
#define PNL_ATTACH_H
/*
 * The container attach in the fewest round trips: a veth whose container end is created
 * directly inside the container's namespace (named, with MAC and MTU, up), the host end
 * on its bridge and up; then, pipelined in the container: lo up, the addresses and the
 * default routes. On any failure the veth is deleted again: nothing is left behind.
 */
#include "pnl_nl.h"

struct pnl_attach_req {
	/* host end */
	const char *host_name;
	int master;                     /* bridge ifindex; 0: none */
	unsigned int mtu;               /* both ends; 0: kernel default */
	const char *alias;              /* IFLA_IFALIAS of the host end (owner tag), or NULL */
	int group;                      /* link group of the host end; PNL_KEEP: default */
	/* container end */
	const char *cont_name;
	const unsigned char *cont_mac;  /* 6 bytes, or NULL */
	int cont_netns_fd;
	int lo_up;                      /* also bring the container's lo up */
	/* addresses: family 0 means none */
	int family4;
	const unsigned char *addr4;
	int prefixlen4;
	const unsigned char *gateway4;  /* NULL: no default route */
	int family6;
	const unsigned char *addr6;
	int prefixlen6;
	const unsigned char *gateway6;
};

struct pnl_attach_result {
	int cont_ifindex;               /* the container end, in the container's namespace */
	int host_ifindex;               /* the host end */
};

void pnl_attach_req_init(struct pnl_attach_req *req);
/* host: a socket in the namespace of the bridge; cont: a socket in the container's
 * namespace (cont_netns_fd). err->index: 0 the veth, 1 the lookup, 2.. the pipeline. */
int pnl_veth_attach(struct pnl_sock *host, struct pnl_sock *cont,
		    const struct pnl_attach_req *req, struct pnl_attach_result *res,
		    struct pnl_err *err);

#endif
