"""Value types shared by the API and the drivers: transport ports and port bindings."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Union

from pynetlib.errors import BadRequestError

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "sctp": 132}
_BY_NUMBER = {v: k for k, v in PROTOCOLS.items()}


def parse_protocol(proto: object) -> str:
    """'tcp', 'udp', 'sctp' or 'icmp' from a name (any case) or its number."""
    if isinstance(proto, int) and not isinstance(proto, bool):
        if proto in _BY_NUMBER:
            return _BY_NUMBER[proto]
    elif isinstance(proto, str) and proto.lower() in PROTOCOLS:
        return proto.lower()
    raise BadRequestError(f"invalid protocol {proto!r}: one of tcp, udp, sctp, icmp")


def _port(value: object, what: str, allow_zero: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or \
            not (0 if allow_zero else 1) <= value <= 65535:
        raise BadRequestError(f"invalid {what} {value!r}: an integer from "
                              f"{0 if allow_zero else 1} to 65535")
    return value


def _ip(value: object, what: str) -> IPAddress | None:
    if value is None:
        return None
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return value
    if isinstance(value, str):
        try:
            return ipaddress.ip_address(value)
        except ValueError:
            pass
    raise BadRequestError(f"invalid {what} {value!r}: an IP address")


@dataclass(frozen=True)
class TransportPort:
    """A container port and its protocol; ``str()`` is ``tcp/80``."""

    proto: str
    port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "proto", parse_protocol(self.proto))
        object.__setattr__(self, "port", _port(self.port, "port", allow_zero=False))

    def __str__(self) -> str:
        return f"{self.proto}/{self.port}"

    @classmethod
    def from_string(cls, text: str) -> "TransportPort":
        try:
            proto, port = text.split("/")
            return cls(proto, int(port))
        except (ValueError, AttributeError):
            raise BadRequestError(f"invalid transport port {text!r}: expected proto/port") \
                from None


@dataclass(frozen=True)
class PortBinding:
    """A container port published on the host. ``host_port`` 0 asks for a dynamic one.

    ``str()`` is libnetwork's ``proto/containerIP:port/hostIP:hostPort``.
    """

    proto: str
    port: int
    host_port: int = 0
    host_ip: IPAddress | None = None
    ip: IPAddress | None = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "proto", parse_protocol(self.proto))
        if self.proto not in ("tcp", "udp", "sctp"):
            raise BadRequestError(f"invalid protocol {self.proto!r} for a port binding")
        object.__setattr__(self, "port", _port(self.port, "container port", False))
        object.__setattr__(self, "host_port", _port(self.host_port, "host port", True))
        object.__setattr__(self, "host_ip", _ip(self.host_ip, "host IP"))
        object.__setattr__(self, "ip", _ip(self.ip, "container IP"))

    def __str__(self) -> str:
        def addr(ip: IPAddress | None) -> str:
            if ip is None:
                return ""
            return f"[{ip}]" if ip.version == 6 else str(ip)
        return f"{self.proto}/{addr(self.ip)}:{self.port}/{addr(self.host_ip)}:{self.host_port}"

    @classmethod
    def from_string(cls, text: str) -> "PortBinding":
        try:
            proto, cont, host = text.split("/")
            cip, cport = cont.rsplit(":", 1)
            hip, hport = host.rsplit(":", 1)
            return cls(proto, int(cport), int(hport), hip.strip("[]") or None,
                       cip.strip("[]") or None)
        except (ValueError, AttributeError):
            raise BadRequestError(f"invalid port binding {text!r}: expected "
                                  "proto/containerIP:port/hostIP:hostPort") from None

    def transport(self) -> TransportPort:
        return TransportPort(self.proto, self.port)
