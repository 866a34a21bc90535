"""Helpers for the daemon tests: a real daemon process (started by the test, inside the
test run's namespaces), raw HTTP over its unix socket, a requests session over it, and
a child process that talks to a socket as another user."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from pynetlib.client import Client, UnixHTTPConnection

START_TIMEOUT = 30.0


def socket_dir() -> str:
    """A fresh directory for sockets that every user may traverse (pytest's tmp_path is
    0700 root, which alone would refuse a non-root peer for the wrong reason)."""
    d = tempfile.mkdtemp(prefix="pnl-daemon-", dir="/tmp")
    os.chmod(d, 0o755)
    return d


@dataclass
class Daemon:
    """A ``python -m pynetlib.daemon`` process."""

    state_dir: str
    socket_path: str
    proc: subprocess.Popen
    log_path: str
    args: list[str] = field(default_factory=list)

    @property
    def client(self) -> Client:
        return Client(self.socket_path, timeout=60)

    def logs(self) -> list[dict]:
        with open(self.log_path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def log_text(self) -> str:
        with open(self.log_path, encoding="utf-8") as f:
            return f.read()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the daemon did not stop within {timeout} s:\n"
                                 + self.log_text())


def daemon_argv(state_dir: str, socket_path: str, *extra: str) -> list[str]:
    argv = [sys.executable, "-m", "pynetlib.daemon", "--state-dir", state_dir,
            "--socket", socket_path]
    if not any(a.startswith("--plugin-socket") or a == "--no-plugin-socket" for a in extra):
        argv.append("--no-plugin-socket")
    return argv + list(extra)


def start_daemon(state_dir: str, socket_path: str, *extra: str, env: dict | None = None,
                 wait: bool = True) -> Daemon:
    log_path = os.path.join(os.path.dirname(state_dir.rstrip("/")) or ".",
                            f"daemon-{os.path.basename(socket_path)}-{time.monotonic_ns()}.log")
    full_env = dict(os.environ)
    full_env.pop("PYNETLIB_FAILPOINTS", None)
    full_env.update(env or {})
    with open(log_path, "w") as log:
        proc = subprocess.Popen(daemon_argv(state_dir, socket_path, *extra), env=full_env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    d = Daemon(state_dir, socket_path, proc, log_path, list(extra))
    if wait:
        wait_ready(d)
    return d


def wait_ready(d: Daemon) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if d.proc.poll() is not None:
            raise AssertionError(f"the daemon exited with {d.proc.returncode}:\n"
                                 + d.log_text())
        if any(e.get("event") == "start" for e in _safe_logs(d)):
            return
        time.sleep(0.05)
    d.stop(signal.SIGKILL)
    raise AssertionError("the daemon did not start:\n" + d.log_text())


def _safe_logs(d: Daemon) -> list[dict]:
    try:
        return d.logs()
    except ValueError:
        return []                       # a line half written


def audit_settled(client: Client, timeout: float = 10.0) -> list[str]:
    """The daemon's audit once the kernel's own asynchronous cleanup (a deleted
    namespace takes its veth end with it a moment later) is done, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        problems = client.audit()
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.05)


def cleanup_state(state_dir: str) -> list[str]:
    """Leave and delete everything in ``state_dir`` with an in-process controller;
    returns its audit afterwards."""
    import pynetlib

    c = pynetlib.Controller(state_dir)
    try:
        for net in c.networks():
            for ep in net.endpoints():
                if ep.joined_container:
                    ep.leave(ep.joined_container)
                ep.delete()
            net.delete()
        c.flush_teardown()
        deadline = time.monotonic() + 10
        while c.audit() and time.monotonic() < deadline:
            time.sleep(0.05)
        return c.audit()
    finally:
        c.close()


# -- raw HTTP ------------------------------------------------------------------------------

def raw(socket_path: str, method: str, path: str, body: bytes | str | None = None,
        headers: dict | None = None, timeout: float = 60) -> tuple[int, object, dict]:
    """Send exactly this request; (status, decoded JSON or raw text, headers)."""
    if isinstance(body, str):
        body = body.encode()
    conn = UnixHTTPConnection(socket_path, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if body is not None and "Content-Type" not in hdrs:
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        try:
            value = json.loads(data) if data else None
        except ValueError:
            value = data.decode(errors="replace")
        return resp.status, value, dict(resp.getheaders())
    finally:
        conn.close()


def jbody(value) -> bytes:
    return json.dumps(value).encode()


# -- a requests session over a unix socket (for schemathesis) ------------------------------

def unix_session(socket_path: str):
    """A ``requests.Session`` whose http://localhost goes to ``socket_path``."""
    import requests
    import urllib3
    from requests.adapters import HTTPAdapter

    class _Conn(urllib3.connection.HTTPConnection):
        def _new_conn(self):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(60)
            s.connect(socket_path)
            return s

    class _Pool(urllib3.connectionpool.HTTPConnectionPool):
        ConnectionCls = _Conn

    class _Adapter(HTTPAdapter):
        def __init__(self) -> None:
            super().__init__()
            self._pool = _Pool("localhost", maxsize=4)

        def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
            return self._pool

        def get_connection(self, url, proxies=None):  # older requests
            return self._pool

        def close(self) -> None:
            self._pool.close()
            super().close()

    session = requests.Session()
    session.mount("http://localhost", _Adapter())
    return session


# -- a peer that is someone else ---------------------------------------------------------

_PEER_SCRIPT = r"""
import ctypes, errno, json, os, socket, struct, sys
path, uid, gid, groups, keep_dac = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    [int(g) for g in sys.argv[4].split(",") if g], sys.argv[5] == "1"
libc = ctypes.CDLL(None, use_errno=True)
if keep_dac:
    libc.prctl(8, 1, 0, 0, 0)                      # PR_SET_KEEPCAPS
os.setgroups(groups)
os.setgid(gid)
os.setuid(uid)
if keep_dac:
    # capset(v3): keep CAP_DAC_OVERRIDE (1) effective, nothing else
    hdr = struct.pack("Ii", 0x20080522, 0)
    data = struct.pack("IIIIII", 1 << 1, 1 << 1, 0, 0, 0, 0)
    if libc.capset(ctypes.c_char_p(hdr), ctypes.c_char_p(data)) != 0:
        raise OSError(ctypes.get_errno(), "capset")
out = {"uid": os.getuid(), "groups": os.getgroups()}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
try:
    s.connect(path)
except OSError as e:
    out["connect"] = errno.errorcode.get(e.errno, str(e.errno))
else:
    out["connect"] = "ok"
    s.sendall(b"GET /networks HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    out["status"] = int(head.split()[1])
    out["body"] = json.loads(body) if body else None
print(json.dumps(out))
"""


def connect_as(socket_path: str, uid: int, gid: int, groups: tuple[int, ...] = (),
               keep_dac_override: bool = False) -> dict:
    """In a child that dropped to ``uid``/``gid`` (and ``groups``), connect to the socket
    and ask GET /networks: {"connect": "ok" or an errno name, "status", "body"}."""
    out = subprocess.run([sys.executable, "-c", _PEER_SCRIPT, socket_path, str(uid), str(gid),
                          ",".join(map(str, groups)), "1" if keep_dac_override else "0"],
                         capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def rmtree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
