"""Network devices through NetlinkSocket, every result read back with pyroute2."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

import pytest

from pynetlib.errors import (BadRequestError, InvalidNameError, KernelError,
                             ObjectExistsError, ObjectNotFoundError)
from pynetlib.kernel import NetlinkSocket, Netns

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.environ.get("PYNETLIB_TEST_SANDBOX") != "1",
                       reason="needs root; the run isolates itself with unshare"),
]

IFF_UP = 0x1


@dataclass
class NS:
    name: str
    netns: Netns
    sock: NetlinkSocket
    ipr: object  # pyroute2 NetNS bound to the same namespace


@pytest.fixture
def new_ns(make_netns, ipr_in):
    opened: list[Netns] = []

    def make() -> NS:
        name = make_netns("l")
        ns = Netns.named(name)
        opened.append(ns)
        return NS(name, ns, ns.socket(), ipr_in(name))

    yield make
    for ns in opened:
        ns.close()


@pytest.fixture
def ns(new_ns) -> NS:
    return new_ns()


def plink(ipr, name: str):
    found = ipr.link("get", ifname=name)
    assert len(found) == 1
    return found[0]


def kind_of(l) -> str | None:
    return l.get(("IFLA_LINKINFO", "IFLA_INFO_KIND"))


def info_data(l, key):
    return l.get(("IFLA_LINKINFO", "IFLA_INFO_DATA")).get(key)


def snapshot(ipr) -> list[tuple]:
    """What an error test must leave unchanged: every device and its main attributes."""
    return sorted((l["index"], l.get("IFLA_IFNAME"), l.get("IFLA_MTU"), l.get("IFLA_ADDRESS"),
                   l["flags"] & IFF_UP, l.get("IFLA_MASTER"), l.get("IFLA_GROUP"),
                   l.get("IFLA_IFALIAS")) for l in ipr.get_links())


def names(ipr) -> set[str]:
    return {l.get("IFLA_IFNAME") for l in ipr.get_links()}


# --- create ------------------------------------------------------------------------------

def test_bridge_create_with_all_attributes(ns):
    ns.sock.bridge_create("br0", mtu=1400, mac="02:11:22:33:44:55", alias="owner:net-1",
                          group=7, up=True)
    l = plink(ns.ipr, "br0")
    assert kind_of(l) == "bridge"
    assert l.get("IFLA_MTU") == 1400
    assert l.get("IFLA_ADDRESS") == "02:11:22:33:44:55"
    assert l.get("IFLA_IFALIAS") == "owner:net-1"
    assert l.get("IFLA_GROUP") == 7
    assert l["flags"] & IFF_UP


def test_bridge_create_defaults(ns):
    ns.sock.bridge_create("br1")
    l = plink(ns.ipr, "br1")
    assert kind_of(l) == "bridge"
    assert not l["flags"] & IFF_UP
    assert l.get("IFLA_MTU") == 1500
    assert l.get("IFLA_GROUP") == 0
    assert l.get("IFLA_IFALIAS") is None


def test_dummy_create(ns):
    ns.sock.bridge_create("brd")
    try:
        ns.sock.dummy_create("dm0", mtu=9000, mac="02:00:00:00:0d:01", alias="dm", group=3,
                             up=True, master="brd")
    except KernelError as e:
        if e.errno == errno.EOPNOTSUPP:
            pytest.skip("this kernel has no dummy driver (CONFIG_DUMMY)")
        raise
    l = plink(ns.ipr, "dm0")
    assert kind_of(l) == "dummy"
    assert (l.get("IFLA_MTU"), l.get("IFLA_ADDRESS"), l.get("IFLA_IFALIAS"),
            l.get("IFLA_GROUP")) == (9000, "02:00:00:00:0d:01", "dm", 3)
    assert l.get("IFLA_MASTER") == plink(ns.ipr, "brd")["index"]
    assert l["flags"] & IFF_UP


def test_veth_create_same_namespace(ns):
    ns.sock.bridge_create("br0", up=True)
    ns.sock.veth_create("ve0", "ve0p", mac="02:00:00:00:00:a1", peer_mac="02:00:00:00:00:a2",
                        mtu=1450, master="br0", up=True, alias="tag", group=9)
    a, b = plink(ns.ipr, "ve0"), plink(ns.ipr, "ve0p")
    br = plink(ns.ipr, "br0")
    assert kind_of(a) == kind_of(b) == "veth"
    assert a.get("IFLA_ADDRESS") == "02:00:00:00:00:a1"
    assert b.get("IFLA_ADDRESS") == "02:00:00:00:00:a2"
    assert a.get("IFLA_MTU") == b.get("IFLA_MTU") == 1450
    assert a.get("IFLA_MASTER") == br["index"]
    assert b.get("IFLA_MASTER") is None
    assert a["flags"] & IFF_UP and not b["flags"] & IFF_UP  # the peer starts down
    assert a.get("IFLA_IFALIAS") == "tag" and a.get("IFLA_GROUP") == 9
    assert a.get("IFLA_LINK") == b["index"] and b.get("IFLA_LINK") == a["index"]


def test_veth_peer_created_in_another_namespace(new_ns):
    host, cont = new_ns(), new_ns()
    host.sock.veth_create("vh0", "vc0", peer_netns=cont.netns, peer_mac="02:00:00:00:00:c0",
                          mtu=1380)
    assert "vc0" not in names(host.ipr)
    assert "vh0" not in names(cont.ipr)
    c = plink(cont.ipr, "vc0")
    assert kind_of(c) == "veth"
    assert c.get("IFLA_ADDRESS") == "02:00:00:00:00:c0"
    assert c.get("IFLA_MTU") == 1380
    h = plink(host.ipr, "vh0")
    assert h.get("IFLA_MTU") == 1380
    assert c.get("IFLA_LINK") == h["index"]
    assert c.get("IFLA_LINK_NETNSID") is not None  # the peer lives in another namespace


def test_vxlan_create(ns):
    ns.sock.vxlan_create("vx0", 4242, local="10.1.1.1", port=4790, learning=False, mtu=1400,
                         alias="ovl", group=5)
    l = plink(ns.ipr, "vx0")
    assert kind_of(l) == "vxlan"
    assert info_data(l, "IFLA_VXLAN_ID") == 4242
    assert info_data(l, "IFLA_VXLAN_LOCAL") == "10.1.1.1"
    assert info_data(l, "IFLA_VXLAN_PORT") == 4790
    assert info_data(l, "IFLA_VXLAN_LEARNING") == 0
    assert (l.get("IFLA_MTU"), l.get("IFLA_IFALIAS"), l.get("IFLA_GROUP")) == (1400, "ovl", 5)


def test_vxlan_create_ipv6_remote_and_device(ns):
    ns.sock.veth_create("und0", "und1")
    ns.sock.vxlan_create("vx6", 1, local="fd00::1", remote="fd00::2", dev="und0")
    l = plink(ns.ipr, "vx6")
    assert info_data(l, "IFLA_VXLAN_ID") == 1
    assert info_data(l, "IFLA_VXLAN_LOCAL6") == "fd00::1"
    assert info_data(l, "IFLA_VXLAN_GROUP6") == "fd00::2"
    assert info_data(l, "IFLA_VXLAN_LINK") == plink(ns.ipr, "und0")["index"]
    assert info_data(l, "IFLA_VXLAN_PORT") == 8472  # the kernel's default port


@pytest.mark.parametrize("kwargs", [dict(vni=1 << 24), dict(vni=-1), dict(vni=True),
                                    dict(vni=1, port=0), dict(vni=1, port=70000),
                                    dict(vni=1, local="10.0.0.1", remote="fd00::1"),
                                    dict(vni=1, local="not-an-ip")])
def test_vxlan_bad_input(ns, kwargs):
    before = snapshot(ns.ipr)
    vni = kwargs.pop("vni")
    with pytest.raises(BadRequestError):
        ns.sock.vxlan_create("vxbad", vni, **kwargs)
    assert snapshot(ns.ipr) == before


@pytest.mark.parametrize("mode", ["bridge", "private", "vepa", "passthru"])
def test_macvlan_create(ns, mode):
    ns.sock.veth_create("par0", "par1")
    ns.sock.macvlan_create("mv0", "par0", mode=mode, mac="02:00:00:00:0b:01", mtu=1400, up=True)
    l = plink(ns.ipr, "mv0")
    assert kind_of(l) == "macvlan"
    assert info_data(l, "IFLA_MACVLAN_MODE") == mode
    assert l.get("IFLA_LINK") == plink(ns.ipr, "par0")["index"]
    if mode != "passthru":  # passthru takes over the parent's address
        assert l.get("IFLA_ADDRESS") == "02:00:00:00:0b:01"
    assert l.get("IFLA_MTU") == 1400
    assert l["flags"] & IFF_UP


def test_macvlan_created_in_another_namespace_with_alias(new_ns):
    host, cont = new_ns(), new_ns()
    host.sock.veth_create("par0", "par1")
    host.sock.macvlan_create("mvc0", "par0", netns=cont.netns, alias="ep-7", group=4)
    assert "mvc0" not in names(host.ipr)
    l = plink(cont.ipr, "mvc0")
    assert kind_of(l) == "macvlan"
    assert l.get("IFLA_IFALIAS") == "ep-7"
    assert l.get("IFLA_GROUP") == 4


def test_macvlan_bad_mode(ns):
    ns.sock.veth_create("par0", "par1")
    before = snapshot(ns.ipr)
    with pytest.raises(BadRequestError):
        ns.sock.macvlan_create("mv0", "par0", mode="weird")
    assert snapshot(ns.ipr) == before


# --- change ------------------------------------------------------------------------------

def test_link_set_up_down(ns):
    ns.sock.bridge_create("br0")
    ns.sock.link_set("br0", up=True)
    assert plink(ns.ipr, "br0")["flags"] & IFF_UP
    idx = plink(ns.ipr, "br0")["index"]
    ns.sock.link_set(idx, up=False)
    assert not plink(ns.ipr, "br0")["flags"] & IFF_UP


def test_link_set_master_and_nomaster(ns):
    ns.sock.bridge_create("br0")
    ns.sock.veth_create("v0", "v1")
    br = plink(ns.ipr, "br0")["index"]
    ns.sock.link_set("v0", master="br0")
    assert plink(ns.ipr, "v0").get("IFLA_MASTER") == br
    ns.sock.link_set("v0", nomaster=True)
    assert plink(ns.ipr, "v0").get("IFLA_MASTER") is None
    ns.sock.link_set("v1", master=br)
    assert plink(ns.ipr, "v1").get("IFLA_MASTER") == br
    with pytest.raises(BadRequestError):
        ns.sock.link_set("v1", master="br0", nomaster=True)
    assert plink(ns.ipr, "v1").get("IFLA_MASTER") == br


def test_link_set_mtu_mac_alias_group(ns):
    ns.sock.veth_create("v0", "v1")
    ns.sock.link_set("v0", mtu=1234, mac="02:aa:bb:cc:dd:ee", alias="hello", group=11)
    l = plink(ns.ipr, "v0")
    assert (l.get("IFLA_MTU"), l.get("IFLA_ADDRESS"), l.get("IFLA_IFALIAS"),
            l.get("IFLA_GROUP")) == (1234, "02:aa:bb:cc:dd:ee", "hello", 11)
    ns.sock.link_set("v0", alias="")
    assert plink(ns.ipr, "v0").get("IFLA_IFALIAS") is None
    ns.sock.link_set("v0", group=0)
    assert plink(ns.ipr, "v0").get("IFLA_GROUP") == 0
    assert plink(ns.ipr, "v1").get("IFLA_MTU") == 1500  # the peer is unchanged


def _port_state(name: str, ns_name: str) -> str:
    import json
    import subprocess
    out = subprocess.run(["ip", "-n", ns_name, "-j", "-d", "link", "show", "dev", name],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]["linkinfo"]["info_slave_data"]["state"]


def test_retire_port_disables_the_port_and_sets_the_group_without_putting_it_down(ns):
    ns.sock.bridge_create("br0", up=True)
    ns.sock.veth_create("v0", "v1", master="br0", up=True)
    ns.sock.link_set("v1", up=True)
    assert _port_state("v0", ns.name) == "forwarding"
    ns.sock.retire_port(plink(ns.ipr, "v0")["index"], 4242)
    l = plink(ns.ipr, "v0")
    assert l.get("IFLA_GROUP") == 4242 and l["flags"] & IFF_UP
    assert _port_state("v0", ns.name) == "disabled"
    assert plink(ns.ipr, "v1").get("IFLA_GROUP") == 0              # the peer is unchanged


def test_retire_port_of_a_device_on_no_bridge_only_sets_the_group(ns):
    ns.sock.veth_create("v0", "v1")
    ns.sock.retire_port("v0", 4243)
    assert plink(ns.ipr, "v0").get("IFLA_GROUP") == 4243


def test_retire_port_refuses_a_missing_device_and_group_0(ns):
    ns.sock.veth_create("v0", "v1")
    before = snapshot(ns.ipr)
    with pytest.raises(ObjectNotFoundError):
        ns.sock.retire_port(9999, 4244)
    with pytest.raises(KernelError):
        ns.sock.retire_port("v0", 0)
    assert snapshot(ns.ipr) == before


def test_link_set_rename_by_name_and_by_index(ns):
    ns.sock.bridge_create("old0")
    idx = plink(ns.ipr, "old0")["index"]
    ns.sock.link_set("old0", name="new0")
    assert ns.ipr.link_lookup(ifname="old0") == []
    assert plink(ns.ipr, "new0")["index"] == idx
    ns.sock.link_set(idx, name="newer0")
    assert plink(ns.ipr, "newer0")["index"] == idx


def test_link_set_move_to_another_namespace(new_ns):
    a, b = new_ns(), new_ns()
    a.sock.veth_create("mv0", "mv1")
    a.sock.link_set("mv1", netns=b.netns)
    assert "mv1" not in names(a.ipr)
    assert kind_of(plink(b.ipr, "mv1")) == "veth"
    b.sock.link_set("mv1", netns=a.netns, name="mv2")  # back, renamed on the way
    assert "mv2" in names(a.ipr) and "mv1" not in names(b.ipr)


# --- lookups -----------------------------------------------------------------------------

def test_link_get_matches_pyroute2(ns):
    ns.sock.bridge_create("br0", up=True)
    ns.sock.veth_create("v0", "v1", master="br0", alias="al", group=2, mtu=1490,
                        mac="02:00:00:00:00:31")
    l = plink(ns.ipr, "v0")
    for key in ("v0", l["index"]):
        info = ns.sock.link_get(key)
        assert info.index == l["index"]
        assert info.name == "v0"
        assert info.kind == "veth"
        assert info.mtu == l.get("IFLA_MTU") == 1490
        assert info.mac == l.get("IFLA_ADDRESS")
        assert info.flags == l["flags"]
        assert info.master == l.get("IFLA_MASTER") == plink(ns.ipr, "br0")["index"]
        assert info.link == l.get("IFLA_LINK")
        assert info.group == 2 and info.alias == "al"
    lo = ns.sock.link_get("lo")
    assert lo.index == 1 and lo.up and lo.kind == ""
    assert ns.sock.link_exists("v0") and not ns.sock.link_exists("nosuch0")


def test_links_dump_equals_pyroute2(ns):
    ns.sock.bridge_create("br0")
    for i in range(40):  # more than the first dump buffer holds (64 entries with peers)
        ns.sock.veth_create(f"d{i}", f"e{i}")
    mine = {(l.index, l.name) for l in ns.sock.links()}
    theirs = {(l["index"], l.get("IFLA_IFNAME")) for l in ns.ipr.get_links()}
    assert mine == theirs
    assert len(mine) == 82


# --- delete ------------------------------------------------------------------------------

def test_link_delete_by_name_and_index(ns):
    ns.sock.bridge_create("br0")
    ns.sock.veth_create("v0", "v1")
    ns.sock.link_delete("br0")
    ns.sock.link_delete(plink(ns.ipr, "v0")["index"])
    assert names(ns.ipr) == {"lo"}  # deleting one veth end removes the pair


def test_link_delete_group_removes_only_that_group(ns):
    for i in range(3):
        ns.sock.bridge_create(f"g{i}", group=77)
    ns.sock.bridge_create("other", group=78)
    ns.sock.bridge_create("plain")
    ns.sock.link_delete_group(77)
    assert names(ns.ipr) == {"lo", "other", "plain"}
    with pytest.raises(KernelError):
        ns.sock.link_delete_group(0)  # group 0 is every device's default: refused
    assert names(ns.ipr) == {"lo", "other", "plain"}


def test_link_delete_many(ns):
    for i in range(5):
        ns.sock.bridge_create(f"m{i}")
    idx = [plink(ns.ipr, f"m{i}")["index"] for i in range(4)]
    ns.sock.link_delete_many(idx)
    assert names(ns.ipr) == {"lo", "m4"}
    ns.sock.link_delete_many([])
    assert names(ns.ipr) == {"lo", "m4"}


def test_link_delete_many_reports_the_missing_one(ns):
    for i in range(3):
        ns.sock.bridge_create(f"m{i}")
    idx = [plink(ns.ipr, f"m{i}")["index"] for i in range(3)]
    with pytest.raises(ObjectNotFoundError) as ei:
        ns.sock.link_delete_many([idx[0], 9999, idx[2]])
    assert ei.value.obj == "9999"
    assert names(ns.ipr) == {"lo", "m1"}  # the others were still deleted


# --- errors ------------------------------------------------------------------------------

def test_create_twice_is_eexist_and_changes_nothing(ns):
    ns.sock.bridge_create("br0", mtu=1400)
    before = snapshot(ns.ipr)
    for make in (lambda: ns.sock.bridge_create("br0", mtu=1300, alias="x"),
                 lambda: ns.sock.veth_create("br0", "fresh0"),
                 lambda: ns.sock.veth_create("fresh0", "br0")):
        with pytest.raises(ObjectExistsError) as ei:
            make()
        e = ei.value
        assert e.errno == errno.EEXIST
        assert e.op == "link create"
        if e.kernel_msg:
            assert e.kernel_msg in str(e)
        assert snapshot(ns.ipr) == before


def test_missing_device_is_enodev(ns):
    before = snapshot(ns.ipr)
    for call in (lambda: ns.sock.link_get("nosuch0"), lambda: ns.sock.link_get(4242),
                 lambda: ns.sock.link_delete("nosuch0"), lambda: ns.sock.link_delete(4242),
                 lambda: ns.sock.link_set("nosuch0", up=True),
                 lambda: ns.sock.veth_create("v0", "v1", master="nosuch0")):
        with pytest.raises(ObjectNotFoundError) as ei:
            call()
        assert ei.value.errno == errno.ENODEV
        assert snapshot(ns.ipr) == before


BAD_NAMES = ["x" * 16, "a b", "a/b", "", "a:b", ".", "..", "tab\t", "nul\0", 5, None]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_names_rejected_before_any_syscall(ns, bad):
    before = snapshot(ns.ipr)
    calls = [lambda s: s.bridge_create(bad), lambda s: s.veth_create(bad, "okpeer"),
             lambda s: s.veth_create("okname", bad), lambda s: s.vxlan_create(bad, 5)]
    for call in calls:
        with pytest.raises(InvalidNameError):
            call(ns.sock)
    # With a closed socket any system call would fail differently: the name check is first.
    closed = NetlinkSocket(ns.netns)
    closed.close()
    for call in calls:
        with pytest.raises(InvalidNameError):
            call(closed)
    with pytest.raises(InvalidNameError):
        closed.link_get(bad) if isinstance(bad, str) else closed.link_get(str(bad) * 20)
    assert snapshot(ns.ipr) == before


def test_rename_to_bad_name(ns):
    ns.sock.bridge_create("br0")
    before = snapshot(ns.ipr)
    for bad in ("x" * 16, "a b", "a/b", ""):
        with pytest.raises(InvalidNameError):
            ns.sock.link_set("br0", name=bad)
    assert snapshot(ns.ipr) == before


BAD_MACS = ["zz:00:00:00:00:01", "01:00:5e:00:00:01", "03:00:00:00:00:00",
            "00:00:00:00:00:00", "02:00:00:00:00", "02-00-00-00-00-01", "0200.0000.0001", 5]


@pytest.mark.parametrize("bad", BAD_MACS)
def test_bad_mac_is_bad_request(ns, bad):
    ns.sock.bridge_create("br0")
    before = snapshot(ns.ipr)
    with pytest.raises(BadRequestError):
        ns.sock.bridge_create("br1", mac=bad)
    with pytest.raises(BadRequestError):
        ns.sock.veth_create("v0", "v1", peer_mac=bad)
    with pytest.raises(BadRequestError):
        ns.sock.link_set("br0", mac=bad)
    assert snapshot(ns.ipr) == before


@pytest.mark.parametrize("bad", [0, 67, 65536, 70000, -1, True, 1500.0, "1500"])
def test_bad_mtu_is_bad_request(ns, bad):
    ns.sock.bridge_create("br0")
    before = snapshot(ns.ipr)
    with pytest.raises(BadRequestError):
        ns.sock.bridge_create("br1", mtu=bad)
    with pytest.raises(BadRequestError):
        ns.sock.link_set("br0", mtu=bad)
    assert snapshot(ns.ipr) == before


@pytest.mark.parametrize("kwargs", [dict(group=-1), dict(group=1 << 32), dict(group=True),
                                    dict(alias="a" * 256), dict(alias="a\0b"), dict(alias=3)])
def test_bad_group_or_alias_is_bad_request(ns, kwargs):
    before = snapshot(ns.ipr)
    with pytest.raises(BadRequestError):
        ns.sock.bridge_create("br1", **kwargs)
    assert snapshot(ns.ipr) == before


def test_kernel_refusal_carries_the_extended_ack_message(ns):
    ns.sock.bridge_create("br0")
    ns.sock.bridge_create("br1")
    before = snapshot(ns.ipr)
    with pytest.raises(KernelError) as ei:
        ns.sock.link_set("br1", master="br0")  # a bridge cannot be a port of a bridge
    e = ei.value
    assert e.errno == errno.ELOOP
    assert e.op == "link set" and e.obj == "br1"
    assert "bridge" in e.kernel_msg.lower()
    assert e.kernel_msg in str(e)
    assert snapshot(ns.ipr) == before


def test_bad_index_is_bad_request(ns):
    for bad in (0, -3):
        with pytest.raises(BadRequestError):
            ns.sock.link_get(bad)
        with pytest.raises(BadRequestError):
            ns.sock.link_delete(bad)


def test_closed_socket_refuses_work(ns):
    s = NetlinkSocket(ns.netns)
    s.close()
    s.close()  # idempotent
    assert s.closed
    with pytest.raises(ValueError):
        s.link_get("lo")
