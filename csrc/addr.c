/* Addresses and routes. */
#include <errno.h>
#include <linux/if_addr.h>
#include <string.h>
#include <sys/socket.h>

#include "nl_internal.h"
#include "pnl_failpoint.h"
#include "pnl_addr.h"
#include "rtnl_build.h"

int pnl_build_addr(struct pnl_req *r, uint16_t type, uint16_t flags, int ifindex, int family,
		   const unsigned char *addr, int prefixlen, unsigned int aflags)
{
	struct ifaddrmsg ifa = { 0 };
	int alen = family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;

	if (!alen)
		return -EAFNOSUPPORT;
	if (!addr || ifindex <= 0 || prefixlen < 0 || prefixlen > alen * 8)
		return -EINVAL;
	ifa.ifa_family = (unsigned char)family;
	ifa.ifa_prefixlen = (unsigned char)prefixlen;
	ifa.ifa_index = (unsigned int)ifindex;
	ifa.ifa_flags = (unsigned char)(aflags & 0xff);
	pnl_req_msg(r, type, flags, &ifa, sizeof(ifa));
	pnl_req_put(r, IFA_LOCAL, addr, (size_t)alen);
	pnl_req_put(r, IFA_ADDRESS, addr, (size_t)alen);
	if (aflags > 0xff)
		pnl_req_put_u32(r, IFA_FLAGS, aflags);
	if (type == RTM_NEWADDR && family == AF_INET && prefixlen < 31) {
		unsigned char brd[4];
		uint32_t host = prefixlen ? (0xffffffffu >> prefixlen) : 0xffffffffu;

		memcpy(brd, addr, 4);
		brd[0] |= (unsigned char)(host >> 24);
		brd[1] |= (unsigned char)(host >> 16);
		brd[2] |= (unsigned char)(host >> 8);
		brd[3] |= (unsigned char)host;
		pnl_req_put(r, IFA_BROADCAST, brd, 4);
	}
	return 0;
}

int pnl_build_route(struct pnl_req *r, uint16_t type, uint16_t flags,
		    const struct pnl_route_req *req)
{
	struct rtmsg rtm = { 0 };
	int alen;

	if (!req)
		return -EINVAL;
	alen = req->family == AF_INET ? 4 : req->family == AF_INET6 ? 16 : 0;
	if (!alen)
		return -EAFNOSUPPORT;
	if (req->dst_len < 0 || req->dst_len > alen * 8 || (!req->dst && req->dst_len))
		return -EINVAL;
	if (!req->gateway && req->oif <= 0)
		return -EINVAL;
	rtm.rtm_family = (unsigned char)req->family;
	rtm.rtm_dst_len = (unsigned char)req->dst_len;
	rtm.rtm_table = req->table && req->table < 256 ? (unsigned char)req->table : RT_TABLE_MAIN;
	rtm.rtm_protocol = req->protocol ? (unsigned char)req->protocol : RTPROT_BOOT;
	rtm.rtm_type = RTN_UNICAST;
	rtm.rtm_scope = req->gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
	if (type == RTM_DELROUTE) {
		rtm.rtm_scope = RT_SCOPE_NOWHERE;
		rtm.rtm_protocol = req->protocol ? (unsigned char)req->protocol : 0;
	}
	pnl_req_msg(r, type, flags, &rtm, sizeof(rtm));
	if (req->dst)
		pnl_req_put(r, RTA_DST, req->dst, (size_t)alen);
	if (req->gateway)
		pnl_req_put(r, RTA_GATEWAY, req->gateway, (size_t)alen);
	if (req->oif > 0)
		pnl_req_put_u32(r, RTA_OIF, (uint32_t)req->oif);
	if (req->table >= 256)
		pnl_req_put_u32(r, RTA_TABLE, req->table);
	if (req->priority)
		pnl_req_put_u32(r, RTA_PRIORITY, req->priority);
	return 0;
}

static int exec_one(struct pnl_sock *sock, struct pnl_req *r, int build_rc, struct pnl_err *err)
{
	if (build_rc < 0) {
		pnl_err_clear(err);
		return pnl_err_set(err, -1, build_rc, "invalid request");
	}
	return pnl_sock_exec(sock, r, NULL, NULL, err);
}

int pnl_addr_add(struct pnl_sock *sock, int ifindex, int family, const unsigned char *addr,
		 int prefixlen, unsigned int flags, struct pnl_err *err)
{
	unsigned char buf[256];
	struct pnl_req r;
	int fp = pnl_failpoint_check("addr.add");

	if (fp < 0) {
		pnl_err_clear(err);
		return pnl_err_set(err, 0, fp, "injected by failpoint addr.add");
	}
	pnl_req_init(&r, buf, sizeof(buf));
	return exec_one(sock, &r,
			pnl_build_addr(&r, RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
				       ifindex, family, addr, prefixlen, flags),
			err);
}

int pnl_addr_delete(struct pnl_sock *sock, int ifindex, int family, const unsigned char *addr,
		    int prefixlen, struct pnl_err *err)
{
	unsigned char buf[256];
	struct pnl_req r;

	pnl_req_init(&r, buf, sizeof(buf));
	return exec_one(sock, &r,
			pnl_build_addr(&r, RTM_DELADDR, NLM_F_ACK, ifindex, family, addr,
				       prefixlen, 0),
			err);
}

int pnl_route_add(struct pnl_sock *sock, const struct pnl_route_req *req, struct pnl_err *err)
{
	unsigned char buf[256];
	struct pnl_req r;
	int fp = pnl_failpoint_check("route.add");

	if (fp < 0) {
		pnl_err_clear(err);
		return pnl_err_set(err, 0, fp, "injected by failpoint route.add");
	}

	pnl_req_init(&r, buf, sizeof(buf));
	return exec_one(sock, &r,
			pnl_build_route(&r, RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, req),
			err);
}

int pnl_route_delete(struct pnl_sock *sock, const struct pnl_route_req *req,
		     struct pnl_err *err)
{
	unsigned char buf[256];
	struct pnl_req r;

	pnl_req_init(&r, buf, sizeof(buf));
	return exec_one(sock, &r, pnl_build_route(&r, RTM_DELROUTE, NLM_F_ACK, req), err);
}

/* ---- address dump ------------------------------------------------------------------- */

struct addr_list_ctx {
	struct pnl_addr_info *out;
	int max;
	int count;
	int ifindex;
};

static int addr_list_cb(const struct nlmsghdr *nh, void *ctx)
{
	struct addr_list_ctx *c = ctx;
	const struct ifaddrmsg *ifa;
	const struct rtattr *tb[IFA_MAX + 1];
	const struct rtattr *a;
	struct pnl_addr_info tmp, *o;
	size_t alen;
	uint32_t v;

	if (nh->nlmsg_type != RTM_NEWADDR || nh->nlmsg_len < NLMSG_LENGTH(sizeof(*ifa)))
		return -EBADMSG;
	ifa = NLMSG_DATA(nh);
	if (c->ifindex > 0 && (int)ifa->ifa_index != c->ifindex)
		return 0;       /* kernels without strict checking ignore the filter */
	if (pnl_attr_parse((const unsigned char *)ifa + NLMSG_ALIGN(sizeof(*ifa)),
			   nh->nlmsg_len - NLMSG_LENGTH(NLMSG_ALIGN(sizeof(*ifa))), tb, IFA_MAX) < 0)
		return -EBADMSG;
	o = c->count < c->max ? &c->out[c->count] : &tmp;
	memset(o, 0, sizeof(*o));
	o->ifindex = (int)ifa->ifa_index;
	o->family = ifa->ifa_family;
	o->prefixlen = ifa->ifa_prefixlen;
	o->scope = ifa->ifa_scope;
	o->flags = ifa->ifa_flags;
	if (pnl_attr_u32(tb[IFA_FLAGS], &v))
		o->flags = v;
	a = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
	if (!a)
		return 0;
	alen = pnl_attr_len(a);
	if (alen != (ifa->ifa_family == AF_INET ? 4u : 16u))
		return -EBADMSG;
	memcpy(o->addr, pnl_attr_data(a), alen);
	c->count++;
	return 0;
}

int pnl_addr_list(struct pnl_sock *sock, int ifindex, int family, struct pnl_addr_info *out,
		  int max, struct pnl_err *err)
{
	unsigned char buf[128];
	struct pnl_req r;
	struct ifaddrmsg ifa = { .ifa_family = (unsigned char)family,
				 .ifa_index = ifindex > 0 ? (unsigned int)ifindex : 0 };
	struct addr_list_ctx ctx = { .out = out, .max = out ? max : 0, .ifindex = ifindex };
	int rc;

	pnl_err_clear(err);
	pnl_req_init(&r, buf, sizeof(buf));
	pnl_req_msg(&r, RTM_GETADDR, NLM_F_DUMP, &ifa, sizeof(ifa));
	rc = pnl_sock_exec(sock, &r, addr_list_cb, &ctx, err);
	return rc < 0 ? rc : ctx.count;
}
