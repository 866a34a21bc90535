"""Endpoints: a network's attachment point, with addresses that outlive containers.

``create_endpoint`` reserves the addresses and the MAC; ``join`` plumbs the endpoint
into a container's sandbox; ``leave`` unplugs it and keeps the addresses; ``delete``
releases them. An :class:`Endpoint` is a handle: its record (state, addresses, the
container joined) lives in the store, so every process sees the same endpoint.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field

from pynetlib import codec
from pynetlib.driverinfo import Interface
from pynetlib.errors import NoSuchEndpointError
from pynetlib.store import dumps, loads


@dataclass(frozen=True)
class InterfaceInfo:
    """An endpoint interface, as users see it."""

    id: int
    mac_address: str
    address: ipaddress.IPv4Interface | None
    address_ipv6: ipaddress.IPv6Interface | None


@dataclass(frozen=True)
class EndpointInfo:
    """What an endpoint is, as users see it: a snapshot."""

    interfaces: list[InterfaceInfo] = field(default_factory=list)
    gateway: ipaddress.IPv4Address | None = None
    gateway_ipv6: ipaddress.IPv6Address | None = None
    sandbox_key: str | None = None


@dataclass(frozen=True)
class ContainerData:
    sandbox_key: str
    #: with ``join(move_interfaces=False)``: the (host device, name wanted inside)
    #: pairs the driver left in the host namespace for the caller to move
    host_interfaces: tuple[tuple[str, str], ...] = ()


def interfaces_to_json(ifaces) -> str:
    return dumps([{"id": i.id(), "mac": i.mac_address(),
                   "v4": str(i.address()) if i.address() is not None else None,
                   "v6": str(i.address_ipv6()) if i.address_ipv6() is not None else None}
                  for i in ifaces])


def interfaces_from_json(text: str) -> list[Interface]:
    out = []
    for d in loads(text, "endpoint interfaces") or []:
        try:
            out.append(Interface(int(d["id"]), d["mac"] or "",
                                 ipaddress.ip_interface(d["v4"]) if d["v4"] else None,
                                 ipaddress.ip_interface(d["v6"]) if d["v6"] else None))
        except (KeyError, ValueError, TypeError) as e:
            from pynetlib.store import CorruptStoreError

            raise CorruptStoreError(f"endpoint interfaces do not decode: {e}") from None
    return out


class Endpoint:
    """A handle on an endpoint record."""

    def __init__(self, network, name: str, eid: str) -> None:
        self._net = network
        self.name = name
        self.id = eid
        self._lock = threading.Lock()        # serialises this process's join/leave/delete
        self._ifaces: list[Interface] | None = None  # never change after creation

    def __repr__(self) -> str:
        return f"<Endpoint {self.name} {self.id[:12]} network={self._net.name}>"

    def __eq__(self, other) -> bool:
        return isinstance(other, Endpoint) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def network(self) -> str:
        """The network's name."""
        return self._net.name

    def _row(self):
        row = self._net._ctrl.store.read().execute(
            "SELECT interfaces, state, container_id, join_info, options FROM endpoints "
            "WHERE id=?", (self.id,)).fetchone()
        if row is None:
            raise NoSuchEndpointError(self.id)
        return row

    # -- views ----------------------------------------------------------------------
    def info(self) -> EndpointInfo:
        ifaces_json, state, cid, join_json, _ = self._row()
        ifaces = [InterfaceInfo(i.id(), i.mac_address(), i.address(), i.address_ipv6())
                  for i in interfaces_from_json(ifaces_json)]
        if state != "attached" or not join_json:
            return EndpointInfo(ifaces)
        j = loads(join_json, "join info")
        gw = ipaddress.ip_address(j["gateway"]) if j.get("gateway") else None
        gw6 = ipaddress.ip_address(j["gateway6"]) if j.get("gateway6") else None
        return EndpointInfo(ifaces, gw, gw6, j.get("sandbox_key"))

    def driver_info(self) -> dict:
        self._row()
        return self._net._driver.endpoint_oper_info(self._net.id, self.id)

    def _interfaces(self) -> list[Interface]:
        if self._ifaces is None:
            self._ifaces = interfaces_from_json(self._row()[0])
        return list(self._ifaces)

    def _options(self) -> dict:
        return codec.decode(loads(self._row()[4], "endpoint options") or {})

    @property
    def joined_container(self) -> str | None:
        """The container joined to this endpoint, or None."""
        try:
            _, state, cid, _, _ = self._row()
        except NoSuchEndpointError:
            return None
        return cid if state in ("attaching", "attached", "detaching") else None

    # -- lifecycle (the controller does the work) -------------------------------------
    def join(self, container_id: str, *, hostname: str | None = None,
             domainname: str | None = None, hosts_path: str | None = None,
             resolv_conf_path: str | None = None, extra_hosts=(), dns=(), dns_search=(),
             parent_updates=(), use_default_sandbox: bool = False,
             netns_path: str | None = None, generic: dict | None = None,
             move_interfaces: bool = True) -> ContainerData:
        """Plumb this endpoint into the container's sandbox (created on its first join).

        ``move_interfaces=False`` (Docker's plugin model): the driver's devices stay in
        the host namespace, down and unaddressed, and ``host_interfaces`` of the result
        names them; the caller moves them into the sandbox and configures them. A
        driver that only plumbs straight into the sandbox cannot be joined this way."""
        from pynetlib.attachment import join

        return join(self, container_id, hostname=hostname, domainname=domainname,
                    hosts_path=hosts_path, resolv_conf_path=resolv_conf_path,
                    extra_hosts=extra_hosts, dns=dns, dns_search=dns_search,
                    parent_updates=parent_updates, use_default_sandbox=use_default_sandbox,
                    netns_path=netns_path, generic=generic, move_interfaces=move_interfaces)

    def leave(self, container_id: str) -> None:
        """Unplug from the container; the addresses and MAC stay reserved."""
        from pynetlib.attachment import leave

        leave(self, container_id)

    def delete(self) -> None:
        """Delete the endpoint and release its addresses (it must not be joined)."""
        self._net._delete_endpoint(self)
