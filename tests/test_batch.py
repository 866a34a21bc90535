"""Batch attach and detach (Controller.attach_many / detach_many), checked in the kernel."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

import pynetlib
from pynetlib import errors as E
from pynetlib import failpoints
from pynetlib import netlabel

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]


def ip_j(*args, ns=None):
    cmd = ["ip"] + (["-n", ns] if ns else []) + ["-j"] + list(args)
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                      or "[]")


def v4(ns, dev):
    return sorted(a["local"] + "/" + str(a["prefixlen"]) for l in ip_j("addr", "show", dev, ns=ns)
                  for a in l["addr_info"] if a["family"] == "inet")


def pnl_links():
    return sorted(l["ifname"] for l in ip_j("link") if l["ifname"].startswith("pnl"))


@pytest.fixture
def nets(ctrl):
    a = ctrl.new_network("bridge", "ba", {netlabel.GENERIC_DATA: {"AddressIPv4": "10.161.0.1/24"}})
    b = ctrl.new_network("bridge", "bb", {netlabel.GENERIC_DATA: {"AddressIPv4": "10.162.0.1/24"}})
    yield a, b
    for n in (a, b):
        for ep in n.endpoints():
            if ep.joined_container:
                ep.leave(ep.joined_container)
            ep.delete()
        n.delete()


def test_attach_many_then_detach_many(ctrl, nets):
    a, b = nets
    specs = [pynetlib.AttachSpec(a, "w1", "pod1", join={"hostname": "w1"}),
             pynetlib.AttachSpec(b, "w1b", "pod1"),               # second interface
             pynetlib.AttachSpec(a, "w2", "pod2", ipv4="10.161.0.50"),
             pynetlib.AttachSpec(a, "w3", "pod3")]
    eps = ctrl.attach_many(specs)
    assert [e.name for e in eps] == ["w1", "w1b", "w2", "w3"]
    k1 = eps[0].info().sandbox_key
    assert eps[1].info().sandbox_key == k1
    ns1 = os.path.basename(k1)
    assert v4(ns1, "eth0") == ["10.161.0.2/24"] and v4(ns1, "eth1") == ["10.162.0.2/24"]
    ns2 = os.path.basename(eps[2].info().sandbox_key)
    assert v4(ns2, "eth0") == ["10.161.0.50/24"]
    assert [r["gateway"] for r in ip_j("route", "show", "default", ns=ns2)] == ["10.161.0.1"]
    r = subprocess.run(["ip", "netns", "exec", ns2, "ping", "-c1", "-W2", "10.161.0.2"],
                       capture_output=True)
    assert r.returncode == 0
    assert open(ctrl.sandbox_by_container("pod1").hosts_path).read().startswith(
        "10.161.0.2\tw1\n")
    assert ctrl.audit() == []
    ctrl.detach_many(eps)
    ctrl.flush_teardown()
    assert a.endpoints() == [] and b.endpoints() == [] and ctrl.sandboxes() == []
    assert not os.path.exists(k1)
    assert ctrl.audit() == []


def test_attach_many_is_all_or_nothing(ctrl, nets):
    a, _ = nets
    keep = a.create_endpoint("taken")
    before = (sorted(os.listdir("/run/netns")), pnl_links())
    specs = [pynetlib.AttachSpec(a, "x1", "px1"), pynetlib.AttachSpec(a, "x2", "px2"),
             pynetlib.AttachSpec(a, "taken", "px3")]
    with pytest.raises(E.EndpointNameError):
        ctrl.attach_many(specs)
    assert sorted(e.name for e in a.endpoints()) == ["taken"]
    # a failure in the kernel phase, at the third join: the first two are undone too
    specs = [pynetlib.AttachSpec(a, "y1", "py1"), pynetlib.AttachSpec(a, "y2", "py1"),
             pynetlib.AttachSpec(a, "y3", "py3")]
    failpoints.arm("attach.plumb=2+errno:EBUSY*1")
    try:
        with pytest.raises(E.KernelError):
            ctrl.attach_many(specs)
    finally:
        failpoints.disarm_all()
    assert sorted(e.name for e in a.endpoints()) == ["taken"]
    assert ctrl.sandboxes() == []
    assert sorted(os.listdir("/run/netns")) == before[0]   # namespaces: gone at once
    ctrl.flush_teardown()                                  # devices: the reaper's batch
    assert (sorted(os.listdir("/run/netns")), pnl_links()) == before
    assert ctrl.audit() == []        # includes: no address allocated without a record


def test_bad_batches_change_nothing(ctrl, nets):
    a, _ = nets
    with pytest.raises(E.BadRequestError):
        ctrl.attach_many([("not", "a", "spec")])
    with pytest.raises(E.InvalidContainerIDError):
        ctrl.attach_many([pynetlib.AttachSpec(a, "ok", "c1"), pynetlib.AttachSpec(a, "ok2", "")])
    with pytest.raises(E.EndpointNameError):
        ctrl.attach_many([pynetlib.AttachSpec(a, "dup", "c1"), pynetlib.AttachSpec(a, "dup", "c2")])
    with pytest.raises(E.BadRequestError):
        ctrl.attach_many([pynetlib.AttachSpec(a, "ok", "c1", join={"bogus": 1})])
    assert a.endpoints() == [] and ctrl.sandboxes() == []
    assert ctrl.attach_many([]) == []
    ep = a.create_endpoint("once")
    with pytest.raises(E.BadRequestError):
        ctrl.detach_many([ep, ep])
    ep.delete()
