"""Kernel dataplane: attach, detach and namespace creation.

The same work three ways, in the same run, with 200 live containers on the bridge:
pynetlib's kernel layer from Python, pyroute2 in-process, and a plain C loop over
pynetlib's C library (csrc/tools/pnl_attach_loop.c, the machine's limit).

attach = open the container's existing namespace by path, open a netlink socket in it,
create the veth with ``eth0`` inside it and the host end on the bridge and up, bring eth0
and lo up, add a /16 address and the default route. detach = delete the host end.
"""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import sys

import pytest

from pynetlib.kernel import NetlinkSocket, Netns, attach_veth, delete_netns

sys.path.insert(0, os.path.dirname(__file__))
from conftest import pyroute2_attach, record, record_benchmark, rounds  # noqa: E402

BRIDGE = "pnlbench0"
LIVE = int(os.environ.get("PNL_BENCH_LIVE", "200"))
_seq = itertools.count(1)


def _addr(i: int) -> str:
    return f"10.88.{100 + (i // 250) % 100}.{2 + i % 250}/16"


@pytest.fixture(scope="module")
def host():
    if not os.environ.get("PYNETLIB_TEST_SANDBOX"):
        pytest.skip("kernel benchmarks need root (the run isolates itself with unshare)")
    sock = NetlinkSocket()
    sock.bridge_create(BRIDGE, up=True)
    sock.addr_add(BRIDGE, "10.88.0.1/16")
    live = []
    for i in range(LIVE):
        ns = Netns.create(f"live{i}")
        attach_veth(sock, ns, f"livh{i}", "eth0", bridge=BRIDGE, address=f"10.88.1.{i % 250 + 2}/16"
                    if i < 250 else f"10.88.2.{i % 250 + 2}/16", gateway="10.88.0.1")
        ns.close()
        live.append(f"live{i}")
    yield sock
    for name in live:
        delete_netns(name)
    sock.link_delete(BRIDGE)
    sock.close()


class _Made:
    """Namespaces and veths a benchmark made, removed when it ends."""

    def __init__(self, sock):
        self.sock = sock
        self.ns: list[str] = []
        self.veths: list[str] = []

    def new_ns(self) -> str:
        name = f"b{next(_seq)}"
        Netns.create(name).close()
        self.ns.append(name)
        return name

    def cleanup(self):
        for v in self.veths:
            try:
                self.sock.link_delete(v)
            except OSError:
                pass
        for n in self.ns:
            try:
                delete_netns(n)
            except Exception:
                pass


@pytest.fixture
def made(host):
    m = _Made(host)
    yield m
    m.cleanup()


# -- attach ---------------------------------------------------------------------------

@pytest.mark.benchmark(group="attach")
def bench_attach_pynetlib(benchmark, host, made):
    def setup():
        name = made.new_ns()
        i = next(_seq)
        made.veths.append(f"pa{i}")
        return (f"/run/netns/{name}", f"pa{i}", _addr(i)), {}

    def attach(path, hname, addr):
        ns = Netns.open(path)
        attach_veth(host, ns, hname, "eth0", bridge=BRIDGE, address=addr, gateway="10.88.0.1")
        ns.close()

    benchmark.pedantic(attach, setup=setup, rounds=rounds(100), warmup_rounds=1)
    record_benchmark(benchmark, "attach", "pynetlib")


@pytest.mark.benchmark(group="attach")
def bench_attach_pyroute2(benchmark, host, made):
    from pyroute2 import IPRoute

    ipr = IPRoute()
    br = ipr.link_lookup(ifname=BRIDGE)[0]

    def setup():
        name = made.new_ns()
        i = next(_seq)
        made.veths.append(f"pr{i}")
        return (f"/run/netns/{name}", f"pr{i}", _addr(i).split("/")[0]), {}

    def attach(path, hname, addr):
        pyroute2_attach(ipr, br, path, hname, addr, "10.88.0.1")

    try:
        benchmark.pedantic(attach, setup=setup, rounds=rounds(60), warmup_rounds=1)
    finally:
        ipr.close()
    record_benchmark(benchmark, "attach", "pyroute2")


@pytest.mark.benchmark(group="c-loop")
def bench_c_loop(benchmark, host, c_loop):
    """The C loop does netns create, attach and detach COUNT times; its own clock times
    each step. pytest-benchmark times the whole process; the per-step medians go to the
    summary table."""
    count = rounds(100)
    out: list[str] = []

    def run():
        p = subprocess.run([c_loop, "/run/netns", BRIDGE, str(count), "cl"], check=True,
                           capture_output=True, text=True)
        out.append(p.stdout)

    benchmark.pedantic(run, rounds=1, iterations=1)
    steps: dict[str, list[int]] = {}
    for line in out[-1].splitlines():
        step, ns = line.split()
        steps.setdefault(step, []).append(int(ns))
    for step in ("netns", "attach", "detach"):
        assert len(steps[step]) == count
        med = statistics.median(steps[step]) / 1e9
        record({"netns": "netns create"}.get(step, step), "c-loop", med)
        benchmark.extra_info[f"{step}_median_s"] = med


# -- detach ---------------------------------------------------------------------------

@pytest.mark.benchmark(group="detach")
def bench_detach_pynetlib(benchmark, host, made):
    def setup():
        name = made.new_ns()
        i = next(_seq)
        ns = Netns.open(f"/run/netns/{name}")
        attach_veth(host, ns, f"pd{i}", "eth0", bridge=BRIDGE, address=_addr(i))
        ns.close()
        return (f"pd{i}",), {}

    benchmark.pedantic(host.link_delete, setup=setup, rounds=rounds(30))
    record_benchmark(benchmark, "detach", "pynetlib")


@pytest.mark.benchmark(group="detach")
def bench_detach_pyroute2(benchmark, host, made):
    from pyroute2 import IPRoute

    ipr = IPRoute()

    def setup():
        name = made.new_ns()
        i = next(_seq)
        ns = Netns.open(f"/run/netns/{name}")
        attach_veth(host, ns, f"qd{i}", "eth0", bridge=BRIDGE, address=_addr(i))
        ns.close()
        return (f"qd{i}",), {}

    def detach(hname):
        ipr.link("del", index=ipr.link_lookup(ifname=hname)[0])

    try:
        benchmark.pedantic(detach, setup=setup, rounds=rounds(30))
    finally:
        ipr.close()
    record_benchmark(benchmark, "detach", "pyroute2")


# -- namespace creation ----------------------------------------------------------------

@pytest.mark.benchmark(group="netns create")
def bench_netns_create_pynetlib(benchmark, host, made):
    def setup():
        name = f"n{next(_seq)}"
        made.ns.append(name)
        return (name,), {}

    benchmark.pedantic(lambda n: Netns.create(n, lo_up=False).close(), setup=setup,
                       rounds=rounds(100), warmup_rounds=1)
    record_benchmark(benchmark, "netns create", "pynetlib")


@pytest.mark.benchmark(group="netns create")
def bench_netns_create_pyroute2(benchmark, host, made):
    from pyroute2 import netns

    def setup():
        name = f"r{next(_seq)}"
        made.ns.append(name)
        return (name,), {}

    benchmark.pedantic(netns.create, setup=setup, rounds=rounds(60), warmup_rounds=1)
    record_benchmark(benchmark, "netns create", "pyroute2")
