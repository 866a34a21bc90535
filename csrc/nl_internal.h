#ifndef PNL_NL_INTERNAL_H
#define PNL_NL_INTERNAL_H
/*
 * Internal to csrc/: the request builder (messages appended to a caller-owned buffer),
 * the bounds-checked attribute parser and the transaction runner.
 */
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <pthread.h>
#include <stdbool.h>

#include "pnl_nl.h"

struct pnl_sock {
	int fd;
	uint32_t portid;
	uint32_t seq;
	int timeout_ms;
	pthread_mutex_t lock;
	unsigned char *rbuf;
	size_t rbuf_len;
};

/* A pipeline of requests built in a caller buffer and sent with one send(). */
struct pnl_req {
	unsigned char *buf;
	size_t cap;
	size_t len;
	size_t last;        /* offset of the message being built */
	int count;
	bool overflow;
};

#define PNL_REQ_MAX_MSGS 64

void pnl_req_init(struct pnl_req *r, void *buf, size_t cap);
/* Starts a message; hdr (hdrlen bytes, e.g. struct ifinfomsg) follows the nlmsghdr. */
void *pnl_req_msg(struct pnl_req *r, uint16_t type, uint16_t flags, const void *hdr,
		  size_t hdrlen);
void pnl_req_put(struct pnl_req *r, uint16_t type, const void *data, size_t len);
/* Appends raw bytes (aligned), e.g. a struct heading a nest's payload. */
void pnl_req_put_raw(struct pnl_req *r, const void *data, size_t len);
void pnl_req_put_u32(struct pnl_req *r, uint16_t type, uint32_t v);
void pnl_req_put_u16(struct pnl_req *r, uint16_t type, uint16_t v);
void pnl_req_put_u8(struct pnl_req *r, uint16_t type, uint8_t v);
void pnl_req_put_str(struct pnl_req *r, uint16_t type, const char *s);
/* Nests: returns the offset of the nest attribute, to hand to pnl_req_nest_end. */
size_t pnl_req_nest_start(struct pnl_req *r, uint16_t type);
void pnl_req_nest_end(struct pnl_req *r, size_t nest);

/* Called for every reply message that is not an ACK/error/done. Returning a negative
 * errno records it as the transaction's error (reading continues to stay in sync). */
typedef int (*pnl_msg_cb)(const struct nlmsghdr *nh, void *ctx);

/* Sends every message of r at once and reads until each one is answered (its ACK, or
 * NLMSG_DONE for a dump). Returns 0, or the first failure with err->index naming the
 * request. Every request is processed by the kernel even after an earlier one failed. */
int pnl_sock_exec(struct pnl_sock *sock, struct pnl_req *r, pnl_msg_cb cb, void *ctx,
		  struct pnl_err *err);

/* Bounds-checked attribute table: tb[type] points at the attribute or is NULL. */
int pnl_attr_parse(const void *data, size_t len, const struct rtattr **tb, int max);
bool pnl_attr_u32(const struct rtattr *a, uint32_t *out);
bool pnl_attr_str(const struct rtattr *a, char *out, size_t outlen);
size_t pnl_attr_len(const struct rtattr *a);
const void *pnl_attr_data(const struct rtattr *a);

void pnl_err_clear(struct pnl_err *err);
int pnl_err_set(struct pnl_err *err, int index, int error, const char *msg);

/* pnl_sock_open for another netlink protocol (NETLINK_NETFILTER, say). */
int pnl_sock_open_proto(int netns_fd, int protocol, int timeout_ms, struct pnl_sock **out);

/* Enter netns_fd on the calling thread; *saved gets the original namespace's fd. */
int pnl_ns_switch(int netns_fd, int *saved);
/* Return to *saved (and close it); aborts the process if that is impossible, since a
 * thread left in the wrong namespace would silently corrupt every later call. */
void pnl_ns_restore(int saved);

#endif
