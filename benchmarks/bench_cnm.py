"""The public API's container attach: ``create_endpoint`` + ``join`` of a new container.

Compared, in the same run and with 200 live containers on the network, with a plain C
loop over pynetlib's C library doing netns create + attach (csrc/tools/pnl_attach_loop.c,
back to back as here: its burst mode; run beside each variant, with and without the warm
namespace pool, so each ratio compares runs made under the same conditions) and with
pyroute2 doing the same kernel steps in-process (netns create, veth with the peer in the
netns, bridge, up, address, default route). Each of them starts once the kernel has
finished what the set-up and the one before left it (``settle``: the bridge back to
LIVE ports, no IPv6 address still tentative).
"""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import sys

import pytest

import pynetlib
from pynetlib import netlabel

sys.path.insert(0, os.path.dirname(__file__))
from conftest import (pyroute2_attach, record, record_benchmark, rounds,  # noqa: E402
                      settle, teardown_controller)

LIVE = int(os.environ.get("PNL_BENCH_LIVE", "200"))
BRIDGE = "pnlcnm0"
_seq = itertools.count(1)


POOL = int(os.environ.get("PNL_BENCH_NETNS_POOL", "16"))
#: a bridge takes at most 1,023 ports: the attaches of one benchmark must fit beside LIVE
ROOM = max(1, 1020 - LIVE)


@pytest.fixture(scope="module", params=["", "pool"])
def network(request, tmp_path_factory):
    """The network with LIVE containers; "pool": the controller keeps POOL namespaces
    ready (netns_pool_size), refilled between rounds off the timed path."""
    if not os.environ.get("PYNETLIB_TEST_SANDBOX"):
        pytest.skip("kernel benchmarks need root (the run isolates itself with unshare)")
    pool = POOL if request.param else 0
    ctrl = pynetlib.Controller(str(tmp_path_factory.mktemp("state")), host_routes=lambda: [],
                               netns_pool_size=pool)
    net = ctrl.new_network("bridge", "bench", {netlabel.GENERIC_DATA: {
        "BridgeName": BRIDGE, "AddressIPv4": "10.89.0.1/16"}})
    live = []
    for i in range(LIVE):
        ep = net.create_endpoint(f"live{i}")
        ep.join(f"live{i}")
        live.append(ep)
    settle(BRIDGE, LIVE)
    yield ctrl, net, request.param
    teardown_controller(ctrl)


@pytest.mark.benchmark(group="container attach (create_endpoint+join)")
def bench_cnm_attach_pynetlib(benchmark, network):
    ctrl, net, variant = network
    made = []
    pool = ctrl._netns_pool
    ctrl.flush_teardown()
    settle(BRIDGE, LIVE)            # each variant starts from a quiet kernel
    # the fixture's joins may have run while the pool was still filling: count only
    # this benchmark's takes
    misses_before = pool.misses if pool is not None else 0

    def setup():
        if pool is not None:                 # a ready namespace, as on a steady host
            assert pool.wait_full(), "the netns pool did not fill within 30 s"
        i = next(_seq)
        return (f"b{i}",), {}

    def attach(name):
        ep = net.create_endpoint(name)
        ep.join(name)
        made.append((ep, name))

    benchmark.pedantic(attach, setup=setup, rounds=min(rounds(100), ROOM - 1),
                       warmup_rounds=1)
    for ep, name in made:
        ep.leave(name)
        ep.delete()
    impl = "pynetlib, warm netns pool" if variant else "pynetlib"
    record_benchmark(benchmark, _group(variant), impl)
    if pool is not None:
        assert pool.misses == misses_before, "every timed attach took a pooled namespace"
    assert ctrl.audit() == []


@pytest.mark.benchmark(group="container attach (create_endpoint+join)")
def bench_cnm_attach_pyroute2(benchmark, network):
    from pyroute2 import IPRoute, netns

    if network[2]:
        pytest.skip("measured once, with the plain network")
    network[0].flush_teardown()
    settle(BRIDGE, LIVE)
    ipr = IPRoute()
    br = ipr.link_lookup(ifname=BRIDGE)[0]
    made = []

    def setup():
        i = next(_seq)
        return (f"q{i}", f"10.89.{200 + (i // 250) % 50}.{2 + i % 250}"), {}

    def attach(name, addr):
        netns.create(name)
        path = f"/run/netns/{name}"
        pyroute2_attach(ipr, br, path, f"q{name}", addr, "10.89.0.1")
        made.append(name)

    try:
        benchmark.pedantic(attach, setup=setup, rounds=min(rounds(40), ROOM - 1),
                           warmup_rounds=1)
    finally:
        for name in made:
            netns.remove(name)
        ipr.close()
    record_benchmark(benchmark, "container attach", "pyroute2")


@pytest.mark.benchmark(group="container attach (create_endpoint+join)")
def bench_cnm_attach_c_loop(benchmark, network, c_loop):
    """netns create + attach per container, timed by the C loop's own clock, back to
    back like the public API's attaches above (the loop's burst mode). Run beside each
    variant, so each ratio compares runs made under the same conditions."""
    count = min(rounds(100), ROOM)
    out = []
    network[0].flush_teardown()
    settle(BRIDGE, LIVE)

    def run():
        p = subprocess.run([c_loop, "/run/netns", BRIDGE, str(count), "cc", "burst"],
                           check=True, capture_output=True, text=True)
        out.append(p.stdout)

    benchmark.pedantic(run, rounds=1, iterations=1)
    ns_t, at_t = [], []
    for line in out[-1].splitlines():
        step, ns = line.split()
        if step == "netns":
            ns_t.append(int(ns))
        elif step == "attach":
            at_t.append(int(ns))
    assert len(ns_t) == len(at_t) == count
    med = statistics.median(a + b for a, b in zip(ns_t, at_t)) / 1e9
    benchmark.extra_info["netns_plus_attach_median_s"] = med
    record(_group(network[2]), "c-loop", med)


def _group(variant: str) -> str:
    return "container attach, warm netns pool" if variant else "container attach"
