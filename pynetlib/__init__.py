"""pynetlib: container networking for Python.

libnetwork's Container Network Model (controller, networks, endpoints, sandboxes,
drivers, IPAM) over a small C library that speaks raw netlink.
"""

from pynetlib import errors

__version__ = "0.1.0"

__all__ = ["errors", "__version__"]
