"""pynetlib values as the plugin protocol's JSON carries them.

Options are free-form maps; values pynetlib has types for go out the way libnetwork
marshals them: a ``PortBinding`` as ``{"Proto", "IP", "Port", "HostIP", "HostPort",
"HostPortEnd"}`` with the protocol's number, a ``TransportPort`` as ``{"Proto", "Port"}``,
addresses and networks as strings.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Any

from pynetlib.errors import BadRequestError
from pynetlib.types import PROTOCOLS, PortBinding, TransportPort

_TEXT_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Interface,
               ipaddress.IPv6Interface, ipaddress.IPv4Network, ipaddress.IPv6Network)
MAX_DEPTH = 32


def to_wire(value: Any, where: str = "options", depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise BadRequestError(f"{where}: nested too deeply to send to a plugin")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadRequestError(f"{where}: {value} cannot be sent to a plugin")
        return value
    if isinstance(value, PortBinding):
        return {"Proto": PROTOCOLS[value.proto], "IP": str(value.ip or ""), "Port": value.port,
                "HostIP": str(value.host_ip or ""), "HostPort": value.host_port,
                "HostPortEnd": value.host_port}
    if isinstance(value, TransportPort):
        return {"Proto": PROTOCOLS[value.proto], "Port": value.port}
    if isinstance(value, _TEXT_TYPES):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [to_wire(v, where, depth + 1) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise BadRequestError(f"{where}: keys must be strings, got {k!r}")
            out[k] = to_wire(v, f"{where}[{k!r}]", depth + 1)
        return out
    raise BadRequestError(f"{where}: a {type(value).__name__} cannot be sent to a plugin")
