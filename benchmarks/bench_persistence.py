"""Persistence costs: reconcile of 1,000 endpoints, the store on disk against the same
store in memory, and 16 processes churning on one state directory."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time

import pytest

import pynetlib
from pynetlib import netlabel

sys.path.insert(0, os.path.dirname(__file__))
from conftest import record_benchmark, rounds, teardown_controller  # noqa: E402

ENDPOINTS = int(os.environ.get("PNL_BENCH_RECONCILE_ENDPOINTS", "1000"))
JOINED = int(os.environ.get("PNL_BENCH_RECONCILE_JOINED", "1000"))
PROCS = int(os.environ.get("PNL_BENCH_PROCS", "16"))
CHURN_SECONDS = float(os.environ.get("PNL_BENCH_CHURN_SECONDS", "10"))
_seq = itertools.count(1)


def _sandboxed():
    if not os.environ.get("PYNETLIB_TEST_SANDBOX"):
        pytest.skip("kernel benchmarks need root (the run isolates itself with unshare)")


@pytest.mark.benchmark(group="reconcile")
def bench_reconcile_1000_endpoints(benchmark, disk_tmp_path):
    """1,000 endpoints over 5 networks (JOINED of them joined to containers, some with
    static addresses); reconcile = opening a new controller on the state directory."""
    _sandboxed()
    state = str(disk_tmp_path / "state")
    ctrl = pynetlib.Controller(state, host_routes=lambda: [])
    nets = [ctrl.new_network("bridge", f"rn{i}", {netlabel.GENERIC_DATA: {
        "AddressIPv4": f"10.{120 + i}.0.1/16"}}) for i in range(5)]
    for i in range(ENDPOINTS):
        net = nets[i % 5]
        static = {"ipv4": f"10.{120 + i % 5}.200.{i // 5 % 250 + 1}"} if i % 10 == 0 else {}
        ep = net.create_endpoint(f"e{i}", **static)
        if i < JOINED:
            ep.join(f"rc{i}")
    before = sorted(ctrl.audit())
    ctrl.close()
    opened = []

    def reopen():
        c = pynetlib.Controller(state, host_routes=lambda: [])
        opened.append(c)

    def close_last():
        while opened:
            opened.pop().close()
        return (), {}

    benchmark.pedantic(reopen, setup=close_last, rounds=rounds(5), warmup_rounds=0)
    record_benchmark(benchmark, f"reconcile {ENDPOINTS} endpoints", "pynetlib")
    c = opened[-1]
    assert before == [] and c.audit() == []
    benchmark.extra_info["endpoints"] = ENDPOINTS
    benchmark.extra_info["joined"] = JOINED
    teardown_controller(c)
    for x in opened[:-1]:
        x.close()


def _attach_bench(benchmark, tmp_path, store, group_impl):
    _sandboxed()
    ctrl = pynetlib.Controller(str(tmp_path / "s"), host_routes=lambda: [], store=store)
    net = ctrl.new_network("bridge", "st", {netlabel.GENERIC_DATA: {
        "AddressIPv4": "10.130.0.1/16"}})
    for i in range(200):
        net.create_endpoint(f"live{i}").join(f"live{store}{i}")
    made = []

    def setup():
        return (f"{store[0]}{next(_seq)}",), {}

    def attach(name):
        ep = net.create_endpoint(name)
        ep.join(name)
        made.append((ep, name))

    benchmark.pedantic(attach, setup=setup, rounds=rounds(100), warmup_rounds=2)
    record_benchmark(benchmark, "attach: store on disk vs in memory", group_impl)
    teardown_controller(ctrl)


@pytest.mark.benchmark(group="attach: store on disk vs in memory")
def bench_attach_store_disk(benchmark, disk_tmp_path):
    _attach_bench(benchmark, disk_tmp_path, "disk", "pynetlib")


@pytest.mark.benchmark(group="attach: store on disk vs in memory")
def bench_attach_store_memory(benchmark, disk_tmp_path):
    _attach_bench(benchmark, disk_tmp_path, "memory", "store in memory")


_WORKER = r"""
import os, sys, time
import pynetlib
from pynetlib import errors
state, wid, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ctrl = pynetlib.Controller(state, host_routes=lambda: [])
net = ctrl.network_by_name("churn")
done = fails = 0
worst = 0.0
end = time.monotonic() + seconds
i = 0
while time.monotonic() < end:
    i += 1
    name = f"w{wid}-{i}"
    t0 = time.perf_counter()
    try:
        ep = net.create_endpoint(name)
        ep.join(name)
        ep.leave(name)
        ep.delete()
        done += 1
    except errors.NetworkError as e:
        fails += 1
        print("error", type(e).__name__, e, file=sys.stderr)
    worst = max(worst, time.perf_counter() - t0)
ctrl.close()
print(done, fails, worst)
"""


@pytest.mark.benchmark(group="16 processes churning")
def bench_multiprocess_churn(benchmark, disk_tmp_path):
    """PROCS processes run full lifecycles on one network for CHURN_SECONDS; SQLite lock
    waits must stay inside the store (no caller sees an error)."""
    _sandboxed()
    state = str(disk_tmp_path / "state")
    ctrl = pynetlib.Controller(state, host_routes=lambda: [])
    ctrl.new_network("bridge", "churn", {netlabel.GENERIC_DATA: {
        "AddressIPv4": "10.140.0.1/16"}})
    results = []

    def run():
        procs = [subprocess.Popen([sys.executable, "-c", _WORKER, state, str(w),
                                   str(CHURN_SECONDS)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for w in range(PROCS)]
        for p in procs:
            out, err = p.communicate(timeout=CHURN_SECONDS + 120)
            assert p.returncode == 0, err
            done, fails, worst = out.split()
            results.append((int(done), int(fails), float(worst), err))

    t0 = time.monotonic()
    benchmark.pedantic(run, rounds=1, iterations=1)
    wall = time.monotonic() - t0
    total = sum(r[0] for r in results)
    fails = sum(r[1] for r in results)
    benchmark.extra_info.update(processes=PROCS, lifecycles=total, errors=fails,
                                lifecycles_per_second=total / wall,
                                worst_lifecycle_s=max(r[2] for r in results))
    assert fails == 0, [r[3] for r in results if r[1]]
    assert ctrl.audit() == []
    teardown_controller(ctrl)
