"""The pynetlib daemon: one long-running controller serving the HTTP API
(docs/http-api.md) on a unix socket, and the Docker plugin protocol on another.

``pynetlib daemon`` and ``python -m pynetlib.daemon`` run it; see docs/daemon.md.
"""

from __future__ import annotations

import argparse
import sys

from pynetlib.daemon.config import ConfigError, add_daemon_arguments, config_from_args

__all__ = ["add_daemon_arguments", "run_daemon"]


def run_daemon(args: argparse.Namespace) -> int:
    """Run the daemon with options parsed by a parser that ``add_daemon_arguments``
    set up. Returns the exit status: 0 after a clean stop on SIGTERM or SIGINT, 1 when
    it could not start, 2 for options that cannot work."""
    from pynetlib.daemon import server
    from pynetlib.daemon.logs import JsonLog, route_python_logging

    log = JsonLog()
    handler = route_python_logging(log)
    try:
        return server.run(config_from_args(args), log)
    except ConfigError as e:
        print(f"pynetlib daemon: {e}", file=sys.stderr)
        return 2
    finally:
        import logging

        logging.getLogger().removeHandler(handler)
