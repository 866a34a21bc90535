"""The bridge driver's configuration: driver level and network level, validated the way
libnetwork validates them (unknown field, wrong type, subnet and gateway rules)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields

from pynetlib import netlabel
from pynetlib.errors import BadRequestError
from pynetlib.kernel import validate

IPv4Network = ipaddress.IPv4Network
IPv6Network = ipaddress.IPv6Network


class InvalidConfigError(BadRequestError):
    """A bridge option that is unknown, of the wrong type, or inconsistent."""


@dataclass
class DriverConfig:
    EnableIPForwarding: bool = False
    EnableIPTables: bool = True


@dataclass
class NetworkConfig:
    BridgeName: str | None = None
    AddressIPv4: ipaddress.IPv4Interface | None = None
    FixedCIDR: IPv4Network | None = None
    FixedCIDRv6: IPv6Network | None = None
    EnableIPv6: bool = False
    EnableIPTables: bool = True
    EnableIPMasquerade: bool = True
    EnableICC: bool = True
    Mtu: int = 0
    DefaultGatewayIPv4: ipaddress.IPv4Address | None = None
    DefaultGatewayIPv6: ipaddress.IPv6Address | None = None
    DefaultBindingIP: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    AllowNonDefaultBridge: bool = True
    Internal: bool = False


def _bool(name, v):
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise InvalidConfigError(f"bridge option {name}: expected a bool, got {v!r}")


def _iface4(name, v):
    i = v if isinstance(v, ipaddress.IPv4Interface) else None
    if isinstance(v, str) and "/" in v:
        try:
            i = ipaddress.ip_interface(v)
        except ValueError:
            i = None
    if i is not None and i.version == 4:
        if i.network.prefixlen > 30:
            raise InvalidConfigError(f"bridge option {name}: {v} leaves no room for "
                                     "containers (at most /30)")
        return i
    raise InvalidConfigError(f"bridge option {name}: expected an IPv4 address with its "
                             f"prefix like 10.1.0.1/16, got {v!r}")


def _net(name, v, version):
    cls = IPv4Network if version == 4 else IPv6Network
    if isinstance(v, cls):
        return v
    if isinstance(v, str):
        try:
            n = ipaddress.ip_network(v, strict=True)
            if n.version == version:
                return n
        except ValueError as e:
            raise InvalidConfigError(f"bridge option {name}: {e}") from None
    raise InvalidConfigError(f"bridge option {name}: expected an IPv{version} network, "
                             f"got {v!r}")


def _ip(name, v, version=None):
    try:
        a = v if isinstance(v, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else \
            ipaddress.ip_address(v) if isinstance(v, str) else None
    except ValueError:
        a = None
    if a is None or (version and a.version != version):
        raise InvalidConfigError(f"bridge option {name}: expected an IPv{version or ''} "
                                 f"address, got {v!r}")
    return a


def _mtu(name, v):
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidConfigError(f"bridge option {name}: expected an int, got {v!r}")
    if v < 0:
        raise InvalidConfigError(f"invalid MTU number {v}")
    if v:
        try:
            validate.mtu(v)
        except BadRequestError as e:
            raise InvalidConfigError(str(e)) from None
    return v


def _bridge_name(name, v):
    if not isinstance(v, str):
        raise InvalidConfigError(f"bridge option {name}: expected a str, got {v!r}")
    validate.ifname(v)
    return v


_PARSERS = {
    "BridgeName": _bridge_name,
    "AddressIPv4": _iface4,
    "FixedCIDR": lambda n, v: _net(n, v, 4),
    "FixedCIDRv6": lambda n, v: _net(n, v, 6),
    "Mtu": _mtu,
    "DefaultGatewayIPv4": lambda n, v: _ip(n, v, 4),
    "DefaultGatewayIPv6": lambda n, v: _ip(n, v, 6),
    "DefaultBindingIP": lambda n, v: _ip(n, v),
}


def parse_driver_config(options: dict) -> DriverConfig:
    cfg = DriverConfig()
    for k, v in options.items():
        if k not in {f.name for f in fields(DriverConfig)}:
            raise InvalidConfigError(f"unknown bridge driver option {k!r}")
        setattr(cfg, k, _bool(k, v))
    return cfg


def parse_network_config(options: dict) -> NetworkConfig:
    """From the network's options: ``netlabel.GENERIC_DATA`` holds the bridge's dict; a
    top-level ``netlabel.ENABLE_IPV6`` overrides its EnableIPv6."""
    generic = options.get(netlabel.GENERIC_DATA, {})
    if isinstance(generic, NetworkConfig):
        cfg = generic
    elif isinstance(generic, dict):
        cfg = NetworkConfig()
        known = {f.name for f in fields(NetworkConfig)}
        for k, v in generic.items():
            if k not in known:
                raise InvalidConfigError(f"unknown bridge network option {k!r}")
            if v is None:
                continue
            setattr(cfg, k, _PARSERS.get(k, _bool)(k, v))
    else:
        raise InvalidConfigError(f"{netlabel.GENERIC_DATA} must be a dict of bridge options")
    if netlabel.ENABLE_IPV6 in options:
        cfg.EnableIPv6 = _bool(netlabel.ENABLE_IPV6, options[netlabel.ENABLE_IPV6])
    if netlabel.INTERNAL in options:
        cfg.Internal = _bool(netlabel.INTERNAL, options[netlabel.INTERNAL])
    if netlabel.DRIVER_MTU in options:
        cfg.Mtu = _mtu(netlabel.DRIVER_MTU, options[netlabel.DRIVER_MTU])
    validate_network_config(cfg)
    return cfg


def validate_network_config(cfg: NetworkConfig) -> None:
    """libnetwork's NetworkConfiguration.Validate, plus the IPv6 checks it implies."""
    if cfg.AddressIPv4 is not None:
        subnet = cfg.AddressIPv4.network
        if cfg.AddressIPv4.ip in (subnet.network_address, subnet.broadcast_address) and \
                subnet.prefixlen < 31:
            raise InvalidConfigError(f"AddressIPv4 {cfg.AddressIPv4} is the network or "
                                     "broadcast address of its subnet")
        if cfg.FixedCIDR is not None and not cfg.FixedCIDR.subnet_of(subnet):
            raise InvalidConfigError(f"FixedCIDR {cfg.FixedCIDR} is not inside the bridge "
                                     f"subnet {subnet}")
        if cfg.DefaultGatewayIPv4 is not None and cfg.DefaultGatewayIPv4 not in subnet:
            raise InvalidConfigError(f"DefaultGatewayIPv4 {cfg.DefaultGatewayIPv4} is not "
                                     f"inside the bridge subnet {subnet}")
    elif cfg.FixedCIDR is not None or cfg.DefaultGatewayIPv4 is not None:
        raise InvalidConfigError("FixedCIDR and DefaultGatewayIPv4 need AddressIPv4")
    if (cfg.FixedCIDRv6 is not None or cfg.DefaultGatewayIPv6 is not None) and \
            not cfg.EnableIPv6:
        raise InvalidConfigError("FixedCIDRv6 and DefaultGatewayIPv6 need EnableIPv6")
    if cfg.EnableIPv6:
        if cfg.DefaultGatewayIPv6 is not None and (
                cfg.FixedCIDRv6 is None or cfg.DefaultGatewayIPv6 not in cfg.FixedCIDRv6):
            raise InvalidConfigError(f"DefaultGatewayIPv6 {cfg.DefaultGatewayIPv6} needs a "
                                     "FixedCIDRv6 that contains it")
        if cfg.FixedCIDRv6 is not None and cfg.FixedCIDRv6.prefixlen > 120:
            raise InvalidConfigError(f"FixedCIDRv6 {cfg.FixedCIDRv6} is too small")
