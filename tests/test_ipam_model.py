"""The IPAM allocator against a plain Python model, under random request sequences.

Each example reserves one pool (optionally with a sub-pool) of a size we support, from
/32 to /8 and IPv6 /120 to /64, then runs random request (next-fit, first-fit, gateway,
preferred, batch) and release operations, comparing every answer with the model.
"""

from __future__ import annotations

from ipaddress import ip_address, ip_interface, ip_network

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pynetlib.errors import (
    IPAlreadyAllocatedError,
    IPOutOfRangeError,
    NoAvailableIPsError,
)
from pynetlib.ipam import GATEWAY, LOCAL_DEFAULT, REQUEST_ADDRESS_TYPE, SERIAL, Allocator

POOLS = [
    ("10.1.2.3/32", None), ("10.1.2.2/31", None), ("10.1.2.0/30", None),
    ("10.1.2.0/24", None), ("10.1.2.0/24", "10.1.2.0/28"), ("10.1.2.0/24", "10.1.2.248/29"),
    ("10.1.0.0/16", None), ("10.1.0.0/16", "10.1.14.0/23"), ("10.0.0.0/8", None),
    ("fd00::/120", None), ("fd00::/96", None), ("fd00::/64", None),
    ("fd00::/64", "fd00::ffff:ffff:ffff:ff00/120"),
]


class PoolModel:
    """Allocated addresses as a set of ints, with the allocator's documented rules."""

    def __init__(self, pool: str, sub: str | None) -> None:
        net = ip_network(pool)
        self.net = net
        self.base = int(net.network_address)
        n = net.num_addresses
        if n < 4:
            self.lo, self.hi = self.base, self.base + n - 1
        elif net.version == 4:
            self.lo, self.hi = self.base + 1, self.base + n - 2
        else:
            self.lo, self.hi = self.base + 1, self.base + n - 1
        self.rlo, self.rhi = self.lo, self.hi
        if sub:
            s = ip_network(sub)
            self.rlo = max(self.lo, int(s.network_address))
            self.rhi = min(self.hi, int(s.broadcast_address))
        self.used: set[int] = set()
        self.cursor = self.base  # as an address; the bitmap's ordinal 0

    def take(self, next_fit: bool) -> int | None:
        lo, hi = self.rlo, self.rhi
        start = self.cursor if next_fit and lo < self.cursor <= hi else lo
        for a, b in ((start, hi), (lo, start - 1)):
            c = a
            while c <= b and c in self.used:
                c += 1
            if c <= b:
                self.used.add(c)
                if next_fit:
                    self.cursor = self.base if c == self.base + self.net.num_addresses - 1 \
                        else c + 1
                return c
        return None


class IpamMachine(RuleBasedStateMachine):
    @initialize(spec=st.sampled_from(POOLS))
    def start(self, spec):
        pool, sub = spec
        self.ipam = Allocator(routes=None)
        v6 = ":" in pool
        self.pid, _, _ = self.ipam.request_pool(LOCAL_DEFAULT, pool, sub, v6=v6)
        self.m = PoolModel(pool, sub)

    def _addr(self, data):
        m = self.m
        n = m.net.num_addresses
        off = data.draw(st.one_of(st.integers(0, min(n - 1, 6)),
                                  st.integers(max(0, n - 6), n - 1),
                                  st.integers(0, n - 1)))
        if data.draw(st.booleans()) and m.used:
            return data.draw(st.sampled_from(sorted(m.used)))
        if data.draw(st.booleans()):
            return data.draw(st.integers(m.rlo, m.rhi)) if m.rlo <= m.rhi else m.base
        return m.base + off

    def _iface(self, a: int):
        return ip_interface((a, self.m.net.prefixlen))

    @rule(mode=st.sampled_from(["next", "first", "gateway"]))
    def request_any(self, mode):
        opts = {"first": {SERIAL: "false"}, "gateway": {REQUEST_ADDRESS_TYPE: GATEWAY},
                "next": None}[mode]
        want = self.m.take(next_fit=mode == "next")
        if want is None:
            with pytest.raises(NoAvailableIPsError):
                self.ipam.request_address(self.pid, options=opts)
        else:
            assert self.ipam.request_address(self.pid, options=opts) == self._iface(want)

    @rule(n=st.integers(1, 700))
    def request_batch(self, n):
        want = []
        while len(want) < n:
            a = self.m.take(next_fit=True)
            if a is None:
                break
            want.append(a)
        if not want:
            with pytest.raises(NoAvailableIPsError):
                self.ipam.request_addresses(self.pid, n)
        else:
            assert self.ipam.request_addresses(self.pid, n) == [self._iface(a) for a in want]

    @rule(data=st.data())
    def request_preferred(self, data):
        a = self._addr(data)
        addr = ip_address(a)
        if not self.m.lo <= a <= self.m.hi:
            with pytest.raises(IPOutOfRangeError):
                self.ipam.request_address(self.pid, addr)
        elif a in self.m.used:
            with pytest.raises(IPAlreadyAllocatedError):
                self.ipam.request_address(self.pid, str(addr))
        else:
            assert self.ipam.request_address(self.pid, addr) == self._iface(a)
            self.m.used.add(a)

    @rule(data=st.data())
    def release(self, data):
        a = self._addr(data)
        assert self.ipam.release_address(self.pid, ip_address(a)) is (a in self.m.used)
        self.m.used.discard(a)

    @rule(data=st.data(), k=st.integers(1, 50))
    def release_batch(self, data, k):
        addrs = [self._addr(data) for _ in range(k)]
        want = len(set(addrs) & self.m.used)
        assert self.ipam.release_addresses(self.pid, [ip_address(a) for a in addrs]) == want
        self.m.used.difference_update(addrs)

    @invariant()
    def agrees(self):
        if not hasattr(self, "m"):
            return
        m = self.m
        size = m.rhi - m.rlo + 1 if m.rlo <= m.rhi else 0
        in_range = sum(m.rlo <= a <= m.rhi for a in m.used)
        assert self.ipam.available(self.pid) == size - in_range
        sample = sorted(m.used)[:200]
        for a in sample:
            assert self.ipam.is_allocated(self.pid, ip_address(a))


IpamMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TestIpamModel = IpamMachine.TestCase
