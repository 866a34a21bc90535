"""The aiohttp applications: the HTTP API on the controller, and the middlewares that
every listener shares (request logs, the peer-credential check, the shutdown gate,
errors as JSON)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import traceback
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web

from pynetlib.controller import Controller
from pynetlib.daemon import openapi
from pynetlib.daemon.handlers import Call
from pynetlib.daemon.logs import JsonLog
from pynetlib.daemon.peercred import AccessPolicy, peer_of
from pynetlib.daemon.routes import ROUTES, Route
from pynetlib.daemon.status import error_body, status_of
from pynetlib.daemon.validation import MAX_BODY, check, decode_body
from pynetlib.errors import BadRequestError, NoServiceError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_JSON = "application/json"
PLUGIN_CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"


@dataclass
class ServerState:
    """Shared by every listener: ``closing`` once the daemon starts to stop, and how
    many admitted requests are still being handled."""

    closing: bool = False
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    async def drained(self, timeout: float) -> bool:
        """Wait until no admitted request is left (True), or ``timeout`` passed."""
        try:
            await asyncio.wait_for(self.idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False


def json_reply(value: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=json.dumps(value).encode(), status=status,
                        content_type=_JSON, headers=headers)


def error_reply(status: int, category: str, message: str,
                headers: dict | None = None) -> web.Response:
    return json_reply(error_body(message, category), status, headers)


def plugin_error_reply(status: int, category: str, message: str,
                       headers: dict | None = None) -> web.Response:
    """An error in the Docker plugin protocol's shape: ``{"Err": ...}``."""
    return web.Response(body=json.dumps({"Err": message}).encode(), status=status,
                        content_type=PLUGIN_CONTENT_TYPE, headers=headers)


ErrorReply = Callable[..., web.Response]


# -- middlewares ---------------------------------------------------------------------------

def _listener_kind(request: web.Request) -> str:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None:
        return "closed"
    return "unix" if sock.family == socket.AF_UNIX else "tcp"


def access_log(log: JsonLog, listener: str) -> Callable:
    """One JSON line per request: what, answered how, how fast, for whom."""
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.monotonic()
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            peer = request.get("peer")
            fields = {"listener": listener, "transport": _listener_kind(request),
                      "method": request.method, "path": request.path,
                      "status": status,
                      "duration_ms": round((time.monotonic() - start) * 1000, 3),
                      "peer_uid": peer.uid if peer else None,
                      "peer_pid": peer.pid if peer else None}
            if request.query_string:
                fields["query"] = request.query_string
            if request.get("peer_cert"):
                fields["peer_cert"] = request["peer_cert"]
            log.event("request", **fields)
    return middleware


def _cert_subject(request: web.Request) -> str:
    cert = request.transport.get_extra_info("peercert") if request.transport else None
    if not cert:
        return ""
    parts = [f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn]
    return ",".join(parts)


def peer_check(policy: AccessPolicy, log: JsonLog, listener: str,
               refuse: ErrorReply = error_reply) -> Callable:
    """Refuse a unix-socket peer that is neither root nor in the configured group. (TCP
    peers were authenticated by their TLS client certificate.)"""
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is None:
            return refuse(403, "Forbidden", "the connection is gone")
        if sock.family != socket.AF_UNIX:
            request["peer_cert"] = _cert_subject(request)
            return await handler(request)
        try:
            peer = peer_of(sock)
        except OSError as e:
            log.event("refused", listener=listener, reason=f"no peer credentials: {e}")
            return refuse(403, "Forbidden", "the peer's credentials are unknown")
        request["peer"] = peer
        if not policy.allows(peer):
            reason = policy.reason(peer)
            log.event("refused", listener=listener, uid=peer.uid, gid=peer.gid,
                      pid=peer.pid, reason=reason)
            return refuse(403, "Forbidden", f"permission denied: {reason}")
        return await handler(request)
    return middleware


def shutdown_gate(state: ServerState, refuse: ErrorReply = error_reply) -> Callable:
    """Admit requests (and count them) until the daemon starts to stop; then 503."""
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if state.closing:
            return refuse(503, "NoService", "the daemon is shutting down")
        state.in_flight += 1
        state.idle.clear()
        try:
            return await handler(request)
        finally:
            state.in_flight -= 1
            if state.in_flight == 0:
                state.idle.set()
    return middleware


def errors_as_json(log: JsonLog) -> Callable:
    """Every failure becomes ``{"message", "category"}`` with the status of its category."""
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return error_reply(404, "NotFound", f"no route {request.method} {request.path}")
        except web.HTTPMethodNotAllowed as e:
            allowed = ", ".join(sorted(e.allowed_methods))
            return error_reply(405, "BadRequest",
                               f"{request.method} is not allowed on {request.path}; "
                               f"allowed: {allowed}", headers={"Allow": allowed})
        except web.HTTPException as e:
            category = "BadRequest" if 400 <= e.status < 500 else "Internal"
            status = 400 if e.status == 413 else e.status
            return error_reply(status, category, e.text or e.reason)
        except asyncio.CancelledError:
            raise
        except Exception as e:                   # noqa: BLE001 - the API's last resort
            status, category = status_of(e)
            if status == 500:
                log.event("error", method=request.method, path=request.path,
                          error=f"{type(e).__name__}: {e}",
                          traceback=traceback.format_exc())
            return error_reply(status, category, str(e) or type(e).__name__)
    return middleware


# -- request decoding ------------------------------------------------------------------

def _params(route: Route, request: web.Request) -> dict[str, str]:
    out = {}
    for name, schema in route.params.items():
        value = request.match_info[name]
        check(value, schema, f"path parameter {name}")
        out[name] = value
    return out


def _query(route: Route, request: web.Request) -> dict[str, str]:
    out = {}
    for name in request.query:
        if name not in route.query:
            known = ", ".join(route.query) or "none"
            raise BadRequestError(f"unknown query parameter {name!r} (known: {known})")
        values = request.query.getall(name)
        if len(values) > 1:
            raise BadRequestError(f"query parameter {name} given more than once")
        check(values[0], route.query[name], f"query parameter {name}")
        out[name] = values[0]
    return out


async def _read_limited(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BadRequestError(f"body: larger than {MAX_BODY} bytes")
    chunks, total = [], 0
    while True:
        chunk = await request.content.read(MAX_BODY + 1 - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > MAX_BODY:
            raise BadRequestError(f"body: larger than {MAX_BODY} bytes")
    return b"".join(chunks)


async def _body(route: Route, request: web.Request) -> Any:
    raw = await _read_limited(request)
    if route.body is None:
        if raw.strip():
            raise BadRequestError(f"{route.method} {route.path} takes no body")
        return None
    if "Content-Type" in request.headers and request.content_type != _JSON:
        raise BadRequestError(f"body: Content-Type must be {_JSON}, "
                              f"not {request.content_type}")
    if not raw.strip():
        raise BadRequestError("body: a JSON object is required")
    value = decode_body(raw)
    check(value, {"$ref": f"#/components/schemas/{route.body}"}, "body")
    return value


def _controller_handler(route: Route, ctrl: Controller, executor: Executor) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        call = Call(_params(route, request), _query(route, request),
                    await _body(route, request))
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(executor, route.handler, ctrl, call)
        except RuntimeError:                     # the pool was shut down
            raise NoServiceError("the daemon is shutting down") from None
        return json_reply(await future, route.status)
    return handle


def _static_handler(route: Route, value: Any) -> Handler:
    body = json.dumps(value).encode()

    async def handle(request: web.Request) -> web.StreamResponse:
        _params(route, request)
        _query(route, request)
        await _body(route, request)
        return web.Response(body=body, status=route.status, content_type=_JSON)
    return handle


def build_api_app(ctrl: Controller, executor: Executor, state: ServerState,
                  policy: AccessPolicy, log: JsonLog) -> web.Application:
    """The HTTP API of docs/http-api.md on ``ctrl``."""
    app = web.Application(middlewares=[access_log(log, "api"), peer_check(policy, log, "api"),
                                       shutdown_gate(state), errors_as_json(log)],
                          client_max_size=MAX_BODY)
    static = {"openapi": openapi.document(), "ping": "OK"}
    for route in ROUTES:
        if route.handler is None:
            handler = _static_handler(route, static[route.operation_id])
        else:
            handler = _controller_handler(route, ctrl, executor)
        app.router.add_route(route.method, route.path, handler)
    return app


def guard_plugin_app(app: web.Application, state: ServerState, policy: AccessPolicy,
                     log: JsonLog) -> None:
    """Give the plugin protocol's app the same request logs, peer check and shutdown
    (refusals in the protocol's own ``{"Err": ...}`` shape)."""
    app.middlewares.insert(0, shutdown_gate(state, plugin_error_reply))
    app.middlewares.insert(0, peer_check(policy, log, "plugin", plugin_error_reply))
    app.middlewares.insert(0, access_log(log, "plugin"))
