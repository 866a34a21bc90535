"""A scriptable Docker network plugin for the remote-driver tests.

A small threaded HTTP server on a unix socket. Each protocol method answers from a
handler the test sets (``plugin.on("NetworkDriver.Join", fn)``); a handler gets the
decoded request body and returns a dict (sent as JSON with 200), a :class:`Raw` reply,
:data:`HANG` (the connection stays open and silent until the plugin stops) or
:data:`DROP` (the connection is closed without a reply). Every call is recorded in
``calls`` as ``(method, body)``.
"""

from __future__ import annotations

import json
import os
import socketserver
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Callable

HANG = object()
DROP = object()


@dataclass
class Raw:
    status: int = 200
    body: bytes = b"{}"
    headers: dict = field(default_factory=lambda: {"Content-Type": "application/json"})
    send_length: bool = True        # False: no Content-Length, the body ends at close


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = False
    block_on_close = True


class FakePlugin:
    def __init__(self, socket_path: str, *, implements=("NetworkDriver",),
                 scope: str = "local") -> None:
        self.socket_path = socket_path
        self.calls: list[tuple[str, dict | None]] = []
        self.headers: list[dict] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.handlers: dict[str, Callable] = {
            "Plugin.Activate": lambda b: {"Implements": list(implements)},
            "NetworkDriver.GetCapabilities": lambda b: {"Scope": scope},
            "NetworkDriver.CreateNetwork": lambda b: {},
            "NetworkDriver.DeleteNetwork": lambda b: {},
            "NetworkDriver.CreateEndpoint": lambda b: {"Interface": None},
            "NetworkDriver.DeleteEndpoint": lambda b: {},
            "NetworkDriver.EndpointOperInfo": lambda b: {"Value": {}},
            "NetworkDriver.Join": lambda b: {},
            "NetworkDriver.Leave": lambda b: {},
        }
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def on(self, method: str, handler: Callable) -> None:
        self.handlers[method] = handler

    def methods(self) -> list[str]:
        with self._lock:
            return [m for m, _ in self.calls]

    def bodies(self, method: str) -> list[dict | None]:
        with self._lock:
            return [b for m, b in self.calls if m == method]

    # -- lifetime ---------------------------------------------------------------------
    def start(self) -> "FakePlugin":
        os.makedirs(os.path.dirname(self.socket_path), exist_ok=True)
        plugin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                plugin._serve(self)

        self._server = _Server(self.socket_path, Handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release hanging handlers, join every thread, remove the socket."""
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()         # joins the request threads
            self._thread.join()
            self._server = None
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)

    def __enter__(self) -> "FakePlugin":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- one request ------------------------------------------------------------------
    def _serve(self, req: BaseHTTPRequestHandler) -> None:
        method = req.path.lstrip("/")
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with self._lock:
            self.calls.append((method, body))
            self.headers.append(dict(req.headers))
        handler = self.handlers.get(method)
        if handler is None:
            return self._send(req, Raw(404, b"404 page not found\n",
                                       {"Content-Type": "text/plain"}))
        reply = handler(body)
        if reply is HANG:
            self.stopping.wait(60)
            req.close_connection = True
            return None
        if reply is DROP:
            req.close_connection = True
            return None
        if not isinstance(reply, Raw):
            reply = Raw(200, json.dumps(reply).encode())
        self._send(req, reply)

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, reply: Raw) -> None:
        req.send_response(reply.status)
        for k, v in reply.headers.items():
            req.send_header(k, v)
        if reply.send_length:
            req.send_header("Content-Length", str(len(reply.body)))
        req.end_headers()
        try:
            req.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass                                # the client gave up (a size cap)
        req.close_connection = True
