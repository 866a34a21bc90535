"""The ``pynetlib`` command line: networks, endpoints, joins, sandboxes, audit and
reconcile, worked either directly on a state directory (``--state-dir``) or through a
running daemon (``--host unix:///path.sock``).

``main`` is the entry point; ``pynetlib.__main__`` calls it.
"""

from pynetlib.cli.app import main

__all__ = ["main"]
