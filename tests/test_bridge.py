"""The bridge driver through the public API: devices, addresses, MACs, routes and real
traffic, read back with iproute2 (``ip -j``), never through pynetlib."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
import sys

import pytest

import pynetlib
from pynetlib import errors as E
from pynetlib import netlabel

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]


def ip_j(*args, ns=None):
    import json

    argv = ["ip"] + (["-n", ns] if ns else []) + ["-j", *args]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out.strip() else []


def links(ns=None):
    return {l["ifname"]: l for l in ip_j("-d", "link", "show", ns=ns)}


def addrs(dev, ns=None, link_local=False):
    """Addresses of dev; the kernel's own link-local ones only when asked."""
    out = ip_j("addr", "show", "dev", dev, ns=ns)
    return {f"{a['local']}/{a['prefixlen']}" for a in out[0]["addr_info"]
            if link_local or a.get("scope") != "link"} if out else set()


def ping(ns, ip, v6=False):
    argv = ["ip", "netns", "exec", ns, "ping"] + (["-6"] if v6 else []) + \
        ["-c1", "-W1", str(ip)]
    return subprocess.run(argv, capture_output=True).returncode == 0


def nsname(key):
    return os.path.basename(key)


def bridge_opts(**kw):
    return {netlabel.GENERIC_DATA: kw}


def snapshot():
    return (sorted(links()), sorted(os.listdir("/run/netns")))


# -- networks ----------------------------------------------------------------------------

def test_network_makes_a_tagged_bridge_with_its_address(ctrl):
    net = ctrl.new_network("bridge", "n1", bridge_opts(BridgeName="pnlt-br1",
                                                       AddressIPv4="10.10.0.1/16", Mtu=1400))
    br = links()["pnlt-br1"]
    assert br["linkinfo"]["info_kind"] == "bridge"
    assert br["mtu"] == 1400 and "UP" in br["flags"]
    assert br.get("ifalias") == f"pynetlib:{ctrl.store_id}:network:{net.id}"
    assert addrs("pnlt-br1") == {"10.10.0.1/16"}
    net.delete()
    assert "pnlt-br1" not in links()


def test_default_bridge_name_and_pool(ctrl):
    net = ctrl.new_network("bridge", "auto")
    name = f"br-{net.id[:12]}"
    assert name in links()
    (a,) = addrs(name)
    iface = ipaddress.ip_interface(a)
    assert iface.ip == next(iface.network.hosts())      # gateway = first address
    assert iface.network.subnet_of(ipaddress.ip_network("172.16.0.0/12")) or \
        iface.network.subnet_of(ipaddress.ip_network("192.168.0.0/16"))


def test_overlapping_subnets_are_refused_and_change_nothing(ctrl):
    ctrl.new_network("bridge", "a", bridge_opts(AddressIPv4="10.20.0.1/16"))
    before = snapshot()
    with pytest.raises(E.PoolOverlapError):
        ctrl.new_network("bridge", "b", bridge_opts(AddressIPv4="10.20.5.1/24"))
    with pytest.raises(E.PoolOverlapError):
        ctrl.new_network("bridge", "c", bridge_opts(AddressIPv4="10.0.0.1/8"))
    assert snapshot() == before
    assert [n.name for n in ctrl.networks()] == ["a"]


@pytest.mark.parametrize("opts", [
    {"NoSuchOption": 1},
    {"EnableICC": "maybe"},
    {"Mtu": -1},
    {"Mtu": 70000},
    {"Mtu": "1500"},
    {"AddressIPv4": "10.30.0.1"},
    {"AddressIPv4": "not-an-ip/16"},
    {"AddressIPv4": "10.30.0.1/16", "FixedCIDR": "10.31.0.0/24"},
    {"AddressIPv4": "10.30.0.1/16", "DefaultGatewayIPv4": "10.99.0.1"},
    {"FixedCIDRv6": "2001:db8::/64"},
    {"EnableIPv6": True, "FixedCIDRv6": "2001:db8::/64", "DefaultGatewayIPv6": "2001:db9::1"},
    {"BridgeName": "a-name-that-is-too-long"},
    {"BridgeName": "bad name"},
])
def test_bad_network_options(ctrl, opts):
    before = snapshot()
    with pytest.raises(E.BadRequestError):
        ctrl.new_network("bridge", "bad", bridge_opts(**opts))
    assert snapshot() == before
    assert ctrl.networks() == []
    # IPAM is untouched: the subnet is still free.
    ctrl.new_network("bridge", "good", bridge_opts(AddressIPv4="10.30.0.1/16"))


def test_existing_foreign_bridge_is_never_adopted(ctrl):
    subprocess.run(["ip", "link", "add", "pnlt-foreign", "type", "bridge"], check=True)
    try:
        with pytest.raises(E.ForbiddenError):
            ctrl.new_network("bridge", "f", bridge_opts(BridgeName="pnlt-foreign",
                                                        AddressIPv4="10.40.0.1/16"))
        assert "pnlt-foreign" in links()                  # untouched
        assert addrs("pnlt-foreign") == set()
        ctrl.new_network("bridge", "f", bridge_opts(AddressIPv4="10.40.0.1/16"))
    finally:
        subprocess.run(["ip", "link", "del", "pnlt-foreign"], check=True)


# -- endpoints ----------------------------------------------------------------------------

def test_endpoint_lifecycle_addresses_mac_and_traffic(ctrl):
    net = ctrl.new_network("bridge", "life", bridge_opts(BridgeName="pnlt-life",
                                                         AddressIPv4="10.50.0.1/16"))
    ep1 = net.create_endpoint("e1")
    ep2 = net.create_endpoint("e2")
    i1 = ep1.info().interfaces[0]
    assert i1.address == ipaddress.ip_interface("10.50.0.2/16")
    assert i1.mac_address == "02:42:0a:32:00:02"
    assert ep2.info().interfaces[0].address == ipaddress.ip_interface("10.50.0.3/16")
    assert ep1.info().gateway is None and ep1.info().sandbox_key is None

    k1 = ep1.join("life1", hostname="one").sandbox_key
    k2 = ep2.join("life2").sandbox_key
    n1, n2 = nsname(k1), nsname(k2)
    eth0 = links(n1)["eth0"]
    assert eth0["address"] == "02:42:0a:32:00:02" and "UP" in eth0["flags"]
    assert addrs("eth0", n1) == {"10.50.0.2/16"}
    assert "UP" in links(n1)["lo"]["flags"]
    routes = ip_j("route", "show", "default", ns=n1)
    assert routes and routes[0]["gateway"] == "10.50.0.1" and routes[0]["dev"] == "eth0"
    host = links()[f"pnl{ep1.id[:12]}"]
    assert host.get("master") == "pnlt-life" and "UP" in host["flags"]
    assert host.get("ifalias") == f"pynetlib:{ctrl.store_id}:endpoint:{ep1.id}"
    assert ep1.info().gateway == ipaddress.ip_address("10.50.0.1")
    assert ping(n1, "10.50.0.3") and ping(n2, "10.50.0.2") and ping(n1, "10.50.0.1")
    hosts = open(ctrl.sandbox_by_container("life1").hosts_path).read()
    assert hosts.startswith("10.50.0.2\tone\n")

    # leave keeps the address and MAC; the veth stops carrying traffic at once (gone, or
    # down on its way out: deleted in batches); the namespace goes on the teardown thread
    ep1.leave("life1")
    ctrl.flush_teardown()
    assert not os.path.exists(k1)
    old = links().get(f"pnl{ep1.id[:12]}")
    assert old is None or "UP" not in old["flags"] or "LOWER_UP" not in old["flags"]
    assert ep1.info().interfaces[0].address == ipaddress.ip_interface("10.50.0.2/16")
    k1b = ep1.join("life1b").sandbox_key
    assert addrs("eth0", nsname(k1b)) == {"10.50.0.2/16"}
    assert links(nsname(k1b))["eth0"]["address"] == "02:42:0a:32:00:02"
    assert ping(nsname(k1b), "10.50.0.3")
    ep1.leave("life1b")
    ctrl.flush_teardown()
    deadline = time.monotonic() + 30
    while f"pnl{ep1.id[:12]}" in links() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"pnl{ep1.id[:12]}" not in links()

    # delete then create: next-fit does not hand 10.50.0.2 out again at once
    ep1.delete()
    ep3 = net.create_endpoint("e3")
    assert ep3.info().interfaces[0].address == ipaddress.ip_interface("10.50.0.4/16")
    ep2.leave("life2")


def test_static_addresses(ctrl):
    net = ctrl.new_network("bridge", "st", bridge_opts(AddressIPv4="10.60.0.1/16"))
    ep = net.create_endpoint("s1", ipv4="10.60.7.7")
    assert ep.info().interfaces[0].address == ipaddress.ip_interface("10.60.7.7/16")
    ep2 = net.create_endpoint("s2", ipv4="10.60.7.8/16", mac="02:aa:bb:cc:dd:ee")
    assert ep2.info().interfaces[0].mac_address == "02:aa:bb:cc:dd:ee"
    with pytest.raises(E.IPAlreadyAllocatedError):
        net.create_endpoint("s3", ipv4="10.60.7.7")
    with pytest.raises(E.IPAlreadyAllocatedError):
        net.create_endpoint("s3", ipv4="10.60.0.1")          # the gateway
    with pytest.raises(E.IPOutOfRangeError):
        net.create_endpoint("s3", ipv4="10.61.0.5")
    with pytest.raises(E.ForbiddenError):
        net.create_endpoint("s3", mac="02:aa:bb:cc:dd:ee")    # MAC in use
    with pytest.raises(E.BadRequestError):
        net.create_endpoint("s3", mac="zz:aa:bb:cc:dd:ee")
    with pytest.raises(E.BadRequestError):
        net.create_endpoint("s3", ipv4="2001:db8::1")
    with pytest.raises(E.BadRequestError):
        net.create_endpoint("s3", options={"com.docker.network.nonsense": 1})
    with pytest.raises(E.BadRequestError):
        net.create_endpoint("s3", options={netlabel.PORT_MAP: ["tcp/80"]})
    assert sorted(e.name for e in net.endpoints()) == ["s1", "s2"]
    # nothing was reserved by the failures: the next dynamic address follows next-fit
    ep3 = net.create_endpoint("s3")
    assert ep3.info().interfaces[0].address == ipaddress.ip_interface("10.60.0.2/16")
    key = ep.join("static1").sandbox_key
    assert addrs("eth0", nsname(key)) == {"10.60.7.7/16"}
    ep.leave("static1")


def test_ipv6_addresses_from_mac_and_traffic(ctrl):
    net = ctrl.new_network("bridge", "v6", bridge_opts(
        BridgeName="pnlt-v6", AddressIPv4="10.70.0.1/16", EnableIPv6=True,
        FixedCIDRv6="2001:db8:70::/64"))
    assert {"2001:db8:70::1/64", "fe80::1/64", "10.70.0.1/16"} <= addrs("pnlt-v6", link_local=True)
    e1, e2 = net.create_endpoint("a"), net.create_endpoint("b")
    i1 = e1.info().interfaces[0]
    assert i1.address_ipv6 == ipaddress.ip_interface("2001:db8:70::242:a46:2/64")
    k1 = e1.join("v6a").sandbox_key
    e2.join("v6b")
    info = ip_j("-6", "addr", "show", "dev", "eth0", ns=nsname(k1))[0]["addr_info"]
    glob = [a for a in info if a["scope"] == "global"]
    assert glob[0]["local"] == "2001:db8:70::242:a46:2" and not glob[0].get("tentative")
    r6 = ip_j("-6", "route", "show", "default", ns=nsname(k1))
    assert r6 and r6[0]["gateway"] == "2001:db8:70::1"
    assert e1.info().gateway_ipv6 == ipaddress.ip_address("2001:db8:70::1")
    assert ping(nsname(k1), e2.info().interfaces[0].address_ipv6.ip, v6=True)
    e1.leave("v6a")
    e2.leave("v6b")


def test_two_networks_in_one_sandbox(ctrl):
    a = ctrl.new_network("bridge", "na", bridge_opts(AddressIPv4="10.81.0.1/16"))
    b = ctrl.new_network("bridge", "nb", bridge_opts(AddressIPv4="10.82.0.1/16"))
    ea, eb = a.create_endpoint("ea"), b.create_endpoint("eb")
    key = ea.join("multi").sandbox_key
    assert eb.join("multi").sandbox_key == key
    ns = nsname(key)
    assert addrs("eth0", ns) == {"10.81.0.2/16"} and addrs("eth1", ns) == {"10.82.0.2/16"}
    defaults = ip_j("route", "show", "default", ns=ns)
    assert len(defaults) == 1 and defaults[0]["gateway"] == "10.81.0.1"
    ea.leave("multi")
    assert os.path.exists(key)
    eb.leave("multi")
    ctrl.flush_teardown()
    assert not os.path.exists(key)


def test_join_failure_leaves_nothing(ctrl):
    net = ctrl.new_network("bridge", "jf", bridge_opts(AddressIPv4="10.90.0.1/16"))
    ep = net.create_endpoint("e")
    # Someone else's device already has the name of the endpoint's host end.
    hname = f"pnl{ep.id[:12]}"
    subprocess.run(["ip", "link", "add", hname, "type", "bridge"], check=True)
    before = snapshot()
    try:
        with pytest.raises(E.KernelError):
            ep.join("jfail")
        assert snapshot() == before
        assert ep.info().sandbox_key is None
        with pytest.raises(E.NotFoundError):
            ctrl.sandbox_by_container("jfail")
    finally:
        subprocess.run(["ip", "link", "del", hname], check=True)
    ep.join("jfail")
    ep.leave("jfail")


def test_audit_is_empty_when_consistent(ctrl):
    net = ctrl.new_network("bridge", "au", bridge_opts(AddressIPv4="10.91.0.1/16"))
    ep = net.create_endpoint("e")
    ep.join("audit1")
    assert ctrl.audit() == []
    subprocess.run(["ip", "link", "del", f"pnl{ep.id[:12]}"], check=True)
    assert any("veth" in p and "missing" in p for p in ctrl.audit())
    ep.leave("audit1")                       # idempotent teardown: already gone is fine
    assert ctrl.audit() == []


# -- firewall through the API: ICC, isolation, masquerade, port mappings -----------------

def _outside(make_netns, host_addr="192.0.2.1/24", out_addr="192.0.2.2/24"):
    """An 'outside' namespace wired to the test run's namespace (the container host)."""
    out = make_netns("out")
    subprocess.run(["ip", "link", "add", "pnlt-up", "type", "veth", "peer", "name", "pnlt-ou",
                    "netns", out], check=True)
    subprocess.run(["ip", "addr", "add", host_addr, "dev", "pnlt-up"], check=True)
    subprocess.run(["ip", "link", "set", "pnlt-up", "up"], check=True)
    subprocess.run(["ip", "-n", out, "addr", "add", out_addr, "dev", "pnlt-ou"], check=True)
    subprocess.run(["ip", "-n", out, "link", "set", "pnlt-ou", "up"], check=True)
    return out


@pytest.fixture
def forwarding():
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        old = f.read()
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("1\n")
    yield
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write(old)
    subprocess.run(["ip", "link", "del", "pnlt-up"], capture_output=True)


def test_icc_off_blocks_containers_but_not_the_gateway(ctrl):
    net = ctrl.new_network("bridge", "noicc", bridge_opts(AddressIPv4="10.100.0.1/16",
                                                          EnableICC=False))
    e1, e2 = net.create_endpoint("a"), net.create_endpoint("b")
    n1, n2 = nsname(e1.join("icc1").sandbox_key), nsname(e2.join("icc2").sandbox_key)
    assert not ping(n1, "10.100.0.3") and not ping(n2, "10.100.0.2")
    assert ping(n1, "10.100.0.1") and ping(n2, "10.100.0.1")
    e1.leave("icc1")
    e2.leave("icc2")


def test_icc_on_and_isolation_between_networks(ctrl):
    a = ctrl.new_network("bridge", "isoa", bridge_opts(AddressIPv4="10.101.0.1/16"))
    b = ctrl.new_network("bridge", "isob", bridge_opts(AddressIPv4="10.102.0.1/16"))
    a1, a2, b1 = a.create_endpoint("a1"), a.create_endpoint("a2"), b.create_endpoint("b1")
    na1 = nsname(a1.join("iso-a1").sandbox_key)
    a2.join("iso-a2")
    nb1 = nsname(b1.join("iso-b1").sandbox_key)
    assert ping(na1, "10.101.0.3")                       # same network: allowed
    assert not ping(na1, "10.102.0.2")                   # other network: isolated
    assert not ping(nb1, "10.101.0.2")
    assert ping(nb1, "10.102.0.1")
    for ep, c in ((a1, "iso-a1"), (a2, "iso-a2"), (b1, "iso-b1")):
        ep.leave(c)


def test_masquerade_rewrites_the_source(ctrl, make_netns, forwarding):
    out = _outside(make_netns)
    net = ctrl.new_network("bridge", "masq", bridge_opts(AddressIPv4="10.103.0.1/16"))
    ep = net.create_endpoint("m")
    n = nsname(ep.join("masq1").sandbox_key)
    server = subprocess.Popen(
        ["ip", "netns", "exec", out, sys.executable, "-c",
         "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
         "s.bind(('192.0.2.2',9999));s.settimeout(5);d,a=s.recvfrom(64);print(a[0],flush=True)"],
        stdout=subprocess.PIPE, text=True)
    try:
        import time
        time.sleep(0.3)
        subprocess.run(["ip", "netns", "exec", n, sys.executable, "-c",
                        "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
                        "s.sendto(b'x',('192.0.2.2',9999))"], check=True)
        seen = server.communicate(timeout=6)[0].strip()
    finally:
        server.kill()
    assert seen == "192.0.2.1"                # the host's address, not 10.103.0.2
    ep.leave("masq1")


def test_port_mapping_reaches_the_container(ctrl, make_netns, forwarding):
    out = _outside(make_netns)
    net = ctrl.new_network("bridge", "pm", bridge_opts(AddressIPv4="10.104.0.1/16"))
    ep = net.create_endpoint("web", options={netlabel.PORT_MAP: [
        pynetlib.PortBinding("tcp", 80, host_port=8080), pynetlib.PortBinding("tcp", 81)]})
    bound = ep.driver_info()[netlabel.PORT_MAP]
    assert bound[0].host_port == 8080 and bound[0].ip == ipaddress.ip_address("10.104.0.2")
    assert 1024 < bound[1].host_port <= 65535
    n = nsname(ep.join("pm1").sandbox_key)
    server = subprocess.Popen(
        ["ip", "netns", "exec", n, sys.executable, "-c",
         "import socket;s=socket.create_server(('0.0.0.0',80));s.settimeout(8);"
         "c,a=s.accept();c.sendall(b'hello from '+a[0].encode());c.close()"])
    try:
        import time
        time.sleep(0.3)
        got = subprocess.run(
            ["ip", "netns", "exec", out, sys.executable, "-c",
             "import socket;c=socket.create_connection(('192.0.2.1',8080),timeout=5);"
             "print(c.recv(100).decode())"], capture_output=True, text=True, check=True)
        assert got.stdout.startswith("hello from 192.0.2.2")
    finally:
        server.kill()
    with pytest.raises(E.ForbiddenError):            # the host port is taken
        net.create_endpoint("web2", options={netlabel.PORT_MAP: [
            pynetlib.PortBinding("tcp", 80, host_port=8080)]})
    ep.leave("pm1")
    refused = subprocess.run(
        ["ip", "netns", "exec", out, sys.executable, "-c",
         "import socket;socket.create_connection(('192.0.2.1',8080),timeout=2)"],
        capture_output=True)
    assert refused.returncode != 0
    assert ctrl.audit() == []


def test_a_second_join_keeps_the_first_ones_hosts_entry(ctrl):
    n1 = ctrl.new_network("bridge", "h1", bridge_opts(AddressIPv4="10.83.0.1/16"))
    n2 = ctrl.new_network("bridge", "h2", bridge_opts(AddressIPv4="10.84.0.1/16"))
    a, b = n1.create_endpoint("a"), n2.create_endpoint("b")
    a.join("hc", hostname="web")
    b.join("hc")
    hosts = open(ctrl.sandbox_by_container("hc").hosts_path).read()
    assert hosts.startswith("10.83.0.2\tweb\n"), hosts
    b.leave("hc")
    a.leave("hc")
    a.delete()
    b.delete()
    n1.delete()
    n2.delete()


def test_join_on_a_network_another_controller_made_later(ctrl, tmp_path):
    """The bridge's ifindex of a network loaded from the records (made by another
    process after this one started) is looked up, not taken as 0."""
    other = pynetlib.Controller(ctrl.state_dir, host_routes=lambda: [])
    other.new_network("bridge", "later", bridge_opts(AddressIPv4="10.85.0.1/16"))
    other.close()
    ep = ctrl.network_by_name("later").create_endpoint("e")
    key = ep.join("lc").sandbox_key
    assert addrs("eth0", nsname(key)) == {"10.85.0.2/16"}
    assert ping(nsname(key), "10.85.0.1")
    ep.leave("lc")
    ep.delete()
    ctrl.network_by_name("later").delete()
