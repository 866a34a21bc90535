"""JSON encoding of the values pynetlib keeps in its store: options, interfaces, bindings.

Plain JSON values pass through; addresses, networks, port bindings and transport ports
become tagged objects that decode back to the same types.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pynetlib.store import CorruptStoreError
from pynetlib.types import PortBinding, TransportPort

_IP_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address)
_IFACE_TYPES = (ipaddress.IPv4Interface, ipaddress.IPv6Interface)
_NET_TYPES = (ipaddress.IPv4Network, ipaddress.IPv6Network)


def encode(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, PortBinding):
        return {"$pb": [v.proto, v.port, v.host_port,
                        str(v.host_ip) if v.host_ip else None, str(v.ip) if v.ip else None]}
    if isinstance(v, TransportPort):
        return {"$tp": [v.proto, v.port]}
    if isinstance(v, _IFACE_TYPES):
        return {"$if": str(v)}
    if isinstance(v, _NET_TYPES):
        return {"$net": str(v)}
    if isinstance(v, _IP_TYPES):
        return {"$ip": str(v)}
    if isinstance(v, (list, tuple)):
        return [encode(x) for x in v]
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if not isinstance(k, str) or k.startswith("$"):
                raise TypeError(f"option keys must be strings not starting with '$': {k!r}")
            out[k] = encode(x)
        return out
    raise TypeError(f"cannot store a value of type {type(v).__name__}")


def decode(v: Any) -> Any:
    try:
        if isinstance(v, list):
            return [decode(x) for x in v]
        if isinstance(v, dict):
            if len(v) == 1:
                (k, x), = v.items()
                if k == "$pb":
                    return PortBinding(x[0], x[1], x[2], x[3], x[4])
                if k == "$tp":
                    return TransportPort(x[0], x[1])
                if k == "$if":
                    return ipaddress.ip_interface(x)
                if k == "$net":
                    return ipaddress.ip_network(x)
                if k == "$ip":
                    return ipaddress.ip_address(x)
            return {k: decode(x) for k, x in v.items()}
        return v
    except (ValueError, TypeError, IndexError) as e:
        raise CorruptStoreError(f"a stored value does not decode: {e}") from None
