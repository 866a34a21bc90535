"""The plugin client: one HTTP POST with a JSON body per call, over a unix socket (or a
loopback TCP address), with bounded time and size.

- Connecting has its own timeout and is retried a bounded number of times with
  exponential backoff, but only while no byte of the request has been sent: a call
  that may have had effects is never repeated.
- The whole exchange after connecting (sending, the status line, headers and body) has
  one deadline; a plugin that stops answering, or answers one byte at a time, gets the
  same limit.
- The reply is read up to a cap (1 MiB by default); a bigger one is an error and the
  connection is closed.
- A 2xx reply must be a JSON object; a non-empty ``Err`` in it is a failure with that
  text. A 404 is :class:`PluginNotImplementedError`; any other non-2xx status a
  :class:`PluginCallError` carrying the plugin's ``Err`` or body text.
"""

from __future__ import annotations

import errno
import http.client
import io
import json
import logging
import socket
import time
from dataclasses import dataclass

from pynetlib.drivers.remote.discovery import PluginAddress
from pynetlib.drivers.remote.errors import (PluginCallError, PluginNotImplementedError,
                                            PluginReplyError, PluginTimeoutError,
                                            PluginUnavailableError)
from pynetlib.errors import BadRequestError

log = logging.getLogger(__name__)

MIMETYPE = "application/vnd.docker.plugins.v1+json"
_RETRYABLE = {errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN, errno.ECONNRESET}
_HEADER_ALLOWANCE = 64 * 1024           # status line and headers, on top of the body cap
_DETAIL_MAX = 512                       # how much of a plugin's error text is kept


@dataclass(frozen=True)
class ClientSettings:
    """Limits of every plugin call (all configurable through Controller options)."""

    connect_timeout: float = 2.0        # one connection attempt
    call_timeout: float = 5.0           # the exchange after connecting
    retries: int = 3                    # further connection attempts after the first
    backoff: float = 0.05               # first pause between attempts; doubles, max 1 s
    max_reply_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "call_timeout", "backoff"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 600:
                raise BadRequestError(f"plugin {name} must be a number of seconds in (0, 600]")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or \
                not 0 <= self.retries <= 20:
            raise BadRequestError("plugin retries must be an integer from 0 to 20")
        if isinstance(self.max_reply_bytes, bool) or not isinstance(self.max_reply_bytes, int) \
                or not 1024 <= self.max_reply_bytes <= 64 << 20:
            raise BadRequestError("max_reply_bytes must be an integer from 1 KiB to 64 MiB")


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


class _TooBig(Exception):
    pass


class _Expired(Exception):
    pass


class _DeadlineReader(io.RawIOBase):
    """The socket as a raw stream whose every read honours the call's deadline and the
    byte cap, whatever http.client asks for."""

    def __init__(self, sock: socket.socket, deadline: _Deadline, cap: int) -> None:
        self._sock = sock
        self._deadline = deadline
        self._left = cap

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._left <= 0:
            raise _TooBig()
        left = self._deadline.left()
        if left <= 0:
            raise _Expired()
        self._sock.settimeout(left)
        view = memoryview(b)[:min(len(b), self._left)]
        try:
            n = self._sock.recv_into(view)
        except socket.timeout:
            raise _Expired() from None
        self._left -= n
        return n


class _SocketShim:
    """What ``http.client.HTTPResponse`` needs of a socket: ``makefile``."""

    def __init__(self, reader: _DeadlineReader) -> None:
        self._reader = reader

    def makefile(self, mode: str, *args, **kwargs):
        return io.BufferedReader(self._reader)


class PluginClient:
    """Calls one plugin. Thread-safe: every call uses its own connection."""

    def __init__(self, address: PluginAddress, settings: ClientSettings | None = None) -> None:
        self.address = address
        self.settings = settings or ClientSettings()

    @property
    def name(self) -> str:
        return self.address.name

    def call(self, method: str, body: dict | None = None) -> dict:
        """POST ``/method`` with ``body`` as JSON; the reply's JSON object."""
        payload = b"" if body is None else json.dumps(body, allow_nan=False).encode()
        request = self._request(method, payload)
        sock = self._connect(method)
        try:
            status, reply = self._exchange(sock, method, request)
        finally:
            sock.close()
        return self._decode(method, status, reply)

    # -- connection -----------------------------------------------------------------
    def _connect(self, method: str) -> socket.socket:
        s = self.settings
        pause = s.backoff
        for attempt in range(s.retries + 1):
            try:
                return self._connect_once()
            except OSError as e:
                retry = isinstance(e, socket.timeout) or e.errno in _RETRYABLE
                if not retry or attempt == s.retries:
                    what = "timed out" if isinstance(e, socket.timeout) else \
                        (e.strerror or str(e))
                    raise PluginUnavailableError(
                        self.name, method, f"cannot connect to {self.address}: {what} "
                                           f"(after {attempt + 1} attempts)") from None
                log.warning("plugin %s: cannot connect to %s (%s); retrying in %.2fs",
                            self.name, self.address, e, pause)
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
        raise AssertionError("unreachable")

    def _connect_once(self) -> socket.socket:
        a = self.address
        if a.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            target = a.path
        else:
            family = socket.AF_INET6 if ":" in a.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            target = (a.host, a.port)
        try:
            sock.settimeout(self.settings.connect_timeout)
            sock.connect(target)
        except BaseException:
            sock.close()
            raise
        return sock

    # -- one exchange ---------------------------------------------------------------
    def _request(self, method: str, payload: bytes) -> bytes:
        if not method or any(c in method for c in " /\r\n?#%"):
            raise BadRequestError(f"invalid plugin method {method!r}")
        head = (f"POST /{method} HTTP/1.1\r\n"
                f"Host: plugin\r\n"
                f"Accept: {MIMETYPE}\r\n"
                f"Content-Type: {MIMETYPE}\r\n"
                f"Content-Length: {len(payload)}\r\n"
                f"Connection: close\r\n\r\n")
        return head.encode("ascii") + payload

    def _exchange(self, sock: socket.socket, method: str, request: bytes) -> tuple[int, bytes]:
        s = self.settings
        deadline = _Deadline(s.call_timeout)
        reader = _DeadlineReader(sock, deadline, s.max_reply_bytes + _HEADER_ALLOWANCE)
        try:
            sock.settimeout(max(deadline.left(), 0.001))
            sock.sendall(request)
            resp = http.client.HTTPResponse(_SocketShim(reader), method="POST")
            resp.begin()
            length = resp.getheader("Content-Length")
            if length is not None and length.isdigit() and int(length) > s.max_reply_bytes:
                raise _TooBig()
            body = resp.read(s.max_reply_bytes + 1)
            if len(body) > s.max_reply_bytes:
                raise _TooBig()
            return resp.status, body
        except (_Expired, socket.timeout):
            raise PluginTimeoutError(self.name, method, f"no reply within "
                                                        f"{s.call_timeout:g}s") from None
        except _TooBig:
            raise PluginReplyError(self.name, method, f"reply larger than "
                                                      f"{s.max_reply_bytes} bytes") from None
        except (http.client.HTTPException, ValueError) as e:
            raise PluginReplyError(self.name, method, f"malformed HTTP reply: "
                                                      f"{type(e).__name__}: {e}") from None
        except OSError as e:
            raise PluginUnavailableError(self.name, method, f"connection failed during the "
                                                            f"call: {e.strerror or e}") from None

    # -- reply ----------------------------------------------------------------------
    def _decode(self, method: str, status: int, body: bytes) -> dict:
        if status == 404:
            raise PluginNotImplementedError(self.name, method, "not implemented (404): " +
                                            _error_text(body))
        if not 200 <= status < 300:
            raise PluginCallError(self.name, method, f"HTTP {status}: {_error_text(body)}",
                                  status)
        try:
            reply = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise PluginReplyError(self.name, method, f"reply is not valid JSON: "
                                                      f"{str(e)[:200]}") from None
        if not isinstance(reply, dict):
            raise PluginReplyError(self.name, method, "reply is not a JSON object")
        err = reply.get("Err", "")
        if not isinstance(err, str):
            raise PluginReplyError(self.name, method, "Err is not a string")
        if err:
            raise PluginCallError(self.name, method, _printable(err))
        return reply


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _printable(text: str) -> str:
    """A plugin's text, safe for a log line: printable, bounded."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean[:_DETAIL_MAX] + ("..." if len(clean) > _DETAIL_MAX else "")


def _error_text(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    try:
        d = json.loads(text)
        if isinstance(d, dict) and isinstance(d.get("Err"), str) and d["Err"]:
            text = d["Err"]
    except (ValueError, RecursionError):
        pass
    return _printable(text.strip()) or "(empty body)"
