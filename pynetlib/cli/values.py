"""Parsers for the CLI's compound values: ``-o KEY=VALUE``, ``-p`` port publications,
``--expose``, ``--add-host``. Each raises UsageError with what was expected."""

from __future__ import annotations

import re

from pynetlib.cli.failures import UsageError

_INT = re.compile(r"^[+-]?[0-9]+$")
_PROTOS = ("tcp", "udp", "sctp")


def driver_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE``: "true"/"false" become bools, integers ints, anything else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"-o/--opt takes KEY=VALUE, got {text!r}")
    if value.lower() in ("true", "false"):
        return key, value.lower() == "true"
    if _INT.match(value):
        return key, int(value)
    return key, value


def driver_options(items: list[str] | None) -> dict:
    opts: dict = {}
    for item in items or ():
        key, value = driver_option(item)
        if key in opts:
            raise UsageError(f"driver option {key!r} given twice")
        opts[key] = value
    return opts


def _port(text: str, what: str, allow_zero: bool) -> int:
    if not text.isdigit() or not (0 if allow_zero else 1) <= int(text) <= 65535:
        raise UsageError(f"invalid {what} {text!r}: a number from "
                         f"{0 if allow_zero else 1} to 65535")
    return int(text)


def _proto(text: str, spec: str) -> str:
    if text.lower() not in _PROTOS:
        raise UsageError(f"invalid protocol in {spec!r}: one of {', '.join(_PROTOS)}")
    return text.lower()


def publish(spec: str) -> dict:
    """``[HOST_IP:]HOST_PORT:PORT[/PROTO]`` to a port binding of the HTTP API. An empty
    HOST_PORT (``HOST_IP::PORT``) asks for a dynamic host port; an IPv6 HOST_IP goes in
    brackets (``[::1]:8080:80``)."""
    body, _, proto = spec.partition("/")
    proto = _proto(proto or "tcp", spec)
    host_ip = None
    if body.startswith("["):
        end = body.find("]:")
        if end < 0:
            raise UsageError(f"invalid port publication {spec!r}: [IPv6]:HOST_PORT:PORT")
        host_ip, body = body[1:end], body[end + 2:]
    parts = body.split(":")
    if host_ip is None and len(parts) == 3:
        host_ip, parts = parts[0], parts[1:]
    if len(parts) != 2 or host_ip == "":
        raise UsageError(f"invalid port publication {spec!r}: expected "
                         "[HOST_IP:]HOST_PORT:PORT[/PROTO]")
    host_port = _port(parts[0], "host port", True) if parts[0] else 0
    return {"proto": proto, "port": _port(parts[1], "container port", False),
            "host_port": host_port, "host_ip": host_ip}


def expose(spec: str) -> dict:
    """``PORT[/PROTO]``."""
    port, _, proto = spec.partition("/")
    return {"proto": _proto(proto or "tcp", spec), "port": _port(port, "port", False)}


def extra_host(spec: str) -> dict:
    """``NAME:IP`` (the IP may be IPv6: split at the first colon)."""
    name, sep, address = spec.partition(":")
    if not sep or not name or not address:
        raise UsageError(f"--add-host takes NAME:IP, got {spec!r}")
    return {"name": name, "address": address}


def host_socket(url: str) -> str:
    """The socket path of ``--host unix:///path.sock`` (a bare absolute path is fine too)."""
    if url.startswith("unix://"):
        path = url[len("unix://"):]
    elif url.startswith("/"):
        path = url
    else:
        raise UsageError(f"--host takes unix:///path/to/socket, got {url!r}")
    if not path.startswith("/") or "\0" in path:
        raise UsageError(f"--host needs an absolute socket path, got {url!r}")
    return path
