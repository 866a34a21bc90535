"""The daemon's listening sockets: unix sockets with their owner and mode, and the
optional TCP listener's TLS context (client certificates required)."""

from __future__ import annotations

import os
import socket
import ssl
import stat
from dataclasses import dataclass

BACKLOG = 128


class ListenerError(Exception):
    """A listener could not be set up; the daemon refuses to start."""


@dataclass
class UnixListener:
    path: str
    sock: socket.socket
    inode: int

    def unlink(self) -> None:
        """Remove the socket's file (no new client can connect), unless someone
        replaced it. Connections already made go on."""
        try:
            if os.lstat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    def remove(self) -> None:
        """Close the socket and remove its file."""
        self.sock.close()
        self.unlink()


def _make_parent(path: str) -> None:
    parent = os.path.dirname(path) or "."
    if os.path.isdir(parent):
        return
    try:
        os.makedirs(parent, mode=0o755)
        os.chmod(parent, 0o755)          # makedirs' mode is reduced by the umask
    except FileExistsError:
        pass
    except OSError as e:
        raise ListenerError(f"cannot create the directory {parent}: {e.strerror}") from None


def _clear_stale(path: str) -> None:
    """Remove a socket file left by a daemon that is gone; refuse anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenerError(f"{path} exists and is not a socket; remove it or choose "
                            "another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(path)
    except ConnectionRefusedError:
        pass                             # nobody listens: stale
    except FileNotFoundError:
        return
    except OSError as e:
        raise ListenerError(f"cannot tell whether something listens on {path}: "
                            f"{e.strerror}") from None
    else:
        raise ListenerError(f"something already listens on {path} (another daemon?)")
    finally:
        probe.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def unix_listener(path: str, group: int | None) -> UnixListener:
    """A listening unix socket at ``path``: owned by this (root) user, mode 0600, or
    0660 with group ``group``. It never has a wider mode than that, not even briefly."""
    path = os.path.abspath(path)
    _make_parent(path)
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as e:
        sock.close()
        raise ListenerError(f"cannot bind {path}: {e.strerror}") from None
    finally:
        os.umask(old_umask)
    try:
        if group is not None:
            os.chown(path, -1, group)
            os.chmod(path, 0o660)
        else:
            os.chmod(path, 0o600)
        sock.listen(BACKLOG)
        sock.setblocking(False)
        inode = os.lstat(path).st_ino
    except OSError as e:
        sock.close()
        try:
            os.unlink(path)
        except OSError:
            pass
        raise ListenerError(f"cannot set up {path}: {e.strerror}") from None
    return UnixListener(path, sock, inode)


def tls_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """A server context that requires a client certificate signed by ``client_ca``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(cafile=client_ca)
    except (OSError, ssl.SSLError) as e:
        raise ListenerError(f"TLS set-up failed: {e}") from None
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ListenerError(f"--tcp {text!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)

