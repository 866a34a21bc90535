"""Networks: a name, an id, one driver, and the endpoints created on it."""

from __future__ import annotations

import ipaddress
import secrets
import threading
from typing import Callable

from pynetlib import netlabel
from pynetlib.driverinfo import EndpointInfo as _DriverEndpointInfo
from pynetlib.driverinfo import Interface
from pynetlib.endpoint import Endpoint
from pynetlib.errors import (BadRequestError, EndpointNameError, InvalidIDError,
                             InvalidNameError, NoSuchEndpointError)
from pynetlib.kernel import validate
from pynetlib.names import check_name
from pynetlib.types import PortBinding, TransportPort


def new_id() -> str:
    """64 lowercase hex characters (32 random bytes), like libnetwork's ids."""
    return secrets.token_hex(32)


class Network:
    def __init__(self, ctrl, name: str, nid: str, ntype: str, driver, options: dict) -> None:
        self._ctrl = ctrl
        self.name = name
        self.id = nid
        self.type = ntype
        self._driver = driver
        self._options = options
        self._lock = threading.Lock()
        self._endpoints: dict[str, Endpoint] = {}
        self._by_name: dict[str, Endpoint] = {}
        self._creating: set[str] = set()

    def __repr__(self) -> str:
        return f"<Network {self.name} {self.id[:12]} type={self.type}>"

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
        with self._lock:
            if self._ctrl._network_gone(self):
                raise BadRequestError(f"network {self.name} was deleted")
            if name in self._by_name or name in self._creating:
                raise EndpointNameError(name)
            self._creating.add(name)
        try:
            eid = new_id()
            info = _DriverEndpointInfo([assigned] if assigned else None)
            self._driver.create_endpoint(self.id, eid, info, opts)
            if assigned is not None and assigned.is_open():
                assigned.complete()      # nothing more will be filled in
            ep = Endpoint(self, name, eid, info, opts)
            with self._lock:
                self._endpoints[eid] = ep
                self._by_name[name] = ep
            return ep
        finally:
            with self._lock:
                self._creating.discard(name)

    def _delete_endpoint(self, ep: Endpoint) -> None:
        with self._lock:
            if self._endpoints.get(ep.id) is not ep:
                raise NoSuchEndpointError(ep.id)
        self._driver.delete_endpoint(self.id, ep.id)
        with self._lock:
            self._endpoints.pop(ep.id, None)
            self._by_name.pop(ep.name, None)

    def endpoints(self) -> list[Endpoint]:
        with self._lock:
            return list(self._endpoints.values())

    def walk_endpoints(self, fn: Callable[[Endpoint], bool]) -> None:
        for ep in self.endpoints():
            if fn(ep):
                return

    def endpoint_by_name(self, name: str) -> Endpoint:
        if not isinstance(name, str) or not name:
            raise InvalidNameError(name, "an endpoint name cannot be empty")
        with self._lock:
            ep = self._by_name.get(name)
        if ep is None:
            raise NoSuchEndpointError(name)
        return ep

    def endpoint_by_id(self, eid: str) -> Endpoint:
        if not isinstance(eid, str) or not eid:
            raise InvalidIDError(eid, "an endpoint id cannot be empty")
        with self._lock:
            ep = self._endpoints.get(eid)
        if ep is None:
            raise NoSuchEndpointError(eid)
        return ep

    def has_endpoints(self) -> bool:
        with self._lock:
            return bool(self._endpoints) or bool(self._creating)

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
