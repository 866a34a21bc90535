"""The ``null`` driver: every operation succeeds and does nothing.

A container joined to a null network gets a sandbox with only ``lo``.
"""

from __future__ import annotations

from pynetlib.driverapi import Driver


class NullDriver(Driver):
    type = "null"

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
        pass

    def leave(self, nid: str, eid: str) -> None:
        pass
