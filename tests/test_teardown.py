"""Batched, asynchronous teardown: leave returns once the endpoint is unplugged and its
records are final; devices are deleted by the reaper in batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import pynetlib
from pynetlib import netlabel
from pynetlib.drivers.bridge.reaper import REAP_GROUP

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]


def links():
    out = subprocess.run(["ip", "-j", "-d", "link"], capture_output=True, text=True,
                         check=True).stdout
    return {l["ifname"]: l for l in json.loads(out)}


def new_ctrl(tmp_path):
    return pynetlib.Controller(str(tmp_path / "state"), host_routes=lambda: [])


def test_leave_of_owned_sandbox_deletes_namespace_and_devices_go(tmp_path):
    ctrl = new_ctrl(tmp_path)
    net = ctrl.new_network("bridge", "t", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                   "10.150.0.1/16"}})
    eps = [net.create_endpoint(f"e{i}") for i in range(20)]
    keys = [ep.join(f"td{i}").sandbox_key for i, ep in enumerate(eps)]
    t0 = time.perf_counter()
    for i, ep in enumerate(eps):
        ep.leave(f"td{i}")
        ep.delete()
    per = (time.perf_counter() - t0) / len(eps)
    assert not any(os.path.exists(k) for k in keys)     # namespaces gone at once
    ctrl.flush_teardown()
    deadline = time.monotonic() + 5                     # the kernel's own async cleanup
    while time.monotonic() < deadline:
        left = [n for n in links() if n.startswith("pnl")]
        if not left:
            break
        time.sleep(0.05)
    assert left == []
    assert ctrl.audit() == []
    print(f"leave+delete per container: {per * 1e3:.2f} ms")
    net.delete()
    ctrl.close()


def test_leave_with_a_persistent_namespace_uses_the_reaper(tmp_path, make_netns):
    """The runtime's own namespace stays: the veth is put down at once, into the reap
    group, and deleted in one batch with the others."""
    ctrl = new_ctrl(tmp_path)
    net = ctrl.new_network("bridge", "r", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                   "10.151.0.1/16"}})
    names = [make_netns("ext") for _ in range(10)]
    eps = [net.create_endpoint(f"e{i}") for i in range(10)]
    for ep, ns in zip(eps, names):
        ep.join(f"rp-{ns}", netns_path=f"/run/netns/{ns}")
    drv = ctrl._drivers["bridge"]
    for ep, ns in zip(eps, names):
        ep.leave(f"rp-{ns}")
        dev = links().get(f"pnl{ep.id[:12]}")
        if dev is not None:                              # not reaped yet: down, in group
            assert "UP" not in dev["flags"] and dev.get("group") in (str(REAP_GROUP),
                                                                     REAP_GROUP, "0x706e6c72")
    ctrl.flush_teardown()
    assert not [n for n in links() if n.startswith("pnl")]
    assert drv._reap.deleted_batches <= 3                # batched, not one per device
    for ns in names:                                     # the runtime's namespaces stay
        assert os.path.exists(f"/run/netns/{ns}")
        inner = subprocess.run(["ip", "-n", ns, "-j", "link"], capture_output=True,
                               text=True, check=True).stdout
        assert [l["ifname"] for l in json.loads(inner)] == ["lo"]
    for ep in eps:
        ep.delete()
    assert ctrl.audit() == []
    net.delete()
    ctrl.close()


def test_close_drains_the_reaper(tmp_path, make_netns):
    ctrl = new_ctrl(tmp_path)
    net = ctrl.new_network("bridge", "c", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                   "10.152.0.1/16"}})
    ns = make_netns("ext")
    ep = net.create_endpoint("e")
    ep.join("cl", netns_path=f"/run/netns/{ns}")
    ep.leave("cl")
    ep.delete()
    ctrl.close()
    assert f"pnl{ep.id[:12]}" not in links()
    c2 = new_ctrl(tmp_path)
    c2.network_by_name("c").delete()
    c2.close()


def test_kill_in_the_reaper_is_recovered(tmp_path, make_netns):
    """The process dies while its reaper deletes the group: the devices it left are
    tagged orphans, and the next controller's reconcile removes them."""
    state = str(tmp_path / "state")
    ctrl = pynetlib.Controller(state, host_routes=lambda: [])
    net = ctrl.new_network("bridge", "k", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                   "10.153.0.1/16"}})
    ns = make_netns("ext")
    ep = net.create_endpoint("e")
    ep.join("kr", netns_path=f"/run/netns/{ns}")
    eid = ep.id
    ctrl.close()
    child = textwrap.dedent(f"""
        import pynetlib
        c = pynetlib.Controller({state!r}, host_routes=lambda: [])
        c.network_by_name("k").endpoint_by_name("e").leave("kr")
        c.close()          # the reaper's batch: killed by the failpoint
    """)
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                       env=dict(os.environ, PYNETLIB_FAILPOINTS="link.delete=kill"))
    assert r.returncode == -9, r.stderr
    assert f"pnl{eid[:12]}" in links()                   # left behind, down
    c = pynetlib.Controller(state, host_routes=lambda: [])
    assert f"pnl{eid[:12]}" not in links()               # reconcile removed it
    assert c.audit() == []
    assert c.network_by_name("k").endpoint_by_name("e").joined_container is None
    c.network_by_name("k").endpoint_by_name("e").delete()
    c.network_by_name("k").delete()
    c.close()
