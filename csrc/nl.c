/* Netlink sockets, the request builder, the transaction runner and attribute parsing. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "nl_internal.h"
#include "pnl_failpoint.h"

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif
#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif
#ifndef NLM_F_CAPPED
#define NLM_F_CAPPED 0x100
#endif
#ifndef NLM_F_ACK_TLVS
#define NLM_F_ACK_TLVS 0x200
#endif
#ifndef NLMSGERR_ATTR_MSG
#define NLMSGERR_ATTR_MSG 1
#endif

#define PNL_RBUF_LEN (64 * 1024)

/* ---- errors ------------------------------------------------------------------------- */

void pnl_err_clear(struct pnl_err *err)
{
	if (err) {
		err->index = -1;
		err->error = 0;
		err->msg[0] = '\0';
	}
}

int pnl_err_set(struct pnl_err *err, int index, int error, const char *msg)
{
	if (err && err->error == 0) {
		err->index = index;
		err->error = error;
		if (msg)
			snprintf(err->msg, sizeof(err->msg), "%s", msg);
	}
	return error;
}

/* ---- namespaces for the calling thread ------------------------------------------------ */

int pnl_ns_switch(int netns_fd, int *saved)
{
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return -errno;
	if (setns(netns_fd, CLONE_NEWNET) < 0) {
		int e = -errno;
		close(self);
		return e;
	}
	*saved = self;
	return 0;
}

void pnl_ns_restore(int saved)
{
	if (setns(saved, CLONE_NEWNET) < 0) {
		fprintf(stderr, "pynetlib: cannot return to the original network namespace: %s\n",
			strerror(errno));
		abort();
	}
	close(saved);
}

/* ---- sockets ----------------------------------------------------------------------- */

static int sock_setup(struct pnl_sock *s)
{
	int one = 1;
	int rcvbuf = 1 << 20;
	struct sockaddr_nl addr = { .nl_family = AF_NETLINK };
	socklen_t alen = sizeof(addr);
	struct timeval tv = {
		.tv_sec = s->timeout_ms / 1000,
		.tv_usec = (s->timeout_ms % 1000) * 1000,
	};

	if (setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) < 0)
		return -errno;
	if (setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	if (setsockopt(s->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	/* Optional kernel features: older kernels lack them, which is not an error. */
	(void)setsockopt(s->fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	(void)setsockopt(s->fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	(void)setsockopt(s->fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof(one));
	if (bind(s->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		return -errno;
	if (getsockname(s->fd, (struct sockaddr *)&addr, &alen) < 0)
		return -errno;
	if (alen != sizeof(addr) || addr.nl_family != AF_NETLINK)
		return -EPROTO;
	s->portid = addr.nl_pid;
	return 0;
}

int pnl_sock_open(int netns_fd, int timeout_ms, struct pnl_sock **out)
{
	return pnl_sock_open_proto(netns_fd, NETLINK_ROUTE, timeout_ms, out);
}

int pnl_sock_open_proto(int netns_fd, int protocol, int timeout_ms, struct pnl_sock **out)
{
	struct pnl_sock *s;
	int saved = -1, rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->rbuf_len = PNL_RBUF_LEN;
	s->rbuf = malloc(s->rbuf_len);
	if (!s->rbuf) {
		free(s);
		return -ENOMEM;
	}
	s->timeout_ms = timeout_ms > 0 ? timeout_ms : PNL_DEFAULT_TIMEOUT_MS;
	s->seq = (uint32_t)time(NULL);

	if (netns_fd >= 0) {
		rc = pnl_ns_switch(netns_fd, &saved);
		if (rc < 0)
			goto fail;
	}
	s->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
	rc = s->fd < 0 ? -errno : 0;
	if (saved >= 0)
		pnl_ns_restore(saved);
	if (rc < 0)
		goto fail;
	rc = sock_setup(s);
	if (rc < 0) {
		close(s->fd);
		goto fail;
	}
	rc = pthread_mutex_init(&s->lock, NULL);
	if (rc != 0) {
		close(s->fd);
		rc = -rc;
		goto fail;
	}
	*out = s;
	return 0;
fail:
	free(s->rbuf);
	free(s);
	return rc;
}

void pnl_sock_close(struct pnl_sock *sock)
{
	if (!sock)
		return;
	close(sock->fd);
	pthread_mutex_destroy(&sock->lock);
	free(sock->rbuf);
	free(sock);
}

int pnl_sock_fd(const struct pnl_sock *sock)
{
	return sock ? sock->fd : -EBADF;
}

uint32_t pnl_sock_portid(const struct pnl_sock *sock)
{
	return sock ? sock->portid : 0;
}

/* ---- request builder ---------------------------------------------------------------- */

void pnl_req_init(struct pnl_req *r, void *buf, size_t cap)
{
	r->buf = buf;
	r->cap = cap;
	r->len = 0;
	r->last = 0;
	r->count = 0;
	r->overflow = false;
}

static void *req_reserve(struct pnl_req *r, size_t len)
{
	size_t alen = NLMSG_ALIGN(len);
	void *p;

	if (r->overflow || alen > r->cap - r->len) {
		r->overflow = true;
		return NULL;
	}
	p = r->buf + r->len;
	memset(p, 0, alen);
	r->len += alen;
	return p;
}

static struct nlmsghdr *req_cur(struct pnl_req *r)
{
	return (struct nlmsghdr *)(r->buf + r->last);
}

void *pnl_req_msg(struct pnl_req *r, uint16_t type, uint16_t flags, const void *hdr,
		  size_t hdrlen)
{
	size_t off = r->len;
	struct nlmsghdr *nh;
	void *payload;

	if (r->count >= PNL_REQ_MAX_MSGS) {
		r->overflow = true;
		return NULL;
	}
	nh = req_reserve(r, NLMSG_HDRLEN);
	if (!nh)
		return NULL;
	payload = req_reserve(r, hdrlen);
	if (!payload)
		return NULL;
	if (hdr && hdrlen)
		memcpy(payload, hdr, hdrlen);
	nh = (struct nlmsghdr *)(r->buf + off);
	nh->nlmsg_type = type;
	nh->nlmsg_flags = flags | NLM_F_REQUEST;
	r->last = off;
	r->count++;
	nh->nlmsg_len = (uint32_t)(r->len - off);
	return payload;
}

void pnl_req_put(struct pnl_req *r, uint16_t type, const void *data, size_t len)
{
	struct rtattr *rta;

	if (r->count == 0 || len > 0xffff - RTA_LENGTH(0)) {
		r->overflow = true;
		return;
	}
	rta = req_reserve(r, RTA_LENGTH(len));
	if (!rta)
		return;
	rta->rta_type = type;
	rta->rta_len = (unsigned short)RTA_LENGTH(len);
	if (len)
		memcpy(RTA_DATA(rta), data, len);
	req_cur(r)->nlmsg_len = (uint32_t)(r->len - r->last);
}

void pnl_req_put_raw(struct pnl_req *r, const void *data, size_t len)
{
	void *p;

	if (r->count == 0) {
		r->overflow = true;
		return;
	}
	p = req_reserve(r, len);
	if (!p)
		return;
	memcpy(p, data, len);
	req_cur(r)->nlmsg_len = (uint32_t)(r->len - r->last);
}

void pnl_req_put_u32(struct pnl_req *r, uint16_t type, uint32_t v)
{
	pnl_req_put(r, type, &v, sizeof(v));
}

void pnl_req_put_u16(struct pnl_req *r, uint16_t type, uint16_t v)
{
	pnl_req_put(r, type, &v, sizeof(v));
}

void pnl_req_put_u8(struct pnl_req *r, uint16_t type, uint8_t v)
{
	pnl_req_put(r, type, &v, sizeof(v));
}

void pnl_req_put_str(struct pnl_req *r, uint16_t type, const char *s)
{
	pnl_req_put(r, type, s, strlen(s) + 1);
}

size_t pnl_req_nest_start(struct pnl_req *r, uint16_t type)
{
	size_t off = r->len;

	pnl_req_put(r, type | NLA_F_NESTED, NULL, 0);
	return off;
}

void pnl_req_nest_end(struct pnl_req *r, size_t nest)
{
	struct rtattr *rta;

	if (r->overflow || r->len - nest > 0xffff) {
		r->overflow = true;
		return;
	}
	rta = (struct rtattr *)(r->buf + nest);
	rta->rta_len = (unsigned short)(r->len - nest);
}

/* ---- attributes --------------------------------------------------------------------- */

int pnl_attr_parse(const void *data, size_t len, const struct rtattr **tb, int max)
{
	const unsigned char *p = data;

	memset(tb, 0, sizeof(*tb) * (size_t)(max + 1));
	while (len >= sizeof(struct rtattr)) {
		const struct rtattr *a = (const struct rtattr *)p;
		size_t alen = a->rta_len;
		int type = a->rta_type & NLA_TYPE_MASK;

		if (alen < sizeof(struct rtattr) || alen > len)
			return -EBADMSG;
		if (type <= max)
			tb[type] = a;
		alen = RTA_ALIGN(alen);
		if (alen >= len)
			break;
		p += alen;
		len -= alen;
	}
	return 0;
}

size_t pnl_attr_len(const struct rtattr *a)
{
	return a->rta_len - RTA_LENGTH(0);
}

const void *pnl_attr_data(const struct rtattr *a)
{
	return RTA_DATA(a);
}

bool pnl_attr_u32(const struct rtattr *a, uint32_t *out)
{
	if (!a || pnl_attr_len(a) < sizeof(uint32_t))
		return false;
	memcpy(out, RTA_DATA(a), sizeof(uint32_t));
	return true;
}

bool pnl_attr_str(const struct rtattr *a, char *out, size_t outlen)
{
	size_t n;

	if (!a || outlen == 0)
		return false;
	n = strnlen(RTA_DATA(a), pnl_attr_len(a));
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, RTA_DATA(a), n);
	out[n] = '\0';
	return true;
}

/* ---- transactions ------------------------------------------------------------------- */

/* The extended-ack message of an NLMSG_ERROR or NLMSG_DONE, bounds-checked. */
static void ack_message(const struct nlmsghdr *nh, size_t skip, char *out, size_t outlen)
{
	const struct rtattr *tb[NLMSGERR_ATTR_MSG + 1];
	size_t len = nh->nlmsg_len - NLMSG_HDRLEN;

	out[0] = '\0';
	if (!(nh->nlmsg_flags & NLM_F_ACK_TLVS) || skip > len)
		return;
	if (pnl_attr_parse((const unsigned char *)NLMSG_DATA(nh) + skip, len - skip, tb,
			   NLMSGERR_ATTR_MSG) < 0)
		return;
	pnl_attr_str(tb[NLMSGERR_ATTR_MSG], out, outlen);
}

static int recv_some(struct pnl_sock *s, size_t *got)
{
	for (;;) {
		ssize_t n = recv(s->fd, s->rbuf, s->rbuf_len, MSG_TRUNC);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return -ETIMEDOUT;
			return -errno;
		}
		if ((size_t)n > s->rbuf_len)
			return -EMSGSIZE;
		*got = (size_t)n;
		return 0;
	}
}

static int send_all(struct pnl_sock *s, const struct pnl_req *r)
{
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };

	for (;;) {
		ssize_t n = sendto(s->fd, r->buf, r->len, 0, (struct sockaddr *)&kernel,
				   sizeof(kernel));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return -ETIMEDOUT;
			return -errno;
		}
		return (size_t)n == r->len ? 0 : -EMSGSIZE;
	}
}

int pnl_sock_exec(struct pnl_sock *s, struct pnl_req *r, pnl_msg_cb cb, void *ctx,
		  struct pnl_err *err)
{
	bool done[PNL_REQ_MAX_MSGS] = { false };
	bool intr = false;
	int pending, rc = 0, first_error = 0, i;
	uint32_t base;
	size_t off;
	char msg[PNL_ERRMSG_LEN];

	pnl_err_clear(err);
	if (!s || !r)
		return -EINVAL;
	if (r->overflow)
		return pnl_err_set(err, r->count - 1, -EMSGSIZE, "request does not fit its buffer");
	if (r->count == 0)
		return 0;
	rc = pnl_failpoint_check("nl.send");
	if (rc < 0)
		return pnl_err_set(err, 0, rc, "injected by failpoint nl.send");

	pthread_mutex_lock(&s->lock);
	base = s->seq + 1;
	s->seq += (uint32_t)r->count;
	for (off = 0, i = 0; off < r->len; i++) {
		struct nlmsghdr *nh = (struct nlmsghdr *)(r->buf + off);

		nh->nlmsg_seq = base + (uint32_t)i;
		nh->nlmsg_pid = 0;
		off += NLMSG_ALIGN(nh->nlmsg_len);
	}
	rc = send_all(s, r);
	if (rc < 0) {
		pthread_mutex_unlock(&s->lock);
		return pnl_err_set(err, 0, rc, NULL);
	}

	pending = r->count;
	while (pending > 0) {
		size_t got = 0, left;
		const struct nlmsghdr *nh;

		rc = recv_some(s, &got);
		if (rc < 0)
			break;
		left = got;
		nh = (const struct nlmsghdr *)s->rbuf;
		for (; left >= NLMSG_HDRLEN; nh = (const struct nlmsghdr *)
			     ((const unsigned char *)nh + NLMSG_ALIGN(nh->nlmsg_len))) {
			uint32_t idx;
			size_t step;

			if (nh->nlmsg_len < NLMSG_HDRLEN || nh->nlmsg_len > left) {
				rc = -EBADMSG;
				goto out;
			}
			step = NLMSG_ALIGN(nh->nlmsg_len);
			left = step >= left ? 0 : left - step;
			idx = nh->nlmsg_seq - base;
			/* Replies to an earlier, abandoned transaction, or not for us. */
			if (nh->nlmsg_pid != s->portid || idx >= (uint32_t)r->count || done[idx])
				continue;
			if (nh->nlmsg_flags & NLM_F_DUMP_INTR)
				intr = true;
			if (nh->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(nh);
				size_t skip;

				if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(*e))) {
					rc = -EBADMSG;
					goto out;
				}
				done[idx] = true;
				pending--;
				if (e->error < 0 && first_error == 0) {
					skip = sizeof(*e);
					if (!(nh->nlmsg_flags & NLM_F_CAPPED) &&
					    e->msg.nlmsg_len >= NLMSG_HDRLEN)
						skip += e->msg.nlmsg_len - NLMSG_HDRLEN;
					ack_message(nh, skip, msg, sizeof(msg));
					first_error = e->error;
					pnl_err_set(err, (int)idx, e->error, msg);
				}
			} else if (nh->nlmsg_type == NLMSG_DONE) {
				int derr = 0;

				done[idx] = true;
				pending--;
				if (nh->nlmsg_len >= NLMSG_LENGTH(sizeof(int)))
					memcpy(&derr, NLMSG_DATA(nh), sizeof(int));
				if (derr < 0 && first_error == 0) {
					ack_message(nh, sizeof(int), msg, sizeof(msg));
					first_error = derr;
					pnl_err_set(err, (int)idx, derr, msg);
				}
			} else if (nh->nlmsg_type >= NLMSG_MIN_TYPE && cb) {
				int crc = cb(nh, ctx);

				if (crc < 0 && first_error == 0) {
					first_error = crc;
					pnl_err_set(err, (int)idx, crc, NULL);
				}
			}
		}
	}
out:
	pthread_mutex_unlock(&s->lock);
	if (rc < 0)
		return pnl_err_set(err, -1, rc, NULL);
	if (first_error < 0)
		return first_error;
	if (intr)
		return pnl_err_set(err, -1, -PNL_EDUMPINTR, "dump interrupted by a concurrent change");
	return 0;
}
