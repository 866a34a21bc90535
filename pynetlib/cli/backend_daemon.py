"""The daemon backend: the daemon's HTTP API through ``pynetlib.client.Client``, which
raises the daemon's error categories as pynetlib.errors exceptions."""

from __future__ import annotations

import errno
import socket

from pynetlib.cli.failures import DaemonUnreachable
from pynetlib.client import Client


def _check_reachable(socket_path: str, timeout: float) -> None:
    """Connect once, so an absent or refusing daemon gets a message that says what to do."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(socket_path)
    except OSError as e:
        raise DaemonUnreachable(socket_path, _why(e)) from None
    finally:
        sock.close()


def _why(e: OSError) -> str:
    if e.errno == errno.ENOENT:
        return "no such socket"
    if e.errno == errno.ECONNREFUSED:
        return "nobody is listening on it"
    if e.errno == errno.EACCES:
        return "Permission denied: the socket is root's (or its group's)"
    return e.strerror or str(e)


class DaemonBackend:
    def __init__(self, socket_path: str, timeout: float = 60.0) -> None:
        _check_reachable(socket_path, timeout)
        self.socket_path = socket_path
        self._client = Client(socket_path, timeout=timeout)

    def close(self) -> None:
        pass                                    # the client opens a connection per call

    def networks(self, name: str | None = None, partial_id: str | None = None) -> list[dict]:
        return self._client.networks(name=name, partial_id=partial_id)

    def network(self, nid: str) -> dict:
        return self._client.network(nid)

    def create_network(self, body: dict) -> str:
        fields = dict(body)
        return self._client.create_network(fields.pop("name"), **fields)

    def delete_network(self, nid: str) -> None:
        self._client.delete_network(nid)

    def endpoints(self, nid: str) -> list[dict]:
        return self._client.endpoints(nid)

    def endpoint(self, nid: str, eid: str) -> dict:
        return self._client.endpoint(nid, eid)

    def create_endpoint(self, nid: str, body: dict) -> str:
        fields = dict(body)
        return self._client.create_endpoint(nid, fields.pop("name"), **fields)

    def delete_endpoint(self, nid: str, eid: str) -> None:
        self._client.delete_endpoint(nid, eid)

    def join(self, nid: str, eid: str, body: dict) -> dict:
        fields = dict(body)
        return self._client.join(nid, eid, fields.pop("container_id"), **fields)

    def leave(self, nid: str, eid: str, container_id: str) -> None:
        self._client.leave(nid, eid, container_id)

    def sandboxes(self) -> list[dict]:
        return self._client.sandboxes()

    def sandbox(self, container_id: str) -> dict:
        return self._client.sandbox(container_id)

    def audit(self) -> list[str]:
        return self._client.audit()

    def reconcile(self) -> list[str]:
        return self._client.reconcile()
