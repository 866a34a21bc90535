"""A small synchronous client for the pynetlib daemon's HTTP API (docs/http-api.md).

It talks HTTP/1.1 over the daemon's unix socket with :mod:`http.client`. Every call
opens its own connection, so one :class:`Client` may be shared by many threads. Replies
are decoded JSON; an error reply raises the :mod:`pynetlib.errors` category exception
that the daemon named (``BadRequestError``, ``NotFoundError``, ...) with the daemon's
message. A daemon that cannot be reached raises :class:`~pynetlib.errors.NoServiceError`.

    >>> c = Client("/run/pynetlib/pynetlib.sock")
    >>> nid = c.create_network("web", subnet="10.20.0.0/24")
    >>> eid = c.create_endpoint(nid, "ep1")
    >>> c.join(nid, eid, "container1")
    {'sandbox_key': '/run/netns/...'}
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import quote, urlencode

from pynetlib import errors

DEFAULT_SOCKET = "/run/pynetlib/pynetlib.sock"

# The daemon's "category" text -> the exception class to raise.
_CATEGORY_ERRORS: dict[str, type[errors.NetworkError]] = {
    "BadRequest": errors.BadRequestError,
    "Forbidden": errors.ForbiddenError,
    "NotFound": errors.NotFoundError,
    "Timeout": errors.TimeoutError,
    "NotImplemented": errors.NotImplementedByDriverError,
    "NoService": errors.NoServiceError,
    "Internal": errors.InternalError,
}

# Used when a reply has no category (should not happen with this daemon).
_STATUS_ERRORS: dict[int, type[errors.NetworkError]] = {
    400: errors.BadRequestError, 403: errors.ForbiddenError, 404: errors.NotFoundError,
    405: errors.BadRequestError, 408: errors.TimeoutError,
    501: errors.NotImplementedByDriverError, 503: errors.NoServiceError,
}


class UnixHTTPConnection(http.client.HTTPConnection):
    """An :class:`http.client.HTTPConnection` to a unix socket path."""

    def __init__(self, socket_path: str, timeout: float | None = 30.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def error_from_reply(status: int, body: Any) -> errors.NetworkError:
    """The exception for an error reply ``{"message", "category"}`` with ``status``."""
    message = f"HTTP {status}"
    category = None
    if isinstance(body, dict):
        message = str(body.get("message") or message)
        category = body.get("category")
    cls = _CATEGORY_ERRORS.get(str(category)) or _STATUS_ERRORS.get(status,
                                                                     errors.InternalError)
    return cls(message)


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(p, safe="") for p in parts)


def _query(**params: str | None) -> str:
    present = {k.replace("_", "-"): v for k, v in params.items() if v is not None}
    return "?" + urlencode(present) if present else ""


class Client:
    """A client of one daemon socket. Thread-safe: one connection per call."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    # --- transport -------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request; return the decoded JSON reply or raise its error."""
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        conn = UnixHTTPConnection(self.socket_path, timeout=self.timeout)
        try:
            status, data = self._exchange(conn, method, path, payload, headers)
        finally:
            conn.close()
        try:
            decoded = json.loads(data) if data else None
        except ValueError:
            raise errors.InternalError(
                f"the daemon at {self.socket_path} sent a reply that is not JSON "
                f"(HTTP {status})") from None
        if status >= 400:
            raise error_from_reply(status, decoded)
        return decoded

    def _exchange(self, conn: UnixHTTPConnection, method: str, path: str,
                  payload: bytes | None, headers: dict) -> tuple[int, bytes]:
        try:
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except TimeoutError:
            raise errors.TimeoutError(
                f"the daemon at {self.socket_path} did not answer {method} {path} "
                f"within {self.timeout} s") from None
        except (OSError, http.client.HTTPException) as e:
            raise errors.NoServiceError(
                f"the pynetlib daemon is not reachable at {self.socket_path} ({e}); "
                "is `pynetlib daemon` running, and may you use its socket?") from None

    # --- misc ------------------------------------------------------------------------

    def ping(self) -> str:
        return self.request("GET", "/_ping")

    def openapi(self) -> dict:
        return self.request("GET", "/openapi.json")

    def audit(self) -> list[str]:
        return self.request("GET", "/audit")

    def reconcile(self) -> list[str]:
        return self.request("POST", "/reconcile")

    # --- networks --------------------------------------------------------------------

    def networks(self, name: str | None = None, partial_id: str | None = None) -> list[dict]:
        return self.request("GET", "/networks" + _query(name=name, partial_id=partial_id))

    def create_network(self, name: str, **fields: Any) -> str:
        """Create a network; ``fields`` as the POST /networks body (network_type, subnet,
        gateway, ip_range, enable_ipv6, subnet_v6, mtu, internal, driver_opts)."""
        return self.request("POST", "/networks", {"name": name, **fields})

    def network(self, nid: str) -> dict:
        return self.request("GET", _path("networks", nid))

    def delete_network(self, nid: str) -> None:
        return self.request("DELETE", _path("networks", nid))

    # --- endpoints -------------------------------------------------------------------

    def endpoints(self, nid: str, name: str | None = None,
                  partial_id: str | None = None) -> list[dict]:
        return self.request("GET", _path("networks", nid, "endpoints")
                            + _query(name=name, partial_id=partial_id))

    def create_endpoint(self, nid: str, name: str, **fields: Any) -> str:
        """Create an endpoint; ``fields`` as the body (ipv4, ipv6, mac, port_mapping,
        exposed_ports)."""
        return self.request("POST", _path("networks", nid, "endpoints"),
                            {"name": name, **fields})

    def endpoint(self, nid: str, eid: str) -> dict:
        return self.request("GET", _path("networks", nid, "endpoints", eid))

    def delete_endpoint(self, nid: str, eid: str) -> None:
        return self.request("DELETE", _path("networks", nid, "endpoints", eid))

    # --- join / leave ----------------------------------------------------------------

    def join(self, nid: str, eid: str, container_id: str, **fields: Any) -> dict:
        """Join ``container_id`` to the endpoint; ``fields`` as the body (host_name,
        domain_name, hosts_path, resolv_conf_path, dns, dns_search, extra_hosts,
        use_default_sandbox, netns_path). Returns ``{"sandbox_key": ...}``."""
        return self.request("POST", _path("networks", nid, "endpoints", eid, "sandboxes"),
                            {"container_id": container_id, **fields})

    def leave(self, nid: str, eid: str, container_id: str) -> None:
        return self.request("DELETE", _path("networks", nid, "endpoints", eid, "sandboxes",
                                            container_id))

    # --- sandboxes -------------------------------------------------------------------

    def sandboxes(self, container_id: str | None = None,
                  partial_container_id: str | None = None) -> list[dict]:
        return self.request("GET", "/sandboxes" + _query(
            container_id=container_id, partial_container_id=partial_container_id))

    def sandbox(self, container_id: str) -> dict:
        return self.request("GET", _path("sandboxes", container_id))
