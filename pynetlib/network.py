"""Networks: a name, an id, one driver, and the endpoints created on it."""

from __future__ import annotations

import ipaddress
import secrets
import threading
from typing import Callable

from pynetlib import codec, netlabel
from pynetlib.driverinfo import EndpointInfo as _DriverEndpointInfo
from pynetlib.driverinfo import Interface
from pynetlib.endpoint import Endpoint, interfaces_to_json
from pynetlib.errors import (ActiveContainerError, BadRequestError, EndpointNameError,
                             InvalidIDError, InvalidNameError, NoSuchEndpointError,
                             NoSuchNetworkError)
from pynetlib.failpoints import failpoint
from pynetlib.store import dumps, loads
from pynetlib.kernel import validate
from pynetlib.names import check_name
from pynetlib.types import PortBinding, TransportPort


def new_id() -> str:
    """64 lowercase hex characters (32 random bytes), like libnetwork's ids."""
    return secrets.token_hex(32)


class Network:
    """A handle on a network record; the record lives in the store."""

    def __init__(self, ctrl, name: str, nid: str, ntype: str, driver) -> None:
        self._ctrl = ctrl
        self.name = name
        self.id = nid
        self.type = ntype
        self._driver = driver
        self._lock = threading.Lock()
        self._handles: dict[str, Endpoint] = {}

    def __repr__(self) -> str:
        return f"<Network {self.name} {self.id[:12]} type={self.type}>"

    def __eq__(self, other) -> bool:
        return isinstance(other, Network) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _handle(self, eid: str, name: str) -> Endpoint:
        with self._lock:
            ep = self._handles.get(eid)
            if ep is None:
                ep = self._handles[eid] = Endpoint(self, name, eid)
            return ep

    def _forget(self, eid: str) -> None:
        with self._lock:
            self._handles.pop(eid, None)

    def options(self) -> dict:
        """The options the network was created with (a copy, from its record)."""
        row = self._ctrl.store.read().execute(
            "SELECT options FROM networks WHERE id=?", (self.id,)).fetchone()
        if row is None:
            raise NoSuchNetworkError(self.id)
        return codec.decode(loads(row[0], "network options") or {})

    # -- endpoints ------------------------------------------------------------------
    def create_endpoint(self, name: str, options: dict | None = None, *, ipv4=None, ipv6=None,
                        mac: str | None = None) -> Endpoint:
        """Create an endpoint: the driver reserves its addresses (static ones when given)."""
        check_name(name, "endpoint name")
        opts = _endpoint_options(options)
        if mac is not None:
            validate.mac(mac)
            opts[netlabel.MAC_ADDRESS] = mac.lower()
        assigned = _static_interface(ipv4, ipv6, opts.get(netlabel.MAC_ADDRESS))
        try:
            stored_opts = dumps(codec.encode(opts))
        except TypeError as e:
            raise BadRequestError(f"endpoint options: {e}") from None
        with self._ctrl._call():
            return self._create_endpoint(name, opts, assigned, stored_opts)

    def _create_endpoint(self, name: str, opts: dict, assigned, stored_opts: str) -> Endpoint:
        store = self._ctrl.store
        eid = new_id()
        with store.tx() as c:
            row = c.execute("SELECT state FROM networks WHERE id=?", (self.id,)).fetchone()
            if row is None or row[0] != "ready":
                raise NoSuchNetworkError(self.name)
            if c.execute("SELECT 1 FROM endpoints WHERE network_id=? AND name=?",
                         (self.id, name)).fetchone():
                raise EndpointNameError(name)
            info = _DriverEndpointInfo([assigned] if assigned else None)
            self._driver.create_endpoint(self.id, eid, info, opts)
            if assigned is not None and assigned.is_open():
                assigned.complete()      # nothing more will be filled in
            c.execute("INSERT INTO endpoints (id, network_id, name, options, interfaces, "
                      "state) VALUES (?, ?, ?, ?, ?, 'created')",
                      (eid, self.id, name, stored_opts, interfaces_to_json(info.interfaces())))
        failpoint("endpoint.create.after_store")
        ep = self._handle(eid, name)
        if ep._ifaces is None:          # as stored: the join need not decode them again
            ep._ifaces = info.interfaces()
        return ep

    def _delete_endpoint(self, ep: Endpoint) -> None:
        with self._ctrl._call(), ep._lock:
            self._delete_endpoint_locked(ep)

    def _delete_endpoint_locked(self, ep: Endpoint) -> None:
        with self._ctrl.store.tx() as c:
            row = c.execute("SELECT state, container_id FROM endpoints WHERE id=?",
                            (ep.id,)).fetchone()
            if row is None:
                raise NoSuchEndpointError(ep.id)
            if row[0] != "created":
                raise ActiveContainerError(ep.name, row[1] or "")
            failpoint("endpoint.delete.before_store")
            self._driver.delete_endpoint(self.id, ep.id)
            c.execute("DELETE FROM endpoints WHERE id=?", (ep.id,))
        self._forget(ep.id)

    def endpoints(self) -> list[Endpoint]:
        rows = self._ctrl.store.read().execute(
            "SELECT id, name FROM endpoints WHERE network_id=?", (self.id,)).fetchall()
        return [self._handle(eid, name) for eid, name in rows]

    def walk_endpoints(self, fn: Callable[[Endpoint], bool]) -> None:
        for ep in self.endpoints():
            if fn(ep):
                return

    def endpoint_by_name(self, name: str) -> Endpoint:
        if not isinstance(name, str) or not name:
            raise InvalidNameError(name, "an endpoint name cannot be empty")
        row = self._ctrl.store.read().execute(
            "SELECT id FROM endpoints WHERE network_id=? AND name=?", (self.id, name)).fetchone()
        if row is None:
            raise NoSuchEndpointError(name)
        return self._handle(row[0], name)

    def endpoint_by_id(self, eid: str) -> Endpoint:
        if not isinstance(eid, str) or not eid:
            raise InvalidIDError(eid, "an endpoint id cannot be empty")
        row = self._ctrl.store.read().execute(
            "SELECT name FROM endpoints WHERE network_id=? AND id=?", (self.id, eid)).fetchone()
        if row is None:
            raise NoSuchEndpointError(eid)
        return self._handle(eid, row[0])

    # -- delete ---------------------------------------------------------------------
    def delete(self) -> None:
        self._ctrl._delete_network(self)


def _endpoint_options(options) -> dict:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise BadRequestError("endpoint options must be a dict")
    opts = dict(options)
    if netlabel.PORT_MAP in opts:
        pm = opts[netlabel.PORT_MAP]
        if not isinstance(pm, (list, tuple)) or not all(isinstance(b, PortBinding) for b in pm):
            raise BadRequestError(f"{netlabel.PORT_MAP} must be a list of PortBinding")
        opts[netlabel.PORT_MAP] = list(pm)
    if netlabel.EXPOSED_PORTS in opts:
        ex = opts[netlabel.EXPOSED_PORTS]
        if not isinstance(ex, (list, tuple)) or \
                not all(isinstance(p, TransportPort) for p in ex):
            raise BadRequestError(f"{netlabel.EXPOSED_PORTS} must be a list of TransportPort")
        opts[netlabel.EXPOSED_PORTS] = list(ex)
    if netlabel.MAC_ADDRESS in opts:
        validate.mac(opts[netlabel.MAC_ADDRESS])
    return opts


def _static_interface(ipv4, ipv6, mac) -> Interface | None:
    """The interface a user asked for with static addresses (None: the driver chooses)."""
    if ipv4 is None and ipv6 is None:
        return None         # a MAC alone travels in the options (netlabel.MAC_ADDRESS)
    v4 = _addr(ipv4, 4) if ipv4 is not None else None
    v6 = _addr(ipv6, 6) if ipv6 is not None else None
    return Interface(1, (mac or "").lower(), v4, v6, prefix_open=True)


def _addr(value, version):
    """An address the user gave. Without a prefix it is a host prefix (/32, /128) that the
    driver owning the subnet completes."""
    try:
        if isinstance(value, (ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
            iface = value
        elif isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            iface = ipaddress.ip_interface(value)
        elif isinstance(value, str) and value:
            iface = ipaddress.ip_interface(value)
        else:
            raise ValueError(value)
    except ValueError:
        raise BadRequestError(f"invalid IPv{version} address {value!r}") from None
    if iface.version != version:
        raise BadRequestError(f"{value} is not an IPv{version} address")
    return iface
