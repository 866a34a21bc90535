/* nftables set elements over nfnetlink: see pnl_nft.h. */
#include <endian.h>
#include <errno.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nl_internal.h"
#include "pnl_failpoint.h"
#include "pnl_nft.h"

#ifndef NFT_MSG_DESTROYSETELEM
#define NFT_MSG_DESTROYSETELEM 30     /* Linux 6.3; older uapi headers lack it */
#endif

int pnl_nft_sock_open(int netns_fd, int timeout_ms, struct pnl_sock **out)
{
	return pnl_sock_open_proto(netns_fd, NETLINK_NETFILTER, timeout_ms, out);
}

static bool valid_name(const char *s)
{
	size_t n;

	if (!s)
		return false;
	n = strnlen(s, PNL_NFT_NAMESIZ);
	return n > 0 && n < PNL_NFT_NAMESIZ;
}

/* The batch's replies are queued before send() returns (nfnetlink handles a batch in
 * the sender's context): read what is there, without waiting. The element message
 * asks for an ACK; a failed commit is reported against the batch-begin message. */
static int read_replies(struct pnl_sock *s, uint32_t base, uint32_t elem_seq,
			struct pnl_err *err)
{
	bool answered = false;
	int first = 0;

	for (;;) {
		ssize_t n = recv(s->fd, s->rbuf, s->rbuf_len, MSG_DONTWAIT | MSG_TRUNC);
		size_t left;
		const struct nlmsghdr *nh;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return pnl_err_set(err, 0, -errno, "reading the nftables reply");
		}
		if ((size_t)n > s->rbuf_len)
			return pnl_err_set(err, 0, -EMSGSIZE, "nftables reply too large");
		left = (size_t)n;
		for (nh = (const struct nlmsghdr *)s->rbuf; left >= NLMSG_HDRLEN;
		     nh = (const struct nlmsghdr *)((const unsigned char *)nh +
						    NLMSG_ALIGN(nh->nlmsg_len))) {
			const struct nlmsgerr *e;
			size_t step;

			if (nh->nlmsg_len < NLMSG_HDRLEN || nh->nlmsg_len > left)
				return pnl_err_set(err, 0, -EBADMSG, "malformed nftables reply");
			step = NLMSG_ALIGN(nh->nlmsg_len);
			left = step >= left ? 0 : left - step;
			if (nh->nlmsg_pid != s->portid || nh->nlmsg_seq < base ||
			    nh->nlmsg_seq > elem_seq + 1 || nh->nlmsg_type != NLMSG_ERROR)
				continue;
			if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
				return pnl_err_set(err, 0, -EBADMSG, "short nftables ACK");
			e = NLMSG_DATA(nh);
			if (nh->nlmsg_seq == elem_seq)
				answered = true;
			if (e->error < 0 && first == 0)
				first = e->error;
		}
	}
	if (first < 0)
		return pnl_err_set(err, 0, first, NULL);
	if (!answered)
		return pnl_err_set(err, 0, -EPROTO, "no reply to the nftables request");
	return 0;
}

int pnl_nft_set_keys(struct pnl_sock *sock, int family, const char *table, const char *set,
		     const uint32_t *keys, int n, int op, struct pnl_err *err)
{
	static const uint8_t msg_type[] = {
		[PNL_NFT_DESTROY] = NFT_MSG_DESTROYSETELEM,
		[PNL_NFT_ADD] = NFT_MSG_NEWSETELEM,
		[PNL_NFT_DELETE] = NFT_MSG_DELSETELEM,
	};
	struct nfgenmsg batch = { .nfgen_family = AF_UNSPEC, .version = NFNETLINK_V0,
				  .res_id = htobe16(NFNL_SUBSYS_NFTABLES) };
	struct nfgenmsg msg = { .nfgen_family = (uint8_t)family, .version = NFNETLINK_V0 };
	uint16_t type;
	size_t cap, elems;
	unsigned char *buf;
	struct pnl_req r;
	uint32_t base;
	int rc, i;

	pnl_err_clear(err);
	if (!sock || family < 0 || family > 255 || !valid_name(table) || !valid_name(set))
		return pnl_err_set(err, -1, -EINVAL, "invalid nftables family, table or set");
	if (n <= 0 || n > PNL_NFT_MAX_ELEMS || !keys)
		return pnl_err_set(err, -1, -EINVAL, "between 1 and 1024 keys per call");
	if (op < PNL_NFT_DESTROY || op > PNL_NFT_DELETE)
		return pnl_err_set(err, -1, -EINVAL, "unknown set element operation");
	type = (uint16_t)((NFNL_SUBSYS_NFTABLES << 8) | msg_type[op]);
	rc = pnl_failpoint_check("nft.setelem");
	if (rc < 0)
		return pnl_err_set(err, 0, rc, "injected by failpoint nft.setelem");

	cap = 3 * NLMSG_HDRLEN + 3 * sizeof(struct nfgenmsg) + 2 * PNL_NFT_NAMESIZ + 64 +
	      (size_t)n * 32;
	buf = malloc(cap);
	if (!buf)
		return pnl_err_set(err, -1, -ENOMEM, NULL);
	pnl_req_init(&r, buf, cap);
	pnl_req_msg(&r, NFNL_MSG_BATCH_BEGIN, 0, &batch, sizeof(batch));
	pnl_req_msg(&r, type, NLM_F_ACK | (op == PNL_NFT_ADD ? NLM_F_CREATE : 0), &msg,
		    sizeof(msg));
	pnl_req_put_str(&r, NFTA_SET_ELEM_LIST_TABLE, table);
	pnl_req_put_str(&r, NFTA_SET_ELEM_LIST_SET, set);
	elems = pnl_req_nest_start(&r, NFTA_SET_ELEM_LIST_ELEMENTS);
	for (i = 0; i < n; i++) {
		size_t el = pnl_req_nest_start(&r, NFTA_LIST_ELEM);
		size_t key = pnl_req_nest_start(&r, NFTA_SET_ELEM_KEY);

		pnl_req_put_u32(&r, NFTA_DATA_VALUE, keys[i]);
		pnl_req_nest_end(&r, key);
		pnl_req_nest_end(&r, el);
	}
	pnl_req_nest_end(&r, elems);
	pnl_req_msg(&r, NFNL_MSG_BATCH_END, 0, &batch, sizeof(batch));
	if (r.overflow) {
		free(buf);
		return pnl_err_set(err, -1, -EMSGSIZE, "nftables request does not fit");
	}

	pthread_mutex_lock(&sock->lock);
	base = sock->seq + 1;
	sock->seq += 3;
	{
		struct nlmsghdr *nh;
		size_t off = 0;

		for (i = 0; i < 3; i++) {
			nh = (struct nlmsghdr *)(r.buf + off);
			nh->nlmsg_seq = base + (uint32_t)i;
			nh->nlmsg_pid = 0;
			off += NLMSG_ALIGN(nh->nlmsg_len);
		}
	}
	{
		struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
		ssize_t sent;

		do {
			sent = sendto(sock->fd, r.buf, r.len, 0, (struct sockaddr *)&kernel,
				      sizeof(kernel));
		} while (sent < 0 && errno == EINTR);
		if (sent < 0)
			rc = pnl_err_set(err, 0, -errno, "sending the nftables request");
		else if ((size_t)sent != r.len)
			rc = pnl_err_set(err, 0, -EMSGSIZE, "short send");
		else
			rc = read_replies(sock, base, base + 1, err);
	}
	pthread_mutex_unlock(&sock->lock);
	free(buf);
	return rc;
}
