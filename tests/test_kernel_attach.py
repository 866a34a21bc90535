"""attach_veth: a container plumbed onto a bridge, checked with pyroute2 and real pings."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass

import pytest

from pynetlib.errors import (BadRequestError, InvalidNameError, KernelError,
                             ObjectExistsError)
from pynetlib.kernel import NetlinkSocket, Netns, attach_veth, attach_veth_pair

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.environ.get("PYNETLIB_TEST_SANDBOX") != "1",
                       reason="needs root; the run isolates itself with unshare"),
]

IFF_UP = 0x1
IFA_F_TENTATIVE = 0x40


@dataclass
class Host:
    name: str
    netns: Netns
    sock: NetlinkSocket
    ipr: object
    bridge_index: int


@pytest.fixture
def host(host_ns, ipr_in):
    """A host namespace with bridge br0 (up, 172.20.0.1/16 and fd20::1/64)."""
    name, path = host_ns
    ns = Netns.open(path)
    s = ns.socket()
    s.bridge_create("br0", up=True)
    s.addr_add("br0", "172.20.0.1/16")
    s.addr_add("br0", "fd20::1/64", nodad=True)
    ipr = ipr_in(name)
    yield Host(name, ns, s, ipr, ipr.link_lookup(ifname="br0")[0])
    ns.close()


@pytest.fixture
def container(make_netns):
    opened: list[Netns] = []

    def make() -> tuple[str, Netns]:
        name = make_netns("c")
        ns = Netns.named(name)
        opened.append(ns)
        return name, ns

    yield make
    for ns in opened:
        ns.close()


def plink(ipr, name):
    (l,) = ipr.link("get", ifname=name)
    return l


def link_names(ipr) -> set[str]:
    return {l.get("IFLA_IFNAME") for l in ipr.get_links()}


def attach(host: Host, cns: Netns, host_name: str, n: int, **kw):
    args = dict(bridge="br0", mtu=1450, mac=f"02:42:ac:14:00:{n:02x}",
                address=f"172.20.0.{n}/16", gateway="172.20.0.1",
                address6=f"fd20::{n:x}/64", gateway6="fd20::1", alias=f"ep-{n}", group=42)
    args.update(kw)
    return attach_veth(host.sock, cns, host_name, "eth0", **args)


def test_attach_plumbs_the_container(host, container, ipr_in):
    cname, cns = container()
    subprocess.run(["ip", "-n", cname, "link", "set", "lo", "down"], check=True)
    idx = attach(host, cns, "vethA", 2)
    c = ipr_in(cname)

    eth0 = plink(c, "eth0")
    assert eth0["index"] == idx
    assert eth0.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) == "veth"
    assert eth0.get("IFLA_ADDRESS") == "02:42:ac:14:00:02"
    assert eth0.get("IFLA_MTU") == 1450
    assert eth0["flags"] & IFF_UP
    assert plink(c, "lo")["flags"] & IFF_UP
    assert link_names(c) == {"lo", "eth0"}

    v4 = [(a.get("IFA_ADDRESS"), a["prefixlen"]) for a in c.get_addr(family=socket.AF_INET,
                                                                       index=idx)]
    assert v4 == [("172.20.0.2", 16)]
    v6 = {a.get("IFA_ADDRESS"): a for a in c.get_addr(family=socket.AF_INET6, index=idx)}
    assert "fd20::2" in v6 and v6["fd20::2"]["prefixlen"] == 64
    assert not (v6["fd20::2"].get("IFA_FLAGS") or v6["fd20::2"]["flags"]) & IFA_F_TENTATIVE

    (d4,) = [r for r in c.get_routes(family=socket.AF_INET, table=254) if r["dst_len"] == 0]
    assert d4.get("RTA_GATEWAY") == "172.20.0.1" and d4.get("RTA_OIF") == idx
    (d6,) = [r for r in c.get_routes(family=socket.AF_INET6, table=254) if r["dst_len"] == 0]
    assert d6.get("RTA_GATEWAY") == "fd20::1" and d6.get("RTA_OIF") == idx

    h = plink(host.ipr, "vethA")
    assert h.get("IFLA_MASTER") == host.bridge_index
    assert h["flags"] & IFF_UP
    assert h.get("IFLA_IFALIAS") == "ep-2"
    assert h.get("IFLA_GROUP") == 42
    assert h.get("IFLA_MTU") == 1450
    assert "eth0" not in link_names(host.ipr)


def test_attach_minimal_without_addresses(host, container, ipr_in):
    cname, cns = container()
    idx, hidx = attach_veth_pair(host.sock, cns, "vethM", "eth1")
    c = ipr_in(cname)
    l = plink(c, "eth1")
    assert l["index"] == idx and l["flags"] & IFF_UP
    assert plink(host.ipr, "vethM")["index"] == hidx
    assert list(c.get_addr(family=socket.AF_INET, index=idx)) == []
    h = plink(host.ipr, "vethM")
    assert h.get("IFLA_MASTER") is None and h["flags"] & IFF_UP


def test_two_containers_ping_each_other(host, container):
    if shutil.which("ping") is None:
        pytest.skip("ping is not installed (CI installs iputils-ping)")
    (n1, c1), (n2, c2) = container(), container()
    attach(host, c1, "vethP1", 11)
    attach(host, c2, "vethP2", 12)

    def ping(ns, *args):
        r = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c1", "-W2", *args],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"ping {args} from {ns} failed: {r.stdout}{r.stderr}"

    ping(n1, "172.20.0.12")
    ping(n2, "172.20.0.11")
    ping(n1, "172.20.0.1")            # the bridge's address in the host namespace
    ping(n1, "-6", "fd20::c")
    ping(n2, "-6", "fd20::1")


def test_attach_rollback_when_a_pipeline_step_fails(host, container, ipr_in):
    cname, cns = container()
    # The container already has a default route, so attach's default route add is EEXIST.
    subprocess.run(["ip", "-n", cname, "link", "add", "pre0", "type", "veth", "peer", "name",
                    "pre1"], check=True)
    for dev in ("pre0", "pre1"):
        subprocess.run(["ip", "-n", cname, "link", "set", dev, "up"], check=True)
    subprocess.run(["ip", "-n", cname, "addr", "add", "10.5.0.2/16", "dev", "pre0"], check=True)
    subprocess.run(["ip", "-n", cname, "route", "add", "default", "via", "10.5.0.1"], check=True)
    c = ipr_in(cname)
    c_before, h_before = link_names(c), link_names(host.ipr)

    with pytest.raises(ObjectExistsError) as ei:
        attach(host, cns, "vethR", 3)
    assert ei.value.errno == errno.EEXIST
    assert "attach" in ei.value.op and "route" in ei.value.op
    assert ei.value.obj == "vethR"
    assert link_names(c) == c_before           # no eth0 left in the container
    assert link_names(host.ipr) == h_before     # no vethR left on the host
    (d4,) = [r for r in c.get_routes(family=socket.AF_INET, table=254) if r["dst_len"] == 0]
    assert d4.get("RTA_GATEWAY") == "10.5.0.1"  # the existing route is untouched


def test_attach_rollback_on_unreachable_gateway(host, container, ipr_in):
    cname, cns = container()
    c = ipr_in(cname)
    c_before, h_before = link_names(c), link_names(host.ipr)
    with pytest.raises(KernelError) as ei:
        attach(host, cns, "vethU", 4, gateway="10.99.0.1")  # outside 172.20.0.0/16
    assert ei.value.errno == errno.ENETUNREACH
    assert "attach" in ei.value.op
    assert link_names(c) == c_before
    assert link_names(host.ipr) == h_before
    # and the same names can be used again at once
    attach(host, cns, "vethU", 4)
    assert "eth0" in link_names(c) and "vethU" in link_names(host.ipr)


def test_attach_with_existing_host_name(host, container, ipr_in):
    cname, cns = container()
    host.sock.bridge_create("vethX")
    c = ipr_in(cname)
    c_before, h_before = link_names(c), link_names(host.ipr)
    with pytest.raises(ObjectExistsError) as ei:
        attach(host, cns, "vethX", 5)
    assert ei.value.errno == errno.EEXIST
    assert "veth create" in ei.value.op
    assert link_names(c) == c_before
    assert link_names(host.ipr) == h_before
    assert plink(host.ipr, "vethX").get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) == "bridge"


def test_attach_with_existing_container_name(host, container, ipr_in):
    cname, cns = container()
    subprocess.run(["ip", "-n", cname, "link", "add", "eth0", "type", "bridge"], check=True)
    c = ipr_in(cname)
    c_before, h_before = link_names(c), link_names(host.ipr)
    with pytest.raises(ObjectExistsError):
        attach(host, cns, "vethY", 6)
    assert link_names(c) == c_before
    assert link_names(host.ipr) == h_before


@pytest.mark.parametrize("kw,exc", [
    (dict(host_name="x" * 16), InvalidNameError),
    (dict(host_name="a b"), InvalidNameError),
    (dict(cont_name="a/b"), InvalidNameError),
    (dict(mac="zz:00:00:00:00:01"), BadRequestError),
    (dict(mac="01:00:5e:00:00:01"), BadRequestError),
    (dict(mtu=70000), BadRequestError),
    (dict(address="172.20.0.7"), BadRequestError),
    (dict(address="fd20::7/64"), BadRequestError),
    (dict(gateway="fd20::1"), BadRequestError),
    (dict(address=None, gateway="172.20.0.1"), BadRequestError),
    (dict(address6="172.20.0.7/16"), BadRequestError),
    (dict(address6=None, gateway6="fd20::1"), BadRequestError),
    (dict(group=-1), BadRequestError),
])
def test_attach_bad_input_changes_nothing(host, container, ipr_in, kw, exc):
    cname, cns = container()
    c = ipr_in(cname)
    c_before, h_before = link_names(c), link_names(host.ipr)
    host_name = kw.pop("host_name", "vethB")
    cont_name = kw.pop("cont_name", "eth0")
    args = dict(bridge="br0", address="172.20.0.7/16", gateway="172.20.0.1",
                address6="fd20::7/64", gateway6="fd20::1")
    args.update(kw)
    with pytest.raises(exc):
        attach_veth(host.sock, cns, host_name, cont_name, **args)
    assert link_names(c) == c_before
    assert link_names(host.ipr) == h_before


def test_attach_to_missing_bridge(host, container, ipr_in):
    cname, cns = container()
    h_before = link_names(host.ipr)
    with pytest.raises(KernelError) as ei:
        attach_veth(host.sock, cns, "vethN", bridge="nosuchbr")
    assert ei.value.errno == errno.ENODEV
    assert link_names(host.ipr) == h_before
    assert "eth0" not in link_names(ipr_in(cname))
