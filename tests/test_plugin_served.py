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
from test_plugin_served_harness import (GATEWAY_REQUEST, TcpServer, docker_id,  # noqa: E402,F401
                                        engine_plumb, host_links, network_create,
                                        network_remove, ns_links, ping, plugin_sock,
                                        pynetlib_links, served, tcp_ask, wait_until)

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

    assert wait_until(lambda: pynetlib_links() == []), pynetlib_links()
    assert not set(srcs) & set(host_links())
    for c in containers:           # the engine's namespaces hold nothing of ours
        assert wait_until(lambda: ns_links(c.netns) == ["lo"]), ns_links(c.netns)
    assert ctrl.audit() == []
    assert ctrl.networks() == [] and ctrl.sandboxes() == []
    # the pool is free again, in the plugin's IPAM and the controller's
    again = engine.ok("IpamDriver.RequestPool", {
        "AddressSpace": "LocalDefault", "Pool": str(subnet), "SubPool": "", "Options": {},
        "V6": False})
    engine.ok("IpamDriver.ReleasePool", {"PoolID": again["PoolID"]})


def join_and_plumb(engine, nid: str, eid: str, netns: str, address: str,
                   address6: str = "") -> dict:
    join = engine.ok("NetworkDriver.Join", {"NetworkID": nid, "EndpointID": eid,
                                            "SandboxKey": f"/run/netns/{netns}",
                                            "Options": {}})
    engine_plumb(join["InterfaceName"]["SrcName"], netns, join["InterfaceName"]["DstPrefix"],
                 address, join["Gateway"], address6, join["GatewayIPv6"])
    return join


def leave_and_delete(engine, nid: str, eid: str) -> None:
    engine.ok("NetworkDriver.RevokeExternalConnectivity", {"NetworkID": nid, "EndpointID": eid})
    engine.ok("NetworkDriver.Leave", {"NetworkID": nid, "EndpointID": eid})
    engine.ok("NetworkDriver.DeleteEndpoint", {"NetworkID": nid, "EndpointID": eid})


def test_endpoint_without_addresses_gets_the_drivers(served, ctrl, make_netns):
    """An empty Interface (no IPAM address, e.g. Docker's null IPAM): pynetlib allocates
    and the reply carries the address and the MAC, which the engine then uses."""
    engine = served
    net = network_create(engine, "10.88.0.0/24")
    nid = net["nid"]
    a_eid, b_eid = docker_id(), docker_id()
    reply = engine.ok("NetworkDriver.CreateEndpoint", {
        "NetworkID": nid, "EndpointID": a_eid,
        "Interface": {"Address": "", "AddressIPv6": "", "MacAddress": ""}, "Options": {}})
    iface = reply["Interface"]
    assert set(iface) == {"Address", "MacAddress"}
    a_addr = ipaddress.ip_interface(iface["Address"])
    assert a_addr.network == ipaddress.ip_network("10.88.0.0/24")
    assert a_addr.ip != ipaddress.ip_interface(net["gw"]).ip
    info = engine.ok("NetworkDriver.EndpointOperInfo", {"NetworkID": nid,
                                                        "EndpointID": a_eid})["Value"]
    assert info["com.docker.network.endpoint.macaddress"] == iface["MacAddress"]
    # an Interface of null is the same as an empty one
    reply_b = engine.ok("NetworkDriver.CreateEndpoint", {
        "NetworkID": nid, "EndpointID": b_eid, "Interface": None, "Options": None})
    b_addr = ipaddress.ip_interface(reply_b["Interface"]["Address"])
    assert b_addr != a_addr
    a_ns, b_ns = make_netns("dk"), make_netns("dk")
    join = join_and_plumb(engine, nid, a_eid, a_ns, str(a_addr))
    join_and_plumb(engine, nid, b_eid, b_ns, str(b_addr))
    # the device the engine moved carries the MAC the reply announced
    from pyroute2 import NetNS

    with NetNS(a_ns) as ns:
        eth0 = ns.get_links(ns.link_lookup(ifname="eth0")[0])[0]
        assert eth0.get_attr("IFLA_ADDRESS") == iface["MacAddress"]
    assert ping(a_ns, str(b_addr.ip)) and ping(b_ns, str(a_addr.ip))
    assert ctrl.audit() == []
    for eid in (a_eid, b_eid):
        leave_and_delete(engine, nid, eid)
    network_remove(engine, net)
    assert wait_until(lambda: pynetlib_links() == []), pynetlib_links()
    assert wait_until(lambda: ns_links(a_ns) == ["lo"] and ns_links(b_ns) == ["lo"])
    assert ctrl.audit() == [] and ctrl.networks() == []


def test_ipv6_network(served, ctrl, make_netns):
    engine = served
    net = network_create(engine, "10.89.0.0/24", subnet6="fd00:89::/64")
    assert ipaddress.ip_interface(net["gw6"]) == ipaddress.ip_interface("fd00:89::1/64")
    containers = []
    for _ in range(2):
        eid = docker_id()
        v4 = engine.ok("IpamDriver.RequestAddress", {"PoolID": net["pid"], "Address": "",
                                                     "Options": {}})["Address"]
        v6 = engine.ok("IpamDriver.RequestAddress", {"PoolID": net["pid6"], "Address": "",
                                                     "Options": {}})["Address"]
        assert engine.ok("NetworkDriver.CreateEndpoint", {
            "NetworkID": net["nid"], "EndpointID": eid,
            "Interface": {"Address": v4, "AddressIPv6": v6, "MacAddress": ""},
            "Options": {}}) == {}
        ns = make_netns("dk6")
        join = join_and_plumb(engine, net["nid"], eid, ns, v4, v6)
        assert join["GatewayIPv6"] == "fd00:89::1"
        containers.append((eid, ns, v4, v6))
    (_, a_ns, _, _), (_, _, b4, b6) = containers
    assert ping(a_ns, str(ipaddress.ip_interface(b6).ip))
    assert ping(a_ns, "fd00:89::1")
    assert ping(a_ns, str(ipaddress.ip_interface(b4).ip))
    assert ctrl.audit() == []
    for eid, _, v4, v6 in containers:
        leave_and_delete(engine, net["nid"], eid)
        for pid, a in ((net["pid"], v4), (net["pid6"], v6)):
            engine.ok("IpamDriver.ReleaseAddress", {
                "PoolID": pid, "Address": str(ipaddress.ip_interface(a).ip)})
    network_remove(engine, net)
    assert ctrl.audit() == [] and ctrl.networks() == []


@pytest.fixture
def outside(make_netns):
    """A namespace connected to the test run's namespace (the Docker host here) by a
    veth: 198.51.100.2 outside, 198.51.100.1 on the host; forwarding on meanwhile."""
    import subprocess

    ns = make_netns("out")
    host_end = f"vo{os.getpid() % 100000}"
    subprocess.run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0",
                    "netns", ns], check=True)
    subprocess.run(["ip", "addr", "add", "198.51.100.1/24", "dev", host_end], check=True)
    subprocess.run(["ip", "link", "set", host_end, "up"], check=True)
    subprocess.run(["ip", "-n", ns, "addr", "add", "198.51.100.2/24", "dev", "eth0"],
                   check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "up"], check=True)
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forward = f.read().strip()
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("1\n")
    yield ns
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write(forward + "\n")
    subprocess.run(["ip", "link", "del", host_end], check=False)


def test_port_mapping(served, ctrl, make_netns, outside):
    """-p 8080:80: the bindings come with CreateEndpoint, are made at Join, and
    ProgramExternalConnectivity agrees; traffic from outside reaches the container."""
    engine = served
    net = network_create(engine, "10.90.0.0/24")
    nid, eid = net["nid"], docker_id()
    addr = engine.ok("IpamDriver.RequestAddress", {"PoolID": net["pid"], "Address": "",
                                                   "Options": {}})["Address"]
    # -p 8080:80 on a dual-stack engine: one binding per host address family
    ports = {"com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}],
             "com.docker.network.portmap": [
                 {"Proto": 6, "IP": "", "Port": 80, "HostIP": "0.0.0.0", "HostPort": 8080,
                  "HostPortEnd": 8080},
                 {"Proto": 6, "IP": "", "Port": 80, "HostIP": "::", "HostPort": 8080,
                  "HostPortEnd": 8080}]}
    engine.ok("NetworkDriver.CreateEndpoint", {
        "NetworkID": nid, "EndpointID": eid,
        "Interface": {"Address": addr, "AddressIPv6": "", "MacAddress": ""},
        "Options": ports})
    value = engine.ok("NetworkDriver.EndpointOperInfo", {"NetworkID": nid,
                                                         "EndpointID": eid})["Value"]
    ip = str(ipaddress.ip_interface(addr).ip)
    assert value["com.docker.network.portmap"] == [
        {"Proto": 6, "IP": ip, "Port": 80, "HostIP": "", "HostPort": 8080,
         "HostPortEnd": 8080}]
    assert value["com.docker.network.endpoint.exposedports"] == [{"Proto": 6, "Port": 80}]
    ns = make_netns("dkp")
    join_and_plumb(engine, nid, eid, ns, addr)
    engine.ok("NetworkDriver.ProgramExternalConnectivity", {
        "NetworkID": nid, "EndpointID": eid, "Options": ports})
    server = TcpServer(ns, 80, "web")
    try:
        assert tcp_ask(outside, "198.51.100.1", 8080) == "web saw 198.51.100.2"
        leave_and_delete(engine, nid, eid)
        assert tcp_ask(outside, "198.51.100.1", 8080).startswith("failed")
    finally:
        server.stop()
    engine.ok("IpamDriver.ReleaseAddress", {"PoolID": net["pid"], "Address": ip})
    network_remove(engine, net)
    assert ctrl.audit() == [] and ctrl.networks() == []


def test_container_on_two_networks(served, ctrl, make_netns):
    """`docker network connect`: one sandbox, two networks, two Joins with the same
    SandboxKey; the engine names the devices eth0 and eth1."""
    engine = served
    nets = [network_create(engine, "10.94.0.0/24"), network_create(engine, "10.95.0.0/24")]
    ns, peer_ns = make_netns("dk2"), make_netns("dk2")
    eps, names = [], []
    for net, netns in ((nets[0], ns), (nets[1], ns), (nets[1], peer_ns)):
        eid = docker_id()
        addr = engine.ok("IpamDriver.RequestAddress", {"PoolID": net["pid"], "Address": "",
                                                       "Options": {}})["Address"]
        engine.ok("NetworkDriver.CreateEndpoint", {
            "NetworkID": net["nid"], "EndpointID": eid,
            "Interface": {"Address": addr, "AddressIPv6": "", "MacAddress": ""},
            "Options": {}})
        join = engine.ok("NetworkDriver.Join", {"NetworkID": net["nid"], "EndpointID": eid,
                                                "SandboxKey": f"/run/netns/{netns}",
                                                "Options": {}})
        # the engine routes through the first network's gateway only
        gw = join["Gateway"] if netns != ns or not names else ""
        names.append(engine_plumb(join["InterfaceName"]["SrcName"], netns, "eth", addr, gw))
        eps.append((net, eid, addr))
    assert names == ["eth0", "eth1", "eth0"]
    assert len(ctrl.sandboxes()) == 2
    peer_addr = str(ipaddress.ip_interface(eps[2][2]).ip)
    assert ping(ns, peer_addr), "reached over the second network"
    assert ping(ns, str(ipaddress.ip_interface(nets[0]["gw"]).ip))
    assert ctrl.audit() == []
    for net, eid, addr in eps:
        leave_and_delete(engine, net["nid"], eid)
        engine.ok("IpamDriver.ReleaseAddress", {
            "PoolID": net["pid"], "Address": str(ipaddress.ip_interface(addr).ip)})
    for net in nets:
        network_remove(engine, net)
    assert ctrl.audit() == [] and ctrl.networks() == [] and ctrl.sandboxes() == []


def test_join_before_the_sandbox_namespace_exists(served, ctrl, make_netns):
    """With an external key Docker joins before the container's namespace is bound at
    SandboxKey: the Join does not need it, and the engine moves the device later."""
    import subprocess

    engine = served
    net = network_create(engine, "10.96.0.0/24")
    eid = docker_id()
    engine.ok("NetworkDriver.CreateEndpoint", {
        "NetworkID": net["nid"], "EndpointID": eid,
        "Interface": {"Address": "10.96.0.2/24"}, "Options": {}})
    name = f"dklate{os.getpid()}"
    key = f"/run/netns/{name}"
    assert not os.path.exists(key)
    join = engine.ok("NetworkDriver.Join", {"NetworkID": net["nid"], "EndpointID": eid,
                                            "SandboxKey": key, "Options": {}})
    assert not os.path.exists(key), "pynetlib does not make or touch the namespace"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        engine_plumb(join["InterfaceName"]["SrcName"], name, "eth", "10.96.0.2/24",
                     join["Gateway"])
        assert ping(name, "10.96.0.1")
        assert ctrl.audit() == []
        leave_and_delete(engine, net["nid"], eid)
        # the pair goes with its host end, wherever the engine put the other one
        assert wait_until(lambda: ns_links(name) == ["lo"]), ns_links(name)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    network_remove(engine, net)
    assert ctrl.audit() == [] and ctrl.networks() == []
