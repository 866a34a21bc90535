"""``/IpamDriver.*``: pynetlib's allocator as a Docker engine's IPAM driver.

The pools and addresses handed to Docker live in the controller's store, under their
own ``kv`` owner (:data:`STORE_OWNER`): a separate IPAM instance with the same logic
and persistence as the controller's (``pynetlib.ipam.persistent``), so a daemon restart
keeps them and they never collide with the pools of the controller's own bridge
networks. Pools Docker asks for must not overlap a pool the controller holds for a
network Docker did not make through this plugin, and a pool picked by default avoids
the controller's pools as well as the host's routes.
"""

from __future__ import annotations

import ipaddress

from pynetlib.errors import BadRequestError, PoolOverlapError
from pynetlib.ipam import GLOBAL_DEFAULT, LOCAL_DEFAULT
from pynetlib.ipam.persistent import PersistentAllocator
from pynetlib.ipam.routes import proc_routes
from pynetlib.plugins.wire import Field

STORE_OWNER = "ipam.docker"

REQUESTS = {
    "GetCapabilities": {},
    "GetDefaultAddressSpaces": {},
    "RequestPool": {"AddressSpace": Field("str", required=True), "Pool": Field("str"),
                    "SubPool": Field("str"), "Options": Field("strmap", nullable=True),
                    "V6": Field("bool")},
    "ReleasePool": {"PoolID": Field("str", required=True)},
    "RequestAddress": {"PoolID": Field("str", required=True), "Address": Field("str"),
                       "Options": Field("strmap", nullable=True)},
    "ReleaseAddress": {"PoolID": Field("str", required=True),
                       "Address": Field("str", required=True)},
}


def _pool_network(pool_id: str):
    """The subnet of a pool id ``Space/a.b.c.d/len[/sub/len]``, None if malformed."""
    parts = pool_id.split("/")
    if len(parts) < 3:
        return None
    try:
        return ipaddress.ip_network(f"{parts[1]}/{parts[2]}")
    except ValueError:
        return None


class ServedIpam:
    """The IPAM half of the plugin: one method per protocol call, dict in, dict out."""

    def __init__(self, ctrl) -> None:
        self._ctrl = ctrl
        self.ipam = PersistentAllocator(ctrl.store, owner=STORE_OWNER,
                                        routes=self._taken_networks)

    def _controller_networks(self) -> list:
        pools = getattr(self._ctrl.ipam, "pools", None)
        if pools is None:
            return []
        out = []
        for pid in pools():
            if pid.startswith(LOCAL_DEFAULT + "/"):
                net = _pool_network(pid)
                if net is not None:
                    out.append(net)
        return out

    def _taken_networks(self) -> list:
        """What a default pool must not overlap: host routes and the controller's pools."""
        return list(proc_routes()) + self._controller_networks()

    # -- calls ----------------------------------------------------------------------
    def GetCapabilities(self, req: dict) -> dict:
        return {"RequiresMACAddress": False, "RequiresRequestReplay": False}

    def GetDefaultAddressSpaces(self, req: dict) -> dict:
        local, global_ = self.ipam.default_address_spaces()
        return {"LocalDefaultAddressSpace": local, "GlobalDefaultAddressSpace": global_}

    def RequestPool(self, req: dict) -> dict:
        space = req["AddressSpace"]
        if space not in (LOCAL_DEFAULT, GLOBAL_DEFAULT):
            raise BadRequestError(f"unknown address space {space!r}; this driver has "
                                  f"{LOCAL_DEFAULT} and {GLOBAL_DEFAULT}")
        pool = req["Pool"] or None
        sub_pool = req["SubPool"] or None
        v6 = bool(req["V6"])
        if pool is not None:
            self._check_not_controller_pool(pool)
        pool_id, net, data = self.ipam.request_pool(space, pool, sub_pool,
                                                    dict(req["Options"] or {}), v6)
        return {"PoolID": pool_id, "Pool": str(net), "Data": dict(data)}

    def _check_not_controller_pool(self, pool: str) -> None:
        try:
            net = ipaddress.ip_network(pool, strict=True)
        except ValueError:
            return                    # the allocator reports the malformed pool
        for other in self._controller_networks():
            if other.version == net.version and other.overlaps(net):
                raise PoolOverlapError(net, other, f"pool {net} overlaps {other}, a pool "
                                       "of a pynetlib network")

    def ReleasePool(self, req: dict) -> dict:
        self.ipam.release_pool(req["PoolID"])
        return {}

    def RequestAddress(self, req: dict) -> dict:
        addr = self.ipam.request_address(req["PoolID"], req["Address"] or None,
                                         dict(req["Options"] or {}))
        return {"Address": str(addr), "Data": {}}

    def ReleaseAddress(self, req: dict) -> dict:
        if not req["Address"]:
            raise BadRequestError("ReleaseAddress needs the Address to release")
        self.ipam.release_address(req["PoolID"], req["Address"])
        return {}
