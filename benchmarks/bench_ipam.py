"""IPAM benchmarks: the C bitmap against a pure-Python bitmap allocator, same run.

Pure CPU, no kernel. A /16 pool (ordinals 1..65534, as the allocator uses them) is
filled at random to 0 %, 50 % and 99.9 %, then:

* ``ipam-single``: one address per Python call. ``allocate`` times one allocation per
  call (every 64th call also hands the 64 back in one batch release, so the figure is an
  upper bound that includes 1/64 of that release); ``churn`` times an allocate plus a
  release of the same address, so the fill level stays put.
* ``ipam-batch``: 64 addresses per Python call (``allocate_many``); the figure per
  address is the median divided by 64 (reported in ``extra_info``).
* ``ipam-baseline``: the same single-address allocation and churn on
  :class:`PyBitmapAllocator`, a bytearray bitmap with next-fit in plain Python.
* ``ipam-request``: end to end through :class:`Allocator` (``request_address`` +
  ``release_address``, building the ``IPv4Interface``).
* ``ipam-v6``: a /64 pool, batches of 1000, with its C memory in ``extra_info``.

Run: ``pytest benchmarks/bench_ipam.py --benchmark-only -p no:cacheprovider
-o python_files='bench_*.py'``.
"""

from __future__ import annotations

import random
from functools import partial

import pytest

from pynetlib.ipam import LOCAL_DEFAULT, Allocator
from pynetlib.ipam.bitmap import MAX_SIZE, Bitmap

SIZE = 1 << 16
LO, HI = 1, SIZE - 2
FILLS = {"0%": 0.0, "50%": 0.5, "99.9%": 0.999}
BATCH = 64
ROUNDS = 20_000


class PyBitmapAllocator:
    """The baseline: a bit per address in a bytearray, next-fit from a wrapping cursor,
    whole bytes of allocated addresses skipped at once. Plain Python."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.bits = bytearray((size + 7) // 8)
        self.cursor = 0

    def _find(self, a: int, b: int) -> int | None:
        bits = self.bits
        i = a
        while i <= b:
            byte = bits[i >> 3]
            if byte == 0xFF:
                i = (i | 7) + 1
            elif byte >> (i & 7) & 1:
                i += 1
            else:
                return i
        return None

    def allocate(self, lo: int, hi: int) -> int:
        start = self.cursor if lo < self.cursor <= hi else lo
        found = self._find(start, hi)
        if found is None and start > lo:
            found = self._find(lo, start - 1)
        if found is None:
            raise LookupError("full")
        self.bits[found >> 3] |= 1 << (found & 7)
        self.cursor = 0 if found == self.size - 1 else found + 1
        return found

    def set(self, o: int) -> None:
        if self.bits[o >> 3] >> (o & 7) & 1:
            raise KeyError(o)
        self.bits[o >> 3] |= 1 << (o & 7)

    def release(self, o: int) -> bool:
        was = self.bits[o >> 3] >> (o & 7) & 1
        self.bits[o >> 3] &= ~(1 << (o & 7)) & 0xFF
        return bool(was)


def _fill_ordinals(fill: float) -> list[int]:
    count = round((HI - LO + 1) * fill)
    return random.Random(0x1DEA).sample(range(LO, HI + 1), count)


def _c_bitmap(fill: float) -> Bitmap:
    bm = Bitmap(SIZE)
    bm.set_many(_fill_ordinals(fill))
    return bm


def _py_bitmap(fill: float) -> PyBitmapAllocator:
    bm = PyBitmapAllocator(SIZE)
    for o in _fill_ordinals(fill):
        bm.set(o)
    return bm


def _allocate_one_per_call(benchmark, allocate, release_all):
    """Time one allocate() per Python call. Every 64th call also gives the 64 addresses
    back (so the fill level holds), so the per-call figure includes 1/64 of that."""
    held: list[int] = []

    def one():
        held.append(allocate())
        if len(held) == BATCH:
            release_all(held)
            held.clear()

    benchmark.pedantic(one, rounds=ROUNDS // 4, iterations=BATCH, warmup_rounds=10)


def _py_release_all(bm: PyBitmapAllocator):
    def release_all(held):
        for o in held:
            bm.release(o)
    return release_all


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.benchmark(group="ipam-single")
def test_c_allocate(benchmark, fill):
    bm = _c_bitmap(FILLS[fill])
    _allocate_one_per_call(benchmark, partial(bm.allocate, LO, HI), bm.release_many)


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.benchmark(group="ipam-single")
def test_c_churn(benchmark, fill):
    bm = _c_bitmap(FILLS[fill])
    allocate, release = bm.allocate, bm.release

    def churn():
        release(allocate(LO, HI))

    benchmark(churn)


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.benchmark(group="ipam-batch")
def test_c_allocate_batch(benchmark, fill):
    bm = _c_bitmap(FILLS[fill])
    last = []

    def setup():
        if last:
            bm.release_many(last.pop())

    def target():
        last.append(bm.allocate_many(BATCH, LO, HI))

    benchmark.pedantic(target, setup=setup, rounds=ROUNDS // 4, iterations=1,
                       warmup_rounds=50)
    assert len(last[0]) == BATCH
    benchmark.extra_info["ns_per_address_median"] = benchmark.stats.stats.median / BATCH * 1e9


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.benchmark(group="ipam-batch")
def test_c_churn_batch(benchmark, fill):
    bm = _c_bitmap(FILLS[fill])

    def churn():
        bm.release_many(bm.allocate_many(BATCH, LO, HI))

    benchmark(churn)
    benchmark.extra_info["ns_per_address_median"] = benchmark.stats.stats.median / BATCH * 1e9


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.benchmark(group="ipam-baseline")
def test_python_allocate(benchmark, fill):
    bm = _py_bitmap(FILLS[fill])
    _allocate_one_per_call(benchmark, partial(bm.allocate, LO, HI), _py_release_all(bm))


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.benchmark(group="ipam-baseline")
def test_python_churn(benchmark, fill):
    bm = _py_bitmap(FILLS[fill])

    def churn():
        bm.release(bm.allocate(LO, HI))

    benchmark(churn)


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.benchmark(group="ipam-request")
def test_allocator_request_release(benchmark, fill):
    ipam = Allocator(routes=None)
    pid, net, _ = ipam.request_pool(LOCAL_DEFAULT, "10.20.0.0/16")
    ipam._by_id[pid].master.bitmap.set_many(_fill_ordinals(FILLS[fill]))

    def churn():
        ipam.release_address(pid, ipam.request_address(pid))

    benchmark(churn)


@pytest.mark.benchmark(group="ipam-v6")
def test_v6_slash64_batches(benchmark):
    bm = Bitmap(MAX_SIZE)
    bm.allocate_many(100_000, 1)

    def churn():
        bm.release_many(bm.allocate_many(1000, 1))

    benchmark(churn)
    benchmark.extra_info["used"] = bm.used
    benchmark.extra_info["mem_bytes_with_100k_allocated"] = bm.mem_bytes
