"""The driver API's contract, enforced by the controller for any registered driver."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess

import pytest

import pynetlib
from pynetlib import errors as E
from pynetlib.driverapi import Driver

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]


class Recording(Driver):
    """A third-party driver: records what it is given; behaviour set per test."""

    type = "rec"

    def __init__(self):
        self.calls = []
        self.on_create = None
        self.on_join = None

    def config(self, options):
        self.calls.append(("config", options))

    def create_network(self, nid, options):
        self.calls.append(("create_network", nid))

    def delete_network(self, nid):
        self.calls.append(("delete_network", nid))

    def create_endpoint(self, nid, eid, ep_info, options):
        self.calls.append(("create_endpoint", nid, eid, list(ep_info.interfaces())))
        if self.on_create:
            self.on_create(ep_info)

    def delete_endpoint(self, nid, eid):
        self.calls.append(("delete_endpoint", nid, eid))

    def endpoint_oper_info(self, nid, eid):
        return {"x": 1}

    def join(self, nid, eid, sbox_key, jinfo, options):
        self.calls.append(("join", nid, eid, sbox_key))
        if self.on_join:
            self.on_join(jinfo)

    def leave(self, nid, eid):
        self.calls.append(("leave", nid, eid))


@pytest.fixture
def ctrl(tmp_path):
    c = pynetlib.Controller(str(tmp_path / "s"), host_routes=lambda: [])
    yield c
    c.close()


def test_driver_sees_ids_only_and_allocates_on_empty_list(ctrl):
    d = Recording()
    ctrl.register_driver("rec", d)
    d.on_create = lambda info: info.add_interface(
        1, "02:00:00:00:00:01", ipaddress.ip_interface("10.1.0.5/24"), None)
    net = ctrl.new_network("rec", "n")
    ep = net.create_endpoint("e")
    assert d.calls[0] == ("create_network", net.id)
    assert d.calls[1] == ("create_endpoint", net.id, ep.id, [])
    assert ep.info().interfaces[0].address == ipaddress.ip_interface("10.1.0.5/24")
    assert ep.driver_info() == {"x": 1}
    ep.delete()
    net.delete()
    assert d.calls[-2:] == [("delete_endpoint", net.id, ep.id), ("delete_network", net.id)]


def test_add_interface_on_assigned_list_raises(ctrl):
    d = Recording()
    ctrl.register_driver("rec", d)
    seen = []

    def greedy(info):
        seen.append([i.address() for i in info.interfaces()])
        info.add_interface(2, "02:00:00:00:00:02", ipaddress.ip_interface("10.1.0.9/24"), None)

    d.on_create = greedy
    net = ctrl.new_network("rec", "n")
    with pytest.raises(E.ForbiddenError):
        net.create_endpoint("static", ipv4="10.1.0.7/24")
    assert seen == [[ipaddress.ip_interface("10.1.0.7/24")]]
    assert net.endpoints() == []            # nothing stored after the driver failed


def test_bad_add_interface_arguments(ctrl):
    d = Recording()
    ctrl.register_driver("rec", d)
    errs = []

    def bad(info):
        for args in [(-1, "", None, None), (1, "nope", None, None),
                     (1, "", "10.0.0.1/24", None),
                     (1, "", None, ipaddress.ip_interface("10.0.0.1/24"))]:
            try:
                info.add_interface(*args)
            except E.BadRequestError as e:
                errs.append(e)
        info.add_interface(1, "", None, None)
        try:
            info.add_interface(1, "", None, None)
        except E.ForbiddenError as e:
            errs.append(e)

    d.on_create = bad
    ctrl.new_network("rec", "n").create_endpoint("e")
    assert len(errs) == 5


def test_driver_handing_over_a_host_device_is_moved_in(ctrl):
    """Like a remote plugin or macvlan: the driver names a host device at join and the
    controller moves it into the sandbox, addresses it, routes it, and moves it back."""
    d = Recording()
    ctrl.register_driver("rec", d)
    d.on_create = lambda info: info.add_interface(
        1, "02:00:00:00:00:0a", ipaddress.ip_interface("10.2.0.10/24"), None)

    def hand_over(jinfo):
        subprocess.run(["ip", "link", "add", "pnlt-src", "type", "veth", "peer", "name",
                        "pnlt-peer"], check=True)
        jinfo.interface_names()[0].set_names("pnlt-src", "eth0")
        jinfo.set_gateway(ipaddress.ip_address("10.2.0.1"))

    d.on_join = hand_over
    ep = ctrl.new_network("rec", "n").create_endpoint("e")
    key = ep.join("moved1").sandbox_key
    ns = os.path.basename(key)
    out = json.loads(subprocess.run(["ip", "-n", ns, "-j", "addr", "show", "eth0"],
                                    capture_output=True, text=True, check=True).stdout)[0]
    assert out["address"] == "02:00:00:00:00:0a" and "UP" in out["flags"]
    assert {a["local"] for a in out["addr_info"]} >= {"10.2.0.10"}
    routes = json.loads(subprocess.run(["ip", "-n", ns, "-j", "route", "show", "default"],
                                       capture_output=True, text=True, check=True).stdout)
    assert routes[0]["gateway"] == "10.2.0.1"
    host = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True,
                                     check=True).stdout)
    assert "pnlt-src" not in {l["ifname"] for l in host}
    ep.leave("moved1")
    host = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True,
                                     check=True).stdout)
    assert "pnlt-src" in {l["ifname"] for l in host}      # moved back, original name
    subprocess.run(["ip", "link", "del", "pnlt-src"], check=True)
    ep.delete()


def test_failing_driver_join_leaves_no_sandbox(ctrl):
    d = Recording()
    ctrl.register_driver("rec", d)

    def fail(jinfo):
        raise E.InternalError("driver failed")

    d.on_join = fail
    ep = ctrl.new_network("rec", "n").create_endpoint("e")
    before = sorted(os.listdir("/run/netns"))
    with pytest.raises(E.InternalError):
        ep.join("failj")
    assert sorted(os.listdir("/run/netns")) == before
    assert ep.info().sandbox_key is None
    d.on_join = None
    ep.join("failj")
    ep.leave("failj")
