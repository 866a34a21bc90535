"""Closing a controller while other threads run full container lifecycles through it.

A call that was in flight when close() began finishes; a call that starts after it is
refused with BadRequestError("the controller is closed") and changes nothing. Nothing
is logged as an error, nothing leaks: a new controller on the same state directory
finds the store, IPAM and the kernel in agreement and can clean up every record.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time

import pytest

import pynetlib
from pynetlib import netlabel
from pynetlib.drivers.null import NullDriver
from pynetlib.errors import BadRequestError

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]

WORKERS = 4


def _link_names() -> set[str]:
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True,
                         check=True).stdout
    return {link["ifname"] for link in json.loads(out)}


def _churn(net, worker: int, started: threading.Event, done: list, errors: list) -> None:
    """Full lifecycles until the controller refuses: each step either completes or is
    refused before it changes anything."""
    i = 0
    while True:
        cid = f"cl{worker}-{i}"
        ep = None
        try:
            ep = net.create_endpoint(cid)
            ep.join(cid)
            ep.leave(cid)
            ep.delete()
            done[worker] += 1
            started.set()
        except BadRequestError as e:
            if str(e) != "the controller is closed":
                errors.append(repr(e))
            return
        except Exception as e:          # anything else is the defect under test
            errors.append(f"{cid}: {e!r}")
            return
        i += 1


@pytest.mark.parametrize("delay,pool", [(0.0, 0), (0.05, 0), (0.3, 0), (0.05, 4)])
def test_close_while_threads_run_lifecycles(tmp_path, caplog, delay, pool):
    """``delay``: how long the lifecycles run before close(); ``pool``: the size of
    the warm namespace pool the joins take from."""
    state = str(tmp_path / "state")
    ctrl = pynetlib.Controller(state, host_routes=lambda: [], netns_pool_size=pool)
    net = ctrl.new_network("bridge", "cl", {netlabel.GENERIC_DATA: {
        "AddressIPv4": "10.157.0.1/16"}})
    done = [0] * WORKERS
    errors: list[str] = []
    started = threading.Event()
    caplog.set_level(logging.ERROR, logger="pynetlib")
    threads = [threading.Thread(target=_churn, args=(net, w, started, done, errors))
               for w in range(WORKERS)]
    for t in threads:
        t.start()
    assert started.wait(30)
    time.sleep(delay)
    ctrl.close()
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    assert errors == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    with pytest.raises(BadRequestError, match="the controller is closed"):
        net.create_endpoint("late")

    # Whatever was in flight finished or was rolled back: a new controller agrees.
    c2 = pynetlib.Controller(state, host_routes=lambda: [])
    try:
        assert c2.audit() == []
        net2 = c2.network_by_name("cl")
        for ep in net2.endpoints():
            cid = ep.joined_container
            if cid is not None:
                ep.leave(cid)
            ep.delete()
        assert c2.audit() == []
        net2.delete()
        c2.flush_teardown()
        assert not [n for n in _link_names() if n.startswith("pnl")]
        assert [n for n in os.listdir("/run/netns") if n.startswith("pnl-")] == []
    finally:
        c2.close()


class _ClosingDriver(NullDriver):
    """The null driver, except that its create_endpoint closes the controller while
    ``armed`` (after ``first`` has run, if given)."""
    type = "closing"

    def __init__(self, ctrl, first=None):
        self.ctrl = ctrl
        self.first = first
        self.armed = True

    def create_endpoint(self, nid, eid, ep_info, options):
        if self.armed:
            if self.first is not None:
                self.first()
            self.ctrl.close()


def test_close_from_inside_a_call_is_refused(tmp_path):
    """close() from a driver's callback would wait for the call it runs in: refused
    with BadRequestError, the call fails and stores nothing, the controller stays open."""
    ctrl = pynetlib.Controller(str(tmp_path / "state"), host_routes=lambda: [])
    driver = _ClosingDriver(ctrl)
    ctrl.register_driver("closing", driver)
    net = ctrl.new_network("closing", "cn")
    outcome: list = []

    def create():
        try:
            outcome.append(net.create_endpoint("e1"))
        except Exception as e:
            outcome.append(e)

    t = threading.Thread(target=create, daemon=True)    # a deadlock fails the test
    t.start()
    t.join(30)
    try:
        assert not t.is_alive(), "close() inside create_endpoint waited for itself"
        assert len(outcome) == 1 and isinstance(outcome[0], BadRequestError)
        assert "inside a call" in str(outcome[0])
        assert net.endpoints() == []
        driver.armed = False
        ep = net.create_endpoint("e1")          # still open, the name still free
        ep.delete()
        net.delete()
    finally:
        driver.armed = False
        if not t.is_alive():
            ctrl.close()
    with pytest.raises(BadRequestError, match="the controller is closed"):
        ctrl.new_network("null", "late")


def test_close_inside_a_call_while_another_thread_closes(tmp_path):
    """Once another thread's close() has begun (and waits for this call), a close()
    inside the call returns at once, as a second close() does anywhere: the call
    completes, then the other thread's close() does."""
    ctrl = pynetlib.Controller(str(tmp_path / "state"), host_routes=lambda: [])
    closer = threading.Thread(target=ctrl.close, daemon=True)

    def close_elsewhere_first():
        closer.start()
        deadline = time.monotonic() + 30
        while not ctrl._closed and time.monotonic() < deadline:     # it waits for us now
            time.sleep(0.001)
        assert ctrl._closed

    driver = _ClosingDriver(ctrl, close_elsewhere_first)
    ctrl.register_driver("closing", driver)
    net = ctrl.new_network("closing", "cn")
    ep = net.create_endpoint("e1")                  # no error: close() returned
    assert ep.name == "e1"
    closer.join(30)
    assert not closer.is_alive()
    with pytest.raises(BadRequestError, match="the controller is closed"):
        net.create_endpoint("e2")
