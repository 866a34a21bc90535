"""The C bitmap allocator, checked against a plain Python model.

A hypothesis state machine runs random allocate / allocate-in-range / set / release /
batch sequences on bitmaps sized like every pool we support (/32, /31, /30, /24, /16,
/8 and IPv6 /120, /96, /64) and compares the bitmap with a Python set and cursor after
every step. Fixed tests pin the edges: chunk boundaries, full runs, the 2**64 size,
and the serialised form (round trip, and rejection of every corruption we can make).
"""

from __future__ import annotations

import struct
import threading

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pynetlib.errors import (
    BadRequestError,
    IPAlreadyAllocatedError,
    IPOutOfRangeError,
    NoAvailableIPsError,
)
from pynetlib.ipam.bitmap import MAX_SIZE, Bitmap

CHUNK = 4096
# host bits of /32 /31 /30 /24 /16 /8 and IPv6 /120 /96 /64
SIZES = [1, 2, 4, 256, 1 << 16, 1 << 24, 1 << 32, 1 << 64, 3 * CHUNK + 17]


class Model:
    """The obvious implementation: a Python set and a cursor."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.bits: set[int] = set()
        self.cursor = 0

    def _first_clear(self, a: int, b: int) -> int | None:
        c = a
        while c <= b and c in self.bits:
            c += 1
        return c if c <= b else None

    def allocate(self, lo: int, hi: int, next_fit: bool) -> int | None:
        start = self.cursor if next_fit and lo < self.cursor <= hi else lo
        found = self._first_clear(start, hi)
        if found is None and start > lo:
            found = self._first_clear(lo, start - 1)
        if found is None:
            return None
        self.bits.add(found)
        if next_fit:
            self.cursor = 0 if found == self.size - 1 else found + 1
        return found


def ordinals(size: int):
    """Ordinals that hit the interesting places: both ends, chunk edges, anywhere."""
    last = size - 1
    edges = [e for k in (1, 2, 3) for e in (k * CHUNK - 1, k * CHUNK) if e <= last]
    choices = [st.integers(0, min(last, 8)), st.integers(max(0, last - 8), last),
               st.integers(0, last)]
    if edges:
        choices.append(st.sampled_from(edges).flatmap(
            lambda e: st.integers(max(0, e - 3), min(last, e + 3))))
    return st.one_of(*choices)


class BitmapMachine(RuleBasedStateMachine):
    @initialize(size=st.sampled_from(SIZES))
    def start(self, size):
        self.bm = Bitmap(size, name="t")
        self.model = Model(size)

    def _range(self, data):
        a = data.draw(ordinals(self.model.size))
        b = data.draw(ordinals(self.model.size))
        return min(a, b), max(a, b)

    @rule(next_fit=st.booleans())
    def allocate_any(self, next_fit):
        want = self.model.allocate(0, self.model.size - 1, next_fit)
        if want is None:
            with pytest.raises(NoAvailableIPsError):
                self.bm.allocate(next_fit=next_fit)
        else:
            assert self.bm.allocate(next_fit=next_fit) == want

    @rule(data=st.data(), next_fit=st.booleans())
    def allocate_in_range(self, data, next_fit):
        lo, hi = self._range(data)
        want = self.model.allocate(lo, hi, next_fit)
        if want is None:
            with pytest.raises(NoAvailableIPsError):
                self.bm.allocate(lo, hi, next_fit=next_fit)
        else:
            assert self.bm.allocate(lo, hi, next_fit=next_fit) == want

    @rule(data=st.data(), n=st.integers(1, 5000), next_fit=st.booleans())
    def allocate_many(self, data, n, next_fit):
        lo, hi = self._range(data)
        want = []
        for _ in range(n):
            # first fit: [lo, previous] is all set, so searching on from there is the same
            a = lo if next_fit or not want else want[-1] + 1
            got = self.model.allocate(a, hi, next_fit) if a <= hi else None
            if got is None:
                break
            want.append(got)
        if not want:
            with pytest.raises(NoAvailableIPsError):
                self.bm.allocate_many(n, lo, hi, next_fit=next_fit)
        else:
            assert self.bm.allocate_many(n, lo, hi, next_fit=next_fit).tolist() == want

    @rule(data=st.data())
    def set_specific(self, data):
        o = data.draw(ordinals(self.model.size))
        if o in self.model.bits:
            with pytest.raises(IPAlreadyAllocatedError):
                self.bm.set(o)
        else:
            self.bm.set(o)
            self.model.bits.add(o)

    @rule(data=st.data(), k=st.integers(1, 300))
    def set_many_contiguous(self, data, k):
        o = data.draw(ordinals(self.model.size))
        ords = list(range(o, min(o + k, self.model.size)))
        want = [x not in self.model.bits for x in ords]
        assert self.bm.set_many(ords) == want
        self.model.bits.update(ords)

    @rule(data=st.data())
    def release(self, data):
        if self.model.bits and data.draw(st.booleans()):
            o = data.draw(st.sampled_from(sorted(self.model.bits)))
        else:
            o = data.draw(ordinals(self.model.size))
        was = o in self.model.bits
        used = self.bm.used
        assert self.bm.release(o) is was
        # releasing a clear bit is a strict no-op: the counter does not move
        assert self.bm.used == used - was
        self.model.bits.discard(o)

    @rule(data=st.data(), k=st.integers(1, 300))
    def release_many_contiguous(self, data, k):
        o = data.draw(ordinals(self.model.size))
        ords = list(range(o, min(o + k, self.model.size)))
        want = sum(x in self.model.bits for x in ords)
        assert self.bm.release_many(ords) == want
        self.model.bits.difference_update(ords)

    @rule(data=st.data())
    def count_range(self, data):
        lo, hi = self._range(data)
        assert self.bm.count_used(lo, hi) == sum(lo <= x <= hi for x in self.model.bits)

    @precondition(lambda self: len(self.model.bits) < 20000)
    @rule()
    def round_trip(self):
        blob = self.bm.serialize()
        again = Bitmap.deserialize(blob)
        assert again.serialize() == blob
        assert again.used == self.bm.used and again.cursor == self.bm.cursor
        self.bm = again

    @invariant()
    def agrees_with_model(self):
        if not hasattr(self, "model"):
            return
        m = self.model
        assert self.bm.used == len(m.bits)
        assert self.bm.cursor == m.cursor
        # every model bit is set and the counts agree, so the sets are equal
        for o in m.bits if len(m.bits) < 600 else list(m.bits)[:: len(m.bits) // 300]:
            assert self.bm.test(o)
        for probe in (0, m.size - 1, m.size // 2, min(CHUNK, m.size - 1)):
            assert self.bm.test(probe) is (probe in m.bits)


BitmapMachine.TestCase.settings = settings(
    max_examples=70, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TestBitmapModel = BitmapMachine.TestCase


# --- fixed behaviours ---------------------------------------------------------------------

def test_next_fit_order_and_wrap():
    bm = Bitmap(8)
    assert [bm.allocate() for _ in range(4)] == [0, 1, 2, 3]
    assert bm.release(1)
    assert bm.allocate() == 4  # a released ordinal waits for the wrap
    assert [bm.allocate() for _ in range(3)] == [5, 6, 7]
    assert bm.cursor == 0
    assert bm.allocate() == 1  # wrapped
    with pytest.raises(NoAvailableIPsError):
        bm.allocate()


def test_first_fit_reuses_lowest_and_keeps_cursor():
    bm = Bitmap(8)
    bm.allocate_many(5)
    bm.release(2)
    assert bm.allocate(next_fit=False) == 2
    assert bm.cursor == 5


def test_range_allocation_edges_across_chunks():
    bm = Bitmap(3 * CHUNK)
    lo, hi = CHUNK - 2, CHUNK + 1
    assert bm.allocate_many(10, lo, hi).tolist() == [lo, lo + 1, lo + 2, lo + 3]
    with pytest.raises(NoAvailableIPsError):
        bm.allocate(lo, hi)
    assert bm.count_used() == 4


def test_errors_exact():
    bm = Bitmap(256, name="p")
    bm.set(7)
    with pytest.raises(IPAlreadyAllocatedError) as ei:
        bm.set(7)
    assert ei.value.address == 7 and ei.value.pool == "p"
    with pytest.raises(IPOutOfRangeError):
        bm.set(256)
    with pytest.raises(IPOutOfRangeError):
        bm.release(-1)
    with pytest.raises(IPOutOfRangeError):
        bm.allocate(0, 256)
    with pytest.raises(BadRequestError):
        bm.allocate(9, 3)
    with pytest.raises(IPOutOfRangeError):
        bm.release_many([1, 2, 300])
    assert bm.used == 1  # nothing changed by the failed batch
    for bad in (0, MAX_SIZE + 1, -5, 2.0):
        with pytest.raises(BadRequestError):
            Bitmap(bad)


def test_release_clear_bit_is_noop_even_in_full_regions():
    bm = Bitmap(3 * CHUNK)
    bm.allocate_many(3 * CHUNK)
    assert bm.node_count == 1  # one full run
    assert bm.release(CHUNK + 5) is True
    assert bm.node_count == 3  # run, block, run
    assert bm.release(CHUNK + 5) is False
    assert bm.used == 3 * CHUNK - 1
    assert bm.allocate() == CHUNK + 5
    assert bm.node_count == 1  # merged back


def test_full_64_bit_space():
    bm = Bitmap(MAX_SIZE)
    top = MAX_SIZE - 1
    assert bm.size == MAX_SIZE and bm.free == MAX_SIZE
    bm.set(top)
    assert bm.test(top)
    assert bm.allocate(top - 2, top) == top - 2
    assert bm.allocate(top - 2, top) == top - 1
    assert bm.cursor == top
    assert bm.allocate() == 0  # cursor at top is taken: wraps to 0
    assert bm.count_used(top - 10, top) == 3
    assert bm.free == MAX_SIZE - 4
    assert Bitmap.deserialize(bm.serialize()).serialize() == bm.serialize()


def test_tail_chunk_padding_never_allocated():
    bm = Bitmap(CHUNK + 3)
    got = bm.allocate_many(CHUNK + 10)
    assert got.tolist() == list(range(CHUNK + 3))
    assert bm.node_count == 1


def test_memory_of_64_with_100k_allocated():
    bm = Bitmap(MAX_SIZE)
    bm.allocate_many(100_000, 1)
    assert bm.used == 100_000
    assert bm.mem_bytes < 64 * 1024


def test_parallel_threads_no_duplicates():
    bm = Bitmap(1024)
    out: list[int] = []
    lock = threading.Lock()

    def work():
        mine = []
        for _ in range(200):
            try:
                mine.append(bm.allocate())
            except NoAvailableIPsError:
                break
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(out) == list(range(1024))


# --- serialisation ------------------------------------------------------------------------

def _sample_blob() -> bytes:
    bm = Bitmap(5 * CHUNK + 100)
    bm.allocate_many(2 * CHUNK + 5)
    bm.set(5 * CHUNK + 99)
    bm.release(7)
    return bm.serialize()


def _refit(body: bytes) -> bytes:
    """Recompute the CRC so only the structural check can reject the blob."""
    return body + struct.pack("<I", _crc32c(body))


def _crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for byte in data:
        c ^= byte
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF


def test_blob_checksum_matches_reference_crc32c():
    blob = _sample_blob()
    assert _refit(blob[:-4]) == blob
    assert blob[:4] == b"PNLB" and struct.unpack_from("<H", blob, 4)[0] == 1


def test_every_single_byte_corruption_is_rejected():
    blob = _sample_blob()
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x5A
        with pytest.raises(BadRequestError):
            Bitmap.deserialize(bytes(bad))
    for cut in (0, 1, 39, 44, len(blob) - 1):
        with pytest.raises(BadRequestError):
            Bitmap.deserialize(blob[:cut])
    with pytest.raises(BadRequestError):
        Bitmap.deserialize(blob + b"\0")


def _header(last, used, cursor, nnodes):
    return b"PNLB" + struct.pack("<HHQQQQ", 1, 0, last, used, cursor, nnodes)


def _run(key, n):
    return struct.pack("<QII", key, 1, 0) + struct.pack("<Q", n)


def _block(key, bits):
    words = [0] * 64
    for b in bits:
        words[b // 64] |= 1 << (b % 64)
    return struct.pack("<QII", key, 2, 0) + struct.pack("<64Q", *words)


@pytest.mark.parametrize("body,why", [
    (_header(4 * CHUNK - 1, 0, 0, 1) + _run(0, 0), "zero-length run"),
    (_header(4 * CHUNK - 1, 2 * CHUNK, 0, 2) + _run(0, 1) + _run(1, 1), "unmerged runs"),
    (_header(4 * CHUNK - 1, 0, 0, 1) + _block(1, []), "empty block"),
    (_header(4 * CHUNK - 1, CHUNK, 0, 1) + _block(1, range(CHUNK)), "full block"),
    (_header(CHUNK + 9, 1, 0, 1) + _block(1, [12]), "bit beyond the end"),
    (_header(4 * CHUNK - 1, 2, 0, 2) + _block(2, [1]) + _block(1, [1]), "unsorted"),
    (_header(4 * CHUNK - 1, 1 + 2 * CHUNK, 0, 2) + _run(0, 2) + _block(1, [0]), "overlap"),
    (_header(4 * CHUNK - 1, 5 * CHUNK, 0, 1) + _run(0, 5), "run past the end"),
    (_header(4 * CHUNK - 1, 3, 0, 1) + _block(0, [1, 2]), "used count lies"),
    (_header(100, 0, 101, 0), "cursor past the end"),
    (_header(100, 0, 0, 1), "node count larger than the body"),
    (_header(MAX_SIZE - 1, 0, 0, 1) + _run(0, 1 << 52), "used overflows 64 bits"),
])
def test_non_canonical_blobs_rejected(body, why):
    with pytest.raises(BadRequestError):
        Bitmap.deserialize(_refit(body))


def test_hand_built_canonical_blob_accepted():
    body = _header(4 * CHUNK - 1, 2 * CHUNK + 2, 7, 3) + _run(0, 1) + _block(2, [0, 9]) + \
        _run(3, 1)
    bm = Bitmap.deserialize(_refit(body))
    assert bm.used == 2 * CHUNK + 2 and bm.cursor == 7
    assert bm.test(2 * CHUNK + 9) and not bm.test(CHUNK)
    assert bm.serialize() == _refit(body)
