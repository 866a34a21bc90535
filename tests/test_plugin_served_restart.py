"""A daemon restart: the controller and the plugin app closed and opened again on the same
state directory keep the IPAM pools and addresses handed to Docker, and the Docker
networks and endpoints (joined ones included) stay usable by their Docker ids."""

from __future__ import annotations

import ipaddress
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_plugin_served_harness import (GATEWAY_REQUEST, EngineClient,  # noqa: E402,F401
                                        PluginServer, docker_id, engine_plumb, ns_links,
                                        ping, plugin_sock, pynetlib_links, wait_until)

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]


class Daemon:
    """A controller and the plugin app on it, like the daemon runs them."""

    def __init__(self, state_dir: str, sock: str) -> None:
        import pynetlib

        self.ctrl = pynetlib.Controller(state_dir, host_routes=lambda: [])
        self.server = PluginServer(self.ctrl, state_dir, sock)
        self.engine = EngineClient(sock)

    def close(self) -> None:
        self.server.close()
        self.ctrl.close()


def test_restart_keeps_pools_addresses_networks_and_joins(tmp_path, plugin_sock, make_netns):
    state_dir = str(tmp_path / "state")
    d = Daemon(state_dir, plugin_sock)
    try:
        e = d.engine
        pool = e.ok("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault", "Pool": "",
                                               "SubPool": "", "Options": {}, "V6": False})
        pid, subnet = pool["PoolID"], pool["Pool"]
        gw = e.ok("IpamDriver.RequestAddress", {"PoolID": pid, "Address": "",
                                                "Options": dict(GATEWAY_REQUEST)})["Address"]
        addr = e.ok("IpamDriver.RequestAddress", {"PoolID": pid, "Address": "",
                                                  "Options": {}})["Address"]
        nid, eid = docker_id(), docker_id()
        e.ok("NetworkDriver.CreateNetwork", {
            "NetworkID": nid, "Options": {"com.docker.network.generic": {}},
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": subnet, "Gateway": gw}],
            "IPv6Data": []})
        e.ok("NetworkDriver.CreateEndpoint", {
            "NetworkID": nid, "EndpointID": eid,
            "Interface": {"Address": addr, "AddressIPv6": "", "MacAddress": ""},
            "Options": {}})
        ns = make_netns("dk")
        join = e.ok("NetworkDriver.Join", {"NetworkID": nid, "EndpointID": eid,
                                           "SandboxKey": f"/run/netns/{ns}", "Options": {}})
        engine_plumb(join["InterfaceName"]["SrcName"], ns, "eth", addr, join["Gateway"])
        gw_ip = str(ipaddress.ip_interface(gw).ip)
        assert ping(ns, gw_ip)
    finally:
        d.close()

    d = Daemon(state_dir, plugin_sock)
    try:
        e = d.engine
        assert d.ctrl.audit() == []
        assert ping(ns, gw_ip), "the running container kept its network"
        # the pool and both addresses are still taken
        assert "overlaps" in e.err("IpamDriver.RequestPool", {
            "AddressSpace": "LocalDefault", "Pool": subnet})
        for a in (gw, addr):
            assert "already allocated" in e.err("IpamDriver.RequestAddress", {
                "PoolID": pid, "Address": str(ipaddress.ip_interface(a).ip)})
        other = e.ok("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault", "Pool": ""})
        assert other["Pool"] != subnet
        nxt = e.ok("IpamDriver.RequestAddress", {"PoolID": pid, "Address": ""})["Address"]
        assert nxt not in (gw, addr)
        # the Docker ids still name the network and the endpoint
        assert "exists" in e.err("NetworkDriver.CreateNetwork", {
            "NetworkID": nid, "IPv4Data": [{"Pool": subnet, "Gateway": gw}]})
        e.ok("NetworkDriver.EndpointOperInfo", {"NetworkID": nid, "EndpointID": eid})
        e.ok("NetworkDriver.RevokeExternalConnectivity", {"NetworkID": nid, "EndpointID": eid})
        e.ok("NetworkDriver.Leave", {"NetworkID": nid, "EndpointID": eid})
        e.ok("NetworkDriver.DeleteEndpoint", {"NetworkID": nid, "EndpointID": eid})
        for a in (addr, nxt):
            e.ok("IpamDriver.ReleaseAddress", {"PoolID": pid,
                                               "Address": str(ipaddress.ip_interface(a).ip)})
        e.ok("NetworkDriver.DeleteNetwork", {"NetworkID": nid})
        e.ok("IpamDriver.ReleaseAddress", {"PoolID": pid, "Address": gw_ip})
        e.ok("IpamDriver.ReleasePool", {"PoolID": pid})
        e.ok("IpamDriver.ReleasePool", {"PoolID": other["PoolID"]})
        assert wait_until(lambda: pynetlib_links() == []), pynetlib_links()
        assert wait_until(lambda: ns_links(ns) == ["lo"]), ns_links(ns)
        assert d.ctrl.audit() == [] and d.ctrl.networks() == []
    finally:
        d.close()
    # nothing of the plugin's IPAM is left in the store
    d = Daemon(state_dir, plugin_sock)
    try:
        from pynetlib.plugins.served_ipam import STORE_OWNER

        rows = d.ctrl.store.read().execute(
            "SELECT key, value FROM kv WHERE owner=?", (STORE_OWNER,)).fetchall()
        assert [k for k, v in rows if k != "pools"] == []
        assert d.engine.ok("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault",
                                                      "Pool": subnet})["Pool"] == subnet
    finally:
        d.close()


def test_shutdown_finishes_calls_in_flight(ctrl, tmp_path, plugin_sock, monkeypatch):
    """Closing the app (what the daemon does on SIGTERM) lets a call that is inside the
    controller finish and answer; the worker threads are gone afterwards."""
    import threading

    server = PluginServer(ctrl, str(tmp_path / "state"), plugin_sock)
    engine = EngineClient(plugin_sock)
    entered, release = threading.Event(), threading.Event()
    real = ctrl.new_network

    def slow_new_network(*args, **kwargs):
        entered.set()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(ctrl, "new_network", slow_new_network)
    nid = docker_id()
    results = []
    caller = threading.Thread(target=lambda: results.append(engine.call(
        "NetworkDriver.CreateNetwork", {"NetworkID": nid, "Options": {},
                                        "IPv4Data": [{"Pool": "10.93.0.0/24"}]})))
    caller.start()
    assert entered.wait(30)
    closer = threading.Thread(target=server.close)
    closer.start()
    closer.join(0.5)
    assert closer.is_alive(), "close waits for the call in flight"
    release.set()
    caller.join(30)
    closer.join(30)
    assert not closer.is_alive()
    assert results and results[0][0] == 200 and results[0][1] == {}
    assert not [t for t in threading.enumerate() if t.name.startswith("pynetlib-plugin")]
    assert [n.name for n in ctrl.networks()] == ["docker-" + nid[:57]]
