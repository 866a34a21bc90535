"""The JSON resources of docs/http-api.md, built from the Python API's objects.

The local backend answers with exactly these shapes, so ``--format json`` prints the
same thing whether the CLI works on a state directory or through the daemon.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pynetlib import netlabel
from pynetlib.errors import NoSuchEndpointError
from pynetlib.types import PortBinding, TransportPort


def plain(value: Any) -> Any:
    """A JSON value: addresses and ports become their strings, tuples become lists."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return str(value)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def endpoint_brief(ep) -> dict:
    return {"name": ep.name, "id": ep.id, "network": ep.network}


def network_resource(net) -> dict:
    return {"name": net.name, "id": net.id, "type": net.type,
            "options": plain(net.options()),
            "endpoints": [endpoint_brief(ep) for ep in net.endpoints()]}


def port_binding_resource(b: PortBinding) -> dict:
    return {"proto": b.proto, "port": b.port, "host_port": b.host_port,
            "host_ip": _text(b.host_ip)}


def _port_mapping(ep) -> list[dict]:
    try:
        bindings = ep.driver_info().get(netlabel.PORT_MAP) or []
    except NoSuchEndpointError:
        raise
    except Exception:                               # a driver without oper info
        bindings = ep._options().get(netlabel.PORT_MAP) or []
    return [port_binding_resource(b) for b in bindings if isinstance(b, PortBinding)]


def endpoint_resource(ep) -> dict:
    info = ep.info()
    return {"name": ep.name, "id": ep.id, "network": ep.network, "network_id": ep._net.id,
            "interfaces": [{"mac_address": i.mac_address or None,
                            "address": _text(i.address),
                            "address_ipv6": _text(i.address_ipv6)}
                           for i in info.interfaces],
            "gateway": _text(info.gateway), "gateway_ipv6": _text(info.gateway_ipv6),
            "sandbox_key": info.sandbox_key, "container_id": ep.joined_container,
            "port_mapping": _port_mapping(ep)}


def sandbox_resource(sb) -> dict:
    return {"id": sb.container_id, "container_id": sb.container_id, "key": sb.key,
            "endpoints": [ep.id for ep in sb.endpoints()]}


# -- request bodies (the HTTP API's) to Python API arguments -----------------------------

def endpoint_options(body: dict) -> dict:
    """The options of ``Network.create_endpoint`` for a create-endpoint body."""
    opts: dict = {}
    if body.get("port_mapping"):
        opts[netlabel.PORT_MAP] = [
            PortBinding(b["proto"], b["port"], b.get("host_port", 0), b.get("host_ip"))
            for b in body["port_mapping"]]
    if body.get("exposed_ports"):
        opts[netlabel.EXPOSED_PORTS] = [TransportPort(p["proto"], p["port"])
                                        for p in body["exposed_ports"]]
    return opts


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
