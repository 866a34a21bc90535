"""Test harness for the served Docker plugin: the aiohttp app on a real unix socket (its
own event loop in a background thread), and a client that speaks to it the way a Docker
engine's plugin client does (POST, ``Accept: application/vnd.docker.plugins.v1+json``,
Go-encoded JSON bodies with a trailing newline, ``null`` for a nil request).

No tests here: the test modules import these helpers."""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from aiohttp import web

ACCEPT = "application/vnd.docker.plugins.v1+json"


class PluginServer:
    """``build_plugin_app(ctrl, state_dir)`` served on ``sock_path`` until ``close``."""

    def __init__(self, ctrl, state_dir: str, sock_path: str) -> None:
        from pynetlib.plugins.app import build_plugin_app

        self.sock_path = sock_path
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="plugin-loop",
                                       daemon=True)
        self.thread.start()
        self.runner = web.AppRunner(build_plugin_app(ctrl, state_dir))
        self._run(self.runner.setup())
        self._run(web.UnixSite(self.runner, sock_path).start())

    def _run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        try:
            self._run(self.runner.cleanup())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._unix_path)
        self.sock = s


class EngineClient:
    """What a Docker engine's plugin client sends; every call returns (status, reply,
    content type)."""

    def __init__(self, sock_path: str, timeout: float = 60) -> None:
        self.sock_path = sock_path
        self.timeout = timeout

    def raw(self, path: str, body: bytes, method: str = "POST"):
        conn = _UnixConnection(self.sock_path, self.timeout)
        try:
            conn.request(method, path, body=body,
                         headers={"Accept": ACCEPT, "Content-Type": ACCEPT})
            resp = conn.getresponse()
            data = resp.read()
            ctype = resp.getheader("Content-Type", "")
        finally:
            conn.close()
        try:
            reply = json.loads(data) if data else None
        except ValueError:
            reply = data
        return resp.status, reply, ctype

    def call(self, method: str, body=None):
        """POST /<method> with a Go-encoded body (``null`` for None)."""
        return self.raw("/" + method, (json.dumps(body) + "\n").encode())

    def ok(self, method: str, body=None) -> dict:
        """A call that must succeed: 200, the protocol's content type, no Err."""
        status, reply, ctype = self.call(method, body)
        assert status == 200, (method, status, reply)
        assert ctype.startswith("application/vnd.docker.plugins.v1+json"), ctype
        assert isinstance(reply, dict) and not reply.get("Err"), (method, reply)
        return reply

    def err(self, method: str, body=None, status: int = 200) -> str:
        """A call that must fail with ``{"Err": ...}`` and the given HTTP status."""
        got, reply, ctype = self.call(method, body)
        assert got == status, (method, got, reply)
        assert ctype.startswith("application/vnd.docker.plugins.v1+json"), ctype
        assert isinstance(reply, dict) and reply.get("Err"), (method, reply)
        return reply["Err"]


def docker_id() -> str:
    """A Docker-style id: 64 lowercase hex characters."""
    return secrets.token_hex(32)


@pytest.fixture
def plugin_sock():
    """A socket path in a fresh temporary directory, short enough for sun_path."""
    d = tempfile.mkdtemp(prefix="pnlplug-", dir="/tmp")
    yield os.path.join(d, "pynetlib.sock")
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def served(ctrl, plugin_sock, tmp_path):
    """The plugin served for the ``ctrl`` fixture's controller, and an engine client."""
    server = PluginServer(ctrl, str(tmp_path / "state"), plugin_sock)
    yield EngineClient(plugin_sock)
    server.close()


# -- what the engine does with the kernel, read back with pyroute2 ----------------------

GATEWAY_REQUEST = {"RequestAddressType": "com.docker.network.gateway"}


def host_links() -> dict:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {l.get_attr("IFLA_IFNAME"): l for l in ipr.get_links()}


def wait_until(predicate, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds (devices a leave removes go asynchronously)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def pynetlib_links() -> list[str]:
    """Devices of pynetlib's naming (bridges, veth host ends and Join's SrcNames) in the
    test run's namespace, which plays the Docker host."""
    return sorted(n for n in host_links() if n.startswith(("pnl", "pnp", "br-")))


def ns_links(netns: str) -> list[str]:
    """The device names inside a named namespace."""
    from pyroute2 import NetNS

    with NetNS(netns) as ns:
        return [l.get_attr("IFLA_IFNAME") for l in ns.get_links()]


def wait_gone(names, timeout: float = 10.0) -> set:
    """The names of ``names`` still present after waiting up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = set(names) & set(host_links())
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def engine_plumb(src: str, netns: str, prefix: str, address: str, gateway: str,
                 address6: str = "", gateway6: str = "") -> str:
    """What the Docker engine does after a Join: move SrcName into the sandbox, name it
    DstPrefix + index, address it, bring it up, route through the gateway(s)."""
    from pyroute2 import IPRoute, NetNS

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=src)[0]
        ipr.link("set", index=idx, net_ns_fd=netns)
    with NetNS(netns) as ns:
        used = {l.get_attr("IFLA_IFNAME") for l in ns.get_links()}
        i = 0
        while f"{prefix}{i}" in used:
            i += 1
        name = f"{prefix}{i}"
        idx = ns.link_lookup(ifname=src)[0]
        ns.link("set", index=idx, ifname=name)
        for a in (address, address6):
            if a:
                iface = ipaddress.ip_interface(a)
                ns.addr("add", index=idx, address=str(iface.ip),
                        prefixlen=iface.network.prefixlen,
                        **({"flags": 0x02} if iface.version == 6 else {}))   # IFA_F_NODAD
        ns.link("set", index=idx, state="up")
        if gateway:
            ns.route("add", dst="0.0.0.0/0", gateway=gateway)
        if gateway6:
            ns.route("add", dst="::/0", gateway=gateway6, family=10)
    return name


def ping(netns: str, ip: str) -> bool:
    v6 = ["-6"] if ":" in ip else []
    return subprocess.run(["ip", "netns", "exec", netns, "ping", *v6, "-c1", "-W2", ip],
                          capture_output=True).returncode == 0


_SERVE = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(4)
print("listening", flush=True)
while True:
    conn, peer = s.accept()
    conn.sendall(f"{sys.argv[2]} saw {peer[0]}".encode())
    conn.close()
"""

_ASK = r"""
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as c:
        print(c.recv(100).decode())
except OSError as e:
    print("failed:", e)
"""


class TcpServer:
    """A TCP server in a namespace that answers '<name> saw <peer address>'."""

    def __init__(self, netns: str, port: int, name: str) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c",
                                      _SERVE, str(port), name], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.strip() == "listening", self.proc.stderr.read()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


def tcp_ask(netns: str, address: str, port: int) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", _ASK,
                           address, str(port)], capture_output=True, text=True,
                          timeout=30).stdout.strip()


# -- what `docker network create` and `docker network rm` send ---------------------------

def network_create(engine, subnet: str = "", generic: dict | None = None,
                   subnet6: str = "") -> dict:
    """IPAM pools and gateways, then CreateNetwork, in the engine's order. Returns the
    ids and addresses: nid, pid, gw (CIDR), and pid6/gw6 with IPv6."""
    out = {"nid": docker_id()}
    pool = engine.ok("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault",
                                                "Pool": subnet, "SubPool": "",
                                                "Options": {}, "V6": False})
    out["pid"], out["pool"] = pool["PoolID"], pool["Pool"]
    out["gw"] = engine.ok("IpamDriver.RequestAddress", {
        "PoolID": pool["PoolID"], "Address": "", "Options": dict(GATEWAY_REQUEST)})["Address"]
    v6data = []
    if subnet6:
        pool6 = engine.ok("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault",
                                                     "Pool": subnet6, "SubPool": "",
                                                     "Options": {}, "V6": True})
        out["pid6"] = pool6["PoolID"]
        out["gw6"] = engine.ok("IpamDriver.RequestAddress", {
            "PoolID": pool6["PoolID"], "Address": "",
            "Options": dict(GATEWAY_REQUEST)})["Address"]
        v6data = [{"AddressSpace": "LocalDefault", "Pool": pool6["Pool"],
                   "Gateway": out["gw6"]}]
    engine.ok("NetworkDriver.GetCapabilities")
    assert engine.ok("NetworkDriver.CreateNetwork", {
        "NetworkID": out["nid"],
        "Options": {"com.docker.network.enable_ipv6": bool(subnet6),
                    "com.docker.network.generic": dict(generic or {})},
        "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": pool["Pool"],
                      "Gateway": out["gw"]}],
        "IPv6Data": v6data}) == {}
    return out


def network_remove(engine, net: dict) -> None:
    engine.ok("NetworkDriver.DeleteNetwork", {"NetworkID": net["nid"]})
    for pid, gw in ((net["pid"], net["gw"]), (net.get("pid6"), net.get("gw6"))):
        if pid:
            engine.ok("IpamDriver.ReleaseAddress", {
                "PoolID": pid, "Address": str(ipaddress.ip_interface(gw).ip)})
            engine.ok("IpamDriver.ReleasePool", {"PoolID": pid})
