"""Every failure of the served plugin: the status and ``{"Err": ...}`` Docker expects, and
nothing changed (no network, endpoint, pool, address or device appears or goes)."""

from __future__ import annotations

import ipaddress
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_plugin_served_harness import (docker_id, network_create,  # noqa: E402,F401
                                        plugin_sock, served)

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]


def state(ctrl) -> tuple:
    """Everything a failed call must leave as it was: records, IPAM, devices."""
    from pyroute2 import IPRoute

    from pynetlib.plugins.served_ipam import STORE_OWNER

    with IPRoute() as ipr:
        links = sorted(l.get_attr("IFLA_IFNAME") for l in ipr.get_links())
    rows = ctrl.store.read().execute(
        "SELECT owner, key, value FROM kv WHERE owner IN (?, 'ipam', 'bridge') "
        "ORDER BY owner, key", (STORE_OWNER,)).fetchall()
    eps = sorted((n.name, e.name, e.joined_container) for n in ctrl.networks()
                 for e in n.endpoints())
    return links, rows, eps, sorted(n.name for n in ctrl.networks())


def make_network(engine, subnet: str = "10.77.0.0/24"):
    """A pool, its gateway and a network, as `docker network create` makes them."""
    net = network_create(engine, subnet)
    return net["nid"], net["pid"], net["gw"]


# -- HTTP level ---------------------------------------------------------------------

def test_unknown_methods_are_404(served):
    for path in ("/NetworkDriver.Frobnicate", "/IpamDriver.GetPoolInfo", "/VolumeDriver.Mount",
                 "/", "/Plugin.Activate/x", "/NetworkDriver.CreateNetwork/../x"):
        status, reply, ctype = served.raw(path, b"{}")
        assert status == 404, path
        assert ctype.startswith("application/vnd.docker.plugins.v1+json")
        assert "unknown plugin method" in reply["Err"]


def test_other_http_methods_are_405(served):
    for method in ("GET", "PUT", "DELETE"):
        status, reply, _ = served.raw("/Plugin.Activate", b"", method=method)
        assert status == 405 and reply["Err"]


def test_undecodable_requests_are_400_with_err(served, ctrl):
    before = state(ctrl)
    nid, eid = docker_id(), docker_id()
    cases = [
        b"{not json",                                                     # not JSON
        b"[1, 2]",                                                        # not an object
        b'"NetworkID"',
        json.dumps({"NetworkID": nid, "Options": {}, "Bogus": 1}).encode(),   # unknown field
        json.dumps({"NetworkID": 7}).encode(),                            # wrong type
        json.dumps({"Options": {}}).encode(),                             # missing id
        json.dumps({"NetworkID": nid, "IPv4Data": {"Pool": "10.0.0.0/8"}}).encode(),
        json.dumps({"NetworkID": nid, "IPv4Data": [{"Pool": "10.9.0.0/16",
                                                    "Color": "red"}]}).encode(),
        json.dumps({"NetworkID": "x" * 64, "IPv4Data": []}).encode(),     # not a Docker id
        json.dumps({"NetworkID": nid.upper()}).encode(),
        b"null",                                                          # a request needed
        ("[" * 40 + "]" * 40).encode(),                                   # too deep
    ]
    for body in cases:
        status, reply, ctype = served.raw("/NetworkDriver.CreateNetwork", body)
        assert status == 400, (body, reply)
        assert ctype.startswith("application/vnd.docker.plugins.v1+json")
        assert reply["Err"], body
    status, reply, _ = served.raw("/NetworkDriver.Join", json.dumps({
        "NetworkID": nid, "EndpointID": eid, "SandboxKey": "run/netns/x",
        "Options": {}}).encode())
    assert status == 400 and "SandboxKey" in reply["Err"]
    status, reply, _ = served.raw("/IpamDriver.RequestPool", json.dumps({
        "AddressSpace": "LocalDefault", "Options": {"a": 1}}).encode())
    assert status == 400 and "Options" in reply["Err"]
    status, reply, _ = served.raw("/NetworkDriver.CreateNetwork",
                                  b'{"NetworkID": "' + b"a" * 300_000 + b'"}')
    assert status == 413 and reply["Err"]
    assert state(ctrl) == before


def test_methods_without_a_request_take_empty_null_or_empty_object(served):
    for body in (b"", b"null", b"{}", b"null\n"):
        status, reply, _ = served.raw("/Plugin.Activate", body)
        assert status == 200 and reply == {"Implements": ["NetworkDriver", "IpamDriver"]}
    status, reply, _ = served.raw("/NetworkDriver.GetCapabilities", b'{"x": 1}')
    assert status == 400 and reply["Err"]


# -- IPAM ---------------------------------------------------------------------------

def test_ipam_errors_change_nothing(served, ctrl):
    engine = served
    pool = engine.ok("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault",
                                                 "Pool": "10.50.0.0/16", "SubPool": "",
                                                 "Options": None, "V6": False})
    pid = pool["PoolID"]
    a = engine.ok("IpamDriver.RequestAddress", {"PoolID": pid, "Address": "10.50.0.9",
                                                "Options": {}})
    assert a == {"Address": "10.50.0.9/16", "Data": {}}
    before = state(ctrl)
    err = engine.err("IpamDriver.RequestAddress", {"PoolID": pid, "Address": "10.50.0.9",
                                                   "Options": {}})
    assert "already allocated" in err
    assert "out of the range" in engine.err("IpamDriver.RequestAddress", {
        "PoolID": pid, "Address": "10.51.0.9", "Options": {}})
    assert engine.err("IpamDriver.RequestAddress", {"PoolID": pid, "Address": "banana"})
    assert engine.err("IpamDriver.RequestAddress", {"PoolID": "LocalDefault/10.99.0.0/16",
                                                    "Address": ""})
    assert engine.err("IpamDriver.RequestAddress", {"PoolID": "not a pool", "Address": ""})
    assert "overlaps" in engine.err("IpamDriver.RequestPool", {
        "AddressSpace": "LocalDefault", "Pool": "10.50.128.0/17", "V6": False})
    assert engine.err("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault",
                                                 "Pool": "10.50.0.0/16"})
    assert "address space" in engine.err("IpamDriver.RequestPool", {
        "AddressSpace": "Elsewhere", "Pool": "10.60.0.0/16"})
    assert engine.err("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault",
                                                 "Pool": "10.60.0.1/16"})
    assert engine.err("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault",
                                                 "Pool": "", "SubPool": "10.60.0.0/24"})
    assert engine.err("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault",
                                                 "Pool": "10.60.0.0/16",
                                                 "SubPool": "10.61.0.0/24"})
    assert engine.err("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault",
                                                 "Pool": "10.60.0.0/16", "V6": True})
    assert engine.err("IpamDriver.ReleasePool", {"PoolID": "LocalDefault/10.99.0.0/16"})
    assert engine.err("IpamDriver.ReleaseAddress", {"PoolID": pid, "Address": ""})
    assert engine.err("IpamDriver.ReleaseAddress", {"PoolID": pid, "Address": "10.51.0.1"})
    assert state(ctrl) == before
    engine.ok("IpamDriver.ReleaseAddress", {"PoolID": pid, "Address": "10.50.0.9"})
    engine.ok("IpamDriver.ReleasePool", {"PoolID": pid})
    assert engine.err("IpamDriver.ReleasePool", {"PoolID": pid})


def test_ipam_pools_never_collide_with_the_controllers_networks(served, ctrl):
    from pynetlib import netlabel

    own = ctrl.new_network("bridge", "own", {netlabel.GENERIC_DATA: {
        "AddressIPv4": "172.17.0.1/16"}})
    before = state(ctrl)
    assert "pynetlib network" in served.err("IpamDriver.RequestPool", {
        "AddressSpace": "LocalDefault", "Pool": "172.17.5.0/24"})
    assert state(ctrl) == before
    # a default pool skips it
    pool = served.ok("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault", "Pool": ""})
    assert not ipaddress.ip_network(pool["Pool"]).overlaps(ipaddress.ip_network("172.17.0.0/16"))
    served.ok("IpamDriver.ReleasePool", {"PoolID": pool["PoolID"]})
    own.delete()


# -- network driver -------------------------------------------------------------------

def test_network_errors_change_nothing(served, ctrl, make_netns):
    engine = served
    nid, pid, gw = make_network(engine)
    eid = docker_id()
    engine.ok("NetworkDriver.CreateEndpoint", {
        "NetworkID": nid, "EndpointID": eid,
        "Interface": {"Address": "10.77.0.5/24", "AddressIPv6": "", "MacAddress": ""},
        "Options": {}})
    before = state(ctrl)
    unknown = docker_id()
    ids = {"NetworkID": unknown, "EndpointID": eid}
    for method in ("DeleteEndpoint", "EndpointOperInfo", "Leave",
                   "RevokeExternalConnectivity"):
        assert "not found" in engine.err(f"NetworkDriver.{method}", ids), method
    assert engine.err("NetworkDriver.DeleteNetwork", {"NetworkID": unknown})
    assert engine.err("NetworkDriver.CreateEndpoint", {**ids, "Interface": None,
                                                       "Options": {}})
    assert engine.err("NetworkDriver.Join", {**ids, "SandboxKey": "/run/netns/none",
                                             "Options": {}})
    assert engine.err("NetworkDriver.ProgramExternalConnectivity", {**ids, "Options": {}})
    other_ep = {"NetworkID": nid, "EndpointID": docker_id()}
    assert engine.err("NetworkDriver.Leave", other_ep)
    assert engine.err("NetworkDriver.DeleteEndpoint", other_ep)
    # the same network again, a bad pool, a bad gateway, an unknown option, no IPv4 data
    assert "exists" in engine.err("NetworkDriver.CreateNetwork", {
        "NetworkID": nid, "IPv4Data": [{"Pool": "10.78.0.0/24"}]})
    bad = [
        {"IPv4Data": [{"Pool": "10.78.0.0/33"}]},
        {"IPv4Data": [{"Pool": "10.78.0.1/24"}]},
        {"IPv4Data": [{"Pool": "fd00::/64"}]},
        {"IPv4Data": [{"Pool": "10.78.0.0/24", "Gateway": "10.79.0.1/24"}]},
        {"IPv4Data": [{"Pool": "10.78.0.0/24", "Gateway": "10.78.0.1"}]},
        {"IPv4Data": [{"Pool": "10.78.0.0/24", "AuxAddresses": {"r": "10.1.1.1/8"}}]},
        {"IPv4Data": [{"Pool": "10.78.0.0/24"}, {"Pool": "10.79.0.0/24"}]},
        {"IPv4Data": []},
        {"IPv4Data": [{"Pool": "10.77.0.0/24"}]},                 # overlaps the first one
        {"IPv4Data": [{"Pool": "10.78.0.0/24"}], "IPv6Data": [{"Pool": "10.0.0.0/8"}]},
        {"IPv4Data": [{"Pool": "10.78.0.0/24"}],
         "Options": {"com.docker.network.generic": {"com.docker.network.bridge.foo": "1"}}},
        {"IPv4Data": [{"Pool": "10.78.0.0/24"}],
         "Options": {"com.docker.network.generic": {"com.docker.network.driver.mtu": "x"}}},
        {"IPv4Data": [{"Pool": "10.78.0.0/24"}],
         "Options": {"com.docker.network.generic": {"AddressIPv4": "10.78.0.1/24"}}},
        {"IPv4Data": [{"Pool": "10.78.0.0/24"}],
         "Options": {"com.docker.network.generic": {
             "com.docker.network.bridge.name": "eth0/x"}}},
        {"IPv4Data": [{"Pool": "10.78.0.0/24"}],
         "Options": {"com.docker.network.enable_ipv6": "yes"}},
    ]
    for extra in bad:
        assert engine.err("NetworkDriver.CreateNetwork", {"NetworkID": docker_id(), **extra})
    # endpoints: outside the pool, taken, malformed, aliases, a bad port binding
    ep2 = {"NetworkID": nid, "EndpointID": docker_id(), "Options": {}}
    for iface in ({"Address": "10.78.0.5/24"}, {"Address": "10.77.0.5/24"},
                  {"Address": "10.77.0.6"}, {"Address": "fd00::1/64"},
                  {"AddressIPv6": "fd00::1/64"}, {"MacAddress": "zz:zz"},
                  {"Address": "10.77.0.6/24", "IPAliases": ["10.77.0.7/24"]}):
        assert engine.err("NetworkDriver.CreateEndpoint", {**ep2, "Interface": iface}), iface
    assert engine.err("NetworkDriver.CreateEndpoint", {**ep2, "Interface": {}, "Options": {
        "com.docker.network.portmap": [{"Proto": 99, "Port": 80}]}})
    assert engine.err("NetworkDriver.CreateEndpoint", {**ep2, "Interface": {}, "Options": {
        "com.docker.network.portmap": [{"Proto": 6, "Port": 80, "HostPort": 8000,
                                        "HostPortEnd": 8010}]}})
    assert engine.err("NetworkDriver.CreateEndpoint", {
        "NetworkID": nid, "EndpointID": eid, "Interface": {}, "Options": {}})   # exists
    # the endpoint is not joined; the network has an endpoint
    assert engine.err("NetworkDriver.Leave", {"NetworkID": nid, "EndpointID": eid})
    assert "endpoint" in engine.err("NetworkDriver.DeleteNetwork", {"NetworkID": nid})
    assert engine.err("NetworkDriver.ProgramExternalConnectivity", {
        "NetworkID": nid, "EndpointID": eid, "Options": {"com.docker.network.portmap": [
            {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080,
             "HostPortEnd": 8080}]}})
    assert state(ctrl) == before
    # joined: a second join and a delete are refused, and change nothing
    ns = make_netns("dk")
    engine.ok("NetworkDriver.Join", {"NetworkID": nid, "EndpointID": eid,
                                     "SandboxKey": f"/run/netns/{ns}", "Options": {}})
    joined = state(ctrl)
    assert engine.err("NetworkDriver.Join", {"NetworkID": nid, "EndpointID": eid,
                                             "SandboxKey": f"/run/netns/{ns}", "Options": {}})
    assert "active container" in engine.err("NetworkDriver.DeleteEndpoint", {"NetworkID": nid,
                                                                  "EndpointID": eid})
    assert state(ctrl) == joined
    engine.ok("NetworkDriver.Leave", {"NetworkID": nid, "EndpointID": eid})
    engine.ok("NetworkDriver.DeleteEndpoint", {"NetworkID": nid, "EndpointID": eid})
    engine.ok("NetworkDriver.DeleteNetwork", {"NetworkID": nid})
    assert ctrl.audit() == []


# -- failures inside the controller -------------------------------------------------------

def test_a_failed_join_is_rolled_back(served, ctrl, make_netns):
    """The kernel side of a Join fails after the veth exists: Err, and the veth, the
    sandbox record and the join are undone; the next Join works."""
    from pynetlib.failpoints import arm, disarm_all

    engine = served
    net = network_create(engine, "10.91.0.0/24")
    eid = docker_id()
    engine.ok("NetworkDriver.CreateEndpoint", {
        "NetworkID": net["nid"], "EndpointID": eid,
        "Interface": {"Address": "10.91.0.2/24"}, "Options": {}})
    ns = make_netns("dkf")
    join = {"NetworkID": net["nid"], "EndpointID": eid, "SandboxKey": f"/run/netns/{ns}",
            "Options": {}}
    before = state(ctrl)
    arm("endpoint.join.after_kernel=raise*1")
    try:
        assert "failpoint" in engine.err("NetworkDriver.Join", join)
    finally:
        disarm_all()
    ctrl.flush_teardown()
    assert state(ctrl) == before
    assert ctrl.audit() == [] and ctrl.sandboxes() == []
    reply = engine.ok("NetworkDriver.Join", join)
    assert reply["InterfaceName"]["SrcName"] in state(ctrl)[0]
    engine.ok("NetworkDriver.Leave", {"NetworkID": net["nid"], "EndpointID": eid})
    engine.ok("NetworkDriver.DeleteEndpoint", {"NetworkID": net["nid"], "EndpointID": eid})


def test_blocking_calls_run_off_the_event_loop(served, ctrl, monkeypatch):
    """While a call is blocked inside the controller, the plugin keeps answering."""
    import threading

    entered, release = threading.Event(), threading.Event()
    real = ctrl.new_network

    def slow_new_network(*args, **kwargs):
        entered.set()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(ctrl, "new_network", slow_new_network)
    nid = docker_id()
    results = []
    t = threading.Thread(target=lambda: results.append(served.call(
        "NetworkDriver.CreateNetwork", {"NetworkID": nid, "Options": {},
                                        "IPv4Data": [{"Pool": "10.92.0.0/24"}]})))
    t.start()
    try:
        assert entered.wait(30)
        assert served.ok("Plugin.Activate")["Implements"]
        assert served.ok("IpamDriver.GetDefaultAddressSpaces")
        assert "not found" in served.err("NetworkDriver.DeleteNetwork", {"NetworkID": nid})
    finally:
        release.set()
        t.join(30)
    assert results and results[0][0] == 200 and results[0][1] == {}
    served.ok("NetworkDriver.DeleteNetwork", {"NetworkID": nid})
