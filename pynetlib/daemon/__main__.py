"""``python -m pynetlib.daemon``: the same as ``pynetlib daemon``."""

from __future__ import annotations

import argparse
import sys

from pynetlib.daemon import add_daemon_arguments, run_daemon


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pynetlib.daemon",
        description="Serve the pynetlib HTTP API (and the Docker plugin protocol) on unix "
                    "sockets, with one controller.")
    add_daemon_arguments(parser)
    return run_daemon(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
