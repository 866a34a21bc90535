"""Restarts: what a controller recorded comes back identical in the next one.

* 1,000 endpoints across 5 networks (some with static addresses, holes from deletions):
  every address and MAC, every pool's bitmap and next-fit cursor, and the free counts
  come back identical after a restart; the next allocation continues where the last
  process stopped (next-fit, not the first hole).
* 30 joined endpoints, the process SIGKILLed right after: the new controller's
  reconcile keeps every one of them (no action on them), ``audit()`` is empty, the
  kernel still holds their veths and namespaces, and they still reach each other.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

import pynetlib
from pynetlib import netlabel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _proc_kernel import (  # noqa: E402
    audit_settled, kernel_empty, settled, link_names, owned_links, owned_netns, ping, run_op)

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]


def open_ctrl(state):
    return pynetlib.Controller(state, host_routes=lambda: [])


def bridge(cidr):
    return {netlabel.GENERIC_DATA: {"AddressIPv4": cidr}}


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


def snapshot(c) -> dict:
    out = {}
    for net in c.networks():
        for ep in net.endpoints():
            i = ep.info().interfaces[0]
            out[(net.name, ep.name)] = (str(i.address), i.mac_address,
                                       ep.driver_info()[netlabel.MAC_ADDRESS])
    return out


def bitmaps(c, pools) -> dict:
    c.ipam.pools()                                     # sync from the store
    return {p: c.ipam._mem._pool(p).master.bitmap.serialize() for p in pools}


def test_restart_with_1000_endpoints_keeps_every_allocation_and_the_cursor(tmp_path):
    state = str(tmp_path / "s")
    pools, probes = [], {}
    with open_ctrl(state) as a:
        for k in range(5):
            net = a.new_network("bridge", f"n{k}", bridge(f"10.{200 + k}.0.1/24"))
            pools.append(f"LocalDefault/10.{200 + k}.0.0/24")
            for i in range(200):
                if i % 10 == 0:                      # 20 static ones, from the top down
                    net.create_endpoint(f"e{i}", ipv4=f"10.{200 + k}.0.{250 - i // 10}")
                else:
                    net.create_endpoint(f"e{i}")
            for i in range(3, 200, 7):               # holes
                net.endpoint_by_name(f"e{i}").delete()
            # the next address this process would hand out, then given back
            probe = net.create_endpoint("probe")
            probes[net.name] = probe.info().interfaces[0].address.ip
            probe.delete()
        assert audit_settled(a) == []
        before = snapshot(a)
        maps = bitmaps(a, pools)
        free = {p: a.ipam.available(p) for p in pools}
    assert len(before) == 5 * (200 - len(range(3, 200, 7)))
    with open_ctrl(state) as b:                     # the restart
        assert snapshot(b) == before
        assert bitmaps(b, pools) == maps             # every bit, and the cursor
        assert {p: b.ipam.available(p) for p in pools} == free
        assert audit_settled(b) == []
        for name, last in probes.items():
            ep = b.network_by_name(name).create_endpoint("after")
            assert ep.info().interfaces[0].address.ip == last + 1     # next-fit goes on
    teardown(state)


def test_joined_endpoints_survive_a_sigkill_and_still_talk(tmp_path):
    state = str(tmp_path / "s")
    with open_ctrl(state) as c:
        c.new_network("bridge", "ja", bridge("10.210.0.1/24"))
        c.new_network("bridge", "jb", bridge("10.211.0.1/24"))
        sid = c.store_id
    eps = []
    for net in ("ja", "jb"):
        r = run_op(state, "populate", net, net, "15", kill_after=True, timeout=120)
        assert r.returncode == -9, r.stderr
        eps += [(net, *e) for e in json.loads(r.stdout.strip().splitlines()[-1])["eps"]]
    assert len(eps) == 30
    for restart in ("after SIGKILL", "after close"):
        c = open_ctrl(state)
        try:
            assert audit_settled(c) == [], restart
            for net, name, ip, key in eps:
                ep = c.network_by_name(net).endpoint_by_name(name)
                assert ep.joined_container == f"{net}-c{name.rsplit('-', 1)[1]}"
                assert ep.info().sandbox_key == key
            assert len(owned_links(sid)["endpoint"]) == 30
            assert len({n for n in link_names() if n.startswith("pnl") and len(n) == 15}) == 30
            assert owned_netns(sid) == {os.path.basename(k) for *_, k in eps}
            for net in ("ja", "jb"):
                ring = [e for e in eps if e[0] == net]
                for (_, _, _, key), (_, _, ip, _) in zip(ring, ring[1:] + ring[:1]):
                    assert ping(os.path.basename(key), ip), (restart, key, ip)
        finally:
            c.close()
    # a reconcile that would have removed something says so: it did nothing to them
    with open_ctrl(state) as c:
        assert not [a for a in c.reconcile() if "endpoint" in a or "removed" in a]
    teardown(state)
