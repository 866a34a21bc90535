"""The main job: build a small container network with the kernel layer, prove it works,
time it, and remove everything.

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

from pynetlib.kernel import NetlinkSocket, Netns, attach_veth, delete_netns

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
    print(f"pynetlib demo: {containers} containers on bridge {BRIDGE} ({SUBNET}), "
          f"inside a private network namespace")
    hosts = list(SUBNET.hosts())
    gateway = hosts[0]
    host = NetlinkSocket()
    made: list[tuple[str, Netns]] = []
    t_ns, t_attach, t_detach = [], [], []
    try:
        host.bridge_create(BRIDGE, up=True)
        host.addr_add(BRIDGE, f"{gateway}/{SUBNET.prefixlen}")
        for i in range(containers):
            t0 = time.perf_counter()
            ns = Netns.create(f"demo{i}")
            t1 = time.perf_counter()
            attach_veth(host, ns, f"pnlh{i}", "eth0", bridge=BRIDGE,
                        address=f"{hosts[i + 1]}/{SUBNET.prefixlen}", gateway=str(gateway),
                        mac=f"02:42:0a:4d:{(i + 1) >> 8:02x}:{(i + 1) & 0xff:02x}")
            t2 = time.perf_counter()
            made.append((f"pnlh{i}", ns))
            t_ns.append(t1 - t0)
            t_attach.append(t2 - t1)

        # Prove the network: container 0 talks TCP to every other container.
        ok = 0
        for i in range(1, containers):
            reply = _tcp_roundtrip(made[i][1], made[0][1], str(hosts[i + 1]))
            ok += reply == b"pong:ping"
        print(f"TCP round trips from demo0 to the others: {ok}/{containers - 1} answered")

        for hname, _ns in made:
            t0 = time.perf_counter()
            host.link_delete(hname)
            t_detach.append(time.perf_counter() - t0)
    finally:
        for _hname, ns in made:
            name = ns.name
            ns.close()
            delete_netns(name)
        if host.link_exists(BRIDGE):
            host.link_delete(BRIDGE)
        left = [l.name for l in host.links() if l.name != "lo"]
        host.close()

    def ms(xs):
        return f"median {statistics.median(xs) * 1e3:.3f} ms, max {max(xs) * 1e3:.3f} ms"

    print(f"netns create: {ms(t_ns)}")
    print(f"attach (veth into the netns, address, route): {ms(t_attach)}")
    print(f"detach (delete the veth; the kernel's RCU wait): {ms(t_detach)}")
    print(f"left behind: devices {left or 'none'}, namespaces "
          f"{sorted(os.listdir('/run/netns')) or 'none'}")
    return 0 if ok == containers - 1 and not left else 1
