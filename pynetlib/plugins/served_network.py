"""``/NetworkDriver.*``: pynetlib's bridge driver as a Docker engine's network driver.

Docker is the controller here; pynetlib is its driver. Each Docker network is a pynetlib
bridge network named :func:`network_name` (``docker-`` and the first 57 characters of
Docker's 64-hex NetworkID), each Docker endpoint a pynetlib endpoint named
:func:`endpoint_name` in it, so the mapping lives in the controller's store and survives
restarts with everything else.

Join follows Docker's model: the *engine* moves the interface into the container's
namespace, names it, addresses it and routes through the gateway. So the endpoint is
joined with ``move_interfaces=False``: the bridge driver creates the veth pair with
both ends in the host namespace (the host end on the bridge and up, the other end down
and unaddressed), and the reply names that other end as ``SrcName``. The pynetlib
sandbox of a Docker sandbox is keyed by ``SandboxKey`` and never touches the namespace
(it may not even exist yet when Docker joins). Leave removes the veth pair, wherever the
engine has put its other end.
"""

from __future__ import annotations

import hashlib
import ipaddress

from pynetlib import netlabel
from pynetlib.errors import (BadRequestError, InternalError, NoContainerError,
                             NoSuchNetworkError)
from pynetlib.plugins import docker_options as dopts
from pynetlib.plugins.wire import Field, docker_id, parse_fields, sandbox_key

NETWORK_TYPE = "bridge"
NAME_PREFIX = "docker-"
DST_PREFIX = "eth"

_IDS = {"NetworkID": Field("str", required=True), "EndpointID": Field("str", required=True)}
_DISCOVERY = {"DiscoveryType": Field("int", required=True),
              "DiscoveryData": Field("any", nullable=True)}
REQUESTS = {
    "GetCapabilities": {},
    "CreateNetwork": {"NetworkID": Field("str", required=True),
                      "Options": Field("object", nullable=True),
                      "IPv4Data": Field("list", nullable=True),
                      "IPv6Data": Field("list", nullable=True)},
    "DeleteNetwork": {"NetworkID": Field("str", required=True)},
    "CreateEndpoint": {**_IDS, "Interface": Field("object", nullable=True),
                       "Options": Field("object", nullable=True)},
    "DeleteEndpoint": _IDS,
    "EndpointOperInfo": _IDS,
    "Join": {**_IDS, "SandboxKey": Field("str", required=True),
             "Options": Field("object", nullable=True)},
    "Leave": _IDS,
    "ProgramExternalConnectivity": {**_IDS, "Options": Field("object", nullable=True)},
    "RevokeExternalConnectivity": _IDS,
    "DiscoverNew": _DISCOVERY,
    "DiscoverDelete": _DISCOVERY,
}
_INTERFACE = {"Address": Field("str"), "AddressIPv6": Field("str"),
              "MacAddress": Field("str"), "IPAliases": Field("list", nullable=True)}


def network_name(nid: str) -> str:
    """The pynetlib network of a Docker NetworkID (names are at most 64 characters)."""
    return NAME_PREFIX + nid[:57]


def endpoint_name(eid: str) -> str:
    return NAME_PREFIX + eid[:57]


def sandbox_container_id(key: str) -> str:
    """The pynetlib container id standing for the Docker sandbox at ``key``."""
    return NAME_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:32]


def _address(text: str, what: str, version: int) -> str | None:
    if not text:
        return None
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        iface = None
    if iface is None or "/" not in text or iface.version != version:
        raise BadRequestError(f"Interface.{what} {text!r} is not an IPv{version} address "
                              "in CIDR form")
    return text


class ServedNetworkDriver:
    """The network half of the plugin: one method per protocol call, dict in, dict out."""

    def __init__(self, ctrl) -> None:
        self._ctrl = ctrl

    def _network(self, nid: str):
        net = self._ctrl.network_by_name(network_name(docker_id(nid, "NetworkID")))
        if net.type != NETWORK_TYPE:
            raise NoSuchNetworkError(nid)
        return net

    def _endpoint(self, req: dict):
        net = self._network(req["NetworkID"])
        return net.endpoint_by_name(endpoint_name(docker_id(req["EndpointID"], "EndpointID")))

    # -- calls ----------------------------------------------------------------------
    def GetCapabilities(self, req: dict) -> dict:
        return {"Scope": "local", "ConnectivityScope": "local"}

    def CreateNetwork(self, req: dict) -> dict:
        nid = docker_id(req["NetworkID"], "NetworkID")
        options = dopts.bridge_network_options(req["Options"], req["IPv4Data"],
                                               req["IPv6Data"])
        self._ctrl.new_network(NETWORK_TYPE, network_name(nid), options)
        return {}

    def DeleteNetwork(self, req: dict) -> dict:
        self._network(req["NetworkID"]).delete()
        return {}

    def CreateEndpoint(self, req: dict) -> dict:
        net = self._network(req["NetworkID"])
        eid = docker_id(req["EndpointID"], "EndpointID")
        iface = parse_fields(req["Interface"], _INTERFACE, "Interface")
        if iface["IPAliases"]:
            raise BadRequestError("Interface.IPAliases is not supported")
        ipv4 = _address(iface["Address"] or "", "Address", 4)
        ipv6 = _address(iface["AddressIPv6"] or "", "AddressIPv6", 6)
        mac = iface["MacAddress"] or None
        options = req["Options"] or {}
        opts = {}
        bindings = dopts.port_bindings(options.get(netlabel.PORT_MAP))
        if bindings:
            opts[netlabel.PORT_MAP] = bindings
        exposed = dopts.exposed_ports(options.get(netlabel.EXPOSED_PORTS))
        if exposed:
            opts[netlabel.EXPOSED_PORTS] = exposed
        ep = net.create_endpoint(endpoint_name(eid), opts, ipv4=ipv4, ipv6=ipv6, mac=mac)
        if ipv4 or ipv6 or mac:
            # Docker supplied the interface: the reply must leave it alone (an Interface
            # with values would be "driver modified interface" and rolled back).
            return {}
        info = ep.info().interfaces[0]
        out = {"MacAddress": info.mac_address}
        if info.address is not None:
            out["Address"] = str(info.address)
        if info.address_ipv6 is not None:
            out["AddressIPv6"] = str(info.address_ipv6)
        return {"Interface": out}

    def DeleteEndpoint(self, req: dict) -> dict:
        self._endpoint(req).delete()
        return {}

    def EndpointOperInfo(self, req: dict) -> dict:
        info = self._endpoint(req).driver_info()
        value = {}
        if netlabel.MAC_ADDRESS in info:
            value[netlabel.MAC_ADDRESS] = info[netlabel.MAC_ADDRESS]
        value[netlabel.PORT_MAP] = [dopts.port_binding_json(b)
                                    for b in info.get(netlabel.PORT_MAP, [])]
        value[netlabel.EXPOSED_PORTS] = [dopts.transport_port_json(p)
                                         for p in info.get(netlabel.EXPOSED_PORTS, [])]
        return {"Value": value}

    def Join(self, req: dict) -> dict:
        key = sandbox_key(req["SandboxKey"])
        ep = self._endpoint(req)
        cid = sandbox_container_id(key)
        data = ep.join(cid, netns_path=key, move_interfaces=False)
        if len(data.host_interfaces) != 1:
            ep.leave(cid)
            raise InternalError(f"the driver left {len(data.host_interfaces)} host "
                                "interfaces for one endpoint; expected one")
        src, _ = data.host_interfaces[0]
        info = ep.info()
        return {"InterfaceName": {"SrcName": src, "DstPrefix": DST_PREFIX},
                "Gateway": str(info.gateway) if info.gateway else "",
                "GatewayIPv6": str(info.gateway_ipv6) if info.gateway_ipv6 else "",
                "StaticRoutes": [], "DisableGatewayService": False}

    def Leave(self, req: dict) -> dict:
        ep = self._endpoint(req)
        cid = ep.joined_container
        if cid is None:
            raise NoContainerError()
        ep.leave(cid)
        return {}

    def ProgramExternalConnectivity(self, req: dict) -> dict:
        """Port mappings are made at Join from the bindings CreateEndpoint carried; this
        checks that Docker asks for nothing more (it cannot be added afterwards)."""
        ep = self._endpoint(req)
        wanted = dopts.port_bindings((req["Options"] or {}).get(netlabel.PORT_MAP))
        have = ep.driver_info().get(netlabel.PORT_MAP, [])
        for w in wanted:
            if not any(_satisfies(h, w) for h in have):
                raise BadRequestError(f"port binding {w} was not requested at "
                                      "CreateEndpoint; pynetlib maps the ports an endpoint "
                                      "is created with")
        return {}

    def RevokeExternalConnectivity(self, req: dict) -> dict:
        self._endpoint(req)
        return {}

    def DiscoverNew(self, req: dict) -> dict:
        return {}

    def DiscoverDelete(self, req: dict) -> dict:
        return {}


def _satisfies(have, want) -> bool:
    """Whether a binding made satisfies one requested (0 / no host IP: any)."""
    return (have.proto == want.proto and have.port == want.port and
            (want.host_port == 0 or want.host_port == have.host_port) and
            (want.host_ip is None or want.host_ip == have.host_ip))
