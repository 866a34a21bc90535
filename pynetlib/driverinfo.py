"""The controller's side of the driver API: the callback objects it hands to drivers.

They enforce the contract of ``create_endpoint`` and ``join`` themselves, so a
third-party driver gets exactly the same checks as the built-in ones.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass

from pynetlib.errors import BadRequestError, ForbiddenError
from pynetlib.kernel import validate

IPv4Interface = ipaddress.IPv4Interface
IPv6Interface = ipaddress.IPv6Interface


class Interface:
    """One interface of an endpoint (driver view: methods, as the driver API says)."""

    __slots__ = ("_id", "_mac", "_v4", "_v6", "_prefix_open")

    def __init__(self, id: int, mac: str, ipv4: IPv4Interface | None,
                 ipv6: IPv6Interface | None, *, prefix_open: bool = False) -> None:
        self._id = id
        self._mac = mac
        self._v4 = ipv4
        self._v6 = ipv6
        self._prefix_open = prefix_open

    def mac_address(self) -> str:
        return self._mac

    def address(self) -> IPv4Interface | None:
        return self._v4

    def address_ipv6(self) -> IPv6Interface | None:
        return self._v6

    def id(self) -> int:
        return self._id

    # pynetlib extension. A user's static request may leave gaps: an address without
    # its prefix, no MAC, or one IP version only. The driver that owns the subnets fills
    # the gaps once; it can never change an address or MAC that was given.
    def is_open(self) -> bool:
        return self._prefix_open

    def complete(self, *, v4_prefixlen: int | None = None, v6_prefixlen: int | None = None,
                 mac: str | None = None, ipv6: IPv6Interface | None = None) -> None:
        if not self._prefix_open:
            raise ForbiddenError("the interface's addresses are final")
        if mac is not None:
            if self._mac:
                raise ForbiddenError("the interface's MAC address was assigned already")
            validate.mac(mac)
            self._mac = mac.lower()
        if ipv6 is not None:
            if self._v6 is not None:
                raise ForbiddenError("the interface's IPv6 address was assigned already")
            if not isinstance(ipv6, IPv6Interface):
                raise BadRequestError(f"invalid IPv6 interface address {ipv6!r}")
            self._v6 = ipv6
        elif self._v6 is not None and v6_prefixlen is not None and self._v6.network.prefixlen == 128:
            self._v6 = ipaddress.ip_interface(f"{self._v6.ip}/{v6_prefixlen}")
        if self._v4 is not None and v4_prefixlen is not None and self._v4.network.prefixlen == 32:
            self._v4 = ipaddress.ip_interface(f"{self._v4.ip}/{v4_prefixlen}")
        self._prefix_open = False

    def __repr__(self) -> str:
        return f"<Interface {self._id} mac={self._mac} v4={self._v4} v6={self._v6}>"


def _check_iface_args(id, mac, ipv4, ipv6):
    if isinstance(id, bool) or not isinstance(id, int) or id < 0:
        raise BadRequestError(f"invalid interface id {id!r}")
    if mac:
        validate.mac(mac)
    if ipv4 is not None and not isinstance(ipv4, IPv4Interface):
        raise BadRequestError(f"invalid IPv4 interface address {ipv4!r}")
    if ipv6 is not None and not isinstance(ipv6, IPv6Interface):
        raise BadRequestError(f"invalid IPv6 interface address {ipv6!r}")


class EndpointInfo:
    """Handed to ``Driver.create_endpoint``.

    Non-empty at the call: the addresses were assigned elsewhere; ``add_interface``
    raises. Empty: the driver allocates and reports interfaces with ``add_interface``.
    """

    def __init__(self, assigned: list[Interface] | None = None) -> None:
        self._ifaces: list[Interface] = list(assigned or [])
        self._assigned = bool(self._ifaces)
        self._lock = threading.Lock()

    def interfaces(self) -> list[Interface]:
        with self._lock:
            return list(self._ifaces)

    def add_interface(self, id: int, mac: str, ipv4: IPv4Interface | None,
                      ipv6: IPv6Interface | None) -> None:
        _check_iface_args(id, mac, ipv4, ipv6)
        with self._lock:
            if self._assigned:
                raise ForbiddenError("the endpoint's addresses were assigned already: a "
                                     "driver must use them, never allocate over them")
            if any(i.id() == id for i in self._ifaces):
                raise ForbiddenError(f"interface id {id} is already in the endpoint")
            self._ifaces.append(Interface(id, mac, ipv4, ipv6))

    @property
    def assigned(self) -> bool:
        return self._assigned


class InterfaceNameInfo:
    """Per interface at join: which host device to move in, and its name inside."""

    __slots__ = ("_id", "src_name", "dst_name", "plumbed")

    def __init__(self, id: int) -> None:
        self._id = id
        self.src_name: str | None = None
        self.dst_name: str | None = None
        self.plumbed = False

    def set_names(self, src_name: str, dst_name: str) -> None:
        validate.ifname(src_name)
        validate.ifname(dst_name)
        if self.src_name is not None or self.plumbed:
            raise ForbiddenError(f"names of interface {self._id} are already set")
        self.src_name, self.dst_name = src_name, dst_name

    def id(self) -> int:
        return self._id


@dataclass
class PlumbTarget:
    """pynetlib extension for drivers that plumb straight into the sandbox (the fast
    path): the sandbox's namespace (with its cached netlink socket), the name the
    interface gets inside, and whether the driver should install the IPv4 and the IPv6
    default route (False when another endpoint of the sandbox provides it), and whether
    to bring the sandbox's ``lo`` up in the same pipeline (a new sandbox)."""

    netns: object
    ifname: str
    route4: bool
    route6: bool
    lo_up: bool = False


class JoinInfo:
    """Handed to ``Driver.join``."""

    def __init__(self, interfaces: list[Interface], target: PlumbTarget | None) -> None:
        self._names = [InterfaceNameInfo(i.id()) for i in interfaces]
        self._target = target
        self.gateway: ipaddress.IPv4Address | None = None
        self.gateway_ipv6: ipaddress.IPv6Address | None = None
        self.hosts_path: str | None = None
        self.resolv_conf_path: str | None = None

    def interface_names(self) -> list[InterfaceNameInfo]:
        return list(self._names)

    def set_gateway(self, ip: ipaddress.IPv4Address) -> None:
        ip = validate.address(ip)
        if ip.version != 4:
            raise BadRequestError(f"IPv4 gateway {ip} is not IPv4")
        self.gateway = ip

    def set_gateway_ipv6(self, ip: ipaddress.IPv6Address) -> None:
        ip = validate.address(ip)
        if ip.version != 6:
            raise BadRequestError(f"IPv6 gateway {ip} is not IPv6")
        self.gateway_ipv6 = ip

    def set_hosts_path(self, path: str) -> None:
        self.hosts_path = _check_path(path)

    def set_resolv_conf_path(self, path: str) -> None:
        self.resolv_conf_path = _check_path(path)

    # -- pynetlib extension ---------------------------------------------------------
    def plumb_target(self) -> PlumbTarget | None:
        """Where to plumb directly (None: the driver must use ``set_names``)."""
        return self._target

    def plumbed(self, iface_id: int, dst_name: str) -> None:
        """The driver created interface ``iface_id`` inside the sandbox as ``dst_name``,
        with its addresses (and the default routes if the target asked for them)."""
        for n in self._names:
            if n.id() == iface_id:
                if n.src_name is not None or n.plumbed:
                    raise ForbiddenError(f"interface {iface_id} is already placed")
                n.plumbed, n.dst_name = True, validate.ifname(dst_name).decode()
                return
        raise BadRequestError(f"no interface {iface_id} in the endpoint")


def _check_path(path: object) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise BadRequestError(f"invalid path {path!r}: an absolute path")
    return path
