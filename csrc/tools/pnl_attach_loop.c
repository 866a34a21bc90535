/*
 * The C baseline of the kernel benchmarks: the same work as the Python benchmarks, in a
 * tight loop over the same C library, timing each step with CLOCK_MONOTONIC.
 *
 *   pnl_attach_loop RUNDIR BRIDGE COUNT PREFIX
 *   pnl_attach_loop RUNDIR BRIDGE COUNT PREFIX burst
 *   pnl_attach_loop RUNDIR BRIDGE COUNT PREFIX lifecycle THREADS
 *
 * For i in 0..COUNT-1: create the namespace RUNDIR/PREFIXi (timed: "netns"), then attach
 * it (timed: "attach": open the namespace by path, open a netlink socket inside it,
 * veth PREFIXhi on BRIDGE with eth0 inside, 10.88.x.y/16, default route via 10.88.0.1, lo
 * up), then detach (timed: "detach": delete the host end), then delete the namespace
 * (untimed). Prints one line per step: "<step> <nanoseconds>". Runs inside whatever
 * network namespace it is started in; the caller makes that a private one.
 *
 * burst mode: the attaches follow each other with nothing in between (no detach), as a
 * host starting many containers does and as the public API's attach benchmark times
 * them; every veth and namespace is deleted after the last one (untimed).
 *
 * lifecycle mode: THREADS threads share COUNT full container lifecycles, each one netns
 * create + attach (as above) + netns delete (the kernel then destroys the veth pair
 * with the namespace, asynchronously and in batches: the cheapest teardown there is).
 * Prints "lifecycle <ns>" per container and "wall <ns>" for the whole run.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pnl_attach.h"
#include "pnl_link.h"
#include "pnl_netns.h"
#include "pnl_nl.h"

#define BURST_GROUP 0x706e6c62u        /* "pnlb": the burst mode's veths, deleted at the end */

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int fail(const char *what, int rc, const struct pnl_err *err)
{
	fprintf(stderr, "pnl_attach_loop: %s: %s %s\n", what, strerror(-rc), err ? err->msg : "");
	return 1;
}

struct lc_args {
	const char *rundir, *prefix;
	int bridge, first, count, stride;
	long long *out;
	int rc;
};

static void *lifecycle_worker(void *p)
{
	struct lc_args *a = p;
	struct pnl_sock *host = NULL;
	unsigned char gw[4] = { 10, 88, 0, 1 };
	int i, rc;

	rc = pnl_sock_open(-1, 0, &host);
	if (rc < 0) {
		a->rc = rc;
		return NULL;
	}
	for (i = a->first; i < a->count; i += a->stride) {
		char nsname[32], path[4200], hname[16];
		unsigned char addr[4] = { 10, 88, (unsigned char)(200 + (i / 250) % 50),
					  (unsigned char)(2 + i % 250) };
		struct pnl_attach_req req;
		struct pnl_sock *cont = NULL;
		struct pnl_err err;
		long long t0 = now_ns();
		int fd = -1;

		snprintf(nsname, sizeof(nsname), "%s%d", a->prefix, i);
		snprintf(hname, sizeof(hname), "%sh%d", a->prefix, i);
		snprintf(path, sizeof(path), "%s/%s", a->rundir, nsname);
		rc = pnl_netns_create(a->rundir, nsname, 0, 0, &fd, &cont, &err);
		if (rc < 0)
			break;
		pnl_attach_req_init(&req);
		req.host_name = hname;
		req.master = a->bridge;
		req.cont_name = "eth0";
		req.cont_netns_fd = fd;
		req.lo_up = 1;
		req.family4 = AF_INET;
		req.addr4 = addr;
		req.prefixlen4 = 16;
		req.gateway4 = gw;
		/* A bridge has at most 1023 ports; with many live containers the ports of
		 * namespaces the kernel is still destroying can fill it: wait for them. */
		for (int tries = 0; tries < 2000; tries++) {
			rc = pnl_veth_attach(host, cont, &req, NULL, &err);
			if (rc != -EXFULL)
				break;
			usleep(500);
		}
		pnl_sock_close(cont);
		close(fd);
		if (rc < 0)
			break;
		rc = pnl_netns_delete(a->rundir, nsname);
		if (rc < 0)
			break;
		a->out[i] = now_ns() - t0;
	}
	a->rc = rc;
	pnl_sock_close(host);
	return NULL;
}

static int lifecycle(const char *rundir, int bridge, int count, const char *prefix,
		     int threads)
{
	pthread_t tid[64];
	struct lc_args args[64];
	long long *out = calloc((size_t)count, sizeof(*out));
	long long t0, wall;
	int i, rc = 0;

	if (!out || threads < 1 || threads > 64)
		return 2;
	t0 = now_ns();
	for (i = 0; i < threads; i++) {
		args[i] = (struct lc_args){ rundir, prefix, bridge, i, count, threads, out, 0 };
		pthread_create(&tid[i], NULL, lifecycle_worker, &args[i]);
	}
	for (i = 0; i < threads; i++) {
		pthread_join(tid[i], NULL);
		if (args[i].rc < 0 && rc == 0)
			rc = args[i].rc;
	}
	wall = now_ns() - t0;
	if (rc < 0) {
		fprintf(stderr, "pnl_attach_loop: lifecycle: %s\n", strerror(-rc));
		free(out);
		return 1;
	}
	for (i = 0; i < count; i++)
		printf("lifecycle %lld\n", out[i]);
	printf("wall %lld\n", wall);
	free(out);
	return 0;
}

int main(int argc, char **argv)
{
	struct pnl_sock *host = NULL;
	struct pnl_link_info br;
	struct pnl_err err;
	unsigned char gw[4];
	int count, i, rc;

	int burst = argc == 6 && strcmp(argv[5], "burst") == 0;
	if (argc != 5 && !burst && !(argc == 7 && strcmp(argv[5], "lifecycle") == 0)) {
		fprintf(stderr, "usage: %s RUNDIR BRIDGE COUNT PREFIX [burst | lifecycle THREADS]\n",
			argv[0]);
		return 2;
	}
	count = atoi(argv[3]);
	if (count <= 0 || count > 60000 || strlen(argv[4]) > 6) {
		fprintf(stderr, "pnl_attach_loop: COUNT 1..60000, PREFIX at most 6 characters\n");
		return 2;
	}
	inet_pton(AF_INET, "10.88.0.1", gw);
	rc = pnl_netns_rundir_prepare(argv[1]);
	if (rc < 0)
		return fail("rundir", rc, NULL);
	rc = pnl_sock_open(-1, 0, &host);
	if (rc < 0)
		return fail("socket", rc, NULL);
	rc = pnl_link_get(host, 0, argv[2], &br, &err);
	if (rc < 0)
		return fail("bridge", rc, &err);
	if (argc == 7) {
		pnl_sock_close(host);
		return lifecycle(argv[1], br.ifindex, count, argv[4], atoi(argv[6]));
	}

	for (i = 0; i < count; i++) {
		char nsname[32], path[4200], hname[16];
		unsigned char addr[4] = { 10, 88, (unsigned char)(200 + i / 250), (unsigned char)(2 + i % 250) };
		struct pnl_attach_req req;
		struct pnl_attach_result res;
		struct pnl_sock *cont = NULL;
		long long t0, t1, t2, t3;
		int fd = -1;

		snprintf(nsname, sizeof(nsname), "%s%d", argv[4], i);
		snprintf(hname, sizeof(hname), "%sh%d", argv[4], i);
		snprintf(path, sizeof(path), "%s/%s", argv[1], nsname);

		t0 = now_ns();
		rc = pnl_netns_create(argv[1], nsname, 0, 0, NULL, NULL, &err);
		t1 = now_ns();
		if (rc < 0)
			return fail("netns create", rc, &err);

		t2 = now_ns();
		rc = pnl_netns_open(path, &fd);
		if (rc < 0)
			return fail("netns open", rc, NULL);
		rc = pnl_sock_open(fd, 0, &cont);
		if (rc < 0)
			return fail("socket in netns", rc, NULL);
		pnl_attach_req_init(&req);
		req.host_name = hname;
		req.master = br.ifindex;
		req.cont_name = "eth0";
		req.cont_netns_fd = fd;
		req.lo_up = 1;
		req.family4 = AF_INET;
		req.addr4 = addr;
		req.prefixlen4 = 16;
		req.gateway4 = gw;
		if (burst)
			req.group = BURST_GROUP;
		rc = pnl_veth_attach(host, cont, &req, &res, &err);
		pnl_sock_close(cont);
		close(fd);
		t3 = now_ns();
		if (rc < 0)
			return fail("attach", rc, &err);
		printf("netns %lld\nattach %lld\n", t1 - t0, t3 - t2);
		if (burst)
			continue;

		t0 = now_ns();
		rc = pnl_link_delete(host, 0, hname, &err);
		t1 = now_ns();
		if (rc < 0)
			return fail("detach", rc, &err);
		printf("detach %lld\n", t1 - t0);
		rc = pnl_netns_delete(argv[1], nsname);
		if (rc < 0)
			return fail("netns delete", rc, NULL);
	}
	if (burst) {
		rc = pnl_link_delete_group(host, BURST_GROUP, &err);
		if (rc < 0)
			return fail("burst cleanup", rc, &err);
		for (i = 0; i < count; i++) {
			char nsname[32];

			snprintf(nsname, sizeof(nsname), "%s%d", argv[4], i);
			rc = pnl_netns_delete(argv[1], nsname);
			if (rc < 0)
				return fail("netns delete", rc, NULL);
		}
	}
	pnl_sock_close(host);
	return 0;
}
