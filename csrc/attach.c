/* The veth attach of a container, in three netlink round trips. */
#include <errno.h>
#include <linux/if.h>
#include <string.h>
#include <sys/socket.h>

#include "nl_internal.h"
#include "pnl_failpoint.h"
#include "pnl_attach.h"
#include "pnl_link.h"
#include "rtnl_build.h"

void pnl_attach_req_init(struct pnl_attach_req *req)
{
	memset(req, 0, sizeof(*req));
	req->group = PNL_KEEP;
	req->cont_netns_fd = -1;
}

static int plumb_container(struct pnl_sock *cont, const struct pnl_attach_req *req, int ifindex,
			   struct pnl_err *err)
{
	unsigned char buf[1024];
	struct pnl_req r;
	int rc = 0;

	pnl_req_init(&r, buf, sizeof(buf));
	if (req->lo_up) {
		struct ifinfomsg lo = { .ifi_family = AF_UNSPEC, .ifi_index = 1,
					.ifi_flags = IFF_UP, .ifi_change = IFF_UP };
		pnl_req_msg(&r, RTM_NEWLINK, NLM_F_ACK, &lo, sizeof(lo));
	}
	{
		/* Up before the addresses, so the kernel adds their prefix routes at once. */
		struct ifinfomsg up = { .ifi_family = AF_UNSPEC, .ifi_index = ifindex,
					.ifi_flags = IFF_UP, .ifi_change = IFF_UP };
		pnl_req_msg(&r, RTM_NEWLINK, NLM_F_ACK, &up, sizeof(up));
	}
	if (req->family4 && rc == 0)
		rc = pnl_build_addr(&r, RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, ifindex,
				    AF_INET, req->addr4, req->prefixlen4, 0);
	if (req->family6 && rc == 0)
		rc = pnl_build_addr(&r, RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, ifindex,
				    AF_INET6, req->addr6, req->prefixlen6, IFA_F_NODAD);
	if (req->family4 && req->gateway4 && rc == 0) {
		struct pnl_route_req rt = { .family = AF_INET, .gateway = req->gateway4,
					    .oif = ifindex };
		rc = pnl_build_route(&r, RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &rt);
	}
	if (req->family6 && req->gateway6 && rc == 0) {
		struct pnl_route_req rt = { .family = AF_INET6, .gateway = req->gateway6,
					    .oif = ifindex };
		rc = pnl_build_route(&r, RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &rt);
	}
	if (rc < 0)
		return pnl_err_set(err, -1, rc, "invalid address or route");
	return pnl_sock_exec(cont, &r, NULL, NULL, err);
}

int pnl_veth_attach(struct pnl_sock *host, struct pnl_sock *cont,
		    const struct pnl_attach_req *req, struct pnl_attach_result *res,
		    struct pnl_err *err)
{
	struct pnl_link_req lr;
	struct pnl_link_info info;
	struct pnl_err sub;
	int rc;

	pnl_err_clear(err);
	if (!host || !cont || !req || !req->host_name || !req->cont_name || req->cont_netns_fd < 0)
		return pnl_err_set(err, -1, -EINVAL, "attach needs both sockets, names and a netns");

	pnl_link_req_init(&lr);
	lr.name = req->host_name;
	lr.kind = "veth";
	lr.mtu = req->mtu;
	lr.master = req->master;
	lr.up = 1;
	lr.alias = req->alias;
	lr.group = req->group;
	lr.peer_name = req->cont_name;
	lr.peer_netns_fd = req->cont_netns_fd;
	lr.peer_mac = req->cont_mac;
	lr.peer_mtu = req->mtu;
	rc = pnl_link_create(host, &lr, &sub);
	if (rc < 0)
		return pnl_err_set(err, 0, rc, sub.msg);
	rc = pnl_failpoint_check("attach.veth");
	if (rc < 0) {
		pnl_err_set(err, 1, rc, "injected by failpoint attach.veth");
		goto rollback;
	}

	rc = pnl_link_get(cont, 0, req->cont_name, &info, &sub);
	if (rc < 0) {
		pnl_err_set(err, 1, rc, sub.msg);
		goto rollback;
	}
	rc = pnl_failpoint_check("attach.plumb");
	if (rc < 0) {
		pnl_err_set(err, 2, rc, "injected by failpoint attach.plumb");
		goto rollback;
	}
	rc = plumb_container(cont, req, info.ifindex, &sub);
	if (rc < 0) {
		pnl_err_set(err, sub.index >= 0 ? 2 + sub.index : 2, rc, sub.msg);
		goto rollback;
	}
	if (res) {
		res->cont_ifindex = info.ifindex;
		res->host_ifindex = info.link;          /* the peer of the container end */
	}
	return 0;

rollback:
	pnl_link_delete(host, 0, req->host_name, NULL);
	return rc;
}
