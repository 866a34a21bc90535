"""Test-run isolation.

Every test that touches the kernel must run in network namespaces that the test run
made itself. So the whole pytest process re-executes itself once under
``unshare --net --mount`` with private mount propagation, and mounts a private tmpfs on
``/run/netns``: nothing the tests create (links, addresses, routes, named namespaces,
nftables rules) can reach the machine's own network namespace or its ``/run/netns``.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from pynetlib.testing import in_sandbox as _in_sandbox
from pynetlib.testing import isolate_pytest_run


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    isolate_pytest_run(config)


# --- fixtures ----------------------------------------------------------------------------

import itertools  # noqa: E402
import json  # noqa: E402

_counter = itertools.count()


def kernel_available() -> bool:
    return _in_sandbox()


requires_kernel = pytest.mark.skipif(
    not kernel_available(), reason="needs root; the run isolates itself with unshare")


def ip_json(*args: str, netns: str | None = None) -> list:
    """Read kernel state with iproute2 (an oracle independent of pynetlib)."""
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-j", *args]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return json.loads(out) if out.strip() else []


@pytest.fixture
def make_netns():
    """Factory for named namespaces made with iproute2; all are removed after the test."""
    made: list[str] = []

    def make(prefix: str = "t") -> str:
        name = f"{prefix}{os.getpid()}-{next(_counter)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        made.append(name)
        return name

    yield make
    for name in made:
        if os.path.exists(f"/run/netns/{name}"):
            subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def host_ns(make_netns):
    """A fresh namespace standing in for a container host: (name, path)."""
    name = make_netns("h")
    return name, f"/run/netns/{name}"


@pytest.fixture
def ipr_in():
    """pyroute2 IPRoute handles bound to named namespaces, closed after the test."""
    from pyroute2 import IPRoute, NetNS

    opened = []

    def get(name: str | None = None):
        h = IPRoute() if name is None else NetNS(name)
        opened.append(h)
        return h

    yield get
    for h in opened:
        h.close()


@pytest.fixture(scope="session", autouse=True)
def _no_leaks_after_run():
    """After the whole run: no named namespace left and the run's own netns holds only lo."""
    yield
    if not _in_sandbox():
        return
    left = sorted(os.listdir("/run/netns"))
    links = [l["ifname"] for l in ip_json("link", "show") if l["ifname"] != "lo"]
    assert not left, f"namespaces leaked by the tests: {left}"
    assert not links, f"links leaked into the test run's namespace: {links}"


@pytest.fixture
def ctrl(tmp_path):
    """A controller on a fresh state directory (no host routes: every default pool is
    free); afterwards every endpoint is left and deleted, every network deleted."""
    import pynetlib

    c = pynetlib.Controller(str(tmp_path / "state"), host_routes=lambda: [])
    yield c
    for net in c.networks():
        for ep in net.endpoints():
            if ep.joined_container:
                ep.leave(ep.joined_container)
            ep.delete()
        net.delete()
    c.close()
