"""The CNM object model with the null and host drivers: libnetwork.md sections 1-3, 9, 10.

Kernel state (sandbox namespaces) is checked with iproute2 and the filesystem, not
through pynetlib.
"""

from __future__ import annotations

import os
import threading

import pytest

from pynetlib import errors as E
from pynetlib.driverapi import Driver

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]


def ns_files():
    return sorted(os.listdir("/run/netns"))


# -- controller ------------------------------------------------------------------------

def test_new_network_names_ids_and_lookups(ctrl):
    net = ctrl.new_network("null", "net1")
    assert net.name == "net1" and net.type == "null"
    assert len(net.id) == 64 and all(c in "0123456789abcdef" for c in net.id)
    assert ctrl.network_by_name("net1") is net
    assert ctrl.network_by_id(net.id) is net
    assert ctrl.networks() == [net]
    with pytest.raises(E.NoSuchNetworkError):
        ctrl.network_by_name("nope")
    with pytest.raises(E.NoSuchNetworkError):
        ctrl.network_by_id("net1")          # a name is not an id
    with pytest.raises(E.InvalidNameError):
        ctrl.network_by_name("")
    with pytest.raises(E.InvalidIDError):
        ctrl.network_by_id("")


@pytest.mark.parametrize("bad", ["", "   ", "a" * 65, "bad name", "-x", "a/b", None, 7])
def test_bad_network_names(ctrl, bad):
    with pytest.raises(E.InvalidNameError):
        ctrl.new_network("null", bad)
    assert ctrl.networks() == []


def test_duplicate_network_name(ctrl):
    ctrl.new_network("null", "dup")
    with pytest.raises(E.NetworkNameError):
        ctrl.new_network("null", "dup")
    assert len(ctrl.networks()) == 1


def test_unknown_driver(ctrl):
    with pytest.raises(E.UnknownDriverError):
        ctrl.new_network("nosuch", "x")
    with pytest.raises(E.UnknownDriverError):
        ctrl.configure_network_driver("nosuch", {})


def test_register_driver_twice(ctrl):
    class Mine(Driver):
        type = "mine"

        def config(self, options): pass
        def create_network(self, nid, options): pass
        def delete_network(self, nid): pass
        def create_endpoint(self, nid, eid, ep_info, options): pass
        def delete_endpoint(self, nid, eid): pass
        def endpoint_oper_info(self, nid, eid): return {}
        def join(self, nid, eid, sbox_key, jinfo, options): pass
        def leave(self, nid, eid): pass

    ctrl.register_driver("mine", Mine())
    with pytest.raises(E.ActiveRegistrationError):
        ctrl.register_driver("mine", Mine())
    with pytest.raises(E.ActiveRegistrationError):
        ctrl.register_driver("bridge", Mine())


def test_walk_networks_stops_when_told(ctrl):
    for i in range(5):
        ctrl.new_network("null", f"w{i}")
    seen = []

    def fn(net):
        seen.append(net.name)
        return len(seen) == 2

    ctrl.walk_networks(fn)
    assert len(seen) == 2


def test_network_delete_with_endpoints_is_refused(ctrl):
    net = ctrl.new_network("null", "n")
    ep = net.create_endpoint("ep1")
    with pytest.raises(E.ActiveEndpointsError):
        net.delete()
    assert ctrl.network_by_name("n") is net
    ep.delete()
    net.delete()
    with pytest.raises(E.NoSuchNetworkError):
        ctrl.network_by_name("n")
    with pytest.raises(E.NoSuchNetworkError):
        net.delete()


def test_failing_driver_create_stores_nothing(ctrl):
    class Failing(Driver):
        type = "failing"

        def config(self, options): pass
        def create_network(self, nid, options): raise E.BadRequestError("no")
        def delete_network(self, nid): pass
        def create_endpoint(self, nid, eid, ep_info, options): pass
        def delete_endpoint(self, nid, eid): pass
        def endpoint_oper_info(self, nid, eid): return {}
        def join(self, nid, eid, sbox_key, jinfo, options): pass
        def leave(self, nid, eid): pass

    ctrl.register_driver("failing", Failing())
    with pytest.raises(E.BadRequestError):
        ctrl.new_network("failing", "f")
    assert ctrl.networks() == []
    ctrl.new_network("null", "f")           # the name is free again


# -- endpoints -------------------------------------------------------------------------

def test_endpoint_lookups_and_duplicates(ctrl):
    net = ctrl.new_network("null", "n")
    ep = net.create_endpoint("ep1")
    assert ep.name == "ep1" and ep.network == "n" and len(ep.id) == 64
    assert net.endpoint_by_name("ep1") is ep and net.endpoint_by_id(ep.id) is ep
    with pytest.raises(E.EndpointNameError):
        net.create_endpoint("ep1")
    with pytest.raises(E.NoSuchEndpointError):
        net.endpoint_by_name("zz")
    with pytest.raises(E.InvalidNameError):
        net.endpoint_by_name("")
    with pytest.raises(E.InvalidIDError):
        net.endpoint_by_id("")
    with pytest.raises(E.InvalidNameError):
        net.create_endpoint(" ")
    ep.delete()
    with pytest.raises(E.NoSuchEndpointError):
        ep.delete()
    assert net.endpoints() == []


def test_join_creates_sandbox_and_leave_removes_it(ctrl):
    net = ctrl.new_network("null", "n")
    ep = net.create_endpoint("ep1")
    before = ns_files()
    data = ep.join("c0ffee1", hostname="box", domainname="example.org")
    assert os.path.exists(data.sandbox_key)
    assert os.path.basename(data.sandbox_key) in ns_files()
    assert len(ns_files()) == len(before) + 1
    assert ep.info().sandbox_key == data.sandbox_key
    sb = ctrl.sandbox_by_container("c0ffee1")
    assert sb.key == data.sandbox_key and sb.endpoints() == [ep]
    hosts = open(sb.hosts_path).read()
    assert "127.0.0.1\tlocalhost" in hosts
    with pytest.raises(E.InvalidJoinError):
        ep.join("c0ffee1")
    with pytest.raises(E.InvalidJoinError):
        ep.join("other")
    with pytest.raises(E.ActiveContainerError):
        ep.delete()
    with pytest.raises(E.InvalidContainerIDError):
        ep.leave("other")
    with pytest.raises(E.InvalidContainerIDError):
        ep.leave("")
    ep.leave("c0ffee1")
    ctrl.flush_teardown()
    assert ns_files() == before
    assert ep.info().sandbox_key is None
    with pytest.raises(E.NoContainerError):
        ep.leave("c0ffee1")
    ep.delete()


@pytest.mark.parametrize("bad", ["", "-bad", "a b", "x" * 200, None])
def test_join_bad_container_id(ctrl, bad):
    ep = ctrl.new_network("null", "n").create_endpoint("e")
    before = ns_files()
    with pytest.raises(E.InvalidContainerIDError):
        ep.join(bad)
    assert ns_files() == before


def test_sandbox_shared_by_endpoints_of_one_container(ctrl):
    n1 = ctrl.new_network("null", "n1")
    n2 = ctrl.new_network("null", "n2")
    e1, e2 = n1.create_endpoint("a"), n2.create_endpoint("b")
    k1 = e1.join("cid1").sandbox_key
    k2 = e2.join("cid1").sandbox_key
    assert k1 == k2
    assert sorted(e.name for e in ctrl.sandbox_by_container("cid1").endpoints()) == ["a", "b"]
    e1.leave("cid1")
    assert os.path.exists(k1)               # still used by e2
    e2.leave("cid1")
    ctrl.flush_teardown()
    assert not os.path.exists(k1)


def test_external_netns_path_is_used_and_kept(ctrl, make_netns):
    name = make_netns("ext")
    path = f"/run/netns/{name}"
    ep = ctrl.new_network("null", "n").create_endpoint("e")
    assert ep.join("cext", netns_path=path).sandbox_key == path
    ep.leave("cext")
    assert os.path.exists(path)             # never deleted: the runtime owns it


def test_host_driver_default_sandbox(ctrl):
    ep = ctrl.new_network("host", "h").create_endpoint("e")
    before = ns_files()
    key = ep.join("hostc", use_default_sandbox=True).sandbox_key
    assert os.stat(key).st_ino == os.stat("/proc/self/ns/net").st_ino
    assert ns_files() == before
    sb = ctrl.sandbox_by_container("hostc")
    assert open(sb.hosts_path).read() == open("/etc/hosts").read()
    ep.leave("hostc")


def test_join_files_hosts_and_resolv(ctrl, tmp_path):
    ep = ctrl.new_network("null", "n").create_endpoint("e")
    hosts, resolv = str(tmp_path / "h"), str(tmp_path / "r")
    ep.join("cfiles", hostname="web", domainname="corp.example", hosts_path=hosts,
            resolv_conf_path=resolv, extra_hosts=[("db", "10.1.2.3")],
            dns=["1.1.1.1", "127.0.0.53"], dns_search=["corp.example"])
    text = open(hosts).read().splitlines()
    assert "10.1.2.3\tdb" in text and "::1\tlocalhost ip6-localhost ip6-loopback" in text
    r = open(resolv).read()
    assert "nameserver 1.1.1.1" in r and "search corp.example" in r
    ep.leave("cfiles")


def test_parallel_joins_of_different_endpoints(ctrl):
    net = ctrl.new_network("null", "par")
    eps = [net.create_endpoint(f"e{i}") for i in range(16)]
    errs = []

    def work(i):
        try:
            for _ in range(3):
                eps[i].join(f"pc{i}")
                eps[i].leave(f"pc{i}")
        except Exception as e:      # pragma: no cover - reported below
            errs.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errs == []
    assert not [f for f in ns_files() if f.startswith("pnl-pc")]


def test_concurrent_join_of_one_endpoint_only_one_wins(ctrl):
    ep = ctrl.new_network("null", "one").create_endpoint("e")
    results = []

    def work(i):
        try:
            ep.join(f"race{i}")
            results.append(i)
        except E.InvalidJoinError:
            pass

    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(results) == 1
    ep.leave(f"race{results[0]}")


def test_users_edit_of_resolv_conf_is_kept(ctrl):
    n1, n2 = ctrl.new_network("null", "r1"), ctrl.new_network("null", "r2")
    e1, e2 = n1.create_endpoint("a"), n2.create_endpoint("b")
    e1.join("redit", dns=["9.9.9.9"])
    path = ctrl.sandbox_by_container("redit").resolv_conf_path
    assert "nameserver 9.9.9.9" in open(path).read()
    with open(path, "a") as f:
        f.write("# mine\n")
    e2.join("redit", dns=["1.0.0.1"])         # would rewrite it, but the user edited it
    assert open(path).read().endswith("# mine\n")
    e2.leave("redit")
    e1.leave("redit")


def test_resolv_conf_filters_loopback_and_falls_back(tmp_path):
    from pynetlib import resolvconf

    host = tmp_path / "host.conf"
    host.write_text("nameserver 127.0.0.53\nnameserver ::1\nsearch lan\n")
    out = tmp_path / "r"
    assert resolvconf.build(str(out), host_path=str(host))
    text = out.read_text()
    assert "127.0.0.53" not in text and "::1" not in text
    assert "nameserver 8.8.8.8" in text and "nameserver 8.8.4.4" in text
    assert "2001:4860:4860::8888" not in text
    out6 = tmp_path / "r6"
    host.write_text("nameserver 2001:db8::53\nnameserver 10.0.0.53\n")
    resolvconf.build(str(out6), host_path=str(host), ipv6=False)
    assert "2001:db8::53" not in out6.read_text() and "10.0.0.53" in out6.read_text()


def test_hosts_file_layout(tmp_path):
    from pynetlib import etchosts

    p = tmp_path / "hosts"
    etchosts.build(str(p), "10.0.0.5", "web", "example.org",
                   [etchosts.Record("db", "10.0.0.9")])
    lines = p.read_text().splitlines()
    assert lines[0] == "10.0.0.5\tweb.example.org web"
    assert lines[1:7] == ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                          "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix",
                          "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"]
    assert lines[7] == "10.0.0.9\tdb"
    etchosts.update(str(p), "10.0.0.6", "web")
    assert p.read_text().splitlines()[0] == "10.0.0.6\tweb.example.org web"
    with pytest.raises(E.BadRequestError):
        etchosts.build(str(p), "10.0.0.5", "bad host", None)
