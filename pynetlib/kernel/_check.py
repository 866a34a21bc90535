"""Turning the C library's negative errno returns into typed exceptions."""

from __future__ import annotations

import errno as _errno

from pynetlib._ffi import ffi, lib
from pynetlib.errors import DumpInterruptedError, KernelError, kernel_error


def new_err():
    return ffi.new("struct pnl_err *")


def raise_for(rc: int, err, op: str, obj: str = "") -> None:
    """Raise the KernelError for a negative rc (err: the call's struct pnl_err, or None)."""
    msg = ""
    if err is not None and err.msg[0] != b"\0":
        msg = ffi.string(err.msg).decode("utf-8", "replace")
    if -rc == lib.PNL_EDUMPINTR:
        raise DumpInterruptedError(_errno.EINTR, op, obj, msg or "dump interrupted")
    raise kernel_error(rc, op, obj, msg)


def check(rc: int, err, op: str, obj: str = "") -> int:
    if rc < 0:
        raise_for(rc, err, op, obj)
    return rc


__all__ = ["new_err", "raise_for", "check", "KernelError"]
