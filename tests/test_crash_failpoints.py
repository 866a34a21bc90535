"""Crash recovery: SIGKILL at every failpoint of every operation, then a new controller
on the same state directory.

Each case runs the operation in a child process (``tests/_proc_ops.py``) with one
failpoint armed to ``kill``, checks that the child died of SIGKILL, opens a controller on
the same state directory (reconcile runs in its constructor) and checks that

* the operation is either fully done or fully absent (nothing half-way);
* ``audit()`` is empty;
* the kernel (read with ``ip -j``, ``/run/netns`` and ``nft -j``) holds exactly what the
  records say: a tagged bridge per network, a tagged host veth and a namespace per
  joined endpoint, port-mapping rules only for joined endpoints with mappings;
* every IPAM pool has its starting free count minus the live endpoints;
* everything can then be torn down, leaving nothing behind.
"""

from __future__ import annotations

import itertools
import os
import re
import sys

import pytest

import pynetlib
from pynetlib import netlabel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _proc_kernel import (  # noqa: E402
    audit_settled, kernel_empty, settled, nft_tags, op_ok, owned_links, owned_netns,
    link_names, run_op)

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]

_subnets = itertools.count(150)
_ports = itertools.count(18000)
HOST_VETH = re.compile(r"^pnl[0-9a-f]{12}$")


def open_ctrl(state: str) -> pynetlib.Controller:
    return pynetlib.Controller(state, host_routes=lambda: [])


def pool_of(cidr: str) -> str:
    import ipaddress

    return f"LocalDefault/{ipaddress.ip_interface(cidr).network}"


class World:
    """A state directory with a network 'n' holding a joined bystander, a created-only
    bystander, and the endpoints the case needs; the expected free counts."""

    def __init__(self, tmp_path) -> None:
        self.state = str(tmp_path / "state")
        self.cidr = f"10.{next(_subnets)}.0.1/24"
        self.start: dict[str, int] = {}          # pool id -> free count with no endpoint
        self.pools: dict[str, str] = {}          # network name -> pool id
        with open_ctrl(self.state) as c:
            self.sid = c.store_id
            self.add_network(c, "n", self.cidr)
            net = c.network_by_name("n")
            net.create_endpoint("bystander-joined").join("by1")
            net.create_endpoint("bystander-idle")

    def add_network(self, c, name: str, cidr: str) -> None:
        c.new_network("bridge", name, {netlabel.GENERIC_DATA: {"AddressIPv4": cidr}})
        self.expect(name, cidr, c.ipam.available(pool_of(cidr)))

    def expect(self, name: str, cidr: str, free: int = 253) -> None:
        """A network that may come to exist: its pool and starting free count."""
        self.pools[name] = pool_of(cidr)
        self.start[pool_of(cidr)] = free

    def check(self) -> pynetlib.Controller:
        """Reopen, check every invariant; returns the open controller."""
        c = open_ctrl(self.state)
        assert audit_settled(c) == []
        nets = {n.id: n for n in c.networks()}
        attached, with_ports, keys = set(), set(), set()
        for net in nets.values():
            eps = net.endpoints()
            pool = self.pools[net.name]
            assert c.ipam.available(pool) == self.start[pool] - len(eps), net.name
            for ep in eps:
                if ep.joined_container:
                    attached.add(ep.id)
                    keys.add(os.path.basename(ep.info().sandbox_key))
                    if ep.driver_info()[netlabel.PORT_MAP]:
                        with_ports.add(ep.id)
        # pools of networks that are gone are released
        live_pools = {self.pools[n.name] for n in nets.values()}
        assert set(c.ipam.pools()) == live_pools
        def kernel():
            kern = owned_links(self.sid)
            assert set(kern["network"]) == set(nets)
            assert set(kern["endpoint"]) == attached
            assert {n for n in link_names() if HOST_VETH.match(n)} == \
                {f"pnl{e[:12]}" for e in attached}
            assert owned_netns(self.sid) == keys
            tags = nft_tags()
            assert tags["endpoint"] == with_ports
            assert {n for n in tags["network"] if len(n) == 64} == set(nets)

        settled(kernel)
        return c

    def teardown(self) -> None:
        with open_ctrl(self.state) as c:
            for net in c.networks():
                for ep in net.endpoints():
                    if ep.joined_container:
                        ep.leave(ep.joined_container)
                    ep.delete()
                net.delete()
            assert audit_settled(c) == []
        settled(lambda: kernel_empty(self.sid))



@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.teardown()


def kill_at(w: World, failpoint: str, *op: str) -> None:
    r = run_op(w.state, *op, failpoints=f"{failpoint}=kill")
    assert r.returncode == -9, f"{failpoint} did not kill {op}: rc {r.returncode}\n{r.stderr}"


# -- networks ------------------------------------------------------------------------------

@pytest.mark.parametrize("fp", ["network.create.before_kernel", "network.create.after_kernel",
                                "link.create", "addr.add"])
def test_kill_during_network_create(world, fp):
    cidr = f"10.{next(_subnets)}.0.1/24"
    world.expect("m", cidr)
    kill_at(world, fp, "create_network", "m", cidr)
    with world.check() as c:
        names = {n.name for n in c.networks()}
        assert names in ({"n"}, {"n", "m"})
    # the name is free (or the network usable): a second attempt works either way
    if "m" not in names:
        op_ok(world.state, "create_network", "m", cidr)
    op_ok(world.state, "create_endpoint", "m", "e")
    world.check().close()


@pytest.mark.parametrize("fp", ["network.delete.before_kernel", "network.delete.after_kernel",
                                "link.delete"])
def test_kill_during_network_delete(world, fp):
    cidr = f"10.{next(_subnets)}.0.1/24"
    with open_ctrl(world.state) as c:
        world.add_network(c, "gone", cidr)
    kill_at(world, fp, "delete_network", "gone")
    with world.check() as c:
        names = {n.name for n in c.networks()}
        assert names in ({"n"}, {"n", "gone"})
    if "gone" in names:
        op_ok(world.state, "delete_network", "gone")
    world.check().close()


# -- endpoints -----------------------------------------------------------------------------

def test_kill_after_endpoint_create(world):
    kill_at(world, "endpoint.create.after_store", "create_endpoint", "n", "e",
            str(next(_ports)))
    with world.check() as c:
        names = {e.name for e in c.network_by_name("n").endpoints()}
        assert names in ({"bystander-joined", "bystander-idle"},
                         {"bystander-joined", "bystander-idle", "e"})


def test_kill_during_endpoint_delete(world):
    op_ok(world.state, "create_endpoint", "n", "e", str(next(_ports)))
    kill_at(world, "endpoint.delete.before_store", "delete_endpoint", "n", "e")
    with world.check() as c:
        assert "e" in {e.name for e in c.network_by_name("n").endpoints()}
    op_ok(world.state, "delete_endpoint", "n", "e")
    world.check().close()


JOIN_POINTS = ["endpoint.join.before_kernel", "endpoint.join.after_kernel", "netns.create",
               "attach.veth", "attach.plumb"]


@pytest.mark.parametrize("fp", JOIN_POINTS)
def test_kill_during_join(world, fp):
    op_ok(world.state, "create_endpoint", "n", "e", str(next(_ports)))
    kill_at(world, fp, "join", "n", "e", "cj")
    with world.check() as c:
        joined = c.network_by_name("n").endpoint_by_name("e").joined_container
        assert joined in (None, "cj")
    # the endpoint works afterwards: join (again) and leave
    if joined is None:
        op_ok(world.state, "join", "n", "e", "cj")
    world.check().close()
    op_ok(world.state, "leave", "n", "e", "cj")
    world.check().close()


# No "link.delete" here: a leave deletes the container's namespace (the kernel takes the
# veth with it) and hands leftovers to the reaper; see test_kill_in_the_reaper.
LEAVE_POINTS = ["endpoint.leave.before_kernel", "endpoint.leave.after_kernel",
                "netns.delete"]


@pytest.mark.parametrize("fp", LEAVE_POINTS)
def test_kill_during_leave(world, fp):
    op_ok(world.state, "create_endpoint", "n", "e", str(next(_ports)))
    op_ok(world.state, "join", "n", "e", "cl")
    kill_at(world, fp, "leave", "n", "e", "cl")
    with world.check() as c:
        joined = c.network_by_name("n").endpoint_by_name("e").joined_container
        assert joined in (None, "cl")
    if joined is not None:
        op_ok(world.state, "leave", "n", "e", "cl")
    op_ok(world.state, "delete_endpoint", "n", "e")
    world.check().close()


def test_kill_at_first_netlink_send_while_opening(world):
    """A SIGKILL inside the child's own reconcile (its first netlink request)."""
    kill_at(world, "nl.send", "create_endpoint", "n", "e")
    world.check().close()


# -- durability: an operation that returned survives a SIGKILL right after ----------------

def test_returned_operations_survive_sigkill(world):
    st = world.state
    cidr = f"10.{next(_subnets)}.0.1/24"
    world.expect("d", cidr)
    steps = [("create_network", "d", cidr), ("create_endpoint", "d", "e1", str(next(_ports))),
             ("create_endpoint", "d", "e2"), ("join", "d", "e1", "dur1"),
             ("join", "d", "e2", "dur2"), ("leave", "d", "e2", "dur2")]
    results = {}
    for step in steps:
        r = run_op(st, *step, kill_after=True)
        assert r.returncode == -9, r.stderr
        import json

        results[step] = json.loads(r.stdout.strip().splitlines()[-1])
    with world.check() as c:
        net = c.network_by_name("d")
        assert net.id == results[steps[0]]["id"]
        e1, e2 = net.endpoint_by_name("e1"), net.endpoint_by_name("e2")
        assert e1.id == results[steps[1]]["id"] and e2.id == results[steps[2]]["id"]
        assert str(e1.info().interfaces[0].address.ip) == results[steps[1]]["ip"]
        assert e1.joined_container == "dur1" and e2.joined_container is None
        assert e1.info().sandbox_key == results[steps[3]]["key"]
    for step in [("delete_endpoint", "d", "e2")]:
        assert run_op(st, *step, kill_after=True).returncode == -9
    with world.check() as c:
        assert [e.name for e in c.network_by_name("d").endpoints()] == ["e1"]
