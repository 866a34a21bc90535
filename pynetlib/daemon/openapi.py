"""The OpenAPI 3.1 document the daemon serves at ``GET /openapi.json``, built from the
route table and the schema definitions the daemon validates with."""

from __future__ import annotations

import copy

from pynetlib import __version__
from pynetlib.daemon.routes import ROUTES, Route
from pynetlib.daemon.schema import DEFINITIONS, ref

# Every status an operation may answer with besides its success, and when.
_ERRORS = {
    "400": "Bad request: malformed JSON, unknown field, wrong type, body over 64 KiB, "
           "nesting deeper than 8, invalid value",
    "403": "Forbidden: the peer is not allowed, or the object's state forbids it",
    "404": "Not found",
    "405": "Method not allowed on this path",
    "408": "Timeout: the store stayed locked",
    "500": "Internal error",
    "501": "Not implemented by the driver",
    "503": "No service: no addresses or pools left, or the daemon is shutting down",
}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _parameters(route: Route) -> list[dict]:
    out = [{"name": name, "in": "path", "required": True, "schema": copy.deepcopy(s)}
           for name, s in route.params.items()]
    out += [{"name": name, "in": "query", "required": False, "schema": copy.deepcopy(s)}
            for name, s in route.query.items()]
    return out


def _operation(route: Route) -> dict:
    op: dict = {"operationId": route.operation_id, "summary": route.summary}
    params = _parameters(route)
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": ref(route.body)}}}
    op["responses"] = {str(route.status): _json(ref(route.reply), "Success")}
    for status, text in _ERRORS.items():
        op["responses"][status] = _json(ref("Error"), text)
    return op


def document() -> dict:
    paths: dict[str, dict] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "pynetlib daemon", "version": __version__,
                 "description": "Container networking (libnetwork's CNM) over a unix "
                                "socket. See docs/http-api.md."},
        "servers": [{"url": "http://localhost"}],
        "paths": paths,
        "components": {"schemas": copy.deepcopy(DEFINITIONS)},
    }
