"""The controller: drivers, networks, sandboxes, and the lifecycle between them."""

from __future__ import annotations

import ipaddress
import os
import threading
from typing import Callable

from pynetlib import etchosts
from pynetlib.driverapi import Driver
from pynetlib.errors import (ActiveEndpointsError, ActiveRegistrationError, BadRequestError,
                             InvalidIDError, InvalidNameError, NetworkNameError,
                             NoSuchNetworkError, UnknownDriverError)
from pynetlib.kernel import DEFAULT_RUNDIR, NetlinkSocket, Netns
from pynetlib.names import check_name
from pynetlib.network import Network, new_id
from pynetlib.sandbox import Sandbox, open_sandbox

DEFAULT_STATE_DIR = "/var/lib/pynetlib"
_OPTIONS = {"netns_dir", "ipam", "host_routes"}


class Controller:
    """libnetwork's NetworkController.

    ``state_dir`` holds pynetlib's state (the containers' hosts and resolv.conf files
    among it). Options: ``netns_dir`` (where sandbox namespaces are bound, /run/netns
    by default), ``ipam`` (an allocator to use instead of a new default one),
    ``host_routes`` (a callable listing the host's routed networks, for default pools).
    """

    def __init__(self, state_dir: str | None = None, *, global_store=None, **options) -> None:
        unknown = set(options) - _OPTIONS
        if unknown:
            raise BadRequestError(f"unknown controller options: {sorted(unknown)}")
        self.state_dir = os.path.abspath(state_dir or DEFAULT_STATE_DIR)
        self.netns_dir = options.get("netns_dir") or DEFAULT_RUNDIR
        if not os.path.isabs(self.netns_dir):
            raise BadRequestError(f"netns_dir must be an absolute path: {self.netns_dir!r}")
        self.global_store = global_store
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self._files_root = os.path.join(self.state_dir, "containers")
        self._lock = threading.RLock()
        self._drivers: dict[str, Driver] = {}
        self._networks: dict[str, Network] = {}
        self._names: dict[str, str] = {}
        self._creating: set[str] = set()
        self._sandboxes: dict[str, Sandbox] = {}
        self._sandbox_locks: dict[str, threading.Lock] = {}
        self._host_sock: NetlinkSocket | None = None
        self._host_ns: Netns | None = None
        self._closed = False
        self.ipam = options.get("ipam") or self._default_ipam(options.get("host_routes"))
        self._init_drivers()

    # -- set-up ---------------------------------------------------------------------
    def _default_ipam(self, host_routes):
        from pynetlib.ipam import Allocator

        return Allocator(routes=host_routes) if host_routes else Allocator()

    def _init_drivers(self) -> None:
        from pynetlib.drivers.bridge import BridgeDriver
        from pynetlib.drivers.host import HostDriver
        from pynetlib.drivers.null import NullDriver

        self.register_driver("bridge", BridgeDriver(self.ipam))
        self.register_driver("host", HostDriver())
        self.register_driver("null", NullDriver())

    def host_socket(self) -> NetlinkSocket:
        """The controller's netlink socket, in the namespace it was created in."""
        with self._lock:
            if self._host_sock is None:
                self._host_ns = Netns.current()
                self._host_sock = NetlinkSocket(self._host_ns)
            return self._host_sock

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
        self._driver(network_type).config(dict(options))

    def _driver(self, network_type: str) -> Driver:
        with self._lock:
            d = self._drivers.get(network_type)
        if d is None:
            raise UnknownDriverError(network_type)
        return d

    # -- networks -------------------------------------------------------------------
    def new_network(self, network_type: str, name: str, options: dict | None = None, *,
                    ipam=None) -> Network:
        check_name(name, "network name")
        if options is not None and not isinstance(options, dict):
            raise BadRequestError("network options must be a dict")
        if ipam is not None:
            raise BadRequestError("per-network IPAM configuration is not supported yet; "
                                  "the bridge driver takes its subnets from its options")
        driver = self._driver(network_type)
        with self._lock:
            self._check_open()
            if name in self._names or name in self._creating:
                raise NetworkNameError(name)
            self._creating.add(name)
        try:
            nid = new_id()
            opts = dict(options or {})
            driver.create_network(nid, opts)
            net = Network(self, name, nid, network_type, driver, opts)
            with self._lock:
                self._networks[nid] = net
                self._names[name] = nid
            return net
        finally:
            with self._lock:
                self._creating.discard(name)

    def _delete_network(self, net: Network) -> None:
        with self._lock:
            if self._networks.get(net.id) is not net:
                raise NoSuchNetworkError(net.name)
            if net.has_endpoints():
                raise ActiveEndpointsError(net.name, net.id)
            # Hide it while the driver works, so no endpoint can be created meanwhile.
            del self._networks[net.id]
            del self._names[net.name]
        try:
            net._driver.delete_network(net.id)
        except BaseException:
            with self._lock:
                self._networks[net.id] = net
                self._names[net.name] = net.id
            raise

    def _network_gone(self, net: Network) -> bool:
        with self._lock:
            return self._networks.get(net.id) is not net

    def networks(self) -> list[Network]:
        with self._lock:
            return list(self._networks.values())

    def walk_networks(self, fn: Callable[[Network], bool]) -> None:
        for net in self.networks():
            if fn(net):
                return

    def network_by_name(self, name: str) -> Network:
        if not isinstance(name, str) or not name:
            raise InvalidNameError(name, "a network name cannot be empty")
        with self._lock:
            nid = self._names.get(name)
            net = self._networks.get(nid) if nid else None
        if net is None:
            raise NoSuchNetworkError(name)
        return net

    def network_by_id(self, nid: str) -> Network:
        if not isinstance(nid, str) or not nid:
            raise InvalidIDError(nid, "a network id cannot be empty")
        with self._lock:
            net = self._networks.get(nid)
        if net is None:
            raise NoSuchNetworkError(nid)
        return net

    # -- sandboxes ------------------------------------------------------------------
    def sandboxes(self) -> list[Sandbox]:
        with self._lock:
            return list(self._sandboxes.values())

    def sandbox_by_container(self, container_id: str) -> Sandbox:
        with self._lock:
            sb = self._sandboxes.get(container_id)
        if sb is None:
            from pynetlib.errors import NotFoundError

            raise NotFoundError(f"no sandbox for container {container_id}")
        return sb

    def _container_lock(self, container_id: str) -> threading.Lock:
        with self._lock:
            return self._sandbox_locks.setdefault(container_id, threading.Lock())

    def _sandbox_acquire(self, container_id: str, use_default: bool,
                         netns_path: str | None) -> Sandbox:
        """The container's sandbox, created on its first join; the caller joins it."""
        with self._container_lock(container_id):
            with self._lock:
                self._check_open()
                sb = self._sandboxes.get(container_id)
            if sb is not None:
                want = "default" if use_default else ("external" if netns_path else None)
                if (want == "default" and sb.kind != "default") or \
                        (want == "external" and sb.key != netns_path) or \
                        (want is None and sb.kind == "default"):
                    raise BadRequestError(f"container {container_id} already has sandbox "
                                          f"{sb.key}; a join cannot ask for another")
                return sb
            sb = open_sandbox(container_id, netns_dir=self.netns_dir,
                              files_root=self._files_root, use_default=use_default,
                              netns_path=netns_path)
            with self._lock:
                self._sandboxes[container_id] = sb
            return sb

    def _sandbox_release(self, sb: Sandbox, ep) -> None:
        with self._container_lock(sb.container_id):
            if sb.remove_endpoint(ep) > 0:
                return
            with self._lock:
                if self._sandboxes.get(sb.container_id) is sb:
                    del self._sandboxes[sb.container_id]
            sb.destroy()

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
        inner = sb.netns.socket()
        self.host_socket()
        for name in (dst, src):
            if inner.link_exists(name):
                idx = inner.index(name)
                inner.link_set(idx, up=False)
                if name != src:
                    inner.link_set(idx, name=src)
                inner.link_set(idx, netns=self._host_ns)
                return

    def _add_default_route(self, sb: Sandbox, gateway, ifname: str) -> None:
        sb.netns.socket().route_add(gateway=str(gateway), link=ifname)

    def _update_parent_hosts(self, eid: str, name: str, ip: str) -> None:
        for net in self.networks():
            for ep in net.endpoints():
                if ep.id == eid and ep.joined_container:
                    sb = self._sandboxes.get(ep.joined_container)
                    if sb is not None and sb.hosts_path:
                        etchosts.update(sb.hosts_path, ip, name)
                    return

    # -- lifetime -------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise BadRequestError("the controller is closed")

    def reconcile(self) -> list[str]:
        """Nothing to reconcile without a persistent store yet: returns the actions taken."""
        return []

    def audit(self) -> list[str]:
        """Discrepancies between the controller's records and the kernel (empty: none)."""
        problems: list[str] = []
        for net in self.networks():
            drv = net._driver
            check = getattr(drv, "audit_network", None)
            if check is not None:
                problems += check(net.id, [ep.id for ep in net.endpoints()])
        with self._lock:
            sandboxes = list(self._sandboxes.values())
        for sb in sandboxes:
            if sb.kind == "owned" and not os.path.exists(sb.key):
                problems.append(f"sandbox {sb.container_id}: namespace {sb.key} is missing")
        return problems

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sock, ns = self._host_sock, self._host_ns
            self._host_sock = self._host_ns = None
        for d in list(self._drivers.values()):
            closer = getattr(d, "close", None)
            if closer is not None:
                closer()
        if sock is not None:
            sock.close()
        if ns is not None:
            ns.close()

    def __enter__(self) -> "Controller":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
