"""Churn under SIGKILL: worker processes attach and detach endpoints on one network while
a supervisor SIGKILLs a random worker every fraction of a second and starts a new one
(whose controller reconciles while the other workers keep going).

Checked while it runs, from the kernel (``ip -n <ns> -j addr`` of every namespace of the
store): no IPv4 address is ever configured in two containers at once. Checked at the
end, after a fresh controller reconciled: ``audit()`` is empty, the kernel holds exactly
the joined endpoints' veths and namespaces, the pool's free count is its starting count
minus the endpoints left, and deleting those leaves the pool full and the kernel empty.

Bounded for CI: ``PNL_CHURN_SECONDS`` (default 5) and ``PNL_CHURN_WORKERS`` (default 3).
A longer local run, e.g.::

    PNL_CHURN_SECONDS=120 PNL_CHURN_WORKERS=8 python -m pytest -q tests/test_crash_churn.py
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

import pynetlib
from pynetlib import netlabel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _proc_kernel import (  # noqa: E402
    audit_settled, kernel_empty, settled, OPS, ROOT, ip_j, link_names, owned_links, owned_netns)

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]

SECONDS = float(os.environ.get("PNL_CHURN_SECONDS", "5"))
WORKERS = int(os.environ.get("PNL_CHURN_WORKERS", "3"))
POOL = "LocalDefault/10.190.0.0/24"


def open_ctrl(state):
    return pynetlib.Controller(state, host_routes=lambda: [])


def live_addresses(sid: str) -> dict[str, list[str]]:
    """IPv4 address -> the namespaces that have it configured, read from the kernel."""
    seen: dict[str, list[str]] = {}
    for ns in owned_netns(sid):
        try:
            out = ip_j("-4", "addr", "show", ns=ns)
        except subprocess.CalledProcessError:
            continue                           # deleted meanwhile
        for link in out:
            for a in link.get("addr_info", []):
                if a.get("local", "").startswith("10.190."):
                    seen.setdefault(a["local"], []).append(ns)
    return seen


def test_churn_with_random_sigkills(tmp_path):
    state = str(tmp_path / "s")
    with open_ctrl(state) as c:
        c.new_network("bridge", "churn", {netlabel.GENERIC_DATA:
                                          {"AddressIPv4": "10.190.0.1/24"}})
        free0 = c.ipam.available(POOL)
        sid = c.store_id
    env = {k: v for k, v in os.environ.items() if k != "PYNETLIB_FAILPOINTS"}
    rng = random.Random(int(os.environ.get("PNL_CHURN_SEED", "0")) or None)

    def spawn(i: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, OPS, state, "churn", "churn", str(i),
                                 str(SECONDS + 60)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)

    workers = [spawn(i) for i in range(WORKERS)]
    dead: list[subprocess.Popen] = []
    kills, samples, observed, duplicates = 0, 0, 0, []
    deadline = time.monotonic() + SECONDS
    try:
        while time.monotonic() < deadline:
            pause = time.monotonic() + rng.uniform(0.1, 0.4)
            while time.monotonic() < pause:
                live = live_addresses(sid)
                dup = {ip: nss for ip, nss in live.items() if len(nss) > 1}
                samples += 1
                observed += len(live)
                if dup:
                    duplicates.append(dup)
                time.sleep(0.01)
            for w in workers:                # a worker that failed on its own is a bug
                if w.poll() is not None:
                    pytest.fail(f"worker exited by itself with {w.returncode}:\n"
                                f"{w.stderr.read()}")
            i = rng.randrange(len(workers))
            workers[i].send_signal(signal.SIGKILL)
            workers[i].wait()
            dead.append(workers[i])
            kills += 1
            workers[i] = spawn(i)
    finally:
        for w in workers:
            w.send_signal(signal.SIGKILL)
            w.wait()
        dead += workers
    joined = sum(p.stdout.read().count('"joined"') for p in dead)
    errors = [p.stderr.read() for p in dead]
    assert not duplicates, f"one address live in two namespaces: {duplicates[:3]}"
    assert kills >= 3 and joined > 0 and observed > 0, (kills, joined, observed, errors)

    with open_ctrl(state) as c:
        assert audit_settled(c) == []
        net = c.network_by_name("churn")
        eps = net.endpoints()
        attached = {e.id for e in eps if e.joined_container}
        assert c.ipam.available(POOL) == free0 - len(eps)
        ips = [str(e.info().interfaces[0].address.ip) for e in eps]
        assert len(set(ips)) == len(ips)
        def kernel():
            assert set(owned_links(sid)["endpoint"]) == attached
            assert {n for n in link_names() if n.startswith("pnl") and len(n) == 15} == \
                {f"pnl{e[:12]}" for e in attached}
            assert len(owned_netns(sid)) == len(attached)

        settled(kernel)
        for e in eps:
            if e.joined_container:
                e.leave(e.joined_container)
            e.delete()
        c.flush_teardown()          # addresses come back once their devices are gone
        assert c.ipam.available(POOL) == free0
        assert audit_settled(c) == []
        net.delete()
    settled(lambda: kernel_empty(sid))
    print(f"churn: {kills} kills, {joined} joins, {samples} kernel samples, "
          f"{observed} live addresses observed")
