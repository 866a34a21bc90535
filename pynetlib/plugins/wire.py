"""The wire format of Docker's plugin protocol: request bodies checked field by field.

Docker's engine sends every request as an HTTP POST with a JSON object whose field
names are the Go struct names of libnetwork's ``drivers/remote/api`` and
``ipams/remote/api`` (``NetworkID``, ``IPv4Data``, ``PoolID``...). Go encodes nil maps
and slices as ``null`` and a nil request as ``null``; both are accepted where Go would
send them. Anything else that does not fit (not JSON, not an object, an unknown field, a
wrong type, too deep, an id that is not Docker's 64 hex characters) is a
:class:`ProtocolError`: the request could not be decoded, and the reply is an HTTP
error status with ``{"Err": ...}`` as ``libnetwork/docs/remote.md`` asks.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"
MAX_BODY = 256 * 1024
MAX_DEPTH = 16
_ID_RE = re.compile(r"^[0-9a-f]{64}\Z")


class ProtocolError(Exception):
    """A request that does not decode as the method's request; HTTP ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Field:
    kind: str               # "str", "bool", "int", "object", "strmap", "list", "any"
    required: bool = False
    nullable: bool = False  # Go's nil map/slice arrives as null


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a decoded JSON value (stops counting past ``limit``)."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return deepest


def decode_body(raw: bytes) -> Any:
    """The JSON value of a request body (an empty body is ``None``)."""
    if len(raw) > MAX_BODY:
        raise ProtocolError(f"request body over {MAX_BODY} bytes", 413)
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ProtocolError(f"request body is not JSON: {e}") from None
    if _depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise ProtocolError(f"request body nests deeper than {MAX_DEPTH} levels")
    return value


def _check(name: str, value: Any, f: Field) -> Any:
    if value is None:
        if f.nullable:
            return None
        raise ProtocolError(f"field {name} cannot be null")
    ok = {
        "str": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "object": lambda v: isinstance(v, dict),
        "strmap": lambda v: isinstance(v, dict) and all(isinstance(x, str)
                                                         for x in v.values()),
        "list": lambda v: isinstance(v, list),
        "any": lambda v: True,
    }[f.kind](value)
    if not ok:
        what = {"strmap": "an object of strings", "object": "an object", "list": "a list",
                "int": "an integer"}.get(f.kind, f"a {f.kind}")
        raise ProtocolError(f"field {name} must be {what}, got {type(value).__name__}")
    return value


def parse_fields(body: Any, spec: dict[str, Field], what: str) -> dict[str, Any]:
    """The fields of a request object, checked against ``spec``. A method without
    fields takes an empty body, ``null`` or ``{}``."""
    if body is None:
        if any(f.required for f in spec.values()):
            raise ProtocolError(f"{what}: a JSON object is required")
        body = {}
    if not isinstance(body, dict):
        raise ProtocolError(f"{what}: the body must be a JSON object")
    unknown = sorted(set(body) - set(spec))
    if unknown:
        raise ProtocolError(f"{what}: unknown field(s) {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name, f in spec.items():
        if name not in body:
            if f.required:
                raise ProtocolError(f"{what}: field {name} is required")
            out[name] = None
            continue
        out[name] = _check(name, body[name], f)
    return out


def docker_id(value: str, what: str) -> str:
    """A Docker network or endpoint id: 64 lowercase hex characters."""
    if not _ID_RE.match(value):
        raise ProtocolError(f"{what} {value!r} is not a Docker id (64 lowercase hex "
                            "characters)")
    return value


def sandbox_key(value: str) -> str:
    """Docker's SandboxKey: the absolute path of the container's network namespace."""
    if not value or not os.path.isabs(value) or "\0" in value or len(value) > 4096:
        raise ProtocolError(f"SandboxKey {value!r} is not an absolute path")
    return os.path.normpath(value)


def reply_body(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
