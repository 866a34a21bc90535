"""The served Docker plugin driven like a Docker engine drives it, end to end.

The test sends what the engine sends, in the engine's order, over a real unix socket;
where the engine itself acts on the kernel after a Join (moving ``SrcName`` into the
sandbox, naming it, addressing it, routing through the gateway) the test does the same
with pyroute2. The kernel is read back with pyroute2 and iproute2, never pynetlib, and
containers exchange real traffic.
"""

from __future__ import annotations

import ipaddress
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_plugin_served_harness import (GATEWAY_REQUEST, docker_id, engine_plumb,  # noqa: E402
                                        host_links, ping, plugin_sock, served, wait_gone)  # noqa: F401

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]


class Container:
    def __init__(self, eid: str, address: str, netns: str) -> None:
        self.eid, self.address, self.netns = eid, address, netns
        self.src = ""


def test_docker_engine_lifecycle(served, ctrl, make_netns):
    engine = served
    # -- plugin discovery and activation --------------------------------------------
    assert engine.ok("Plugin.Activate") == {"Implements": ["NetworkDriver", "IpamDriver"]}
    assert engine.ok("IpamDriver.GetCapabilities") == {"RequiresMACAddress": False,
                                                        "RequiresRequestReplay": False}
    spaces = engine.ok("IpamDriver.GetDefaultAddressSpaces")
    assert spaces == {"LocalDefaultAddressSpace": "LocalDefault",
                      "GlobalDefaultAddressSpace": "GlobalDefault"}
    # -- docker network create -d pynetlib --ipam-driver pynetlib net1 ------------------
    pool = engine.ok("IpamDriver.RequestPool", {
        "AddressSpace": "LocalDefault", "Pool": "", "SubPool": "", "Options": {},
        "V6": False})
    subnet = ipaddress.ip_network(pool["Pool"])
    assert pool["PoolID"] == f"LocalDefault/{subnet}" and pool["Data"] == {}
    gw = engine.ok("IpamDriver.RequestAddress", {
        "PoolID": pool["PoolID"], "Address": "", "Options": dict(GATEWAY_REQUEST)})
    gw_if = ipaddress.ip_interface(gw["Address"])
    assert gw_if.network == subnet and gw_if.ip == subnet.network_address + 1
    assert engine.ok("NetworkDriver.GetCapabilities") == {"Scope": "local",
                                                          "ConnectivityScope": "local"}
    nid = docker_id()
    assert engine.ok("NetworkDriver.CreateNetwork", {
        "NetworkID": nid,
        "Options": {"com.docker.network.enable_ipv6": False,
                    "com.docker.network.generic": {
                        "com.docker.network.bridge.name": "br-docker1"}},
        "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": str(subnet),
                      "Gateway": gw["Address"]}],
        "IPv6Data": []}) == {}
    links = host_links()
    assert "br-docker1" in links and links["br-docker1"].get_attr("IFLA_OPERSTATE") != "DOWN"
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname="br-docker1")[0]
        br_addrs = {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                    for a in ipr.get_addr(index=idx, family=2)}
    assert br_addrs == {gw["Address"]}

    # -- two containers: docker run --network net1 ... -----------------------------------
    containers = []
    for _ in range(2):
        addr = engine.ok("IpamDriver.RequestAddress", {
            "PoolID": pool["PoolID"], "Address": "", "Options": {}})["Address"]
        assert ipaddress.ip_interface(addr).network == subnet
        c = Container(docker_id(), addr, make_netns("dk"))
        reply = engine.ok("NetworkDriver.CreateEndpoint", {
            "NetworkID": nid, "EndpointID": c.eid,
            "Interface": {"Address": addr, "AddressIPv6": "", "MacAddress": ""},
            "Options": {"com.docker.network.endpoint.exposedports": [],
                        "com.docker.network.portmap": []}})
        assert reply == {}, "Docker supplied the address: the reply leaves it alone"
        info = engine.ok("NetworkDriver.EndpointOperInfo", {"NetworkID": nid,
                                                            "EndpointID": c.eid})
        assert info["Value"]["com.docker.network.portmap"] == []
        join = engine.ok("NetworkDriver.Join", {
            "NetworkID": nid, "EndpointID": c.eid, "SandboxKey": f"/run/netns/{c.netns}",
            "Options": {}})
        assert set(join) == {"InterfaceName", "Gateway", "GatewayIPv6", "StaticRoutes",
                             "DisableGatewayService"}
        assert join["InterfaceName"]["DstPrefix"] == "eth"
        assert join["Gateway"] == str(gw_if.ip) and join["GatewayIPv6"] == ""
        assert join["StaticRoutes"] == [] and join["DisableGatewayService"] is False
        c.src = join["InterfaceName"]["SrcName"]
        # The device named is a veth in the host namespace, down and unaddressed; its
        # peer is on the bridge and up.
        links = host_links()
        dev = links[c.src]
        assert dev.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "veth"
        assert not dev["flags"] & 1, "SrcName is left down for the engine"
        with IPRoute() as ipr:
            assert ipr.get_addr(index=dev["index"], family=2) == ()
            peer = ipr.get_links(dev.get_attr("IFLA_LINK"))[0]
        assert peer.get_attr("IFLA_MASTER") == links["br-docker1"]["index"]
        assert peer["flags"] & 1
        name = engine_plumb(c.src, c.netns, "eth", addr, join["Gateway"])
        assert name == "eth0"
        engine.ok("NetworkDriver.ProgramExternalConnectivity", {
            "NetworkID": nid, "EndpointID": c.eid,
            "Options": {"com.docker.network.endpoint.exposedports": [],
                        "com.docker.network.portmap": []}})
        containers.append(c)

    a, b = containers
    assert ping(a.netns, str(ipaddress.ip_interface(b.address).ip))
    assert ping(b.netns, str(ipaddress.ip_interface(a.address).ip))
    assert ping(a.netns, str(gw_if.ip))
    assert ctrl.audit() == []

    # -- docker rm -f; docker network rm net1 ---------------------------------------------
    srcs = [c.src for c in containers]
    for c in containers:
        engine.ok("NetworkDriver.RevokeExternalConnectivity", {"NetworkID": nid,
                                                               "EndpointID": c.eid})
        engine.ok("NetworkDriver.Leave", {"NetworkID": nid, "EndpointID": c.eid})
        engine.ok("NetworkDriver.DeleteEndpoint", {"NetworkID": nid, "EndpointID": c.eid})
        engine.ok("IpamDriver.ReleaseAddress", {"PoolID": pool["PoolID"],
                                                "Address": str(ipaddress.ip_interface(
                                                    c.address).ip)})
    engine.ok("NetworkDriver.DeleteNetwork", {"NetworkID": nid})
    engine.ok("IpamDriver.ReleaseAddress", {"PoolID": pool["PoolID"],
                                            "Address": str(gw_if.ip)})
    engine.ok("IpamDriver.ReleasePool", {"PoolID": pool["PoolID"]})

    assert wait_gone(["br-docker1", *srcs]) == set()
    left = [n for n in host_links() if n.startswith(("pnl", "pnp", "br-"))]
    assert left == []
    for c in containers:           # the engine's namespaces hold nothing of ours
        from pyroute2 import NetNS

        with NetNS(c.netns) as ns:
            assert [l.get_attr("IFLA_IFNAME") for l in ns.get_links()] == ["lo"]
    assert ctrl.audit() == []
    assert ctrl.networks() == [] and ctrl.sandboxes() == []
    # the pool is free again, in the plugin's IPAM and the controller's
    again = engine.ok("IpamDriver.RequestPool", {
        "AddressSpace": "LocalDefault", "Pool": str(subnet), "SubPool": "", "Options": {},
        "V6": False})
    engine.ok("IpamDriver.ReleasePool", {"PoolID": again["PoolID"]})
