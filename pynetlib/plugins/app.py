"""The aiohttp application serving Docker's plugin protocol (network driver and IPAM).

``build_plugin_app(ctrl, state_dir)`` returns the application; the daemon runs it on
the plugin socket (``/run/docker/plugins/pynetlib.sock`` by default). Every request is
``POST /<Interface>.<Method>`` with a JSON body:

* ``/Plugin.Activate`` -> ``{"Implements": ["NetworkDriver", "IpamDriver"]}``;
* ``/NetworkDriver.*`` and ``/IpamDriver.*`` (see ``served_network`` and ``served_ipam``);
* any other path -> 404, another HTTP method on a known path -> 405;
* a body that does not decode as the method's request -> 400 (413 when too large) with
  ``{"Err": ...}``; a request that decodes but fails -> 200 with ``{"Err": ...}``, as
  ``libnetwork/docs/remote.md`` asks; an unexpected failure -> 500 with ``{"Err": ...}``.

Replies carry ``Content-Type: application/vnd.docker.plugins.v1+json``. The controller's
calls block on the kernel and the store, so they run in the application's thread pool,
never on the event loop; the pool is shut down with the application.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time

from aiohttp import web

from pynetlib.errors import NetworkError
from pynetlib.plugins import served_ipam, served_network
from pynetlib.plugins.wire import (CONTENT_TYPE, MAX_BODY, ProtocolError, decode_body,
                                   parse_fields, reply_body)

log = logging.getLogger(__name__)

IMPLEMENTS = ["NetworkDriver", "IpamDriver"]
WORKERS = 8

STATE_DIR = web.AppKey("state_dir", str)
_EXECUTOR = web.AppKey("executor", concurrent.futures.ThreadPoolExecutor)
_HANDLERS = web.AppKey("handlers", dict)


def _reply(value: dict, status: int = 200) -> web.Response:
    return web.Response(body=reply_body(value), status=status, content_type=CONTENT_TYPE)


def _handlers(network: served_network.ServedNetworkDriver,
              ipam: served_ipam.ServedIpam) -> dict:
    """Path -> (request spec, callable taking the checked request, returning the reply)."""
    table = {"/Plugin.Activate": ({}, lambda req: {"Implements": list(IMPLEMENTS)})}
    for method, spec in served_network.REQUESTS.items():
        table[f"/NetworkDriver.{method}"] = (spec, getattr(network, method))
    for method, spec in served_ipam.REQUESTS.items():
        table[f"/IpamDriver.{method}"] = (spec, getattr(ipam, method))
    return table


def _call(fn, spec: dict, name: str, raw: bytes) -> tuple[dict, int]:
    """Decode, check and run one call (in a worker thread). Returns (reply, status)."""
    try:
        req = parse_fields(decode_body(raw), spec, name)
        return fn(req), 200
    except ProtocolError as e:
        return {"Err": str(e)}, e.status
    except NetworkError as e:
        return {"Err": str(e)}, 200
    except Exception as e:                      # a bug or the kernel: still an answer
        log.exception("plugin call %s failed", name)
        return {"Err": f"internal error: {type(e).__name__}: {e}"}, 500


async def _dispatch(request: web.Request) -> web.Response:
    path = request.path
    entry = request.app[_HANDLERS].get(path)
    if entry is None:
        return _reply({"Err": f"unknown plugin method {path}"}, 404)
    if request.method != "POST":
        return _reply({"Err": f"{path} takes POST"}, 405)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _reply({"Err": f"request body over {MAX_BODY} bytes"}, 413)
    except (ConnectionError, asyncio.IncompleteReadError) as e:
        return _reply({"Err": f"reading the request: {e}"}, 400)
    spec, fn = entry
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    reply, status = await loop.run_in_executor(request.app[_EXECUTOR], _call, fn, spec,
                                               path.lstrip("/"), raw)
    elapsed_ms = (time.monotonic() - started) * 1000
    log.info("plugin %s -> %d in %.1f ms%s", path, status, elapsed_ms,
             f": {reply['Err']}" if "Err" in reply else "",
             extra={"plugin_method": path.lstrip("/"), "status": status,
                    "duration_ms": round(elapsed_ms, 3), "error": reply.get("Err")})
    return _reply(reply, status)


def build_plugin_app(ctrl, state_dir: str) -> web.Application:
    """The Docker plugin application for ``ctrl``.

    ``state_dir`` is the daemon's state directory; the plugin keeps its records (the
    IPAM pools and addresses handed to Docker, the Docker networks and endpoints) in
    the controller's store there, so a restart of the daemon keeps them."""
    app = web.Application(client_max_size=MAX_BODY)
    app[STATE_DIR] = state_dir
    network = served_network.ServedNetworkDriver(ctrl)
    ipam = served_ipam.ServedIpam(ctrl)
    app[_HANDLERS] = _handlers(network, ipam)
    app[_EXECUTOR] = concurrent.futures.ThreadPoolExecutor(
        max_workers=WORKERS, thread_name_prefix="pynetlib-plugin")

    async def _shutdown(app: web.Application) -> None:
        # Waits for the calls in flight without blocking the loop (other servers of the
        # daemon may share it).
        await asyncio.to_thread(app[_EXECUTOR].shutdown, True)

    app.on_cleanup.append(_shutdown)
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app
