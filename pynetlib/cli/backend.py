"""The interface both CLI backends offer: the HTTP API's operations, taking its request
bodies and answering with its resources (docs/http-api.md), plus name resolution that
works the same over either backend."""

from __future__ import annotations

import re
from typing import Protocol

from pynetlib.errors import BadRequestError, NoSuchEndpointError, NoSuchNetworkError


_HEX = re.compile(r"^[0-9a-f]{1,64}$")


class Backend(Protocol):
    def close(self) -> None: ...
    def networks(self, name: str | None = None,
                 partial_id: str | None = None) -> list[dict]: ...
    def network(self, nid: str) -> dict: ...
    def create_network(self, body: dict) -> str: ...
    def delete_network(self, nid: str) -> None: ...
    def endpoints(self, nid: str) -> list[dict]: ...
    def endpoint(self, nid: str, eid: str) -> dict: ...
    def create_endpoint(self, nid: str, body: dict) -> str: ...
    def delete_endpoint(self, nid: str, eid: str) -> None: ...
    def join(self, nid: str, eid: str, body: dict) -> dict: ...
    def leave(self, nid: str, eid: str, container_id: str) -> None: ...
    def sandboxes(self) -> list[dict]: ...
    def sandbox(self, container_id: str) -> dict: ...
    def audit(self) -> list[str]: ...
    def reconcile(self) -> list[str]: ...


def _one(matches: list[dict], ref: str, what: str, not_found: Exception) -> dict:
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise not_found
    names = ", ".join(sorted(m["name"] for m in matches))
    raise BadRequestError(f"{what} id prefix {ref!r} is ambiguous ({names}): give more of "
                          "the id, or the name")


def resolve_network(backend: Backend, ref: str) -> dict:
    """A network by name, full id or unique id prefix."""
    if not ref:
        raise BadRequestError("a network name or id cannot be empty")
    by_name = backend.networks(name=ref)
    if by_name:
        return by_name[0]
    by_id = backend.networks(partial_id=ref) if _HEX.match(ref) else []
    exact = [n for n in by_id if n["id"] == ref]
    return _one(exact or by_id, ref, "network", NoSuchNetworkError(ref))


def resolve_endpoint(backend: Backend, nid: str, ref: str) -> dict:
    """An endpoint of network ``nid`` by name, full id or unique id prefix."""
    if not ref:
        raise BadRequestError("an endpoint name or id cannot be empty")
    eps = backend.endpoints(nid)
    for key in ("name", "id"):
        hit = [e for e in eps if e[key] == ref]
        if hit:
            return hit[0]
    return _one([e for e in eps if e["id"].startswith(ref)], ref, "endpoint",
                NoSuchEndpointError(ref))
