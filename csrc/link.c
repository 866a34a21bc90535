/* Network devices: create, change, delete, look up. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if.h>
#include <linux/if_bridge.h>
#include <linux/if_link.h>
#include <linux/veth.h>
#include <string.h>
#include <sys/socket.h>

#include "nl_internal.h"
#include "pnl_failpoint.h"
#include "pnl_link.h"

#define LINK_BUF 2048

void pnl_link_req_init(struct pnl_link_req *req)
{
	memset(req, 0, sizeof(*req));
	req->up = PNL_KEEP;
	req->group = PNL_KEEP;
	req->netns_fd = PNL_KEEP;
	req->peer_netns_fd = PNL_KEEP;
	req->vxlan_learning = PNL_KEEP;
}

static int addr_len(int family)
{
	return family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
}

/* The common device attributes of a create or change. */
static void put_link_attrs(struct pnl_req *r, const struct pnl_link_req *req)
{
	if (req->name)
		pnl_req_put_str(r, IFLA_IFNAME, req->name);
	if (req->mtu)
		pnl_req_put_u32(r, IFLA_MTU, req->mtu);
	if (req->mac)
		pnl_req_put(r, IFLA_ADDRESS, req->mac, 6);
	if (req->master > 0)
		pnl_req_put_u32(r, IFLA_MASTER, (uint32_t)req->master);
	else if (req->master == PNL_NOMASTER)
		pnl_req_put_u32(r, IFLA_MASTER, 0);
	if (req->alias)
		pnl_req_put(r, IFLA_IFALIAS, req->alias, strlen(req->alias));
	if (req->group >= 0)
		pnl_req_put_u32(r, IFLA_GROUP, (uint32_t)req->group);
	if (req->netns_fd >= 0)
		pnl_req_put_u32(r, IFLA_NET_NS_FD, (uint32_t)req->netns_fd);
	/* vxlan takes its underlying device as IFLA_VXLAN_LINK (put_linkinfo), not IFLA_LINK */
	if (req->link > 0 && !(req->kind && strcmp(req->kind, "vxlan") == 0))
		pnl_req_put_u32(r, IFLA_LINK, (uint32_t)req->link);
}

static void put_veth_peer(struct pnl_req *r, const struct pnl_link_req *req)
{
	/* No IFF_UP for the peer here: the kernel cannot open it before the pair is linked
	 * (ENOTCONN); bring it up afterwards from inside its namespace. */
	struct ifinfomsg peer = { .ifi_family = AF_UNSPEC };
	size_t nest = pnl_req_nest_start(r, VETH_INFO_PEER);

	/* The peer's own ifinfomsg heads the nest's payload, then its attributes. */
	pnl_req_put_raw(r, &peer, sizeof(peer));
	if (req->peer_name)
		pnl_req_put_str(r, IFLA_IFNAME, req->peer_name);
	if (req->peer_mac)
		pnl_req_put(r, IFLA_ADDRESS, req->peer_mac, 6);
	if (req->peer_mtu)
		pnl_req_put_u32(r, IFLA_MTU, req->peer_mtu);
	if (req->peer_netns_fd >= 0)
		pnl_req_put_u32(r, IFLA_NET_NS_FD, (uint32_t)req->peer_netns_fd);
	pnl_req_nest_end(r, nest);
}

static int put_linkinfo(struct pnl_req *r, const struct pnl_link_req *req)
{
	size_t info, data;
	int alen;

	info = pnl_req_nest_start(r, IFLA_LINKINFO);
	pnl_req_put_str(r, IFLA_INFO_KIND, req->kind);
	if (strcmp(req->kind, "veth") == 0) {
		data = pnl_req_nest_start(r, IFLA_INFO_DATA);
		put_veth_peer(r, req);
		pnl_req_nest_end(r, data);
	} else if (strcmp(req->kind, "vxlan") == 0) {
		data = pnl_req_nest_start(r, IFLA_INFO_DATA);
		pnl_req_put_u32(r, IFLA_VXLAN_ID, req->vxlan_id);
		if (req->link > 0)
			pnl_req_put_u32(r, IFLA_VXLAN_LINK, (uint32_t)req->link);
		alen = addr_len(req->vxlan_family);
		if (req->vxlan_family && !alen)
			return -EAFNOSUPPORT;
		if (req->vxlan_local)
			pnl_req_put(r, alen == 4 ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6,
				    req->vxlan_local, (size_t)alen);
		if (req->vxlan_group)
			pnl_req_put(r, alen == 4 ? IFLA_VXLAN_GROUP : IFLA_VXLAN_GROUP6,
				    req->vxlan_group, (size_t)alen);
		if (req->vxlan_port) {
			if (req->vxlan_port > 0xffff)
				return -EINVAL;
			pnl_req_put_u16(r, IFLA_VXLAN_PORT, htons((uint16_t)req->vxlan_port));
		}
		if (req->vxlan_learning >= 0)
			pnl_req_put_u8(r, IFLA_VXLAN_LEARNING, (uint8_t)req->vxlan_learning);
		pnl_req_nest_end(r, data);
	} else if (strcmp(req->kind, "macvlan") == 0) {
		if (req->macvlan_mode) {
			data = pnl_req_nest_start(r, IFLA_INFO_DATA);
			pnl_req_put_u32(r, IFLA_MACVLAN_MODE, req->macvlan_mode);
			pnl_req_nest_end(r, data);
		}
	} else if (strcmp(req->kind, "bridge") != 0 && strcmp(req->kind, "dummy") != 0) {
		return -EOPNOTSUPP;
	}
	pnl_req_nest_end(r, info);
	return 0;
}

/* The kernel ignores IFLA_IFALIAS in a create (rtnl_create_link does not apply it), so
 * set it with a second request, in the namespace the device was created in. If that
 * fails, the new device is deleted again: a create never half-succeeds. */
static int set_alias_after_create(struct pnl_sock *sock, const struct pnl_link_req *req,
				  struct pnl_err *err)
{
	struct pnl_sock *other = NULL;
	struct pnl_sock *where = sock;
	struct pnl_link_req ch;
	int rc;

	if (req->netns_fd >= 0) {
		rc = pnl_sock_open(req->netns_fd, sock->timeout_ms, &other);
		if (rc < 0)
			return pnl_err_set(err, -1, rc, "cannot open a socket to set the alias");
		where = other;
	}
	pnl_link_req_init(&ch);
	ch.alias = req->alias;
	rc = pnl_link_change(where, 0, req->name, &ch, err);
	if (rc < 0)
		pnl_link_delete(where, 0, req->name, NULL);
	pnl_sock_close(other);
	return rc;
}

int pnl_link_create(struct pnl_sock *sock, const struct pnl_link_req *req, struct pnl_err *err)
{
	unsigned char buf[LINK_BUF];
	struct pnl_req r;
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };
	int rc;

	pnl_err_clear(err);
	if (!req || !req->name || !req->kind)
		return pnl_err_set(err, -1, -EINVAL, "a new device needs a name and a kind");
	if (req->up == 1) {
		ifi.ifi_flags = IFF_UP;
		ifi.ifi_change = IFF_UP;
	}
	pnl_req_init(&r, buf, sizeof(buf));
	pnl_req_msg(&r, RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof(ifi));
	put_link_attrs(&r, req);
	rc = put_linkinfo(&r, req);
	if (rc < 0)
		return pnl_err_set(err, -1, rc, "unsupported device options");
	rc = pnl_failpoint_check("link.create");
	if (rc < 0)
		return pnl_err_set(err, 0, rc, "injected by failpoint link.create");
	rc = pnl_sock_exec(sock, &r, NULL, NULL, err);
	if (rc < 0 || !req->alias || !*req->alias)
		return rc;
	return set_alias_after_create(sock, req, err);
}

int pnl_link_change(struct pnl_sock *sock, int ifindex, const char *ifname,
		    const struct pnl_link_req *req, struct pnl_err *err)
{
	unsigned char buf[LINK_BUF];
	struct pnl_req r;
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = ifindex };

	pnl_err_clear(err);
	if (!req || (ifindex <= 0 && !ifname))
		return pnl_err_set(err, -1, -EINVAL, "no device named");
	if (req->up >= 0) {
		ifi.ifi_flags = req->up ? IFF_UP : 0;
		ifi.ifi_change = IFF_UP;
	}
	pnl_req_init(&r, buf, sizeof(buf));
	pnl_req_msg(&r, RTM_NEWLINK, NLM_F_ACK, &ifi, sizeof(ifi));
	if (ifindex <= 0) {
		/* Select by name; a rename then needs the index, so refuse the mix. */
		if (req->name)
			return pnl_err_set(err, -1, -EINVAL, "renaming needs the device's index");
		pnl_req_put_str(&r, IFLA_IFNAME, ifname);
	}
	put_link_attrs(&r, req);
	return pnl_sock_exec(sock, &r, NULL, NULL, err);
}

int pnl_link_delete(struct pnl_sock *sock, int ifindex, const char *ifname, struct pnl_err *err)
{
	unsigned char buf[256];
	struct pnl_req r;
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = ifindex };

	pnl_err_clear(err);
	if (ifindex <= 0 && !ifname)
		return pnl_err_set(err, -1, -EINVAL, "no device named");
	pnl_req_init(&r, buf, sizeof(buf));
	pnl_req_msg(&r, RTM_DELLINK, NLM_F_ACK, &ifi, sizeof(ifi));
	if (ifindex <= 0)
		pnl_req_put_str(&r, IFLA_IFNAME, ifname);
	int fp = pnl_failpoint_check("link.delete");
	if (fp < 0)
		return pnl_err_set(err, 0, fp, "injected by failpoint link.delete");
	return pnl_sock_exec(sock, &r, NULL, NULL, err);
}

int pnl_link_delete_group(struct pnl_sock *sock, unsigned int group, struct pnl_err *err)
{
	unsigned char buf[128];
	struct pnl_req r;
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };

	pnl_err_clear(err);
	if (group == 0)
		return pnl_err_set(err, -1, -EINVAL, "group 0 is every device's default group");
	pnl_req_init(&r, buf, sizeof(buf));
	pnl_req_msg(&r, RTM_DELLINK, NLM_F_ACK, &ifi, sizeof(ifi));
	pnl_req_put_u32(&r, IFLA_GROUP, group);
	int fp = pnl_failpoint_check("link.delete");
	if (fp < 0)
		return pnl_err_set(err, 0, fp, "injected by failpoint link.delete");
	return pnl_sock_exec(sock, &r, NULL, NULL, err);
}

int pnl_link_delete_many(struct pnl_sock *sock, const int *ifindexes, int n, struct pnl_err *err)
{
	unsigned char buf[PNL_REQ_MAX_MSGS * 40];
	struct pnl_req r;
	int i, done = 0, rc = 0;

	pnl_err_clear(err);
	if (n < 0 || (n > 0 && !ifindexes))
		return pnl_err_set(err, -1, -EINVAL, NULL);
	int fp = n > 0 ? pnl_failpoint_check("link.delete") : 0;
	if (fp < 0)
		return pnl_err_set(err, 0, fp, "injected by failpoint link.delete");
	while (done < n) {
		int chunk = n - done > PNL_REQ_MAX_MSGS ? PNL_REQ_MAX_MSGS : n - done;
		struct pnl_err e;

		pnl_req_init(&r, buf, sizeof(buf));
		for (i = 0; i < chunk; i++) {
			struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC,
						 .ifi_index = ifindexes[done + i] };
			pnl_req_msg(&r, RTM_DELLINK, NLM_F_ACK, &ifi, sizeof(ifi));
		}
		pnl_err_clear(&e);
		if (pnl_sock_exec(sock, &r, NULL, NULL, &e) < 0 && rc == 0) {
			rc = e.error;
			pnl_err_set(err, e.index >= 0 ? done + e.index : -1, e.error, e.msg);
		}
		done += chunk;
	}
	return rc;
}

int pnl_link_set_bridge_port(struct pnl_sock *sock, int ifindex, int hairpin, int isolated,
			     struct pnl_err *err)
{
	unsigned char buf[128];
	struct pnl_req r;
	struct ifinfomsg ifi = { .ifi_family = AF_BRIDGE, .ifi_index = ifindex };
	size_t nest;

	pnl_err_clear(err);
	if (ifindex <= 0)
		return pnl_err_set(err, -1, -EINVAL, "no device named");
	pnl_req_init(&r, buf, sizeof(buf));
	pnl_req_msg(&r, RTM_SETLINK, NLM_F_ACK, &ifi, sizeof(ifi));
	nest = pnl_req_nest_start(&r, IFLA_PROTINFO);
	if (hairpin >= 0)
		pnl_req_put_u8(&r, IFLA_BRPORT_MODE, hairpin ? 1 : 0);
	if (isolated >= 0)
		pnl_req_put_u8(&r, IFLA_BRPORT_ISOLATED, isolated ? 1 : 0);
	pnl_req_nest_end(&r, nest);
	return pnl_sock_exec(sock, &r, NULL, NULL, err);
}

int pnl_link_retire_port(struct pnl_sock *sock, int ifindex, unsigned int group,
			 struct pnl_err *err)
{
	unsigned char buf[128];
	struct pnl_req r;
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = ifindex };
	struct ifinfomsg bri = { .ifi_family = AF_BRIDGE, .ifi_index = ifindex };
	size_t nest;

	pnl_err_clear(err);
	if (ifindex <= 0)
		return pnl_err_set(err, -1, -EINVAL, "no device named");
	if (group == 0)
		return pnl_err_set(err, -1, -EINVAL, "group 0 is every device's default group");
	/* Two requests in one send: the group first, so that a device whose port state
	 * cannot change is still deleted with its group. */
	pnl_req_init(&r, buf, sizeof(buf));
	pnl_req_msg(&r, RTM_SETLINK, NLM_F_ACK, &ifi, sizeof(ifi));
	pnl_req_put_u32(&r, IFLA_GROUP, group);
	pnl_req_msg(&r, RTM_SETLINK, NLM_F_ACK, &bri, sizeof(bri));
	nest = pnl_req_nest_start(&r, IFLA_PROTINFO);
	pnl_req_put_u8(&r, IFLA_BRPORT_STATE, BR_STATE_DISABLED);
	pnl_req_nest_end(&r, nest);
	return pnl_sock_exec(sock, &r, NULL, NULL, err);
}

/* ---- lookups ------------------------------------------------------------------------ */

static int parse_link(const struct nlmsghdr *nh, struct pnl_link_info *out)
{
	const struct ifinfomsg *ifi;
	const struct rtattr *tb[IFLA_MAX + 1];
	const struct rtattr *li[IFLA_INFO_MAX + 1];
	uint32_t v;
	size_t alen;

	if (nh->nlmsg_type != RTM_NEWLINK || nh->nlmsg_len < NLMSG_LENGTH(sizeof(*ifi)))
		return -EBADMSG;
	ifi = NLMSG_DATA(nh);
	if (pnl_attr_parse((const unsigned char *)ifi + NLMSG_ALIGN(sizeof(*ifi)),
			   nh->nlmsg_len - NLMSG_LENGTH(NLMSG_ALIGN(sizeof(*ifi))), tb, IFLA_MAX) < 0)
		return -EBADMSG;
	memset(out, 0, sizeof(*out));
	out->ifindex = ifi->ifi_index;
	out->flags = ifi->ifi_flags;
	out->link_netnsid = -1;
	if (pnl_attr_u32(tb[IFLA_MTU], &v))
		out->mtu = v;
	if (pnl_attr_u32(tb[IFLA_MASTER], &v))
		out->master = (int)v;
	if (pnl_attr_u32(tb[IFLA_LINK], &v))
		out->link = (int)v;
	if (pnl_attr_u32(tb[IFLA_LINK_NETNSID], &v))
		out->link_netnsid = (int)v;
	if (pnl_attr_u32(tb[IFLA_GROUP], &v))
		out->group = v;
	if (tb[IFLA_OPERSTATE] && pnl_attr_len(tb[IFLA_OPERSTATE]) >= 1)
		out->operstate = *(const unsigned char *)pnl_attr_data(tb[IFLA_OPERSTATE]);
	if (tb[IFLA_ADDRESS]) {
		alen = pnl_attr_len(tb[IFLA_ADDRESS]);
		if (alen > sizeof(out->mac))
			alen = sizeof(out->mac);
		memcpy(out->mac, pnl_attr_data(tb[IFLA_ADDRESS]), alen);
		out->mac_len = (int)alen;
	}
	pnl_attr_str(tb[IFLA_IFNAME], out->name, sizeof(out->name));
	pnl_attr_str(tb[IFLA_IFALIAS], out->alias, sizeof(out->alias));
	if (tb[IFLA_LINKINFO] &&
	    pnl_attr_parse(pnl_attr_data(tb[IFLA_LINKINFO]), pnl_attr_len(tb[IFLA_LINKINFO]), li,
			   IFLA_INFO_MAX) == 0)
		pnl_attr_str(li[IFLA_INFO_KIND], out->kind, sizeof(out->kind));
	return 0;
}

struct link_get_ctx {
	struct pnl_link_info *out;
	int found;
};

static int link_get_cb(const struct nlmsghdr *nh, void *ctx)
{
	struct link_get_ctx *c = ctx;
	int rc = parse_link(nh, c->out);

	if (rc == 0)
		c->found = 1;
	return rc;
}

int pnl_link_get(struct pnl_sock *sock, int ifindex, const char *ifname,
		 struct pnl_link_info *out, struct pnl_err *err)
{
	unsigned char buf[256];
	struct pnl_req r;
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = ifindex };
	struct link_get_ctx ctx = { .out = out };
	int rc;

	pnl_err_clear(err);
	if (!out || (ifindex <= 0 && !ifname))
		return pnl_err_set(err, -1, -EINVAL, NULL);
	pnl_req_init(&r, buf, sizeof(buf));
	pnl_req_msg(&r, RTM_GETLINK, NLM_F_ACK, &ifi, sizeof(ifi));
	if (ifindex <= 0)
		pnl_req_put_str(&r, IFLA_IFNAME, ifname);
	pnl_req_put_u32(&r, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
	rc = pnl_sock_exec(sock, &r, link_get_cb, &ctx, err);
	if (rc < 0)
		return rc;
	if (!ctx.found)
		return pnl_err_set(err, 0, -ENODEV, NULL);
	return 0;
}

struct link_list_ctx {
	struct pnl_link_info *out;
	int max;
	int count;
};

static int link_list_cb(const struct nlmsghdr *nh, void *ctx)
{
	struct link_list_ctx *c = ctx;
	struct pnl_link_info tmp;
	int rc = parse_link(nh, c->count < c->max ? &c->out[c->count] : &tmp);

	if (rc == 0)
		c->count++;
	return rc;
}

int pnl_link_list(struct pnl_sock *sock, struct pnl_link_info *out, int max, struct pnl_err *err)
{
	unsigned char buf[128];
	struct pnl_req r;
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };
	struct link_list_ctx ctx = { .out = out, .max = out ? max : 0 };
	int rc;

	pnl_err_clear(err);
	pnl_req_init(&r, buf, sizeof(buf));
	pnl_req_msg(&r, RTM_GETLINK, NLM_F_DUMP, &ifi, sizeof(ifi));
	pnl_req_put_u32(&r, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
	rc = pnl_sock_exec(sock, &r, link_list_cb, &ctx, err);
	return rc < 0 ? rc : ctx.count;
}
