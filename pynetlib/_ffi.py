"""The cffi binding of the C library. Everything Python-facing sits above this module."""

from pynetlib._native import ffi, lib  # noqa: F401  (re-exported)

__all__ = ["ffi", "lib"]
