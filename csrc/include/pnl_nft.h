#ifndef PNL_NFT_H
#define PNL_NFT_H
/*
 * nftables set elements over nfnetlink (NETLINK_NETFILTER): the one firewall change on
 * a hot path. Adding interface indexes to a set (or removing them) is one nftables
 * transaction, which takes the namespace's nftables commit lock and never the RTNL
 * lock that every link change waits for. Tables, chains and sets themselves are made
 * elsewhere (libnftables); this only changes the elements of a set whose key is one
 * 32-bit value in host byte order (nft type iface_index, for instance).
 */
#include <stdint.h>

#include "pnl_nl.h"

#define PNL_NFT_NAMESIZ 256     /* NFT_NAME_MAXLEN, with its NUL */
#define PNL_NFT_MAX_ELEMS 1024  /* elements per call */

/* A NETLINK_NETFILTER socket in the namespace netns_fd (-1: the caller's); closed with
 * pnl_sock_close. */
int pnl_nft_sock_open(int netns_fd, int timeout_ms, struct pnl_sock **out);

#define PNL_NFT_DESTROY 0       /* remove; a key that is not there is fine (Linux 6.3) */
#define PNL_NFT_ADD 1           /* add; a key that is there already is fine */
#define PNL_NFT_DELETE 2        /* remove; a key that is not there fails (-ENOENT) */

/* Adds or removes (op: PNL_NFT_*) the n keys to or from set `set` of table `table` in
 * address family `family` (an NFPROTO_* value: 7 is bridge), in one transaction: all
 * or none. */
int pnl_nft_set_keys(struct pnl_sock *sock, int family, const char *table, const char *set,
		     const uint32_t *keys, int n, int op, struct pnl_err *err);

#endif
