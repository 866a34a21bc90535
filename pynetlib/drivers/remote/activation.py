"""Lazy activation: a network type with no registered driver is looked up as a plugin.

The controller asks :meth:`PluginActivator.activate` when it meets a type it has no
driver for (``new_network``, or a network loaded from the store). If discovery finds a
plugin of that name: ``/Plugin.Activate`` must list ``NetworkDriver``;
``/NetworkDriver.GetCapabilities`` must give Scope ``local`` or ``global``; then a
:class:`RemoteDriver` is registered for the type. Any failure registers nothing.
Activation of one name is serialised: threads asking for the same new type wait for
the first one and share its driver.
"""

from __future__ import annotations

import logging
import threading

from pynetlib.drivers.remote import replies
from pynetlib.drivers.remote.client import ClientSettings, PluginClient
from pynetlib.drivers.remote.discovery import (DEFAULT_PLUGIN_DIRS, check_plugin_dirs,
                                               find_plugin, valid_plugin_name)
from pynetlib.drivers.remote.driver import RemoteDriver
from pynetlib.drivers.remote.errors import NotANetworkDriverError
from pynetlib.errors import ActiveRegistrationError, NetworkError, UnknownDriverError

log = logging.getLogger(__name__)

# Controller options this module reads (and the controller accepts).
PLUGIN_OPTIONS = frozenset({"plugin_dirs", "plugin_connect_timeout", "plugin_call_timeout",
                            "plugin_retries"})
NETWORK_DRIVER = "NetworkDriver"


class PluginActivator:
    def __init__(self, dirs=DEFAULT_PLUGIN_DIRS, settings: ClientSettings | None = None) -> None:
        self.dirs = check_plugin_dirs(list(dirs))
        self.settings = settings or ClientSettings()
        # Striped by name: callers choose type names, so no per-name lock is kept.
        self._locks = [threading.Lock() for _ in range(64)]
        self._activated: dict[str, RemoteDriver] = {}     # activated plugins, by name

    @classmethod
    def from_options(cls, options: dict) -> "PluginActivator":
        """From the controller's options: ``plugin_dirs`` (default Docker's three),
        ``plugin_connect_timeout``, ``plugin_call_timeout`` (seconds),
        ``plugin_retries`` (further connection attempts)."""
        defaults = ClientSettings()
        settings = ClientSettings(
            connect_timeout=options.get("plugin_connect_timeout", defaults.connect_timeout),
            call_timeout=options.get("plugin_call_timeout", defaults.call_timeout),
            retries=options.get("plugin_retries", defaults.retries))
        dirs = options.get("plugin_dirs")
        return cls(DEFAULT_PLUGIN_DIRS if dirs is None else dirs, settings)

    def _lock_for(self, name: str) -> threading.Lock:
        return self._locks[hash(name) % len(self._locks)]

    def activate(self, network_type: str, ctrl) -> RemoteDriver:
        """The driver for ``network_type``, activating its plugin if needed; raises
        :class:`UnknownDriverError` when there is no such plugin."""
        if not valid_plugin_name(network_type):
            raise UnknownDriverError(network_type)
        with self._lock_for(network_type):
            registered = ctrl._drivers.get(network_type)
            if registered is not None:
                return registered            # activated by another thread meanwhile
            driver = self._activated.get(network_type)
            if driver is None:
                driver = self._activated[network_type] = self._start(network_type, ctrl)
        # Registered outside the activation lock: a caller may hold the controller's
        # lock while it waits for ours (Controller._handle), and registering takes it.
        try:
            ctrl.register_driver(network_type, driver)
        except ActiveRegistrationError:     # by another thread, or by hand meanwhile
            return ctrl._drivers[network_type]
        return driver

    def _start(self, network_type: str, ctrl) -> RemoteDriver:
        address = find_plugin(network_type, self.dirs)
        if address is None:
            raise UnknownDriverError(network_type)
        client = PluginClient(address, self.settings)
        implements = replies.activate(network_type, client.call("Plugin.Activate", None))
        if NETWORK_DRIVER not in implements:
            raise NotANetworkDriverError(network_type, implements)
        caps = replies.capabilities(network_type,
                                    client.call("NetworkDriver.GetCapabilities", None))
        log.info("activated network plugin %s at %s (scope %s)", network_type, address,
                 caps.scope)
        return RemoteDriver(network_type, client, caps, store=ctrl.store,
                            host_socket=ctrl.host_socket)

    def activate_stored(self, ctrl) -> None:
        """At controller start: activate the plugins of stored networks whose type has
        no driver. Failures are logged; those networks stay hidden until a later
        activation (as networks of unknown types always are)."""
        types = {r[0] for r in ctrl.store.read().execute("SELECT DISTINCT type FROM networks")}
        for t in sorted(types - set(ctrl._drivers)):
            try:
                self.activate(t, ctrl)
            except NetworkError as e:
                log.warning("networks of type %r: plugin not activated: %s", t, e)
