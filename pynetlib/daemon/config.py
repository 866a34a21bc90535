"""The daemon's command-line options and their checks."""

from __future__ import annotations

import argparse
import grp
import os
from dataclasses import dataclass

from pynetlib.controller import DEFAULT_STATE_DIR
from pynetlib.netnspool import MAX_POOL_SIZE

DEFAULT_SOCKET = "/run/pynetlib/pynetlib.sock"
DEFAULT_PLUGIN_SOCKET = "/run/docker/plugins/pynetlib.sock"
DEFAULT_WORKERS = 16
DEFAULT_SHUTDOWN_TIMEOUT = 30.0


class ConfigError(Exception):
    """The options do not make a daemon that may start."""


@dataclass(frozen=True)
class DaemonConfig:
    state_dir: str = DEFAULT_STATE_DIR
    socket: str = DEFAULT_SOCKET
    socket_group: int | None = None
    plugin_socket: str | None = DEFAULT_PLUGIN_SOCKET
    tcp: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    workers: int = DEFAULT_WORKERS
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    netns_pool_size: int = 0


def add_daemon_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``pynetlib daemon`` options."""
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR, metavar="DIR",
                        help=f"the controller's state directory (default {DEFAULT_STATE_DIR})")
    parser.add_argument("--socket", default=DEFAULT_SOCKET, metavar="PATH",
                        help=f"the API's unix socket (default {DEFAULT_SOCKET}); owned by "
                             "root, mode 0600, or 0660 with --socket-group")
    parser.add_argument("--socket-group", metavar="GROUP",
                        help="a group (name or number) whose members may use the sockets: "
                             "they get mode 0660 and that group. Members can do anything "
                             "root can do through the API")
    plugin = parser.add_mutually_exclusive_group()
    plugin.add_argument("--plugin-socket", default=DEFAULT_PLUGIN_SOCKET, metavar="PATH",
                        help="where to serve the Docker plugin protocol "
                             f"(default {DEFAULT_PLUGIN_SOCKET})")
    plugin.add_argument("--no-plugin-socket", action="store_true",
                        help="do not serve the Docker plugin protocol")
    parser.add_argument("--tcp", metavar="HOST:PORT",
                        help="also listen on TCP, with TLS and client certificates only "
                             "(needs --tls-cert, --tls-key and --tls-client-ca)")
    parser.add_argument("--tls-cert", metavar="FILE", help="server certificate (PEM)")
    parser.add_argument("--tls-key", metavar="FILE", help="server private key (PEM)")
    parser.add_argument("--tls-client-ca", metavar="FILE",
                        help="CA certificates that sign the allowed clients (PEM)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, metavar="N",
                        help=f"threads for controller calls (default {DEFAULT_WORKERS})")
    parser.add_argument("--shutdown-timeout", type=float, default=DEFAULT_SHUTDOWN_TIMEOUT,
                        metavar="SECONDS",
                        help="on SIGTERM/SIGINT, how long to let requests in flight finish "
                             f"(default {DEFAULT_SHUTDOWN_TIMEOUT:g})")
    parser.add_argument("--netns-pool-size", type=int, default=0, metavar="N",
                        help="network namespaces to keep ready for new containers, made "
                             f"off the request path (0 to {MAX_POOL_SIZE}; default 0: none)")


def _group_id(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise ConfigError(f"--socket-group: no group named {text!r}") from None


def _readable(path: str, option: str) -> str:
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ConfigError(f"{option} {path}: not a readable file")
    return path


def config_from_args(args: argparse.Namespace) -> DaemonConfig:
    """Check the parsed options; raise ConfigError saying what to fix."""
    if args.workers < 1 or args.workers > 256:
        raise ConfigError("--workers must be from 1 to 256")
    if not args.shutdown_timeout >= 0:
        raise ConfigError("--shutdown-timeout must be 0 or more seconds")
    if not 0 <= args.netns_pool_size <= MAX_POOL_SIZE:
        raise ConfigError(f"--netns-pool-size must be from 0 to {MAX_POOL_SIZE}")
    tls = {"--tls-cert": args.tls_cert, "--tls-key": args.tls_key,
           "--tls-client-ca": args.tls_client_ca}
    if args.tcp is None and any(tls.values()):
        raise ConfigError("--tls-cert, --tls-key and --tls-client-ca only go with --tcp")
    if args.tcp is not None:
        missing = [opt for opt, value in tls.items() if not value]
        if missing:
            raise ConfigError(f"--tcp needs TLS with client authentication: give "
                              f"{', '.join(missing)} too (a TCP listener without TLS "
                              "client certificates is refused)")
        for opt, value in tls.items():
            _readable(value, opt)
    plugin_socket = None if args.no_plugin_socket else args.plugin_socket
    if plugin_socket is not None and os.path.abspath(plugin_socket) == \
            os.path.abspath(args.socket):
        raise ConfigError("--socket and --plugin-socket must be different paths")
    return DaemonConfig(
        state_dir=args.state_dir, socket=args.socket,
        socket_group=_group_id(args.socket_group) if args.socket_group else None,
        plugin_socket=plugin_socket, tcp=args.tcp, tls_cert=args.tls_cert,
        tls_key=args.tls_key, tls_client_ca=args.tls_client_ca, workers=args.workers,
        shutdown_timeout=args.shutdown_timeout, netns_pool_size=args.netns_pool_size)
