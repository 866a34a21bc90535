"""The daemon as a process: graceful shutdown with a request in flight, many concurrent
clients, internal errors, restarts, and its structured logs."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from pynetlib import errors
from pynetlib.client import UnixHTTPConnection

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _daemon_helpers import (audit_settled, cleanup_state, gone_soon, jbody, raw,  # noqa: E402
                             rmtree, socket_dir, start_daemon)

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]


@pytest.fixture
def sockets():
    d = socket_dir()
    yield d
    rmtree(d)


def _kernel_is_empty() -> None:
    """Nothing the daemon made is left: no namespace, no device but lo."""
    assert os.listdir("/run/netns") == []
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    assert names == ["lo"], names


def _store_lock(state_dir: str) -> sqlite3.Connection:
    """Hold the store's write lock (as another process's long transaction would)."""
    c = sqlite3.connect(os.path.join(state_dir, "pynetlib.db"), isolation_level=None)
    c.execute("BEGIN IMMEDIATE")
    return c


def _in_background(fn, *args, **kw) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args, **kw)
        except BaseException as e:          # noqa: BLE001 - reported by the test
            out["error"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, out


def _wait_refused(d) -> None:
    """Wait until the stopping daemon takes no new request (503, or no socket)."""
    from pynetlib.client import Client

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            Client(d.socket_path, timeout=5).ping()
        except errors.NoServiceError:
            return
        except errors.TimeoutError:
            raise AssertionError("a client was left hanging:\n" + d.log_text()) from None
        time.sleep(0.05)
    raise AssertionError("the daemon still takes requests after SIGTERM")


# -- graceful shutdown -----------------------------------------------------------------

def test_sigterm_lets_the_request_in_flight_finish(tmp_path, sockets):
    d = start_daemon(str(tmp_path / "state"), os.path.join(sockets, "api.sock"))
    d.client.ping()                                  # the store file exists
    kept = UnixHTTPConnection(d.socket_path, timeout=30)   # a keep-alive connection
    kept.request("GET", "/_ping")
    assert kept.getresponse().read() == b'"OK"'
    lock = _store_lock(d.state_dir)
    try:
        t, out = _in_background(d.client.create_network, "inflight", subnet="10.40.0.0/24")
        assert d.client.ping() == "OK"               # accepted after the POST: it is in
        time.sleep(0.3)
        assert t.is_alive()                          # waiting for the store
        d.proc.terminate()
        _wait_refused(d)                             # no new connections ...
        assert not os.path.exists(d.socket_path)
        kept.request("GET", "/networks")             # ... no new work on open ones ...
        resp = kept.getresponse()
        assert resp.status == 503
        assert json.loads(resp.read()) == {"message": "the daemon is shutting down",
                                           "category": "NoService"}
        assert t.is_alive() and d.proc.poll() is None  # ... but the request goes on
    finally:
        kept.close()
        lock.execute("ROLLBACK")
        lock.close()
    t.join(60)
    assert "error" not in out, out
    assert re.fullmatch("[0-9a-f]{64}", out["value"])
    assert d.proc.wait(60) == 0, d.log_text()
    assert not os.path.exists(d.socket_path)
    events = [(e["event"], e.get("method"), e.get("status")) for e in d.logs()]
    assert events.index(("stopping", None, None)) < events.index(("request", "POST", 201)) \
        < events.index(("stop", None, 0))
    assert cleanup_state(d.state_dir) == []          # it was made, and completely
    _kernel_is_empty()


def test_shutdown_waits_no_longer_than_its_timeout(tmp_path, sockets):
    d = start_daemon(str(tmp_path / "state"), os.path.join(sockets, "api.sock"),
                     "--shutdown-timeout", "1")
    d.client.ping()
    lock = _store_lock(d.state_dir)
    try:
        t, out = _in_background(d.client.create_network, "slow", subnet="10.41.0.0/24")
        d.client.ping()
        time.sleep(0.3)
        d.proc.terminate()
        t.join(20)                                   # cut off after about 1 s
        assert not t.is_alive()
        assert isinstance(out.get("error"), errors.NoServiceError), out
        assert d.proc.poll() is None                 # the controller call still runs
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert d.proc.wait(60) == 0, d.log_text()        # it finished before ctrl.close()
    assert not os.path.exists(d.socket_path)
    assert cleanup_state(d.state_dir) == []
    _kernel_is_empty()


# -- many clients ----------------------------------------------------------------------

@pytest.mark.parametrize("pool", [[], ["--netns-pool-size", "4"]], ids=["", "netns-pool"])
def test_sixteen_concurrent_clients_run_full_lifecycles(tmp_path, sockets, pool):
    d = start_daemon(str(tmp_path / "state"), os.path.join(sockets, "api.sock"), *pool)
    c = d.client
    nid = c.create_network("busy", subnet="10.42.0.0/24")
    failures: list[str] = []
    keys: list[str] = []

    def lifecycle(worker: int) -> None:
        try:
            for i in range(4):
                cid = f"w{worker}-c{i}"
                eid = c.create_endpoint(nid, f"w{worker}-e{i}")
                key = c.join(nid, eid, cid)["sandbox_key"]
                keys.append(key)
                ep = c.endpoint(nid, eid)
                assert ep["container_id"] == cid and ep["sandbox_key"] == key
                assert os.path.exists(key)
                assert c.networks(name="busy")[0]["id"] == nid
                c.leave(nid, eid, cid)
                c.delete_endpoint(nid, eid)
        except BaseException as e:      # noqa: BLE001
            failures.append(f"worker {worker}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=lifecycle, args=(w,)) for w in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert failures == []
    assert len(set(keys)) == 64
    assert c.endpoints(nid) == [] and c.sandboxes() == []
    assert audit_settled(c) == []
    assert not any(os.path.exists(k) for k in keys)
    c.delete_network(nid)
    assert d.stop() == 0
    lines = [e for e in d.logs() if e["event"] == "request"]
    assert len(lines) >= 16 * 4 * 6
    assert cleanup_state(d.state_dir) == []
    _kernel_is_empty()


# -- 500, restarts, logs ---------------------------------------------------------------

def test_internal_errors_are_500_and_roll_back(tmp_path, sockets):
    d = start_daemon(str(tmp_path / "state"), os.path.join(sockets, "api.sock"),
                     env={"PYNETLIB_FAILPOINTS": "network.create.before_kernel=raise*1;"
                                                 "endpoint.join.after_kernel=raise*1"})
    try:
        status, reply, _ = raw(d.socket_path, "POST", "/networks",
                               jbody({"name": "boom", "subnet": "10.43.0.0/24"}))
        assert (status, reply["category"]) == (500, "Internal")
        assert "failpoint network.create.before_kernel fired" in reply["message"]
        assert d.client.networks() == []
        nid = d.client.create_network("boom", subnet="10.43.0.0/24")   # fires once only
        eid = d.client.create_endpoint(nid, "e")
        with pytest.raises(errors.InternalError, match="endpoint.join.after_kernel"):
            d.client.join(nid, eid, "c500")
        assert d.client.endpoint(nid, eid)["container_id"] is None
        assert d.client.sandboxes() == []
        assert os.listdir("/run/netns") == []
        assert audit_settled(d.client) == []
        errs = [e for e in d.logs() if e["event"] == "error"]
        assert len(errs) == 2 and "FailpointError" in errs[0]["error"]
        assert "Traceback" in errs[0]["traceback"]
    finally:
        assert d.stop() == 0
    assert cleanup_state(d.state_dir) == []
    _kernel_is_empty()


def test_a_restarted_daemon_serves_the_same_state(tmp_path, sockets):
    state, path = str(tmp_path / "state"), os.path.join(sockets, "api.sock")
    d = start_daemon(state, path)
    nid = d.client.create_network("kept", subnet="10.44.0.0/24")
    eid = d.client.create_endpoint(nid, "e")
    key = d.client.join(nid, eid, "kept-c")["sandbox_key"]
    assert d.stop() == 0
    assert os.path.exists(key)                  # stopping the daemon keeps containers up
    d = start_daemon(state, path)
    try:
        assert d.client.endpoint(nid, eid)["container_id"] == "kept-c"
        assert audit_settled(d.client) == []
        d.client.leave(nid, eid, "kept-c")
        assert gone_soon(key)
    finally:
        assert d.stop() == 0
    assert cleanup_state(state) == []
    _kernel_is_empty()


def test_every_stderr_line_is_json_with_the_request_fields(tmp_path, sockets):
    d = start_daemon(str(tmp_path / "state"), os.path.join(sockets, "api.sock"))
    d.client.networks()
    raw(d.socket_path, "GET", "/nowhere")
    raw(d.socket_path, "POST", "/networks", b"{")
    assert d.stop() == 0
    lines = d.logs()                            # raises if a line is not JSON
    assert lines[0]["event"] == "start" and lines[0]["pid"] == d.proc.pid
    assert lines[-1]["event"] == "stop" and lines[-1]["status"] == 0
    reqs = [e for e in lines if e["event"] == "request"]
    assert [(e["method"], e["path"], e["status"]) for e in reqs] == [
        ("GET", "/networks", 200), ("GET", "/nowhere", 404), ("POST", "/networks", 400)]
    for e in reqs:
        assert set(e) >= {"time", "method", "path", "status", "duration_ms", "peer_uid",
                          "peer_pid"}
        assert e["peer_uid"] == 0 and e["peer_pid"] > 0 and e["duration_ms"] >= 0
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"])
