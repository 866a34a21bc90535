"""``pynetlib``'s entry point: parse, choose a backend, run one command, map errors to
exit codes and one line on stderr."""

from __future__ import annotations

import os
import sys
import traceback

from pynetlib.cli import parser as cli_parser
from pynetlib.cli.failures import UsageError, exit_code, message
from pynetlib.cli.values import host_socket
from pynetlib.controller import DEFAULT_STATE_DIR

ENV_STATE_DIR = "PYNETLIB_STATE_DIR"
ENV_HOST = "PYNETLIB_HOST"


def _target(args) -> tuple[str, str]:
    """("local", state_dir) or ("daemon", socket_path). Flags beat the environment; both
    flags, or both variables and no flag, is a usage error."""
    if args.g_state_dir is not None and args.g_host is not None:
        raise UsageError("--state-dir and --host exclude each other: work on a state "
                         "directory or through the daemon, not both")
    if args.g_host is not None:
        return "daemon", host_socket(args.g_host)
    if args.g_state_dir is not None:
        return "local", args.g_state_dir
    env_dir, env_host = os.environ.get(ENV_STATE_DIR), os.environ.get(ENV_HOST)
    if env_dir and env_host:
        raise UsageError(f"both {ENV_STATE_DIR} and {ENV_HOST} are set: unset one, or "
                         "choose with --state-dir or --host")
    if env_host:
        return "daemon", host_socket(env_host)
    return "local", env_dir or DEFAULT_STATE_DIR


def _open_backend(args):
    kind, where = _target(args)
    if kind == "daemon":
        from pynetlib.cli.backend_daemon import DaemonBackend

        return DaemonBackend(where)
    from pynetlib.cli.backend_local import LocalBackend

    # Read-only commands (and audit, and reconcile itself) open without reconciling.
    return LocalBackend(where, reconcile=not args.read_only)


def _run(args) -> int:
    backend = _open_backend(args)
    try:
        return args.func(args, backend)
    finally:
        backend.close()


def _special(args) -> int | None:
    """demo and daemon: their own worlds, without the global backend options."""
    if args.command == "demo":
        if not 2 <= args.containers <= 200:
            raise UsageError("--containers must be from 2 to 200")
        from pynetlib import demo as demo_mod

        return demo_mod.run(args.containers)
    if args.command == "daemon":
        if args.g_state_dir is not None or args.g_host is not None:
            raise UsageError("the daemon takes its own options after `daemon`, e.g. "
                             "`pynetlib daemon --state-dir DIR --socket PATH`")
        from pynetlib.daemon import run_daemon

        return run_daemon(args)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser.build()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    command = getattr(args, "command_path", args.command)
    try:
        special = _special(args)
        return special if special is not None else _run(args)
    except KeyboardInterrupt:
        sys.stderr.write("pynetlib: error: interrupted\n")
        return 130
    except Exception as e:                   # noqa: BLE001 - the CLI's last line
        if debug:
            traceback.print_exc()
        sys.stderr.write(message(e, command) + "\n")
        return exit_code(e)
