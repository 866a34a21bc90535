"""Sandboxes: a container's network namespace, the endpoints joined to it, its files.

A sandbox is created on a container's first join and removed after its last leave. Its
namespace is one of: made by pynetlib (a file in the controller's ``netns_dir``, deleted
with the sandbox), the runtime's own (``netns_path``: used, never deleted), or the
controller's own namespace (``use_default_sandbox``, for the host driver).

The record of a sandbox lives in the store; a :class:`Sandbox` is this process's handle
on it, holding the namespace open (and its netlink socket) while it is in use.
"""

from __future__ import annotations

import hashlib
import os
import threading

from pynetlib import resolvconf
from pynetlib.errors import BadRequestError, NotFoundError, ObjectExistsError
from pynetlib.kernel import Netns, delete_netns

OWNED, EXTERNAL, DEFAULT = "owned", "external", "default"
NETNS_PREFIX = "pnl-"


def netns_name_for(store_id: str, container_id: str) -> str:
    """The file name of a container's namespace: ``pnl-<store id>-<container id>``
    (the id hashed when long). The store id keeps two state directories apart."""
    cid = container_id
    if len(cid) > 40:
        cid = cid[:12] + "-" + hashlib.sha256(cid.encode()).hexdigest()[:16]
    return f"{NETNS_PREFIX}{store_id}-{cid}"


def sandbox_key(store_id: str, container_id: str, netns_dir: str, use_default: bool,
                netns_path: str | None) -> tuple[str, str]:
    """(key, kind) of a new sandbox."""
    if use_default and netns_path:
        raise BadRequestError("use_default_sandbox and netns_path exclude each other")
    if use_default:
        return f"/proc/{os.getpid()}/ns/net", DEFAULT
    if netns_path is not None:
        if not isinstance(netns_path, str) or not os.path.isabs(netns_path) or \
                "\0" in netns_path:
            raise BadRequestError(f"invalid netns_path {netns_path!r}: an absolute path")
        return os.path.normpath(netns_path), EXTERNAL
    return os.path.join(netns_dir, netns_name_for(store_id, container_id)), OWNED


def default_paths(files_dir: str, container_id: str) -> tuple[str, str]:
    """(hosts, resolv.conf) of a container whose joins name no other files."""
    return (os.path.join(files_dir, container_id + ".hosts"),
            os.path.join(files_dir, container_id + ".resolv.conf"))


class Sandbox:
    """A container's network stack. ``key`` is the path of its namespace."""

    def __init__(self, ctrl, container_id: str, key: str, kind: str, files_dir: str) -> None:
        self._ctrl = ctrl
        self.container_id = container_id
        self.key = key
        self.kind = kind
        self.files_dir = files_dir
        #: the container's own files, unless a join names other paths
        self.default_hosts, self.default_resolv = default_paths(files_dir, container_id)
        self.lo_pending = False
        self._netns: Netns | None = None
        self._destroyed = False
        self._lock = threading.Lock()
        self.hosts_path: str | None = None
        self.resolv_conf_path: str | None = None

    def __repr__(self) -> str:
        return f"<Sandbox {self.container_id} key={self.key}>"

    def endpoints(self) -> list:
        """The endpoints joined to this container (a snapshot, from the store)."""
        return self._ctrl._sandbox_endpoints(self.container_id)

    # -- namespace ------------------------------------------------------------------
    @property
    def netns(self) -> Netns:
        with self._lock:
            if self._netns is None or self._netns.closed:
                if not os.path.exists(self.key):
                    raise NotFoundError(f"the namespace {self.key} of sandbox "
                                        f"{self.container_id} is gone")
                self._netns = Netns.open(self.key)
            return self._netns

    def create_namespace(self, netns_dir: str) -> None:
        """Make the namespace of an owned sandbox (its socket comes with it): one from
        the controller's warm pool if it has one ready (lo is up already), else a new
        one (its lo is brought up by the first join's pipeline: see ``lo_pending``)."""
        name = os.path.basename(self.key)
        pool = self._ctrl._netns_pool
        ns = pool.take() if pool is not None else None
        if ns is not None:
            try:
                _replacing_leftover(self.key, lambda: ns.bind(name, netns_dir))
            except BaseException:
                ns.close()
                raise
            lo_pending = False
        else:
            ns = _replacing_leftover(self.key, lambda: Netns.create(
                name, netns_dir, lo_up=False, with_socket=True))
            lo_pending = True
        with self._lock:
            self._netns = ns
            self._destroyed = False
            self.lo_pending = lo_pending

    def close(self) -> None:
        with self._lock:
            ns, self._netns = self._netns, None
        if ns is not None:
            ns.close()

    def destroy(self, *, defer: bool = False) -> None:
        """Close the handle and, if pynetlib made the namespace, delete it; remove the
        container's files. Idempotent. ``defer``: leave the deletion to the controller's
        teardown thread (the records are final already; a new sandbox for the same
        container waits for it)."""
        self.close()
        if self._destroyed:
            return
        self._destroyed = True
        if defer:
            self._ctrl._teardown.submit(self.container_id, self._remove)
        else:
            self._ctrl._teardown.take(self.container_id)
            self._remove()

    def _remove(self) -> None:
        if self.kind == OWNED:
            remove_owned_namespace(self.key)
        if self.resolv_conf_path:
            resolvconf.forget(self.resolv_conf_path)
        remove_files(self)


def _replacing_leftover(key: str, make):
    """``make()`` the namespace file ``key``. The record of the sandbox is ours, so a
    file already there is a leftover (another process's teardown still pending, or a
    crash's): it is replaced."""
    try:
        return make()
    except ObjectExistsError:
        remove_owned_namespace(key)
        return make()


def remove_files(sb: "Sandbox") -> None:
    for path in (sb.default_hosts, sb.default_resolv):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def remove_owned_namespace(key: str) -> None:
    try:
        delete_netns(os.path.basename(key), os.path.dirname(key))
    except NotFoundError:
        pass
    except OSError:
        if os.path.lexists(key):
            raise
