"""A typed, thread-safe wrapper over the C bitmap allocator (``csrc/bitmap.c``).

A :class:`Bitmap` is a set of allocated ordinals ``0 .. size-1`` with ``1 <= size <=
2**64``. It knows nothing about addresses: the IPAM allocator maps ordinals to
addresses. cffi releases the GIL during C calls, so
threads really run C concurrently: the C object locks its own mutex in every call.

Errors: a full range raises :class:`NoAvailableIPsError`, setting a set ordinal
:class:`IPAlreadyAllocatedError`, an ordinal beyond the end :class:`IPOutOfRangeError`
(all with ``pool`` set to the bitmap's ``name`` and ``address`` to the ordinal), bad
arguments :class:`BadRequestError`, a corrupt serialised blob :class:`BadRequestError`.
"""

from __future__ import annotations

import errno
from array import array
from collections.abc import Iterable, Sequence

from pynetlib._ffi import ffi, lib
from pynetlib.errors import (
    BadRequestError,
    InternalError,
    IPAlreadyAllocatedError,
    IPOutOfRangeError,
    NoAvailableIPsError,
)

__all__ = ["Bitmap", "MAX_SIZE"]

#: The largest bitmap: every address of an IPv6 /64.
MAX_SIZE = 1 << 64
_U64 = (1 << 64) - 1


class Bitmap:
    """Allocated ordinals ``0 .. size-1``; next-fit or first-fit allocation.

    Safe to share between threads: the C object holds its own mutex in every call, and
    :meth:`close` only drops this object's reference, so a call still running in another
    thread keeps the C object alive until it returns.
    """

    __slots__ = ("_h", "_last", "name", "__weakref__")

    def __init__(self, size: int, *, name: str = "") -> None:
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_SIZE:
            raise BadRequestError(f"bitmap size must be an int in [1, 2**64], not {size!r}")
        self.name = name
        ptr = ffi.new("pnl_bitmap **")
        _check(lib.pnl_bitmap_new(size - 1, ptr), self, None)
        self._adopt(ptr[0])

    def _adopt(self, handle) -> None:
        self._h = ffi.gc(handle, lib.pnl_bitmap_free)
        self._last = lib.pnl_bitmap_last(handle)

    # --- properties --------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of ordinals (up to 2**64)."""
        return self._last + 1

    @property
    def used(self) -> int:
        """Number of allocated ordinals."""
        return lib.pnl_bitmap_used(self._handle())

    @property
    def free(self) -> int:
        """Number of clear ordinals."""
        return self._last + 1 - lib.pnl_bitmap_used(self._handle())

    @property
    def cursor(self) -> int:
        """Where the next next-fit search starts."""
        return lib.pnl_bitmap_cursor(self._handle())

    @cursor.setter
    def cursor(self, value: int) -> None:
        self._ordinal(value)
        _check(lib.pnl_bitmap_set_cursor(self._handle(), value), self, value)

    @property
    def mem_bytes(self) -> int:
        """Heap bytes the C object holds, as malloc sized each allocation."""
        return lib.pnl_bitmap_mem_bytes(self._handle())

    @property
    def node_count(self) -> int:
        """Stored nodes (dense blocks plus full runs): a diagnostic."""
        return lib.pnl_bitmap_node_count(self._handle())

    def count_used(self, lo: int = 0, hi: int | None = None) -> int:
        """Allocated ordinals in ``[lo, hi]`` (inclusive; ``hi`` defaults to the last)."""
        hi = self._last if hi is None else hi
        self._ordinal(lo)
        self._ordinal(hi)
        out = ffi.new("uint64_t *")
        _check(lib.pnl_bitmap_count_used_range(self._handle(), lo, hi, out), self, None,
               (lo, hi))
        return out[0]

    # --- single operations ---------------------------------------------------------------

    def allocate(self, lo: int = 0, hi: int | None = None, *, next_fit: bool = True) -> int:
        """Allocate the first clear ordinal in ``[lo, hi]``, searching from the cursor
        (wrapping once) when ``next_fit``, else from ``lo``."""
        try:
            o = _alloc_one(self._h, lo, self._last if hi is None else hi, next_fit)
        except (TypeError, OverflowError):
            self._handle()
            raise IPOutOfRangeError((lo, hi), self.name) from None
        if o == _U64:
            err = ffi.errno
            if err:
                _check(-err, self, None, (lo, hi))
        return o

    def set(self, ordinal: int) -> None:
        """Allocate one specific ordinal."""
        self._ordinal(ordinal)
        rc = lib.pnl_bitmap_set(self._handle(), ordinal)
        if rc:
            _check(rc, self, ordinal)

    def release(self, ordinal: int) -> bool:
        """Clear one ordinal. True if it was allocated; False (and no change) if not."""
        try:
            rc = _unset(self._h, ordinal)
        except (TypeError, OverflowError):
            self._handle()
            raise IPOutOfRangeError(ordinal, self.name) from None
        if rc < 0:
            _check(rc, self, ordinal)
        return rc == 1

    def test(self, ordinal: int) -> bool:
        """Whether ``ordinal`` is allocated."""
        self._ordinal(ordinal)
        return _check(lib.pnl_bitmap_test(self._handle(), ordinal), self, ordinal) == 1

    __contains__ = test

    # --- batches: one C call (one GIL round trip) for many ordinals -------------------

    def allocate_many(self, n: int, lo: int = 0, hi: int | None = None, *,
                      next_fit: bool = True) -> array:
        """Allocate up to ``n`` ordinals in ``[lo, hi]``; fewer only if the range fills
        up. Raises :class:`NoAvailableIPsError` if none at all could be allocated.

        The result is an ``array('Q')``: the C call writes straight into it, and
        :meth:`release_many` hands it back to C without a copy."""
        if n <= 0:
            return array("Q")
        out = array("Q", bytes(8 * n))
        try:
            got = _alloc_many(self._h, lo, self._last if hi is None else hi, next_fit,
                              _from_buffer("uint64_t[]", out), n)
        except (TypeError, OverflowError):
            self._handle()
            raise IPOutOfRangeError((lo, hi), self.name) from None
        if got < 0:
            _check(got, self, None, (lo, hi))
        if got < n:
            del out[got:]
        return out

    def set_many(self, ordinals: Sequence[int]) -> list[bool]:
        """Allocate specific ordinals. Per item: True if set now, False if it already
        was. Any ordinal out of range raises before anything changes."""
        arr = self._array(ordinals)
        n = len(arr)
        res = ffi.new("uint8_t[]", max(n, 1))
        rc = lib.pnl_bitmap_set_many(self._handle(), arr, n, res)
        _check(rc, self, None)
        return [bool(b) for b in ffi.unpack(res, n)]

    def release_many(self, ordinals: Iterable[int]) -> int:
        """Clear ordinals; returns how many were allocated. Any ordinal out of range
        raises before anything changes. An ``array('Q')`` (as :meth:`allocate_many`
        returns) goes to C without a copy."""
        if not (isinstance(ordinals, array) and ordinals.typecode == "Q"):
            try:
                ordinals = array("Q", ordinals)
            except OverflowError:
                raise IPOutOfRangeError("an ordinal below 0 or above 2**64-1",
                                        self.name) from None
            except TypeError:
                raise BadRequestError(f"ordinals of bitmap {self.name!r} are ints") from None
        n = len(ordinals)
        rc = _unset_many(self._handle(), _from_buffer("uint64_t[]", ordinals) if n else
                         ffi.NULL, n)
        return rc if rc >= 0 else _check(rc, self, None)

    # --- serialisation and lifetime -------------------------------------------------------

    def serialize(self) -> bytes:
        """The versioned, checksummed blob that :meth:`deserialize` accepts."""
        h = self._handle()
        while True:  # the size may grow between the two calls when threads share us
            size = lib.pnl_bitmap_serialized_size(h)
            buf = ffi.new("uint8_t[]", size)
            n = lib.pnl_bitmap_serialize(h, buf, size)
            if n != -errno.ENOBUFS:
                break
        _check(n, self, None)
        return ffi.buffer(buf, n)[:]

    @classmethod
    def deserialize(cls, blob: bytes | bytearray | memoryview, *, name: str = "") -> Bitmap:
        """Load a blob from :meth:`serialize`; a corrupt or non-canonical blob raises
        :class:`BadRequestError` and is never used."""
        data = bytes(blob)
        ptr = ffi.new("pnl_bitmap **")
        rc = lib.pnl_bitmap_deserialize(data, len(data), ptr)
        if rc == -errno.EBADMSG:
            raise BadRequestError(f"corrupt or non-canonical bitmap blob ({len(data)} bytes)")
        self = cls.__new__(cls)
        self.name = name
        _check(rc, self, None)
        self._adopt(ptr[0])
        return self

    def close(self) -> None:
        """Drop the C object; later calls raise :class:`BadRequestError`. It is freed
        as soon as no call from another thread still uses it."""
        self._h = None

    @property
    def closed(self) -> bool:
        return self._h is None

    def __repr__(self) -> str:
        if self._h is None:
            return f"<Bitmap {self.name!r} closed>"
        return f"<Bitmap {self.name!r} size={self.size} used={self.used}>"

    # --- helpers ----------------------------------------------------------------------------

    def _handle(self):
        h = self._h
        if h is None:
            raise BadRequestError(f"bitmap {self.name!r} is closed")
        return h

    def _ordinal(self, value: int) -> None:
        if not isinstance(value, int) or not 0 <= value <= self._last:
            raise IPOutOfRangeError(value, self.name)

    def _array(self, ordinals: Iterable[int]):
        values = list(ordinals)
        for v in values:
            self._ordinal(v)
        return ffi.new("uint64_t[]", values)


_alloc_one = lib.pnl_bitmap_alloc_one
_alloc_many = lib.pnl_bitmap_alloc_many
_unset = lib.pnl_bitmap_unset
_unset_many = lib.pnl_bitmap_unset_many
_from_buffer = ffi.from_buffer


def _check(rc: int, bm: Bitmap, ordinal: int | None, rng: tuple | None = None) -> int:
    """Map a C return value to its exception; non-negative values pass through."""
    if rc >= 0:
        return rc
    err = -rc
    name = bm.name
    if err == errno.ENOSPC:
        raise NoAvailableIPsError(name, f"no free ordinal in {rng} of bitmap {name!r}"
                                  if rng else "")
    if err == errno.EEXIST:
        raise IPAlreadyAllocatedError(ordinal, name)
    if err == errno.ERANGE:
        raise IPOutOfRangeError(ordinal if rng is None else rng, name)
    if err == errno.EINVAL:
        raise BadRequestError(f"invalid bitmap request {rng if rng else ordinal} "
                              f"on bitmap {name!r}")
    if err == errno.ENOMEM:
        raise MemoryError("bitmap: out of memory")
    if err == errno.EBADMSG:
        raise BadRequestError("corrupt or non-canonical bitmap blob")
    raise InternalError(f"bitmap call failed: {errno.errorcode.get(err, err)}")
