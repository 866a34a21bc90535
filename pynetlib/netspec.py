"""A network's user-facing settings (subnet, gateway, IP range, IPv6, MTU, internal,
driver options), as the CLI and the HTTP API take them, turned into the options dict
that ``Controller.new_network`` and the driver expect.

Only the bridge driver has addressing settings; other drivers take their driver options
as they are and refuse the addressing fields rather than silently dropping them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from pynetlib import netlabel
from pynetlib.errors import BadRequestError


@dataclass
class NetworkSpec:
    driver: str = "bridge"
    subnet: str | None = None          # IPv4 CIDR, e.g. "10.20.0.0/16"
    gateway: str | None = None         # IPv4 address inside subnet; default: first host
    ip_range: str | None = None        # IPv4 CIDR inside subnet to allocate from
    ipv6: bool = False
    subnet_v6: str | None = None       # IPv6 CIDR; implies ipv6
    mtu: int | None = None
    internal: bool = False
    driver_opts: dict = field(default_factory=dict)


def _net4(text: str, what: str) -> ipaddress.IPv4Network:
    try:
        n = ipaddress.ip_network(text, strict=True)
    except (TypeError, ValueError) as e:
        raise BadRequestError(f"{what}: {e}") from None
    if n.version != 4:
        raise BadRequestError(f"{what}: expected an IPv4 network, got {text!r}")
    return n


def network_options(spec: NetworkSpec) -> dict:
    """The ``options`` for ``Controller.new_network(spec.driver, name, options)``."""
    if not isinstance(spec.driver_opts, dict) or not all(
            isinstance(k, str) for k in spec.driver_opts):
        raise BadRequestError("driver options must be a mapping of names to values")
    addressing = (spec.subnet, spec.gateway, spec.ip_range, spec.subnet_v6, spec.mtu)
    if spec.driver != "bridge":
        if any(v is not None for v in addressing) or spec.ipv6 or spec.internal:
            raise BadRequestError(
                f"the {spec.driver!r} driver takes no subnet, gateway, IP range, IPv6, MTU "
                "or internal setting; pass driver options instead")
        return {netlabel.GENERIC_DATA: dict(spec.driver_opts)} if spec.driver_opts else {}
    generic = dict(spec.driver_opts)
    if spec.gateway is not None and spec.subnet is None:
        raise BadRequestError("a gateway needs a subnet")
    if spec.ip_range is not None and spec.subnet is None:
        raise BadRequestError("an IP range needs a subnet")
    if spec.subnet is not None:
        net = _net4(spec.subnet, "subnet")
        if net.prefixlen > 30:
            raise BadRequestError(f"subnet {net} is too small for a gateway and a container")
        if spec.gateway is None:
            gw = net.network_address + 1
        else:
            try:
                gw = ipaddress.IPv4Address(spec.gateway)
            except (TypeError, ValueError) as e:
                raise BadRequestError(f"gateway: {e}") from None
            if gw not in net or gw in (net.network_address, net.broadcast_address):
                raise BadRequestError(f"gateway {gw} is not a host address of subnet {net}")
        generic["AddressIPv4"] = f"{gw}/{net.prefixlen}"
        if spec.ip_range is not None:
            rng = _net4(spec.ip_range, "IP range")
            if not rng.subnet_of(net):
                raise BadRequestError(f"IP range {rng} is not inside subnet {net}")
            generic["FixedCIDR"] = str(rng)
    if spec.subnet_v6 is not None:
        try:
            n6 = ipaddress.ip_network(spec.subnet_v6, strict=True)
        except (TypeError, ValueError) as e:
            raise BadRequestError(f"IPv6 subnet: {e}") from None
        if n6.version != 6:
            raise BadRequestError(f"IPv6 subnet: expected an IPv6 network, got {spec.subnet_v6!r}")
        generic["FixedCIDRv6"] = str(n6)
    if spec.ipv6 or spec.subnet_v6 is not None:
        generic["EnableIPv6"] = True
    if spec.mtu is not None:
        if isinstance(spec.mtu, bool) or not isinstance(spec.mtu, int) or not 68 <= spec.mtu <= 65535:
            raise BadRequestError(f"MTU must be an integer from 68 to 65535, got {spec.mtu!r}")
        generic["Mtu"] = spec.mtu
    if spec.internal:
        generic["Internal"] = True
    return {netlabel.GENERIC_DATA: generic} if generic else {}
