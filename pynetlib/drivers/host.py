"""The ``host`` driver: the container shares the host's network namespace.

Callers join with ``use_default_sandbox=True``. It does what the null driver does, and
points the container's hosts and resolv.conf at the host's own files.
"""

from __future__ import annotations

from pynetlib.drivers.null import NullDriver

HOST_HOSTS = "/etc/hosts"
HOST_RESOLV_CONF = "/etc/resolv.conf"


class HostDriver(NullDriver):
    type = "host"

    def join(self, nid, eid, sbox_key, jinfo, options) -> None:
        jinfo.set_hosts_path(HOST_HOSTS)
        jinfo.set_resolv_conf_path(HOST_RESOLV_CONF)
