"""The bridge driver."""

from pynetlib.drivers.bridge.driver import BridgeDriver

__all__ = ["BridgeDriver"]
