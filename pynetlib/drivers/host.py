"""The ``host`` driver: the container shares the host's network namespace.

Callers join with ``use_default_sandbox=True``; the only work is pointing the
container's hosts file at the host's own ``/etc/hosts``.
"""

from __future__ import annotations

from pynetlib.driverapi import Driver

HOST_HOSTS = "/etc/hosts"
HOST_RESOLV_CONF = "/etc/resolv.conf"


class HostDriver(Driver):
    type = "host"

    def config(self, options: dict) -> None:
        pass

    def create_network(self, nid: str, options: dict) -> None:
        pass

    def delete_network(self, nid: str) -> None:
        pass

    def create_endpoint(self, nid, eid, ep_info, options) -> None:
        pass

    def delete_endpoint(self, nid: str, eid: str) -> None:
        pass

    def endpoint_oper_info(self, nid: str, eid: str) -> dict:
        return {}

    def join(self, nid, eid, sbox_key, jinfo, options) -> None:
        jinfo.set_hosts_path(HOST_HOSTS)
        jinfo.set_resolv_conf_path(HOST_RESOLV_CONF)

    def leave(self, nid: str, eid: str) -> None:
        pass
