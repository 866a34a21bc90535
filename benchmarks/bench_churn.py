"""High churn: full container lifecycles, the way a busy host runs them.

One lifecycle = a new container's sandbox, attach (``create_endpoint`` + ``join``),
detach (``leave`` + ``delete``), the sandbox's removal. With LIVE containers on the
bridge, WORKERS threads run lifecycles until COUNT containers have passed. The same work
in the same run by:
- pynetlib through its public API (store on disk), one container at a time, the same
  with a warm namespace pool, and a pod at a time (the batch API);
- the C loop over pynetlib's C library (netns create + attach + netns delete);
- pyroute2 in-process (netns create, veth into it, bridge, up, address, route, netns
  remove);
- Debian's containernetworking-plugins ``bridge`` plugin with ``host-local`` IPAM,
  executed exactly as a container runtime executes it (CNI_COMMAND ADD/DEL, config on
  stdin), the runtime's namespace made by pynetlib's kernel layer for it.
Reported: lifecycles per second at each implementation's best worker count, attach and
detach medians and p99, CPU seconds per container, and resident memory and open file
descriptors at the start and the end of the run.

pyroute2 and CNI are also run at higher worker counts: most of their lifecycle is waiting
(CNI's DEL waits out the kernel's RCU grace period for its veth), so they keep gaining
from more workers after pynetlib and the C loop have stopped; measured here, CNI went
from 38/s at 2 workers to 70/s at 8.

Work the kernel finishes later is counted too. Deleting a namespace returns before the
kernel has destroyed it and its veth (a kernel worker does that afterwards), so a loop
that deletes namespaces is done before the kernel is, and its own CPU time leaves that
work out. Each run is therefore also reported from the same start until the kernel has
caught up: the bridge is back to LIVE ports (read with ``ip``; for pynetlib after its
teardown is flushed), and then the host is quiet again (under 5 % busy over 0.2 s), so
that the namespaces' own destruction is in too. Over that time the host's CPU is
counted: every process and kernel thread, from /proc/stat, less the waiting's own CPU.
That is fair on a machine that runs nothing else.

Environment: PNL_CHURN_COUNT (10000), PNL_CHURN_LIVE (200), PNL_CHURN_SLOW_COUNT (the
slower implementations' count, 400), PNL_CHURN_WORKERS (pynetlib and the C loop,
"1,2,4"), PNL_CHURN_SLOW_WORKERS (pyroute2 and CNI, "1,2,4,8,16"), PNL_CHURN_POD (containers
per batch call in the pod variant, 4), PNL_CHURN_NETNS_POOL (namespaces kept ready in the
warm-pool variant, 16).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

import pytest

import pynetlib
from pynetlib import netlabel
from pynetlib.kernel import Netns, delete_netns

sys.path.insert(0, os.path.dirname(__file__))
from conftest import figure, pyroute2_attach, record, teardown_controller  # noqa: E402

COUNT = int(os.environ.get("PNL_CHURN_COUNT", "10000"))
LIVE = int(os.environ.get("PNL_CHURN_LIVE", "200"))
SLOW_COUNT = int(os.environ.get("PNL_CHURN_SLOW_COUNT", "400"))
WORKERS = [int(w) for w in os.environ.get("PNL_CHURN_WORKERS", "1,2,4").split(",")]
SLOW_WORKERS = [int(w) for w in
                os.environ.get("PNL_CHURN_SLOW_WORKERS", "1,2,4,8,16").split(",")]
POD = int(os.environ.get("PNL_CHURN_POD", "4"))
NETNS_POOL = int(os.environ.get("PNL_CHURN_NETNS_POOL", "16"))
CNI_DIR = "/usr/lib/cni"
BRIDGE = "pnlchurn0"
_seq = itertools.count(1)


def _p(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _fds():
    return len(os.listdir("/proc/self/fd"))


def _cpu():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _host_cpu():
    """CPU seconds the whole machine has spent so far: every process and kernel thread
    (user, nice, system, irq and softirq time from /proc/stat; idle, iowait and steal
    left out)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = \
            (int(x) for x in f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


QUIET_WINDOW = 0.2              # seconds
QUIET_BUSY = 0.05               # of the host's CPU capacity, at most, over a quiet window


def _own_cpu() -> float:
    """CPU seconds of this thread and of the child processes waited for so far."""
    t = os.times()
    return time.thread_time() + t.children_user + t.children_system


class _Drained:
    """From a run's start to the kernel having caught up with it (see the module
    docstring): the wall time and the host's CPU."""

    def __init__(self, bridge: str, ports: int):
        self.bridge, self.ports = bridge, ports
        self.t0, self.cpu0 = time.monotonic(), _host_cpu()

    def done(self, timeout: float = 120.0) -> tuple[float, float]:
        """(seconds, host CPU seconds) from the start until the bridge is back to its
        ports and the host is quiet. The bridge is polled with ``ip -o link show
        master`` every 50 ms (about 8 ms of CPU each with 200 ports, where a pyroute2
        dump took 70 ms); that CPU is left out."""
        own0 = _own_cpu()
        deadline = time.monotonic() + timeout
        while True:
            ports = subprocess.run(["ip", "-o", "link", "show", "master", self.bridge],
                                   capture_output=True, text=True,
                                   check=True).stdout.count("\n")
            if ports == self.ports:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"bridge {self.bridge}: {ports} ports (want "
                                   f"{self.ports})")
            time.sleep(0.05)
        capacity = QUIET_WINDOW * (os.cpu_count() or 1)
        while True:
            end, cpu, own = time.monotonic(), _host_cpu(), _own_cpu()
            time.sleep(QUIET_WINDOW)
            if _host_cpu() - cpu <= QUIET_BUSY * capacity:
                return end - self.t0, cpu - self.cpu0 - (own - own0)
            if time.monotonic() > deadline:
                raise TimeoutError("the host did not go quiet after the run")


def _report(tag, impl, n, wall, cpu, attach, detach, drained, mem=None):
    rate = n / wall
    figure(f"churn {tag}: lifecycles/s", impl, f"{rate:8.0f}/s over {n} containers, "
           f"CPU {cpu / n * 1e3:.2f} ms/container")
    dwall, hcpu = drained
    figure(f"churn {tag}: lifecycles/s, kernel caught up", impl,
           f"{n / dwall:8.0f}/s (the kernel done {dwall - wall:+.2f} s after the run), "
           f"host CPU {hcpu / n * 1e3:.2f} ms/container")
    if attach:
        figure(f"churn {tag}: attach", impl, f"median {statistics.median(attach) * 1e3:.3f} ms"
               f", p99 {_p(attach, 0.99) * 1e3:.3f} ms")
    if detach:
        figure(f"churn {tag}: detach", impl, f"median {statistics.median(detach) * 1e3:.3f} ms"
               f", p99 {_p(detach, 0.99) * 1e3:.3f} ms")
    if mem:
        figure(f"churn {tag}: RSS / fds", impl, mem)
    record(f"churn {tag}: time per lifecycle", impl, wall / n)
    return rate, n / dwall


def _best(impl: str, rates: list[tuple[float, float]]) -> float:
    """Report the best of (rate, rate until the kernel caught up) over the worker counts
    tried; returns the best rate."""
    best = max(r for r, _ in rates)
    figure(f"churn {LIVE} live: best lifecycles/s", impl, f"{best:.0f}/s")
    figure(f"churn {LIVE} live: best lifecycles/s, kernel caught up", impl,
           f"{max(d for _, d in rates):.0f}/s")
    return best


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if not os.environ.get("PYNETLIB_TEST_SANDBOX"):
        pytest.skip("kernel benchmarks need root (the run isolates itself with unshare)")
    state = str(tmp_path_factory.mktemp("state"))
    ctrl = pynetlib.Controller(state, host_routes=lambda: [])
    net = ctrl.new_network("bridge", "churn", {netlabel.GENERIC_DATA: {
        "BridgeName": BRIDGE, "AddressIPv4": "10.88.0.1/16"}})
    for i in range(LIVE):
        net.create_endpoint(f"live{i}").join(f"live{i}")
    yield ctrl, net
    teardown_controller(ctrl)


def _teardown_seconds(ctrl) -> tuple[float, float]:
    """Seconds the teardown thread (namespaces) and the reaper (devices) have spent."""
    reaper = ctrl._drivers["bridge"]._reaper()
    return ctrl._teardown.busy_seconds, reaper.busy_seconds


def _run_workers(workers, count, one):
    """Run ``one(i)`` for i in range(count) on ``workers`` threads; returns the lists of
    attach and detach seconds it returned."""
    attach, detach, errors = [], [], []
    it = iter(range(count))
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                i = next(it, None)
            if i is None:
                return
            try:
                a, d = one(i)
            except Exception as e:        # reported below, stops the run
                errors.append(e)
                return
            with lock:
                attach.append(a)
                detach.append(d)

    ts = [threading.Thread(target=work) for _ in range(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return attach, detach


def _churn_pynetlib(benchmark, env, impl: str) -> None:
    ctrl, net = env
    rates = []
    for workers in WORKERS:
        tag = f"{LIVE} live"

        def one(i):
            name = f"c{impl[-4:]}{workers}x{i}"
            t0 = time.perf_counter()
            ep = net.create_endpoint(name)
            ep.join(name)
            t1 = time.perf_counter()
            ep.leave(name)
            ep.delete()
            return t1 - t0, time.perf_counter() - t1

        _run_workers(workers, min(200, COUNT), one)        # warm up
        ctrl.flush_teardown()
        busy0 = _teardown_seconds(ctrl)
        rss0, fd0, cpu0 = _rss_kb(), _fds(), _cpu()
        caught_up = _Drained(BRIDGE, LIVE)
        t0 = time.perf_counter()
        attach, detach = _run_workers(workers, COUNT, one)
        wall = time.perf_counter() - t0
        cpu = _cpu() - cpu0
        ctrl.flush_teardown()
        drained = caught_up.done()
        ns_s, dev_s = (b - a for a, b in zip(busy0, _teardown_seconds(ctrl)))
        figure(f"churn {tag}, {workers} worker(s): kernel teardown", impl,
               f"{(ns_s + dev_s) / COUNT * 1e3:.3f} ms/container off the callers' path "
               f"(namespaces {ns_s / COUNT * 1e3:.3f}, reaper {dev_s / COUNT * 1e3:.3f})")
        rss1, fd1 = _rss_kb(), _fds()
        mem = (f"RSS {rss0} -> {rss1} KiB ({(rss1 - rss0) / rss0 * 100:+.1f} %), "
               f"fds {fd0} -> {fd1}")
        rates.append(_report(f"{tag}, {workers} worker(s)", impl, COUNT, wall, cpu, attach,
                             detach, drained, mem))
    benchmark.extra_info["best_rate"] = _best(impl, rates)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    assert ctrl.audit() == []


@pytest.mark.benchmark(group="churn")
def bench_churn_pynetlib(benchmark, env):
    _churn_pynetlib(benchmark, env, "pynetlib")


@pytest.mark.benchmark(group="churn")
def bench_churn_pynetlib_netns_pool(benchmark, env):
    """The same, with a warm pool of NETNS_POOL namespaces (what
    ``Controller(netns_pool_size=...)`` makes), refilled by its thread during the run."""
    from pynetlib.netnspool import NamespacePool

    ctrl = env[0]
    ctrl._netns_pool = NamespacePool(NETNS_POOL)
    ctrl._netns_pool.wait_full()
    try:
        _churn_pynetlib(benchmark, env, "pynetlib-pool")
    finally:
        pool, ctrl._netns_pool = ctrl._netns_pool, None
        pool.close()


@pytest.mark.benchmark(group="churn")
def bench_churn_pynetlib_pods(benchmark, env):
    """The same lifecycles, a pod of POD containers at a time through the batch API
    (``attach_many``, then ``detach_many``); attach and detach times are per pod."""
    ctrl, net = env
    rates = []
    for workers in WORKERS:
        tag = f"{LIVE} live, pods of {POD}"

        def one(i):
            names = [f"p{workers}x{i}y{k}" for k in range(POD)]
            t0 = time.perf_counter()
            eps = ctrl.attach_many([pynetlib.AttachSpec(net, n, n) for n in names])
            t1 = time.perf_counter()
            ctrl.detach_many(eps)
            return t1 - t0, time.perf_counter() - t1

        _run_workers(workers, min(50, COUNT // POD), one)      # warm up
        rss0, fd0, cpu0 = _rss_kb(), _fds(), _cpu()
        caught_up = _Drained(BRIDGE, LIVE)
        t0 = time.perf_counter()
        attach, detach = _run_workers(workers, COUNT // POD, one)
        wall = time.perf_counter() - t0
        cpu = _cpu() - cpu0
        ctrl.flush_teardown()
        drained = caught_up.done()
        rss1, fd1 = _rss_kb(), _fds()
        mem = (f"RSS {rss0} -> {rss1} KiB ({(rss1 - rss0) / rss0 * 100:+.1f} %), "
               f"fds {fd0} -> {fd1}")
        rates.append(_report(f"{tag}, {workers} worker(s)", "pynetlib-batch",
                             COUNT // POD * POD, wall, cpu, attach, detach, drained, mem))
    _best("pynetlib-batch", rates)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    assert ctrl.audit() == []


@pytest.mark.benchmark(group="churn")
def bench_churn_c_loop(benchmark, env, c_loop):
    rates = []
    for workers in WORKERS:
        prefix = f"k{next(_seq)}x"
        cpu0 = _cpu()
        caught_up = _Drained(BRIDGE, LIVE)
        p = subprocess.run([c_loop, "/run/netns", BRIDGE, str(COUNT), prefix, "lifecycle",
                            str(workers)], capture_output=True, text=True, check=True)
        cpu = _cpu() - cpu0
        drained = caught_up.done()
        times = [int(l.split()[1]) / 1e9 for l in p.stdout.splitlines()
                 if l.startswith("lifecycle")]
        wall = [int(l.split()[1]) / 1e9 for l in p.stdout.splitlines()
                if l.startswith("wall")][0]
        rates.append(_report(f"{LIVE} live, {workers} worker(s)", "c-loop", len(times), wall,
                             cpu, times, [], drained))
    _best("c-loop", rates)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


@pytest.mark.benchmark(group="churn")
def bench_churn_pyroute2(benchmark, env):
    from pyroute2 import IPRoute, netns

    ipr = IPRoute()
    br = ipr.link_lookup(ifname=BRIDGE)[0]
    rates = []
    for workers in SLOW_WORKERS:
        def one(i):
            name = f"r{workers}x{i}"
            addr = f"10.88.{150 + (i // 250) % 50}.{2 + i % 250}"
            t0 = time.perf_counter()
            netns.create(name)
            path = f"/run/netns/{name}"
            with IPRoute() as h:                   # one per worker thread
                pyroute2_attach(h, br, path, f"q{name}", addr, "10.88.0.1")
            t1 = time.perf_counter()
            netns.remove(name)
            return t1 - t0, time.perf_counter() - t1

        cpu0 = _cpu()
        caught_up = _Drained(BRIDGE, LIVE)
        t0 = time.perf_counter()
        attach, detach = _run_workers(workers, SLOW_COUNT, one)
        wall = time.perf_counter() - t0
        cpu = _cpu() - cpu0
        rates.append(_report(f"{LIVE} live, {workers} worker(s)", "pyroute2", SLOW_COUNT,
                             wall, cpu, attach, detach, caught_up.done()))
    ipr.close()
    _best("pyroute2", rates)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


@pytest.mark.benchmark(group="churn")
def bench_churn_cni_bridge(benchmark, env, tmp_path):
    if not os.path.exists(os.path.join(CNI_DIR, "bridge")):
        pytest.skip("Debian's containernetworking-plugins is not installed")
    data = tmp_path / "host-local"
    conf = json.dumps({"cniVersion": "1.0.0", "name": "bench", "type": "bridge",
                       "bridge": "cnibr0", "isGateway": True, "ipMasq": False,
                       "ipam": {"type": "host-local", "subnet": "10.92.0.0/16",
                                "dataDir": str(data)}})

    def cni(cmd, cid, path):
        env_ = {"CNI_COMMAND": cmd, "CNI_CONTAINERID": cid, "CNI_NETNS": path,
                "CNI_IFNAME": "eth0", "CNI_PATH": CNI_DIR, "PATH": os.environ["PATH"]}
        r = subprocess.run([os.path.join(CNI_DIR, "bridge")], input=conf, env=env_,
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"CNI {cmd} failed: {r.stdout} {r.stderr}")

    live = []
    for i in range(LIVE):
        name = f"cnil{i}"
        Netns.create(name).close()
        cni("ADD", name, f"/run/netns/{name}")
        live.append(name)
    rates = []
    try:
        for workers in SLOW_WORKERS:
            def one(i):
                name = f"cni{workers}x{i}"
                path = f"/run/netns/{name}"
                t0 = time.perf_counter()
                Netns.create(name).close()              # the runtime's namespace
                cni("ADD", name, path)
                t1 = time.perf_counter()
                cni("DEL", name, path)
                delete_netns(name)
                return t1 - t0, time.perf_counter() - t1

            cpu0 = _cpu()
            caught_up = _Drained("cnibr0", LIVE)
            t0 = time.perf_counter()
            attach, detach = _run_workers(workers, SLOW_COUNT, one)
            wall = time.perf_counter() - t0
            cpu = _cpu() - cpu0
            rates.append(_report(f"{LIVE} live, {workers} worker(s)", "cni-bridge",
                                 SLOW_COUNT, wall, cpu, attach, detach, caught_up.done()))
    finally:
        for name in live:
            cni("DEL", name, f"/run/netns/{name}")
            delete_netns(name)
        subprocess.run(["ip", "link", "del", "cnibr0"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
    _best("cni-bridge", rates)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
