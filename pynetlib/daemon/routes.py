"""The route table of the HTTP API: for each route its method, path, parameters, body
and reply schemas and the handler. The server registers these routes and the OpenAPI
document describes exactly these, so the two cannot diverge."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from pynetlib.daemon import handlers as h
from pynetlib.daemon.schema import CONTAINER_ID, NAME, OBJECT_ID, Schema

_TEXT = {"type": "string", "minLength": 1, "maxLength": 128}


@dataclass(frozen=True)
class Route:
    method: str
    path: str                                   # aiohttp/OpenAPI template: /networks/{nid}
    operation_id: str
    summary: str
    handler: Callable | None                    # None: served by the server itself
    reply: str                                  # schema definition name
    status: int = 200
    body: str | None = None                     # schema definition name of the body
    params: dict[str, Schema] = field(default_factory=dict)
    query: dict[str, Schema] = field(default_factory=dict)


NID = {"nid": OBJECT_ID}
EID = {"nid": OBJECT_ID, "eid": OBJECT_ID}
_NAME_QUERY = {"name": NAME, "partial-id": {"type": "string", "minLength": 1,
                                            "maxLength": 64, "pattern": "^[0-9a-f]+$"}}

ROUTES: tuple[Route, ...] = (
    Route("GET", "/networks", "listNetworks", "List networks (by name= or partial-id=)",
          h.list_networks, "NetworkList", query=_NAME_QUERY),
    Route("POST", "/networks", "createNetwork", "Create a network; replies with its id",
          h.create_network, "ObjectId", 201, body="NetworkCreate"),
    Route("GET", "/networks/{nid}", "getNetwork", "Inspect a network",
          h.get_network, "Network", params=NID),
    Route("DELETE", "/networks/{nid}", "deleteNetwork", "Delete a network",
          h.delete_network, "Null", params=NID),
    Route("GET", "/networks/{nid}/endpoints", "listEndpoints",
          "List a network's endpoints (by name= or partial-id=)",
          h.list_endpoints, "EndpointList", params=NID, query=_NAME_QUERY),
    Route("POST", "/networks/{nid}/endpoints", "createEndpoint",
          "Create an endpoint; replies with its id",
          h.create_endpoint, "ObjectId", 201, body="EndpointCreate", params=NID),
    Route("GET", "/networks/{nid}/endpoints/{eid}", "getEndpoint", "Inspect an endpoint",
          h.get_endpoint, "Endpoint", params=EID),
    Route("DELETE", "/networks/{nid}/endpoints/{eid}", "deleteEndpoint",
          "Delete an endpoint (it must not be joined)", h.delete_endpoint, "Null",
          params=EID),
    Route("POST", "/networks/{nid}/endpoints/{eid}/sandboxes", "join",
          "Join a container to the endpoint (its sandbox is made on its first join)",
          h.join, "JoinResult", body="Join", params=EID),
    Route("DELETE", "/networks/{nid}/endpoints/{eid}/sandboxes/{cid}", "leave",
          "A container leaves the endpoint", h.leave, "Null",
          params={**EID, "cid": CONTAINER_ID}),
    Route("GET", "/sandboxes", "listSandboxes",
          "List sandboxes (by container-id= or partial-container-id=)",
          h.list_sandboxes, "SandboxList",
          query={"container-id": CONTAINER_ID, "partial-container-id": _TEXT}),
    Route("GET", "/sandboxes/{cid}", "getSandbox", "Inspect a container's sandbox",
          h.get_sandbox, "Sandbox", params={"cid": CONTAINER_ID}),
    Route("GET", "/audit", "audit",
          "Discrepancies between the store, IPAM and the kernel (empty: none)",
          h.audit, "Messages"),
    Route("POST", "/reconcile", "reconcile",
          "Finish or roll back interrupted work; replies with what was repaired",
          h.reconcile, "Messages"),
    Route("GET", "/openapi.json", "openapi", "This API as OpenAPI 3.1", None, "OpenAPI"),
    Route("GET", "/_ping", "ping", "Liveness", None, "Ping"),
)
