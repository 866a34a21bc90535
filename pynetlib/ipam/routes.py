"""Routes of the current network namespace, read from procfs.

The default IPAM allocator skips default pools that overlap a host route. The route
source is pluggable (any callable returning networks); this module is the default one,
reading ``/proc/net/route`` and ``/proc/net/ipv6_route`` of the namespace the calling
thread is in. Default routes (prefix length 0) are left out: they overlap everything.
"""

from __future__ import annotations

import ipaddress
import struct
from ipaddress import IPv4Network, IPv6Network

__all__ = ["proc_routes", "parse_ipv4_routes", "parse_ipv6_routes"]


def parse_ipv4_routes(text: str) -> list[IPv4Network]:
    """Destinations of ``/proc/net/route`` (hex u32 in host byte order)."""
    nets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            dest = struct.pack("=I", int(fields[1], 16))
            mask = struct.pack("=I", int(fields[7], 16))
        except (ValueError, struct.error):
            continue
        prefix = bin(int.from_bytes(mask, "big")).count("1")
        if prefix == 0:
            continue
        nets.append(IPv4Network((ipaddress.IPv4Address(dest), prefix), strict=False))
    return nets


def parse_ipv6_routes(text: str) -> list[IPv6Network]:
    """Destinations of ``/proc/net/ipv6_route`` (32 hex digits, prefix length in hex)."""
    nets = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or len(fields[0]) != 32:
            continue
        try:
            addr = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            prefix = int(fields[1], 16)
        except ValueError:
            continue
        if prefix == 0 or prefix > 128:
            continue
        nets.append(IPv6Network((addr, prefix), strict=False))
    return nets


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except OSError:
        return ""


def proc_routes() -> list[IPv4Network | IPv6Network]:
    """Every non-default route destination of the current namespace."""
    return [*parse_ipv4_routes(_read("/proc/net/route")),
            *parse_ipv6_routes(_read("/proc/net/ipv6_route"))]
