"""Idempotent teardown under outside interference: leave and delete succeed and free the
addresses when someone else removed the container's namespace, the host veth or the
bridge; a stale release never frees an address that belongs to another endpoint."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time

import pytest

import pynetlib
from pynetlib import errors as E
from pynetlib import netlabel

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]

POOL = "LocalDefault/10.160.0.0/24"


@pytest.fixture
def ctrl(tmp_path):
    c = pynetlib.Controller(str(tmp_path / "s"), host_routes=lambda: [])
    yield c
    c.close()


def links():
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True)
    return {l["ifname"] for l in json.loads(out.stdout)}


def net24(ctrl, name="i"):
    return ctrl.new_network("bridge", name, {netlabel.GENERIC_DATA: {
        "BridgeName": "pnlt-ibr", "AddressIPv4": "10.160.0.1/24"}})


def settle(ctrl):
    ctrl.flush_teardown()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and ctrl.audit():
        time.sleep(0.05)
    return ctrl.audit()


def test_namespace_removed_by_someone_else(ctrl):
    net = net24(ctrl)
    ep = net.create_endpoint("e")
    free = ctrl.ipam.available(POOL)
    key = ep.join("gone1").sandbox_key
    subprocess.run(["umount", "-l", key], check=True)        # the runtime lost it
    os.unlink(key)
    ep.leave("gone1")
    ep.delete()
    assert settle(ctrl) == []       # the address is back once no device can carry it
    assert ctrl.ipam.available(POOL) == free + 1
    net.delete()


def test_host_veth_removed_by_someone_else(ctrl):
    net = net24(ctrl)
    ep = net.create_endpoint("e")
    ep.join("gone2")
    subprocess.run(["ip", "link", "del", f"pnl{ep.id[:12]}"], check=True)
    ep.leave("gone2")
    ep.delete()
    assert settle(ctrl) == []
    net.delete()


def test_bridge_removed_by_someone_else(ctrl):
    net = net24(ctrl)
    eps = [net.create_endpoint(f"e{i}") for i in range(3)]
    for i, ep in enumerate(eps):
        ep.join(f"gone3-{i}")
    subprocess.run(["ip", "link", "del", "pnlt-ibr"], check=True)
    assert any("bridge" in p for p in ctrl.audit())           # reported, not hidden
    for i, ep in enumerate(eps):
        ep.leave(f"gone3-{i}")
        ep.delete()
    net.delete()
    assert "pnlt-ibr" not in links()
    assert settle(ctrl) == []


def test_a_lost_bridge_is_recreated_by_reconcile(tmp_path):
    state = str(tmp_path / "s")
    c = pynetlib.Controller(state, host_routes=lambda: [])
    net24(c)
    c.close()
    subprocess.run(["ip", "link", "del", "pnlt-ibr"], check=True)
    c = pynetlib.Controller(state, host_routes=lambda: [])      # reconcile
    assert "pnlt-ibr" in links()
    assert c.audit() == []
    c.network_by_name("i").delete()
    c.close()


def test_repeated_leave_and_delete_are_typed_and_change_nothing(ctrl):
    """The API pins NoContainerError / NoSuchEndpointError for a repeat; it must not
    free anything or touch the kernel."""
    net = net24(ctrl)
    ep = net.create_endpoint("e")
    ep.join("rep")
    ep.leave("rep")
    free = ctrl.ipam.available(POOL)
    with pytest.raises(E.NoContainerError):
        ep.leave("rep")
    assert ctrl.ipam.available(POOL) == free
    ep.delete()
    with pytest.raises(E.NoSuchEndpointError):
        ep.delete()
    ctrl.flush_teardown()           # the address is back once no device can carry it
    assert ctrl.ipam.available(POOL) == free + 1
    net.delete()


def test_stale_release_never_frees_another_endpoints_address(ctrl):
    """A's address, released, goes to B once the cursor wraps; a late second delete of A
    (from a stale handle, or another process) must not free B's address."""
    net = net24(ctrl)
    a = net.create_endpoint("a", ipv4="10.160.0.50")
    stale = pynetlib.Controller(ctrl.state_dir, host_routes=lambda: []) \
        .network_by_name("i").endpoint_by_name("a")
    a.delete()
    b = net.create_endpoint("b", ipv4="10.160.0.50")            # the same address, now B's
    with pytest.raises(E.NoSuchEndpointError):
        stale.delete()
    assert ctrl.ipam.is_allocated(POOL, "10.160.0.50")         # still B's
    assert b.info().interfaces[0].address.ip == ipaddress.ip_address("10.160.0.50")
    stale._net._ctrl.close()
    b.delete()
    net.delete()
