"""The warm namespace pool: new sandboxes take namespaces made ahead of time."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

import pynetlib
from pynetlib import failpoints, netlabel
from pynetlib.errors import BadRequestError
from pynetlib.netnspool import NamespacePool
from pynetlib.sandbox import netns_name_for

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]


def ns_inode(path: str) -> int:
    return os.stat(path).st_ino


def in_ns(ns: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", ns, "-j", *args], capture_output=True, text=True,
                          check=True).stdout


def ping(ns: str, ip: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", ns, "ping", "-c1", "-W1", ip],
                          capture_output=True).returncode == 0


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("bad", [-1, 1025, 2.0, "4", True, None])
def test_bad_pool_sizes_are_refused(tmp_path, bad):
    with pytest.raises(BadRequestError):
        pynetlib.Controller(str(tmp_path / "s"), host_routes=lambda: [], netns_pool_size=bad)


def test_sandboxes_take_pooled_namespaces(tmp_path):
    fd0 = fds()
    ctrl = pynetlib.Controller(str(tmp_path / "s"), host_routes=lambda: [],
                               netns_pool_size=4)
    pool = ctrl._netns_pool
    assert pool.wait_full(30) and pool.ready == 4
    files = set(os.listdir(ctrl.netns_dir))             # pooled namespaces have no file
    assert not [f for f in files if f.startswith(f"pnl-{ctrl.store_id}-")]
    net = ctrl.new_network("bridge", "p", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                   "10.161.0.1/16"}})
    eps, keys = [], []
    for i in range(6):                                   # more than the pool holds
        ep = net.create_endpoint(f"e{i}")
        keys.append(ep.join(f"pc{i}").sandbox_key)
        eps.append(ep)
    assert pool.hits >= 4 and pool.hits + pool.misses == 6
    assert len({ns_inode(k) for k in keys}) == 6         # six distinct namespaces
    for i, key in enumerate(keys):
        name = os.path.basename(key)
        assert name == netns_name_for(ctrl.store_id, f"pc{i}")
        links = {l["ifname"]: l for l in json.loads(in_ns(name, "link"))}
        assert set(links) == {"lo", "eth0"} and "UP" in links["lo"]["flags"]
        assert ping(name, "10.161.0.1")                  # plumbed and routed
    assert ping(os.path.basename(keys[0]), str(eps[5].info().interfaces[0].address.ip))
    for i, ep in enumerate(eps):
        ep.leave(f"pc{i}")
        ep.delete()
    ctrl.flush_teardown()
    assert not any(os.path.exists(k) for k in keys)
    assert ctrl.audit() == []
    assert pool.wait_full(30)                            # refilled behind the callers
    net.delete()
    ctrl.close()
    assert fds() == fd0                                  # the pool's handles are closed


def test_a_pooled_namespace_replaces_a_leftover_file(tmp_path):
    ctrl = pynetlib.Controller(str(tmp_path / "s"), host_routes=lambda: [],
                               netns_pool_size=1)
    assert ctrl._netns_pool.wait_full(30)
    net = ctrl.new_network("bridge", "l", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                   "10.162.0.1/16"}})
    name = netns_name_for(ctrl.store_id, "stale")
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "add", "marker0", "type", "bridge"], check=True)
    ep = net.create_endpoint("e")
    key = ep.join("stale").sandbox_key
    assert ctrl._netns_pool.hits == 1
    assert {l["ifname"] for l in json.loads(in_ns(name, "link"))} == {"lo", "eth0"}
    ep.leave("stale")
    ep.delete()
    ctrl.flush_teardown()
    assert not os.path.exists(key)
    assert ctrl.audit() == []
    net.delete()
    ctrl.close()


def _net(ctrl, name, subnet):
    return ctrl.new_network("bridge", name, {netlabel.GENERIC_DATA: {"AddressIPv4": subnet}})


def test_the_pool_refills_behind_a_join_not_beside_it(tmp_path):
    """Making a namespace takes the RTNL lock and a core: the pool waits for the join
    that took one to return before replacing it."""
    ctrl = pynetlib.Controller(str(tmp_path / "s"), host_routes=lambda: [],
                               netns_pool_size=2)
    pool = ctrl._netns_pool
    assert pool.wait_full(30)
    net = _net(ctrl, "r", "10.163.0.1/16")
    driver = ctrl._drivers["bridge"]
    seen = []
    plain_join = driver.join

    def slow_join(*args, **kwargs):
        time.sleep(0.3)                     # a refill started by the take would be done
        seen.append(pool.ready)
        return plain_join(*args, **kwargs)

    driver.join = slow_join
    ep = net.create_endpoint("e")
    ep.join("rc")
    assert seen == [1]                      # not refilled while the join ran
    assert pool.wait_full(30) and pool.ready == 2       # refilled once it returned
    ep.leave("rc")
    ep.delete()
    net.delete()
    ctrl.close()


def test_the_pool_refills_after_a_failed_join_and_after_attach_many(tmp_path):
    ctrl = pynetlib.Controller(str(tmp_path / "s"), host_routes=lambda: [],
                               netns_pool_size=2)
    pool = ctrl._netns_pool
    assert pool.wait_full(30)
    net = _net(ctrl, "f", "10.164.0.1/16")
    ep = net.create_endpoint("e")
    failpoints.arm("endpoint.join.after_kernel=raise*1")
    try:
        with pytest.raises(failpoints.FailpointError):
            ep.join("fc")
    finally:
        failpoints.arm("endpoint.join.after_kernel=off")
    assert pool.hits == 1
    assert pool.wait_full(30)
    eps = ctrl.attach_many([pynetlib.AttachSpec(net, "m", "mc")])
    assert pool.hits == 2
    assert pool.wait_full(30)
    eps[0].leave("mc")
    eps[0].delete()
    ep.delete()
    ctrl.flush_teardown()
    assert ctrl.audit() == []
    net.delete()
    ctrl.close()


def test_a_pool_taken_empty_refills_at_once():
    pool = NamespacePool(2)
    try:
        assert pool.wait_full(30)
        first = pool.take()
        time.sleep(0.3)
        assert pool.ready == 1              # one left: waits for refill()
        second = pool.take()                # empty: refills without being asked
        assert pool.wait_full(30)
        for ns in (first, second):
            ns.close()
        pool.take().close()
        pool.refill()
        assert pool.wait_full(30)
    finally:
        pool.close()
