"""The driver API of libnetwork's "Driver api refactor".

Drivers see ids, never names. The controller hands every driver (built-in or registered
with ``Controller.register_driver``) the same callback objects, and enforces their
contract itself rather than trusting each driver:

- ``create_endpoint`` receives an :class:`EndpointInfo`. A non-empty ``interfaces()``
  list means the addresses were assigned elsewhere (a user's static address, or another
  host's allocation): the driver uses them or raises, and ``add_interface`` raises. An
  empty list means the driver allocates and reports 0..n interfaces.
- ``join`` receives a :class:`JoinInfo`: the driver names, per interface, the device to
  plumb (``set_names(src, dst)``), and sets gateways and file paths.
- ``leave`` keeps the endpoint's addresses; only ``delete_endpoint`` releases them.
"""

from __future__ import annotations

import abc
import ipaddress
from typing import Protocol, runtime_checkable

IPv4Interface = ipaddress.IPv4Interface
IPv6Interface = ipaddress.IPv6Interface
IPv4Address = ipaddress.IPv4Address
IPv6Address = ipaddress.IPv6Address


@runtime_checkable
class InterfaceInfo(Protocol):
    def mac_address(self) -> str: ...
    def address(self) -> IPv4Interface | None: ...
    def address_ipv6(self) -> IPv6Interface | None: ...
    def id(self) -> int: ...


@runtime_checkable
class EndpointInfo(Protocol):
    def interfaces(self) -> list[InterfaceInfo]: ...
    def add_interface(self, id: int, mac: str, ipv4: IPv4Interface | None,
                      ipv6: IPv6Interface | None) -> None: ...


@runtime_checkable
class InterfaceNameInfo(Protocol):
    def set_names(self, src_name: str, dst_name: str) -> None: ...
    def id(self) -> int: ...


@runtime_checkable
class JoinInfo(Protocol):
    def interface_names(self) -> list[InterfaceNameInfo]: ...
    def set_gateway(self, ip: IPv4Address) -> None: ...
    def set_gateway_ipv6(self, ip: IPv6Address) -> None: ...
    def set_hosts_path(self, path: str) -> None: ...
    def set_resolv_conf_path(self, path: str) -> None: ...


class Driver(abc.ABC):
    """A network driver. ``type`` is the network type it manages."""

    type: str = ""

    @abc.abstractmethod
    def config(self, options: dict) -> None: ...

    @abc.abstractmethod
    def create_network(self, nid: str, options: dict) -> None: ...

    @abc.abstractmethod
    def delete_network(self, nid: str) -> None: ...

    @abc.abstractmethod
    def create_endpoint(self, nid: str, eid: str, ep_info: EndpointInfo,
                        options: dict) -> None: ...

    @abc.abstractmethod
    def delete_endpoint(self, nid: str, eid: str) -> None: ...

    @abc.abstractmethod
    def endpoint_oper_info(self, nid: str, eid: str) -> dict: ...

    @abc.abstractmethod
    def join(self, nid: str, eid: str, sbox_key: str, jinfo: JoinInfo,
             options: dict) -> None: ...

    @abc.abstractmethod
    def leave(self, nid: str, eid: str) -> None: ...


__all__ = ["Driver", "EndpointInfo", "InterfaceInfo", "InterfaceNameInfo", "JoinInfo"]
