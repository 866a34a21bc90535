"""Sandboxes: a container's network namespace, the endpoints joined to it, its files.

A sandbox is created on a container's first join and removed after its last leave.
Its namespace is one of: made by pynetlib (a file in the controller's ``netns_dir``,
deleted with the sandbox), the runtime's own (``netns_path``: used, never deleted), or
the controller's namespace itself (``use_default_sandbox``, for the host driver).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading

from pynetlib import resolvconf
from pynetlib.errors import BadRequestError, ForbiddenError
from pynetlib.kernel import Netns, delete_netns

OWNED, EXTERNAL, DEFAULT = "owned", "external", "default"


def netns_name_for(container_id: str) -> str:
    """The file name of a container's namespace: ``pnl-`` + its id (hashed if long)."""
    if len(container_id) <= 40:
        return "pnl-" + container_id
    return "pnl-" + container_id[:12] + "-" + hashlib.sha256(container_id.encode()).hexdigest()[:16]


class Sandbox:
    """A container's network stack. ``key`` is the path of its namespace."""

    def __init__(self, container_id: str, key: str, netns: Netns, kind: str,
                 files_dir: str) -> None:
        self.container_id = container_id
        self.key = key
        self.kind = kind
        self.files_dir = files_dir
        self._netns = netns
        self._lock = threading.Lock()
        self._endpoints: dict[str, object] = {}
        self._ifnames: set[str] = set()
        self.has_gateway4 = False
        self.has_gateway6 = False
        self.hosts_path: str | None = None
        self.resolv_conf_path: str | None = None

    # -- public view ----------------------------------------------------------------
    def endpoints(self) -> list:
        with self._lock:
            return list(self._endpoints.values())

    def __repr__(self) -> str:
        return f"<Sandbox {self.container_id} key={self.key}>"

    # -- controller side ------------------------------------------------------------
    @property
    def netns(self) -> Netns:
        return self._netns

    def next_ifname(self, prefix: str = "eth") -> str:
        """The next free ``ethN`` inside the sandbox (reserved until released)."""
        with self._lock:
            i = 0
            while f"{prefix}{i}" in self._ifnames:
                i += 1
            name = f"{prefix}{i}"
            self._ifnames.add(name)
            return name

    def reserve_ifname(self, name: str) -> None:
        with self._lock:
            if name in self._ifnames:
                raise ForbiddenError(f"interface {name} already exists in sandbox {self.key}")
            self._ifnames.add(name)

    def release_ifname(self, name: str | None) -> None:
        if name:
            with self._lock:
                self._ifnames.discard(name)

    def add_endpoint(self, ep) -> None:
        with self._lock:
            self._endpoints[ep.id] = ep

    def remove_endpoint(self, ep) -> int:
        with self._lock:
            self._endpoints.pop(ep.id, None)
            return len(self._endpoints)

    def empty(self) -> bool:
        with self._lock:
            return not self._endpoints

    def destroy(self) -> None:
        """Close the namespace handle and, if pynetlib made it, delete the namespace."""
        name, rundir = self._netns.name, self._netns.rundir
        self._netns.close()
        if self.kind == OWNED and name:
            try:
                delete_netns(name, rundir)
            except FileNotFoundError:
                pass
            except Exception as e:  # NoSuchNamespaceError: already gone is fine
                if type(e).__name__ != "NoSuchNamespaceError":
                    raise
        if self.resolv_conf_path:
            resolvconf.forget(self.resolv_conf_path)
        shutil.rmtree(self.files_dir, ignore_errors=True)


def open_sandbox(container_id: str, *, netns_dir: str, files_root: str,
                 use_default: bool, netns_path: str | None) -> Sandbox:
    """Create (or open) the namespace for a new sandbox."""
    files_dir = os.path.join(files_root, container_id)
    if os.path.lexists(files_dir):          # left by a crash: it is no one's now
        shutil.rmtree(files_dir, ignore_errors=True)
    os.makedirs(files_dir, mode=0o755)
    if use_default and netns_path:
        raise BadRequestError("use_default_sandbox and netns_path exclude each other")
    if use_default:
        key = f"/proc/{os.getpid()}/ns/net"
        return Sandbox(container_id, key, Netns.open(key), DEFAULT, files_dir)
    if netns_path:
        if not isinstance(netns_path, str) or not os.path.isabs(netns_path):
            raise BadRequestError(f"invalid netns_path {netns_path!r}: an absolute path")
        return Sandbox(container_id, netns_path, Netns.open(netns_path), EXTERNAL, files_dir)
    name = netns_name_for(container_id)
    ns = Netns.create(name, netns_dir, lo_up=True, with_socket=True)
    return Sandbox(container_id, ns.path, ns, OWNED, files_dir)
