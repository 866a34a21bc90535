"""Several processes, one host: controllers of several processes on one state directory
never hand out an address or a host port twice, never lose an update, and see each
other's networks and endpoints (including what another process deleted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import pynetlib
from pynetlib import errors as E
from pynetlib import netlabel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _proc_kernel import (  # noqa: E402
    audit_settled, kernel_empty, settled, OPS, ROOT, op_ok)

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]


def open_ctrl(state):
    return pynetlib.Controller(state, host_routes=lambda: [])


def bridge(cidr):
    return {netlabel.GENERIC_DATA: {"AddressIPv4": cidr}}


def start(state, *args):
    env = {k: v for k, v in os.environ.items() if k != "PYNETLIB_FAILPOINTS"}
    return subprocess.Popen([sys.executable, OPS, state, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def teardown(state):
    with open_ctrl(state) as c:
        for net in c.networks():
            for ep in net.endpoints():
                if ep.joined_container:
                    ep.leave(ep.joined_container)
                ep.delete()
            net.delete()
        assert audit_settled(c) == []
        sid = c.store_id
    settled(lambda: kernel_empty(sid))


@pytest.mark.parametrize("procs,each", [(2, 100), (4, 60)])
def test_parallel_endpoint_creation_hands_out_each_address_once(tmp_path, procs, each):
    state = str(tmp_path / "s")
    with open_ctrl(state) as c:
        c.new_network("bridge", "shared", bridge("10.170.0.1/24"))
        pool = "LocalDefault/10.170.0.0/24"
        free0 = c.ipam.available(pool)
        children = [start(state, "fill", "shared", f"p{i}", str(each), "ports")
                    for i in range(procs)]
        ips, ports = [], []
        for ch in children:
            out, err = ch.communicate(timeout=120)
            assert ch.returncode == 0, err
            res = json.loads(out.strip().splitlines()[-1])
            ips += res["ips"]
            ports += res["ports"]
        assert len(ips) == procs * each and len(set(ips)) == len(ips)
        assert len(set(ports)) == len(ports)
        # the records agree: nothing lost, nothing doubled, as seen by a third process
        eps = c.network_by_name("shared").endpoints()
        assert len(eps) == procs * each
        assert sorted(str(e.info().interfaces[0].address.ip) for e in eps) == sorted(ips)
        assert c.ipam.available(pool) == free0 - procs * each
        assert audit_settled(c) == []
    teardown(state)


def test_networks_are_shared_and_names_collide(tmp_path):
    state = str(tmp_path / "s")
    with open_ctrl(state) as c:
        op_ok(state, "create_network", "fromchild", "10.171.0.1/24")
        net = c.network_by_name("fromchild")             # made by another process
        ep = net.create_endpoint("here")
        assert str(ep.info().interfaces[0].address.ip) == "10.171.0.2"
        # the child sees this process's endpoint and does not reuse its address
        assert op_ok(state, "create_endpoint", "fromchild", "there")["ip"] == "10.171.0.3"
        with pytest.raises(E.NetworkNameError):
            c.new_network("bridge", "fromchild", bridge("10.172.0.1/24"))
        # four processes race for one name: exactly one wins
        children = [start(state, "create_network", "race", f"10.{173 + i}.0.1/24")
                    for i in range(4)]
        results = [(ch.wait(timeout=60), ch.stderr.read()) for ch in children]
        assert sorted(rc for rc, _ in results) == [0, 1, 1, 1], results
        assert all("NetworkNameError" in err for rc, err in results if rc)
        assert [n.name for n in c.networks()].count("race") == 1
        assert audit_settled(c) == []
        # the losers reserved nothing
        assert len(c.ipam.pools()) == 2
    teardown(state)


def test_what_another_process_deleted_is_gone_here(tmp_path):
    """This process cached a network's endpoints; another process deletes them. This
    process must neither think a freed MAC/address is still taken, nor refuse to delete
    the now empty network, nor report the deleted endpoints in its audit."""
    state = str(tmp_path / "s")
    with open_ctrl(state) as c:
        net = c.new_network("bridge", "small", bridge("10.180.0.1/29"))   # 5 addresses
        eps = [net.create_endpoint(f"e{i}") for i in range(5)]
        assert [str(e.info().interfaces[0].address.ip) for e in eps][0] == "10.180.0.2"
        op_ok(state, "delete_endpoint", "small", "e0")                   # frees .2
        assert audit_settled(c) == []
        again = net.create_endpoint("again")                             # wraps to .2
        assert str(again.info().interfaces[0].address.ip) == "10.180.0.2"
        for name in ("e1", "e2", "e3", "e4", "again"):
            op_ok(state, "delete_endpoint", "small", name)
        assert audit_settled(c) == []
        net.delete()
        assert c.networks() == []
        # a network another process deleted does not hold its bridge name here
        c.new_network("bridge", "named", {netlabel.GENERIC_DATA: {
            "AddressIPv4": "10.181.0.1/24", "BridgeName": "pnlt-mp0"}})
        op_ok(state, "delete_network", "named")
        c.new_network("bridge", "named2", {netlabel.GENERIC_DATA: {
            "AddressIPv4": "10.181.0.1/24", "BridgeName": "pnlt-mp0"}})
    teardown(state)
