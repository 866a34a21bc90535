"""The ``remote`` driver: network types served by plugin processes, consumed through
Docker's network plugin protocol. See docs/remote.md."""

from pynetlib.drivers.remote.activation import PLUGIN_OPTIONS, PluginActivator
from pynetlib.drivers.remote.client import ClientSettings, PluginClient
from pynetlib.drivers.remote.discovery import DEFAULT_PLUGIN_DIRS, PluginAddress, find_plugin
from pynetlib.drivers.remote.driver import RemoteDriver
from pynetlib.drivers.remote.errors import (NotANetworkDriverError, PluginCallError,
                                            PluginError, PluginNotImplementedError,
                                            PluginReplyError, PluginSpecError,
                                            PluginTimeoutError, PluginUnavailableError)

__all__ = ["PLUGIN_OPTIONS", "PluginActivator", "ClientSettings", "PluginClient",
           "DEFAULT_PLUGIN_DIRS", "PluginAddress", "find_plugin", "RemoteDriver",
           "NotANetworkDriverError", "PluginCallError", "PluginError",
           "PluginNotImplementedError", "PluginReplyError", "PluginSpecError",
           "PluginTimeoutError", "PluginUnavailableError"]
