"""Who is on the other end of a unix socket connection, and whether they may use it.

The kernel records the peer's credentials when it connects (``SO_PEERCRED``: pid, uid,
gid) and its supplementary groups (``SO_PEERGROUPS``, Linux 4.13). Root may always use
the daemon; with a configured group, so may members of that group (as their primary
group or a supplementary one). Everyone else is refused.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass

SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
_UCRED = struct.Struct("iII")          # pid_t, uid_t, gid_t
_GROUPS_BUF = 1024                     # CPython's largest getsockopt buffer: 256 groups


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...]


def _groups_from_proc(pid: int) -> tuple[int, ...]:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return tuple(int(g) for g in line.split()[1:])
    except (OSError, ValueError):
        pass
    return ()


def _peer_groups(sock, pid: int) -> tuple[int, ...]:
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, _GROUPS_BUF)
    except OSError as e:
        if e.errno != errno.ERANGE:
            raise
        return _groups_from_proc(pid)   # more than 256 groups: ask /proc instead
    n = len(raw) // 4
    return struct.unpack(f"{n}I", raw[:n * 4])


def peer_of(sock) -> Peer:
    """The credentials of a connected unix stream socket's peer."""
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                  _UCRED.size))
    return Peer(pid, uid, gid, _peer_groups(sock, pid))


@dataclass(frozen=True)
class AccessPolicy:
    """Root (and the daemon's own user) always; members of ``group`` when one is set."""

    group: int | None = None

    def allows(self, peer: Peer) -> bool:
        if peer.uid in (0, os.geteuid()):
            return True
        if self.group is None:
            return False
        return peer.gid == self.group or self.group in peer.groups

    def reason(self, peer: Peer) -> str:
        who = f"uid {peer.uid} (pid {peer.pid})"
        if self.group is None:
            return f"{who} is not root; only root may use this socket"
        return f"{who} is neither root nor a member of group {self.group}"
