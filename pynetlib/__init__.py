"""pynetlib: container networking for Python.

libnetwork's Container Network Model (controller, networks, endpoints, sandboxes,
drivers, IPAM) over a small C library that speaks raw netlink.
"""

from pynetlib import errors, netlabel
from pynetlib.batch import AttachSpec
from pynetlib.controller import Controller
from pynetlib.endpoint import ContainerData, Endpoint, EndpointInfo, InterfaceInfo
from pynetlib.network import Network
from pynetlib.sandbox import Sandbox
from pynetlib.types import PortBinding, TransportPort

__version__ = "0.1.0"

__all__ = [
    "AttachSpec",
    "errors", "netlabel", "Controller", "Network", "Endpoint", "Sandbox", "ContainerData",
    "EndpointInfo", "InterfaceInfo", "PortBinding", "TransportPort", "__version__",
]
