"""The controller: drivers, networks, sandboxes, and the lifecycle between them.

Records live in the embedded store (``pynetlib.store``) under ``state_dir``; several
processes may open controllers on the same state directory at once and see one set of
networks, endpoints and sandboxes. Every change writes its intent to the store before it
touches the kernel, so :meth:`reconcile` (run when a controller opens) can finish or
roll back whatever a crash interrupted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from typing import Callable, Iterator

from pynetlib import codec, etchosts, forksafe
from pynetlib.driverapi import Driver
from pynetlib.errors import (ActiveEndpointsError, ActiveRegistrationError, BadRequestError,
                             InvalidIDError, InvalidNameError, NetworkNameError,
                             NoSuchNetworkError, NotFoundError)
from pynetlib.failpoints import failpoint
from pynetlib.kernel import DEFAULT_RUNDIR, NetlinkSocket, Netns
from pynetlib.kernel.holds import Holds
from pynetlib.names import check_name
from pynetlib.netnspool import NamespacePool, check_pool_size
from pynetlib.network import Network, new_id
from pynetlib.sandbox import Sandbox
from pynetlib.store import Store, dumps, open_store, owner_token
from pynetlib.teardown import DeferredTeardown

DEFAULT_STATE_DIR = "/var/lib/pynetlib"
_OPTIONS = {"netns_dir", "ipam", "host_routes", "store", "reconcile", "netns_pool_size",
            # remote driver (pynetlib.drivers.remote.activation.PLUGIN_OPTIONS)
            "plugin_dirs", "plugin_connect_timeout", "plugin_call_timeout", "plugin_retries"}


def _set_owner(c, nid: str) -> None:
    """Record which process creates or deletes a network (see ``store.owner_token``)."""
    c.execute("INSERT OR REPLACE INTO kv VALUES ('owner', ?, ?)",
              ("network/" + nid, dumps(owner_token())))


def _clear_owner(c, nid: str) -> None:
    c.execute("DELETE FROM kv WHERE owner='owner' AND key=?", ("network/" + nid,))


class Controller:
    """libnetwork's NetworkController.

    ``state_dir`` holds the store (``pynetlib.db``) and the containers' hosts and
    resolv.conf files. Options: ``netns_dir`` (where sandbox namespaces are bound,
    /run/netns by default), ``ipam`` (an allocator to use instead of the store-backed
    default), ``host_routes`` (a callable listing the host's routed networks, for the
    default pools), ``store="memory"`` (keep the records in memory only: benchmarks and
    tests), ``reconcile=False`` (do not reconcile when opening), ``netns_pool_size``
    (namespaces kept ready for new sandboxes, made off the caller's path: see
    pynetlib/netnspool.py; 0, the default, makes each when needed). A network type with no
    registered driver is looked up as a plugin (docs/remote.md): ``plugin_dirs`` (default
    Docker's), ``plugin_connect_timeout``, ``plugin_call_timeout``, ``plugin_retries``.
    """

    def __init__(self, state_dir: str | None = None, *, global_store=None, **options) -> None:
        unknown = set(options) - _OPTIONS
        if unknown:
            raise BadRequestError(f"unknown controller options: {sorted(unknown)}")
        self.state_dir = os.path.abspath(state_dir or DEFAULT_STATE_DIR)
        self.netns_dir = os.path.normpath(options.get("netns_dir") or DEFAULT_RUNDIR)
        if not os.path.isabs(self.netns_dir):
            raise BadRequestError(f"netns_dir must be an absolute path: {self.netns_dir!r}")
        if options.get("store", "disk") not in ("disk", "memory"):
            raise BadRequestError("store must be 'disk' or 'memory'")
        pool_size = check_pool_size(options.get("netns_pool_size", 0))
        self.global_store = global_store
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self._files_root = os.path.join(self.state_dir, "containers")
        os.makedirs(self._files_root, mode=0o755, exist_ok=True)
        self.store: Store = open_store(self.state_dir, memory=options.get("store") == "memory")
        self.store_id = self._store_id()
        self._lock = threading.RLock()
        self._drivers: dict[str, Driver] = {}
        self._handles: dict[str, Network] = {}
        self._sandboxes: dict[str, Sandbox] = {}
        # Striped, so a long-running controller keeps a bounded set of locks.
        self._container_locks = [threading.Lock() for _ in range(256)]
        self._host_sock: NetlinkSocket | None = None
        self._host_ns: Netns | None = None
        self._teardown = DeferredTeardown()
        self._closed = False
        # The public calls in flight: close() refuses new ones, then waits for these.
        self._calls = Holds(self, "the controller is closed")
        self._in_call = threading.local()
        self._forked_from: int | None = None     # in a child made by fork(): the parent
        self._netns_pool: NamespacePool | None = None
        forksafe.track(self)
        try:
            from pynetlib.drivers.remote import PluginActivator

            self._plugins = PluginActivator.from_options(options)
            self.ipam = options.get("ipam") or self._default_ipam(options.get("host_routes"))
            self._init_drivers()
            self._plugins.activate_stored(self)
            if options.get("reconcile", True):
                self.reconcile()
            if pool_size:
                self._netns_pool = NamespacePool(pool_size)
        except BaseException:
            self.store.close()
            raise

    # -- set-up ---------------------------------------------------------------------
    def _store_id(self) -> str:
        sid = self.store.meta_get("store_id")
        if sid is None:
            with self.store.tx() as c:
                row = c.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()
                sid = row[0] if row else secrets.token_hex(4)
                c.execute("INSERT OR REPLACE INTO meta VALUES ('store_id', ?)", (sid,))
        if len(sid) != 8 or any(ch not in "0123456789abcdef" for ch in sid):
            from pynetlib.store import CorruptStoreError

            raise CorruptStoreError(f"store id {sid!r} is malformed")
        return sid

    def _default_ipam(self, host_routes):
        from pynetlib.ipam.persistent import PersistentAllocator

        if host_routes is not None:
            return PersistentAllocator(self.store, routes=host_routes)
        return PersistentAllocator(self.store)

    def _init_drivers(self) -> None:
        from pynetlib.drivers.bridge import BridgeDriver
        from pynetlib.drivers.host import HostDriver
        from pynetlib.drivers.null import NullDriver

        self.register_driver("bridge", BridgeDriver(self.ipam, store=self.store,
                                                    store_id=self.store_id))
        self.register_driver("host", HostDriver())
        self.register_driver("null", NullDriver())

    def host_socket(self) -> NetlinkSocket:
        """The controller's netlink socket, in the namespace it was created in."""
        with self._lock:
            if self._host_sock is None:
                self._host_ns = Netns.current()
                self._host_sock = NetlinkSocket(self._host_ns)
            return self._host_sock

    def host_netns(self) -> Netns:
        self.host_socket()
        return self._host_ns

    # -- drivers --------------------------------------------------------------------
    def register_driver(self, network_type: str, driver: Driver) -> None:
        if not isinstance(network_type, str) or not network_type.strip():
            raise InvalidNameError(network_type, "a network type cannot be empty")
        if not isinstance(driver, Driver):
            raise BadRequestError("a driver must subclass pynetlib.driverapi.Driver")
        with self._lock:
            if network_type in self._drivers:
                raise ActiveRegistrationError(network_type)
            self._drivers[network_type] = driver

    def configure_network_driver(self, network_type: str, options: dict) -> None:
        if not isinstance(options, dict):
            raise BadRequestError("driver options must be a dict")
        with self._call():
            self._driver(network_type).config(dict(options))

    def _driver(self, network_type: str) -> Driver:
        with self._lock:
            d = self._drivers.get(network_type)
        if d is None:       # a plugin of that name? (UnknownDriverError when there is none)
            d = self._plugins.activate(network_type, self)
        return d

    # -- networks -------------------------------------------------------------------
    def _handle(self, nid: str, name: str, ntype: str) -> Network:
        with self._lock:
            net = self._handles.get(nid)
        if net is not None:
            return net
        # Resolved outside the lock: activating a plugin talks to it, for as long as its
        # timeouts allow, and every other user of the lock (joins among them) would wait.
        driver = self._driver(ntype)
        with self._lock:
            net = self._handles.get(nid)
            if net is None:
                net = self._handles[nid] = Network(self, name, nid, ntype, driver)
            return net

    def new_network(self, network_type: str, name: str, options: dict | None = None, *,
                    ipam=None) -> Network:
        check_name(name, "network name")
        if options is not None and not isinstance(options, dict):
            raise BadRequestError("network options must be a dict")
        if ipam is not None:
            raise BadRequestError("per-network IPAM configuration is not supported yet; "
                                  "the bridge driver takes its subnets from its options")
        driver = self._driver(network_type)
        opts = dict(options or {})
        try:
            stored = dumps(codec.encode(opts))
        except TypeError as e:
            raise BadRequestError(f"network options: {e}") from None
        with self._call():
            return self._create_network(driver, network_type, name, opts, stored)

    def _create_network(self, driver, network_type: str, name: str, opts: dict,
                        stored: str) -> Network:
        nid = new_id()
        with self.store.tx(durable=True) as c:
            if c.execute("SELECT 1 FROM networks WHERE name=?", (name,)).fetchone():
                raise NetworkNameError(name)
            c.execute("INSERT INTO networks VALUES (?, ?, ?, ?, 'creating')",
                      (nid, name, network_type, stored))
            _set_owner(c, nid)
        try:
            failpoint("network.create.before_kernel")
            driver.create_network(nid, opts)
            failpoint("network.create.after_kernel")
        except BaseException:
            with self.store.tx(durable=True) as c:
                c.execute("DELETE FROM networks WHERE id=?", (nid,))
                _clear_owner(c, nid)
            raise
        with self.store.tx(durable=True) as c:
            c.execute("UPDATE networks SET state='ready' WHERE id=?", (nid,))
            _clear_owner(c, nid)
        return self._handle(nid, name, network_type)

    def _delete_network(self, net: Network) -> None:
        with self._call():
            self._delete_network_open(net)

    def _delete_network_open(self, net: Network) -> None:
        with self.store.tx(durable=True) as c:
            row = c.execute("SELECT state FROM networks WHERE id=?", (net.id,)).fetchone()
            if row is None or row[0] != "ready":
                raise NoSuchNetworkError(net.name)
            if c.execute("SELECT 1 FROM endpoints WHERE network_id=? LIMIT 1",
                         (net.id,)).fetchone():
                raise ActiveEndpointsError(net.name, net.id)
            c.execute("UPDATE networks SET state='deleting' WHERE id=?", (net.id,))
            _set_owner(c, net.id)
        failpoint("network.delete.before_kernel")
        try:
            net._driver.delete_network(net.id)
        except BaseException:
            with self.store.tx(durable=True) as c:
                c.execute("UPDATE networks SET state='ready' WHERE id=?", (net.id,))
                _clear_owner(c, net.id)
            raise
        failpoint("network.delete.after_kernel")
        with self.store.tx(durable=True) as c:
            c.execute("DELETE FROM networks WHERE id=?", (net.id,))
            _clear_owner(c, net.id)
        with self._lock:
            self._handles.pop(net.id, None)

    def networks(self) -> list[Network]:
        rows = self.store.read().execute(
            "SELECT id, name, type FROM networks WHERE state='ready'").fetchall()
        return [self._handle(*r) for r in rows if r[2] in self._drivers]

    def walk_networks(self, fn: Callable[[Network], bool]) -> None:
        for net in self.networks():
            if fn(net):
                return

    def network_by_name(self, name: str) -> Network:
        if not isinstance(name, str) or not name:
            raise InvalidNameError(name, "a network name cannot be empty")
        row = self.store.read().execute(
            "SELECT id, name, type FROM networks WHERE name=? AND state='ready'",
            (name,)).fetchone()
        if row is None:
            raise NoSuchNetworkError(name)
        return self._handle(*row)

    def network_by_id(self, nid: str) -> Network:
        if not isinstance(nid, str) or not nid:
            raise InvalidIDError(nid, "a network id cannot be empty")
        row = self.store.read().execute(
            "SELECT id, name, type FROM networks WHERE id=? AND state='ready'",
            (nid,)).fetchone()
        if row is None:
            raise NoSuchNetworkError(nid)
        return self._handle(*row)

    # -- sandboxes ------------------------------------------------------------------
    def sandboxes(self) -> list[Sandbox]:
        rows = self.store.read().execute(
            "SELECT container_id, key, kind, hosts_path, resolv_conf_path FROM sandboxes"
        ).fetchall()
        return [self._sandbox_handle(*r) for r in rows]

    def sandbox_by_container(self, container_id: str) -> Sandbox:
        row = self.store.read().execute(
            "SELECT container_id, key, kind, hosts_path, resolv_conf_path FROM sandboxes "
            "WHERE container_id=?", (container_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no sandbox for container {container_id}")
        return self._sandbox_handle(*row)

    def _sandbox_handle(self, cid: str, key: str, kind: str, hosts_path=None,
                        resolv_path=None, *, keep_paths: bool = False) -> Sandbox:
        """This process's handle on a sandbox. ``keep_paths``: the paths given are from
        a record that may not have them yet (a join of the same batch wrote the files):
        keep the handle's own where none is given."""
        with self._lock:
            sb = self._sandboxes.get(cid)
            if sb is None or sb.key != key:
                if sb is not None:
                    sb.close()
                sb = self._sandboxes[cid] = Sandbox(self, cid, key, kind, self._files_root)
            if keep_paths:
                sb.hosts_path = hosts_path or sb.hosts_path
                sb.resolv_conf_path = resolv_path or sb.resolv_conf_path
            else:
                sb.hosts_path, sb.resolv_conf_path = hosts_path, resolv_path
            return sb

    def _drop_sandbox_handle(self, cid: str) -> Sandbox | None:
        with self._lock:
            return self._sandboxes.pop(cid, None)

    def _sandbox_endpoints(self, cid: str) -> list:
        rows = self.store.read().execute(
            "SELECT e.id, e.name, n.id, n.name, n.type FROM endpoints e JOIN networks n "
            "ON e.network_id = n.id WHERE e.container_id=? AND e.state IN "
            "('attaching', 'attached', 'detaching')", (cid,)).fetchall()
        return [self._handle(nid, nname, ntype)._handle(eid, ename)
                for eid, ename, nid, nname, ntype in rows]

    def _container_lock(self, container_id: str) -> threading.Lock:
        return self._container_locks[hash(container_id) % len(self._container_locks)]

    # -- plumbing for drivers that hand over a host device ----------------------------
    def _move_into_sandbox(self, sb: Sandbox, src: str, dst: str, iface) -> None:
        host = self.host_socket()
        inner = sb.netns.socket()
        host.link_set(src, up=False, netns=sb.netns)
        try:
            idx = inner.index(src)
            inner.link_set(idx, name=dst)
            if iface.mac_address():
                inner.link_set(idx, mac=iface.mac_address())
            inner.link_set(idx, up=True)
            if iface.address() is not None:
                inner.addr_add(idx, iface.address())
            if iface.address_ipv6() is not None:
                inner.addr_add(idx, iface.address_ipv6(), nodad=True)
        except BaseException:
            self._move_out_of_sandbox(sb, src, dst)
            raise

    def _move_out_of_sandbox(self, sb: Sandbox, src: str, dst: str) -> None:
        try:
            inner = sb.netns.socket()
        except NotFoundError:
            return                          # the namespace is gone, and the device with it
        host_ns = self.host_netns()
        for name in (dst, src):
            if inner.link_exists(name):
                idx = inner.index(name)
                inner.link_set(idx, up=False)
                if name != src:
                    inner.link_set(idx, name=src)
                inner.link_set(idx, netns=host_ns)
                return

    def _add_default_route(self, sb: Sandbox, gateway, ifname: str) -> None:
        sb.netns.socket().route_add(gateway=str(gateway), link=ifname)

    def _update_parent_hosts(self, eid: str, name: str, ip: str) -> None:
        row = self.store.read().execute(
            "SELECT s.hosts_path FROM endpoints e JOIN sandboxes s ON "
            "e.container_id = s.container_id WHERE e.id=? AND e.state='attached'",
            (eid,)).fetchone()
        if row and row[0]:
            etchosts.update(row[0], ip, name)

    # -- batches ---------------------------------------------------------------------
    def attach_many(self, specs) -> list:
        """``create_endpoint`` + ``join`` for every :class:`pynetlib.AttachSpec`, all or
        nothing, with the store work of all of them in two transactions. Returns the
        endpoints, in the order of ``specs``."""
        from pynetlib.batch import attach_many

        return attach_many(self, specs)

    def detach_many(self, endpoints) -> None:
        """``leave`` (from whatever container each is joined to) + ``delete`` for many
        endpoints at once."""
        from pynetlib.batch import detach_many

        detach_many(self, endpoints)

    # -- lifetime -------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            if self._forked_from is not None:
                raise BadRequestError(forksafe.forked_message("controller",
                                                              self._forked_from))
            raise BadRequestError("the controller is closed")

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        """``with ctrl._call():`` around a public call that changes something: refused
        with BadRequestError once close() has begun; close() waits for it to end before
        it closes the drivers, sockets and store the call is using."""
        if getattr(self._in_call, "depth", 0):     # a call made by a call: counted once
            self._in_call.depth += 1
            try:
                yield
            finally:
                self._in_call.depth -= 1
            return
        try:
            held = self._calls.hold()
        except ValueError:
            self._check_open()
            raise BadRequestError("the controller is closed") from None
        with held:
            self._in_call.depth = 1
            try:
                yield
            finally:
                self._in_call.depth = 0

    def _after_fork_in_child(self) -> None:
        """In a child made by fork(): closed, without touching anything (see
        pynetlib/forksafe.py); its store, sockets and threads' queues follow suit."""
        self._lock = threading.RLock()
        self._forked_from = os.getppid()
        self._closed = True
        self._calls.take_in_forked_child()

    def reconcile(self) -> list[str]:
        """Finish or roll back whatever a crash interrupted, re-create what the kernel
        lost, remove what pynetlib owns but no record names. Returns what it did."""
        from pynetlib.reconcile import reconcile

        with self._call():
            self._teardown.flush()
            return reconcile(self)

    def audit(self) -> list[str]:
        """Every discrepancy between the store, IPAM and the kernel (empty: none)."""
        from pynetlib.reconcile import audit

        with self._call():
            self.flush_teardown()
            return audit(self)

    def flush_teardown(self) -> None:
        """Wait until every namespace and device left by leave has been deleted."""
        if self._forked_from is not None:
            self._check_open()              # raises: that teardown is the parent's
        self._teardown.flush()
        for d in list(self._drivers.values()):
            flush = getattr(d, "flush_teardown", None)
            if flush is not None:
                flush()

    def close(self) -> None:
        """Finish pending teardown, release this process's handles. Records and kernel
        objects stay: another controller on this state directory takes over from here.
        Calls other threads have in flight finish first (each within its own timeouts);
        calls made from now on are refused with BadRequestError. Called from inside a
        call on this controller (a driver's callback, on the calling thread), it would
        wait for that call forever: it raises BadRequestError instead and changes
        nothing (once another thread has begun closing, it returns, as it does anywhere
        else)."""
        with self._lock:
            if self._closed:
                return
            if getattr(self._in_call, "depth", 0):
                raise BadRequestError("close() cannot run inside a call on this "
                                      "controller (it would wait for that call to end)")
            self._closed = True
        self._calls.take()
        self._calls.wait_idle()
        with self._lock:
            sock, ns = self._host_sock, self._host_ns
            self._host_sock = self._host_ns = None
            sandboxes, self._sandboxes = list(self._sandboxes.values()), {}
        for sb in sandboxes:
            sb.close()
        if self._netns_pool is not None:
            self._netns_pool.close()
        self._teardown.close()
        for d in list(self._drivers.values()):
            closer = getattr(d, "close", None)
            if closer is not None:
                closer()
        if sock is not None:
            sock.close()
        if ns is not None:
            ns.close()
        self.store.close()

    def __enter__(self) -> "Controller":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
