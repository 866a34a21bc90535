"""Addresses and routes through NetlinkSocket, read back with pyroute2."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import time

import pytest

from pynetlib.errors import (BadRequestError, KernelError, ObjectExistsError,
                             ObjectNotFoundError)
from pynetlib.kernel import Netns

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.environ.get("PYNETLIB_TEST_SANDBOX") != "1",
                       reason="needs root; the run isolates itself with unshare"),
]

IFA_F_TENTATIVE = 0x40
RT_SCOPE_LINK = 253


@pytest.fixture
def env(make_netns, ipr_in):
    """A namespace with a veth pair v0/v1, both up (so v0 has carrier)."""
    name = make_netns("a")
    ns = Netns.named(name)
    s = ns.socket()
    s.veth_create("v0", "v1", up=True)
    s.link_set("v1", up=True)
    ipr = ipr_in(name)
    yield s, ipr, ipr.link_lookup(ifname="v0")[0]
    ns.close()


def addrs_of(ipr, index: int, family: int) -> dict[str, dict]:
    out = {}
    for a in ipr.get_addr(family=family, index=index):
        out[f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}"] = a
    return out


def state(ipr):
    """Addresses and routes, leaving out what the kernel adds by itself and at its own
    pace (IPv6 link-local addresses, their fe80::/64 and multicast routes)."""
    addrs = sorted((a["index"], a.get("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr()
                   if not str(a.get("IFA_ADDRESS", "")).startswith("fe80:"))
    routes = sorted(repr((r["family"], r.get("RTA_DST"), r["dst_len"], r.get("RTA_GATEWAY"),
                          r.get("RTA_OIF"), r.get("RTA_TABLE"))) for r in ipr.get_routes()
                    if not str(r.get("RTA_DST", "")).startswith(("fe80:", "ff00:")))
    return addrs, routes


def local_route_added(ipr, addr: str, timeout: float = 5.0) -> bool:
    """Wait for the local /128 route of IPv6 address ``addr``: the kernel adds it from
    its addrconf work, after the address add has returned (even with NODAD)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r.get("RTA_DST") == addr and r["dst_len"] == 128
               for r in ipr.get_routes(family=socket.AF_INET6, table=255)):
            return True
        time.sleep(0.01)
    return False


# --- addresses ---------------------------------------------------------------------------

def test_ipv4_address_add_and_delete(env):
    s, ipr, v0 = env
    s.addr_add("v0", "10.1.2.3/16")
    got = addrs_of(ipr, v0, socket.AF_INET)
    assert set(got) == {"10.1.2.3/16"}
    a = got["10.1.2.3/16"]
    assert a.get("IFA_LOCAL") == "10.1.2.3"
    assert a.get("IFA_BROADCAST") == "10.1.255.255"
    # the kernel added the prefix route for it
    assert any(r.get("RTA_DST") == "10.1.0.0" and r["dst_len"] == 16
               for r in ipr.get_routes(family=socket.AF_INET, oif=v0))
    s.addr_delete(v0, ipaddress.ip_interface("10.1.2.3/16"))
    assert addrs_of(ipr, v0, socket.AF_INET) == {}


def test_ipv6_address_nodad_is_not_tentative(env):
    s, ipr, v0 = env
    s.addr_add("v0", "fd00:1::5/64", nodad=True)
    got = addrs_of(ipr, v0, socket.AF_INET6)
    assert "fd00:1::5/64" in got
    flags = got["fd00:1::5/64"].get("IFA_FLAGS") or got["fd00:1::5/64"]["flags"]
    assert not flags & IFA_F_TENTATIVE
    s.addr_delete("v0", "fd00:1::5/64")
    assert "fd00:1::5/64" not in addrs_of(ipr, v0, socket.AF_INET6)


def test_addrs_dump_matches_pyroute2(env):
    s, ipr, v0 = env
    s.addr_add("v0", "10.1.2.3/16")
    s.addr_add("v0", "10.9.0.1/24")
    s.addr_add("v1", "192.168.7.1/30")
    s.addr_add("v0", "fd00:1::5/64", nodad=True)
    mine = {str(i) for i in s.addrs("v0")}
    theirs = {f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=v0)}
    assert mine == theirs and {"10.1.2.3/16", "10.9.0.1/24", "fd00:1::5/64"} <= mine
    assert {str(i) for i in s.addrs("v0", version=4)} == {"10.1.2.3/16", "10.9.0.1/24"}
    every = {str(i) for i in s.addrs()}
    assert "192.168.7.1/30" in every and "127.0.0.1/8" in every
    with pytest.raises(BadRequestError):
        s.addrs(version=5)


def test_duplicate_address_is_eexist(env):
    s, ipr, v0 = env
    s.addr_add("v0", "10.1.2.3/16")
    s.addr_add("v0", "fd00:1::5/64", nodad=True)
    assert local_route_added(ipr, "fd00:1::5")
    before = state(ipr)
    for addr in ("10.1.2.3/16", "fd00:1::5/64"):
        with pytest.raises(ObjectExistsError) as ei:
            s.addr_add("v0", addr, nodad=True)
        assert ei.value.errno == errno.EEXIST
        assert ei.value.op == "address add"
    assert state(ipr) == before


def test_delete_missing_address_is_not_found(env):
    s, ipr, v0 = env
    before = state(ipr)
    for addr in ("10.9.9.9/24", "fd00:9::9/64"):
        with pytest.raises(ObjectNotFoundError) as ei:
            s.addr_delete("v0", addr)
        assert isinstance(ei.value, KernelError)
        assert ei.value.errno == errno.EADDRNOTAVAIL
    assert ei.value.kernel_msg == "" or ei.value.kernel_msg in str(ei.value)
    assert state(ipr) == before


def test_address_on_missing_device(env):
    s, ipr, _ = env
    before = state(ipr)
    with pytest.raises(ObjectNotFoundError):
        s.addr_add("nosuch0", "10.1.2.3/16")
    with pytest.raises(ObjectNotFoundError):
        s.addr_add(9999, "10.1.2.3/16")
    assert state(ipr) == before


@pytest.mark.parametrize("bad", ["10.1.2.3", "10.1.2.3/33", "fd00::1/129", "banana/8", 5, None,
                                 "10.1.2.3/16/1"])
def test_bad_address_is_bad_request(env, bad):
    s, ipr, _ = env
    before = state(ipr)
    with pytest.raises(BadRequestError):
        s.addr_add("v0", bad)
    with pytest.raises(BadRequestError):
        s.addr_delete("v0", bad)
    assert state(ipr) == before


# --- routes ------------------------------------------------------------------------------

def default_routes(ipr, family):
    return [r for r in ipr.get_routes(family=family, table=254) if r["dst_len"] == 0]


def test_default_route_via_gateway_v4(env):
    s, ipr, v0 = env
    s.addr_add("v0", "10.1.0.2/16")
    s.route_add(gateway="10.1.0.1")
    (r,) = default_routes(ipr, socket.AF_INET)
    assert r.get("RTA_GATEWAY") == "10.1.0.1"
    assert r.get("RTA_OIF") == v0
    (got,) = ipr.route("get", dst="8.8.8.8")
    assert got.get("RTA_GATEWAY") == "10.1.0.1" and got.get("RTA_OIF") == v0
    s.route_delete(gateway="10.1.0.1")
    assert default_routes(ipr, socket.AF_INET) == []


def test_default_route_via_gateway_v6(env):
    s, ipr, v0 = env
    s.addr_add("v0", "fd00:1::2/64", nodad=True)
    s.route_add(gateway="fd00:1::1", link="v0")
    (r,) = default_routes(ipr, socket.AF_INET6)
    assert r.get("RTA_GATEWAY") == "fd00:1::1"
    assert r.get("RTA_OIF") == v0
    (got,) = ipr.route("get", dst="2001:db8::1")
    assert got.get("RTA_GATEWAY") == "fd00:1::1"
    s.route_delete(gateway="fd00:1::1", link="v0")
    assert default_routes(ipr, socket.AF_INET6) == []


def test_onlink_route_with_table_and_metric(env):
    s, ipr, v0 = env
    s.route_add(dst="192.168.50.0/24", link="v0")
    (r,) = [r for r in ipr.get_routes(family=socket.AF_INET, dst_len=24)
            if r.get("RTA_DST") == "192.168.50.0"]
    assert r["scope"] == RT_SCOPE_LINK
    assert r.get("RTA_OIF") == v0 and r.get("RTA_GATEWAY") is None
    (got,) = ipr.route("get", dst="192.168.50.7")
    assert got.get("RTA_OIF") == v0

    s.route_add(dst="172.30.0.0/16", link=v0, table=100, metric=50)
    (r,) = [r for r in ipr.get_routes(family=socket.AF_INET, table=100)
            if r.get("RTA_DST") == "172.30.0.0"]
    assert r.get("RTA_TABLE") == 100 and r.get("RTA_PRIORITY") == 50
    s.route_delete(dst="172.30.0.0/16", link=v0, table=100, metric=50)
    assert [r for r in ipr.get_routes(family=socket.AF_INET, table=100)
            if r.get("RTA_DST") == "172.30.0.0"] == []
    s.route_delete(dst="192.168.50.0/24", link="v0")
    assert not [r for r in ipr.get_routes(family=socket.AF_INET)
                if r.get("RTA_DST") == "192.168.50.0"]


def test_duplicate_route_is_eexist_and_missing_route_is_not_found(env):
    s, ipr, _ = env
    s.addr_add("v0", "10.1.0.2/16")
    s.route_add(gateway="10.1.0.1")
    before = state(ipr)
    with pytest.raises(ObjectExistsError):
        s.route_add(gateway="10.1.0.1")
    with pytest.raises(ObjectNotFoundError):
        s.route_delete(dst="10.200.0.0/16", gateway="10.1.0.1")
    assert state(ipr) == before


def test_unreachable_gateway_is_a_kernel_error(env):
    s, ipr, _ = env
    before = state(ipr)
    with pytest.raises(KernelError) as ei:
        s.route_add(gateway="10.77.0.1")  # no address of v0 covers it
    assert ei.value.errno == errno.ENETUNREACH
    assert state(ipr) == before


@pytest.mark.parametrize("kwargs", [
    dict(dst="10.0.0.0/8", gateway="fd00::1"),        # version mismatch
    dict(dst="fd00::/64", gateway="10.0.0.1"),
    dict(),                                           # no dst and no gateway
    dict(link="v0"),
    dict(dst="10.0.0.0/8"),                           # on-link without a device
    dict(dst="10.0.0.1/8", link="v0"),                # host bits set
    dict(dst="nonsense", link="v0"),
    dict(gateway="10.0.0.300"),
    dict(gateway="10.1.0.1", table=-1),
    dict(gateway="10.1.0.1", metric=1 << 32),
])
def test_bad_route_is_bad_request(env, kwargs):
    s, ipr, _ = env
    s.addr_add("v0", "10.1.0.2/16")
    before = state(ipr)
    with pytest.raises(BadRequestError):
        s.route_add(**kwargs)
    with pytest.raises(BadRequestError):
        s.route_delete(**kwargs)
    assert state(ipr) == before
