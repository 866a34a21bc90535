/* Network namespaces as files, and the calling thread's membership. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "nl_internal.h"
#include "pnl_failpoint.h"
#include "pnl_link.h"
#include "pnl_netns.h"

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

static int ns_path(char *out, size_t outlen, const char *rundir, const char *name)
{
	size_t nlen;
	int n;

	if (!rundir || !name || !*rundir || rundir[0] != '/')
		return -EINVAL;
	nlen = strlen(name);
	if (nlen == 0 || nlen > 255 || strchr(name, '/') || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0)
		return -EINVAL;
	n = snprintf(out, outlen, "%s/%s", rundir, name);
	if (n < 0 || (size_t)n >= outlen)
		return -ENAMETOOLONG;
	return 0;
}

int pnl_netns_rundir_prepare(const char *rundir)
{
	if (!rundir || rundir[0] != '/')
		return -EINVAL;
	if (mkdir(rundir, 0755) < 0 && errno != EEXIST)
		return -errno;
	if (mount("", rundir, "none", MS_SHARED | MS_REC, NULL) == 0)
		return 0;
	if (errno != EINVAL)
		return -errno;
	/* Not a mount point yet: bind it onto itself, then share it. */
	if (mount(rundir, rundir, "none", MS_BIND | MS_REC, NULL) < 0)
		return -errno;
	if (mount("", rundir, "none", MS_SHARED | MS_REC, NULL) < 0)
		return -errno;
	return 0;
}

static int lo_up(struct pnl_sock *sock, struct pnl_err *err)
{
	struct pnl_link_req req;

	pnl_link_req_init(&req);
	req.up = 1;
	return pnl_link_change(sock, 1, NULL, &req, err);   /* lo is ifindex 1 everywhere */
}

int pnl_netns_create(const char *rundir, const char *name, int want_lo_up, int timeout_ms,
		     int *fd_out, struct pnl_sock **sock_out, struct pnl_err *err)
{
	char path[4096];
	struct pnl_sock *sock = NULL;
	int fd = -1, rc;

	pnl_err_clear(err);
	if (fd_out)
		*fd_out = -1;
	if (sock_out)
		*sock_out = NULL;
	rc = ns_path(path, sizeof(path), rundir, name);
	if (rc < 0)
		return pnl_err_set(err, -1, rc, "invalid namespace name or run directory");
	rc = pnl_netns_new(want_lo_up, timeout_ms, &fd, sock_out ? &sock : NULL, err);
	if (rc < 0)
		return rc;
	rc = pnl_netns_bind(fd, rundir, name);
	if (rc < 0) {                   /* the namespace goes with its last reference */
		pnl_sock_close(sock);
		close(fd);
		return pnl_err_set(err, -1, rc, NULL);
	}
	if (fd_out)
		*fd_out = fd;
	else
		close(fd);
	if (sock_out)
		*sock_out = sock;
	return 0;
}

int pnl_netns_new(int want_lo_up, int timeout_ms, int *fd_out, struct pnl_sock **sock_out,
		  struct pnl_err *err)
{
	struct pnl_sock *sock = NULL;
	int saved, fd = -1, rc = 0;

	pnl_err_clear(err);
	if (!fd_out)
		return pnl_err_set(err, -1, -EINVAL, "no fd to return the namespace in");
	*fd_out = -1;
	if (sock_out)
		*sock_out = NULL;
	rc = pnl_failpoint_check("netns.create");
	if (rc < 0)
		return pnl_err_set(err, -1, rc, "injected by failpoint netns.create");
	saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (saved < 0)
		return pnl_err_set(err, -1, -errno, NULL);
	if (unshare(CLONE_NEWNET) < 0) {
		rc = -errno;
		close(saved);
		return pnl_err_set(err, -1, rc, NULL);
	}
	/* From here the thread is in the new namespace until pnl_ns_restore. */
	fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		rc = -errno;
	if (rc == 0 && (sock_out || want_lo_up))
		rc = pnl_sock_open(-1, timeout_ms, &sock);
	pnl_ns_restore(saved);
	if (rc == 0 && want_lo_up)
		rc = lo_up(sock, err);
	if (rc < 0) {
		pnl_sock_close(sock);
		if (fd >= 0)
			close(fd);          /* the namespace goes with its last reference */
		return pnl_err_set(err, -1, rc, NULL);
	}
	*fd_out = fd;
	if (sock_out)
		*sock_out = sock;
	else
		pnl_sock_close(sock);
	return 0;
}

int pnl_netns_bind(int netns_fd, const char *rundir, const char *name)
{
	char path[4096], src[64];
	int fd, rc;

	rc = ns_path(path, sizeof(path), rundir, name);
	if (rc < 0)
		return rc;
	if (netns_fd < 0)
		return -EBADF;
	snprintf(src, sizeof(src), "/proc/self/fd/%d", netns_fd);
	fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	close(fd);
	if (mount(src, path, "none", MS_BIND, NULL) < 0) {
		rc = -errno;
		unlink(path);
		return rc;
	}
	return 0;
}

int pnl_netns_open(const char *path, int *fd_out)
{
	struct statfs sfs;
	int fd, type;

	if (!path || !fd_out)
		return -EINVAL;
	*fd_out = -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstatfs(fd, &sfs) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	if ((unsigned long)sfs.f_type != NSFS_MAGIC && (unsigned long)sfs.f_type != PROC_SUPER_MAGIC) {
		close(fd);
		return -EINVAL;
	}
	type = ioctl(fd, NS_GET_NSTYPE);
	if (type != CLONE_NEWNET) {
		close(fd);
		return -EINVAL;
	}
	*fd_out = fd;
	return 0;
}

int pnl_netns_delete(const char *rundir, const char *name)
{
	char path[4096];
	int rc = ns_path(path, sizeof(path), rundir, name);

	if (rc < 0)
		return rc;
	rc = pnl_failpoint_check("netns.delete");
	if (rc < 0)
		return rc;
	if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		return -errno;
	if (unlink(path) < 0)
		return -errno;
	return 0;
}

int pnl_netns_inode(int fd, uint64_t *ino_out)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	*ino_out = (uint64_t)st.st_ino;
	return 0;
}

int pnl_netns_current_inode(uint64_t *ino_out)
{
	struct stat st;

	if (stat("/proc/thread-self/ns/net", &st) < 0)
		return -errno;
	*ino_out = (uint64_t)st.st_ino;
	return 0;
}

int pnl_netns_enter(int netns_fd, int *saved_fd)
{
	if (!saved_fd)
		return -EINVAL;
	*saved_fd = -1;
	return pnl_ns_switch(netns_fd, saved_fd);
}

int pnl_netns_leave(int saved_fd)
{
	uint64_t want, now;

	if (saved_fd < 0)
		return -EBADF;
	if (pnl_netns_inode(saved_fd, &want) < 0) {
		close(saved_fd);
		return -EIO;
	}
	if (setns(saved_fd, CLONE_NEWNET) < 0) {
		close(saved_fd);
		return -EIO;
	}
	close(saved_fd);
	if (pnl_netns_current_inode(&now) < 0 || now != want)
		return -EIO;
	return 0;
}
