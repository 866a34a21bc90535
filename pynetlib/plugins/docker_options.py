"""Docker's option maps and value types, turned into pynetlib's (and back).

* A network's ``IPv4Data``/``IPv6Data`` (libnetwork's ``IPAMData``: ``AddressSpace``,
  ``Pool``, ``Gateway``, ``AuxAddresses``, CIDR strings) and its ``Options`` become the
  options of a pynetlib bridge network (``netlabel.GENERIC_DATA``).
* ``docker network create -o key=value`` arrives as strings in
  ``Options["com.docker.network.generic"]``; Docker's bridge option names and the
  pynetlib bridge's own (non-addressing) option names are understood, anything else is
  refused.
* Port bindings and exposed ports use Docker's ``types.PortBinding`` /
  ``types.TransportPort`` JSON: ``{"Proto": 6, "IP": "", "Port": 80, "HostIP": "",
  "HostPort": 8080, "HostPortEnd": 8080}`` and ``{"Proto": 6, "Port": 80}``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pynetlib import netlabel
from pynetlib.errors import BadRequestError
from pynetlib.plugins.wire import Field, parse_fields
from pynetlib.types import PROTOCOLS, PortBinding, TransportPort

IPAM_DATA = {"AddressSpace": Field("str"), "Pool": Field("str", required=True),
             "Gateway": Field("str"), "AuxAddresses": Field("strmap", nullable=True)}

#: ``-o`` names of Docker's bridge driver -> pynetlib bridge option names
DOCKER_BRIDGE_OPTIONS = {
    "com.docker.network.bridge.name": "BridgeName",
    "com.docker.network.bridge.enable_icc": "EnableICC",
    "com.docker.network.bridge.enable_ip_masquerade": "EnableIPMasquerade",
    "com.docker.network.bridge.host_binding_ipv4": "DefaultBindingIP",
    "com.docker.network.driver.mtu": "Mtu",
}
#: pynetlib bridge options a Docker user may set directly (addressing comes from IPAM)
PYNETLIB_BRIDGE_OPTIONS = {"BridgeName", "EnableICC", "EnableIPMasquerade",
                           "DefaultBindingIP", "Mtu", "EnableIPTables"}
_ADDRESSING = {"AddressIPv4", "FixedCIDR", "FixedCIDRv6", "DefaultGatewayIPv4",
               "DefaultGatewayIPv6", "EnableIPv6", "Internal"}


def _cidr(text: str, what: str, version: int) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        iface = None
    if iface is None or "/" not in text or iface.version != version:
        raise BadRequestError(f"{what} {text!r} is not an IPv{version} address in CIDR "
                              "form")
    return iface


def _pool(text: str, what: str, version: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        raise BadRequestError(f"{what} {text!r} is not a pool in CIDR form: {e}") from None
    if "/" not in text or net.version != version:
        raise BadRequestError(f"{what} {text!r} is not an IPv{version} pool in CIDR form")
    return net


def _ipam_entry(items: list | None, version: int) -> tuple[Any, Any] | None:
    """(pool, gateway interface or None) of a network's IPv4Data/IPv6Data."""
    what = f"IPv{version}Data"
    if not items:
        return None
    if len(items) > 1:
        raise BadRequestError(f"{what}: a pynetlib bridge network has one IPv{version} "
                              f"subnet, got {len(items)}")
    d = parse_fields(items[0], IPAM_DATA, what)
    pool = _pool(d["Pool"], f"{what} Pool", version)
    gw = None
    if d["Gateway"]:
        gw = _cidr(d["Gateway"], f"{what} Gateway", version)
        if gw.ip not in pool:
            raise BadRequestError(f"{what} Gateway {gw} is not inside the pool {pool}")
    for name, addr in (d["AuxAddresses"] or {}).items():
        a = _cidr(addr, f"{what} AuxAddresses[{name}]", version)
        if a.ip not in pool:
            raise BadRequestError(f"{what} AuxAddresses[{name}] {addr} is not inside the "
                                  f"pool {pool}")
    return pool, gw


def _generic_options(generic: Any) -> dict:
    if generic is None:
        return {}
    if not isinstance(generic, dict):
        raise BadRequestError(f"{netlabel.GENERIC_DATA} must be an object of driver "
                              "options")
    out: dict = {}
    for key, value in generic.items():
        name = DOCKER_BRIDGE_OPTIONS.get(key, key)
        if name in _ADDRESSING:
            raise BadRequestError(f"driver option {key!r}: addressing comes from the "
                                  "IPAM data (--subnet, --gateway, --ipv6)")
        if name not in PYNETLIB_BRIDGE_OPTIONS:
            raise BadRequestError(f"unknown driver option {key!r}; known: "
                                  f"{', '.join(sorted(DOCKER_BRIDGE_OPTIONS))}")
        if name == "Mtu" and isinstance(value, str):
            try:
                value = int(value, 10)
            except ValueError:
                raise BadRequestError(f"driver option {key!r}: MTU {value!r} is not an "
                                      "integer") from None
        out[name] = value
    return out


def bridge_network_options(options: dict | None, ipv4_data: list | None,
                           ipv6_data: list | None) -> dict:
    """The ``Controller.new_network("bridge", ...)`` options of a Docker CreateNetwork."""
    options = options or {}
    generic = _generic_options(options.get(netlabel.GENERIC_DATA))
    v4 = _ipam_entry(ipv4_data, 4)
    if v4 is None:
        raise BadRequestError("IPv4Data is empty: a pynetlib bridge network needs the "
                              "IPv4 pool the IPAM driver assigned")
    pool, gw = v4
    if pool.prefixlen > 30:
        raise BadRequestError(f"IPv4 pool {pool} is too small for a gateway and a container")
    if gw is None:
        gw = ipaddress.ip_interface(f"{pool.network_address + 1}/{pool.prefixlen}")
    generic["AddressIPv4"] = f"{gw.ip}/{pool.prefixlen}"
    v6 = _ipam_entry(ipv6_data, 6)
    enable_v6 = options.get(netlabel.ENABLE_IPV6, False)
    if not isinstance(enable_v6, bool):
        raise BadRequestError(f"{netlabel.ENABLE_IPV6} must be a bool")
    if v6 is not None:
        pool6, gw6 = v6
        generic["FixedCIDRv6"] = str(pool6)
        if gw6 is not None:
            generic["DefaultGatewayIPv6"] = str(gw6.ip)
        enable_v6 = True
    if enable_v6:
        generic["EnableIPv6"] = True
    internal = options.get(netlabel.INTERNAL, False)
    if not isinstance(internal, bool):
        raise BadRequestError(f"{netlabel.INTERNAL} must be a bool")
    if internal:
        generic["Internal"] = True
    return {netlabel.GENERIC_DATA: generic}


# -- ports ---------------------------------------------------------------------------

_PORT_BINDING = {"Proto": Field("int", required=True), "IP": Field("str"),
                 "Port": Field("int", required=True), "HostIP": Field("str"),
                 "HostPort": Field("int"), "HostPortEnd": Field("int")}
_TRANSPORT_PORT = {"Proto": Field("int", required=True), "Port": Field("int", required=True)}


def _proto_name(number: int) -> str:
    for name, n in PROTOCOLS.items():
        if n == number:
            return name
    raise BadRequestError(f"unknown protocol number {number}")


def port_bindings(value: Any) -> list[PortBinding]:
    """Docker's ``com.docker.network.portmap`` list as pynetlib PortBindings."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequestError(f"{netlabel.PORT_MAP} must be a list of port bindings")
    out: list[PortBinding] = []
    for item in value:
        d = parse_fields(item, _PORT_BINDING, netlabel.PORT_MAP)
        host_port = d["HostPort"] or 0
        end = d["HostPortEnd"] or 0
        if end and end != host_port:
            raise BadRequestError(f"host port range {host_port}-{end}: pynetlib maps one "
                                  "host port per binding")
        b = PortBinding(_proto_name(d["Proto"]), d["Port"], host_port, d["HostIP"] or None)
        if b.host_ip is not None and b.host_ip.is_unspecified:
            # 0.0.0.0 and :: (Docker sends both for a dual-stack -p): every address
            b = PortBinding(b.proto, b.port, b.host_port)
        if b not in out:
            out.append(b)
    return out


def exposed_ports(value: Any) -> list[TransportPort]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequestError(f"{netlabel.EXPOSED_PORTS} must be a list of ports")
    return [TransportPort(_proto_name(d["Proto"]), d["Port"])
            for d in (parse_fields(i, _TRANSPORT_PORT, netlabel.EXPOSED_PORTS)
                      for i in value)]


def port_binding_json(b: PortBinding) -> dict:
    return {"Proto": PROTOCOLS[b.proto], "IP": str(b.ip) if b.ip else "", "Port": b.port,
            "HostIP": str(b.host_ip) if b.host_ip else "", "HostPort": b.host_port,
            "HostPortEnd": b.host_port}


def transport_port_json(p: TransportPort) -> dict:
    return {"Proto": PROTOCOLS[p.proto], "Port": p.port}
