"""IP address management: libnetwork's ipamapi contract (API.md section 3).

:class:`Allocator` is the default IPAM driver; :class:`~pynetlib.ipam.bitmap.Bitmap` is
the C bitmap underneath it.
"""

from pynetlib.ipam.allocator import (
    GATEWAY,
    GLOBAL_DEFAULT,
    LOCAL_DEFAULT,
    REQUEST_ADDRESS_TYPE,
    SERIAL,
    Allocator,
    PoolNotFoundError,
)
from pynetlib.ipam.bitmap import Bitmap
from pynetlib.ipam.pools import GLOBAL_DEFAULT_POOLS, LOCAL_DEFAULT_POOLS, NetworkToSplit

__all__ = [
    "Allocator", "Bitmap", "NetworkToSplit", "PoolNotFoundError",
    "LOCAL_DEFAULT", "GLOBAL_DEFAULT", "REQUEST_ADDRESS_TYPE", "GATEWAY", "SERIAL",
    "LOCAL_DEFAULT_POOLS", "GLOBAL_DEFAULT_POOLS",
]
