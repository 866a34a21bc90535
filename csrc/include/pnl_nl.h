#ifndef PNL_NL_H
#define PNL_NL_H
/*
 * Netlink (NETLINK_ROUTE) sockets bound to a network namespace.
 *
 * A socket is opened inside a namespace once (the calling thread enters the namespace
 * only to create it and always switches back) and can then be used from any thread:
 * every transaction holds the socket's lock, checks sequence numbers and port id,
 * asks for extended ACKs and gives up after the receive timeout. All functions return
 * 0 (or a count) on success and a negative errno on failure; PNL_EDUMPINTR (negated)
 * reports a dump that the kernel flagged as interrupted by a concurrent change.
 */
#include <stddef.h>
#include <stdint.h>

#define PNL_ERRMSG_LEN 256
#define PNL_EDUMPINTR 4096      /* returned as -PNL_EDUMPINTR: retry the dump */
#define PNL_DEFAULT_TIMEOUT_MS 5000

/* Where a failure came from: filled by every call that takes one (may be NULL). */
struct pnl_err {
	int index;                    /* which request of a pipeline failed; -1: none */
	int error;                    /* the negative errno, 0 on success */
	char msg[PNL_ERRMSG_LEN];     /* the kernel's extended-ack text, or "" */
};

struct pnl_sock;

/* Opens a NETLINK_ROUTE socket inside the namespace netns_fd (-1: the caller's).
 * timeout_ms bounds every wait for a reply (<= 0: PNL_DEFAULT_TIMEOUT_MS). */
int pnl_sock_open(int netns_fd, int timeout_ms, struct pnl_sock **out);
void pnl_sock_close(struct pnl_sock *sock);
int pnl_sock_fd(const struct pnl_sock *sock);
/* The netlink port id the kernel gave the socket. */
uint32_t pnl_sock_portid(const struct pnl_sock *sock);

#endif
