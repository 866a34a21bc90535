"""The daemon path: requests/s and p99 latency over the unix socket, and its overhead
over the in-process API for the same container lifecycle.

- ``GET /networks`` with 16 concurrent clients;
- create-endpoint + join + leave + delete (four requests) with 16 concurrent clients,
  and with one client;
- the same lifecycle in-process (``create_endpoint``, ``join``, ``leave``, ``delete``
  on a Controller) with one thread and with 16 threads.

Clients use ``pynetlib.client.Client`` (one connection per request). The daemon is a
real process started inside the benchmark run's private namespaces, on its own state
directory and bridge; the in-process controller has its own too. Knobs:
PNL_BENCH_DAEMON_OPS (lifecycles per measurement; 400, or 40 in the short mode that
PNL_BENCH_ROUNDS selects), PNL_BENCH_DAEMON_LIVE (containers joined before measuring,
default 20), PNL_BENCH_DAEMON_CLIENTS (default 16).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time

import pytest

import pynetlib
from pynetlib import netlabel
from pynetlib.client import Client

sys.path.insert(0, os.path.dirname(__file__))
from conftest import figure, teardown_controller  # noqa: E402

_SHORT = bool(os.environ.get("PNL_BENCH_ROUNDS"))
OPS = int(os.environ.get("PNL_BENCH_DAEMON_OPS", "40" if _SHORT else "400"))
LIVE = int(os.environ.get("PNL_BENCH_DAEMON_LIVE", "20"))
CLIENTS = int(os.environ.get("PNL_BENCH_DAEMON_CLIENTS", "16"))
RESULTS: dict[str, dict[str, float]] = {}


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _run(workers: int, count: int, one) -> tuple[float, list[float]]:
    """Run ``one(i)`` for i in range(count) on ``workers`` threads: (wall seconds,
    latency of each call)."""
    latencies: list[float] = []
    failures: list[BaseException] = []
    it = iter(range(count))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                i = next(it, None)
            if i is None or failures:
                return
            t0 = time.perf_counter()
            try:
                one(i)
            except BaseException as e:          # noqa: BLE001 - re-raised below
                failures.append(e)
                return
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if failures:
        raise failures[0]
    return wall, latencies


def _report(name: str, impl: str, count: int, wall: float, lat: list[float],
            per_op: int = 1) -> None:
    rate = count / wall
    RESULTS[f"{name} {impl}"] = {"rate": rate, "p99": _p99(lat),
                                 "median": statistics.median(lat)}
    extra = f" = {rate * per_op:7.0f} requests/s" if per_op > 1 else ""
    figure(name, impl, f"{rate:7.0f}/s{extra}, p50 {statistics.median(lat) * 1e3:7.2f} ms, "
                       f"p99 {_p99(lat) * 1e3:7.2f} ms ({count} ops)")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    if not os.environ.get("PYNETLIB_TEST_SANDBOX"):
        pytest.skip("kernel benchmarks need root (the run isolates itself with unshare)")
    base = tmp_path_factory.mktemp("daemon")
    sock = str(base / "api.sock")
    log = open(base / "daemon.log", "w")
    env = {k: v for k, v in os.environ.items() if k != "PYNETLIB_FAILPOINTS"}
    proc = subprocess.Popen([sys.executable, "-m", "pynetlib.daemon", "--state-dir",
                             str(base / "state"), "--socket", sock, "--no-plugin-socket",
                             "--workers", str(max(CLIENTS, 4))],
                            stdout=log, stderr=log, env=env, stdin=subprocess.DEVNULL)
    client = Client(sock, timeout=120)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except pynetlib.errors.NoServiceError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    nid = client.create_network("bench", subnet="10.87.0.0/16",
                                driver_opts={"BridgeName": "pnlbd0"})
    for i in range(LIVE):
        client.join(nid, client.create_endpoint(nid, f"live{i}"), f"live{i}")
    yield client, nid
    for ep in client.endpoints(nid):
        if ep["container_id"]:
            client.leave(nid, ep["id"], ep["container_id"])
        client.delete_endpoint(nid, ep["id"])
    client.delete_network(nid)
    assert client.audit() == []
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    log.close()


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    if not os.environ.get("PYNETLIB_TEST_SANDBOX"):
        pytest.skip("kernel benchmarks need root (the run isolates itself with unshare)")
    ctrl = pynetlib.Controller(str(tmp_path_factory.mktemp("state")), host_routes=lambda: [])
    net = ctrl.new_network("bridge", "bench", {netlabel.GENERIC_DATA: {
        "BridgeName": "pnlbi0", "AddressIPv4": "10.86.0.1/16"}})
    for i in range(LIVE):
        net.create_endpoint(f"live{i}").join(f"live{i}")
    yield ctrl, net
    teardown_controller(ctrl)


def _socket_lifecycle(client: Client, nid: str, tag: str):
    def one(i: int) -> None:
        name = f"{tag}{i}"
        eid = client.create_endpoint(nid, name)
        client.join(nid, eid, name)
        client.leave(nid, eid, name)
        client.delete_endpoint(nid, eid)
    return one


def _in_process_lifecycle(net, tag: str):
    def one(i: int) -> None:
        name = f"{tag}{i}"
        ep = net.create_endpoint(name)
        ep.join(name)
        ep.leave(name)
        ep.delete()
    return one


@pytest.mark.benchmark(group="daemon")
def bench_daemon_get_networks(benchmark, daemon):
    client, _ = daemon
    count = OPS * 4
    _run(CLIENTS, min(count, 100), lambda i: client.networks())          # warm up
    wall, lat = _run(CLIENTS, count, lambda i: client.networks())
    _report(f"daemon GET /networks, {CLIENTS} clients", "unix socket", count, wall, lat)
    benchmark.pedantic(client.networks, rounds=1, iterations=1)


@pytest.mark.benchmark(group="daemon")
def bench_daemon_lifecycle(benchmark, daemon):
    client, nid = daemon
    _run(CLIENTS, min(OPS, 32), _socket_lifecycle(client, nid, "w"))     # warm up
    for workers in (1, CLIENTS):
        count = OPS if workers > 1 else max(OPS // 4, 10)
        wall, lat = _run(workers, count, _socket_lifecycle(client, nid, f"s{workers}x"))
        _report(f"lifecycle (4 calls), {workers} client(s)", "daemon", count, wall, lat,
                per_op=4)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    assert client.audit() == []


@pytest.mark.benchmark(group="daemon")
def bench_in_process_lifecycle(benchmark, in_process):
    ctrl, net = in_process
    _run(CLIENTS, min(OPS, 32), _in_process_lifecycle(net, "w"))         # warm up
    for workers in (1, CLIENTS):
        count = OPS if workers > 1 else max(OPS // 4, 10)
        wall, lat = _run(workers, count, _in_process_lifecycle(net, f"p{workers}x"))
        _report(f"lifecycle (4 calls), {workers} client(s)", "in-process", count, wall, lat)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    ctrl.flush_teardown()
    assert ctrl.audit() == []


@pytest.mark.benchmark(group="daemon")
def bench_zz_daemon_overhead(benchmark, daemon, in_process):
    """The ratios, once both lifecycles were measured (defined last, so it runs last)."""
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    for workers in (1, CLIENTS):
        key = f"lifecycle (4 calls), {workers} client(s)"
        d, p = RESULTS.get(f"{key} daemon"), RESULTS.get(f"{key} in-process")
        if d is None or p is None:
            pytest.skip("both lifecycle benchmarks must run first")
        figure(f"daemon overhead, {workers} client(s)", "daemon/in-process",
               f"throughput {d['rate'] / p['rate'] * 100:.0f} % of in-process, p50 x"
               f"{d['median'] / p['median']:.2f}, p99 x{d['p99'] / p['p99']:.2f}, "
               f"+{(d['median'] - p['median']) * 1e3:.2f} ms per lifecycle at p50")
