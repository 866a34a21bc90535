#ifndef PNL_LINK_H
#define PNL_LINK_H
/*
 * Network devices: create (veth with its peer directly in another namespace, bridge,
 * dummy, vxlan, macvlan), change, delete (one, or a whole link group at once), and
 * kernel-side lookup by name or index.
 */
#include "pnl_nl.h"

#define PNL_IFNAMSIZ 16
#define PNL_IFALIASZ 256
#define PNL_KEEP (-1)          /* "leave this attribute as it is" for int fields */
#define PNL_NOMASTER (-2)      /* master: detach from the bridge */

/* What to create or change. Zero/NULL/PNL_KEEP fields are left out of the message. */
struct pnl_link_req {
	const char *name;              /* create: the name; change: a new name */
	const char *kind;              /* create: "veth" "bridge" "dummy" "vxlan" "macvlan" */
	unsigned int mtu;              /* 0: kernel default / unchanged */
	const unsigned char *mac;      /* 6 bytes, or NULL */
	int master;                    /* ifindex of a bridge; 0 or PNL_KEEP: unchanged;
	                                  PNL_NOMASTER: leave its bridge */
	int up;                        /* 1 up, 0 down, PNL_KEEP unchanged */
	const char *alias;             /* IFLA_IFALIAS; NULL unchanged, "" clears it */
	int group;                     /* link group; PNL_KEEP unchanged */
	int netns_fd;                  /* create it in / move it to this namespace; PNL_KEEP */
	int link;                      /* parent ifindex (macvlan, vxlan device); 0 none */
	/* veth */
	const char *peer_name;
	int peer_netns_fd;             /* PNL_KEEP: the peer stays beside the device */
	const unsigned char *peer_mac;
	unsigned int peer_mtu;
	/* vxlan */
	unsigned int vxlan_id;
	int vxlan_family;              /* 0: no local/remote address */
	const unsigned char *vxlan_local;   /* 4 or 16 bytes by family, or NULL */
	const unsigned char *vxlan_group;   /* remote or multicast group, or NULL */
	unsigned int vxlan_port;       /* UDP port; 0: kernel default */
	int vxlan_learning;            /* 1/0, PNL_KEEP: kernel default */
	/* macvlan */
	unsigned int macvlan_mode;     /* MACVLAN_MODE_*; 0: kernel default */
};

/* A device as the kernel reports it. */
struct pnl_link_info {
	int ifindex;
	unsigned int flags;            /* IFF_* */
	unsigned int mtu;
	int master;                    /* 0: none */
	int link;                      /* IFLA_LINK: peer/parent ifindex, 0 none */
	int link_netnsid;              /* -1: same namespace */
	unsigned int group;
	int operstate;
	int mac_len;
	unsigned char mac[32];
	char name[PNL_IFNAMSIZ];
	char alias[PNL_IFALIASZ];
	char kind[32];
};

void pnl_link_req_init(struct pnl_link_req *req);
/* Creates a device (NLM_F_EXCL: -EEXIST if the name is taken). */
int pnl_link_create(struct pnl_sock *sock, const struct pnl_link_req *req, struct pnl_err *err);
/* Changes the device ifindex (or, with ifindex 0, the one named ifname). */
int pnl_link_change(struct pnl_sock *sock, int ifindex, const char *ifname,
		    const struct pnl_link_req *req, struct pnl_err *err);
/* Deletes by ifindex, or by name when ifindex is 0. */
int pnl_link_delete(struct pnl_sock *sock, int ifindex, const char *ifname, struct pnl_err *err);
/* Deletes every device of a link group in one request (one RCU wait for them all). */
int pnl_link_delete_group(struct pnl_sock *sock, unsigned int group, struct pnl_err *err);
/* Deletes many devices, pipelined in one send (each still pays its own RCU wait). */
int pnl_link_delete_many(struct pnl_sock *sock, const int *ifindexes, int n, struct pnl_err *err);
/* Bridge-port flags of a device enslaved to a bridge (AF_BRIDGE setlink):
 * hairpin: 1/0 (reflect frames back out of the port they came in, for a container
 * reaching itself through a mapped port), PNL_KEEP unchanged; isolated likewise. */
int pnl_link_set_bridge_port(struct pnl_sock *sock, int ifindex, int hairpin, int isolated,
			     struct pnl_err *err);
/* Kernel-side lookup by ifindex, or by name when ifindex is 0. */
/* Takes a bridge port out of service without the RCU wait of putting it down: moves
 * the device to link group `group` and sets its port state to disabled (the bridge
 * forwards nothing to or from it), pipelined in one send. */
int pnl_link_retire_port(struct pnl_sock *sock, int ifindex, unsigned int group,
			 struct pnl_err *err);
int pnl_link_get(struct pnl_sock *sock, int ifindex, const char *ifname,
		 struct pnl_link_info *out, struct pnl_err *err);
/* Dumps every device; fills up to max entries and returns how many exist (may be > max). */
int pnl_link_list(struct pnl_sock *sock, struct pnl_link_info *out, int max, struct pnl_err *err);

#endif
