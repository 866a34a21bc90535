"""The JSON shapes of the HTTP API: one set of definitions.

The daemon validates request bodies, path parameters and query parameters against these
(``pynetlib.daemon.validation``), and serves the same definitions as the components of
its OpenAPI document (``pynetlib.daemon.openapi``), so the two cannot diverge. They are
JSON Schema (2020-12, as OpenAPI 3.1 uses it), restricted to the keywords the validator
implements: type, enum, minimum, maximum, minLength, maxLength, pattern, properties,
required, additionalProperties, items, maxItems, maxProperties and ``$ref`` to another
definition here.
"""

from __future__ import annotations

import copy
from typing import Any

Schema = dict[str, Any]

REF_PREFIX = "#/components/schemas/"

NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
ID_PATTERN = "^[0-9a-f]{64}$"
CATEGORIES = ["BadRequest", "Forbidden", "NotFound", "Timeout", "NotImplemented",
              "NoService", "Internal"]
PROTOCOLS = ["tcp", "udp", "sctp"]


def ref(name: str) -> Schema:
    """A reference to the definition ``name``."""
    if name not in DEFINITIONS:
        raise KeyError(f"no schema definition {name!r}")
    return {"$ref": REF_PREFIX + name}


def nullable(schema: Schema) -> Schema:
    """``schema`` that also admits JSON null."""
    out = copy.deepcopy(schema)
    out["type"] = [out["type"], "null"]
    return out


def _text(max_length: int, **more: Any) -> Schema:
    return {"type": "string", "maxLength": max_length, **more}


def _obj(properties: dict[str, Schema], required: list[str] | None = None,
         **more: Any) -> Schema:
    return {"type": "object", "properties": properties, "required": required or [],
            "additionalProperties": False, **more}


def _list(items: Schema, max_items: int) -> Schema:
    return {"type": "array", "items": items, "maxItems": max_items}


NAME = _text(64, minLength=1, pattern=NAME_PATTERN)
CONTAINER_ID = _text(128, minLength=1, pattern=NAME_PATTERN)
OBJECT_ID = {"type": "string", "pattern": ID_PATTERN}
ADDRESS = _text(64, minLength=1)
PATH = _text(4096, minLength=1)
HOSTNAME = _text(255, minLength=1)
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
HOST_PORT = {"type": "integer", "minimum": 0, "maximum": 65535}
PROTOCOL = {"type": "string", "enum": PROTOCOLS}
DRIVER_OPTION = {"type": ["string", "integer", "boolean"], "maxLength": 4096}

_PORT_BINDING_PROPS = {"proto": PROTOCOL, "port": PORT, "host_port": HOST_PORT,
                       "host_ip": nullable(ADDRESS)}

DEFINITIONS: dict[str, Schema] = {
    # -- requests -------------------------------------------------------------------
    "NetworkCreate": _obj({
        "name": NAME,
        "network_type": _text(64, minLength=1, pattern=NAME_PATTERN),
        "subnet": nullable(ADDRESS),
        "gateway": nullable(ADDRESS),
        "ip_range": nullable(ADDRESS),
        "enable_ipv6": {"type": "boolean"},
        "subnet_v6": nullable(ADDRESS),
        "mtu": nullable({"type": "integer", "minimum": 68, "maximum": 65535}),
        "internal": {"type": "boolean"},
        "driver_opts": {"type": "object", "additionalProperties": DRIVER_OPTION,
                        "maxProperties": 64},
    }, ["name"]),
    "PortBindingRequest": _obj(_PORT_BINDING_PROPS, ["proto", "port"]),
    "TransportPort": _obj({"proto": PROTOCOL, "port": PORT}, ["proto", "port"]),
    "EndpointCreate": _obj({
        "name": NAME,
        "ipv4": nullable(ADDRESS),
        "ipv6": nullable(ADDRESS),
        "mac": nullable(_text(17, minLength=1)),
        "port_mapping": _list({"$ref": REF_PREFIX + "PortBindingRequest"}, 256),
        "exposed_ports": _list({"$ref": REF_PREFIX + "TransportPort"}, 256),
    }, ["name"]),
    "HostRecord": _obj({"name": HOSTNAME, "address": ADDRESS}, ["name", "address"]),
    "Join": _obj({
        "container_id": CONTAINER_ID,
        "host_name": nullable(HOSTNAME),
        "domain_name": nullable(HOSTNAME),
        "hosts_path": nullable(PATH),
        "resolv_conf_path": nullable(PATH),
        "dns": _list(ADDRESS, 16),
        "dns_search": _list(HOSTNAME, 16),
        "extra_hosts": _list({"$ref": REF_PREFIX + "HostRecord"}, 256),
        "use_default_sandbox": {"type": "boolean"},
        "netns_path": nullable(PATH),
    }, ["container_id"]),
    # -- replies --------------------------------------------------------------------
    "Error": _obj({"message": {"type": "string"},
                   "category": {"type": "string", "enum": CATEGORIES}},
                  ["message", "category"]),
    "ObjectId": OBJECT_ID,
    "Null": {"type": "null"},
    "Ping": {"type": "string", "enum": ["OK"]},
    "Messages": {"type": "array", "items": {"type": "string"}},
    "EndpointBrief": _obj({"name": {"type": "string"}, "id": OBJECT_ID,
                           "network": {"type": "string"}}, ["name", "id", "network"]),
    "Network": _obj({
        "name": {"type": "string"},
        "id": OBJECT_ID,
        "type": {"type": "string"},
        "options": {"type": "object"},
        "endpoints": {"type": "array", "items": {"$ref": REF_PREFIX + "EndpointBrief"}},
    }, ["name", "id", "type", "options", "endpoints"]),
    "NetworkList": {"type": "array", "items": {"$ref": REF_PREFIX + "Network"}},
    "Interface": _obj({"mac_address": {"type": "string"},
                       "address": {"type": ["string", "null"]},
                       "address_ipv6": {"type": ["string", "null"]}},
                      ["mac_address", "address", "address_ipv6"]),
    "PortBinding": _obj({"proto": PROTOCOL, "port": PORT, "host_port": HOST_PORT,
                         "host_ip": {"type": ["string", "null"]}},
                        ["proto", "port", "host_port", "host_ip"]),
    "Endpoint": _obj({
        "name": {"type": "string"},
        "id": OBJECT_ID,
        "network": {"type": "string"},
        "network_id": OBJECT_ID,
        "interfaces": {"type": "array", "items": {"$ref": REF_PREFIX + "Interface"}},
        "gateway": {"type": ["string", "null"]},
        "gateway_ipv6": {"type": ["string", "null"]},
        "sandbox_key": {"type": ["string", "null"]},
        "container_id": {"type": ["string", "null"]},
        "port_mapping": {"type": "array", "items": {"$ref": REF_PREFIX + "PortBinding"}},
    }, ["name", "id", "network", "network_id", "interfaces", "gateway", "gateway_ipv6",
        "sandbox_key", "container_id", "port_mapping"]),
    "EndpointList": {"type": "array", "items": {"$ref": REF_PREFIX + "Endpoint"}},
    "JoinResult": _obj({"sandbox_key": {"type": "string"}}, ["sandbox_key"]),
    "Sandbox": _obj({"id": {"type": "string"}, "container_id": {"type": "string"},
                     "key": {"type": "string"},
                     "endpoints": {"type": "array", "items": OBJECT_ID}},
                    ["id", "container_id", "key", "endpoints"]),
    "SandboxList": {"type": "array", "items": {"$ref": REF_PREFIX + "Sandbox"}},
    "OpenAPI": {"type": "object"},
}
