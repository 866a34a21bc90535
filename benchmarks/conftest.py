"""Benchmark-run isolation and the summary table.

Kernel benchmarks create devices and namespaces, so the run re-executes itself inside
private network and mount namespaces exactly as the test run does. Each benchmark
records its median under (group, implementation); the summary prints every group with
its ratios to the C loop and to pyroute2.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from pynetlib.testing import in_sandbox, isolate_pytest_run

IFA_F_TENTATIVE = 0x40          # linux/if_addr.h
RESULTS: dict[str, dict[str, float]] = {}
#: free-form figures (throughput, p99, CPU per container, growth), printed as given
FIGURES: list[tuple[str, str, str]] = []


#: The benchmarks' temporary directories (stores, containers' hosts and resolv.conf,
#: CNI's host-local data, the C loop's build) are on a tmpfs the run mounts in its own
#: mount namespace. On this project's machines, creating a file on the ext4 disk cost
#: from 12 us to 740 us depending on the directory and the hour (os.open(O_CREAT) in
#: a fresh directory; rename, write and unlink stayed at 4-17 us): each container's
#: join creates two files, so the disk would time the file system's inode allocation
#: rather than the code. bench_persistence, which compares the store on disk with the
#: store in memory, takes its directories on the disk (``disk_tmp_path``).
DISK_TMP = os.environ.get("PNL_BENCH_DISK_TMPDIR", "/var/tmp")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    isolate_pytest_run(config)
    config._pnl_results = RESULTS
    if in_sandbox() and config.option.basetemp is None:
        base = tempfile.mkdtemp(prefix="pynetlib-bench-", dir=DISK_TMP)
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700,size=2g",
                            "pynetlib-bench", base], check=True)
        except BaseException:
            os.rmdir(base)
            raise
        config._pnl_basetemp = base
        config.option.basetemp = os.path.join(base, "run")   # pytest empties it first


def pytest_unconfigure(config):
    base = getattr(config, "_pnl_basetemp", None)
    if base:
        subprocess.run(["umount", base], check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def disk_tmp_path():
    """A temporary directory on the disk, not on the run's tmpfs."""
    path = tempfile.mkdtemp(prefix="pynetlib-bench-disk-", dir=DISK_TMP)
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


def rounds(default: int) -> int:
    """Rounds per benchmark; PNL_BENCH_ROUNDS shrinks them (CI's short mode)."""
    env = os.environ.get("PNL_BENCH_ROUNDS")
    return max(1, min(default, int(env))) if env else default


def record(group: str, impl: str, median_s: float) -> None:
    RESULTS.setdefault(group, {})[impl] = median_s


def figure(name: str, impl: str, text: str) -> None:
    FIGURES.append((name, impl, text))


def record_benchmark(benchmark, group: str, impl: str) -> None:
    stats = benchmark.stats
    if stats is not None:
        record(group, impl, stats.stats.median)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def c_loop(tmp_path_factory):
    """The C baseline (csrc/tools/pnl_attach_loop.c), built with the project's own CMake:
    the same flags as the library."""
    build = tmp_path_factory.mktemp("cbuild")
    subprocess.run(["cmake", "-S", ROOT, "-B", str(build), "-DPNL_PYTHON=OFF",
                    "-DPNL_BUILD_TOOLS=ON", "-DCMAKE_BUILD_TYPE=Release"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "--target", "pnl_attach_loop"],
                   check=True, capture_output=True)
    return str(build / "pnl_attach_loop")


def settle(bridge: str, ports: int, timeout: float = 120.0) -> float:
    """Wait until the kernel has finished the work earlier steps left it: the bridge
    has exactly ``ports`` ports (the veths of deleted namespaces are gone) and no IPv6
    address of this namespace is still tentative (duplicate address detection, whose
    completions take the RTNL lock). Read through pyroute2. Returns the seconds waited.
    With 1,000 live containers the set-up leaves seconds of such work, which a timed
    step started at once would pay for."""
    from pyroute2 import IPRoute

    t0 = time.monotonic()
    with IPRoute() as ipr:
        (br,) = ipr.link_lookup(ifname=bridge)
        while True:
            n = sum(1 for link in ipr.get_links() if link.get("IFLA_MASTER") == br)
            tentative = [a for a in ipr.get_addr(family=socket.AF_INET6)
                         if a["flags"] & IFA_F_TENTATIVE]
            if n == ports and not tentative:
                break
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"bridge {bridge}: {n} ports (want {ports}), "
                                   f"{len(tentative)} tentative addresses")
            time.sleep(0.1)
    time.sleep(0.5)             # the last completions' deferred work
    return time.monotonic() - t0


def pyroute2_attach(ipr, bridge: int, path: str, hname: str, addr: str, gateway: str) -> None:
    """The attach of the benchmarks done the idiomatic pyroute2 way, in-process: the veth
    with its peer created in the namespace at ``path``, on the bridge and up; then, in
    the namespace, lo and eth0 up, the /16 address and the default route."""
    from pyroute2 import IPRoute

    ipr.link("add", ifname=hname, kind="veth", peer={"ifname": "eth0", "net_ns_fd": path},
             master=bridge, state="up")
    c = IPRoute(netns=path)
    try:
        idx = c.link_lookup(ifname="eth0")[0]
        c.link("set", index=1, state="up")
        c.link("set", index=idx, state="up")
        c.addr("add", index=idx, address=addr, prefixlen=16)
        c.route("add", gateway=gateway)
    finally:
        c.close()


def teardown_controller(ctrl) -> None:
    """Leave and delete every endpoint, delete every network, close."""
    for net in ctrl.networks():
        for ep in net.endpoints():
            if ep.joined_container:
                ep.leave(ep.joined_container)
            ep.delete()
        net.delete()
    ctrl.close()


@pytest.fixture
def kernel_only():
    if not in_sandbox():
        pytest.skip("kernel benchmarks need root (the run isolates itself with unshare)")


def _fmt(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1e6:10.1f} us" if s < 1e-2 else f"{s * 1e3:10.2f} ms"


def pytest_terminal_summary(terminalreporter):
    if not RESULTS and not FIGURES:
        return
    tr = terminalreporter
    tr.section("pynetlib benchmark summary (medians)")
    tr.write_line(f"{'group':40}{'implementation':>18}{'median':>14}{'x C loop':>10}"
                  f"{'x pynetlib':>12}")
    for group in sorted(RESULTS):
        row = RESULTS[group]
        c, pn = row.get("c-loop"), row.get("pynetlib")
        for impl in sorted(row, key=lambda k: (k != "c-loop", k != "pynetlib", k)):
            v = row[impl]
            rc = f"{v / c:9.2f}x" if c and impl != "c-loop" else f"{'':10}"
            rp = f"{v / pn:11.2f}x" if pn and impl != "pynetlib" else f"{'':12}"
            tr.write_line(f"{group:40}{impl:>18}{_fmt(v):>14}{rc}{rp}")
    if FIGURES:
        tr.write_line("")
        for name, impl, text in FIGURES:
            tr.write_line(f"{name:40}{impl:>18}  {text}")
