"""The HTTP API end to end against a real daemon process in the test's namespaces:
every route, every reachable error status, and the client's errors."""

from __future__ import annotations

import os
import secrets
import sys

import pytest

from pynetlib import errors
from pynetlib.client import Client
from pynetlib.daemon import schema
from pynetlib.daemon.routes import ROUTES

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _daemon_helpers import (audit_settled, cleanup_state, jbody, raw,  # noqa: E402
                             rmtree, socket_dir, start_daemon)

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]

BRIDGE = "pnldapi0"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    sockets = socket_dir()
    state = str(tmp_path_factory.mktemp("dstate") / "state")
    d = start_daemon(state, os.path.join(sockets, "api.sock"))
    yield d
    assert d.stop() == 0, d.log_text()
    assert not os.path.exists(d.socket_path)
    assert cleanup_state(state) == []
    rmtree(sockets)


@pytest.fixture
def api(daemon):
    """The daemon's client; every network a test leaves behind is removed after it."""
    c = daemon.client
    yield c
    for net in c.networks():
        for ep in c.endpoints(net["id"]):
            if ep["container_id"]:
                c.leave(net["id"], ep["id"], ep["container_id"])
            c.delete_endpoint(net["id"], ep["id"])
        c.delete_network(net["id"])
    assert audit_settled(c) == []


def _links() -> dict[str, dict]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {l.get_attr("IFLA_IFNAME"): {"index": l["index"],
                                            "master": l.get_attr("IFLA_MASTER")}
                for l in ipr.get_links()}


# -- the happy path ----------------------------------------------------------------------

def test_ping_and_openapi_describe_every_route(api, daemon):
    assert api.ping() == "OK"
    doc = api.openapi()
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["schemas"] == schema.DEFINITIONS
    served = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert served == {(r.method, r.path) for r in ROUTES}


def test_lifecycle_plumbs_a_veth_into_the_sandbox(api):
    from pyroute2 import NetNS

    nid = api.create_network("apinet", subnet="10.31.0.0/24", gateway="10.31.0.1",
                             mtu=1400, driver_opts={"BridgeName": BRIDGE})
    assert len(nid) == 64
    net = api.network(nid)
    assert net["name"] == "apinet" and net["type"] == "bridge" and net["endpoints"] == []
    assert net["options"]["com.docker.network.generic"]["AddressIPv4"] == "10.31.0.1/24"
    assert [n["id"] for n in api.networks(name="apinet")] == [nid]
    assert [n["id"] for n in api.networks(partial_id=nid[:10])] == [nid]
    assert api.networks(name="nosuch") == []
    assert BRIDGE in _links()

    eid = api.create_endpoint(nid, "ep1", ipv4="10.31.0.7", mac="02:42:0a:1f:00:07",
                              port_mapping=[{"proto": "tcp", "port": 80, "host_port": 18080}],
                              exposed_ports=[{"proto": "tcp", "port": 80}])
    assert [e["id"] for e in api.endpoints(nid, name="ep1")] == [eid]
    assert [e["id"] for e in api.endpoints(nid, partial_id=eid[:8])] == [eid]
    ep = api.endpoint(nid, eid)
    assert ep["interfaces"] == [{"mac_address": "02:42:0a:1f:00:07",
                                 "address": "10.31.0.7/24", "address_ipv6": None}]
    assert ep["container_id"] is None and ep["sandbox_key"] is None
    assert ep["port_mapping"] == [{"proto": "tcp", "port": 80, "host_port": 18080,
                                   "host_ip": None}]
    assert api.network(nid)["endpoints"] == [{"name": "ep1", "id": eid, "network": "apinet"}]

    key = api.join(nid, eid, "ctr-1", host_name="web1", dns=["10.31.0.1"])["sandbox_key"]
    assert os.path.exists(key)
    ep = api.endpoint(nid, eid)
    assert ep["container_id"] == "ctr-1" and ep["sandbox_key"] == key
    assert ep["gateway"] == "10.31.0.1"

    # The kernel, read independently: the sandbox has the veth with the address, MAC,
    # MTU and default route; the host end is enslaved to the network's bridge.
    with NetNS(os.path.basename(key)) as ns:
        eth = [l for l in ns.get_links() if l.get_attr("IFLA_IFNAME") != "lo"]
        assert len(eth) == 1
        assert eth[0].get_attr("IFLA_ADDRESS") == "02:42:0a:1f:00:07"
        assert eth[0].get_attr("IFLA_MTU") == 1400
        addrs = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                 for a in ns.get_addr(index=eth[0]["index"], family=2)]
        assert addrs == [("10.31.0.7", 24)]
        gws = [r.get_attr("RTA_GATEWAY") for r in ns.get_routes(family=2)
               if r["dst_len"] == 0 and r.get_attr("RTA_GATEWAY")]
        assert gws == ["10.31.0.1"]
    links = _links()
    enslaved = [n for n, l in links.items() if l["master"] == links[BRIDGE]["index"]]
    assert len(enslaved) == 1

    sbs = api.sandboxes()
    assert sbs == [{"id": "ctr-1", "container_id": "ctr-1", "key": key, "endpoints": [eid]}]
    assert api.sandboxes(container_id="ctr-1") == sbs
    assert api.sandboxes(partial_container_id="ctr") == sbs
    assert api.sandboxes(container_id="other") == []
    assert api.sandbox("ctr-1") == sbs[0]

    assert api.leave(nid, eid, "ctr-1") is None
    assert not os.path.exists(key)
    assert api.sandboxes() == []
    assert api.delete_endpoint(nid, eid) is None
    assert api.endpoints(nid) == []
    assert api.delete_network(nid) is None
    assert api.networks() == []
    assert BRIDGE not in _links()
    assert audit_settled(api) == []
    assert api.reconcile() == []


def test_join_into_a_runtime_namespace(api, make_netns):
    name = make_netns("rt")
    nid = api.create_network("rtnet", subnet="10.32.0.0/24")
    eid = api.create_endpoint(nid, "ep")
    key = api.join(nid, eid, "rt-ctr", netns_path=f"/run/netns/{name}")["sandbox_key"]
    assert key == f"/run/netns/{name}"
    api.leave(nid, eid, "rt-ctr")
    assert os.path.exists(key)                     # the runtime's namespace stays


# -- 400 -------------------------------------------------------------------------------

DEEP = {"a": [[[[[[[["x"]]]]]]]]}                  # 10 levels with the body


@pytest.mark.parametrize("body, needle", [
    (b"{not json", "not valid JSON"),
    (b'{"name": "a", "name": "b"}', "duplicate field 'name'"),
    (b'{"name": "a", "mtu": NaN}', "NaN is not JSON"),
    (jbody({"name": "a", "colour": "blue"}), "body: unknown field 'colour'"),
    (jbody({"name": 7}), "body.name: expected string, got integer"),
    (jbody({"name": "a", "mtu": "1500"}), "body.mtu: expected integer or null, got string"),
    (jbody({"name": "a", "mtu": 10}), "body.mtu: less than 68"),
    (jbody({"name": "a", "internal": 1}), "body.internal: expected boolean"),
    (jbody({"subnet": "10.0.0.0/24"}), "body: missing required field 'name'"),
    (jbody(["name"]), "body: expected object, got array"),
    (jbody({"name": "a", "driver_opts": {"x": "y" * 70000}}), "larger than 65536 bytes"),
    (jbody({"name": "a", "driver_opts": DEEP}), "nested deeper than 8 levels"),
    (b"[" * 5000 + b"]" * 5000, "nested deeper than 8 levels"),
    (jbody({"name": "bad name"}), "body.name: 'bad name' does not match"),
    (jbody({"name": "trailing\n"}), "does not match"),
    (b"", "a JSON object is required"),
])
def test_bad_network_bodies_are_400_and_change_nothing(api, daemon, body, needle):
    status, reply, _ = raw(daemon.socket_path, "POST", "/networks", body)
    assert status == 400, reply
    assert reply["category"] == "BadRequest"
    assert needle in reply["message"]
    assert api.networks() == []


@pytest.mark.parametrize("method, path, body, headers, needle", [
    ("POST", "/networks", jbody({"name": "a"}), {"Content-Type": "text/plain"},
     "Content-Type must be application/json"),
    ("GET", "/networks", b'{"x": 1}', {}, "takes no body"),
    ("GET", "/networks?colour=blue", None, {}, "unknown query parameter 'colour'"),
    ("GET", "/networks?name=a&partial-id=ab", None, {}, "Unsupported query"),
    ("GET", "/networks?name=a&name=b", None, {}, "given more than once"),
    ("GET", "/networks?partial-id=XYZ", None, {}, "query parameter partial-id"),
    ("GET", "/sandboxes?container-id=a&partial-container-id=a", None, {},
     "Unsupported query"),
    ("GET", "/networks/not-an-id", None, {}, "path parameter nid"),
    ("GET", "/sandboxes/bad%20cid", None, {}, "path parameter cid"),
    ("POST", "/reconcile", b'{"all": true}', {}, "takes no body"),
])
def test_bad_requests_are_400(api, daemon, method, path, body, headers, needle):
    status, reply, _ = raw(daemon.socket_path, method, path, body, headers)
    assert status == 400, reply
    assert reply["category"] == "BadRequest" and needle in reply["message"], reply


def test_bad_endpoint_and_join_bodies_are_400(api, daemon):
    nid = api.create_network("valnet", subnet="10.33.0.0/24")
    path = f"/networks/{nid}/endpoints"
    for body, needle in [
        ({"name": "e", "port_mapping": [{"proto": "tcp", "port": 0}]},
         "body.port_mapping[0].port: less than 1"),
        ({"name": "e", "port_mapping": [{"proto": "icmp", "port": 1}]},
         "body.port_mapping[0].proto: must be one of"),
        ({"name": "e", "exposed_ports": [{"proto": "tcp"}]},
         "body.exposed_ports[0]: missing required field 'port'"),
        ({"name": "e", "ipv4": "10.99.0.5"}, "does not belong to the network"),
        ({"name": "e", "mac": "zz:zz"}, "invalid MAC address"),
    ]:
        status, reply, _ = raw(daemon.socket_path, "POST", path, jbody(body))
        assert status == 400 and needle in reply["message"], (body, reply)
    assert api.endpoints(nid) == []
    eid = api.create_endpoint(nid, "e")
    jpath = f"{path}/{eid}/sandboxes"
    for body, needle in [
        ({}, "missing required field 'container_id'"),
        ({"container_id": "c", "extra_hosts": [{"name": "h"}]},
         "body.extra_hosts[0]: missing required field 'address'"),
        ({"container_id": "c", "dns": "10.0.0.1"}, "body.dns: expected array"),
        ({"container_id": "c", "netns_path": "relative"}, "an absolute path"),
        ({"container_id": "c", "netns_path": "/dev/null"}, "is not a network namespace"),
        ({"container_id": "c", "netns_path": "/etc/hostname"},
         "is not a network namespace"),
    ]:
        status, reply, _ = raw(daemon.socket_path, "POST", jpath, jbody(body))
        assert status == 400 and needle in reply["message"], (body, reply)
    assert api.endpoint(nid, eid)["container_id"] is None
    assert api.sandboxes() == []


# -- 403, 404, 405, 503 ----------------------------------------------------------------

def test_conflicts_are_403(api, daemon):
    nid = api.create_network("dup", subnet="10.34.0.0/24")
    with pytest.raises(errors.ForbiddenError, match="already exists"):
        api.create_network("dup", subnet="10.35.0.0/24")
    eid = api.create_endpoint(nid, "e")
    with pytest.raises(errors.ForbiddenError, match="already exists"):
        api.create_endpoint(nid, "e")
    with pytest.raises(errors.ForbiddenError, match="has active endpoints"):
        api.delete_network(nid)
    api.join(nid, eid, "c403")
    with pytest.raises(errors.ForbiddenError, match="active container"):
        api.delete_endpoint(nid, eid)
    with pytest.raises(errors.ForbiddenError):
        api.join(nid, eid, "c403-other")
    status, reply, _ = raw(daemon.socket_path, "DELETE", f"/networks/{nid}")
    assert status == 403 and reply["category"] == "Forbidden"


def test_unknown_things_are_404(api, daemon):
    nid = api.create_network("n404", subnet="10.36.0.0/24")
    ghost = secrets.token_hex(32)
    for method, path in [
        ("GET", f"/networks/{ghost}"),
        ("DELETE", f"/networks/{ghost}"),
        ("GET", f"/networks/{ghost}/endpoints"),
        ("POST", f"/networks/{ghost}/endpoints"),
        ("GET", f"/networks/{nid}/endpoints/{ghost}"),
        ("DELETE", f"/networks/{nid}/endpoints/{ghost}"),
        ("POST", f"/networks/{nid}/endpoints/{ghost}/sandboxes"),
        ("DELETE", f"/networks/{nid}/endpoints/{ghost}/sandboxes/c1"),
        ("GET", "/sandboxes/nobody"),
        ("GET", "/nowhere"),
        ("GET", "/networks/"),
    ]:
        body = jbody({"name": "e"} if path.endswith("endpoints") else
                     {"container_id": "c1"}) if method == "POST" else None
        status, reply, _ = raw(daemon.socket_path, method, path, body)
        assert status == 404, (method, path, reply)
        assert reply["category"] == "NotFound", reply
    with pytest.raises(errors.NotFoundError, match="could not find a network driver"):
        api.create_network("x", network_type="nosuchdriver")
    eid = api.create_endpoint(nid, "e")
    with pytest.raises(errors.NotFoundError, match="not found"):
        api.join(nid, eid, "c404", netns_path="/run/netns/does-not-exist")
    with pytest.raises(errors.NotFoundError):
        api.network(ghost)


def test_wrong_methods_are_405_with_allow(api, daemon):
    for method, path, allowed in [("PUT", "/networks", "GET, POST"),
                                  ("DELETE", "/sandboxes", "GET"),
                                  ("POST", "/audit", "GET"),
                                  ("GET", "/reconcile", "POST"),
                                  ("PATCH", f"/networks/{'a' * 64}", "DELETE, GET")]:
        status, reply, headers = raw(daemon.socket_path, method, path)
        assert status == 405, (method, path, reply)
        assert reply["category"] == "BadRequest"
        assert headers["Allow"] == allowed


def test_exhausted_addresses_are_503(api, daemon):
    nid = api.create_network("tiny", subnet="10.37.0.0/30")
    api.create_endpoint(nid, "only")
    status, reply, _ = raw(daemon.socket_path, "POST", f"/networks/{nid}/endpoints",
                           jbody({"name": "second"}))
    assert status == 503, reply
    assert reply["category"] == "NoService"
    with pytest.raises(errors.NoServiceError):
        api.create_endpoint(nid, "third")
    assert [e["name"] for e in api.endpoints(nid)] == ["only"]


# -- the client --------------------------------------------------------------------------

def test_client_without_a_daemon_says_where_it_looked(tmp_path):
    path = str(tmp_path / "nobody.sock")
    with pytest.raises(errors.NoServiceError, match="not reachable at .*nobody.sock"):
        Client(path).networks()


def test_client_quotes_path_parts(api):
    # a container id with characters that must not change the path
    with pytest.raises(errors.BadRequestError, match="path parameter cid"):
        api.sandbox("../networks")
