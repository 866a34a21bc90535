"""Finding a network plugin by name, the way Docker's plugin package does.

A plugin NAME is found, in this order:

1. a unix socket ``NAME.sock`` or ``NAME/NAME.sock`` in any of the plugin directories
   (in the order given);
2. per directory, in order: a spec file ``NAME.spec`` (or ``NAME/NAME.spec``) holding
   one URL, then ``NAME.json`` (or ``NAME/NAME.json``) holding
   ``{"Name": ..., "Addr": URL, "TLSConfig": {...}}``.

The default directories are Docker's: ``/run/docker/plugins`` (sockets),
``/etc/docker/plugins`` and ``/usr/lib/docker/plugins`` (specs).

A URL is ``unix:///absolute/path`` or ``tcp://IP:PORT`` where IP is a loopback literal
(127.0.0.0/8 or ::1). Anything else (``tcp://`` to another host, ``http(s)://``, a host
name, TLS settings) is refused with :class:`PluginSpecError`: the plugin protocol carries
no authentication, so pynetlib only speaks it to processes on this host. Plugin files
must belong to root or to the calling user, and spec files must not be writable by group
or others.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import stat
from dataclasses import dataclass
from urllib.parse import urlsplit

from pynetlib.drivers.remote.errors import PluginSpecError

DEFAULT_PLUGIN_DIRS = ("/run/docker/plugins", "/etc/docker/plugins", "/usr/lib/docker/plugins")
SPEC_MAX_BYTES = 64 * 1024
SUN_PATH_MAX = 107                      # sockaddr_un.sun_path holds 108 bytes with NUL
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


@dataclass(frozen=True)
class PluginAddress:
    """Where a plugin listens: a unix socket path, or a loopback (host, port)."""

    name: str
    scheme: str                         # "unix" or "tcp"
    path: str = ""                      # unix
    host: str = ""                      # tcp
    port: int = 0                       # tcp
    source: str = ""                    # the file it was found through

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def valid_plugin_name(name: object) -> bool:
    """A name that can be looked up as a file: [A-Za-z0-9][A-Za-z0-9_.-]*, at most 128
    characters, no '..' (so never a path, never outside the plugin directories)."""
    return isinstance(name, str) and bool(_NAME_RE.match(name)) and ".." not in name


def check_plugin_dirs(dirs: object) -> tuple[str, ...]:
    """The plugin directories as absolute, normalised paths (a BadRequest otherwise)."""
    from pynetlib.errors import BadRequestError

    if isinstance(dirs, (str, bytes)) or not isinstance(dirs, (list, tuple)):
        raise BadRequestError("plugin_dirs must be a list of absolute directory paths")
    out = []
    for d in dirs:
        if not isinstance(d, str) or not os.path.isabs(d) or "\0" in d:
            raise BadRequestError(f"invalid plugin directory {d!r}: an absolute path")
        out.append(os.path.normpath(d))
    return tuple(out)


def find_plugin(name: str, dirs: tuple[str, ...] = DEFAULT_PLUGIN_DIRS) -> PluginAddress | None:
    """The address of plugin ``name``, or None when no directory has it."""
    if not valid_plugin_name(name):
        return None
    for d in dirs:
        for path in _candidates(d, name, ".sock"):
            if _is_socket(path):
                _check_owner(name, path)
                return PluginAddress(name, "unix", path=path, source=path)
    for d in dirs:
        for ext, reader in ((".spec", _read_spec), (".json", _read_json_spec)):
            for path in _candidates(d, name, ext):
                if os.path.isfile(path):
                    _check_owner(name, path)
                    return reader(name, path)
    return None


def _check_owner(name: str, path: str) -> None:
    """A plugin file must belong to root or to this process's user: whoever owns it
    decides where this network type's traffic goes. A spec file must not be writable
    by group or others either."""
    st = os.stat(path)
    if st.st_uid not in (0, os.geteuid()):
        raise PluginSpecError(name, "", f"{path} is owned by uid {st.st_uid}, not by root "
                                        "or this process's user")
    if not stat.S_ISSOCK(st.st_mode) and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PluginSpecError(name, "", f"{path} is writable by group or others")


def _candidates(base: str, name: str, ext: str) -> tuple[str, str]:
    return os.path.join(base, name + ext), os.path.join(base, name, name + ext)


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _read_text(name: str, path: str) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read(SPEC_MAX_BYTES + 1)
    except OSError as e:
        raise PluginSpecError(name, "", f"cannot read {path}: {e.strerror}") from None
    if len(raw) > SPEC_MAX_BYTES:
        raise PluginSpecError(name, "", f"{path} is larger than {SPEC_MAX_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PluginSpecError(name, "", f"{path} is not UTF-8 text") from None


def _read_spec(name: str, path: str) -> PluginAddress:
    return parse_url(name, _read_text(name, path).strip(), path)


def _read_json_spec(name: str, path: str) -> PluginAddress:
    try:
        spec = json.loads(_read_text(name, path))
    except (ValueError, RecursionError) as e:
        raise PluginSpecError(name, "", f"{path} is not valid JSON: {e}") from None
    if not isinstance(spec, dict):
        raise PluginSpecError(name, "", f"{path}: expected a JSON object")
    if not isinstance(spec.get("Name", ""), str):
        raise PluginSpecError(name, "", f"{path}: Name must be a string")
    addr = spec.get("Addr")
    if not isinstance(addr, str) or not addr:
        raise PluginSpecError(name, "", f"{path}: Addr must be a non-empty URL string")
    tls = spec.get("TLSConfig")
    if tls not in (None, {}):
        if not isinstance(tls, dict):
            raise PluginSpecError(name, "", f"{path}: TLSConfig must be an object")
        if any(tls.get(k) for k in ("CAFile", "CertFile", "KeyFile")):
            raise PluginSpecError(name, "", f"{path}: TLS plugin connections are not "
                                            "supported (plugins are reached on this host "
                                            "only: a unix socket or loopback TCP)")
    return parse_url(name, addr, path)


def parse_url(name: str, url: str, source: str = "") -> PluginAddress:
    """A plugin URL: ``unix:///path`` or ``tcp://<loopback IP>:<port>``."""
    where = f"{source}: " if source else ""
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise PluginSpecError(name, "", f"{where}invalid URL {url!r}: {e}") from None
    if parts.scheme == "unix":
        path = parts.path
        if parts.netloc or not os.path.isabs(path) or "\0" in path:
            raise PluginSpecError(name, "", f"{where}invalid unix URL {url!r}: expected "
                                            "unix:///absolute/path")
        if len(os.fsencode(path)) > SUN_PATH_MAX:
            raise PluginSpecError(name, "", f"{where}socket path {path!r} is too long")
        return PluginAddress(name, "unix", path=os.path.normpath(path), source=source)
    if parts.scheme == "tcp":
        return _tcp_address(name, url, parts, where, source)
    raise PluginSpecError(name, "", f"{where}unsupported plugin URL {url!r}: use "
                                    "unix:///path or tcp://127.0.0.1:PORT")


def _tcp_address(name, url, parts, where, source) -> PluginAddress:
    try:
        host, port = parts.hostname, parts.port
    except ValueError as e:
        raise PluginSpecError(name, "", f"{where}invalid URL {url!r}: {e}") from None
    if parts.path not in ("", "/") or parts.query or parts.username or port is None or \
            port == 0 or host is None:
        raise PluginSpecError(name, "", f"{where}invalid tcp URL {url!r}: expected "
                                        "tcp://IP:PORT")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise PluginSpecError(name, "", f"{where}tcp plugin address {host!r} must be a "
                                        "loopback IP literal, not a host name") from None
    if not ip.is_loopback:
        raise PluginSpecError(name, "", f"{where}refusing tcp plugin address {ip}: the "
                                        "plugin protocol has no authentication, so only "
                                        "loopback addresses are allowed")
    return PluginAddress(name, "tcp", host=str(ip), port=port, source=source)
