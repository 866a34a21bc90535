#ifndef PNL_FAILPOINT_H
#define PNL_FAILPOINT_H
/*
 * Fault injection: named failpoints in the netlink, link, address, namespace and attach
 * paths. A failpoint, when armed, either makes its operation fail with a chosen errno
 * (nothing is sent to the kernel at that point) or SIGKILLs the whole process on the spot.
 *
 * Names (a fixed set; arming any other name fails with -ENOENT):
 *   nl.send       pnl_sock_exec, before a pipeline is sent (the whole pipeline fails)
 *   link.create   pnl_link_create, before sending
 *   link.delete   pnl_link_delete, pnl_link_delete_group, pnl_link_delete_many
 *   addr.add      pnl_addr_add
 *   route.add     pnl_route_add
 *   netns.create  pnl_netns_create, before unshare (the netns file exists already)
 *   netns.delete  pnl_netns_delete, before the unmount
 *   attach.veth   pnl_veth_attach, after the veth exists, before the container pipeline
 *                 (an injected error exercises the attach rollback)
 *   attach.plumb  pnl_veth_attach, right before the container pipeline is sent
 *
 * Hits: every check of an armed failpoint counts as one hit (counted atomically; the
 * counter restarts when the failpoint is armed). The first `skip` hits pass; after them
 * the failpoint fires on `count` hits (count <= 0: on every later hit).
 *
 * Thread safe. When nothing is armed a check is one relaxed atomic load of a global
 * flag: no call, no string compare. Never touches Python.
 */

#define PNL_FP_OFF 0
#define PNL_FP_ERRNO 1
#define PNL_FP_KILL 2

/* Arms (or, with PNL_FP_OFF, disarms) the failpoint `name`. err: the errno to inject
 * for PNL_FP_ERRNO (positive or negative, 1..4095; ignored otherwise).
 * Returns 0, -ENOENT for an unknown name, -EINVAL for a bad action, errno or skip. */
int pnl_failpoint_arm(const char *name, int action, int err, int skip, int count);
/* Disarms every failpoint. */
void pnl_failpoint_disarm_all(void);

/* ---- internal to csrc/ (the hooks) ---------------------------------------------------- */

/* Non-zero while at least one failpoint is armed. */
extern int pnl_failpoint_any_armed;
/* The slow path of pnl_failpoint_check: look the name up and count the hit. */
int pnl_failpoint_hit(const char *name);

/* 0 to carry on, or the negative errno to fail with; SIGKILLs the process for a kill. */
static inline int pnl_failpoint_check(const char *name)
{
	if (__builtin_expect(__atomic_load_n(&pnl_failpoint_any_armed, __ATOMIC_RELAXED) == 0, 1))
		return 0;
	return pnl_failpoint_hit(name);
}

#endif
