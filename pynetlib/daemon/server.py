"""Running the daemon: its listeners, one controller, the thread pool, and a graceful
stop on SIGTERM or SIGINT (stop accepting, let requests in flight finish within the
shutdown timeout, wait for the controller calls still running, close the controller,
remove the socket files)."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web

from pynetlib.controller import Controller
from pynetlib.daemon.app import ServerState, build_api_app, guard_plugin_app
from pynetlib.daemon.config import ConfigError, DaemonConfig
from pynetlib.daemon.listeners import (ListenerError, UnixListener, parse_host_port,
                                       tls_context, unix_listener)
from pynetlib.daemon.logs import JsonLog
from pynetlib.daemon.peercred import AccessPolicy
from pynetlib.errors import NetworkError

_CANCEL_AFTER = 0.1


@dataclass
class Listeners:
    api: UnixListener | None = None
    plugin: UnixListener | None = None
    tcp: tuple[str, int] | None = None
    tls: ssl.SSLContext | None = None

    def remove(self) -> None:
        for listener in (self.api, self.plugin):
            if listener is not None:
                listener.remove()


def _plugin_app_factory(cfg: DaemonConfig):
    if cfg.plugin_socket is None:
        return None
    try:
        from pynetlib.plugins.app import build_plugin_app
    except ImportError as e:
        raise ConfigError(f"this pynetlib has no Docker plugin protocol server ({e}); "
                          "start with --no-plugin-socket") from None
    return build_plugin_app


def _open_listeners(cfg: DaemonConfig) -> Listeners:
    out = Listeners()
    if cfg.tcp is not None:
        out.tcp = parse_host_port(cfg.tcp)
        out.tls = tls_context(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca)
    try:
        out.api = unix_listener(cfg.socket, cfg.socket_group)
        if cfg.plugin_socket is not None:
            out.plugin = unix_listener(cfg.plugin_socket, cfg.socket_group)
    except BaseException:
        out.remove()
        raise
    return out


async def _start_runner(app: web.Application) -> web.AppRunner:
    # The daemon waits for requests in flight itself (ServerState.drained); whatever
    # is left after that wait aiohttp cancels almost at once (0 would mean "never").
    runner = web.AppRunner(app, handle_signals=False, access_log=None,
                           shutdown_timeout=_CANCEL_AFTER)
    await runner.setup()
    return runner


async def _stop(state: ServerState, listeners: Listeners, sites: list[web.BaseSite],
                runners: list[web.AppRunner], timeout: float, log: JsonLog) -> None:
    """Stop taking work: the socket files go at once (no new client can connect) and
    every new request is answered 503; let the admitted requests finish for up to
    ``timeout`` seconds; then close the listeners and every connection.

    The listening sockets stay open until the end on purpose: asyncio (3.11) loses a
    connection accepted in the same moment as its server is closed, and that client
    would hang; while the server is open, every accepted client gets an answer."""
    state.closing = True
    for listener in (listeners.api, listeners.plugin):
        if listener is not None:
            listener.unlink()
    if not await state.drained(timeout):
        log.event("shutdown_timeout", in_flight=state.in_flight, timeout=timeout)
    for site in sites:
        await site.stop()
    await asyncio.gather(*(r.cleanup() for r in runners), return_exceptions=True)


async def _serve(cfg: DaemonConfig, ctrl: Controller, listeners: Listeners, log: JsonLog,
                 plugin_factory) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        if stop.is_set():
            log.event("signal", signal=sig.name, note="already stopping")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    policy = AccessPolicy(cfg.socket_group)
    state = ServerState()
    executor = ThreadPoolExecutor(cfg.workers, thread_name_prefix="pynetlib-api")
    runners: list[web.AppRunner] = []
    sites: list[web.BaseSite] = []

    async def serve_on(runner: web.AppRunner, site: web.BaseSite) -> None:
        sites.append(site)
        await site.start()

    try:
        api = await _start_runner(build_api_app(ctrl, executor, state, policy, log))
        runners.append(api)
        await serve_on(api, web.SockSite(api, listeners.api.sock))
        if listeners.tcp is not None:
            host, port = listeners.tcp
            await serve_on(api, web.TCPSite(api, host, port, ssl_context=listeners.tls))
        if plugin_factory is not None:
            app = plugin_factory(ctrl, cfg.state_dir)
            guard_plugin_app(app, state, policy, log)
            plugin = await _start_runner(app)
            runners.append(plugin)
            await serve_on(plugin, web.SockSite(plugin, listeners.plugin.sock))
        log.event("start", pid=os.getpid(), socket=listeners.api.path,
                  plugin_socket=listeners.plugin.path if listeners.plugin else None,
                  tcp=cfg.tcp, state_dir=ctrl.state_dir, workers=cfg.workers,
                  socket_group=cfg.socket_group)
        await stop.wait()
        log.event("stopping", signal=received[0] if received else None,
                  shutdown_timeout=cfg.shutdown_timeout)
    finally:
        await _stop(state, listeners, sites, runners, cfg.shutdown_timeout, log)
        # Handlers cut off by the timeout may have left controller calls running.
        await loop.run_in_executor(None, lambda: executor.shutdown(wait=True))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


def run(cfg: DaemonConfig, log: JsonLog) -> int:
    """Serve until SIGTERM or SIGINT; 0 after a clean stop, 1 if the daemon could not
    start. Raises ConfigError for options that cannot work."""
    if os.geteuid() != 0:
        raise ConfigError("the daemon must run as root (it changes network namespaces "
                          "and devices)")
    plugin_factory = _plugin_app_factory(cfg)
    try:
        listeners = _open_listeners(cfg)
    except ListenerError as e:
        log.event("fatal", message=str(e))
        return 1
    ctrl = None
    try:
        try:
            ctrl = Controller(cfg.state_dir, netns_pool_size=cfg.netns_pool_size)
        except (NetworkError, OSError) as e:
            log.event("fatal", message=f"cannot open the controller on {cfg.state_dir}: {e}")
            return 1
        try:
            status = asyncio.run(_serve(cfg, ctrl, listeners, log, plugin_factory))
        except OSError as e:                  # e.g. the TCP address is in use
            log.event("fatal", message=f"cannot serve: {e}")
            return 1
    finally:
        if ctrl is not None:
            ctrl.close()
        listeners.remove()
    log.event("stop", pid=os.getpid(), status=status)
    return status
