"""Docker's plugin protocol, served: pynetlib as a Docker engine's network and IPAM driver.

:func:`pynetlib.plugins.app.build_plugin_app` builds the aiohttp application that the
daemon serves on ``/run/docker/plugins/pynetlib.sock``. See ``docs/plugins.md``.
"""

DEFAULT_SOCKET = "/run/docker/plugins/pynetlib.sock"
