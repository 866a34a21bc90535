#ifndef PNL_NETNS_H
#define PNL_NETNS_H
/*
 * Network namespaces: named ones bind-mounted as files in a run directory (like
 * `ip netns`), opened by path, deleted, and entered by the calling thread with a
 * guaranteed, verified return. No fork, no helper process.
 */
#include <stdint.h>

#include "pnl_nl.h"

/* Makes rundir (created if missing) a shared mount point, as iproute2 does, so that
 * namespaces bound there are visible to mount namespaces created later. Idempotent. */
int pnl_netns_rundir_prepare(const char *rundir);
/* Creates rundir/name holding a new network namespace. On success *fd_out (if not NULL)
 * is an O_CLOEXEC fd of it, and *sock_out (if not NULL) a netlink socket inside it with
 * timeout_ms; lo is brought up when lo_up is 1. Nothing is left behind on failure. */
int pnl_netns_create(const char *rundir, const char *name, int lo_up, int timeout_ms,
		     int *fd_out, struct pnl_sock **sock_out, struct pnl_err *err);
/* Creates a network namespace held only by the returned O_CLOEXEC fd (*fd_out): no file,
 * gone with its last reference. *sock_out (if not NULL): a netlink socket inside it. */
int pnl_netns_new(int lo_up, int timeout_ms, int *fd_out, struct pnl_sock **sock_out,
		  struct pnl_err *err);
/* Binds the namespace netns_fd as the file rundir/name (created; -EEXIST if taken). */
int pnl_netns_bind(int netns_fd, const char *rundir, const char *name);
/* Opens a namespace by path (a bind-mounted file or /proc/PID/ns/net); -EINVAL when the
 * path is not a network namespace. */
int pnl_netns_open(const char *path, int *fd_out);
/* Unmounts (lazily) and unlinks rundir/name. -ENOENT if it does not exist. */
int pnl_netns_delete(const char *rundir, const char *name);
/* The namespace's inode number (its identity). */
int pnl_netns_inode(int fd, uint64_t *ino_out);
/* Moves the calling thread into netns_fd; *saved_fd receives its original namespace. */
int pnl_netns_enter(int netns_fd, int *saved_fd);
/* Moves the calling thread back to saved_fd (closing it) and verifies by inode that it
 * arrived; -EIO if it did not (the thread is then unusable for namespace work). */
int pnl_netns_leave(int saved_fd);
/* The inode of the calling thread's current network namespace. */
int pnl_netns_current_inode(uint64_t *ino_out);

#endif
