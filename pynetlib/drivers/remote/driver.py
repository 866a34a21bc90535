"""The remote driver: a network type served by a plugin process over Docker's plugin
protocol (``/NetworkDriver.*``), with every reply checked before it is used.

Like every driver it sees ids and the driver API only. Its own state is one record per
endpoint (kv rows of owner ``remote``): the host's ifindex baseline taken just before
``CreateEndpoint`` (see ``hostdevices``), the endpoint's addresses (to check gateways at
``Join``), the port options for external connectivity, and whether that is programmed.

Rollbacks follow libnetwork's remote driver, and go further where a reply is unusable:
- ``CreateEndpoint`` answered with addresses or a MAC although pynetlib supplied them
  -> ``DeleteEndpoint``, the create fails;
- a ``Join`` reply that is rejected (device not the endpoint's own, bad prefix, gateway
  outside the subnet, malformed, too big) or that never comes -> ``Leave``, the join
  fails and nothing of the host is moved;
- a malformed or missing reply to ``CreateNetwork``/``CreateEndpoint`` -> the matching
  delete, since the plugin may have done the work.
A reply with ``Err`` means the plugin failed and undid its own work: nothing is sent.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from typing import Callable

from pynetlib import netlabel
from pynetlib.driverapi import Driver
from pynetlib.drivers.remote import hostdevices, replies
from pynetlib.drivers.remote.client import PluginClient
from pynetlib.drivers.remote.errors import (PluginError, PluginNotImplementedError,
                                            PluginReplyError, PluginTimeoutError)
from pynetlib.drivers.remote.wire import to_wire
from pynetlib.errors import BadRequestError, NotImplementedByDriverError
from pynetlib.store import dumps, loads

log = logging.getLogger(__name__)
OWNER = "remote"
_UNDO_ON = (PluginTimeoutError, PluginReplyError)
_PORT_OPTIONS = (netlabel.PORT_MAP, netlabel.EXPOSED_PORTS)


class RemoteDriver(Driver):
    """A driver whose work is done by plugin ``client.name``."""

    def __init__(self, network_type: str, client: PluginClient,
                 capabilities: replies.Capabilities, *, store=None,
                 host_socket: Callable | None = None) -> None:
        self.type = network_type
        self.client = client
        self.capabilities = capabilities
        self._store = store
        self._host_socket = host_socket
        self._memory: dict[str, dict] = {}          # records when there is no store
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<RemoteDriver {self.type} at {self.client.address}>"

    # -- calls ------------------------------------------------------------------------
    def _call(self, method: str, body: dict) -> dict:
        return self.client.call("NetworkDriver." + method, body)

    def _call_or_undo(self, method: str, body: dict, undo: str) -> dict:
        """A call whose missing or unusable reply is followed by ``undo`` (the plugin
        may have done the work before its reply went wrong)."""
        try:
            return self._call(method, body)
        except _UNDO_ON:
            self._undo(undo, body)
            raise

    def _undo(self, method: str, body: dict) -> None:
        keep = ("NetworkID", "EndpointID")
        try:
            self._call(method, {k: body[k] for k in keep if k in body})
        except PluginError as e:
            log.warning("plugin %s: rolling back with %s failed: %s", self.client.name,
                        method, e)

    def _optional(self, method: str, body: dict) -> None:
        """A call that plugins may not implement: a 404 is ignored."""
        try:
            self._call(method, body)
        except PluginNotImplementedError:
            log.debug("plugin %s does not implement %s", self.client.name, method)

    # -- records ----------------------------------------------------------------------
    def _save(self, nid: str, eid: str, rec: dict) -> None:
        key = f"ep/{nid}/{eid}"
        if self._store is None:
            with self._lock:
                self._memory[key] = rec
            return
        with self._store.tx() as c:
            c.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (OWNER, key, dumps(rec)))

    def _load(self, nid: str, eid: str) -> dict:
        key = f"ep/{nid}/{eid}"
        if self._store is None:
            with self._lock:
                return dict(self._memory.get(key, {}))
        row = self._store.read().execute("SELECT value FROM kv WHERE owner=? AND key=?",
                                         (OWNER, key)).fetchone()
        return (loads(row[0], "remote endpoint record") or {}) if row else {}

    def _drop(self, nid: str, eid: str | None = None) -> None:
        if self._store is None:
            with self._lock:
                for k in [k for k in self._memory
                          if k == f"ep/{nid}/{eid}" or (eid is None and
                                                        k.startswith(f"ep/{nid}/"))]:
                    del self._memory[k]
            return
        with self._store.tx() as c:
            if eid is None:
                c.execute("DELETE FROM kv WHERE owner=? AND key LIKE ?", (OWNER, f"ep/{nid}/%"))
            else:
                c.execute("DELETE FROM kv WHERE owner=? AND key=?", (OWNER, f"ep/{nid}/{eid}"))

    def _host(self):
        if self._host_socket is None:
            raise NotImplementedByDriverError("the remote driver needs the controller's "
                                              "host socket to check devices")
        return self._host_socket()

    # -- the driver API ---------------------------------------------------------------
    def config(self, options: dict) -> None:
        raise NotImplementedByDriverError(f"plugin {self.client.name!r} is configured by its "
                                          "own process, not through pynetlib")

    def create_network(self, nid: str, options: dict) -> None:
        # The controller keeps no IPAM for networks of other drivers (the bridge driver
        # allocates its own subnets), so there is no pool to describe: empty lists, as
        # libnetwork sends for a network without IPAM data.
        body = {"NetworkID": nid, "Options": to_wire(options, "network options"),
                "IPv4Data": [], "IPv6Data": []}
        self._call_or_undo("CreateNetwork", body, undo="DeleteNetwork")

    def delete_network(self, nid: str) -> None:
        self._call("DeleteNetwork", {"NetworkID": nid})
        self._drop(nid)

    def create_endpoint(self, nid: str, eid: str, ep_info, options: dict) -> None:
        supplied = ep_info.interfaces()
        mine = supplied[0] if supplied else None
        mac = (mine.mac_address() if mine else "") or options.get(netlabel.MAC_ADDRESS) or ""
        wire_opts = to_wire(options, "endpoint options")
        body = {"NetworkID": nid, "EndpointID": eid, "Options": wire_opts,
                "Interface": {"Address": _text(mine.address() if mine else None),
                              "AddressIPv6": _text(mine.address_ipv6() if mine else None),
                              "MacAddress": mac}}
        base = hostdevices.baseline(self._host())
        reply = self._call_or_undo("CreateEndpoint", body, undo="DeleteEndpoint")
        try:
            chosen = replies.create_endpoint(self.client.name, reply)
            if not chosen.empty() and (supplied or (mac and chosen.mac)):
                raise PluginReplyError(
                    self.client.name, "NetworkDriver.CreateEndpoint",
                    "the plugin returned an address or MAC although pynetlib supplied the "
                    f"interface ({_describe(chosen)}); the endpoint was deleted again")
            if not supplied:
                ep_info.add_interface(1, chosen.mac or mac, chosen.address,
                                      chosen.address_ipv6)
            final = ep_info.interfaces()[0]
            rec = {"baseline": base, "v4": _text(final.address()),
                   "v6": _text(final.address_ipv6()), "ext": False,
                   "ext_options": {k: wire_opts[k] for k in _PORT_OPTIONS if k in wire_opts}}
            self._save(nid, eid, rec)
        except BaseException:
            self._undo("DeleteEndpoint", body)
            raise
        if self._store is not None and self._store.in_tx():
            # The caller's transaction may still roll back: the plugin forgets it too.
            self._store.on_rollback(lambda: self._undo("DeleteEndpoint", body))

    def delete_endpoint(self, nid: str, eid: str) -> None:
        self._call("DeleteEndpoint", {"NetworkID": nid, "EndpointID": eid})
        self._drop(nid, eid)

    def endpoint_oper_info(self, nid: str, eid: str) -> dict:
        reply = self._call("EndpointOperInfo", {"NetworkID": nid, "EndpointID": eid})
        return replies.oper_info(self.client.name, reply)

    def join(self, nid: str, eid: str, sbox_key: str, jinfo, options: dict) -> None:
        target = jinfo.plumb_target()
        names = jinfo.interface_names()
        if target is None or not names:
            raise BadRequestError(f"an endpoint of plugin {self.client.name!r} joins a "
                                  "container's own namespace, not the host's "
                                  "(use_default_sandbox)")
        rec = self._load(nid, eid)
        body = {"NetworkID": nid, "EndpointID": eid, "SandboxKey": sbox_key,
                "Options": to_wire(options, "join options")}
        reply = self._call_or_undo("Join", body, undo="Leave")
        try:
            parsed = replies.join(self.client.name, reply)
            self._accept_join(parsed, rec, target, names[0], jinfo)
            if (parsed.gateway and target.route4) or (parsed.gateway_ipv6 and target.route6):
                self._optional("ProgramExternalConnectivity",
                               {"NetworkID": nid, "EndpointID": eid,
                                "Options": rec.get("ext_options", {})})
                rec["ext"] = True
                self._save(nid, eid, rec)
        except BaseException:
            self._revoke(nid, eid, rec)
            self._undo("Leave", body)
            raise

    def _accept_join(self, parsed: replies.JoinReply, rec: dict, target, name_info,
                     jinfo) -> None:
        def refuse(detail: str) -> PluginReplyError:
            return PluginReplyError(self.client.name, "NetworkDriver.Join", detail)

        if parsed.static_routes:
            raise refuse("StaticRoutes are not supported by pynetlib's join yet; refusing "
                         "rather than joining without them")
        v4 = ipaddress.ip_interface(rec["v4"]) if rec.get("v4") else None
        v6 = ipaddress.ip_interface(rec["v6"]) if rec.get("v6") else None
        for gw, mine, what in ((parsed.gateway, v4, "Gateway"),
                               (parsed.gateway_ipv6, v6, "GatewayIPv6")):
            if gw is not None and not _inside(gw, mine):
                raise refuse(f"{what} {gw} is not a host address of the endpoint's subnet "
                             f"({mine.network if mine else 'the endpoint has no address'})")
        if parsed.src_name is not None:
            try:
                hostdevices.check_endpoint_device(self._host(), parsed.src_name,
                                                  int(rec.get("baseline", 1 << 31)))
            except hostdevices.NotEndpointDevice as e:
                raise refuse(f"refusing InterfaceName.SrcName: {e}") from None
            name_info.set_names(parsed.src_name, parsed.dst_prefix + _index(target.ifname))
        if parsed.gateway is not None:
            jinfo.set_gateway(parsed.gateway)
        if parsed.gateway_ipv6 is not None:
            jinfo.set_gateway_ipv6(parsed.gateway_ipv6)

    def leave(self, nid: str, eid: str) -> None:
        rec = self._load(nid, eid)
        self._revoke(nid, eid, rec)
        self._call("Leave", {"NetworkID": nid, "EndpointID": eid})

    def _revoke(self, nid: str, eid: str, rec: dict) -> None:
        if not rec.get("ext"):
            return
        try:
            self._optional("RevokeExternalConnectivity", {"NetworkID": nid, "EndpointID": eid})
        except PluginError as e:
            log.warning("plugin %s: RevokeExternalConnectivity failed: %s", self.client.name, e)
        rec["ext"] = False
        if rec.get("baseline") is not None:
            self._save(nid, eid, rec)

    # -- optional protocol methods ----------------------------------------------------
    def program_external_connectivity(self, nid: str, eid: str, options: dict) -> None:
        self._optional("ProgramExternalConnectivity", {
            "NetworkID": nid, "EndpointID": eid, "Options": to_wire(options)})

    def revoke_external_connectivity(self, nid: str, eid: str) -> None:
        self._optional("RevokeExternalConnectivity", {"NetworkID": nid, "EndpointID": eid})

    def discover_new(self, discovery_type: int, data) -> None:
        """Node discovery (type 1); pynetlib has no cluster, so nothing calls it yet."""
        self._optional("DiscoverNew", {"DiscoveryType": discovery_type,
                                       "DiscoveryData": to_wire(data, "discovery data")})

    def discover_delete(self, discovery_type: int, data) -> None:
        self._optional("DiscoverDelete", {"DiscoveryType": discovery_type,
                                          "DiscoveryData": to_wire(data, "discovery data")})

    # -- audit --------------------------------------------------------------------------
    def audit_network(self, nid: str, endpoints: dict[str, str]) -> list[str]:
        """Records of this driver against the controller's endpoints of ``nid``."""
        if self._store is None:
            return []
        recorded = {k.rsplit("/", 1)[1] for (k,) in self._store.read().execute(
            "SELECT key FROM kv WHERE owner=? AND key LIKE ?", (OWNER, f"ep/{nid}/%"))}
        problems = [f"remote endpoint record {eid} of network {nid}: no such endpoint"
                    for eid in sorted(recorded - set(endpoints))]
        problems += [f"endpoint {eid} of remote network {nid}: no driver record"
                     for eid in sorted(set(endpoints) - recorded)]
        return problems


def _text(value) -> str:
    return "" if value is None else str(value)


def _describe(chosen: replies.InterfaceReply) -> str:
    parts = [f"{k}={v}" for k, v in (("Address", chosen.address),
                                     ("AddressIPv6", chosen.address_ipv6),
                                     ("MacAddress", chosen.mac)) if v is not None]
    return ", ".join(parts)


def _inside(gw, mine) -> bool:
    if mine is None or gw not in mine.network or gw == mine.ip:
        return False
    net = mine.network
    if net.version == 4 and net.prefixlen < 31:
        return gw not in (net.network_address, net.broadcast_address)
    return True


def _index(ifname: str) -> str:
    m = re.search(r"(\d+)$", ifname)
    return m.group(1) if m else "0"
