"""Host port allocation for port mappings (libnetwork's ``portallocator``).

A host port is held per protocol and host address. ``None`` and ``0.0.0.0`` mean every
address: such a binding conflicts with any binding of the same port and protocol.
``::`` means every IPv6 address: it conflicts with every IPv6 binding (and with the
all-address ones). Dynamic ports (``port=0``) come from the ephemeral range in
``/proc/sys/net/ipv4/ip_local_port_range`` (49153-60999 when it cannot be read),
next-fit: the search starts after the port handed out last for that protocol and
address, so a port just released is not handed out again at once.
"""

from __future__ import annotations

import ipaddress
import threading

from pynetlib.errors import BadRequestError, ForbiddenError, NoServiceError

__all__ = ["PortAllocator", "PortAlreadyAllocatedError", "AllPortsAllocatedError",
           "UnknownProtocolError", "DEFAULT_PORT_RANGE", "read_port_range"]

DEFAULT_PORT_RANGE = (49153, 60999)
PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
PROTOCOLS = ("tcp", "udp", "sctp")

_ALL = "*"          # key of a binding on every address (None, 0.0.0.0)
_ALL6 = "::"        # key of a binding on every IPv6 address


class PortAlreadyAllocatedError(ForbiddenError):
    """The explicit host port is held already (libnetwork's ``ErrPortAlreadyAllocated``)."""

    def __init__(self, ip: str, port: int) -> None:
        self.ip = ip
        self.port = port
        super().__init__(f"Bind for {ip}:{port} failed: port is already allocated")


class AllPortsAllocatedError(NoServiceError):
    """No port of the dynamic range is free (libnetwork's ``ErrAllPortsAllocated``)."""

    def __init__(self, msg: str = "all ports are allocated") -> None:
        super().__init__(msg)


class UnknownProtocolError(BadRequestError):
    """A protocol other than tcp, udp and sctp (libnetwork's ``ErrUnknownProtocol``)."""

    def __init__(self, proto: object) -> None:
        self.proto = proto
        super().__init__(f"unknown protocol {proto!r}: one of tcp, udp, sctp")


def read_port_range(path: str = PORT_RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range, or :data:`DEFAULT_PORT_RANGE`."""
    try:
        with open(path) as f:
            lo, hi = (int(x) for x in f.read().split())
        if 1 <= lo <= hi <= 65535:
            return lo, hi
    except (OSError, ValueError):
        pass
    return DEFAULT_PORT_RANGE


def _proto(proto: object) -> str:
    if isinstance(proto, str) and proto.lower() in PROTOCOLS:
        return proto.lower()
    raise UnknownProtocolError(proto)


def _key(host_ip: object) -> str:
    if host_ip is None or host_ip == "":
        return _ALL
    try:
        ip = ipaddress.ip_address(host_ip) if not isinstance(
            host_ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else host_ip
    except ValueError:
        raise BadRequestError(f"invalid host IP {host_ip!r}") from None
    if ip.is_unspecified:
        return _ALL if ip.version == 4 else _ALL6
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def _display(key: str) -> str:
    return "0.0.0.0" if key == _ALL else key


def _is_v6(key: str) -> bool:
    return ":" in key


def _conflicts(key: str, held: set[str]) -> bool:
    if not held:
        return False
    if key == _ALL or _ALL in held or key in held:
        return True
    if key == _ALL6:
        return any(_is_v6(k) for k in held)
    return _is_v6(key) and _ALL6 in held


class PortAllocator:
    """Thread-safe host port allocator (see the module doc for the conflict rules)."""

    def __init__(self, port_range: tuple[int, int] | None = None) -> None:
        lo, hi = port_range if port_range is not None else read_port_range()
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi <= 65535):
            raise BadRequestError(f"invalid port range {port_range!r}")
        self.begin, self.end = lo, hi
        self._lock = threading.Lock()
        # proto -> port -> keys of the host addresses holding it
        self._held: dict[str, dict[int, set[str]]] = {p: {} for p in PROTOCOLS}
        # (proto, key) -> last dynamic port handed out
        self._last: dict[tuple[str, str], int] = {}

    def request(self, proto: str, host_ip: object = None, port: int = 0) -> int:
        """Hold ``port`` (or a free dynamic one when 0) for ``proto`` on ``host_ip``."""
        p = _proto(proto)
        key = _key(host_ip)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise BadRequestError(f"invalid host port {port!r}: an integer from 0 to 65535")
        with self._lock:
            held = self._held[p]
            if port:
                if _conflicts(key, held.get(port, set())):
                    raise PortAlreadyAllocatedError(_display(key), port)
                held.setdefault(port, set()).add(key)
                return port
            size = self.end - self.begin + 1
            last = self._last.get((p, key), self.end)
            for i in range(1, size + 1):
                cand = self.begin + (last - self.begin + i) % size
                if not _conflicts(key, held.get(cand, set())):
                    held.setdefault(cand, set()).add(key)
                    self._last[(p, key)] = cand
                    return cand
            raise AllPortsAllocatedError()

    def release(self, proto: str, host_ip: object, port: int) -> None:
        """Give the port back; a port that is not held is a no-op."""
        p = _proto(proto)
        key = _key(host_ip)
        with self._lock:
            keys = self._held[p].get(port)
            if keys is None:
                return
            keys.discard(key)
            if not keys:
                del self._held[p][port]

    def is_allocated(self, proto: str, host_ip: object, port: int) -> bool:
        """Whether exactly this (proto, host address, port) is held."""
        p = _proto(proto)
        with self._lock:
            return _key(host_ip) in self._held[p].get(port, set())

    def allocated(self) -> list[tuple[str, str | None, int]]:
        """A snapshot of every held (proto, host_ip or None for all addresses, port)."""
        with self._lock:
            items = sorted((p, port, k) for p, ports in self._held.items()
                           for port, keys in ports.items() for k in keys)
        return [(p, None if k == _ALL else k, port) for p, port, k in items]

    def release_all(self) -> None:
        with self._lock:
            for ports in self._held.values():
                ports.clear()
