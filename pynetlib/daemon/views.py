"""The API's resources (docs/http-api.md) built from controller objects."""

from __future__ import annotations

from typing import Any

from pynetlib import codec, netlabel
from pynetlib.endpoint import Endpoint
from pynetlib.network import Network
from pynetlib.sandbox import Sandbox
from pynetlib.types import PortBinding


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def endpoint_brief(net: Network, ep: Endpoint) -> dict:
    return {"name": ep.name, "id": ep.id, "network": net.name}


def network(net: Network) -> dict:
    return {"name": net.name, "id": net.id, "type": net.type,
            "options": codec.encode(net.options()),
            "endpoints": [endpoint_brief(net, ep) for ep in net.endpoints()]}


def port_binding(b: PortBinding) -> dict:
    return {"proto": b.proto, "port": b.port, "host_port": b.host_port,
            "host_ip": _text(b.host_ip)}


def endpoint(net: Network, ep: Endpoint) -> dict:
    info = ep.info()
    bindings = ep.driver_info().get(netlabel.PORT_MAP) or []
    return {
        "name": ep.name, "id": ep.id, "network": net.name, "network_id": net.id,
        "interfaces": [{"mac_address": i.mac_address or "", "address": _text(i.address),
                        "address_ipv6": _text(i.address_ipv6)} for i in info.interfaces],
        "gateway": _text(info.gateway),
        "gateway_ipv6": _text(info.gateway_ipv6),
        "sandbox_key": info.sandbox_key,
        "container_id": ep.joined_container,
        "port_mapping": [port_binding(b) for b in bindings if isinstance(b, PortBinding)],
    }


def sandbox(sb: Sandbox) -> dict:
    return {"id": sb.container_id, "container_id": sb.container_id, "key": sb.key,
            "endpoints": [ep.id for ep in sb.endpoints()]}
