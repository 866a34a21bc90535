"""The pynetlib command line: ``pynetlib`` or ``python -m pynetlib`` (see pynetlib.cli)."""

from __future__ import annotations

import sys

from pynetlib.cli import main

if __name__ == "__main__":
    sys.exit(main())
