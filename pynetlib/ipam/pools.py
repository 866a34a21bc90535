"""Default address pools, as libnetwork's ``NetworkToSplit{Base, Size}`` lists.

A pool request without an explicit pool takes the first candidate of its address space
that overlaps neither an existing pool of that space nor a host route. Candidates are
generated lazily, base by base, in list order.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

__all__ = ["NetworkToSplit", "LOCAL_DEFAULT_POOLS", "GLOBAL_DEFAULT_POOLS", "candidates"]


@dataclass(frozen=True)
class NetworkToSplit:
    """``base`` cut into subnets of prefix length ``size``."""

    base: IPv4Network | IPv6Network
    size: int

    def __post_init__(self) -> None:
        base = ipaddress.ip_network(self.base)  # host bits set: ValueError
        object.__setattr__(self, "base", base)
        if not base.prefixlen <= self.size <= base.max_prefixlen:
            raise ValueError(f"cannot split {base} into /{self.size}")

    def subnets(self) -> Iterator[IPv4Network | IPv6Network]:
        return self.base.subnets(new_prefix=self.size)


def _splits(pairs: Iterable[tuple[str, int]]) -> tuple[NetworkToSplit, ...]:
    return tuple(NetworkToSplit(ipaddress.ip_network(b), s) for b, s in pairs)


#: 172.17/16 … 172.31/16, then 192.168.0.0/20 … 192.168.240.0/20 (libnetwork's final list).
LOCAL_DEFAULT_POOLS = _splits([
    ("172.17.0.0/16", 16), ("172.18.0.0/16", 16), ("172.19.0.0/16", 16),
    ("172.20.0.0/14", 16), ("172.24.0.0/14", 16), ("172.28.0.0/14", 16),
    ("192.168.0.0/16", 20),
])

#: 10.0.0.0/8 cut into /24s.
GLOBAL_DEFAULT_POOLS = _splits([("10.0.0.0/8", 24)])


def candidates(splits: Iterable[NetworkToSplit], v6: bool) -> Iterator[IPv4Network | IPv6Network]:
    """Every default pool of the wanted IP version, in order."""
    version = 6 if v6 else 4
    for split in splits:
        if split.base.version == version:
            yield from split.subnets()
