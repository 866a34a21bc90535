"""A container's /etc/hosts, built as libnetwork builds it.

First the container's own line (``IP\\thostname.domain hostname``) when it has an
address, then the fixed defaults, then the extra records. Writes are atomic (a temporary
file renamed over the target) and serialised per path.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
from dataclasses import dataclass

from pynetlib.errors import BadRequestError

DEFAULT_LINES = (
    ("127.0.0.1", "localhost"),
    ("::1", "localhost ip6-localhost ip6-loopback"),
    ("fe00::0", "ip6-localnet"),
    ("ff00::0", "ip6-mcastprefix"),
    ("ff02::1", "ip6-allnodes"),
    ("ff02::2", "ip6-allrouters"),
)

_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,252})?\Z")
# Striped locks: a bounded set, so a long-running process does not grow one lock per
# container it ever saw. Two paths sharing a stripe only serialise their writes.
_STRIPES = 64
_locks = [threading.Lock() for _ in range(_STRIPES)]


@dataclass(frozen=True)
class Record:
    hosts: str      # one or more names separated by spaces
    ip: str


def path_lock(path: str) -> threading.Lock:
    return _locks[hash(os.path.abspath(path)) % _STRIPES]


def check_hostname(name: str, what: str = "hostname") -> str:
    if not isinstance(name, str) or not _HOST_RE.match(name) or ".." in name:
        raise BadRequestError(f"invalid {what} {name!r}")
    return name


def check_ip(ip: object, what: str = "address") -> str:
    try:
        return str(ipaddress.ip_address(str(ip)))
    except ValueError:
        raise BadRequestError(f"invalid {what} {ip!r}") from None


def write_atomic(path: str, data: str, mode: int = 0o644, *, fresh: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed over it.

    Callers hold :func:`path_lock` for ``path``, so one temporary name per path is
    enough; the directory must exist. ``fresh``: the file is new in a directory nobody
    reads yet, so it is created in place (one system call less on the join path); a
    leftover there (a crash's) is replaced."""
    if fresh:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags, mode)
        except FileExistsError:
            os.unlink(path)
            fd = os.open(path, flags, mode)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)
        return
    tmp = path + ".pnl-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                 mode)
    try:
        try:
            os.write(fd, data.encode())
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def render(ip: str | None, hostname: str | None, domainname: str | None,
           extra: list[Record] | tuple[Record, ...] = ()) -> str:
    lines = []
    if ip and hostname:
        if domainname:
            lines.append(f"{ip}\t{hostname}.{domainname} {hostname}")
        elif "." in hostname:
            lines.append(f"{ip}\t{hostname} {hostname.split('.', 1)[0]}")
        else:
            lines.append(f"{ip}\t{hostname}")
    lines += [f"{a}\t{n}" for a, n in DEFAULT_LINES]
    lines += [f"{r.ip}\t{r.hosts}" for r in extra]
    return "\n".join(lines) + "\n"


def build(path: str, ip: str | None, hostname: str | None, domainname: str | None,
          extra: list[Record] | tuple[Record, ...] = (), *, fresh: bool = False) -> None:
    """Write a hosts file (``fresh``: a new file in a new directory)."""
    if hostname:
        check_hostname(hostname)
    if domainname:
        check_hostname(domainname, "domain name")
    if ip:
        ip = check_ip(ip)
    for r in extra:
        check_ip(r.ip, "extra host address")
        for h in r.hosts.split():
            check_hostname(h, "extra host name")
    with path_lock(path):
        write_atomic(path, render(ip, hostname, domainname, extra), fresh=fresh)


def update(path: str, ip: str, hostname: str) -> None:
    """Set the address of every line whose names include ``hostname`` exactly."""
    check_hostname(hostname)
    ip = check_ip(ip)
    with path_lock(path):
        with open(path) as f:
            lines = f.read().splitlines()
        out = []
        for line in lines:
            parts = line.split("\t", 1)
            if len(parts) == 2 and hostname in parts[1].split():
                line = f"{ip}\t{parts[1]}"
            out.append(line)
        write_atomic(path, "\n".join(out) + "\n")


def add(path: str, records: list[Record]) -> None:
    for r in records:
        check_ip(r.ip)
        for h in r.hosts.split():
            check_hostname(h)
    with path_lock(path):
        with open(path) as f:
            text = f.read()
        if text and not text.endswith("\n"):
            text += "\n"
        text += "".join(f"{r.ip}\t{r.hosts}\n" for r in records)
        write_atomic(path, text)


def delete(path: str, records: list[Record]) -> None:
    drop = {f"{r.ip}\t{r.hosts}" for r in records}
    with path_lock(path):
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return
        write_atomic(path, "".join(line + "\n" for line in lines if line not in drop))
