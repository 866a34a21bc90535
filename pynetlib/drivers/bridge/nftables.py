"""A small ctypes binding to the system's ``libnftables.so.1`` (Debian ``libnftables1``).

Only the JSON API is used: callers hand in ``{"nftables": [...]}`` command lists built
from Python data, never nft text made by string concatenation.

Namespaces: libnftables opens its netlink socket when the context is made
(``nft_ctx_new``) and keeps it for every later command (measured with 1.0.6: a context
made in namespace A and used by a thread sitting in namespace B changes A). So an
:class:`Nft` is bound to the network namespace of the thread that created it and can
then be used from any thread without switching namespaces, like a netlink socket of the
kernel layer. Make one per namespace: create it inside (``Nft.for_netns(ns)`` does
that). Nothing pynetlib sends depends on the caller's namespace (it matches interfaces
by name, ``iifname``/``oifname``, never by index).
``tests/test_firewall.py::test_nft_context_is_bound_to_its_creation_netns`` checks it.

A context is not thread-safe, so each :class:`Nft` serialises its calls with a lock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import threading
from typing import Any

from pynetlib.errors import BadRequestError, InternalError

__all__ = ["Nft", "FirewallError", "NFT_CTX_OUTPUT_HANDLE", "NFT_CTX_OUTPUT_JSON",
           "NFT_CTX_OUTPUT_ECHO", "load_library"]

# libnftables.h
NFT_CTX_DEFAULT = 0
NFT_CTX_OUTPUT_HANDLE = 1 << 3
NFT_CTX_OUTPUT_JSON = 1 << 4
NFT_CTX_OUTPUT_ECHO = 1 << 5

_LIBNAMES = ("libnftables.so.1", "libnftables.so")


class FirewallError(InternalError):
    """libnftables refused a command (or could not run it).

    ``nft_msg`` is nft's own error text; ``commands`` the batch that failed.
    """

    def __init__(self, msg: str, nft_msg: str = "", commands: Any = None) -> None:
        self.nft_msg = nft_msg
        self.commands = commands
        super().__init__(msg + (f": {nft_msg.strip()}" if nft_msg.strip() else ""))


_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def load_library() -> ctypes.CDLL:
    """Load libnftables once and declare the prototypes used."""
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        lib = None
        errors = []
        for name in _LIBNAMES + tuple(filter(None, [ctypes.util.find_library("nftables")])):
            try:
                lib = ctypes.CDLL(name, use_errno=True)
                break
            except OSError as e:
                errors.append(str(e))
        if lib is None:
            raise FirewallError("libnftables is not available (install libnftables1)",
                                "; ".join(errors))
        vp, ci, cc = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
        sig = {
            "nft_ctx_new": ([ctypes.c_uint32], vp),
            "nft_ctx_free": ([vp], None),
            "nft_ctx_buffer_output": ([vp], ci),
            "nft_ctx_buffer_error": ([vp], ci),
            "nft_ctx_get_output_buffer": ([vp], cc),
            "nft_ctx_get_error_buffer": ([vp], cc),
            "nft_ctx_output_set_flags": ([vp, ctypes.c_uint], None),
            "nft_ctx_output_get_flags": ([vp], ctypes.c_uint),
            "nft_run_cmd_from_buffer": ([vp, cc], ci),
        }
        for fname, (args, res) in sig.items():
            fn = getattr(lib, fname)
            fn.argtypes = args
            fn.restype = res
        _lib = lib
        return lib


def _netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


class Nft:
    """One libnftables context (JSON input and output, handles shown).

    Bound to the network namespace of the creating thread (see the module doc).
    """

    def __init__(self) -> None:
        self._lib = load_library()
        self._lock = threading.Lock()
        self.netns_inode = _netns_inode()
        ctx = self._lib.nft_ctx_new(NFT_CTX_DEFAULT)
        if not ctx:
            raise FirewallError("nft_ctx_new failed")
        self._ctx: int | None = ctx
        try:
            if self._lib.nft_ctx_buffer_output(ctx) or self._lib.nft_ctx_buffer_error(ctx):
                raise FirewallError("libnftables could not buffer its output")
            self._lib.nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE)
        except BaseException:
            self._lib.nft_ctx_free(ctx)
            self._ctx = None
            raise

    @classmethod
    def for_netns(cls, ns: Any) -> "Nft":
        """A context bound to ``ns`` (a :class:`pynetlib.kernel.Netns`, a path or a name
        under /run/netns), made by entering it with the calling thread only for the
        creation."""
        from pynetlib.kernel import Netns

        if isinstance(ns, Netns):
            with ns.enter():
                return cls()
        if not isinstance(ns, str):
            raise BadRequestError(f"invalid namespace {ns!r}: a Netns, a path or a name")
        opened = Netns.open(ns) if "/" in ns else Netns.named(ns)
        try:
            with opened.enter():
                return cls()
        finally:
            opened.close()

    # -- lifetime ----------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            if self._ctx:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None

    def __enter__(self) -> "Nft":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- running -----------------------------------------------------------------------
    def _run(self, text: str, what: str, commands: Any = None, echo: bool = False) -> str:
        raw = text.encode()
        if b"\0" in raw:
            raise BadRequestError("an nft command cannot contain NUL")
        with self._lock:
            if not self._ctx:
                raise FirewallError("the nft context is closed")
            flags = NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE
            if echo:
                self._lib.nft_ctx_output_set_flags(self._ctx, flags | NFT_CTX_OUTPUT_ECHO)
            try:
                rc = self._lib.nft_run_cmd_from_buffer(self._ctx, raw)
            finally:
                if echo:
                    self._lib.nft_ctx_output_set_flags(self._ctx, flags)
            out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode(
                "utf-8", "replace")
            err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(
                "utf-8", "replace")
        if rc != 0:
            raise FirewallError(f"nft {what} failed", err or f"return code {rc}", commands)
        return out

    def run_json(self, commands: list[dict], echo: bool = False) -> dict:
        """Run ``commands`` as one ``{"nftables": [...]}`` batch: one kernel transaction.

        Either every command takes effect or none does. Returns nft's JSON output
        (empty dict when it printed nothing, as for add/delete commands). With
        ``echo`` the output repeats the add/insert commands with the kernel's handles.
        """
        if not isinstance(commands, list) or not all(isinstance(c, dict) for c in commands):
            raise BadRequestError("nft commands must be a list of dicts")
        if not commands:
            return {}
        text = json.dumps({"nftables": commands}, separators=(",", ":"))
        out = self._run(text, "batch", commands, echo)
        return json.loads(out) if out.strip() else {}

    def list_table(self, family: str, name: str) -> dict:
        """``list table FAMILY NAME`` as nft's JSON (``{"nftables": [...]}``), with handles.

        A missing table raises :class:`FirewallError`; use :meth:`table_exists` first or
        catch it.
        """
        return self.run_json([{"list": {"table": {"family": family, "name": name}}}])

    def list_table_or_none(self, family: str, name: str) -> dict | None:
        """Like :meth:`list_table` but ``None`` when the table does not exist."""
        try:
            return self.list_table(family, name)
        except FirewallError as e:
            if "No such file or directory" in e.nft_msg:
                return None
            raise
