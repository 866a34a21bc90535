"""Network namespaces: create, open, delete, and run Python code inside one.

A :class:`Netns` is an open file descriptor of a namespace (plus its path when it has
one). :meth:`Netns.enter` moves the *calling thread* into the namespace for the length
of a ``with`` block and always moves it back, verified by inode; nothing forks.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from typing import Iterator

from pynetlib import forksafe
from pynetlib._ffi import ffi, lib
from pynetlib.errors import BadRequestError, KernelError, NoSuchNamespaceError
from pynetlib.kernel import validate
from pynetlib.kernel._check import check, new_err
from pynetlib.kernel.holds import Holds

DEFAULT_RUNDIR = "/run/netns"

_prepared: set[str] = set()
_prepared_lock = threading.Lock()


def _new_lock_in_child() -> None:
    """After fork(): a thread of the parent that no longer exists may hold the lock."""
    global _prepared_lock
    _prepared_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def _rundir(rundir: str | None) -> bytes:
    rd = rundir or DEFAULT_RUNDIR
    if not isinstance(rd, str) or not os.path.isabs(rd) or "\0" in rd:
        raise BadRequestError(f"invalid namespace run directory {rundir!r}: an absolute path")
    return os.path.normpath(rd).encode()


def prepare_rundir(rundir: str | None = None) -> None:
    """Make the run directory a shared mount point (once per process, like iproute2)."""
    rd = _rundir(rundir)
    with _prepared_lock:
        if rd in _prepared:
            return
        check(lib.pnl_netns_rundir_prepare(rd), None, "netns run directory", rd.decode())
        _prepared.add(rd)


class Netns:
    """An open network namespace.

    A call that passes its fd to the kernel holds it (:meth:`_in_use`, see
    pynetlib/kernel/holds.py): ``close()`` closes the fd after the calls in flight.
    """

    __slots__ = ("_holds", "path", "name", "rundir", "_sock", "_lock", "__weakref__")

    def __init__(self, fd: int, path: str | None = None, name: str | None = None,
                 rundir: str | None = None) -> None:
        self._holds = Holds(fd, "namespace handle is closed")
        self.path = path
        self.name = name
        self.rundir = rundir
        self._sock = None
        self._lock = threading.Lock()   # the socket's creation and closing
        forksafe.track(self)

    # -- construction ---------------------------------------------------------------
    @classmethod
    def create(cls, name: str, rundir: str | None = None, *, lo_up: bool = True,
               with_socket: bool = False, timeout: float = 5.0) -> "Netns":
        """Create a named namespace ``rundir/name`` (rundir: /run/netns by default)."""
        from pynetlib.kernel.netlink import NetlinkSocket

        raw = validate.netns_name(name)
        rd = _rundir(rundir)
        prepare_rundir(rd.decode())
        fdp = ffi.new("int *")
        sockp = ffi.new("struct pnl_sock **") if with_socket else ffi.NULL
        err = new_err()
        rc = lib.pnl_netns_create(rd, raw, 1 if lo_up else 0, int(timeout * 1000), fdp, sockp,
                                  err)
        check(rc, err, "netns create", name)
        ns = cls(fdp[0], os.path.join(rd.decode(), name), name, rd.decode())
        if with_socket:
            ns._sock = NetlinkSocket._adopt(sockp[0], ns)
        return ns

    @classmethod
    def new(cls, *, lo_up: bool = True, with_socket: bool = False,
            timeout: float = 5.0) -> "Netns":
        """A new namespace held only by this handle (no file): it is gone once the
        handle is closed, unless :meth:`bind` gave it a name first."""
        from pynetlib.kernel.netlink import NetlinkSocket

        fdp = ffi.new("int *")
        sockp = ffi.new("struct pnl_sock **") if with_socket else ffi.NULL
        err = new_err()
        rc = lib.pnl_netns_new(1 if lo_up else 0, int(timeout * 1000), fdp, sockp, err)
        check(rc, err, "netns create")
        ns = cls(fdp[0])
        if with_socket:
            ns._sock = NetlinkSocket._adopt(sockp[0], ns)
        return ns

    def bind(self, name: str, rundir: str | None = None) -> None:
        """Give this namespace the file ``rundir/name`` (ObjectExistsError if taken)."""
        raw = validate.netns_name(name)
        rd = _rundir(rundir)
        prepare_rundir(rd.decode())
        with self._in_use() as fd:
            rc = lib.pnl_netns_bind(fd, rd, raw)
        check(rc, None, "netns bind", name)
        self.name, self.rundir = name, rd.decode()
        self.path = os.path.join(self.rundir, name)

    @classmethod
    def open(cls, path: str) -> "Netns":
        """Open a namespace by path: a bind-mounted file or ``/proc/PID/ns/net``."""
        if not isinstance(path, str) or not path or "\0" in path:
            raise BadRequestError(f"invalid namespace path {path!r}")
        fdp = ffi.new("int *")
        rc = lib.pnl_netns_open(path.encode(), fdp)
        if rc == -errno.ENOENT:
            raise NoSuchNamespaceError(path)
        if rc == -errno.EINVAL:
            raise BadRequestError(f"{path} is not a network namespace")
        check(rc, None, "netns open", path)
        return cls(fdp[0], path)

    @classmethod
    def named(cls, name: str, rundir: str | None = None) -> "Netns":
        """Open the named namespace ``rundir/name``."""
        raw = validate.netns_name(name)
        rd = _rundir(rundir).decode()
        path = os.path.join(rd, raw.decode())
        if not os.path.exists(path):
            raise NoSuchNamespaceError(path)
        ns = cls.open(path)
        ns.name, ns.rundir = name, rd
        return ns

    @classmethod
    def current(cls) -> "Netns":
        """The calling thread's namespace."""
        return cls.open("/proc/thread-self/ns/net")

    # -- properties -----------------------------------------------------------------
    def fileno(self) -> int:
        fd = self._holds.value
        if fd is None:
            raise ValueError("namespace handle is closed")
        return fd

    @property
    def closed(self) -> bool:
        return self._holds.value is None

    def _in_use(self):
        """``with ns._in_use() as fd:`` the fd, not closed before the block ends."""
        return self._holds.hold()

    @property
    def inode(self) -> int:
        p = ffi.new("uint64_t *")
        with self._in_use() as fd:
            rc = lib.pnl_netns_inode(fd, p)
        check(rc, None, "netns inode", self.path or "")
        return int(p[0])

    def socket(self):
        """The netlink socket bound to this namespace (opened once, closed with it)."""
        from pynetlib.kernel.netlink import NetlinkSocket

        with self._lock:
            if self._sock is None or self._sock.closed:
                self._sock = NetlinkSocket(self)
            return self._sock

    # -- lifetime -------------------------------------------------------------------
    def close(self) -> None:
        """Refuse new calls at once; close the socket and the fd once the calls in
        flight are done."""
        with self._lock:                # no socket is made after this
            sock, self._sock = self._sock, None
            fd = self._holds.take()
        if sock is not None:
            sock.close()
        if fd is not None:
            self._holds.wait_idle()
            os.close(fd)

    def _after_fork_in_child(self) -> None:
        """In a child made by fork(): closed (it would keep the namespace alive)."""
        self._lock = threading.Lock()
        self._sock = None               # closed by its own hook
        fd = self._holds.take_in_forked_child()
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def delete(self) -> None:
        """Close the handle and remove the named namespace file (unmount + unlink)."""
        self.close()
        if self.name is None:
            raise BadRequestError("only a named namespace can be deleted")
        delete(self.name, self.rundir)

    def __enter__(self) -> "Netns":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        holds = getattr(self, "_holds", None)
        if holds is not None and holds.value is not None:
            try:
                self.close()
            except Exception:
                pass

    def __repr__(self) -> str:
        fd = self._holds.value
        return f"<Netns {self.path or ''} fd={-1 if fd is None else fd}>"

    # -- entering -------------------------------------------------------------------
    @contextlib.contextmanager
    def enter(self) -> Iterator["Netns"]:
        """Run the ``with`` block with the calling thread inside this namespace."""
        with enter(self):
            yield self


def held_fd(ns: Netns | int):
    """``with held_fd(ns) as fd:`` the fd of a Netns, held (see Netns), or a plain fd."""
    if isinstance(ns, Netns):
        return ns._in_use()
    if isinstance(ns, int) and not isinstance(ns, bool) and ns >= 0:
        return contextlib.nullcontext(ns)
    raise BadRequestError(f"invalid namespace {ns!r}: a Netns or an open fd")


def delete(name: str, rundir: str | None = None) -> None:
    """Remove the named namespace ``rundir/name`` (unmount and unlink)."""
    raw = validate.netns_name(name)
    rd = _rundir(rundir)
    rc = lib.pnl_netns_delete(rd, raw)
    if rc == -errno.ENOENT:
        raise NoSuchNamespaceError(os.path.join(rd.decode(), name))
    check(rc, None, "netns delete", name)


def current_inode() -> int:
    p = ffi.new("uint64_t *")
    check(lib.pnl_netns_current_inode(p), None, "netns inode", "current thread")
    return int(p[0])


@contextlib.contextmanager
def enter(ns: Netns | int) -> Iterator[None]:
    """Move the calling thread into ``ns`` for the block; always move it back."""
    saved = ffi.new("int *")
    with held_fd(ns) as fd:
        rc = lib.pnl_netns_enter(fd, saved)
    check(rc, None, "netns enter", getattr(ns, "path", "") or "")
    try:
        yield
    finally:
        rc = lib.pnl_netns_leave(saved[0])
        if rc < 0:
            raise KernelError(-rc, "netns leave", "the thread could not return to its namespace")
