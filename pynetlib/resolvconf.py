"""A container's resolv.conf, built as libnetwork builds it.

Without DNS options the host's file is copied after filtering: loopback nameservers are
dropped (they mean nothing inside the container's namespace), IPv6 nameservers too when
the container has no IPv6, and when nothing is left the fallback public servers are
used. With DNS or search options the file is built from them (the host's values fill
whichever list was not given). A user's own edit of the container's file is kept: the
content last written is remembered by hash, and a file that changed since is left alone.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os

from pynetlib.errors import BadRequestError
from pynetlib.etchosts import check_hostname, path_lock, write_atomic

DEFAULT_IPV4_DNS = ("8.8.8.8", "8.8.4.4")
DEFAULT_IPV6_DNS = ("2001:4860:4860::8888", "2001:4860:4860::8844")
HOST_RESOLV_CONF = "/etc/resolv.conf"


def _lines(text: str) -> list[list[str]]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if line:
            out.append(line.split())
    return out


def nameservers(text: str) -> list[str]:
    return [f[1] for f in _lines(text) if f[0] == "nameserver" and len(f) > 1]


def search_domains(text: str) -> list[str]:
    found: list[str] = []
    for f in _lines(text):
        if f[0] in ("search", "domain"):
            found = f[1:]
    return found


def options(text: str) -> list[str]:
    found: list[str] = []
    for f in _lines(text):
        if f[0] == "options":
            found += f[1:]
    return found


def _is_loopback(ns: str) -> bool:
    try:
        return ipaddress.ip_address(ns.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _is_v6(ns: str) -> bool:
    try:
        return ipaddress.ip_address(ns.split("%", 1)[0]).version == 6
    except ValueError:
        return False


def filter_dns(text: str, ipv6: bool) -> tuple[str, bool]:
    """Drop loopback (and, without IPv6, IPv6) nameservers; fall back to the defaults.

    Returns the new text and whether it differs from the input."""
    out, kept = [], 0
    for line in text.splitlines():
        f = line.split()
        if f and f[0] == "nameserver" and len(f) > 1:
            if _is_loopback(f[1]) or (not ipv6 and _is_v6(f[1])):
                continue
            kept += 1
        out.append(line)
    if kept == 0:
        defaults = list(DEFAULT_IPV4_DNS) + (list(DEFAULT_IPV6_DNS) if ipv6 else [])
        out += [f"nameserver {d}" for d in defaults]
    new = "\n".join(out) + "\n"
    return new, new != (text if text.endswith("\n") else text + "\n")


def render(dns: list[str], search: list[str], opts: list[str]) -> str:
    lines = []
    if search and search != ["."]:
        lines.append("search " + " ".join(search))
    lines += [f"nameserver {d}" for d in dns]
    if opts:
        lines.append("options " + " ".join(opts))
    return "\n".join(lines) + "\n"


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# The hash of what pynetlib last wrote at each path: a user's edit is detected by
# comparing the file with it. A file pynetlib has no hash for is never overwritten.
_written: dict[str, str] = {}


def _check_dns(values, what):
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.ip_address(str(v))))
        except ValueError:
            raise BadRequestError(f"invalid {what} {v!r}") from None
    return out


_host_cache: dict[str, tuple[tuple, str]] = {}


def _read_host(host_path: str) -> str:
    """The host's file, re-read only when it changed (size, mtime, inode)."""
    try:
        st = os.stat(host_path)
    except FileNotFoundError:
        return ""
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _host_cache.get(host_path)
    if hit is not None and hit[0] == key:
        return hit[1]
    with open(host_path) as f:
        text = f.read()
    _host_cache[host_path] = (key, text)
    return text


def build(path: str, *, dns=(), dns_search=(), dns_options=(), ipv6: bool = False,
          host_path: str = HOST_RESOLV_CONF, fresh: bool = False) -> bool:
    """Write the container's resolv.conf at ``path``. Returns False (and writes nothing)
    when the file exists and is not exactly what pynetlib last wrote there (the user
    edited it, or it is not pynetlib's). ``fresh``: a new file in a new directory."""
    dns = _check_dns(dns, "DNS server")
    search = [check_hostname(s, "DNS search domain") if s != "." else s for s in dns_search]
    for o in dns_options:
        if not isinstance(o, str) or not o or any(c.isspace() for c in o):
            raise BadRequestError(f"invalid DNS option {o!r}")
    host_text = _read_host(host_path)
    if dns or search or dns_options:
        text = render(dns or [n for n in nameservers(filter_dns(host_text, ipv6)[0])],
                      search or search_domains(host_text), list(dns_options) or
                      options(host_text))
    else:
        text = filter_dns(host_text, ipv6)[0]
    with path_lock(path):
        if not fresh:
            try:
                with open(path) as f:
                    current = f.read()
            except FileNotFoundError:
                current = None
            if current is not None and _written.get(path) != _hash(current):
                return False            # the user's edit (or someone else's file) wins
        write_atomic(path, text, fresh=fresh)
        _written[path] = _hash(text)
    return True


def forget(path: str) -> None:
    """Drop the remembered hash of a removed file."""
    _written.pop(path, None)
