"""The shape and syntax of every plugin reply, checked before anything is used.

Each function takes the decoded JSON object of one reply (``Err`` already handled by the
client) and returns typed values, or raises :class:`PluginReplyError` naming the field.
Empty strings and ``null`` mean "not given", as Go plugins encode them. Unknown fields
are ignored (newer plugins may send more). Checks that need the endpoint's state (is the
gateway inside the endpoint's subnet, is the device the endpoint's own) live in the
driver and ``hostdevices``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from pynetlib.drivers.remote.errors import PluginReplyError
from pynetlib.errors import NetworkError
from pynetlib.kernel import validate

SCOPES = ("local", "global")
ROUTE_NEXTHOP, ROUTE_CONNECTED = 0, 1
# A prefix leaves room for the index pynetlib appends inside the sandbox (eth -> eth0).
_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,11}\Z")
MAX_STATIC_ROUTES = 256


class _Reply:
    """Field access on one reply, with errors that name the plugin, method and field."""

    def __init__(self, plugin: str, method: str, reply: dict) -> None:
        self.plugin, self.method, self.reply = plugin, method, reply

    def fail(self, detail: str) -> PluginReplyError:
        return PluginReplyError(self.plugin, self.method, detail)

    def get(self, obj: dict, key: str, kind: type, what: str = ""):
        """``obj[key]`` if it is a ``kind`` (str, list, dict or bool), None if absent
        or null; anything else is refused."""
        v = obj.get(key)
        if v is None:
            return None
        if not isinstance(v, kind):
            raise self.fail(f"{what or key} has the wrong type ({type(v).__name__}, "
                            f"expected {kind.__name__})")
        return v

    def text(self, obj: dict, key: str, what: str = "") -> str:
        return self.get(obj, key, str, what) or ""


# -- activation --------------------------------------------------------------------------

def activate(plugin: str, reply: dict) -> list[str]:
    r = _Reply(plugin, "Plugin.Activate", reply)
    impl = r.get(reply, "Implements", list) or []
    if not all(isinstance(x, str) for x in impl):
        raise r.fail("Implements must be a list of strings")
    return impl


@dataclass(frozen=True)
class Capabilities:
    scope: str
    connectivity_scope: str = ""


def capabilities(plugin: str, reply: dict) -> Capabilities:
    r = _Reply(plugin, "NetworkDriver.GetCapabilities", reply)
    scope = r.text(reply, "Scope")
    if scope not in SCOPES:
        raise r.fail(f"invalid Scope {scope!r}: expected 'local' or 'global'")
    conn = r.text(reply, "ConnectivityScope")
    if conn not in ("",) + SCOPES:
        raise r.fail(f"invalid ConnectivityScope {conn!r}: expected 'local' or 'global'")
    return Capabilities(scope, conn)


# -- endpoints ---------------------------------------------------------------------------

@dataclass(frozen=True)
class InterfaceReply:
    """What a plugin chose for an endpoint's interface (all None: nothing)."""

    address: ipaddress.IPv4Interface | None = None
    address_ipv6: ipaddress.IPv6Interface | None = None
    mac: str | None = None

    def empty(self) -> bool:
        return self.address is None and self.address_ipv6 is None and self.mac is None


def create_endpoint(plugin: str, reply: dict) -> InterfaceReply:
    r = _Reply(plugin, "NetworkDriver.CreateEndpoint", reply)
    iface = r.get(reply, "Interface", dict)
    if iface is None:
        return InterfaceReply()
    v4 = _host_address(r, r.text(iface, "Address", "Interface.Address"), 4, "Interface.Address")
    v6 = _host_address(r, r.text(iface, "AddressIPv6", "Interface.AddressIPv6"), 6,
                       "Interface.AddressIPv6")
    mac = r.text(iface, "MacAddress", "Interface.MacAddress") or None
    if mac is not None:
        try:
            validate.mac(mac)
        except NetworkError as e:
            raise r.fail(f"Interface.MacAddress: {e}") from None
        mac = mac.lower()
    return InterfaceReply(v4, v6, mac)


def _host_address(r: _Reply, text: str, version: int, what: str):
    """An address with its prefix that a container can use."""
    if not text:
        return None
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise r.fail(f"{what} {text!r} is not an address with a prefix (CIDR)") from None
    if "/" not in text:
        raise r.fail(f"{what} {text!r} has no prefix length")
    if iface.version != version:
        raise r.fail(f"{what} {text!r} is not an IPv{version} address")
    ip, net = iface.ip, iface.network
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast or \
            (version == 4 and ip == ipaddress.IPv4Address("255.255.255.255")):
        raise r.fail(f"{what} {text!r} cannot be a container's address")
    if version == 4 and net.prefixlen < 31 and ip in (net.network_address, net.broadcast_address):
        raise r.fail(f"{what} {text!r} is the network or broadcast address of its subnet")
    return iface


def oper_info(plugin: str, reply: dict) -> dict:
    r = _Reply(plugin, "NetworkDriver.EndpointOperInfo", reply)
    return dict(r.get(reply, "Value", dict) or {})


# -- join --------------------------------------------------------------------------------

@dataclass(frozen=True)
class StaticRoute:
    destination: ipaddress.IPv4Network | ipaddress.IPv6Network
    route_type: int
    next_hop: ipaddress.IPv4Address | ipaddress.IPv6Address | None


@dataclass(frozen=True)
class JoinReply:
    src_name: str | None = None
    dst_prefix: str | None = None
    gateway: ipaddress.IPv4Address | None = None
    gateway_ipv6: ipaddress.IPv6Address | None = None
    static_routes: list[StaticRoute] = field(default_factory=list)
    disable_gateway_service: bool = False


def join(plugin: str, reply: dict) -> JoinReply:
    r = _Reply(plugin, "NetworkDriver.Join", reply)
    src = prefix = None
    names = r.get(reply, "InterfaceName", dict)
    if names is not None:
        src = r.text(names, "SrcName", "InterfaceName.SrcName")
        prefix = r.text(names, "DstPrefix", "InterfaceName.DstPrefix")
        if r.text(names, "DstName", "InterfaceName.DstName"):
            raise r.fail("InterfaceName.DstName is not supported: give DstPrefix (pynetlib "
                         "appends the index inside the sandbox)")
        if not src:
            raise r.fail("InterfaceName without SrcName")
        try:
            validate.ifname(src)
        except NetworkError as e:
            raise r.fail(f"InterfaceName.SrcName: {e}") from None
        if not _PREFIX_RE.match(prefix):
            raise r.fail(f"InterfaceName.DstPrefix {prefix!r} is not a valid interface name "
                         "prefix: a letter, then up to 11 letters, digits, '_' or '-'")
    gw4 = _gateway(r, r.text(reply, "Gateway"), 4, "Gateway")
    gw6 = _gateway(r, r.text(reply, "GatewayIPv6"), 6, "GatewayIPv6")
    routes = [_route(r, i, x) for i, x in enumerate(r.get(reply, "StaticRoutes", list) or [])]
    if len(routes) > MAX_STATIC_ROUTES:
        raise r.fail(f"more than {MAX_STATIC_ROUTES} static routes")
    disable = r.get(reply, "DisableGatewayService", bool) or False
    return JoinReply(src or None, prefix or None, gw4, gw6, routes, disable)


def _gateway(r: _Reply, text: str, version: int, what: str):
    if not text:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise r.fail(f"{what} {text!r} is not an IP address") from None
    if ip.version != version:
        raise r.fail(f"{what} {text!r} is not an IPv{version} address")
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast:
        raise r.fail(f"{what} {text!r} cannot be a gateway")
    return ip


def _route(r: _Reply, i: int, item) -> StaticRoute:
    what = f"StaticRoutes[{i}]"
    if not isinstance(item, dict):
        raise r.fail(f"{what} is not an object")
    dest_text = r.text(item, "Destination", f"{what}.Destination")
    try:
        dest = ipaddress.ip_network(dest_text, strict=True)
    except ValueError:
        raise r.fail(f"{what}.Destination {dest_text!r} is not a network (CIDR)") from None
    rtype = item.get("RouteType", 0)
    if isinstance(rtype, bool) or rtype not in (ROUTE_NEXTHOP, ROUTE_CONNECTED):
        raise r.fail(f"{what}.RouteType {rtype!r}: 0 (next hop) or 1 (connected)")
    hop_text = r.text(item, "NextHop", f"{what}.NextHop")
    hop = None
    if rtype == ROUTE_NEXTHOP:
        if not hop_text:
            raise r.fail(f"{what}: RouteType 0 needs a NextHop")
        try:
            hop = ipaddress.ip_address(hop_text)
        except ValueError:
            raise r.fail(f"{what}.NextHop {hop_text!r} is not an IP address") from None
        if hop.version != dest.version:
            raise r.fail(f"{what}: NextHop and Destination differ in IP version")
    elif hop_text:
        raise r.fail(f"{what}: a connected route (RouteType 1) has no NextHop")
    return StaticRoute(dest, rtype, hop)


