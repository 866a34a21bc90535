"""The local backend: a Controller on a state directory, opened for one command and
closed after it (closing waits for the teardown that leave started).

Every operation goes through the daemon's own route table (``pynetlib.daemon.routes``):
the same parameter, query and body checks, the same handlers, the same resources. So a
command means exactly the same thing on a state directory as through the daemon.
"""

from __future__ import annotations

from typing import Any

from pynetlib.controller import Controller
from pynetlib.daemon.handlers import Call
from pynetlib.daemon.routes import ROUTES, Route
from pynetlib.daemon.validation import check

_BY_OPERATION = {r.operation_id: r for r in ROUTES}


def _request(route: Route, params: dict[str, str], query: dict[str, str | None],
             body: Any) -> Call:
    """The checks the daemon makes of a request, on the values the CLI would send."""
    for name, schema in route.params.items():
        check(params[name], schema, f"path parameter {name}")
    present = {k: v for k, v in query.items() if v is not None}
    for name, value in present.items():
        check(value, route.query[name], f"query parameter {name}")
    if route.body is not None:
        check(body, {"$ref": f"#/components/schemas/{route.body}"}, "body")
    return Call(params=params, query=present, body=body)


class LocalBackend:
    def __init__(self, state_dir: str, *, reconcile: bool = True) -> None:
        self.state_dir = state_dir
        self._ctrl = Controller(state_dir, reconcile=reconcile)

    def close(self) -> None:
        self._ctrl.close()

    def _call(self, operation: str, params: dict | None = None, query: dict | None = None,
              body: Any = None) -> Any:
        route = _BY_OPERATION[operation]
        return route.handler(self._ctrl, _request(route, params or {}, query or {}, body))

    def networks(self, name: str | None = None, partial_id: str | None = None) -> list[dict]:
        return self._call("listNetworks", query={"name": name, "partial-id": partial_id})

    def network(self, nid: str) -> dict:
        return self._call("getNetwork", {"nid": nid})

    def create_network(self, body: dict) -> str:
        return self._call("createNetwork", body=body)

    def delete_network(self, nid: str) -> None:
        self._call("deleteNetwork", {"nid": nid})

    def endpoints(self, nid: str) -> list[dict]:
        return self._call("listEndpoints", {"nid": nid})

    def endpoint(self, nid: str, eid: str) -> dict:
        return self._call("getEndpoint", {"nid": nid, "eid": eid})

    def create_endpoint(self, nid: str, body: dict) -> str:
        return self._call("createEndpoint", {"nid": nid}, body=body)

    def delete_endpoint(self, nid: str, eid: str) -> None:
        self._call("deleteEndpoint", {"nid": nid, "eid": eid})

    def join(self, nid: str, eid: str, body: dict) -> dict:
        return self._call("join", {"nid": nid, "eid": eid}, body=body)

    def leave(self, nid: str, eid: str, container_id: str) -> None:
        self._call("leave", {"nid": nid, "eid": eid, "cid": container_id})

    def sandboxes(self) -> list[dict]:
        return self._call("listSandboxes")

    def sandbox(self, container_id: str) -> dict:
        return self._call("getSandbox", {"cid": container_id})

    def audit(self) -> list[str]:
        return self._call("audit")

    def reconcile(self) -> list[str]:
        return self._call("reconcile")
