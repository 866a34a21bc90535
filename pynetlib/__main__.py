"""The pynetlib command line: ``pynetlib`` or ``python -m pynetlib``."""

from __future__ import annotations

import argparse
import sys

from pynetlib import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pynetlib",
                                     description="Container networking for Python.")
    parser.add_argument("--version", action="version", version=f"pynetlib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build a small container network in a private "
                                       "namespace, check it, time it, remove it")
    demo.add_argument("--containers", type=int, default=20, metavar="N",
                      help="how many containers (2..200, default 20)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if not 2 <= args.containers <= 200:
            parser.error("--containers must be from 2 to 200")
        from pynetlib import demo as demo_mod

        return demo_mod.run(args.containers)
    return 2


if __name__ == "__main__":
    sys.exit(main())
