"""The main job: build a small container network through pynetlib's public API, prove it
works with real traffic, time it, and remove everything.

It runs in network and mount namespaces of its own (re-executing itself under
``unshare`` when needed), so it never touches the machine's own network.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

from pynetlib.kernel import NetlinkSocket, Netns

_ENV = "PYNETLIB_DEMO_ISOLATED"
BRIDGE = "pnldemo0"
SUBNET = ipaddress.ip_network("10.77.0.0/16")


def _isolate() -> None:
    """Re-exec inside private network and mount namespaces, with a private /run/netns."""
    if os.environ.get(_ENV) == "1":
        os.makedirs("/run/netns", exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "pynetlib-demo",
                        "/run/netns"], check=True)
        return
    if os.geteuid() != 0:
        sys.exit("the demo creates namespaces and devices: run it as root")
    unshare = shutil.which("unshare")
    if unshare is None:
        sys.exit("the demo needs util-linux's unshare")
    argv = [unshare, "--net", "--mount", "--propagation", "private", "--",
            sys.executable, "-m", "pynetlib", *sys.argv[1:]]
    os.execve(unshare, argv, dict(os.environ, **{_ENV: "1"}))


def _tcp_roundtrip(server_ns: Netns, client_ns: Netns, server_ip: str) -> bytes:
    """A real TCP exchange: listen inside one container, connect from another."""
    with server_ns.enter():
        srv = socket.create_server((server_ip, 7777))
    got: list[bytes] = []

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.sendall(b"pong:" + conn.recv(64))

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client_ns.enter():
            with socket.create_connection((server_ip, 7777), timeout=5) as c:
                c.sendall(b"ping")
                got.append(c.recv(64))
    finally:
        t.join(5)
        srv.close()
    return got[0] if got else b""


def run(containers: int = 20) -> int:
    _isolate()
    import tempfile

    import pynetlib
    from pynetlib import netlabel

    print(f"pynetlib demo: {containers} containers on a bridge network ({SUBNET}), "
          f"inside a private network namespace")
    gateway = next(SUBNET.hosts())
    state = tempfile.mkdtemp(prefix="pynetlib-demo-")
    ctrl = pynetlib.Controller(state)
    t_attach, t_detach = [], []
    joined: list[tuple[object, str]] = []
    ok = 0
    try:
        net = ctrl.new_network("bridge", "demo", {netlabel.GENERIC_DATA: {
            "BridgeName": BRIDGE, "AddressIPv4": f"{gateway}/{SUBNET.prefixlen}"}})
        for i in range(containers):
            t0 = time.perf_counter()
            ep = net.create_endpoint(f"ep{i}")
            ep.join(f"demo{i}", hostname=f"demo{i}")
            t_attach.append(time.perf_counter() - t0)
            joined.append((ep, f"demo{i}"))

        # Prove the network: container 0 talks TCP to every other container.
        first = Netns.open(joined[0][0].info().sandbox_key)
        for ep, _cid in joined[1:]:
            ip = str(ep.info().interfaces[0].address.ip)
            other = Netns.open(ep.info().sandbox_key)
            try:
                ok += _tcp_roundtrip(other, first, ip) == b"pong:ping"
            finally:
                other.close()
        first.close()
        print(f"TCP round trips from demo0 to the others: {ok}/{containers - 1} answered")
        problems = ctrl.audit()
        print(f"audit while running: {problems or 'consistent'}")

        for ep, cid in joined:
            t0 = time.perf_counter()
            ep.leave(cid)
            ep.delete()
            t_detach.append(time.perf_counter() - t0)
        joined.clear()
        net.delete()
    finally:
        for ep, cid in joined:
            ep.leave(cid)
            ep.delete()
        ctrl.close()
        shutil.rmtree(state, ignore_errors=True)
    host = NetlinkSocket()
    left = [l.name for l in host.links() if l.name != "lo"]
    host.close()

    def ms(xs):
        return f"median {statistics.median(xs) * 1e3:.3f} ms, max {max(xs) * 1e3:.3f} ms"

    print(f"create_endpoint + join (new sandbox, veth, address, route, files): {ms(t_attach)}")
    print(f"leave + delete (devices and namespaces go afterwards, in batches): {ms(t_detach)}")
    print(f"left behind: devices {left or 'none'}, namespaces "
          f"{sorted(os.listdir('/run/netns')) or 'none'}")
    return 0 if ok == containers - 1 and not left and not problems else 1
