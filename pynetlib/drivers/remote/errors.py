"""Errors of the remote driver, each under the pynetlib category a caller branches on.

Every message names the plugin and, where there is one, the protocol method, so an
operator reading a log line knows which process to look at.
"""

from __future__ import annotations

from pynetlib.errors import (InternalError, NetworkError, NoServiceError,
                             NotImplementedByDriverError, TimeoutError, UnknownDriverError)


class PluginError(NetworkError):
    """Base of every remote-driver error: ``plugin`` and ``method`` (may be empty)."""

    def __init__(self, plugin: str, method: str, detail: str) -> None:
        self.plugin = plugin
        self.method = method
        self.detail = detail
        where = f"plugin {plugin!r}" + (f" {method}" if method else "")
        self.message = f"{where}: {detail}"
        # Not cooperative on purpose: some categories (UnknownDriverError, the
        # OSError-based TimeoutError) take other constructor arguments.
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (_rebuild, (type(self), self.__dict__))


class PluginSpecError(PluginError, NoServiceError):
    """A plugin's spec file (.spec, .json) is unreadable or names an address pynetlib
    refuses (not a unix socket or a loopback TCP address, or TLS)."""


class PluginUnavailableError(PluginError, NoServiceError):
    """The plugin could not be reached (socket gone, connection refused) after the
    bounded retries."""


class PluginTimeoutError(PluginError, TimeoutError):
    """The plugin did not answer within the call's time limit."""


class PluginCallError(PluginError, InternalError):
    """The plugin answered with a failure: a non-2xx status or a non-empty ``Err``."""

    def __init__(self, plugin: str, method: str, detail: str, status: int = 200) -> None:
        self.status = status
        super().__init__(plugin, method, detail)


class PluginNotImplementedError(PluginError, NotImplementedByDriverError):
    """The plugin answered 404: it does not implement the method."""


class PluginReplyError(PluginError, InternalError):
    """The plugin's reply was rejected: not JSON, the wrong shape, too big, or asking
    for something pynetlib refuses (a host device that is not the endpoint's own,
    addresses it had no right to choose, a gateway outside the subnet...)."""


class NotANetworkDriverError(PluginError, UnknownDriverError):
    """The plugin exists but does not implement ``NetworkDriver``."""

    def __init__(self, plugin: str, implements: list[str]) -> None:
        self.implements = implements
        PluginError.__init__(self, plugin, "Plugin.Activate",
                             f"does not implement NetworkDriver (implements {implements})")
        self.network_type = plugin


def _rebuild(cls, state):
    err = cls.__new__(cls)
    err.__dict__.update(state)
    Exception.__init__(err, state.get("message", ""))
    return err


__all__ = ["PluginError", "PluginSpecError", "PluginUnavailableError", "PluginTimeoutError",
           "PluginCallError", "PluginNotImplementedError", "PluginReplyError",
           "NotANetworkDriverError"]
